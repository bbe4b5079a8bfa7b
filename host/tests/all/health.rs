//! The health wait against the real control plane. It runs kube-apiserver and a
//! kube-controller-manager with only the namespace, garbage-collector and service-account
//! controllers (tests/harness): no scheduler, no kubelet, no deployment or job controller.
//! So pods never run and each test plays the workload controller itself, writing the
//! status subresource the way that controller would.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kitsync::ObjectRef;
use kitsync::health::{Error, Outcome, Waiter};
use kitsync_harness::ControlPlane;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn admin() -> kube::Client {
    ControlPlane::shared().client().await.expect("client")
}

async fn namespace(prefix: &str) -> String {
    ControlPlane::shared().namespace(prefix).await.expect("namespace")
}

fn id(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(str::to_owned),
        name: name.into(),
    }
}

/// Server-side applies `body` as the test's field manager.
async fn create<K>(api: &Api<K>, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = body["metadata"]["name"].as_str().expect("name").to_owned();
    api.patch(&name, &PatchParams::apply("health-test"), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

fn deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
}

/// Plays the deployment controller: `available` of `replicas` pods up, the latest
/// generation observed (read from the server, so the status is never stale by design).
async fn deployment_status(api: &Api<Deployment>, name: &str, replicas: i32, available: i32) {
    let generation = api
        .get(name)
        .await
        .expect("deployment")
        .metadata
        .generation
        .expect("generation");
    let status = json!({"status": {"observedGeneration": generation, "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": available, "availableReplicas": available,
        "unavailableReplicas": replicas - available}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status written");
}

/// Runs a wait in its own task, so the test can act while it waits.
fn spawn_wait(
    waiter: &Arc<Waiter>,
    objects: Vec<ObjectRef>,
    timeout: Duration,
    cancel: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<Outcome, Error>> {
    let waiter = Arc::clone(waiter);
    tokio::spawn(async move { waiter.wait(&objects, timeout, cancel).await })
}

/// Asserts the wait is still waiting `for_` after it started: it neither returned early
/// nor failed. A bounded check, not a synchronisation sleep.
async fn still_waiting(handle: &mut tokio::task::JoinHandle<Result<Outcome, Error>>, for_: Duration) {
    if let Ok(done) = tokio::time::timeout(for_, &mut *handle).await {
        panic!("the wait ended early: {done:?}");
    }
}

async fn finished(handle: tokio::task::JoinHandle<Result<Outcome, Error>>, within: Duration) -> Outcome {
    tokio::time::timeout(within, handle)
        .await
        .unwrap_or_else(|_| panic!("the wait did not end within {within:?}"))
        .expect("the wait task did not panic")
        .expect("the wait saw the objects")
}

#[tokio::test]
async fn a_config_map_is_healthy_at_once() {
    let ns = namespace("health-cm").await;
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    create(&cms, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})).await;
    let started = Instant::now();
    let outcome = Waiter::new(admin().await)
        .wait(
            &[id("v1", "ConfigMap", Some(&ns), "settings")],
            Duration::from_secs(30),
            pending(),
        )
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::Healthy);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unavailable_deployment_times_out_with_its_reason_then_becomes_healthy_when_available() {
    let ns = namespace("health-deploy").await;
    let deployments: Api<Deployment> = Api::namespaced(admin().await, &ns);
    create(&deployments, deployment("web", 3)).await;
    deployment_status(&deployments, "web", 3, 1).await;
    let web = id("apps/v1", "Deployment", Some(&ns), "web");
    let waiter = Arc::new(Waiter::new(admin().await));

    let started = Instant::now();
    let outcome = waiter
        .wait(std::slice::from_ref(&web), Duration::from_secs(2), pending())
        .await
        .expect("wait");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "waited the whole timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "and not much longer: {elapsed:?}"
    );
    let Outcome::TimedOut { after, pending: left } = &outcome else {
        panic!("expected a timeout, got {outcome:?}");
    };
    assert_eq!(*after, Duration::from_secs(2));
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, web);
    // The status written above says "1 of 3 replicas available". Were a deployment controller
    // ever enabled in the harness, it would rewrite the counts from its (pod-less)
    // ReplicaSet ("0 of 3 replicas updated"): the assertion accepts any count of the 3.
    assert!(left[0].1.contains("of 3 replicas"), "{}", left[0].1);
    assert!(
        outcome
            .to_string()
            .starts_with("timed out after 2s: Deployment web: "),
        "{outcome}"
    );

    // Waiting again, the controller (the test) makes it available: the wait ends Healthy.
    // A controller overwriting this status afterwards could not undo what the watch saw.
    let mut handle = spawn_wait(&waiter, vec![web], Duration::from_secs(120), pending());
    still_waiting(&mut handle, Duration::from_millis(500)).await;
    let patched = Instant::now();
    deployment_status(&deployments, "web", 3, 3).await;
    assert_eq!(finished(handle, Duration::from_secs(20)).await, Outcome::Healthy);
    assert!(
        patched.elapsed() < Duration::from_secs(10),
        "{:?}",
        patched.elapsed()
    );
}

#[tokio::test]
async fn a_newer_revision_cancels_the_wait_promptly() {
    let ns = namespace("health-cancel").await;
    let deployments: Api<Deployment> = Api::namespaced(admin().await, &ns);
    // Never observed by a controller: it would wait the whole timeout.
    create(&deployments, deployment("web", 2)).await;
    let waiter = Arc::new(Waiter::new(admin().await));
    let (newer, mut revisions) = tokio::sync::watch::channel("v1");
    let cancel = async move {
        let _ = revisions.changed().await;
    };
    let mut handle = spawn_wait(
        &waiter,
        vec![id("apps/v1", "Deployment", Some(&ns), "web")],
        Duration::from_secs(300),
        cancel,
    );
    still_waiting(&mut handle, Duration::from_millis(500)).await;
    let sent = Instant::now();
    newer.send("v2").expect("the wait listens");
    assert_eq!(finished(handle, Duration::from_secs(5)).await, Outcome::Cancelled);
    assert!(sent.elapsed() < Duration::from_secs(1), "{:?}", sent.elapsed());
}

#[tokio::test]
async fn a_deployment_past_its_progress_deadline_fails_the_wait_early() {
    let ns = namespace("health-failed").await;
    let deployments: Api<Deployment> = Api::namespaced(admin().await, &ns);
    create(&deployments, deployment("web", 2)).await;
    let generation = deployments
        .get("web")
        .await
        .expect("deployment")
        .metadata
        .generation;
    let status = json!({"status": {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2,
        "unavailableReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-5d8f\" has timed out progressing.",
            "lastUpdateTime": "2025-01-07T10:10:00Z", "lastTransitionTime": "2025-01-07T10:10:00Z"}]}});
    deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    let started = Instant::now();
    let outcome = Waiter::new(admin().await)
        .wait(
            &[id("apps/v1", "Deployment", Some(&ns), "web")],
            Duration::from_secs(120),
            pending(),
        )
        .await
        .expect("wait");
    let Outcome::Failed { object, reason } = outcome else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert_eq!(object.name, "web");
    assert!(reason.contains("progress deadline exceeded"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_complete_job_is_healthy_and_a_job_deleted_after_running_counts_as_finished() {
    let ns = namespace("health-job").await;
    let jobs: Api<Job> = Api::namespaced(admin().await, &ns);
    let job = |name: &str| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "migrate", "image": "busybox:1.36", "command": ["true"]}]}}}})
    };
    create(&jobs, job("migrate")).await;
    create(&jobs, job("seed")).await;
    let migrate = id("batch/v1", "Job", Some(&ns), "migrate");
    let seed = id("batch/v1", "Job", Some(&ns), "seed");
    let waiter = Waiter::new(admin().await);

    // Not run yet (there is no job controller): pending.
    let outcome = waiter
        .wait(std::slice::from_ref(&migrate), Duration::from_secs(1), pending())
        .await
        .expect("wait");
    assert_eq!(
        outcome,
        Outcome::TimedOut {
            after: Duration::from_secs(1),
            pending: vec![(migrate.clone(), "not started".into())],
        }
    );

    // The job controller's status for a Job that ran once and succeeded.
    let status = json!({"status": {"startTime": "2025-01-07T10:00:00Z", "completionTime": "2025-01-07T10:00:09Z",
        "succeeded": 1, "active": 0, "ready": 0, "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2025-01-07T10:00:09Z", "lastTransitionTime": "2025-01-07T10:00:09Z"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2025-01-07T10:00:09Z", "lastTransitionTime": "2025-01-07T10:00:09Z"}]}});
    jobs.patch_status("migrate", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("job status");
    // `seed` ran and its TTL controller deleted it: gone counts as finished.
    jobs.delete("seed", &DeleteParams::background())
        .await
        .expect("delete");
    let outcome = waiter
        .wait(&[migrate, seed], Duration::from_secs(30), pending())
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::Healthy);
}

#[tokio::test]
async fn a_crd_is_established_by_the_api_server_and_its_resource_follows_its_ready_condition() {
    let ns = namespace("health-crd").await;
    let group = format!("{ns}.kitsync.dev");
    let crd_name = format!("gadgets.{group}");
    let crds: Api<DynamicObject> = Api::all_with(
        admin().await,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    create(&crds, json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}))
    .await;
    let waiter = Waiter::new(admin().await);
    let crd = id(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        &crd_name,
    );
    let outcome = waiter
        .wait(&[crd], Duration::from_secs(60), pending())
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::Healthy, "the API server establishes it");

    // An operator's resource: Ready False keeps it pending, whatever the reason says.
    let gadgets: Api<DynamicObject> = Api::namespaced_with(
        admin().await,
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Gadget")),
    );
    create(
        &gadgets,
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "g"}, "spec": {"size": 3}}),
    )
    .await;
    let ready = |status: &str, reason: &str| {
        json!({"status": {"conditions": [{"type": "Ready", "status": status, "reason": reason,
            "observedGeneration": 1, "message": "gadget controller says so"}]}})
    };
    gadgets
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&ready("False", "Failed")),
        )
        .await
        .expect("status");
    let gadget = id(&format!("{group}/v1"), "Gadget", Some(&ns), "g");
    let outcome = waiter
        .wait(std::slice::from_ref(&gadget), Duration::from_secs(1), pending())
        .await
        .expect("wait");
    assert_eq!(
        outcome,
        Outcome::TimedOut {
            after: Duration::from_secs(1),
            pending: vec![(
                gadget.clone(),
                "Ready is False: Failed: gadget controller says so".into()
            )],
        }
    );
    gadgets
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&ready("True", "Ready")),
        )
        .await
        .expect("status");
    let outcome = waiter
        .wait(&[gadget], Duration::from_secs(30), pending())
        .await
        .expect("wait");
    assert_eq!(outcome, Outcome::Healthy);
    crds.delete(&crd_name, &DeleteParams::default())
        .await
        .expect("clean up the CRD");
}

#[tokio::test]
async fn one_watch_slot_serves_many_kinds_and_objects_of_one_kind_share_a_watch() {
    let ns = namespace("health-many").await;
    let client = admin().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    // Two applied Deployments, one watch (the kind in the namespace); a third Deployment
    // nobody asked about is never available and must not matter.
    for name in ["web", "api", "someone-elses"] {
        create(&deployments, deployment(name, 2)).await;
    }
    deployment_status(&deployments, "web", 2, 2).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}),
    )
    .await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
    create(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let objects = vec![
        id("v1", "ConfigMap", Some(&ns), "settings"),
        id("apps/v1", "Deployment", Some(&ns), "web"),
        id("v1", "Service", Some(&ns), "web"),
        id("apps/v1", "Deployment", Some(&ns), "api"),
        id("rbac.authorization.k8s.io/v1", "Role", Some(&ns), "never-created"),
    ];
    // One watch at a time: the queue must drain as kinds settle.
    let waiter = Arc::new(Waiter::new(client).with_max_watches(1));
    let outcome = waiter
        .wait(&objects, Duration::from_secs(2), pending())
        .await
        .expect("wait");
    // The ConfigMap settles and frees the slot; the Deployments' watch never settles (api
    // is unavailable), so with one slot the Service and the Role are never watched: they
    // stay "not seen yet", and the timeout says so.
    assert_eq!(
        outcome,
        Outcome::TimedOut {
            after: Duration::from_secs(2),
            pending: vec![
                (objects[3].clone(), "not yet observed by its controller".into()),
                (objects[4].clone(), "not seen yet".into()),
                (objects[2].clone(), "not seen yet".into()),
            ],
        }
    );

    // With room for every kind the missing Role is found missing; once api is available
    // and the Role exists, everything is Healthy.
    let waiter = Arc::new(Waiter::new(admin().await));
    let mut handle = spawn_wait(&waiter, objects.clone(), Duration::from_secs(120), pending());
    still_waiting(&mut handle, Duration::from_millis(500)).await;
    deployment_status(&deployments, "api", 2, 2).await;
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin().await, &ns);
    create(
        &roles,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "never-created"}, "rules": []}),
    )
    .await;
    assert_eq!(finished(handle, Duration::from_secs(20)).await, Outcome::Healthy);
}

#[tokio::test]
async fn a_missing_object_is_pending_as_not_found() {
    let ns = namespace("health-missing").await;
    let gone = id("v1", "ConfigMap", Some(&ns), "gone");
    let outcome = Waiter::new(admin().await)
        .wait(std::slice::from_ref(&gone), Duration::from_secs(1), pending())
        .await
        .expect("wait");
    assert_eq!(
        outcome,
        Outcome::TimedOut {
            after: Duration::from_secs(1),
            pending: vec![(gone, "not found".into())],
        }
    );
}

#[tokio::test]
async fn a_kind_the_cluster_does_not_serve_is_an_error_not_a_wait() {
    let ns = namespace("health-unknown").await;
    let started = Instant::now();
    let error = Waiter::new(admin().await)
        .wait(
            &[id("nothing.kitsync.dev/v1", "Gadget", Some(&ns), "g")],
            Duration::from_secs(60),
            pending(),
        )
        .await
        .expect_err("unknown kind");
    assert!(matches!(error, Error::UnknownKind { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let error = Waiter::new(admin().await)
        .wait(
            &[id("apps/v1", "Deployment", None, "web")],
            Duration::from_secs(60),
            pending(),
        )
        .await
        .expect_err("no namespace");
    assert!(matches!(error, Error::NoNamespace { .. }), "{error:?}");
}

#[tokio::test]
async fn a_reader_without_list_and_watch_rights_is_rejected_at_once() {
    let ns = namespace("health-rbac").await;
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    create(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}),
    )
    .await;
    // alice is authenticated (so discovery works) but holds no role.
    let alice = ControlPlane::shared().user_client("alice").await.expect("alice");
    let started = Instant::now();
    let error = Waiter::new(alice)
        .wait(
            &[id("v1", "ConfigMap", Some(&ns), "settings")],
            Duration::from_secs(60),
            pending(),
        )
        .await
        .expect_err("forbidden");
    assert!(matches!(error, Error::Rejected { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&format!("reading ConfigMap in namespace {ns}")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// An API server nobody listens for (a closed loopback port) stands in for one that went
/// away: the real one cannot be stopped under the other tests sharing it.
#[tokio::test]
async fn an_unreachable_api_server_is_unavailability_not_a_timeout() {
    let mut config = ControlPlane::shared().config().await.expect("config");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("url");
    let client = kube::Client::try_from(config).expect("client");
    let error = Waiter::new(client)
        .wait(
            &[id("v1", "ConfigMap", Some("default"), "settings")],
            Duration::from_secs(30),
            pending(),
        )
        .await
        .expect_err("nobody answers");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
}

/// Real-world manifests (`KITSYNC_CORPUS`) as they are right after an apply, before any
/// controller wrote a status: workloads and the kinds that wait for something are pending,
/// everything else is ready for existing, and nothing is Failed.
#[test]
fn corpus_manifests_fresh_from_apply_are_pending_only_where_a_controller_must_act() {
    use kitsync::health::{Health, assess};
    let Some(root) = std::env::var_os("KITSYNC_CORPUS").map(std::path::PathBuf::from) else {
        eprintln!("KITSYNC_CORPUS is not set: the corpus health test did not run");
        return;
    };
    let mut files = Vec::new();
    super::corpus::yaml_files(&root, &mut files);
    let (mut pending, mut current) = (std::collections::BTreeMap::new(), 0);
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(objects) = kitsync::manifest::parse(&file.display().to_string(), &text) else {
            continue;
        };
        for object in objects {
            let kind = object.id.kind.as_str();
            let waits = match kind {
                "Deployment"
                | "StatefulSet"
                | "DaemonSet"
                | "ReplicaSet"
                | "Job"
                | "Pod"
                | "PersistentVolumeClaim"
                | "CustomResourceDefinition" => true,
                "Service" => {
                    object.value.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
                }
                _ => false,
            };
            match assess(&object.value) {
                Health::Current => {
                    assert!(
                        !waits,
                        "{} in {}: Current before any controller acted",
                        object.id,
                        file.display()
                    );
                    current += 1;
                }
                Health::InProgress { reason } => {
                    assert!(
                        waits,
                        "{} in {}: pending ({reason}) for no reason",
                        object.id,
                        file.display()
                    );
                    *pending.entry(kind.to_owned()).or_insert(0) += 1;
                }
                Health::Failed { reason } => panic!("{} in {}: Failed: {reason}", object.id, file.display()),
            }
        }
    }
    eprintln!("corpus health: {current} current, pending by kind {pending:?}");
    assert!(pending.get("Deployment").is_some_and(|n| *n > 10), "{pending:?}");
    assert!(current > 100, "{current}");
}

/// The service waits for a revision's objects after applying it: a Deployment kept
/// unavailable keeps the Kit un-Healthy until the kit's timeout, then Failed with the reason;
/// made available during the wait, the revision converges; a newer commit cancels a wait in
/// progress (the older revision records no verdict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_health_converges_times_out_and_cancels() {
    use super::serve::{Repo, Service, event_notes, suffix};
    let id = suffix("hl");
    let ns = format!("health-{id}");
    let repo = Repo {
        dir: tempfile::tempdir().expect("repo"),
    };
    super::git(repo.path(), &["init", "-q"]);
    let deployment = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
        )
    };
    let commit = |timeout: &str, image: &str, subject: &str| {
        repo.write(
            "kits/web/kit.yaml",
            &format!("namespace: {ns}\ntimeout: {timeout}\n"),
        );
        repo.write("kits/web/deployment.yaml", &deployment(image));
        repo.commit(subject)
    };
    let v1 = commit("60s", "registry.example/web:1", "v1");
    let cache = tempfile::tempdir().expect("cache");
    let text = format!(
        "hostNamespace: kitsync-{id}\ncacheDir: {}\nsources:\n  - name: gitops\n    url: {}\n    interval: 1s\n",
        cache.path().display(),
        repo.url()
    );
    let file = cache.path().join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    let service = Service::start(kitsync::serve::HostConfig::load(&file).expect("host config")).await;
    service.wait_applied("web", &v1).await;
    let healthy = |kit: &kitsync::status::KitObject| {
        kit.status
            .condition("Healthy")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            .unwrap_or_default()
    };
    // Waiting: the local control plane runs no deployment controller, so nothing is ready
    // until the test writes the status a controller would.
    let kit = service.wait_kit_condition("web", "Healthy", "False").await;
    assert_eq!(healthy(&kit).1, "Progressing", "{:?}", healthy(&kit));
    let deployments: Api<Deployment> = Api::namespaced(admin().await, &ns);
    deployment_status(&deployments, "web", 1, 1).await;
    let kit = service.wait_kit_condition("web", "Healthy", "True").await;
    let (_, reason, message) = healthy(&kit);
    assert_eq!(reason, "Converged");
    assert!(message.contains(&v1[..12]), "{message}");

    // v2 starts a long wait; v3 arrives during it and cancels it; v3 times out after 3 s.
    let v2 = commit("60s", "registry.example/web:2", "v2");
    service
        .wait_kit("web", "v2 waiting", |k| {
            healthy(k).1 == "Progressing" && healthy(k).2.contains(&v2[..12])
        })
        .await;
    let v3 = commit("3s", "registry.example/web:3", "v3");
    let started = std::time::Instant::now();
    let kit = service
        .wait_kit("web", "v3 timed out", |k| healthy(k).1 == "HealthCheckTimeout")
        .await;
    let (status, _, message) = healthy(&kit);
    assert_eq!(status, "False");
    assert!(message.contains(&v3[..12]), "{message}");
    assert!(message.contains("timed out after 3s"), "{message}");
    assert!(
        message.contains("Deployment") && message.contains("web"),
        "names the object: {message}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let notes = event_notes(&format!("kitsync-{id}"), "web").await;
    assert!(
        !notes
            .iter()
            .any(|(reason, note)| reason.starts_with("HealthCheck") && note.contains(&v2[..12])),
        "the cancelled wait of v2 recorded nothing: {notes:?}"
    );
    service.stop().await;
}
