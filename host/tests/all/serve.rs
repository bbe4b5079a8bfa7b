//! `kitsync serve` end to end: real Git repositories (file transport), the real control plane,
//! the bundled example's real plugins. Each test has its own host namespace and kit
//! namespaces, so tests share one control plane without seeing each other.

use kitsync::serve::{self, HostConfig};
use kitsync::status::{self, KitObject};
use kitsync_harness::ControlPlane;
use kube::Api;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::watch;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

use super::git;

/// A Git repository holding the bundled example with per-test namespaces.
pub(super) struct Repo {
    pub(super) dir: TempDir,
}

impl Repo {
    /// The example, each kit's namespace suffixed with `suffix`.
    pub(super) fn example(suffix: &str) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        super::copy_dir(&examples(), dir.path());
        let _ = std::fs::remove_file(dir.path().join("update-plugins"));
        for kit in ["manufracture", "smithereens"] {
            let file = dir.path().join(format!("kits/{kit}/kit.yaml"));
            let text = std::fs::read_to_string(&file).expect("kit.yaml");
            let text = text.replace(
                &format!("namespace: {kit}"),
                &format!("namespace: {kit}-{suffix}"),
            );
            std::fs::write(&file, text).expect("write kit.yaml");
        }
        git(dir.path(), &["init", "-q"]);
        Repo { dir }
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub(super) fn write(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub(super) fn edit(&self, file: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path().join(file)).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        self.write(file, &text.replacen(from, to, 1));
    }

    /// Commits everything with `subject`; returns the commit.
    pub(super) fn commit(&self, subject: &str) -> String {
        self.commit_as("Kit Tester", "kit@example.com", subject)
    }

    fn commit_as(&self, name: &str, email: &str, subject: &str) -> String {
        git(self.path(), &["add", "-A"]);
        super::git_as(
            self.path(),
            (name, email),
            &["commit", "-q", "--allow-empty", "-m", subject],
            None,
        );
        git(self.path(), &["rev-parse", "HEAD"])
    }
}

/// A running `serve` on the shared control plane; dropped or stopped, it shuts down.
pub(super) struct Service {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    host_namespace: String,
}

fn host_config(url: &str, host_namespace: &str, cache: &Path) -> HostConfig {
    let text = format!(
        "hostNamespace: {host_namespace}\ncacheDir: {}\nretry: {{initial: 1s, max: 4s}}\nshutdownGracePeriod: 20s\nsources:\n  - name: gitops\n    url: {url}\n    ref: main\n    interval: 1s\n",
        cache.display()
    );
    let file = cache.join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    HostConfig::load(&file).expect("host config parses")
}

impl Service {
    pub(super) async fn start(config: HostConfig) -> Service {
        let plane = ControlPlane::shared();
        let host_namespace = config.host_namespace.clone();
        let (stop, stopped) = watch::channel(false);
        let kube_config = plane.config().await.expect("config");
        let task = tokio::spawn(async move {
            let result = serve::run(config, kube_config, stopped).await;
            if let Err(e) = &result {
                eprintln!("serve failed: {e:#}");
            }
            result
        });
        Service {
            stop,
            task,
            host_namespace,
        }
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("serve stops within its grace period")
            .expect("serve task");
        result.expect("serve exits cleanly");
    }

    async fn kits(&self) -> Vec<KitObject> {
        let client = ControlPlane::shared().client().await.expect("client");
        status::list(&client, &self.host_namespace)
            .await
            .unwrap_or_default()
    }

    pub(super) async fn kit(&self, name: &str) -> Option<KitObject> {
        self.kits().await.into_iter().find(|k| k.name == name)
    }

    /// Waits until `check` holds for the Kit `name` (60 s at most), returning it.
    pub(super) async fn wait_kit(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&KitObject) -> bool,
    ) -> KitObject {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.task.is_finished() {
                panic!("serve stopped while waiting for kit {name}: {what}");
            }
            let kit = self.kit(name).await;
            if let Some(kit) = &kit
                && check(kit)
            {
                return kit.clone();
            }
            assert!(
                Instant::now() < deadline,
                "kit {name}: {what} did not happen within 60 s; last seen: {:?}",
                kit.map(|k| k.status)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the Kit's condition `type_` has `status`.
    pub(super) async fn wait_kit_condition(&self, name: &str, type_: &str, status: &str) -> KitObject {
        self.wait_kit(name, &format!("{type_}={status}"), |k| {
            k.status.condition(type_).is_some_and(|c| c.status == status)
        })
        .await
    }

    pub(super) async fn wait_applied(&self, name: &str, commit: &str) -> KitObject {
        self.wait_kit(name, &format!("Ready at {commit}"), |k| {
            k.status.is_ready() && k.status.last_applied_revision == commit
        })
        .await
    }
}

pub(super) async fn service_port(ns: &str) -> Option<i64> {
    let client = ControlPlane::shared().client().await.expect("client");
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, ns);
    let service = api.get_opt("vision").await.expect("get service")?;
    Some(i64::from(service.spec?.ports?.first()?.port))
}

async fn resource_versions(ns: &str) -> Vec<(String, String)> {
    let client = ControlPlane::shared().client().await.expect("client");
    let mut out = Vec::new();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    for d in deployments.list(&Default::default()).await.expect("list").items {
        out.push((
            format!("Deployment/{}", d.metadata.name.unwrap_or_default()),
            d.metadata.resource_version.unwrap_or_default(),
        ));
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, ns);
    for s in services.list(&Default::default()).await.expect("list").items {
        out.push((
            format!("Service/{}", s.metadata.name.unwrap_or_default()),
            s.metadata.resource_version.unwrap_or_default(),
        ));
    }
    out.sort();
    out
}

/// (reason, note) of the Events on a Kit.
pub(super) async fn event_notes(host_namespace: &str, kit: &str) -> Vec<(String, String)> {
    let client = ControlPlane::shared().client().await.expect("client");
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, host_namespace);
    api.list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(kit))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

pub(super) async fn events(host_namespace: &str, kit: &str) -> Vec<String> {
    event_notes(host_namespace, kit)
        .await
        .into_iter()
        .map(|(reason, _)| reason)
        .collect()
}

pub(super) fn suffix(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{:05}", nanos % 100_000)
}

/// The seed scenario: v5 applied, v6 changes the vision Service's port, smithereens is
/// untouched, a revert converges back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_commit_update_and_revert() {
    let id = suffix("s");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let cache = tempfile::tempdir().expect("cache");
    let service = Service::start(host_config(&repo.url(), &format!("kitsync-{id}"), cache.path())).await;
    let manufracture = format!("manufracture-{id}");
    let smithereens = format!("smithereens-{id}");

    let kit = service.wait_applied("manufracture", &v5).await;
    service.wait_applied("smithereens", &v5).await;
    assert_eq!(service_port(&manufracture).await, Some(6776));
    assert_eq!(kit.spec.namespace, manufracture);
    assert_eq!(kit.status.objects, 2);
    assert_eq!(
        kit.status
            .last_applied_commit
            .as_ref()
            .map(|c| c.subject.as_str()),
        Some("v5")
    );
    let smithereens_before = resource_versions(&smithereens).await;
    let manufracture_before = resource_versions(&manufracture).await;

    repo.edit("kits/manufracture/vision.yaml", "port: 6776", "port: 5445");
    let v6 = repo.commit_as("Ada Operator", "ada@example.com", "v6: vision listens on 5445");
    let started = Instant::now();
    let kit = service.wait_applied("manufracture", &v6).await;
    eprintln!(
        "v6 applied {:?} after the commit (poll interval 1 s)",
        started.elapsed()
    );
    assert_eq!(service_port(&manufracture).await, Some(5445));
    let commit = kit.status.last_applied_commit.clone().expect("commit recorded");
    assert_eq!(commit.author, "Ada Operator <ada@example.com>");
    assert_eq!(commit.subject, "v6: vision listens on 5445");
    assert!(kit.status.is_ready());
    // Writes proportional to change: only the Service was rewritten; smithereens untouched.
    let manufracture_after = resource_versions(&manufracture).await;
    let deployment = |v: &[(String, String)]| v.iter().find(|(k, _)| k == "Deployment/vision").cloned();
    assert_eq!(deployment(&manufracture_before), deployment(&manufracture_after));
    assert_ne!(manufracture_before, manufracture_after, "the Service changed");
    // smithereens' Kit may have been re-read but not re-applied: its objects are untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(resource_versions(&smithereens).await, smithereens_before);
    // Each revision's apply is an Event of its own, saying which revision.
    let notes = event_notes(&service.host_namespace, "manufracture").await;
    for revision in [&v5, &v6] {
        assert!(
            notes
                .iter()
                .any(|(reason, note)| reason == "Applied" && note.contains(&revision[..12])),
            "{notes:?}"
        );
    }

    git(repo.path(), &["revert", "--no-edit", "HEAD"]);
    let reverted = git(repo.path(), &["rev-parse", "HEAD"]);
    service.wait_applied("manufracture", &reverted).await;
    assert_eq!(service_port(&manufracture).await, Some(6776));
    service.stop().await;
}

/// A bad commit blocks only its kit, with the located reason; a fix recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commits_block_their_kit_and_a_fix_recovers() {
    let id = suffix("b");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let cache = tempfile::tempdir().expect("cache");
    let service = Service::start(host_config(&repo.url(), &format!("kitsync-{id}"), cache.path())).await;
    service.wait_applied("manufracture", &v5).await;
    service.wait_applied("smithereens", &v5).await;

    // Malformed YAML in manufracture; a good change in smithereens.
    repo.edit("kits/manufracture/vision.yaml", "  replicas: 2", "  replicas: [2");
    repo.edit("kits/smithereens/vision.yaml", "replicas: ", "replicas: 3 #");
    let broken = repo.commit("break manufracture");
    let kit = service
        .wait_kit("manufracture", "blocked", |k| {
            k.status.last_attempted_revision == broken
                && k.status.condition("Ready").is_some_and(|c| c.status == "False")
        })
        .await;
    let ready = kit.status.condition("Ready").expect("Ready condition");
    assert!(
        ready.message.contains("kits/manufracture/vision.yaml:"),
        "located: {}",
        ready.message
    );
    assert_eq!(
        kit.status.last_applied_revision, v5,
        "stays at its last applied revision"
    );
    assert!(
        kit.status
            .condition("Stalled")
            .is_some_and(|c| c.status == "True")
    );
    service.wait_applied("smithereens", &broken).await;
    assert_eq!(service_port(&format!("manufracture-{id}")).await, Some(6776));

    // A policy violation in smithereens (port 80 is outside 1024-32767).
    repo.edit("kits/smithereens/vision.yaml", "port: 8443", "port: 80");
    let violation = repo.commit("smithereens on port 80");
    let kit = service
        .wait_kit("smithereens", "blocked by policy", |k| {
            k.status.last_attempted_revision == violation
                && k.status.condition("Ready").is_some_and(|c| c.status == "False")
        })
        .await;
    let message = &kit.status.condition("Ready").expect("Ready").message;
    assert!(
        message.contains("port-range") || message.contains("outside the allowed port range"),
        "{message}"
    );
    assert!(message.contains("kits/smithereens/vision.yaml:"), "{message}");
    assert!(
        kit.status
            .findings
            .iter()
            .any(|f| f.rule.starts_with("port-range/"))
    );
    assert_eq!(kit.status.last_applied_revision, broken);

    // Fix both.
    repo.edit("kits/manufracture/vision.yaml", "  replicas: [2", "  replicas: 2");
    repo.edit("kits/smithereens/vision.yaml", "port: 80", "port: 8443");
    let fixed = repo.commit("fix both");
    service.wait_applied("manufracture", &fixed).await;
    service.wait_applied("smithereens", &fixed).await;
    for kit in ["manufracture", "smithereens"] {
        let reasons = events(&service.host_namespace, kit).await;
        assert!(reasons.iter().any(|r| r == "RenderFailed"), "{kit}: {reasons:?}");
        assert!(reasons.iter().any(|r| r == "Recovered"), "{kit}: {reasons:?}");
    }
    service.stop().await;
}

pub(super) fn config_map_kit(
    name: &str,
    ns: &str,
    depends_on: &[&str],
    value: &str,
) -> Vec<(String, String)> {
    let deps = if depends_on.is_empty() {
        String::new()
    } else {
        format!("dependsOn: [{}]\n", depends_on.join(", "))
    };
    vec![
        (
            format!("kits/{name}/kit.yaml"),
            format!("namespace: {ns}\n{deps}"),
        ),
        (
            format!("kits/{name}/config.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value:?}\n"
            ),
        ),
    ]
}

pub(super) async fn config_map(ns: &str, name: &str) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
    let client = ControlPlane::shared().client().await.expect("client");
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, ns);
    api.get_opt(name).await.expect("get configmap")
}

fn writes_by_admin(log: &Path, namespaces: &[&str]) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == kitsync_harness::ADMIN)
        .filter(|e| {
            let ns = e["objectRef"]["namespace"].as_str().unwrap_or("");
            namespaces.contains(&ns)
        })
        .count()
}

/// dependsOn order, a blocked dependency, restart without writes, suspend, removal, and a
/// tree with every kit gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_restart_suspend_removal_and_an_emptied_tree() {
    let id = suffix("o");
    let repo = tempfile::tempdir().expect("repo");
    let repo = Repo { dir: repo };
    git(repo.path(), &["init", "-q"]);
    let (ns_a, ns_b, ns_c) = (format!("a-{id}"), format!("b-{id}"), format!("c-{id}"));
    // app (b) depends on db (a); c is independent.
    for (path, text) in config_map_kit("db", &ns_a, &[], "1")
        .into_iter()
        .chain(config_map_kit("app", &ns_b, &["db"], "1"))
        .chain(config_map_kit("misc", &ns_c, &[], "1"))
    {
        repo.write(&path, &text);
    }
    let first = repo.commit("three kits");
    let cache = tempfile::tempdir().expect("cache");
    let host_namespace = format!("kitsync-{id}");
    let config = host_config(&repo.url(), &host_namespace, cache.path());
    let service = Service::start(config.clone()).await;
    for kit in ["db", "app", "misc"] {
        service.wait_applied(kit, &first).await;
    }
    let rv = |cm: Option<k8s_openapi::api::core::v1::ConfigMap>| -> u64 {
        cm.and_then(|c| c.metadata.resource_version)
            .and_then(|v| v.parse().ok())
            .expect("resourceVersion")
    };
    assert!(
        rv(config_map(&ns_a, "db").await) < rv(config_map(&ns_b, "app").await),
        "db is applied before the app that depends on it"
    );

    // A broken dependency holds its dependent back; the independent kit goes on.
    repo.write(
        "kits/db/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
    );
    repo.write(
        "kits/app/config.yaml",
        &config_map_kit("app", &ns_b, &["db"], "2")[1].1,
    );
    repo.write(
        "kits/misc/config.yaml",
        &config_map_kit("misc", &ns_c, &[], "2")[1].1,
    );
    let second = repo.commit("db broken, app and misc changed");
    service.wait_applied("misc", &second).await;
    let app = service
        .wait_kit("app", "waiting for db", |k| {
            k.status
                .condition("Ready")
                .is_some_and(|c| c.reason == "DependencyNotReady")
        })
        .await;
    assert!(
        app.status
            .condition("Ready")
            .expect("Ready")
            .message
            .contains("db")
    );
    assert_eq!(
        config_map(&ns_b, "app")
            .await
            .and_then(|c| c.data)
            .and_then(|d| d.get("value").cloned()),
        Some("1".to_owned()),
        "app not applied while db is broken"
    );
    repo.write("kits/db/config.yaml", &config_map_kit("db", &ns_a, &[], "2")[1].1);
    let third = repo.commit("db fixed");
    service.wait_applied("db", &third).await;
    service.wait_applied("app", &third).await;
    // Each apply's health wait finishes first: one cut short by the stop is rightly finished
    // by the next instance, which writes (seen on a loaded machine).
    for (kit, revision) in [("db", &third), ("app", &third), ("misc", &second)] {
        service
            .wait_kit(kit, "healthy at its last revision", |k| {
                k.status
                    .condition("Healthy")
                    .is_some_and(|c| c.status == "True" && c.message.contains(&revision[..12]))
            })
            .await;
    }

    // A restart on the same revision writes nothing.
    service.stop().await;
    let log = ControlPlane::shared().audit_log_path().to_path_buf();
    let watched = [
        ns_a.as_str(),
        ns_b.as_str(),
        ns_c.as_str(),
        host_namespace.as_str(),
    ];
    let before = writes_by_admin(&log, &watched);
    let service = Service::start(config.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = writes_by_admin(&log, &watched);
    assert_eq!(
        after,
        before,
        "a restart on an unchanged revision wrote {} time(s)",
        after - before
    );

    // suspend holds: a change to a suspended kit is not applied.
    repo.write(
        "kits/misc/kit.yaml",
        &format!("namespace: {ns_c}\nsuspend: true\n"),
    );
    repo.write(
        "kits/misc/config.yaml",
        &config_map_kit("misc", &ns_c, &[], "3")[1].1,
    );
    repo.write("kits/db/config.yaml", &config_map_kit("db", &ns_a, &[], "3")[1].1);
    let fourth = repo.commit("suspend misc");
    service.wait_applied("db", &fourth).await;
    service.wait_kit("misc", "suspended", |k| k.spec.suspend).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        config_map(&ns_c, "misc")
            .await
            .and_then(|c| c.data)
            .and_then(|d| d.get("value").cloned()),
        Some("2".to_owned()),
        "a suspended kit is not applied"
    );

    // A kit removed from Git is pruned and its Kit deleted.
    std::fs::remove_dir_all(repo.path().join("kits/app")).expect("rm app");
    let fifth = repo.commit("remove app");
    let deadline = Instant::now() + Duration::from_secs(60);
    while config_map(&ns_b, "app").await.is_some() || service.kit("app").await.is_some() {
        assert!(Instant::now() < deadline, "kit app was not pruned after {fifth}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A tree with every kit gone prunes nothing and says so.
    std::fs::remove_dir_all(repo.path().join("kits")).expect("rm kits");
    repo.write("README.md", "emptied\n");
    let sixth = repo.commit("empty the tree");
    let db = service
        .wait_kit("db", "stalled", |k| {
            k.status.last_attempted_revision == sixth
                && k.status.condition("Stalled").is_some_and(|c| c.status == "True")
        })
        .await;
    assert!(
        db.status
            .condition("Ready")
            .expect("Ready")
            .message
            .contains("no kits")
    );
    assert!(config_map(&ns_a, "db").await.is_some(), "nothing pruned");
    service.stop().await;
}

/// serve renders a revision with exactly the pipeline `kitsync render` uses: same bytes.
#[test]
fn serve_and_check_render_the_same_bytes() {
    let repo = Repo::example("r");
    repo.commit("v5");
    let cache = tempfile::tempdir().expect("cache");
    let config = host_config(&repo.url(), "kitsync-system", cache.path());
    let snapshot = kitsync::source::Snapshot::from_git(repo.path(), "HEAD").expect("snapshot");
    let discovery = kitsync::kit::discover(&snapshot);
    let limits = serve::effective_limits(&config, &discovery).expect("limits");
    let pipeline = serve::pipeline_with(&config, limits).expect("pipeline");
    let served: Vec<String> = pipeline
        .render_all(&snapshot, &discovery)
        .into_iter()
        .map(|r| {
            assert!(r.failed.is_none(), "{:?}", r.findings);
            kitsync::manifest::to_yaml(&r.objects).expect("yaml")
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["render", "--repo", &repo.url(), "--ref", "main"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("kitsync render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).expect("utf-8");
    let printed: Vec<String> = rendered
        .split("# kit: ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once('\n')
                .map(|(_, body)| body.to_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(served.len(), 2);
    assert_eq!(printed, served, "serve and render disagree");
}

pub(super) async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The binary as an operator runs it: `serve --source` without a config file, `status`,
/// `reconcile` (a hand-deleted object comes back at once), and SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_reports_reconciles_on_request_and_stops_on_sigterm() {
    let plane = ControlPlane::shared();
    let id = suffix("c");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let cache = tempfile::tempdir().expect("cache");
    let host_namespace = format!("kitsync-{id}");
    let log = cache.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args([
            "serve",
            "--source",
            &repo.url(),
            "--ref",
            "main",
            "--interval",
            "1s",
            "--log-format",
            "json",
        ])
        .args(["--host-namespace", &host_namespace])
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("XDG_CACHE_HOME", cache.path())
        .env_remove("KITSYNC_LOG")
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("kitsync serve starts");
    let client = plane.client().await.expect("client");
    let kits = |name: &'static str| {
        let client = client.clone();
        let host_namespace = host_namespace.clone();
        async move {
            status::list(&client, &host_namespace)
                .await
                .unwrap_or_default()
                .into_iter()
                .find(|k| k.name == name)
        }
    };
    wait_for("manufracture Ready at v5", async || {
        kits("manufracture")
            .await
            .filter(|k| k.status.is_ready() && k.status.last_applied_revision == v5)
    })
    .await;

    let kitsync = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(args)
            .args(["--host-namespace", &host_namespace])
            .env("KUBECONFIG", plane.kubeconfig_path())
            .output()
            .expect("kitsync runs")
    };
    wait_for("smithereens Ready", async || {
        kits("smithereens").await.filter(|k| k.status.is_ready())
    })
    .await;
    let out = kitsync(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("NAME"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("manufracture"))
        .unwrap_or_else(|| panic!("no manufracture row in {table}"));
    assert!(row.contains("True") && row.contains(&v5[..12]), "{row}");
    let out = kitsync(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(2), "an unknown kit is an error");

    // Someone deletes the Service by hand; a requested reconcile brings it back.
    let manufracture = format!("manufracture-{id}");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &manufracture);
    services
        .delete("vision", &Default::default())
        .await
        .expect("delete by hand");
    let out = kitsync(&["reconcile", "manufracture"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the Service recreated", async || {
        service_port(&manufracture).await
    })
    .await;
    let kit = wait_for("the request recorded", async || {
        kits("manufracture")
            .await
            .filter(|k| !k.status.last_handled_reconcile_at.is_empty())
    })
    .await;
    assert_eq!(
        kit.reconcile_at.as_deref(),
        Some(kit.status.last_handled_reconcile_at.as_str())
    );
    let out = kitsync(&["reconcile", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Kit named nope"));

    // SIGTERM: exit 0, promptly.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "serve exited with {status}:\n{text}");
    assert!(text.contains("kitsync serve stopped"), "{text}");
    // `--log-format json`: one object per line; every line of a reconcile names its source,
    // kit and revision.
    let mut reconcile_lines = 0;
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let in_reconcile = entry["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == "reconcile"));
        if in_reconcile {
            reconcile_lines += 1;
            let span = &entry["span"];
            for field in ["source", "kit", "revision"] {
                assert!(
                    span[field].is_string()
                        || entry["spans"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|s| s[field].is_string())),
                    "no {field} on a reconcile line: {line}"
                );
            }
        }
    }
    assert!(
        text.contains("\"kit applied\""),
        "the log says what it did:\n{text}"
    );
    assert!(
        reconcile_lines >= 2,
        "reconcile lines seen: {reconcile_lines}\n{text}"
    );
}

/// A wrong host config is refused before anything starts, with file and line.
#[test]
fn a_wrong_host_config_is_located() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("host.yaml");
    let serve_with = |text: &str| -> (Option<i32>, String) {
        std::fs::write(&file, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = serve_with(
        "hostNamespace: kitsync-system\nsources:\n  - name: gitops\n    url: file:///nowhere\n    interval: 10\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("host.yaml") && stderr.contains("interval"),
        "{stderr}"
    );
    let (code, stderr) = serve_with("sources:\n  - name: gitops\n    url: file:///x\n    refs: main\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("host.yaml:4:") && stderr.contains("refs"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["serve"])
        .env_remove("KITSYNC_CONFIG")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source URL"));
}

/// Class 7 of the untrusted-repository issue: with a default service account in the host
/// config, a kit without `serviceAccount` writes as that account (RBAC bounds it), never as
/// the host's own identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kits_without_a_service_account_write_as_the_default_one() {
    let id = suffix("d");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let cache = tempfile::tempdir().expect("cache");
    let host_namespace = format!("kitsync-{id}");
    let mut config = host_config(&repo.url(), &host_namespace, cache.path());
    config.default_service_account = Some("deployer".into());
    let service = Service::start(config).await;
    // No RoleBinding grants `deployer` anything: the apply is refused by the API server's RBAC.
    let kit = service
        .wait_kit("manufracture", "refused by RBAC", |k| {
            k.status.last_attempted_revision == v5
                && k.status.condition("Ready").is_some_and(|c| c.status == "False")
        })
        .await;
    let message = &kit.status.condition("Ready").expect("Ready").message;
    assert!(
        message.contains(&format!("system:serviceaccount:manufracture-{id}:deployer")),
        "{message}"
    );
    assert_eq!(
        service_port(&format!("manufracture-{id}")).await,
        None,
        "nothing written"
    );
    service.stop().await;
}

/// A source renamed in the host config (here: `gitops` to `platform`, as when moving from
/// `serve --source` to a config file) adopts its Kits instead of skipping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_source_adopts_its_kits() {
    let id = suffix("rn");
    let repo = Repo {
        dir: tempfile::tempdir().expect("repo"),
    };
    git(repo.path(), &["init", "-q"]);
    for (path, text) in config_map_kit("adopted", &format!("adopt-{id}"), &[], "1") {
        repo.write(&path, &text);
    }
    let first = repo.commit("first");
    let cache = tempfile::tempdir().expect("cache");
    let host_namespace = format!("kitsync-{id}");
    let service = Service::start(host_config(&repo.url(), &host_namespace, cache.path())).await;
    service.wait_applied("adopted", &first).await;
    service.stop().await;

    let text = std::fs::read_to_string(cache.path().join("host.yaml")).expect("host config");
    let renamed = cache.path().join("renamed.yaml");
    std::fs::write(&renamed, text.replace("name: gitops", "name: platform")).expect("write");
    for (path, text) in config_map_kit("adopted", &format!("adopt-{id}"), &[], "2") {
        repo.write(&path, &text);
    }
    let second = repo.commit("second");
    let service = Service::start(HostConfig::load(&renamed).expect("renamed config")).await;
    let kit = service.wait_applied("adopted", &second).await;
    assert_eq!(kit.spec.source, "platform");
    service.stop().await;
}
