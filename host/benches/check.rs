//! Benchmark (not a test): wall time of `kitsync check` on a generated repository of
//! 100 kits x 100 objects, cold (empty plugin code cache) and warm, on every core and on two;
//! and YAML parse speed on a 5 MB multi-document file against serde_json on the same documents.
//!
//! Run with `cargo bench -p kitsync --bench check`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
const KITS: usize = 100;
const OBJECTS_PER_KIT: usize = 100;

fn main() {
    let repo = tempfile::tempdir().expect("temp dir");
    generate(repo.path());
    println!(
        "check: {KITS} kits x {OBJECTS_PER_KIT} objects, 2 kit plugins + 3 platform plugins per kit, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let cache = tempfile::tempdir().expect("cache dir");
    let cold = check(repo.path(), cache.path(), false);
    let warm: Vec<Duration> = (0..3).map(|_| check(repo.path(), cache.path(), false)).collect();
    println!(
        "  all cores: cold {:>8.1?}   warm {:>8.1?} (best of 3)",
        cold,
        best(&warm)
    );
    if Command::new("taskset").arg("--version").output().is_ok() {
        let cache2 = tempfile::tempdir().expect("cache dir");
        let cold2 = check(repo.path(), cache2.path(), true);
        let warm2: Vec<Duration> = (0..3).map(|_| check(repo.path(), cache2.path(), true)).collect();
        println!(
            "  2 cores:   cold {:>8.1?}   warm {:>8.1?} (best of 3)   goal: warm <= 2 s",
            cold2,
            best(&warm2)
        );
    } else {
        println!("  2 cores:   (taskset not installed; skipped)");
    }

    parse_speed();
}

fn best(runs: &[Duration]) -> Duration {
    runs.iter().copied().min().unwrap_or_default()
}

/// One `kitsync check` run; panics unless it exits 0.
fn check(repo: &Path, cache: &Path, two_cores: bool) -> Duration {
    let exe = env!("CARGO_BIN_EXE_kitsync");
    let mut command = if two_cores {
        let mut c = Command::new("taskset");
        c.args(["-c", "0,1", exe]);
        c
    } else {
        Command::new(exe)
    };
    command
        .args(["check", "--format", "json"])
        .arg(repo)
        .env("KITSYNC_PLUGIN_CACHE", cache);
    let t = Instant::now();
    let out = command.output().expect("kitsync runs");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn sha256(path: &Path) -> String {
    kitsync::plugin::sha256_hex(&std::fs::read(path).expect("read plugin"))
}

/// The example's platform file and plugins, and 100 kits of 50 Deployments + 50 Services.
fn generate(root: &Path) {
    common::copy_example_platform(root);
    let set_labels = sha256(&root.join("plugins/set-labels.wasm"));
    let port_range = sha256(&root.join("plugins/port-range.wasm"));
    for k in 0..KITS {
        let dir = root.join(format!("kits/kit-{k:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("kit.yaml"),
            format!(
                "transform:\n  - plugin: plugins/set-labels.wasm\n    sha256: {set_labels}\n    config:\n      labels: {{team: team-{k}}}\n\
                 validate:\n  - plugin: plugins/port-range.wasm\n    sha256: {port_range}\n    config: {{min: 1024, max: 32767}}\n"
            ),
        )
        .expect("write kit.yaml");
        let mut text = String::new();
        for i in 0..OBJECTS_PER_KIT / 2 {
            text.push_str(&deployment(&format!("app-{i}")));
            text.push_str(&service(&format!("app-{i}"), 2000 + i));
        }
        std::fs::write(dir.join("apps.yaml"), text).expect("write manifests");
    }
}

fn deployment(name: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: {name}\n    spec:\n      containers:\n        - name: {name}\n          image: ghcr.io/acme/{name}:1.2.3\n          ports:\n            - containerPort: 8080\n          resources:\n            limits: {{cpu: 500m, memory: 256Mi}}\n            requests: {{cpu: 100m, memory: 128Mi}}\n          env:\n            - name: MODE\n              value: production\n"
    )
}

fn service(name: &str, port: usize) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\nspec:\n  selector:\n    app.kubernetes.io/name: {name}\n  ports:\n    - name: http\n      port: {port}\n      targetPort: 8080\n"
    )
}

/// Parses a ~5 MB multi-document file with kitsync's manifest parser, the same file with
/// serde-saphyr alone (what the parser falls back to for YAML outside its fast subset), and
/// the same documents as JSON with serde_json, as reference points.
fn parse_speed() {
    let mut yaml = String::new();
    let mut i = 0;
    while yaml.len() < 5 << 20 {
        yaml.push_str(&deployment(&format!("app-{i}")));
        yaml.push_str(&service(&format!("app-{i}"), 2000 + i % 30000));
        i += 1;
    }
    // Best of 3 for each: the first parse in a process also pays for fresh memory.
    let mut objects = Vec::new();
    let yaml_time = best(
        &(0..3)
            .map(|_| {
                let t = Instant::now();
                let parsed = kitsync::manifest::parse("big.yaml", &yaml).expect("parses");
                let elapsed = t.elapsed();
                // The last run's objects are freed outside the timing.
                objects = parsed;
                elapsed
            })
            .collect::<Vec<_>>(),
    );
    let saphyr_time = best(
        &(0..3)
            .map(|_| {
                let mut options = serde_saphyr::Options::default();
                options.budget = None;
                options.legacy_octal_numbers = true;
                let t = Instant::now();
                let any: Vec<serde_json::Value> =
                    serde_saphyr::from_multiple_with_options(&yaml, options).expect("serde-saphyr parses");
                let elapsed = t.elapsed();
                assert_eq!(any.len(), objects.len());
                drop(any);
                elapsed
            })
            .collect::<Vec<_>>(),
    );
    let json: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string(&o.value).expect("json"))
        .collect();
    let json_time = best(
        &(0..3)
            .map(|_| {
                let t = Instant::now();
                let values: Vec<serde_json::Value> = json
                    .iter()
                    .map(|doc| serde_json::from_str(doc).expect("json parses"))
                    .collect();
                let elapsed = t.elapsed();
                // Freed outside the timing, as for the other two.
                drop(values);
                elapsed
            })
            .collect::<Vec<_>>(),
    );
    println!(
        "parse (best of 3): {:.1} MB, {} documents: kitsync manifest parser {:.1?} ({:.1} MB/s); serde-saphyr alone {:.1?} ({:.1}x the parser's time); serde_json on the same documents {:.1?} (the parser takes {:.1}x that)",
        yaml.len() as f64 / 1e6,
        objects.len(),
        yaml_time,
        yaml.len() as f64 / 1e6 / yaml_time.as_secs_f64(),
        saphyr_time,
        saphyr_time.as_secs_f64() / yaml_time.as_secs_f64(),
        json_time,
        yaml_time.as_secs_f64() / json_time.as_secs_f64()
    );
}
