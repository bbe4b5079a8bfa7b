//! Benchmark (not a test): what schema validation costs `check`, and kubeconform on the same
//! files.
//!
//! 1. The check benchmark's repository (100 kits x 100 objects, the example's five plugins)
//!    rendered in process with and without the schema stage: best of 3 each, and the ratio
//!    (goal: at most 1.5x).
//! 2. The same 10,000 objects without plugins, with two mistakes per kit (an annotation
//!    written as a number, an unknown field): `kitsync check --strict` against kubeconform
//!    (v0.8.0, built from its Go module into the cache) with JSON schemas converted here from
//!    the same Kubernetes OpenAPI document, in a local directory. Both times, both finding
//!    counts.
//!
//! Run with `cargo bench -p kitsync --bench schemas`.

use kitsync::plugin::{Engine, EngineConfig};
use kitsync::render::{Pipeline, Settings};
use kitsync::source::Snapshot;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const KITS: usize = 100;
const OBJECTS_PER_KIT: usize = 100;
const KUBECONFORM: &str = "github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    stage_cost();
    against_kubeconform();
}

fn best(runs: &[Duration]) -> Duration {
    runs.iter().copied().min().unwrap_or_default()
}

/// 1: the pipeline over the check benchmark's repository, with and without the stage.
fn stage_cost() {
    let repo = tempfile::tempdir().expect("temp dir");
    generate(repo.path(), true, false);
    let cache = tempfile::tempdir().expect("cache");
    let snapshot = Snapshot::from_dir(repo.path()).expect("snapshot");
    let discovery = kitsync::kit::discover(&snapshot);
    let pipeline = |skip: bool| {
        let engine = Engine::new(EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..EngineConfig::default()
        })
        .expect("engine");
        let mut settings = Settings::default();
        settings.schema.skip_for_benchmark = skip;
        Pipeline::new(engine, settings)
    };
    let (with, without) = (pipeline(false), pipeline(true));
    // Warm: plugins compiled and cached, schemas loaded.
    let _ = with.render_all(&snapshot, &discovery);
    let _ = without.render_all(&snapshot, &discovery);
    let mut times = (Vec::new(), Vec::new());
    let mut findings = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let rendered = without.render_all(&snapshot, &discovery);
        times.1.push(t.elapsed());
        assert!(
            rendered.iter().all(|r| r.failed.is_none()),
            "the repository is clean"
        );
        let t = Instant::now();
        let rendered = with.render_all(&snapshot, &discovery);
        times.0.push(t.elapsed());
        findings = rendered.iter().map(|r| r.findings.len()).sum::<usize>();
    }
    let (with_t, without_t) = (best(&times.0), best(&times.1));
    println!(
        "schemas: render of {KITS} kits x {OBJECTS_PER_KIT} objects with the example's plugins, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  without the schema stage {without_t:>8.1?}   with it {with_t:>8.1?}   ratio {:.2}x (goal <= 1.5x); {findings} findings",
        with_t.as_secs_f64() / without_t.as_secs_f64()
    );
}

/// 2: `kitsync check --strict` and kubeconform on the same files.
fn against_kubeconform() {
    let Some(kubeconform) = build_kubeconform() else {
        return;
    };
    let Some(swagger) = swagger() else {
        println!("  kubeconform: k8s.io/kubernetes@v1.36.3 is not in the Go module cache; skipped");
        return;
    };
    let repo = tempfile::tempdir().expect("temp dir");
    generate(repo.path(), false, true);
    let schemas = tempfile::tempdir().expect("schemas");
    let document: Value = serde_json::from_slice(&std::fs::read(&swagger).expect("read")).expect("json");
    let kinds = [
        ("apps", "v1", "Deployment"),
        ("", "v1", "Service"),
        ("", "v1", "ConfigMap"),
    ];
    for (group, version, kind) in kinds {
        write_json_schema(&document, group, version, kind, schemas.path());
    }

    let mut kitsync_runs = Vec::new();
    let mut kitsync_findings = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(["check", "--strict", "--format", "json"])
            .arg(repo.path())
            .output()
            .expect("kitsync runs");
        kitsync_runs.push(t.elapsed());
        let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
        kitsync_findings = report["kits"].as_array().map_or(0, |kits| {
            kits.iter()
                .map(|k| k["findings"].as_array().map_or(0, Vec::len))
                .sum()
        });
    }
    let files: Vec<PathBuf> = (0..KITS)
        .map(|k| repo.path().join(format!("kits/kit-{k:03}/apps.yaml")))
        .collect();
    let location = format!(
        "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        schemas.path().display()
    );
    let mut kubeconform_runs = Vec::new();
    let mut kubeconform_findings = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(&kubeconform)
            .args(["-strict", "-output", "json", "-schema-location", &location])
            .args(&files)
            .output()
            .expect("kubeconform runs");
        kubeconform_runs.push(t.elapsed());
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "kubeconform output ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        kubeconform_findings = report["resources"].as_array().map_or(0, |resources| {
            resources
                .iter()
                .map(|r| {
                    r["validationErrors"]
                        .as_array()
                        .map_or(usize::from(r["status"] == "statusError"), Vec::len)
                })
                .sum()
        });
    }
    println!(
        "schemas: {KITS} kits x {OBJECTS_PER_KIT} objects without plugins, 2 mistakes per kit (an annotation as a number, an unknown field)"
    );
    println!(
        "  kitsync check --strict {:>8.1?} ({kitsync_findings} findings)   kubeconform -strict {:>8.1?} ({kubeconform_findings} findings)   best of 3",
        best(&kitsync_runs),
        best(&kubeconform_runs)
    );
}

/// kubeconform built from its Go module into the cache (once), or `None` when Go is missing.
fn build_kubeconform() -> Option<PathBuf> {
    let bin = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
        .join("kitsync/bench-tools/kubeconform-v0.8.0");
    let exe = bin.join("kubeconform");
    if exe.exists() {
        return Some(exe);
    }
    let built = Command::new("go")
        .args(["install", KUBECONFORM])
        .env("GOBIN", &bin)
        .status();
    match built {
        Ok(status) if status.success() && exe.exists() => Some(exe),
        _ => {
            println!("  kubeconform: `go install {KUBECONFORM}` failed or Go is missing; skipped");
            None
        }
    }
}

fn swagger() -> Option<PathBuf> {
    let out = Command::new("go").args(["env", "GOMODCACHE"]).output().ok()?;
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let path = PathBuf::from(cache).join("k8s.io/kubernetes@v1.36.3/api/openapi-spec/swagger.json");
    path.exists().then_some(path)
}

/// Writes kubeconform's standalone strict JSON schema of one kind (`<kind>-<group>-<version>.json`):
/// the kind's definition with every definition it reaches, IntOrString and Quantity as their
/// JSON alternatives, objects with properties closed.
fn write_json_schema(document: &Value, group: &str, version: &str, kind: &str, dir: &Path) {
    let definitions = document["definitions"].as_object().expect("definitions");
    let root = definitions
        .iter()
        .find(|(_, d)| {
            d["x-kubernetes-group-version-kind"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["group"] == group && g["version"] == version && g["kind"] == kind)
            })
        })
        .map(|(name, _)| name.clone())
        .expect("kind in the document");
    let mut reached = BTreeSet::new();
    let mut todo = vec![root.clone()];
    while let Some(name) = todo.pop() {
        if reached.insert(name.clone()) {
            refs(&definitions[&name], &mut todo);
        }
    }
    let converted: Map<String, Value> = reached
        .iter()
        .map(|n| (n.clone(), convert(n, &definitions[n])))
        .collect();
    let schema = json!({"$ref": format!("#/definitions/{root}"), "definitions": converted});
    let suffix = if group.is_empty() {
        format!("-{version}")
    } else {
        format!("-{}-{version}", group.split('.').next().unwrap_or(group))
    };
    let file = dir.join(format!("{}{suffix}.json", kind.to_lowercase()));
    std::fs::write(file, serde_json::to_vec(&schema).expect("json")).expect("write schema");
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.trim_start_matches("#/definitions/").to_owned());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn convert(name: &str, schema: &Value) -> Value {
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]})
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            json!({"oneOf": [{"type": "string"}, {"type": "number"}]})
        }
        _ => close(schema),
    }
}

fn close(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| *k != "description")
                .map(|(k, v)| (k.clone(), close(v)))
                .collect();
            if out.contains_key("properties") && !out.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            // kubeconform's own schemas accept null for optional fields, as the API server does.
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(close).collect()),
        other => other.clone(),
    }
}

fn sha256(path: &Path) -> String {
    kitsync::plugin::sha256_hex(&std::fs::read(path).expect("read plugin"))
}

/// 100 kits of 50 Deployments + 50 Services; with the example's plugins, or none; with two
/// mistakes per kit, or none.
fn generate(root: &Path, plugins: bool, mistakes: bool) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut kit_yaml = "{}\n".to_owned();
    if plugins {
        std::fs::create_dir_all(root.join("plugins")).expect("mkdir");
        for entry in std::fs::read_dir(examples.join("plugins")).expect("plugins") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), root.join("plugins").join(entry.file_name())).expect("copy");
        }
        std::fs::copy(examples.join("kitsync.yaml"), root.join("kitsync.yaml")).expect("copy");
        let set_labels = sha256(&root.join("plugins/set-labels.wasm"));
        let port_range = sha256(&root.join("plugins/port-range.wasm"));
        kit_yaml = format!(
            "transform:\n  - plugin: plugins/set-labels.wasm\n    sha256: {set_labels}\n    config:\n      labels: {{team: bench}}\n\
             validate:\n  - plugin: plugins/port-range.wasm\n    sha256: {port_range}\n    config: {{min: 1024, max: 32767}}\n"
        );
    } else {
        std::fs::write(root.join("kitsync.yaml"), "{}\n").expect("platform");
    }
    for k in 0..KITS {
        let dir = root.join(format!("kits/kit-{k:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("kit.yaml"), &kit_yaml).expect("write kit.yaml");
        let mut text = String::new();
        for i in 0..OBJECTS_PER_KIT / 2 {
            let wrong = mistakes && i == 0;
            text.push_str(&deployment(&format!("app-{i}"), wrong));
            text.push_str(&service(&format!("app-{i}"), 2000 + i, wrong));
        }
        std::fs::write(dir.join("apps.yaml"), text).expect("write manifests");
    }
}

fn deployment(name: &str, wrong: bool) -> String {
    let extra = if wrong { "  replica: 3\n" } else { "" };
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\nspec:\n{extra}  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: {name}\n    spec:\n      containers:\n        - name: {name}\n          image: ghcr.io/acme/{name}:1.2.3\n          ports:\n            - containerPort: 8080\n          resources:\n            limits: {{cpu: 500m, memory: 256Mi}}\n            requests: {{cpu: 100m, memory: 128Mi}}\n          env:\n            - name: MODE\n              value: production\n"
    )
}

fn service(name: &str, port: usize, wrong: bool) -> String {
    let annotation = if wrong {
        "  annotations:\n    example.com/port: 8080\n"
    } else {
        ""
    };
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{annotation}  labels:\n    app.kubernetes.io/name: {name}\nspec:\n  selector:\n    app.kubernetes.io/name: {name}\n  ports:\n    - name: http\n      port: {port}\n      targetPort: 8080\n"
    )
}
