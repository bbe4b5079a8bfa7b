//! Plugin engine benchmark (not a test): prints compile, cached load, instantiate and call
//! times for a first-party validator and transformer on 1,000 Deployments, and the whole
//! render of a 1,000-object kit with the example repository's five plugins.
//!
//! Run with `cargo bench -p kitsync --bench plugins`. Goals: instantiate p50 <= 50 us,
//! validate 1,000 objects <= 5 ms, whole five-plugin render <= 40 ms.

use common::{OBJECTS, ROUNDS, bench, deployments, ms, percentile};
use kitsync::plugin::{Engine, EngineConfig};
use kitsync::render::{Pipeline, Settings};
use kitsync::source::Snapshot;
use kitsync_test_artifacts as artifacts;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

mod common;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench -p kitsync --bench plugins -- render [kept]`: only the whole render, or only
    // its parsed-files-kept case (for profiling and A/B runs; KITSYNC_BENCH_ROUNDS sets rounds).
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
        &artifacts::bytes(artifacts::REQUIRED_LABELS),
        json!({"labels": ["app.kubernetes.io/name"]}),
        &objects,
    );
    bench(
        "resource-limits",
        &artifacts::bytes(artifacts::RESOURCE_LIMITS),
        json!({}),
        &objects,
    );
    bench(
        "set-labels",
        &artifacts::bytes(artifacts::SET_LABELS),
        json!({"labels": {"kitsync.dev/kit": "bench"}}),
        &objects,
    );
    whole_render();
}

/// The example repository's platform file and plugins with one kit like `manufracture`
/// (set-labels, port-range; then the platform's required-labels, resource-limits and
/// no-privileged) holding 500 Deployments and 500 Services: the render of that kit in
/// process, p50 of 20, with and without the schema stage (which runs no plugin), parsing
/// the YAML each time (as `check` does) and with the files parsed before kept (as `serve`
/// renders a new revision whose commit did not touch these files).
fn whole_render() {
    let repo = tempfile::tempdir().expect("temp dir");
    let root = repo.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    common::copy_example_platform(root);
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
    let configs = [
        (true, 0, ", no schema stage, YAML parsed"),
        (false, 0, ", schema stage, YAML parsed"),
        (
            false,
            kitsync::manifest::DEFAULT_CAPACITY_BYTES,
            ", schema stage, parsed files kept",
        ),
    ];
    let only_kept = std::env::args().any(|a| a == "kept");
    for (skip_schemas, parse_cache_bytes, label) in configs {
        if only_kept && parse_cache_bytes == 0 {
            continue;
        }
        let engine = Engine::new(EngineConfig {
            cache_dir: Some(cache.path().join("plugins")),
            ..EngineConfig::default()
        })
        .expect("engine");
        let mut settings = Settings::default();
        settings.schema.skip_for_benchmark = skip_schemas;
        settings.parse_cache_bytes = parse_cache_bytes;
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
            "whole render of a {OBJECTS}-object kit, 5 plugins{label:<34} p50 {:>9} | min {:>9}",
            ms(percentile(&mut times, 0.5)),
            ms(times[0]),
        );
    }
}
