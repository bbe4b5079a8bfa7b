//! Plugin engine benchmark (not a test): prints compile, cached load, instantiate and call
//! times for a first-party validator and transformer on 1,000 Deployments, and the whole
//! render of a 1,000-object kit with the example repository's five plugins.
//!
//! Run with `cargo bench -p kitsync --bench plugins`. Goals: instantiate p50 <= 50 us,
//! validate 1,000 objects <= 5 ms, whole five-plugin render <= 40 ms.

use kitsync::Object;
use kitsync::plugin::{Engine, EngineConfig};
use kitsync::render::{Pipeline, Settings};
use kitsync::source::Snapshot;
use kitsync_test_artifacts as artifacts;
use serde_json::json;
use std::path::Path;
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
    // `cargo bench -p kitsync --bench plugins -- render`: only the whole render (for profiling).
    if std::env::args().any(|a| a == "render") {
        whole_render();
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
    whole_render();
}

/// The example repository's platform file and plugins with one kit like `manufracture`
/// (set-labels, port-range; then the platform's required-labels, resource-limits and
/// no-privileged) holding 500 Deployments and 500 Services: the render of that kit in
/// process, p50 of 20, with and without the schema stage (which runs no plugin).
fn whole_render() {
    let repo = tempfile::tempdir().expect("temp dir");
    let root = repo.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    std::fs::create_dir_all(root.join("plugins")).expect("mkdir");
    for entry in std::fs::read_dir(examples.join("plugins")).expect("plugins") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), root.join("plugins").join(entry.file_name())).expect("copy");
    }
    std::fs::copy(examples.join("kitsync.yaml"), root.join("kitsync.yaml")).expect("copy");
    let kit = root.join("kits/bench");
    std::fs::create_dir_all(&kit).expect("mkdir");
    let kit_file = std::fs::read_to_string(examples.join("kits/manufracture/kit.yaml")).expect("kit.yaml");
    std::fs::write(
        kit.join("kit.yaml"),
        kit_file.replace("namespace: manufracture", "namespace: bench"),
    )
    .expect("write kit.yaml");
    let mut text = String::new();
    for i in 0..OBJECTS / 2 {
        text.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    app.kubernetes.io/name: app-{i}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: app-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: app-{i}\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/app-{i}:1.2.3\n          ports:\n            - containerPort: 8080\n          resources:\n            limits: {{cpu: 500m, memory: 256Mi}}\n            requests: {{cpu: 100m, memory: 128Mi}}\n"
        ));
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  labels:\n    app.kubernetes.io/name: app-{i}\nspec:\n  selector:\n    app.kubernetes.io/name: app-{i}\n  ports:\n    - name: http\n      port: 8080\n      targetPort: 8080\n"
        ));
    }
    std::fs::write(kit.join("apps.yaml"), text).expect("write manifests");

    let snapshot = Snapshot::from_dir(root).expect("snapshot");
    let discovery = kitsync::kit::discover(&snapshot);
    let platform = discovery.platform.as_ref().expect("platform file");
    let kit = discovery.kits["bench"].as_ref().expect("kit file");
    let cache = tempfile::tempdir().expect("cache");
    for skip_schemas in [true, false] {
        let engine = Engine::new(EngineConfig {
            cache_dir: Some(cache.path().join("plugins")),
            ..EngineConfig::default()
        })
        .expect("engine");
        let mut settings = Settings::default();
        settings.schema.skip_for_benchmark = skip_schemas;
        let pipeline = Pipeline::new(engine, settings);
        // Warm: plugins compiled and loaded, schemas read.
        let first = pipeline.render(&snapshot, platform, kit);
        assert!(first.failed.is_none(), "the kit renders: {:?}", first.findings);
        assert_eq!(first.objects.len(), OBJECTS);
        let rounds = std::env::var("KITSYNC_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(20);
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            drop(pipeline.render(&snapshot, platform, kit));
            times.push(started.elapsed());
        }
        println!(
            "whole render of a {OBJECTS}-object kit, 5 plugins{:<24} p50 {:>9} | min {:>9}",
            if skip_schemas {
                ", schema stage skipped"
            } else {
                ", with the schema stage"
            },
            ms(percentile(&mut times, 0.5)),
            ms(times[0]),
        );
    }
}
