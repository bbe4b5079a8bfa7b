//! Apply and render correctness from real-world reports (`../shared/cases`), each with our own
//! input: List documents, `status` in Git, stray namespaces on cluster-scoped objects, prune
//! that cannot hurt (a Namespace still in use, finalizers, CRDs), inventories that cannot
//! collide, one render path for plain directories, and a closed output pipe.

use k8s_openapi::api::core::v1::ConfigMap;
use kitsync::Object;
use kitsync::apply::{Applier, Outcome, Target, inventory};
use kitsync_harness::ControlPlane;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::io::Read;
use std::process::{Command, Stdio};

fn target(kit: &str, namespace: &str) -> Target {
    Target {
        kit: kit.to_owned(),
        namespace: namespace.to_owned(),
        host_namespace: "kitsync-system".into(),
        service_account: None,
        cluster_scoped_allowed: true,
        revision: "r1".into(),
        prune: true,
        force: false,
        recreate: false,
        removed: false,
        prune_crds: false,
    }
}

fn parse(yaml: &str) -> Vec<Object> {
    kitsync::manifest::parse("case.yaml", yaml).expect("parses")
}

async fn applier() -> Applier {
    Applier::new(ControlPlane::shared().config().await.expect("config")).expect("applier")
}

async fn admin() -> kube::Client {
    ControlPlane::shared().client().await.expect("client")
}

fn kept(report: &kitsync::apply::Report, kind: &str) -> Option<String> {
    report.objects.iter().find_map(|(id, o)| match o {
        Outcome::Kept(why) if id.kind == kind => Some(why.clone()),
        _ => None,
    })
}

fn pruned(report: &kitsync::apply::Report) -> Vec<String> {
    report
        .objects
        .iter()
        .filter(|(_, o)| *o == Outcome::Pruned)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Case 13: a kit drops its Namespace object but keeps objects inside it: the Namespace is
/// kept (and says why); the objects survive.
#[tokio::test]
async fn a_namespace_still_in_use_is_never_pruned() {
    let ns = format!("case-ns-{}", std::process::id());
    let applier = applier().await;
    let mut t = target(&ns, &ns);
    t.cluster_scoped_allowed = false; // a kit may always declare its own namespace
    let step1 = parse(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n"
    ));
    applier.apply(&t, step1).await.expect("step 1");
    let step2 = parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n");
    let report = applier.apply(&t, step2).await.expect("step 2");
    let why = kept(&report, "Namespace").expect("the Namespace is kept");
    assert!(why.contains("still holds objects"), "{why}");
    assert_eq!(pruned(&report), [format!("v1/ConfigMap {ns}/old")]);
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    assert!(cms.get_opt("keep").await.expect("get").is_some(), "keep survives");
    assert!(
        report.inventory.entries.iter().any(|e| e.kind == "Namespace"),
        "still tracked"
    );
}

/// Finalizers: a pruned object that the API server keeps for its finalizers is reported as
/// terminating and stays in the inventory until it is gone.
#[tokio::test]
async fn an_object_held_by_a_finalizer_is_terminating_not_pruned() {
    let ns = format!("case-fin-{}", std::process::id());
    let applier = applier().await;
    let t = target(&ns, &ns);
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n";
    applier
        .apply(&t, parse(&format!("{held}---\n{other}")))
        .await
        .expect("apply");
    let report = applier.apply(&t, parse(other)).await.expect("prune");
    let why = kept(&report, "ConfigMap").expect("held is kept");
    assert!(
        why.starts_with("terminating") && why.contains("example.com/hold"),
        "{why}"
    );
    assert!(pruned(&report).is_empty(), "{:?}", report.objects);
    assert!(report.inventory.entries.iter().any(|e| e.name == "held"));
    // The finalizer's owner lets go; the next run records it as gone.
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release the finalizer");
    let report = applier.apply(&t, parse(other)).await.expect("again");
    assert_eq!(pruned(&report), [format!("v1/ConfigMap {ns}/held")]);
    assert!(!report.inventory.entries.iter().any(|e| e.name == "held"));
}

fn crd(group: &str, namespace_line: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.{group}\n{namespace_line}spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Gadget, plural: gadgets, singular: gadget}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n"
    )
}

/// Case 21: a cluster-scoped object's stray `metadata.namespace` is dropped before identity,
/// so a commit that only removes that line changes nothing (and prunes no CRD).
#[tokio::test]
async fn a_stray_namespace_on_a_cluster_scoped_object_is_not_a_second_identity() {
    let id = std::process::id();
    let ns = format!("case-stray-{id}");
    let group = format!("stray{id}.example.com");
    let applier = applier().await;
    let t = target(&ns, &ns);
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: stray-{id}\n{{ns}}rules: []\n"
    );
    let with_ns = format!("  namespace: {ns}\n");
    let step1 = parse(&format!(
        "{}---\n{}",
        crd(&group, &with_ns),
        role.replace("{ns}", &with_ns)
    ));
    let report = applier.apply(&t, step1).await.expect("step 1");
    assert!(
        report.inventory.entries.iter().all(|e| e.namespace.is_none()),
        "{:?}",
        report.inventory.entries
    );
    let step2 = parse(&format!("{}---\n{}", crd(&group, ""), role.replace("{ns}", "")));
    let report = applier.apply(&t, step2).await.expect("step 2");
    assert!(pruned(&report).is_empty(), "nothing pruned: {:?}", report.objects);
    assert_eq!(report.inventory.entries.len(), 2, "one key per live object");
    // The ClusterRole is not even rewritten. (The CRD is: its controller's status updates
    // move its resourceVersion, which the no-op check compares.)
    assert!(
        report
            .objects
            .iter()
            .any(|(id, o)| id.kind == "ClusterRole" && *o == Outcome::Unchanged),
        "{:?}",
        report.objects
    );
}

/// CRDs are never pruned unless the platform allows it for the kit.
#[tokio::test]
async fn a_crd_is_pruned_only_when_the_platform_allows_it() {
    let id = std::process::id();
    let ns = format!("case-crd-{id}");
    let group = format!("prune{id}.example.com");
    let applier = applier().await;
    let mut t = target(&ns, &ns);
    let keep = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n";
    applier
        .apply(&t, parse(&format!("{}---\n{keep}", crd(&group, ""))))
        .await
        .expect("apply");
    let report = applier.apply(&t, parse(keep)).await.expect("drop the CRD");
    let why = kept(&report, "CustomResourceDefinition").expect("kept");
    assert!(why.contains("pruneCustomResourceDefinitions"), "{why}");
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        admin().await,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let name = format!("gadgets.{group}");
    assert!(crds.get_opt(&name).await.expect("get").is_some());
    t.prune_crds = true;
    let report = applier.apply(&t, parse(keep)).await.expect("allowed");
    // Deleted; the API server's own cleanup finalizer may hold it for a moment, during which
    // it is reported as terminating and stays tracked.
    match kept(&report, "CustomResourceDefinition") {
        Some(why) => assert!(why.starts_with("terminating"), "{why}"),
        None => assert_eq!(
            pruned(&report),
            [format!("apiextensions.k8s.io/v1/CustomResourceDefinition {name}")]
        ),
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while crds.get_opt(&name).await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "the CRD is not gone");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let report = applier.apply(&t, parse(keep)).await.expect("again");
    assert!(
        !report
            .inventory
            .entries
            .iter()
            .any(|e| e.kind == "CustomResourceDefinition"),
        "no longer tracked once gone"
    );
}

/// Inventories of kits `shop` and `shop-1` cannot overwrite each other, and a ConfigMap that
/// is not a kit's inventory is refused, not overwritten.
#[tokio::test]
async fn inventories_cannot_collide_and_foreign_configmaps_are_refused() {
    let client = admin().await;
    let host = ControlPlane::shared()
        .namespace("case-inv")
        .await
        .expect("namespace");
    let big = inventory::Inventory {
        entries: (0..20_000)
            .map(|i| inventory::Entry {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: Some("tenant-with-a-long-namespace-name".into()),
                name: format!("deployment-number-{i:06}"),
            })
            .collect(),
        ..Default::default()
    };
    let small = inventory::Inventory {
        entries: big.entries.iter().take(2).cloned().collect(),
        ..Default::default()
    };
    inventory::store(&client, &host, "shop-1", &small)
        .await
        .expect("shop-1");
    inventory::store(&client, &host, "shop", &big)
        .await
        .expect("shop");
    assert_eq!(
        inventory::load(&client, &host, "shop-1").await.expect("load"),
        small
    );
    assert_eq!(inventory::load(&client, &host, "shop").await.expect("load"), big);

    // A ConfigMap someone else made at a kit's inventory name.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &host);
    let foreign: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": inventory::configmap_name("tenant")},
        "data": {"important": "yes"}
    }))
    .expect("configmap");
    cms.create(&Default::default(), &foreign).await.expect("create");
    let err = inventory::store(&client, &host, "tenant", &small)
        .await
        .expect_err("refused");
    assert!(err.contains("not a kitsync inventory"), "{err}");
    let still = cms.get(&inventory::configmap_name("tenant")).await.expect("get");
    assert_eq!(
        still.data.and_then(|d| d.get("important").cloned()).as_deref(),
        Some("yes")
    );
    assert!(inventory::load(&client, &host, "tenant").await.is_err());
}

/// Case 06: `status` in Git is not desired state: dropped before apply, never sent.
#[tokio::test]
async fn status_in_a_manifest_is_not_applied() {
    let ns = format!("case-status-{}", std::process::id());
    let applier = applier().await;
    let objects = parse(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: a, image: example.com/a:1}]\nstatus:\n  replicas: 3\n  madeUpField: true\n",
    );
    let report = applier.apply(&target(&ns, &ns), objects).await.expect("applies");
    assert_eq!(report.objects[0].1, Outcome::Applied);
}

fn kitsync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .output()
        .expect("kitsync runs")
}

/// Cases 05, 06 and 12 without a cluster: List items are objects located at their own lines,
/// `status` is an info finding, and a duplicate across files is refused by `sync` exactly as
/// by `check`, before any cluster is contacted.
#[test]
fn lists_status_and_duplicates_take_one_path() {
    let repo = tempfile::tempdir().expect("repo");
    let kit = repo.path().join("kits/lists");
    std::fs::create_dir_all(&kit).expect("mkdir");
    std::fs::write(kit.join("kit.yaml"), "namespace: lists\n").expect("kit.yaml");
    std::fs::write(
        kit.join("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: first\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: second\n    status:\n      phase: made-up\n",
    )
    .expect("list");
    let dir = repo.path().to_str().expect("utf-8");
    let out = kitsync(&["check", dir, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let kit_report = &report["kits"][0];
    assert_eq!(kit_report["objects"], 2);
    let finding = &kit_report["findings"][0];
    assert_eq!(finding["rule"], "kitsync/status-dropped");
    assert_eq!(finding["severity"], "info");
    assert_eq!(finding["location"]["file"], "kits/lists/list.yaml");
    assert_eq!(finding["location"]["line"], 12, "at the item's own status line");
    let out = kitsync(&["render", dir]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("name: second") && !yaml.contains("made-up"),
        "{yaml}"
    );

    // A duplicate across files: check and sync refuse it the same way.
    std::fs::write(
        kit.join("again.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n",
    )
    .expect("dup");
    let out = kitsync(&["check", dir]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("defined twice"), "{text}");
    let kit_dir = kit.to_str().expect("utf-8");
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["sync", kit_dir])
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("defined twice") && stderr.contains("again.yaml") && stderr.contains("list.yaml"),
        "{stderr}"
    );
    // A plain directory (no kit.yaml) goes through the same render.
    let plain = tempfile::tempdir().expect("plain");
    for name in ["a.yaml", "b.yaml"] {
        std::fs::write(
            plain.path().join(name),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n",
        )
        .expect("write");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args([
            "diff",
            plain.path().to_str().expect("utf-8"),
            "--namespace",
            "plain",
        ])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("defined twice") && stderr.contains("a.yaml"),
        "{stderr}"
    );
}

/// `kitsync render examples | head -c 20`: the command stops quietly when the reader goes.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    // More output than a pipe buffers (64 KiB), so the writer must meet the closed pipe.
    let repo = tempfile::tempdir().expect("repo");
    let kit = repo.path().join("kits/big");
    std::fs::create_dir_all(&kit).expect("mkdir");
    std::fs::write(kit.join("kit.yaml"), "namespace: big\n").expect("kit.yaml");
    let many: String = (0..3000)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\ndata:\n  value: \"{i}\"\n"))
        .collect();
    std::fs::write(kit.join("many.yaml"), many).expect("manifests");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .arg("render")
        .arg(repo.path())
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut first = [0u8; 20];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    // The read end is dropped here: the rest of the output has nowhere to go.
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// Case 20: an object first written by client-side `kubectl apply` (its field manager and
/// annotation, as kubectl sends them) and edited with `kubectl edit` is taken over: once Git
/// drops a key, the key is gone live.
#[tokio::test]
async fn objects_from_client_side_apply_are_taken_over() {
    let ns = ControlPlane::shared()
        .namespace("case-csa")
        .await
        .expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    let last_applied =
        r#"{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap","metadata":{"name":"cm"}}"#;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cm", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
        "data": {"a": "1", "b": "2"}
    }))
    .expect("configmap");
    let post = kube::api::PostParams {
        field_manager: Some("kubectl-client-side-apply".into()),
        ..Default::default()
    };
    cms.create(&post, &cm).await.expect("client-side apply");
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    cms.patch("cm", &edit, &Patch::Merge(json!({"data": {"c": "3"}})))
        .await
        .expect("kubectl edit");

    let applier = applier().await;
    let t = target(&ns, &ns);
    let both =
        parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: \"1\"\n  b: \"2\"\n");
    applier.apply(&t, both).await.expect("take over");
    let live = cms.get("cm").await.expect("get");
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert_eq!(
        managers,
        ["kitsync"],
        "kubectl's entries were folded into kitsync's"
    );

    let only_a = parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: \"1\"\n");
    applier.apply(&t, only_a).await.expect("drop b");
    let live = cms.get("cm").await.expect("get");
    let data = live.data.unwrap_or_default();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["a"],
        "b and the hand-edited c are gone"
    );
    let annotations = live.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"),
        "{annotations:?}"
    );
}

/// Cases 07, 15 and 16: diff tells the truth. Creations are dry-run (the server's refusal
/// shows), a custom resource waiting for its CRD and an object whose namespace sync will
/// create are shown with a note, and a headless Service whose `clusterIP: None` left Git is
/// a difference that sync reports and `recreate` resolves.
#[tokio::test]
async fn diff_dry_runs_creations_and_shows_what_the_server_keeps() {
    use kitsync::diff::ObjectDiff;
    let id = std::process::id();
    let ns = ControlPlane::shared()
        .namespace("case-diff")
        .await
        .expect("namespace");
    let applier = applier().await;
    let t = target(&ns, &ns);

    // A label value the API server refuses, on an object that does not exist yet.
    let bad =
        parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  labels:\n    quote: 'a\"b'\n");
    let err = applier.dry_run(&t, bad).await.expect_err("the server refuses");
    let kitsync::apply::Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        failed[0].1.contains("metadata.labels") && failed[0].1.contains("422"),
        "{failed:?}"
    );

    // A CRD and its custom resource in one run; a namespace that does not exist yet.
    let group = format!("diff{id}.example.com");
    let other_ns = format!("case-diff-new-{id}");
    let mut wide = target(&ns, &ns);
    wide.cluster_scoped_allowed = true;
    let objects = parse(&format!(
        "{}---\napiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\n",
        crd(&group, "")
    ));
    let dry = applier.dry_run(&wide, objects).await.expect("dry run");
    assert_eq!(dry.changes.len(), 2, "{:?}", dry.changes);
    assert!(dry.changes.iter().all(|c| matches!(c, ObjectDiff::Added { .. })));
    let (noted, note) = &dry.notes[0];
    assert_eq!(noted.kind, "Gadget");
    assert!(note.contains("CustomResourceDefinition of this kit"), "{note}");
    let elsewhere = target(&other_ns, &other_ns);
    let dry = applier
        .dry_run(
            &elsewhere,
            parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"),
        )
        .await
        .expect("dry run");
    assert!(dry.notes[0].1.contains("does not exist yet"), "{:?}", dry.notes);

    // A headless Service whose clusterIP: None is dropped from Git.
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  clusterIP: None\n  selector: {app: db}\n  ports: [{port: 5432}]\n";
    applier.apply(&t, parse(headless)).await.expect("headless");
    let plain = headless.replace("  clusterIP: None\n", "");
    let dry = applier.dry_run(&t, parse(&plain)).await.expect("dry run");
    let changed = dry
        .changes
        .iter()
        .find_map(|c| match c {
            ObjectDiff::Changed { object, fields } if object.kind == "Service" => Some(fields.clone()),
            _ => None,
        })
        .expect("the Service differs");
    assert!(
        changed
            .iter()
            .any(|f| f.path == "/spec/clusterIP" && f.before == Some(json!("None")) && f.after.is_none()),
        "{changed:?}"
    );
    assert!(
        dry.notes
            .iter()
            .any(|(_, n)| n.contains("cannot change in place"))
    );
    let err = applier
        .apply(&t, parse(&plain))
        .await
        .expect_err("sync reports it");
    assert!(err.to_string().contains("object(s) failed"), "{err}");
    let kitsync::apply::Error::Stage { failed, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(failed[0].1.contains("recreate: true"), "{failed:?}");
    let mut recreate = target(&ns, &ns);
    recreate.recreate = true;
    applier.apply(&recreate, parse(&plain)).await.expect("recreated");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin().await, &ns);
    let ip = services
        .get("db")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_default();
    assert!(!ip.is_empty() && ip != "None", "no longer headless: {ip}");
}

/// Every broken file and every duplicate of a kit is reported in one run, each at its line.
#[test]
fn every_broken_file_and_duplicate_is_reported_in_one_run() {
    let repo = tempfile::tempdir().expect("repo");
    let write = |path: &str, text: &str| {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("kits/broken/kit.yaml", "");
    write(
        "kits/broken/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
    );
    write(
        "kits/broken/b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n",
    );
    write("kits/twice/kit.yaml", "");
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    write("kits/twice/a.yaml", &format!("{}---\n{}", cm("cm-x"), cm("cm-y")));
    write("kits/twice/b.yaml", &format!("{}---\n{}", cm("cm-x"), cm("cm-y")));
    let out = kitsync(&["check", repo.path().to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let located = |kit: &str| -> Vec<String> {
        report["kits"]
            .as_array()
            .expect("kits")
            .iter()
            .find(|k| k["name"] == kit)
            .expect("kit")["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                format!(
                    "{}:{} {}",
                    f["location"]["file"].as_str().unwrap_or("?"),
                    f["location"]["line"],
                    f["rule"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let mut broken = located("broken");
    broken.sort();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken[0].starts_with("kits/broken/a.yaml:") && broken[1].starts_with("kits/broken/b.yaml:1"),
        "{broken:?}"
    );
    let twice = located("twice");
    assert_eq!(twice.len(), 2, "{twice:?}");
    assert!(
        twice
            .iter()
            .all(|f| f.starts_with("kits/twice/b.yaml:") && f.ends_with("kitsync/duplicate-object")),
        "{twice:?}"
    );
}

/// A TCP relay to the real API server that can cut every connection and refuse new ones:
/// the network failing under a running apply. (The API server itself cannot be made to drop
/// off the network mid-request; its answers are real until the cut.)
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let watch = async {
                        while !flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = watch => {} // both ends dropped: the connection breaks mid-flight
                    }
                });
            }
        });
        Relay { port, cut }
    }
}

/// Case kind 8: the network failing in the middle of a stage leaves the kit retryable
/// (Unavailable), after the engine's retries; nothing is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_failure_mid_stage_is_retryable() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("case-net").await.expect("namespace");
    let upstream: std::net::SocketAddr = plane
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .expect("server address");
    let relay = Relay::start(upstream).await;
    let mut config = plane.config().await.expect("config");
    config.cluster_url = format!("https://127.0.0.1:{}", relay.port).parse().expect("url");
    let applier = Applier::new(config).expect("applier").with_concurrency(2);
    let objects: Vec<Object> = (0..300)
        .map(|i| {
            Object::new(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:03}")}}),
                None,
            )
            .expect("object")
        })
        .collect();
    let cms: Api<ConfigMap> = Api::namespaced(admin().await, &ns);
    let cut = relay.cut.clone();
    let cutter = tokio::spawn(async move {
        // Cut once the stage is under way: some objects written, most not.
        loop {
            let written = cms.list(&Default::default()).await.map_or(0, |l| l.items.len());
            if written >= 10 {
                cut.store(true, std::sync::atomic::Ordering::SeqCst);
                return written;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let err = applier
        .apply(&target(&ns, &ns), objects)
        .await
        .expect_err("the network went away");
    let written_before_cut = cutter.await.expect("cutter");
    assert!(written_before_cut < 300, "the cut came mid-stage");
    assert!(err.is_retryable(), "{err:?}");
    let kitsync::apply::Error::Unavailable { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("stage 3"), "{message}");
}
