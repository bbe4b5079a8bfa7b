//! Issue 12, drift: hand edits and deletions of applied objects, corrected with `selfHeal` or
//! reported without it; fields of other managers and status updates are not drift; a fight
//! backs off; a Job its TTL controller deletes is not re-created. Real control plane, real Git.

use super::git;
use super::serve::{Repo, Service, config_map, suffix, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service as KubeService};
use kitsync::serve::HostConfig;
use kitsync_harness::ControlPlane;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

/// A repository with one kit `name` in `ns` holding `files` (path in the kit, text).
fn kit_repo(name: &str, ns: &str, kit_yaml_extra: &str, files: &[(&str, String)]) -> Repo {
    let repo = Repo {
        dir: tempfile::tempdir().expect("repo"),
    };
    git(repo.path(), &["init", "-q"]);
    repo.write(
        &format!("kits/{name}/kit.yaml"),
        &format!("namespace: {ns}\n{kit_yaml_extra}"),
    );
    for (path, text) in files {
        repo.write(&format!("kits/{name}/{path}"), text);
    }
    repo
}

fn config(repo: &Repo, id: &str, cache: &std::path::Path) -> HostConfig {
    let text = format!(
        "hostNamespace: kitsync-{id}\ncacheDir: {}\nretry: {{initial: 1s, max: 4s}}\nsources:\n  - name: gitops\n    url: {}\n    interval: 1h\n",
        cache.display(),
        repo.url()
    );
    let file = cache.join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    HostConfig::load(&file).expect("host config parses")
}

/// A hand edit as `kubectl edit` makes it: an Update by another field manager.
fn by_hand() -> PatchParams {
    PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    }
}

async fn port(api: &Api<KubeService>, name: &str) -> Option<i32> {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.spec?.ports?.first().map(|p| p.port))
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - name: http\n      port: 6776\n      targetPort: 8080\n";
const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: registry.example/web:1\n";
const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  ttlSecondsAfterFinished: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: registry.example/migrate:1\n";

/// selfHeal (the default): a hand-edited Service port is corrected within 2 s, a deleted
/// ConfigMap comes back, replicas set by an autoscaler-like actor and status updates are left
/// alone, and a Job its TTL controller deletes is not re-created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_heal_corrects_edits_and_deletions_and_leaves_others_fields_alone() {
    let id = suffix("d");
    let ns = format!("heal-{id}");
    let repo = kit_repo(
        "shop",
        &ns,
        "",
        &[
            ("service.yaml", SERVICE.into()),
            ("config.yaml", CONFIG_MAP.into()),
            ("deployment.yaml", DEPLOYMENT.into()),
            ("job.yaml", JOB.into()),
        ],
    );
    let commit = repo.commit("shop");
    let cache = tempfile::tempdir().expect("cache");
    let service = Service::start(config(&repo, &id, cache.path())).await;
    service.wait_applied("shop", &commit).await;
    let client = ControlPlane::shared().client().await.expect("client");
    let services: Api<KubeService> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    // The watches start with the kit's tracking; give them a moment to list.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A hand edit of the port: corrected within 2 s.
    let edit = json!({"spec": {"ports": [{"name": "http", "port": 1234, "targetPort": 8080}]}});
    services
        .patch("web", &by_hand(), &Patch::Merge(&edit))
        .await
        .expect("hand edit");
    let edited = Instant::now();
    assert_eq!(port(&services, "web").await, Some(1234));
    wait_for("the port corrected", async || {
        (port(&services, "web").await == Some(6776)).then_some(())
    })
    .await;
    let took = edited.elapsed();
    eprintln!("hand edit corrected after {took:?}");
    assert!(took < Duration::from_secs(2), "corrected after {took:?}");

    // A deleted ConfigMap is created again.
    config_maps
        .delete("settings", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the ConfigMap re-created", async || {
        config_map(&ns, "settings").await
    })
    .await;

    // Another manager's field (replicas, which the kit does not set) and a status update
    // are not drift: nothing is written back.
    let hpa = PatchParams::apply("hpa-controller").force();
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    deployments
        .patch("web", &hpa, &Patch::Apply(&scale))
        .await
        .expect("scale");
    let status = json!({"status": {"replicas": 5, "observedGeneration": 99, "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "test"}]}});
    deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = deployments.get("web").await.expect("deployment");
    assert_eq!(live.spec.replicas, Some(5), "replicas stay the autoscaler's");
    let notes = super::serve::event_notes(&format!("kitsync-{id}"), "shop").await;
    assert!(
        !notes.iter().any(|(_, note)| note.contains("Deployment")),
        "no drift reported or corrected for the Deployment: {notes:?}"
    );
    let kit = service.kit("shop").await.expect("kit");
    assert!(
        kit.status
            .condition("Drifted")
            .is_none_or(|c| c.status == "False"),
        "{:?}",
        kit.status.conditions
    );

    // A Job deleted after finishing by its TTL controller (played here: a status, then a
    // delete) is not re-created.
    let finished =
        json!({"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}});
    let _ = jobs
        .patch_status("migrate", &PatchParams::default(), &Patch::Merge(&finished))
        .await;
    jobs.delete("migrate", &DeleteParams::background())
        .await
        .expect("delete job");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        jobs.get_opt("migrate").await.expect("get job").is_none(),
        "the finished Job is not re-created"
    );
    service.stop().await;
}

/// selfHeal off: a hand edit is reported (Kit condition Drifted, an Event) and left; undoing
/// it clears the condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_self_heal_drift_is_reported_not_corrected() {
    let id = suffix("r");
    let ns = format!("report-{id}");
    let repo = kit_repo(
        "shop",
        &ns,
        "selfHeal: false\n",
        &[("service.yaml", SERVICE.into())],
    );
    let commit = repo.commit("shop");
    let cache = tempfile::tempdir().expect("cache");
    let service = Service::start(config(&repo, &id, cache.path())).await;
    service.wait_applied("shop", &commit).await;
    let client = ControlPlane::shared().client().await.expect("client");
    let services: Api<KubeService> = Api::namespaced(client.clone(), &ns);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let edit = json!({"spec": {"ports": [{"name": "http", "port": 1234, "targetPort": 8080}]}});
    services
        .patch("web", &by_hand(), &Patch::Merge(&edit))
        .await
        .expect("hand edit");
    let kit = service.wait_kit_condition("shop", "Drifted", "True").await;
    let message = kit
        .status
        .condition("Drifted")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("Service") && message.contains("web"),
        "{message}"
    );
    assert!(
        message.contains("kubectl-edit"),
        "names who changed it: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(port(&services, "web").await, Some(1234), "not corrected");
    let events = super::serve::events(&format!("kitsync-{id}"), "shop").await;
    assert!(events.iter().any(|e| e == "Drifted"), "{events:?}");

    // Undone by hand: in sync again.
    let undo = json!({"spec": {"ports": [{"name": "http", "port": 6776, "targetPort": 8080}]}});
    services
        .patch("web", &by_hand(), &Patch::Merge(&undo))
        .await
        .expect("undo");
    service.wait_kit_condition("shop", "Drifted", "False").await;
    service.stop().await;
}

/// Another actor that keeps changing a field kitsync set: corrections back off instead of
/// looping, and the fight is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fight_backs_off_and_is_reported() {
    let id = suffix("f");
    let ns = format!("fight-{id}");
    let repo = kit_repo("shop", &ns, "", &[("config.yaml", CONFIG_MAP.into())]);
    let commit = repo.commit("shop");
    let cache = tempfile::tempdir().expect("cache");
    let service = Service::start(config(&repo, &id, cache.path())).await;
    service.wait_applied("shop", &commit).await;
    let client = ControlPlane::shared().client().await.expect("client");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The other side sets mode=slow every 200 ms for 8 s.
    let slow = json!({"data": {"mode": "slow"}});
    let mut corrections = 0;
    let mut last = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let _ = config_maps
            .patch("settings", &by_hand(), &Patch::Merge(&slow))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mode = config_map(&ns, "settings")
            .await
            .and_then(|c| c.data?.get("mode").cloned())
            .unwrap_or_default();
        if mode == "fast" && last != "fast" {
            corrections += 1;
        }
        last = mode;
    }
    eprintln!("corrections seen in 8 s of fighting: {corrections}");
    assert!(corrections >= 1, "kitsync corrected at least once");
    assert!(corrections <= 8, "no hot loop: {corrections} corrections in 8 s");
    let events = super::serve::events(&format!("kitsync-{id}"), "shop").await;
    assert!(events.iter().any(|e| e == "DriftCorrected"), "{events:?}");
    let kit = service.kit("shop").await.expect("kit");
    let drifted = kit
        .status
        .condition("Drifted")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        drifted.contains("changed again"),
        "the fight is reported: {drifted}"
    );
    service.stop().await;
}

/// A kit whose newest commit fails to render keeps its last applied revision on the cluster:
/// drift of that revision is still corrected, and its health verdict stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_render_keeps_the_last_revision_healed_and_healthy() {
    let id = suffix("b");
    let ns = format!("broken-{id}");
    let repo = kit_repo("shop", &ns, "", &[("config.yaml", CONFIG_MAP.into())]);
    let commit = repo.commit("shop");
    let cache = tempfile::tempdir().expect("cache");
    let mut config = config(&repo, &id, cache.path());
    config.sources[0].interval = Duration::from_secs(1);
    let service = Service::start(config).await;
    service.wait_applied("shop", &commit).await;
    service.wait_kit_condition("shop", "Healthy", "True").await;
    repo.write(
        "kits/shop/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [broken\n",
    );
    let _ = repo.commit("broken");
    service.wait_kit_condition("shop", "Stalled", "True").await;

    let client = ControlPlane::shared().client().await.expect("client");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &ns);
    let slow = json!({"data": {"mode": "slow"}});
    config_maps
        .patch("settings", &by_hand(), &Patch::Merge(&slow))
        .await
        .expect("hand edit");
    wait_for("the edit corrected", async || {
        let cm = config_map(&ns, "settings").await?;
        (cm.data?.get("mode")?.as_str() == "fast").then_some(())
    })
    .await;
    let kit = service.kit("shop").await.expect("kit");
    assert_eq!(
        kit.status.condition("Healthy").map(|c| c.status.as_str()),
        Some("True"),
        "the applied revision is still healthy: {:?}",
        kit.status.conditions
    );
    service.stop().await;
}
