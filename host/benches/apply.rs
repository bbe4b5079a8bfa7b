//! Benchmark (not a test): applying 1,000 objects (200 Deployments, 400 ConfigMaps, 400
//! Services across 10 namespaces) to a real control plane with kitsync (10 kits at once) and
//! with `kubectl apply --server-side` on the same files, then a no-op resync's time and writes.
//!
//! Run with `cargo bench -p kitsync --bench apply` (needs the control plane; kubectl optional).

use kitsync::Object;
use kitsync::apply::{Applier, Outcome, Target};
use kitsync_harness::{ControlPlane, Options};
use std::path::Path;
use std::time::{Duration, Instant};

/// The allocator the `kitsync` binary uses, so in-process figures are the binary's (its arena
/// setting, `kitsync::allocator`, only changes memory, which these benches do not measure).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 10;

fn objects(namespace: &str) -> String {
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {namespace}\n  labels: {{app: app-{i}}}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/app:1.{i}.0\n          ports: [{{containerPort: 8080}}]\n          resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}\n"
        ));
    }
    for i in 0..40 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\n  namespace: {namespace}\ndata:\n  setting: \"{i}\"\n  mode: production\n"
        ));
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: {namespace}\nspec:\n  selector: {{app: app-{}}}\n  ports: [{{name: http, port: {}, targetPort: 8080}}]\n",
            i % 20,
            2000 + i
        ));
    }
    text
}

/// Writes recorded by the audit log so far that kitsync (not kubectl, not controllers) sent.
fn kitsync_writes(audit: &Path) -> usize {
    let log = std::fs::read_to_string(audit).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| {
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("fieldManager=kitsync"))
        })
        .filter(|e| !e["requestURI"].as_str().is_some_and(|u| u.contains("dryRun=")))
        .count()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let plane = match ControlPlane::start(Options::default()) {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("apply benchmark skipped: the control plane did not start: {e}");
            return;
        }
    };
    let files = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let applier = Applier::new(plane.config().await.expect("config")).expect("applier");
        let kits: Vec<(Target, Vec<Object>)> = (0..NAMESPACES)
            .map(|i| {
                let ns = format!("bench-kitsync-{i}");
                let text = objects(&ns);
                let objects = kitsync::manifest::parse("bench.yaml", &text).expect("parses");
                let target = Target {
                    kit: ns.clone(),
                    namespace: ns,
                    host_namespace: "kitsync-system".into(),
                    service_account: None,
                    cluster_scoped_allowed: false,
                    revision: "bench".into(),
                    prune: true,
                    force: false,
                    recreate: false,
                    removed: false,
                    prune_crds: false,
                };
                (target, objects)
            })
            .collect();
        for i in 0..NAMESPACES {
            let ns = format!("bench-kubectl-{i}");
            std::fs::write(files.path().join(format!("{ns}.yaml")), objects(&ns)).expect("write");
        }

        let run_all = || async {
            let started = Instant::now();
            let reports = futures::future::join_all(kits.iter().map(|(t, o)| applier.apply(t, o.clone()))).await;
            let elapsed = started.elapsed();
            let mut counts = (0, 0);
            for report in reports {
                for (_, outcome) in report.expect("apply").objects {
                    match outcome {
                        Outcome::Applied => counts.0 += 1,
                        Outcome::Unchanged => counts.1 += 1,
                        _ => {}
                    }
                }
            }
            (elapsed, counts)
        };
        let (first, (applied, _)) = run_all().await;
        let before = kitsync_writes(plane.audit_log_path());
        let (noop, (_, unchanged)) = run_all().await;
        let noop_writes = kitsync_writes(plane.audit_log_path()) - before;
        println!("apply: {} objects in {NAMESPACES} namespaces", applied);
        println!("  kitsync (10 kits at once):      {first:>9.1?}");
        println!("  kitsync no-op resync:           {noop:>9.1?}  ({unchanged} unchanged, {noop_writes} writes)   goal: 0 writes");

        let kubectl_ok = std::process::Command::new("kubectl").arg("version").arg("--client").output().is_ok();
        if !kubectl_ok {
            println!("  kubectl apply --server-side:    (kubectl not installed; skipped)");
            return;
        }
        let admin = plane.client().await.expect("client");
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(admin);
        for i in 0..NAMESPACES {
            let ns: k8s_openapi::api::core::v1::Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": format!("bench-kubectl-{i}")}})).expect("ns");
            namespaces.create(&Default::default(), &ns).await.expect("namespace");
        }
        let kubectl = || {
            let started = Instant::now();
            let out = std::process::Command::new("kubectl")
                .args(["apply", "--server-side", "-f"])
                .arg(files.path())
                .env("KUBECONFIG", plane.kubeconfig_path())
                .output()
                .expect("kubectl runs");
            assert!(out.status.success(), "kubectl: {}", String::from_utf8_lossy(&out.stderr));
            started.elapsed()
        };
        let kubectl_first = kubectl();
        let kubectl_again = kubectl();
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "  kubectl apply --server-side:    {kubectl_first:>9.1?}  (kitsync {:.1}x faster; goal >= 3x)",
            ratio(first, kubectl_first)
        );
        println!(
            "  kubectl, same files again:      {kubectl_again:>9.1?}  (kitsync no-op {:.1}x faster)",
            ratio(noop, kubectl_again)
        );
    });
}
