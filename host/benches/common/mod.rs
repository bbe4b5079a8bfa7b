//! What the plugin benchmarks share: the input (1,000 Deployments), percentiles, and one
//! plugin's figures measured the same way for every plugin and language.

#![allow(dead_code)] // each bench uses its own part

use kitsync::Object;
use kitsync::plugin::{Encoded, Engine, EngineConfig};
use serde_json::json;
use std::time::{Duration, Instant};

/// The allocator the `kitsync` binary uses, so in-process figures are the binary's (its arena
/// setting, `kitsync::allocator`, only changes memory, which these benches do not measure).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const OBJECTS: usize = 1_000;
pub const ROUNDS: usize = 200;

pub fn deployments() -> Vec<Object> {
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

pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

pub fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One plugin's figures.
pub struct Figures {
    /// Component size in bytes.
    pub size: usize,
    /// Compile and load with an empty code cache.
    pub compile: Duration,
    /// Instantiate p50.
    pub instantiate: Duration,
    /// Call on [`OBJECTS`] objects, p50.
    pub call: Duration,
}

/// Copies the example repository's platform file and plugins into `root`, the base of the
/// benchmarks' generated repositories.
pub fn copy_example_platform(root: &std::path::Path) {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    std::fs::create_dir_all(root.join("plugins")).expect("mkdir");
    for entry in std::fs::read_dir(examples.join("plugins")).expect("plugins") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), root.join("plugins").join(entry.file_name())).expect("copy");
    }
    std::fs::copy(examples.join("kitsync.yaml"), root.join("kitsync.yaml")).expect("copy");
}

/// Times `run` up to `rounds` times, stopping early (after at least `min` rounds) once
/// `budget` is spent, so that slow plugins still finish in reasonable time.
fn samples(rounds: usize, min: usize, budget: Duration, mut run: impl FnMut()) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    let spent = Instant::now();
    for _ in 0..rounds {
        if times.len() >= min && spent.elapsed() > budget {
            break;
        }
        let started = Instant::now();
        run();
        times.push(started.elapsed());
    }
    times
}

/// Loads `bytes` cold and from the code cache, instantiates it, and calls it on `objects`
/// (encoded once, as a render does); prints one line of figures and returns them.
pub fn bench(name: &str, bytes: &[u8], config: serde_json::Value, objects: &[Object]) -> Figures {
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
    let plugin = cold_engine.load(name, bytes, None).expect("load");
    let cold = started.elapsed();

    // Cached: a new engine (new process in practice) maps the compiled code.
    let mut cached = Vec::new();
    for _ in 0..20 {
        let warm_engine = engine();
        let started = Instant::now();
        warm_engine.load(name, bytes, None).expect("cached load");
        cached.push(started.elapsed());
    }

    let mut instantiate = samples(ROUNDS, 20, Duration::from_secs(5), || {
        plugin.instantiate_probe().expect("instantiate")
    });

    let policy = plugin.configure(&config).expect("config");
    // A render encodes a kit's objects once for all its plugins, so a call is timed on
    // objects already encoded; the encoding is timed below on its own.
    let encoded = Encoded::new(objects);
    // Slow plugins (an interpreter inside the component) get fewer rounds: at least 5.
    let mut calls = samples(ROUNDS / 4, 5, Duration::from_secs(10), || match plugin.world() {
        kitsync::plugin::World::Validator => drop(policy.validate_encoded(&encoded).expect("validate")),
        kitsync::plugin::World::Transformer => {
            drop(policy.transform_encoded(objects, &encoded).expect("transform"))
        }
    });

    // Where a call's time goes: the same call on no objects (instantiate + config), and the
    // host's share (objects to JSON text) measured alone.
    let mut empty = samples(ROUNDS / 4, 5, Duration::from_secs(5), || match plugin.world() {
        kitsync::plugin::World::Validator => drop(policy.validate(&[]).expect("validate")),
        kitsync::plugin::World::Transformer => drop(policy.transform(&[]).expect("transform")),
    });
    let started = Instant::now();
    drop(Encoded::new(objects));
    let encode = started.elapsed();
    let encoded: usize = objects.iter().map(|o| o.value.to_string().len()).sum();

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
        "{:<28} call on 0 objects p50 {:>9} | host JSON encoding of the input (once per render) {:>9} ({} KB)",
        "",
        ms(percentile(&mut empty, 0.5)),
        ms(encode),
        encoded / 1024
    );
    Figures {
        size: bytes.len(),
        compile: cold,
        instantiate: percentile(&mut instantiate, 0.5),
        call: percentile(&mut calls, 0.5),
    }
}
