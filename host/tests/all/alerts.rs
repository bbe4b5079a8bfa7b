//! Issue 12, alerts: delivery to real HTTP receivers on loopback, started by each test. No
//! Kubernetes is involved: the alerter is called as the service calls it.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use kitsync::alert::{AlertSettings, Alerter, DeliveryPolicy, Event, SIGNATURE_HEADER};
use kitsync::metrics::Metrics;
use kitsync::serve::HostConfig;
use sha2::Sha256;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One request a receiver got.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// 1 for the first request the receiver got, and so on.
    nth: usize,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// An HTTP receiver on loopback that answers the statuses of `answers` in turn, then 200.
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<Received>,
}

#[derive(Clone)]
struct ReceiverState {
    answers: Arc<Mutex<VecDeque<u16>>>,
    count: Arc<Mutex<usize>>,
    sent: mpsc::UnboundedSender<Received>,
}

async fn record(
    axum::extract::State(state): axum::extract::State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let nth = {
        let mut count = state.count.lock().expect("count");
        *count += 1;
        *count
    };
    let _ = state.sent.send(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        nth,
    });
    let code = state.answers.lock().expect("answers").pop_front().unwrap_or(200);
    StatusCode::from_u16(code).expect("status")
}

async fn receiver(answers: &[u16]) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (sent, requests) = mpsc::unbounded_channel();
    let state = ReceiverState {
        answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
        count: Arc::default(),
        sent,
    };
    let app = axum::Router::new().fallback(record).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{address}"),
        requests,
    }
}

impl Receiver {
    /// The next request, failing the test after 10 s.
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.requests.recv())
            .await
            .expect("a request within 10 s")
            .expect("receiver running")
    }

    /// Fails if another request arrives within `wait`.
    async fn nothing_more(&mut self, wait: Duration) {
        if let Ok(Some(extra)) = tokio::time::timeout(wait, self.requests.recv()).await {
            panic!(
                "unexpected request: {extra:?} {}",
                String::from_utf8_lossy(&extra.body)
            );
        }
    }
}

/// Fast retries, so the tests take milliseconds rather than minutes.
fn quick() -> DeliveryPolicy {
    DeliveryPolicy {
        request_timeout: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_attempts: 5,
        ..DeliveryPolicy::default()
    }
}

/// The `alerts:` part of a host file, through the real config loader.
fn settings(dir: &std::path::Path, alerts: &str) -> AlertSettings {
    let text = format!(
        "cacheDir: {}\nsources:\n  - {{name: gitops, url: 'file:///nonexistent'}}\nalerts:\n{alerts}",
        dir.display()
    );
    let file = dir.join("host.yaml");
    std::fs::write(&file, text).expect("host file");
    HostConfig::load(&file).expect("host config parses").alerts
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).expect("secret file");
    path.display().to_string()
}

fn metric(metrics: &Metrics, labels: &str) -> u64 {
    let text = metrics.encode();
    let prefix = format!("kitsync_alerts_total{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().expect("a count"))
}

fn alert(kit: &str, revision: &str, event: Event, message: &str) -> kitsync::alert::Alert {
    kitsync::alert::Alert::new(kit, revision, event, message)
}

#[tokio::test]
async fn a_webhook_sink_gets_each_event_once_in_order_with_a_valid_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ops = receiver(&[]).await;
    let mut failures = receiver(&[]).await;
    let url_file = secret_file(dir.path(), "ops-url", &format!("{}/hooks/kitsync", ops.url));
    let key_file = secret_file(dir.path(), "ops-hmac", "hmac-key-for-tests");
    let settings = settings(
        dir.path(),
        &format!(
            "  driftAlertAfter: 0s\n  sinks:\n    - name: ops\n      type: webhook\n      urlFile: {url_file}\n      secretFile: {key_file}\n    - name: failures\n      type: webhook\n      url: {}/only-failures\n      events: [failed, recovered]\n",
            failures.url
        ),
    );
    let metrics = Arc::new(Metrics::new());
    let alerter = Alerter::with_policy(&settings, metrics.clone(), quick()).expect("starts");

    let rev = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    alerter.notify(alert("web", rev, Event::RevisionDetected, "new commit"));
    alerter.notify(alert(
        "web",
        rev,
        Event::Failed,
        "apply: Service web: port 99999 out of range",
    ));
    alerter.notify(alert(
        "web",
        rev,
        Event::Failed,
        "apply: the same failure, said again",
    ));
    alerter.notify(alert("web", rev, Event::RevisionDetected, "polled again"));
    alerter.notify(alert("web", rev, Event::Applied, "12 objects"));
    alerter.notify(alert("web", rev, Event::Recovered, "applied"));
    alerter.notify(alert(
        "web",
        rev,
        Event::Recovered,
        "applied again: nothing failed",
    ));
    alerter.notify(alert("web", rev, Event::Converged, "healthy"));
    alerter.drift_started("web", rev, "Service web: spec.ports[0].port is 8081, Git says 80");
    alerter.drift_started("web", rev, "still drifted");

    let want = [
        (Event::RevisionDetected, "new commit"),
        (Event::Failed, "apply: Service web: port 99999 out of range"),
        (Event::Applied, "12 objects"),
        (Event::Recovered, "applied"),
        (Event::Converged, "healthy"),
        (
            Event::Drifted,
            "Service web: spec.ports[0].port is 8081, Git says 80",
        ),
    ];
    for (event, message) in want {
        let got = ops.next().await;
        assert_eq!(got.path, "/hooks/kitsync");
        assert_eq!(
            got.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"hmac-key-for-tests").expect("key");
        mac.update(&got.body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            got.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()),
            Some(signature.as_str()),
            "the signature is HMAC-SHA256 of the exact body"
        );
        let body = got.json();
        let fields: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, ["event", "kit", "message", "revision", "time"], "{body}");
        assert_eq!(body["kit"], "web");
        assert_eq!(body["revision"], rev);
        assert_eq!(body["event"], event.as_str());
        assert_eq!(body["message"], message);
        let time = body["time"].as_str().expect("time is text");
        assert!(time.ends_with('Z'), "UTC: {time}");
        let at: jiff::Timestamp = time.parse().expect("RFC 3339");
        let age = jiff::Timestamp::now().duration_since(at);
        assert!(age.as_secs() < 60, "{time}");
    }
    ops.nothing_more(Duration::from_millis(300)).await;

    // The filtered sink got its two events only, unsigned.
    for event in [Event::Failed, Event::Recovered] {
        let got = failures.next().await;
        assert_eq!(got.json()["event"], event.as_str());
        assert!(got.headers.get(SIGNATURE_HEADER).is_none());
    }
    failures.nothing_more(Duration::from_millis(100)).await;
    assert_eq!(metric(&metrics, r#"sink="ops",event="failed",result="sent""#), 1);
    assert_eq!(
        metric(&metrics, r#"sink="failures",event="recovered",result="sent""#),
        1
    );
}

#[tokio::test]
async fn a_slack_sink_gets_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut slack = receiver(&[]).await;
    let url_file = secret_file(
        dir.path(),
        "slack-url",
        &format!("{}/services/T000/B000/XXXXXXXXXXXX", slack.url),
    );
    let settings = settings(
        dir.path(),
        &format!("  sinks:\n    - name: chat\n      type: slack\n      urlFile: {url_file}\n"),
    );
    let alerter = Alerter::with_policy(&settings, Arc::new(Metrics::new()), quick()).expect("starts");
    alerter.notify(alert(
        "web",
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        Event::Failed,
        "policy no-privileged: <!channel> container app is privileged",
    ));
    let got = slack.next().await;
    assert_eq!(got.path, "/services/T000/B000/XXXXXXXXXXXX");
    assert_eq!(
        got.json(),
        serde_json::json!({
            "text": "kitsync: *web* failed at `4b825dc642cb`: policy no-privileged: &lt;!channel&gt; container app is privileged"
        })
    );
}

#[tokio::test]
async fn a_500_is_retried_and_notify_returns_at_once_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flaky = receiver(&[500, 500]).await;
    let settings = settings(
        dir.path(),
        &format!(
            "  sinks:\n    - {{name: flaky, type: webhook, url: '{}/'}}\n",
            flaky.url
        ),
    );
    let metrics = Arc::new(Metrics::new());
    let policy = DeliveryPolicy {
        initial_backoff: Duration::from_millis(200),
        ..quick()
    };
    let alerter = Alerter::with_policy(&settings, metrics.clone(), policy).expect("starts");
    alerter.notify(alert("web", "a", Event::Failed, "first"));
    let first = flaky.next().await;
    assert_eq!(first.nth, 1);

    // The sink is between attempts: more alerts queue behind the one being retried.
    let mut times = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        alerter.notify(alert("web", &format!("rev-{i}"), Event::Applied, ""));
        times.push(started.elapsed());
    }
    times.sort();
    // The median, not the slowest: one call may lose the CPU on a busy machine.
    assert!(times[25] < Duration::from_micros(100), "notify took {times:?}");

    let second = flaky.next().await;
    let third = flaky.next().await;
    assert_eq!((second.nth, third.nth), (2, 3));
    assert_eq!(third.json()["message"], "first", "the same alert, third try");
    assert_eq!(third.body, first.body, "retried byte for byte");
    for i in 0..50 {
        let got = flaky.next().await;
        assert_eq!(
            got.json()["revision"],
            format!("rev-{i}"),
            "in order, after the retried one"
        );
    }
    flaky.nothing_more(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&metrics, r#"sink="flaky",event="failed",result="sent""#),
        1
    );
    assert_eq!(
        metric(&metrics, r#"sink="flaky",event="applied",result="sent""#),
        50
    );
}

#[tokio::test]
async fn a_dead_sink_never_blocks_notify() {
    // Accepts connections and never answers: the worst sink, worse than a refused port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            held.lock().expect("held").push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(
        dir.path(),
        &format!("  sinks:\n    - {{name: dead, type: webhook, url: 'http://{address}/'}}\n"),
    );
    let metrics = Arc::new(Metrics::new());
    let policy = DeliveryPolicy {
        request_timeout: Duration::from_secs(60),
        queue_capacity: 64,
        ..quick()
    };
    let alerter = Alerter::with_policy(&settings, metrics.clone(), policy).expect("starts");
    alerter.notify(alert("web", "rev-first", Event::Applied, ""));
    // Let the worker connect and hang on the first alert.
    for _ in 0..200 {
        if !accepted.lock().expect("held").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!accepted.lock().expect("held").is_empty(), "the sink was reached");

    let mut times = Vec::new();
    for i in 0..1000 {
        let started = Instant::now();
        alerter.notify(alert("web", &format!("rev-{i}"), Event::Applied, "x"));
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    let max = times[times.len() - 1];
    eprintln!("notify on a dead sink: median {median:?}, p99 {p99:?}, max {max:?}");
    assert!(median < Duration::from_micros(100), "median {median:?}");
    assert!(p99 < Duration::from_millis(1), "p99 {p99:?}");
    assert_eq!(
        metric(&metrics, r#"sink="dead",event="applied",result="dropped""#),
        1000 - 64,
        "a full queue drops its oldest"
    );

    // Shutdown gives up on the dead sink after its grace, counting what was never sent.
    let started = Instant::now();
    alerter.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&metrics, r#"sink="dead",event="applied",result="dropped""#),
        1001,
        "every alert is counted: queued ones and the one in flight"
    );
    alerter.notify(alert("web", "rev-late", Event::Applied, ""));
    assert_eq!(
        metric(&metrics, r#"sink="dead",event="applied",result="dropped""#),
        1002,
        "an alert after shutdown is counted too"
    );
}

/// Log lines written while the returned guard lives (this thread only: `#[tokio::test]` runs
/// every task on the test's thread).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

fn text(buffer: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buffer.lock().expect("log")).into_owned()
}

#[tokio::test]
async fn a_400_is_not_retried_and_is_logged_once_without_the_url() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strict = receiver(&[400, 400, 400]).await;
    let url_file = secret_file(
        dir.path(),
        "url",
        &format!("{}/services/T0/B0/TOKEN-SECRET-1", strict.url),
    );
    let settings = settings(
        dir.path(),
        &format!("  sinks:\n    - {{name: strict, type: slack, urlFile: {url_file}}}\n"),
    );
    let metrics = Arc::new(Metrics::new());
    let alerter = Alerter::with_policy(&settings, metrics.clone(), quick()).expect("starts");
    alerter.notify(alert("web", "a", Event::Failed, "x"));
    assert_eq!(strict.next().await.nth, 1);
    strict.nothing_more(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&metrics, r#"sink="strict",event="failed",result="failed""#),
        1
    );
    let logs = text(&logs);
    assert_eq!(logs.matches("not retried").count(), 1, "{logs}");
    assert!(logs.contains("HTTP 400"), "{logs}");
    assert!(!logs.contains("TOKEN-SECRET"), "the URL leaked:\n{logs}");
    assert!(!format!("{settings:?} {alerter:?}").contains("TOKEN-SECRET"));
}

#[tokio::test]
async fn an_unreachable_sink_is_retried_then_given_up_without_leaking_its_url() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url_file = secret_file(
        dir.path(),
        "url",
        &format!("http://127.0.0.1:{port}/hook/TOKEN-SECRET-2?code=TOKEN-SECRET-3"),
    );
    let settings = settings(
        dir.path(),
        &format!(
            "  sinks:\n    - {{name: gone, type: webhook, urlFile: {url_file}, secretFile: {url_file}}}\n"
        ),
    );
    let metrics = Arc::new(Metrics::new());
    let policy = DeliveryPolicy {
        max_attempts: 3,
        ..quick()
    };
    let alerter = Alerter::with_policy(&settings, metrics.clone(), policy).expect("starts");
    alerter.notify(alert("web", "a", Event::Failed, "x"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&metrics, r#"sink="gone",event="failed",result="failed""#) == 0 {
        assert!(
            Instant::now() < deadline,
            "given up within 10 s:\n{}",
            text(&logs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = text(&logs);
    assert_eq!(logs.matches("retrying").count(), 2, "{logs}");
    assert_eq!(logs.matches("alert given up").count(), 1, "{logs}");
    assert!(logs.contains("cannot connect"), "{logs}");
    assert!(!logs.contains("TOKEN-SECRET"), "the URL leaked:\n{logs}");
    assert_eq!(metric(&metrics, r#"sink="gone",event="failed",result="sent""#), 0);
}

/// The service end to end: a kit's life (a commit, a broken commit, a fix, a hand edit) as
/// alerts (`converged` once its objects are ready) at a loopback receiver, in order and once
/// each; the receiver's first answer is a 500, retried without holding anything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_a_kits_life_as_alerts_in_order_once_each() {
    use super::serve::{Repo, Service, suffix};
    let mut sink = receiver(&[500]).await;
    let id = suffix("al");
    let ns = format!("alerts-{id}");
    let repo = Repo {
        dir: tempfile::tempdir().expect("repo"),
    };
    super::git(repo.path(), &["init", "-q"]);
    repo.write(
        "kits/shop/kit.yaml",
        &format!("namespace: {ns}\nselfHeal: false\n"),
    );
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
    repo.write("kits/shop/config.yaml", config_map);
    let v1 = repo.commit("v1");
    let cache = tempfile::tempdir().expect("cache");
    let text = format!(
        "hostNamespace: kitsync-{id}\ncacheDir: {}\nretry: {{initial: 1s, max: 2s}}\nalerts:\n  driftAlertAfter: 1s\n  sinks:\n    - {{name: ops, type: webhook, url: {}/alerts}}\nsources:\n  - name: gitops\n    url: {}\n    interval: 1s\n",
        cache.path().display(),
        sink.url,
        repo.url()
    );
    let file = cache.path().join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    let service = Service::start(kitsync::serve::HostConfig::load(&file).expect("host config")).await;
    service.wait_applied("shop", &v1).await;
    service.wait_kit_condition("shop", "Healthy", "True").await;

    repo.write(
        "kits/shop/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [broken\n",
    );
    let v2 = repo.commit("v2: broken");
    service.wait_kit_condition("shop", "Stalled", "True").await;
    repo.write("kits/shop/config.yaml", config_map);
    let v3 = repo.commit("v3: fixed");
    service.wait_applied("shop", &v3).await;
    service.wait_kit_condition("shop", "Healthy", "True").await;

    let client = kitsync_harness::ControlPlane::shared()
        .client()
        .await
        .expect("client");
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, &ns);
    let by_hand = kube::api::PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let edit = serde_json::json!({"data": {"mode": "slow"}});
    api.patch("settings", &by_hand, &kube::api::Patch::Merge(&edit))
        .await
        .expect("hand edit");

    let expected = [
        ("revision-detected", &v1),
        ("applied", &v1),
        ("converged", &v1),
        ("revision-detected", &v2),
        ("failed", &v2),
        ("revision-detected", &v3),
        ("applied", &v3),
        ("recovered", &v3),
        ("converged", &v3),
        ("drifted", &v3),
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let request = sink.next().await;
        if request.nth == 1 {
            // The 500 is retried: the same alert comes again.
            continue;
        }
        let body = request.json();
        assert_eq!(body["kit"], "shop", "{body}");
        seen.push((
            body["event"].as_str().unwrap_or_default().to_owned(),
            body["revision"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(e, r)| ((*e).to_owned(), (*r).clone()))
        .collect();
    assert_eq!(seen, expected);
    // Retries of the broken revision and the resync add nothing.
    sink.nothing_more(Duration::from_secs(2)).await;
    service.stop().await;
}
