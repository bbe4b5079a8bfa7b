//! The apply engine against the real control plane (etcd + kube-apiserver from
//! `tests/control-plane`): create, the seed update, prune and its guards, collisions,
//! CRDs, field-manager conflicts, impersonation, and `kitsync sync` from the CLI.

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kitsync::Object;
use kitsync::apply::{Applier, Error, Outcome, Target};
use kitsync_harness::ControlPlane;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

async fn applier() -> Applier {
    let plane = ControlPlane::shared();
    Applier::new(plane.config().await.expect("config")).expect("applier")
}

fn target(ns: &str) -> Target {
    Target {
        kit: ns.to_owned(),
        namespace: ns.to_owned(),
        host_namespace: "kitsync-system".into(),
        service_account: None,
        cluster_scoped_allowed: false,
        revision: "v5".into(),
        prune: true,
        force: false,
        recreate: false,
        removed: false,
        prune_crds: false,
    }
}

fn config_map(name: &str, data: serde_json::Value) -> Object {
    Object::new(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
        None,
    )
    .expect("identity")
}

fn vision(port: u16) -> Vec<Object> {
    let yaml = super::VISION.replace("port: 6776", &format!("port: {port}"));
    kitsync::manifest::parse("vision.yaml", &yaml)
        .expect("parses")
        .into_iter()
        .map(|mut o| {
            // The fixture names the namespace `manufracture`; each test has its own.
            if let Some(m) = o.value["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            o.id.namespace = None;
            o
        })
        .collect()
}

async fn admin() -> kube::Client {
    ControlPlane::shared().client().await.expect("client")
}

#[tokio::test]
async fn create_then_the_seed_update_then_prune() {
    let ns = ControlPlane::shared()
        .namespace("apply-seed")
        .await
        .expect("namespace");
    let applier = applier().await;
    let mut t = target(&ns);

    let report = applier.apply(&t, vision(6776)).await.expect("create");
    assert_eq!(
        report
            .objects
            .iter()
            .filter(|(_, o)| *o == Outcome::Applied)
            .count(),
        2
    );
    assert_eq!(report.inventory.entries.len(), 2);
    let services: Api<Service> = Api::namespaced(admin().await, &ns);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(admin().await, &ns);
    let svc = services.get("vision").await.expect("service exists");
    let labels = svc.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("kitsync.dev/kit").map(String::as_str),
        Some(ns.as_str())
    );
    // The revision lives in the inventory, not on every object: a new revision rewrites
    // only what it changes.
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("kitsync.dev/revision"), None);
    assert_eq!(report.inventory.revision.as_deref(), Some("v5"));
    let before = deployments.get("vision").await.expect("deployment");

    // v5 -> v6: the Service moves to 5445; the Deployment's spec is untouched.
    t.revision = "v6".into();
    applier.apply(&t, vision(5445)).await.expect("update");
    let svc = services.get("vision").await.expect("service");
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.first().map(|p| p.port), Some(5445));
    let after = deployments.get("vision").await.expect("deployment");
    // The Deployment is not written at all: same resourceVersion, no new generation.
    assert_eq!(before.spec, after.spec, "the Deployment spec did not change");
    assert_eq!(before.metadata.resource_version, after.metadata.resource_version);
    assert_eq!(before.metadata.generation, after.metadata.generation);

    // The inventory survives in the cluster: a new applier sees it.
    let stored = self::applier().await.inventory(&t).await.expect("inventory");
    assert_eq!(stored.entries.len(), 2);
    assert_eq!(stored.revision.as_deref(), Some("v6"));

    // Dropping the Service prunes it.
    let deployment_only: Vec<Object> = vision(5445)
        .into_iter()
        .filter(|o| o.id.kind == "Deployment")
        .collect();
    let report = applier.apply(&t, deployment_only).await.expect("prune");
    assert!(
        report
            .objects
            .iter()
            .any(|(id, o)| id.kind == "Service" && *o == Outcome::Pruned),
        "{report:?}"
    );
    assert!(
        services.get_opt("vision").await.expect("get").is_none(),
        "the Service is gone"
    );
    assert_eq!(report.inventory.entries.len(), 1);
}

#[tokio::test]
async fn prune_spares_foreign_and_disabled_objects() {
    let ns = ControlPlane::shared()
        .namespace("apply-prune")
        .await
        .expect("namespace");
    let applier = applier().await;
    let t = target(&ns);
    let all = vec![
        config_map("a", json!({"k": "a"})),
        config_map("b", json!({"k": "b"})),
        config_map("c", json!({"k": "c"})),
    ];
    applier.apply(&t, all).await.expect("create");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    // b is taken by another kit, c is marked never to prune.
    let relabel = json!({"metadata": {"labels": {"kitsync.dev/kit": "someone-else"}}});
    cms.patch("b", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("relabel");
    let keep = json!({"metadata": {"annotations": {"kitsync.dev/prune": "disabled"}}});
    cms.patch("c", &PatchParams::default(), &Patch::Merge(&keep))
        .await
        .expect("annotate");

    let report = applier
        .apply(&t, vec![config_map("a", json!({"k": "a"}))])
        .await
        .expect("apply");
    let outcome = |name: &str| {
        report
            .objects
            .iter()
            .find(|(id, _)| id.name == name)
            .map(|(_, o)| o.clone())
            .expect("reported")
    };
    assert!(matches!(outcome("b"), Outcome::Kept(why) if why.contains("someone-else")));
    assert!(matches!(outcome("c"), Outcome::Kept(why) if why.contains("disabled")));
    assert!(cms.get_opt("b").await.expect("get").is_some());
    assert!(cms.get_opt("c").await.expect("get").is_some());
    assert_eq!(report.inventory.entries.len(), 3, "kept objects stay tracked");
}

#[tokio::test]
async fn an_empty_render_does_not_prune_everything() {
    let ns = ControlPlane::shared()
        .namespace("apply-empty")
        .await
        .expect("namespace");
    let applier = applier().await;
    let mut t = target(&ns);
    applier
        .apply(&t, vec![config_map("a", json!({}))])
        .await
        .expect("create");
    let report = applier.apply(&t, Vec::new()).await.expect("apply");
    let why = report.prune_refused.expect("prune refused");
    assert!(why.contains("empty") && why.contains("1 object"), "{why}");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    assert!(
        cms.get_opt("a").await.expect("get").is_some(),
        "nothing was deleted"
    );

    // A kit removed on purpose may empty itself.
    t.removed = true;
    applier.apply(&t, Vec::new()).await.expect("remove");
    assert!(cms.get_opt("a").await.expect("get").is_none());
}

#[tokio::test]
async fn guards_refuse_before_any_write() {
    let ns = ControlPlane::shared()
        .namespace("apply-guard")
        .await
        .expect("namespace");
    let applier = applier().await;
    let mut escaping = config_map("escape", json!({}));
    escaping.value["metadata"]["namespace"] = json!("default");
    escaping.id.namespace = Some("default".into());
    let err = applier
        .apply(&target(&ns), vec![config_map("fine", json!({})), escaping])
        .await
        .expect_err("refused");
    let Error::Guard { findings, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(findings.len(), 1);
    assert!(err.to_string().contains("may only write to namespace"), "{err}");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    assert!(
        cms.get_opt("fine").await.expect("get").is_none(),
        "nothing written"
    );

    // A cluster-scoped object, which the platform did not allow this kit.
    let role = Object::new(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("{ns}-role")}, "rules": []}),
        None,
    )
    .expect("identity");
    let err = applier
        .apply(&target(&ns), vec![config_map("fine", json!({})), role])
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("is cluster-scoped"), "{err}");
    assert!(
        cms.get_opt("fine").await.expect("get").is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn an_admission_rejection_names_the_object_and_the_policy_message() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("apply-admission").await.expect("namespace");
    let client = admin().await;
    // A real admission policy (CEL, evaluated by the apiserver) for this test's namespace.
    let policy = format!("{ns}-no-forbidden");
    let apply_admin = |value: serde_json::Value| {
        let client = client.clone();
        async move {
            let (group, version) = value["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .expect("group");
            let kind = value["kind"].as_str().expect("kind").to_owned();
            let name = value["metadata"]["name"].as_str().expect("name").to_owned();
            let resource =
                kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(group, version, &kind));
            let api: Api<kube::api::DynamicObject> = Api::all_with(client, &resource);
            let object: kube::api::DynamicObject = serde_json::from_value(value).expect("object");
            api.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&object))
                .await
                .expect("apply policy");
        }
    };
    apply_admin(
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}]},
            "validations": [{"expression": "!has(object.data) || !('forbidden' in object.data)",
                "message": "configmaps may not carry a forbidden key"}]}}),
    )
    .await;
    apply_admin(
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}}),
    )
    .await;

    let applier = applier().await;
    let bad = config_map("bad", json!({"forbidden": "yes"}));
    // Policies take a moment to be loaded by the apiserver.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let err = loop {
        match applier.apply(&target(&ns), vec![bad.clone()]).await {
            Err(err) => break err,
            Ok(_) if std::time::Instant::now() < deadline => {
                let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
                let _ = cms.delete("bad", &Default::default()).await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Ok(_) => panic!("the admission policy never refused the object"),
        }
    };
    let Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failed[0].0.name, "bad");
    assert!(
        failed[0].1.contains("configmaps may not carry a forbidden key"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn another_kits_object_is_never_taken_over() {
    let ns = ControlPlane::shared()
        .namespace("apply-collide")
        .await
        .expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shared", "labels": {"kitsync.dev/kit": "other-kit"}}, "data": {"k": "theirs"}});
    cms.patch("shared", &PatchParams::apply("other"), &Patch::Apply(&theirs))
        .await
        .expect("seed");
    let err = applier()
        .await
        .apply(&target(&ns), vec![config_map("shared", json!({"k": "mine"}))])
        .await
        .expect_err("collision");
    let Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(failed[0].1.contains("belongs to kit other-kit"), "{err:?}");
    let live = cms.get("shared").await.expect("get");
    assert_eq!(
        live.data.unwrap_or_default().get("k").map(String::as_str),
        Some("theirs")
    );
}

#[tokio::test]
async fn conflicts_with_other_managers_are_reported_unless_forced() {
    let ns = ControlPlane::shared()
        .namespace("apply-conflict")
        .await
        .expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"port": "6776"}});
    cms.patch("cm", &PatchParams::apply("helm"), &Patch::Apply(&theirs))
        .await
        .expect("seed");
    let applier = applier().await;
    let mut t = target(&ns);
    let err = applier
        .apply(&t, vec![config_map("cm", json!({"port": "5445"}))])
        .await
        .expect_err("conflict");
    let Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        failed[0].1.contains("conflict with another field manager"),
        "{err:?}"
    );
    assert!(failed[0].1.contains("helm"), "names the other manager: {err:?}");
    t.force = true;
    applier
        .apply(&t, vec![config_map("cm", json!({"port": "5445"}))])
        .await
        .expect("forced");
    let live = cms.get("cm").await.expect("get");
    assert_eq!(
        live.data.unwrap_or_default().get("port").map(String::as_str),
        Some("5445")
    );
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_in_one_kit() {
    let ns = ControlPlane::shared()
        .namespace("apply-crd")
        .await
        .expect("namespace");
    let group = format!("{ns}.kitsync.dev");
    let crd = Object::new(
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("gadgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        None,
    )
    .expect("identity");
    let gadget = Object::new(
        json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 3}}),
        None,
    )
    .expect("identity");
    let mut t = target(&ns);
    t.cluster_scoped_allowed = true;
    // The custom resource comes first in the list; staging applies the CRD first anyway.
    let report = applier().await.apply(&t, vec![gadget, crd]).await.expect("apply");
    assert_eq!(report.objects.len(), 2, "{report:?}");
    assert!(report.objects.iter().all(|(_, o)| *o == Outcome::Applied));
}

#[tokio::test]
async fn writes_are_bounded_by_the_kits_service_account() {
    let ns = ControlPlane::shared()
        .namespace("apply-rbac")
        .await
        .expect("namespace");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer", "namespace": ns}});
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin().await, &ns);
    sas.patch("deployer", &PatchParams::apply("test"), &Patch::Apply(&sa))
        .await
        .expect("sa");
    let mut t = target(&ns);
    t.service_account = Some("deployer".into());
    // No Role grants the account anything: the API server refuses, naming the identity.
    let err = applier()
        .await
        .apply(&t, vec![config_map("cm", json!({}))])
        .await
        .expect_err("forbidden");
    let Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    let why = &failed[0].1;
    assert!(
        why.contains("forbidden") && why.contains(&format!("system:serviceaccount:{ns}:deployer")),
        "{why}"
    );
}

async fn kitsync_sync(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .arg("sync")
        .arg(dir)
        .args(args)
        .env("KUBECONFIG", ControlPlane::shared().kubeconfig_path())
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .output()
        .await
        .expect("kitsync runs")
}

/// `kitsync sync KIT_DIR` renders the kit as check and serve do (its transformer labels the
/// objects; the platform's validators can refuse it) before applying; a plain directory is
/// applied as it is into --namespace.
#[tokio::test]
async fn sync_applies_a_kit_directory_through_the_render() {
    // A namespace that does not exist yet: the host creates it for the kit.
    let ns = format!("apply-cli-{}", std::process::id());
    let repo = tempfile::tempdir().expect("repo");
    super::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        repo.path(),
    );
    let kit_dir = repo.path().join("kits/manufracture");
    let kit_yaml = std::fs::read_to_string(kit_dir.join("kit.yaml")).expect("kit.yaml");
    std::fs::write(
        kit_dir.join("kit.yaml"),
        kit_yaml.replace("namespace: manufracture", &format!("namespace: {ns}")),
    )
    .expect("write kit.yaml");
    let out = kitsync_sync(&["--revision", "v5"], &kit_dir).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("applied  v1/Service {ns}/vision")),
        "{stdout}"
    );
    let services: Api<Service> = Api::namespaced(admin().await, &ns);
    let service = services.get("vision").await.expect("service");
    assert_eq!(
        service.spec.clone().and_then(|s| s.ports).unwrap_or_default()[0].port,
        6776
    );
    let labels = service.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("vision-ops"),
        "the kit's set-labels transformer ran"
    );
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin().await);
    let created = namespaces.get(&ns).await.expect("namespace created");
    let labels = created.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("kitsync.dev/kit").map(String::as_str),
        Some("manufracture"),
        "the kit's namespace carries its label"
    );

    // A policy violation refuses the kit before any write, naming file and line.
    let vision = std::fs::read_to_string(kit_dir.join("vision.yaml")).expect("vision");
    std::fs::write(
        kit_dir.join("vision.yaml"),
        vision.replace("port: 6776", "port: 80"),
    )
    .expect("write");
    let out = kitsync_sync(&[], &kit_dir).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("kits/manufracture/vision.yaml:") && stderr.contains("port-range"),
        "{stderr}"
    );
    let port = services
        .get("vision")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()[0]
        .port;
    assert_eq!(port, 6776, "nothing written");
    let out = kitsync_sync(&["--namespace", "elsewhere"], &kit_dir).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("disagrees"));

    // A plain directory of YAML needs --namespace, and is applied as it is.
    let plain = tempfile::tempdir().expect("plain");
    std::fs::write(
        plain.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n",
    )
    .expect("write");
    let out = kitsync_sync(&[], plain.path()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--namespace"));
    let plain_ns = format!("{ns}-plain");
    let out = kitsync_sync(&["--namespace", &plain_ns], plain.path()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &plain_ns);
    assert!(cms.get_opt("plain").await.expect("get").is_some());

    // A cluster-scoped object needs the operator's --allow-cluster-scoped (or the platform's
    // clusterScoped), in the render as at apply.
    std::fs::write(
        plain.path().join("role.yaml"),
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {plain_ns}-reader\nrules: []\n"),
    )
    .expect("write");
    let out = kitsync_sync(&["--namespace", &plain_ns], plain.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kitsync/cluster-scoped"), "{stderr}");
    let out = kitsync_sync(
        &["--namespace", &plain_ns, "--allow-cluster-scoped"],
        plain.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write requests kitsync sent for a kit, from the audit log: in its namespace, or to its
/// inventory. Dry runs are audited as writes too but change nothing, and the controller
/// manager's writes (the namespace's default service account) are not ours: neither counts.
fn writes_for(kit_namespace: &str) -> usize {
    let log = std::fs::read_to_string(ControlPlane::shared().audit_log_path()).unwrap_or_default();
    let inventory = format!("kitsync-inventory-{kit_namespace}");
    let text = |event: &serde_json::Value, field: &str| event[field].as_str().unwrap_or_default().to_owned();
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["objectRef"]["namespace"] == kit_namespace
                || event["objectRef"]["name"] == inventory.as_str()
        })
        .filter(|event| !text(event, "requestURI").contains("dryRun="))
        .filter(|event| !text(event, "userAgent").starts_with("kube-controller-manager"))
        .count()
}

#[tokio::test]
async fn a_no_op_resync_sends_zero_writes_and_drift_is_reapplied() {
    let ns = ControlPlane::shared()
        .namespace("apply-noop")
        .await
        .expect("namespace");
    let applier = applier().await;
    let t = target(&ns);
    applier.apply(&t, vision(6776)).await.expect("first apply");
    let after_first = writes_for(&ns);
    assert!(
        after_first >= 3,
        "the first apply wrote 2 objects and the inventory ({after_first} writes)"
    );

    let report = applier.apply(&t, vision(6776)).await.expect("resync");
    assert!(
        report.objects.iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{report:?}"
    );
    assert_eq!(
        writes_for(&ns),
        after_first,
        "a no-op resync wrote nothing (audit log)"
    );

    // A label kitsync does not set is someone else's field, not drift: still no write.
    let services: Api<Service> = Api::namespaced(admin().await, &ns);
    let foreign = json!({"metadata": {"labels": {"edited-by": "hand"}}});
    services
        .patch("vision", &PatchParams::default(), &Patch::Merge(&foreign))
        .await
        .expect("foreign label");
    let report = applier.apply(&t, vision(6776)).await.expect("resync");
    assert!(
        report.objects.iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{report:?}"
    );
    assert_eq!(writes_for(&ns), after_first + 1, "only the hand edit wrote");

    // Someone edits a field kitsync set: the next resync writes it again, and only it.
    let drift = json!({"spec": {"ports": [{"name": "http", "port": 1234, "targetPort": "http"}]}});
    let kubectl_edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    services
        .patch("vision", &kubectl_edit, &Patch::Merge(&drift))
        .await
        .expect("drift");
    let report = applier.apply(&t, vision(6776)).await.expect("resync after drift");
    let outcome = |kind: &str| {
        report
            .objects
            .iter()
            .find(|(id, _)| id.kind == kind)
            .map(|(_, o)| o.clone())
    };
    assert_eq!(outcome("Service"), Some(Outcome::Applied));
    assert_eq!(outcome("Deployment"), Some(Outcome::Unchanged));
}

#[tokio::test]
async fn diff_shows_added_changed_and_pruned_objects_and_writes_nothing() {
    use kitsync::diff::ObjectDiff;
    let plane = ControlPlane::shared();
    let ns = plane.namespace("apply-diff").await.expect("namespace");
    let applier = applier().await;
    let mut t = target(&ns);
    let v5 = vec![
        config_map("a", json!({"k": "1"})),
        config_map("b", json!({"k": "1"})),
    ];
    applier.apply(&t, v5.clone()).await.expect("apply");
    let writes = writes_for(&ns);

    // The same objects under a new revision: no difference (the revision annotation is not one).
    t.revision = "v6".into();
    assert_eq!(applier.diff(&t, v5).await.expect("diff"), Vec::new());

    let v6 = vec![
        config_map("a", json!({"k": "2"})),
        config_map("c", json!({"k": "1"})),
    ];
    let changes = applier.diff(&t, v6).await.expect("diff");
    assert_eq!(changes.len(), 3, "{changes:#?}");
    let changed = changes.iter().find_map(|c| match c {
        ObjectDiff::Changed { object, fields } if object.name == "a" => Some(fields),
        _ => None,
    });
    let fields = changed.expect("a changed");
    assert_eq!(
        fields.len(),
        1,
        "only the data field, no server noise: {fields:#?}"
    );
    assert_eq!(fields[0].path, "/data/k");
    assert_eq!(
        (fields[0].before.clone(), fields[0].after.clone()),
        (Some(json!("1")), Some(json!("2")))
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, ObjectDiff::Added { object } if object.name == "c"))
    );
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, ObjectDiff::Removed { object } if object.name == "b"))
    );
    assert_eq!(writes_for(&ns), writes, "diff wrote nothing (only dry runs)");

    // The CLI: exit 1 with differences, 0 without.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: \"2\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: \"1\"\n").expect("write");
    let run = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .arg("diff")
            .arg(dir)
            .args(["--namespace", &ns])
            .env("KUBECONFIG", plane.kubeconfig_path())
            .output()
            .expect("kitsync runs")
    };
    let out = run(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("~ v1/ConfigMap {ns}/a\n    /data/k: \"1\" -> \"2\"")),
        "{stdout}"
    );
    std::fs::write(dir.path().join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: \"1\"\n").expect("write");
    let out = run(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_a_retryable_failure() {
    // A port nothing listens on: a real connection refusal, retried with backoff, then given up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config = ControlPlane::shared().config().await.expect("config");
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().expect("url");
    let applier = Applier::new(config).expect("applier");
    let started = std::time::Instant::now();
    let err = applier
        .apply(&target("unreachable"), vec![config_map("a", json!({}))])
        .await
        .expect_err("unreachable");
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "retried with backoff first"
    );
}

fn service(name: &str, cluster_ip: &str) -> Object {
    Object::new(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}]}}),
        None,
    )
    .expect("identity")
}

#[tokio::test]
async fn an_immutable_change_is_an_error_unless_the_kit_recreates() {
    let ns = ControlPlane::shared()
        .namespace("apply-recreate")
        .await
        .expect("namespace");
    // Addresses of the harness's 10.96.0.0/16 range no other test asks for.
    let suffix = std::process::id() % 200 + 20;
    let (first, second) = (format!("10.96.250.{suffix}"), format!("10.96.251.{suffix}"));
    let applier = applier().await;
    let mut t = target(&ns);
    applier
        .apply(&t, vec![service("fixed", &first)])
        .await
        .expect("create");
    let err = applier
        .apply(&t, vec![service("fixed", &second)])
        .await
        .expect_err("immutable");
    let Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        failed[0].1.contains("may not change once set") && failed[0].1.contains("recreate: true"),
        "{err:?}"
    );

    t.recreate = true;
    applier
        .apply(&t, vec![service("fixed", &second)])
        .await
        .expect("recreated");
    let services: Api<Service> = Api::namespaced(admin().await, &ns);
    let live = services.get("fixed").await.expect("service");
    assert_eq!(live.spec.and_then(|s| s.cluster_ip), Some(second));
}

#[tokio::test]
async fn a_failed_stage_stops_later_stages_and_prunes_nothing() {
    let ns = ControlPlane::shared()
        .namespace("apply-stages")
        .await
        .expect("namespace");
    let applier = applier().await;
    let mut t = target(&ns);
    t.cluster_scoped_allowed = true;
    applier
        .apply(&t, vec![config_map("old", json!({}))])
        .await
        .expect("first");
    // Stage 2 (cluster-scoped) holds an object the server refuses: `value` must be an integer.
    let bad = Object::new(
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": format!("{ns}-bad")}, "value": "high"}),
        None,
    )
    .expect("identity");
    let err = applier
        .apply(&t, vec![bad, config_map("new", json!({}))])
        .await
        .expect_err("stage 2 fails");
    let Error::Stage { stage, failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*stage, 2);
    assert!(failed[0].1.contains("value"), "{err:?}");
    assert!(!err.is_retryable(), "a refused object is not a transient fault");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    assert!(
        cms.get_opt("new").await.expect("get").is_none(),
        "stage 3 never ran"
    );
    assert!(cms.get_opt("old").await.expect("get").is_some(), "nothing pruned");
}

#[tokio::test]
async fn a_large_inventory_spans_several_configmaps() {
    use kitsync::apply::inventory;
    use kitsync::apply::{Entry, Inventory};
    let plane = ControlPlane::shared();
    let host = plane.namespace("apply-inventory").await.expect("namespace");
    let client = plane.client().await.expect("client");
    // 30,000 entries: about 3 MB of JSON, more than three ConfigMaps hold.
    let big = Inventory {
        entries: (0..30_000)
            .map(|i| Entry {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: Some("tenant-with-a-long-namespace-name".into()),
                name: format!("deployment-number-{i:06}"),
            })
            .collect(),
        ..Default::default()
    };
    inventory::store(&client, &host, "big", &big)
        .await
        .expect("store");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &host);
    let shards = cms.list(&Default::default()).await.expect("list").items.len();
    assert!(shards >= 4, "{shards} ConfigMaps");
    assert_eq!(inventory::load(&client, &host, "big").await.expect("load"), big);

    // Shrinking it removes the shards it no longer needs.
    let small = Inventory {
        entries: big.entries.iter().take(3).cloned().collect(),
        ..Default::default()
    };
    inventory::store(&client, &host, "big", &small)
        .await
        .expect("store");
    assert_eq!(inventory::load(&client, &host, "big").await.expect("load"), small);
    let left = cms.list(&Default::default()).await.expect("list").items;
    let names: Vec<_> = left
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .filter(|n| n.starts_with("kitsync-inventory-big"))
        .collect();
    assert_eq!(names, ["kitsync-inventory-big"]);
}
