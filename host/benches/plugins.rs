//! Plugin engine benchmark (not a test): prints compile, cached load, instantiate and call
//! times for a first-party validator and transformer on 1,000 Deployments.
//!
//! Run with `cargo bench -p kitsync --bench plugins`. Goals: instantiate p50 <= 50 us,
//! validate 1,000 objects <= 5 ms.

use kitsync::Object;
use kitsync::plugin::{Engine, EngineConfig};
use kitsync_test_artifacts as artifacts;
use serde_json::json;
use std::time::{Duration, Instant};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 200;

fn deployments() -> Vec<Object> {
    (0..OBJECTS)
        .map(|i| {
            let value = json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": format!("app-{i}"), "namespace": "bench",
                             "labels": {"app.kubernetes.io/name": format!("app-{i}")}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{i}")}},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": format!("app-{i}")}},
                        "spec": {"containers": [{
                            "name": "app",
                            "image": format!("registry.example.com/app-{i}:1.0.{i}"),
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}
                        }]}
                    }
                }
            });
            Object::new(value, None).expect("bench objects have identity")
        })
        .collect()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn bench(name: &str, path: &str, config: serde_json::Value, objects: &[Object]) {
    let bytes = artifacts::bytes(path);
    let cache = tempfile::tempdir().expect("tempdir");
    let engine = || {
        Engine::new(EngineConfig {
            // A subdirectory, so the sibling key file is removed with the tempdir.
            cache_dir: Some(cache.path().join("plugins")),
            ..EngineConfig::default()
        })
        .expect("engine")
    };

    // Cold: a fresh engine and an empty cache, so the component is compiled.
    let cold_engine = engine();
    let started = Instant::now();
    let plugin = cold_engine.load(name, &bytes, None).expect("load");
    let cold = started.elapsed();

    // Cached: a new engine (new process in practice) maps the compiled code.
    let mut cached = Vec::new();
    for _ in 0..20 {
        let warm_engine = engine();
        let started = Instant::now();
        warm_engine.load(name, &bytes, None).expect("cached load");
        cached.push(started.elapsed());
    }

    let mut instantiate = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        plugin.instantiate_probe().expect("instantiate");
        instantiate.push(started.elapsed());
    }

    let policy = plugin.configure(&config).expect("config");
    let mut calls = Vec::with_capacity(ROUNDS / 4);
    for _ in 0..ROUNDS / 4 {
        let started = Instant::now();
        match plugin.world() {
            kitsync::plugin::World::Validator => drop(policy.validate(objects).expect("validate")),
            kitsync::plugin::World::Transformer => drop(policy.transform(objects).expect("transform")),
        }
        calls.push(started.elapsed());
    }

    // Where a call's time goes: the same call on no objects (instantiate + config), and the
    // host's share (objects to JSON text) measured alone.
    let mut empty = Vec::with_capacity(ROUNDS / 4);
    for _ in 0..ROUNDS / 4 {
        let started = Instant::now();
        match plugin.world() {
            kitsync::plugin::World::Validator => drop(policy.validate(&[]).expect("validate")),
            kitsync::plugin::World::Transformer => drop(policy.transform(&[]).expect("transform")),
        }
        empty.push(started.elapsed());
    }
    let started = Instant::now();
    let encoded: usize = objects.iter().map(|o| o.value.to_string().len()).sum();
    let encode = started.elapsed();

    println!(
        "{name:<16} {world:<11} {size:>7} KB | compile+load {cold:>10} | cached load p50 {cached:>10} | instantiate p50 {i50:>9} p99 {i99:>9} | call on {OBJECTS} objects p50 {c50:>9}",
        world = plugin.world(),
        size = bytes.len() / 1024,
        cold = ms(cold),
        cached = us(percentile(&mut cached, 0.5)),
        i50 = us(percentile(&mut instantiate, 0.5)),
        i99 = us(percentile(&mut instantiate, 0.99)),
        c50 = ms(percentile(&mut calls, 0.5)),
    );
    println!(
        "{:<28} call on 0 objects p50 {:>9} | host JSON encoding of the input {:>9} ({} KB)",
        "",
        ms(percentile(&mut empty, 0.5)),
        ms(encode),
        encoded / 1024
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let objects = deployments();
    println!(
        "kitsync plugin engine, {OBJECTS} Deployments, {ROUNDS} rounds, profile {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    bench(
        "required-labels",
        artifacts::REQUIRED_LABELS,
        json!({"labels": ["app.kubernetes.io/name"]}),
        &objects,
    );
    bench("resource-limits", artifacts::RESOURCE_LIMITS, json!({}), &objects);
    bench(
        "set-labels",
        artifacts::SET_LABELS,
        json!({"labels": {"kitsync.dev/kit": "bench"}}),
        &objects,
    );
}
