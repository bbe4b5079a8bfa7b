//! Leader election end to end: two replicas of the real binary against the shared control
//! plane and one repository. Both use the admin credentials, so writes are attributed by
//! the User-Agent each replica sends (`kitsync/VERSION (POD_NAME-suffix)`), as the API
//! server's audit log records it for every write it received.
//!
//! The tests of this module run one at a time: each runs two replicas on a 4 s lease, and
//! replicas starved of CPU by their neighbours would lose it for that reason alone.

use super::free_port;
use super::serve::{Repo, service_port, suffix, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kitsync::leadership::{Leadership, NotLeader};
use kitsync::status;
use kitsync_harness::ControlPlane;
use kube::Api;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Lease, renew deadline and retry period of every replica here.
const LEASE: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);
const ELECTION: &str =
    "leaderElection: {enabled: true, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 1s}";

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET path` on the probes port: status code and body.
fn get(port: u16, path: &str) -> (u16, String) {
    super::http_request(port, "GET", path, &[], b"")
}

/// One `kitsync serve` process with leader election, its own cache and log.
struct Replica {
    /// Its `POD_NAME`: the start of its Lease identity and of its User-Agent's.
    name: String,
    child: Child,
    log: PathBuf,
    probes: u16,
    _cache: TempDir,
}

impl Replica {
    fn start(name: String, url: &str, host_namespace: &str, extra: &str) -> Replica {
        let cache = tempfile::tempdir().expect("cache");
        let probes = free_port();
        let config = cache.path().join("host.yaml");
        std::fs::write(
            &config,
            format!(
                "hostNamespace: {host_namespace}\ncacheDir: {}\nretry: {{initial: 1s, max: 2s}}\nshutdownGracePeriod: 10s\nlisten: {{probes: 127.0.0.1:{probes}}}\n{ELECTION}\n{extra}sources:\n  - name: gitops\n    url: {url}\n    ref: main\n    interval: 1s\n",
                cache.path().display()
            ),
        )
        .expect("host config");
        let log = cache.path().join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("KUBECONFIG", ControlPlane::shared().kubeconfig_path())
            .env("POD_NAME", &name)
            .env_remove("KITSYNC_LOG")
            .env_remove("KITSYNC_LOG_FORMAT")
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("kitsync serve starts");
        Replica {
            name,
            child,
            log,
            probes,
            _cache: cache,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// `kitsync_leader` from `/metrics`.
    fn leader_gauge(&self) -> Option<f64> {
        let (_, body) = get(self.probes, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix("kitsync_leader "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A write the API server received, as its audit log has it.
#[derive(Debug, Clone)]
struct Received {
    agent: String,
    verb: String,
    resource: String,
    namespace: String,
    name: String,
    received: jiff::Timestamp,
}

impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}/{} at {} by {}",
            self.verb, self.resource, self.namespace, self.name, self.received, self.agent
        )
    }
}

fn list(writes: &[Received]) -> String {
    writes.iter().map(|w| format!("\n  {w}")).collect()
}

/// Reads the audit log from where the last read stopped.
struct Audit {
    file: PathBuf,
    offset: u64,
    writes: Vec<Received>,
}

impl Audit {
    fn new() -> Audit {
        Audit {
            file: ControlPlane::shared().audit_log_path().to_path_buf(),
            offset: 0,
            writes: Vec::new(),
        }
    }

    /// Every write received so far.
    fn read(&mut self) -> &[Received] {
        if let Ok(mut file) = std::fs::File::open(&self.file)
            && file.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            // Only whole lines: the server may be writing the last one.
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            self.offset += whole as u64;
            for line in text[..whole].lines() {
                let Ok(e) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                self.writes.push(Received {
                    agent: text(&e["userAgent"]),
                    verb: text(&e["verb"]),
                    resource: text(&e["objectRef"]["resource"]),
                    namespace: text(&e["objectRef"]["namespace"]),
                    name: text(&e["objectRef"]["name"]),
                    received: e["requestReceivedTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_default(),
                });
            }
        }
        &self.writes
    }

    /// Writes by `replica` in `namespaces`, other than its Lease.
    fn by(&mut self, replica: &Replica, namespaces: &[&str]) -> Vec<Received> {
        let agent = format!("({}-", replica.name);
        self.read()
            .iter()
            .filter(|w| w.agent.contains(&agent) && w.resource != "leases")
            .filter(|w| namespaces.contains(&w.namespace.as_str()))
            .cloned()
            .collect()
    }
}

async fn lease(host_namespace: &str) -> Option<Lease> {
    let client = ControlPlane::shared().client().await.expect("client");
    Api::<Lease>::namespaced(client, host_namespace)
        .get_opt("kitsync-leader")
        .await
        .expect("read the Lease")
}

async fn holder(host_namespace: &str) -> Option<String> {
    lease(host_namespace)
        .await?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Waits for a holder of the Lease; returns (leader, follower).
async fn elected<'a>(host_namespace: &str, a: &'a Replica, b: &'a Replica) -> (&'a Replica, &'a Replica) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        if let Some(holder) = holder(host_namespace).await {
            break holder;
        }
        assert!(
            Instant::now() < deadline,
            "no leader within 30 s\n--- {}:\n{}\n--- {}:\n{}",
            a.name,
            a.log(),
            b.name,
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if holder.starts_with(&format!("{}-", a.name)) {
        (a, b)
    } else {
        assert!(holder.starts_with(&format!("{}-", b.name)), "holder {holder}");
        (b, a)
    }
}

async fn applied(host_namespace: &str, kit: &str, commit: &str) -> Option<status::KitObject> {
    let client = ControlPlane::shared().client().await.expect("client");
    status::list(&client, host_namespace)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|k| k.name == kit && k.status.is_ready() && k.status.last_applied_revision == commit)
}

/// Creates the host namespace first, so that neither replica's start writes it.
async fn host_namespace(id: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("kitsync-{id}");
    let client = ControlPlane::shared().client().await.expect("client");
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.clone());
    Api::<Namespace>::all(client)
        .create(&Default::default(), &namespace)
        .await
        .expect("create the host namespace");
    name
}

/// Two replicas: one leads and is the only one to write; both answer the probes; the
/// follower is ready and says it follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_writes_and_both_serve_probes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let id = suffix("la");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let ns = host_namespace(&id).await;
    let a = Replica::start(format!("{id}-a"), &repo.url(), &ns, "");
    let b = Replica::start(format!("{id}-b"), &repo.url(), &ns, "");
    let (leader, follower) = elected(&ns, &a, &b).await;
    for kit in ["manufracture", "smithereens"] {
        wait_for(&format!("{kit} applied at v5"), async || {
            applied(&ns, kit, &v5).await
        })
        .await;
    }
    // A new commit is applied by the leader too.
    let manufracture = format!("manufracture-{id}");
    repo.edit("kits/manufracture/vision.yaml", "port: 6776", "port: 6777");
    let v6 = repo.commit("v6");
    wait_for("manufracture applied at v6", async || {
        applied(&ns, "manufracture", &v6).await
    })
    .await;
    assert_eq!(service_port(&manufracture).await, Some(6777));

    let smithereens = format!("smithereens-{id}");
    let watched = [ns.as_str(), manufracture.as_str(), smithereens.as_str(), ""];
    let mut audit = Audit::new();
    let by_leader = audit.by(leader, &watched);
    let by_follower = audit.by(follower, &watched);
    assert!(
        by_leader
            .iter()
            .any(|w| w.resource == "services" && w.namespace == manufracture),
        "the leader applied the kits:{}",
        list(&by_leader)
    );
    assert!(
        by_follower.is_empty(),
        "the follower wrote {} time(s):{}",
        by_follower.len(),
        list(&by_follower)
    );
    assert!(leader.log().contains("kit applied"), "{}", leader.log());
    assert!(!follower.log().contains("kit applied"), "{}", follower.log());

    for replica in [leader, follower] {
        assert_eq!(get(replica.probes, "/healthz").0, 200, "{}", replica.name);
    }
    assert_eq!(get(leader.probes, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(
        get(follower.probes, "/readyz"),
        (200, "ready: following the leader\n".to_owned())
    );
    assert_eq!(leader.leader_gauge(), Some(1.0));
    assert_eq!(follower.leader_gauge(), Some(0.0));
}

/// The leader is killed (-9): the follower takes the lease within its duration and a retry
/// period after the last renewal, and applies the next commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease() {
    let _one = ONE_AT_A_TIME.lock().await;
    let id = suffix("lb");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let ns = host_namespace(&id).await;
    let mut a = Replica::start(format!("{id}-a"), &repo.url(), &ns, "");
    let mut b = Replica::start(format!("{id}-b"), &repo.url(), &ns, "");
    let a_leads = elected(&ns, &a, &b).await.0.name == a.name;
    wait_for("manufracture applied at v5", async || {
        applied(&ns, "manufracture", &v5).await
    })
    .await;
    let (leader, follower) = if a_leads { (&mut a, &b) } else { (&mut b, &a) };
    let old = holder(&ns).await.expect("a holder");

    leader.child.kill().expect("kill -9 the leader");
    let killed = Instant::now();
    let new = wait_for("a new holder", async || holder(&ns).await.filter(|h| *h != old)).await;
    let takeover = killed.elapsed();
    assert!(new.starts_with(&format!("{}-", follower.name)), "{new}");
    eprintln!("takeover {takeover:?} after kill -9 (lease {LEASE:?}, retry {RETRY:?})");
    // The last renewal was at most a retry period before the kill; the follower saw it at
    // most a retry period after, and waits a lease from then.
    assert!(
        takeover <= LEASE + 2 * RETRY + Duration::from_millis(1500),
        "takeover took {takeover:?}"
    );

    let manufracture = format!("manufracture-{id}");
    repo.edit("kits/manufracture/vision.yaml", "port: 6776", "port: 6777");
    let v6 = repo.commit("v6");
    let committed = Instant::now();
    wait_for("v6 applied by the new leader", async || {
        applied(&ns, "manufracture", &v6).await
    })
    .await;
    eprintln!("v6 applied {:?} after its commit", committed.elapsed());
    assert_eq!(service_port(&manufracture).await, Some(6777));
    assert!(follower.log().contains("became the leader"), "{}", follower.log());
    assert_eq!(follower.leader_gauge(), Some(1.0));
}

/// A kit of `count` ConfigMaps with `value`.
fn bulk(repo: &Repo, namespace: &str, count: usize, value: &str) {
    repo.write("kits/bulk/kit.yaml", &format!("namespace: {namespace}\n"));
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bulk-{i:03}\ndata:\n  value: {value:?}\n"
        ));
    }
    repo.write("kits/bulk/config.yaml", &text);
}

/// (name, resourceVersion) of the ConfigMaps in `namespace`.
async fn versions(namespace: &str) -> Vec<(String, String)> {
    let client = ControlPlane::shared().client().await.expect("client");
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, namespace);
    let mut out: Vec<(String, String)> = api
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The leader is frozen (SIGSTOP) in the middle of an apply, past its lease; the follower
/// takes over and applies; the old leader, resumed (SIGCONT) with that apply half done,
/// writes nothing more and follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_resumed_after_a_takeover_writes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    const COUNT: usize = 300;
    let id = suffix("lc");
    let repo = tempfile::tempdir().expect("repo");
    let repo = Repo { dir: repo };
    super::git(repo.path(), &["init", "-q"]);
    let target = format!("bulk-{id}");
    bulk(&repo, &target, COUNT, "1");
    let v1 = repo.commit("v1");
    let ns = host_namespace(&id).await;
    // One object at a time: an apply of the whole kit takes long enough to be caught in.
    let slow = "applyConcurrency: 1\n";
    let a = Replica::start(format!("{id}-a"), &repo.url(), &ns, slow);
    let b = Replica::start(format!("{id}-b"), &repo.url(), &ns, slow);
    let (leader, follower) = elected(&ns, &a, &b).await;
    wait_for("bulk applied at v1", async || applied(&ns, "bulk", &v1).await).await;

    // v2 changes every ConfigMap; freeze the leader once its apply has started.
    let mut audit = Audit::new();
    let watched = [ns.as_str(), target.as_str(), ""];
    let before = audit.by(leader, &[target.as_str()]).len();
    bulk(&repo, &target, COUNT, "2");
    let v2 = repo.commit("v2");
    let started = wait_for("the leader applying v2", async || {
        let writes = audit.by(leader, &[target.as_str()]);
        (writes.len() > before + 5).then_some(writes.len())
    })
    .await;
    leader.signal("STOP");
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_stop = audit.by(leader, &[target.as_str()]).len() - before;
    eprintln!(
        "leader frozen after {} ConfigMap writes of v2 ({COUNT} in all)",
        started - before
    );
    assert!(
        at_stop < COUNT,
        "the apply finished before the freeze ({at_stop} writes): the test did not catch it in flight"
    );

    let new = wait_for("the follower holding the lease", async || {
        holder(&ns)
            .await
            .filter(|h| h.starts_with(&format!("{}-", follower.name)))
    })
    .await;
    eprintln!("{new} took the lease {:?} after the freeze", stopped.elapsed());
    let acquired = lease(&ns)
        .await
        .and_then(|l| l.spec?.acquire_time)
        .map(|t| t.0)
        .expect("acquireTime");
    wait_for("v2 applied by the new leader", async || {
        applied(&ns, "bulk", &v2).await
    })
    .await;
    let settled = versions(&target).await;

    leader.signal("CONT");
    // Long enough for the old leader to poll (1 s), finish its apply and record its
    // status, had it not stopped.
    wait_for("the old leader following", async || {
        (leader.leader_gauge() == Some(0.0)
            && get(leader.probes, "/readyz").1 == "ready: following the leader\n")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let late: Vec<Received> = audit
        .by(leader, &watched)
        .into_iter()
        .filter(|w| w.received >= acquired)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote {} time(s) after losing the lease:{}",
        late.len(),
        list(&late)
    );
    assert_eq!(
        versions(&target).await,
        settled,
        "objects changed after the takeover"
    );
    let log = leader.log();
    assert!(log.contains("leadership lost"), "{log}");
    // Whether the in-flight apply reached its next request before the election task stopped
    // the term, and whether that request had already passed the first check when the process
    // froze, depends on timing; either way nothing reached the server.
    eprintln!(
        "old leader after resuming: {} request(s) refused before being queued, {} at the socket",
        log.matches("request refused").count(),
        log.matches("write cut off at the socket").count()
    );
    assert_eq!(
        holder(&ns).await.as_deref(),
        Some(new.as_str()),
        "the resumed replica follows; the lease stays with the new leader"
    );
}

/// The leader's client on the real API server, in process: it writes while its last renewal
/// is younger than the deadline, and sends nothing before or after (the audit log has the one
/// write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaders_client_sends_only_while_the_renewal_is_younger_than_the_deadline() {
    let plane = ControlPlane::shared();
    let namespace = plane.namespace("gate").await.expect("namespace");
    let agent = format!("gate-test/{namespace}");
    let mut config = plane.config().await.expect("config");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&agent).expect("agent"),
    ));
    let leadership = Leadership::elected();
    let api: Api<ConfigMap> = Api::namespaced(leadership.client(config).expect("client"), &namespace);
    let map = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"v": "1"}}))
            .expect("ConfigMap")
    };
    let refused = |result: Result<ConfigMap, kube::Error>| match result {
        Err(e) => assert!(
            NotLeader::of(&e).is_some(),
            "refused by the gate, not the server: {e}"
        ),
        Ok(_) => panic!("sent without the lease"),
    };
    refused(api.create(&Default::default(), &map("before")).await);

    leadership.renewed(Instant::now(), Duration::from_millis(800));
    api.create(&Default::default(), &map("held"))
        .await
        .expect("written while held");
    assert!(api.get("held").await.is_ok(), "read while held");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!leadership.holds());
    let patch = kube::api::Patch::Merge(serde_json::json!({"data": {"v": "2"}}));
    refused(api.patch("held", &Default::default(), &patch).await);
    refused(api.create(&Default::default(), &map("after")).await);
    refused(api.get("held").await);

    let admin: Api<ConfigMap> = Api::namespaced(plane.client().await.expect("client"), &namespace);
    let live = admin.get("held").await.expect("read as admin");
    assert_eq!(live.data.and_then(|d| d.get("v").cloned()).as_deref(), Some("1"));
    // The audit log is written before the answer: the one write is there already.
    let mut audit = Audit::new();
    let writes: Vec<String> = audit
        .read()
        .iter()
        .filter(|w| w.agent == agent)
        .map(|w| format!("{} {}", w.verb, w.resource))
        .collect();
    assert_eq!(writes, ["create configmaps"]);
}
