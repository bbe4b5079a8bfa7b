//! Benchmark (not a test): `kitsync serve` as an operator runs it (the release binary, a
//! real Git repository over file://, the real control plane), measuring
//!
//! 1. commit -> applied latency through polling at a 1 s interval: p50 and p99 over 20 commits
//!    that each change the seed Service's port;
//! 1. (b) the same through a signed GitHub push webhook at a 1 h interval: p50 and p99 over
//!    20 commits, and the receiver's throughput for rejected (wrongly signed) calls;
//! 2. 100 kits x 10 objects from an empty cluster to every Kit Ready: wall time and the
//!    service's peak RSS, against `kubectl apply --server-side` on the same 1,000 objects;
//! 3. idle: CPU and RSS of the service over 20 s with no new commit, and its writes (goal 0);
//! 4. drift at scale, 100 kits x 100 objects: peak RSS while watching them (goal: under
//!    100 MB), API requests per minute at rest, and hand edit -> corrected, p50/p99 of 20.
//!
//! Run with `cargo bench -p kitsync --bench serve` (needs the control plane; kubectl optional).

use kitsync::status;
use kitsync_harness::{ControlPlane, Options};
use std::hash::BuildHasher;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const KITS: usize = 100;
const OBJECTS_PER_KIT: usize = 10;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(dir: &Path, subject: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", subject]);
    git(dir, &["rev-parse", "HEAD"])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// `kitsync serve` on `repo` as a child process.
fn serve(plane: &ControlPlane, repo: &Path, host_namespace: &str, cache: &Path) -> Child {
    // KITSYNC_BENCH_WRAP=heaptrack (or any program taking a command line) profiles the host.
    let mut command = match std::env::var_os("KITSYNC_BENCH_WRAP") {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(env!("CARGO_BIN_EXE_kitsync"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_kitsync")),
    };
    command
        .args([
            "serve",
            "--source",
            &format!("file://{}", repo.display()),
            "--interval",
            "1s",
        ])
        .args(["--host-namespace", host_namespace, "--concurrency", "8"])
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("XDG_CACHE_HOME", cache)
        .env("KITSYNC_LOG", "warn")
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("kitsync serve starts")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 POST on a fresh connection; the status code (0 when none came).
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn github_signature(body: &[u8], secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// 1b: commit -> applied through a signed push webhook (the poll interval is an hour, so only
/// the webhook can bring a commit in), then rejected calls per second.
fn webhook_latency(
    plane: &ControlPlane,
    repo: &Path,
    cache: &Path,
    wait_port: &dyn Fn(i32, Duration) -> Option<Duration>,
    current: &mut i32,
) {
    let (probes, hooks) = (free_port(), free_port());
    let secret = cache.join("webhook-secret");
    std::fs::write(&secret, "bench-secret").expect("secret");
    let config = cache.join("host.yaml");
    std::fs::write(
        &config,
        format!(
            "hostNamespace: kitsync-latency\ncacheDir: {}\nlisten: {{probes: 127.0.0.1:{probes}, webhooks: 127.0.0.1:{hooks}}}\nsources:\n  - name: default\n    url: file://{}\n    interval: 1h\n    webhook: {{provider: github, secretFile: {}}}\n",
            cache.join("kitsync").display(),
            repo.display(),
            secret.display()
        ),
    )
    .expect("host config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("KITSYNC_LOG", "warn")
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("kitsync serve starts");
    let started = Instant::now();
    // Ready once every source was polled (the first poll brings in the current commit).
    loop {
        use std::io::{Read, Write};
        let ready = std::net::TcpStream::connect(("127.0.0.1", probes))
            .and_then(|mut s| {
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                Ok(answer.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if ready || started.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = github_signature(body, "bench-secret");
    let signed = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let vision = repo.join("kits/manufracture/vision.yaml");
    let mut latencies = Vec::new();
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let next = 6000 + i;
        let text = std::fs::read_to_string(&vision).expect("read");
        std::fs::write(
            &vision,
            text.replace(&format!("port: {current}"), &format!("port: {next}")),
        )
        .expect("write");
        commit(repo, &format!("port {next}"));
        // The Git host sends its webhook as the push completes; the clock starts at the push.
        let pushed = Instant::now();
        let code = post(hooks, "/hooks/default", &signed, body);
        if code != 202 {
            eprintln!("webhook call {i} answered {code}");
        }
        match wait_port(next, Duration::from_secs(30)) {
            Some(_) => latencies.push(pushed.elapsed()),
            None => eprintln!("commit {i} not applied within 30 s of its webhook"),
        }
        *current = next;
    }
    latencies.sort();
    println!(
        "serve: commit -> applied through a signed GitHub webhook (interval 1 h), {} commits",
        latencies.len()
    );
    if !latencies.is_empty() {
        println!(
            "  p50 {} ms   p99 {} ms   min {} ms   (goal: p50 under 1 s)",
            percentile(&latencies, 0.5).as_millis(),
            percentile(&latencies, 0.99).as_millis(),
            latencies[0].as_millis()
        );
    }

    // Rejected calls: 4 senders x 1,000 calls with a wrong signature, fresh connections.
    let wrong = github_signature(body, "guess");
    let started = Instant::now();
    let refused: usize = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let headers = [
                        ("X-GitHub-Event", "push"),
                        ("X-Hub-Signature-256", wrong.as_str()),
                    ];
                    (0..1000)
                        .filter(|_| post(hooks, "/hooks/default", &headers, body) == 401)
                        .count()
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap_or(0)).sum()
    });
    let elapsed = started.elapsed();
    println!(
        "  rejected calls: {refused} of 4000 answered 401 in {elapsed:.2?}: {:.0} calls/s (4 senders, one connection per call)",
        refused as f64 / elapsed.as_secs_f64()
    );
    stop(child);
}

/// (user + system CPU seconds, peak RSS KiB, current RSS KiB) of a process.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name and state.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmHWM:"), kib("VmRSS:"))
}

/// Writes by the service since line `skip_lines` of the audit log, by resource.
fn writes_since(audit: &Path, skip_lines: usize, host_namespace: &str) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let ours = lines
        .iter()
        .skip(skip_lines)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == kitsync_harness::ADMIN)
        .filter(|e| {
            e["objectRef"]["namespace"]
                .as_str()
                .is_some_and(|ns| ns == host_namespace || ns.starts_with("bench-kit-"))
        })
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap_or("?"),
                e["objectRef"]["resource"].as_str().unwrap_or("?")
            )
        })
        .collect();
    (ours, lines.len())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A repository of KITS kits of `objects` ConfigMaps each, in namespaces `<prefix>-NNN`,
/// under the example's platform file and plugins, committed.
fn kits_repo(prefix: &str, objects: usize) -> tempfile::TempDir {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let repo = tempfile::tempdir().expect("repo");
    std::fs::copy(examples.join("kitsync.yaml"), repo.path().join("kitsync.yaml")).expect("platform");
    copy_dir(&examples.join("plugins"), &repo.path().join("plugins"));
    for kit in 0..KITS {
        let dir = repo.path().join(format!("kits/k{kit:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("kit.yaml"), format!("namespace: {prefix}-{kit:03}\n")).expect("kit.yaml");
        std::fs::write(dir.join("config.yaml"), kit_objects_n(kit, None, objects)).expect("objects");
    }
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), &format!("{KITS} kits x {objects} objects"));
    repo
}

/// Time from `started` until every one of KITS Kits is Ready, or `None` after `limit`.
fn all_ready(
    runtime: &tokio::runtime::Runtime,
    client: &kube::Client,
    host_namespace: &str,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    loop {
        let kits = runtime
            .block_on(status::list(client, host_namespace))
            .unwrap_or_default();
        let ready = kits.iter().filter(|k| k.status.is_ready()).count();
        if ready == KITS {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            eprintln!("only {ready} of {KITS} kits Ready after {limit:?}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kit_objects(kit: usize, namespace: Option<&str>) -> String {
    kit_objects_n(kit, namespace, OBJECTS_PER_KIT)
}

fn kit_objects_n(kit: usize, namespace: Option<&str>, count: usize) -> String {
    let mut text = String::new();
    let ns = namespace.map_or(String::new(), |ns| format!("  namespace: {ns}\n"));
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i}\n{ns}  labels:\n    app.kubernetes.io/name: config-{i}\n    team: bench\ndata:\n  kit: \"{kit}\"\n  setting: \"{i}\"\n"
        ));
    }
    text
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let plane = match ControlPlane::start(Options::default()) {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("serve benchmark skipped: the control plane did not start: {e}");
            return;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(plane.client()).expect("client");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");

    // KITSYNC_BENCH_ONLY=drift runs section 4 alone (it is the slow one to iterate on).
    if std::env::var("KITSYNC_BENCH_ONLY").as_deref() == Ok("drift") {
        drift_at_scale(&plane, &runtime, &client);
        return;
    }

    // 1. commit -> applied latency.
    let repo = tempfile::tempdir().expect("repo");
    copy_dir(&examples, repo.path());
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), "v5");
    let cache = tempfile::tempdir().expect("cache");
    let child = serve(&plane, repo.path(), "kitsync-latency", cache.path());
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), "manufracture");
    let port = || {
        runtime.block_on(async {
            services
                .get_opt("vision")
                .await
                .ok()
                .flatten()
                .and_then(|s| s.spec?.ports?.first().map(|p| p.port))
        })
    };
    let wait_port = |want: i32, limit: Duration| {
        let started = Instant::now();
        while port() != Some(want) {
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(started.elapsed())
    };
    if wait_port(6776, Duration::from_secs(120)).is_none() {
        eprintln!("the first revision was not applied within 120 s");
        stop(child);
        return;
    }
    let vision = repo.path().join("kits/manufracture/vision.yaml");
    let mut latencies = Vec::new();
    let mut current = 6776;
    for i in 0..20 {
        // Commit at a random point of the poll cycle, as people do.
        let jitter = std::collections::hash_map::RandomState::new().hash_one(i) % 1000;
        std::thread::sleep(Duration::from_millis(jitter));
        let next = 5000 + i;
        let text = std::fs::read_to_string(&vision).expect("read");
        std::fs::write(
            &vision,
            text.replace(&format!("port: {current}"), &format!("port: {next}")),
        )
        .expect("write");
        commit(repo.path(), &format!("port {next}"));
        match wait_port(next, Duration::from_secs(30)) {
            Some(latency) => latencies.push(latency),
            None => eprintln!("commit {i} not applied within 30 s"),
        }
        current = next;
    }
    stop(child);
    latencies.sort();
    println!(
        "serve: commit -> applied through polling (interval 1 s, 10% jitter), {} commits",
        latencies.len()
    );
    if !latencies.is_empty() {
        let ms = |d: Duration| d.as_millis();
        println!(
            "  p50 {} ms   p99 {} ms   min {} ms   (polling alone waits 0.55 s on average: half an interval plus jitter)",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[0])
        );
    }

    // 1b. the same repository and kits, through the webhook.
    webhook_latency(&plane, repo.path(), cache.path(), &wait_port, &mut current);

    // 2. 100 kits x 10 objects from an empty cluster.
    let repo = kits_repo("bench-kit", OBJECTS_PER_KIT);
    let host_namespace = "kitsync-bench";
    let cache = tempfile::tempdir().expect("cache");
    let started = Instant::now();
    let child = serve(&plane, repo.path(), host_namespace, cache.path());
    let pid = child.id();
    let ready = all_ready(
        &runtime,
        &client,
        host_namespace,
        started,
        Duration::from_secs(300),
    );
    let (cpu_to_ready, peak_kib, _) = usage(pid);
    println!(
        "serve: {KITS} kits x {OBJECTS_PER_KIT} objects (3 platform validators each), empty cluster to all Ready"
    );
    if let Some(ready) = ready {
        println!(
            "  wall {ready:>7.2?} (including start-up and plugin compilation)   CPU {cpu_to_ready:.2} s   peak RSS {:.1} MiB",
            peak_kib as f64 / 1024.0
        );
    }

    // 3. idle, after the last Events of the first round have been published.
    std::thread::sleep(Duration::from_secs(3));
    let (_, audit_lines) = writes_since(plane.audit_log_path(), 0, host_namespace);
    let (cpu_before, _, _) = usage(pid);
    let idle = Duration::from_secs(20);
    std::thread::sleep(idle);
    let (cpu_after, _, rss_kib) = usage(pid);
    let (idle_writes, _) = writes_since(plane.audit_log_path(), audit_lines, host_namespace);
    println!(
        "serve idle ({KITS} kits, no new commit, 1 s polls): CPU {:.2}% of one core over {idle:?}, RSS {:.1} MiB, {} writes (goal 0){}",
        (cpu_after - cpu_before) / idle.as_secs_f64() * 100.0,
        rss_kib as f64 / 1024.0,
        idle_writes.len(),
        if idle_writes.is_empty() {
            String::new()
        } else {
            format!(": {idle_writes:?}")
        }
    );
    stop(child);

    // Peer: the same 1,000 objects with kubectl apply --server-side.
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        println!("  kubectl apply --server-side: (kubectl not installed; skipped)");
        return;
    }
    drift_at_scale(&plane, &runtime, &client);

    let files = tempfile::tempdir().expect("files");
    for kit in 0..KITS {
        let ns = format!("bench-kubectl-{kit:03}");
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n{}",
            kit_objects(kit, Some(&ns))
        );
        std::fs::write(files.path().join(format!("{ns}.yaml")), text).expect("write");
    }
    let started = Instant::now();
    let out = Command::new("kubectl")
        .args(["apply", "--server-side", "-f"])
        .arg(files.path())
        .env("KUBECONFIG", plane.kubeconfig_path())
        .output()
        .expect("kubectl runs");
    let kubectl = started.elapsed();
    if !out.status.success() {
        println!("  kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    match ready {
        Some(ready) => println!(
            "  kubectl apply --server-side, same 1,000 objects and 100 namespaces: {kubectl:>7.2?}   (kitsync serve from start to all Ready, policies included, is {:.1}x faster)",
            kubectl.as_secs_f64() / ready.as_secs_f64()
        ),
        None => println!("  kubectl apply --server-side: {kubectl:>7.2?}"),
    }
}

/// 4: 100 kits x 100 ConfigMaps under watch: memory, requests at rest, drift correction.
fn drift_at_scale(plane: &ControlPlane, runtime: &tokio::runtime::Runtime, client: &kube::Client) {
    const OBJECTS: usize = 100;
    let repo = kits_repo("bench-drift", OBJECTS);
    let host_namespace = "kitsync-bench-drift";
    let cache = tempfile::tempdir().expect("cache");
    let started = Instant::now();
    let child = serve(plane, repo.path(), host_namespace, cache.path());
    let pid = child.id();
    let Some(to_ready) = all_ready(runtime, client, host_namespace, started, Duration::from_secs(600)) else {
        stop(child);
        return;
    };
    // At rest: every request the host makes (watches, not polling), over one minute.
    std::thread::sleep(Duration::from_secs(5));
    let before = std::fs::read_to_string(plane.audit_log_path())
        .unwrap_or_default()
        .lines()
        .count();
    std::thread::sleep(Duration::from_secs(60));
    let text = std::fs::read_to_string(plane.audit_log_path()).unwrap_or_default();
    let requests: Vec<String> = text
        .lines()
        .skip(before)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == kitsync_harness::ADMIN && e["stage"] == "ResponseComplete")
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap_or("?"),
                e["objectRef"]["resource"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let (_, peak_kib, rss_kib) = usage(pid);
    println!(
        "serve: drift detection on {KITS} kits x {OBJECTS} objects ({} objects), all Ready in {to_ready:.1?}",
        KITS * OBJECTS
    );
    println!(
        "  peak RSS {:.1} MiB (goal: under 100 MB), RSS at rest {:.1} MiB, API requests at rest {} per minute ({})",
        peak_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0,
        requests.len(),
        summarize(&requests)
    );

    // Hand edits of 20 objects across kits: time until the kit's value is back.
    let by_hand = kube::api::PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let mut latencies = Vec::new();
    for i in 0..20usize {
        let kit = (i * 37) % KITS;
        let name = format!("config-{}", (i * 13) % OBJECTS);
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), &format!("bench-drift-{kit:03}"));
        let patch = serde_json::json!({"data": {"setting": "edited by hand"}});
        let edited = Instant::now();
        if let Err(e) = runtime.block_on(api.patch(&name, &by_hand, &kube::api::Patch::Merge(&patch))) {
            eprintln!("hand edit {i} failed: {e}");
            continue;
        }
        loop {
            let value = runtime
                .block_on(api.get_opt(&name))
                .ok()
                .flatten()
                .and_then(|c| c.data?.get("setting").cloned());
            if value.as_deref() != Some("edited by hand") {
                latencies.push(edited.elapsed());
                break;
            }
            if edited.elapsed() > Duration::from_secs(30) {
                eprintln!("hand edit {i} not corrected within 30 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    latencies.sort();
    if !latencies.is_empty() {
        println!(
            "  hand edit -> corrected (selfHeal), {} edits: p50 {} ms, p99 {} ms",
            latencies.len(),
            percentile(&latencies, 0.5).as_millis(),
            percentile(&latencies, 0.99).as_millis()
        );
    }
    stop(child);
}

/// "verb resource" counts, most frequent first.
fn summarize(requests: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in requests {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .take(5)
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}
