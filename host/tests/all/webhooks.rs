//! Issue 11, operating `serve`: the webhook receiver of every provider, slow senders, the
//! probes and `/metrics`, on the real control plane with real Git repositories.

use super::serve::{Repo, Service, config_map, config_map_kit, service_port, suffix, wait_for};
use super::{free_port, git, http_request as request};
use kitsync::serve::HostConfig;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

async fn call(
    port: u16,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || request(port, method, &path, &headers, &body))
        .await
        .expect("request")
}

fn hmac_hex(body: &[u8], secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `/metrics` parsed with a Prometheus text-format parser.
async fn scrape(port: u16) -> prometheus_parse::Scrape {
    let (code, text) = call(port, "GET", "/metrics".into(), vec![], vec![]).await;
    assert_eq!(code, 200, "{text}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text")
}

/// The value of the sample `metric` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

fn polls(scrape: &prometheus_parse::Scrape, source: &str) -> f64 {
    sample(
        scrape,
        "kitsync_git_poll_duration_seconds_count",
        &[("source", source)],
    )
    .or_else(|| sample(scrape, "kitsync_git_poll_duration_seconds", &[("source", source)]))
    .unwrap_or_else(|| panic!("no poll count for {source}"))
}

/// A repository with one ConfigMap kit, for a source of its own.
fn config_map_repo(kit: &str, ns: &str, value: &str) -> Repo {
    let repo = Repo {
        dir: tempfile::tempdir().expect("repo"),
    };
    git(repo.path(), &["init", "-q"]);
    for (path, text) in config_map_kit(kit, ns, &[], value) {
        repo.write(&path, &text);
    }
    repo
}

/// Every provider's signed push polls its source at once (the interval is an hour); refused
/// calls (wrong HMAC, HMAC over another body, no header, `sha1=`) trigger nothing; an
/// oversized body gets 413 and malformed JSON 400; a burst of 200 calls causes a few polls
/// at most; slow senders get 408 or are cut off; the probes answer throughout; `/metrics`
/// parses and has every family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_of_every_provider_probes_and_metrics() {
    let id = suffix("w");
    let repo = Repo::example(&id);
    let v5 = repo.commit("v5");
    let others: Vec<(&str, &str, Repo)> = ["gitea", "gitlab", "generic"]
        .into_iter()
        .map(|provider| {
            let kit = format!("cm-{provider}");
            let repo = config_map_repo(&kit, &format!("{kit}-{id}"), "1");
            repo.commit("first");
            (provider, provider, repo)
        })
        .collect();
    let cache = tempfile::tempdir().expect("cache");
    let (probes, hooks) = (free_port(), free_port());
    let secret_file = cache.path().join("hook-secret");
    std::fs::write(&secret_file, "whsec-123\n").expect("secret");
    let mut text = format!(
        "hostNamespace: kitsync-{id}\ncacheDir: {}\nwebhookTimeout: 1s\nlisten: {{probes: 127.0.0.1:{probes}, webhooks: 127.0.0.1:{hooks}}}\nsources:\n  - name: gitops\n    url: {}\n    interval: 1h\n    webhook: {{provider: github, secretFile: {}}}\n",
        cache.path().display(),
        repo.url(),
        secret_file.display()
    );
    for (name, provider, repo) in &others {
        text.push_str(&format!(
            "  - name: {name}\n    url: {}\n    interval: 1h\n    webhook: {{provider: {provider}, secretFile: {}}}\n",
            repo.url(),
            secret_file.display()
        ));
    }
    let file = cache.path().join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    let config = HostConfig::load(&file).expect("host config parses");
    let service = Service::start(config).await;
    service.wait_applied("manufracture", &v5).await;
    let get = |path: &'static str| call(probes, "GET", path.into(), vec![], vec![]);
    wait_for("/readyz 200", async || {
        (get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get("/healthz").await.0, 200);

    let post = |source: &'static str, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        call(hooks, "POST", format!("/hooks/{source}"), headers, body)
    };
    let push = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let event = ("X-GitHub-Event", "push".to_owned());
    let signed = (
        "X-Hub-Signature-256",
        format!("sha256={}", hmac_hex(&push, "whsec-123")),
    );

    // Refused calls trigger nothing.
    repo.edit("kits/manufracture/vision.yaml", "port: 6776", "port: 5445");
    let v6 = repo.commit("v6");
    let wrong = format!("sha256={}", hmac_hex(&push, "guess"));
    let other_body = format!("sha256={}", hmac_hex(b"{}", "whsec-123"));
    let sha1 = format!("sha1={}", hmac_hex(&push, "whsec-123"));
    for signature in [Some(wrong), Some(other_body), Some(sha1), None] {
        let mut headers = vec![event.clone()];
        if let Some(signature) = signature {
            headers.push(("X-Hub-Signature-256", signature));
        }
        assert_eq!(post("gitops", headers, push.clone()).await.0, 401);
    }
    let huge = vec![b' '; 5 << 20];
    let huge_signed = (
        "X-Hub-Signature-256",
        format!("sha256={}", hmac_hex(&huge, "whsec-123")),
    );
    assert_eq!(
        post("gitops", vec![event.clone(), huge_signed], huge).await.0,
        413,
        "a 5 MiB body is refused, even signed"
    );
    let garbage = b"{not json".to_vec();
    let signed_garbage = (
        "X-Hub-Signature-256",
        format!("sha256={}", hmac_hex(&garbage, "whsec-123")),
    );
    assert_eq!(
        post("gitops", vec![event.clone(), signed_garbage], garbage)
            .await
            .0,
        400
    );
    let ping = ("X-GitHub-Event", "ping".to_owned());
    assert_eq!(
        post("gitops", vec![ping, signed.clone()], push.clone()).await.0,
        200
    );
    assert_eq!(
        post("nope", vec![event.clone(), signed.clone()], push.clone())
            .await
            .0,
        404
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kit = service.kit("manufracture").await.expect("kit");
    assert_eq!(kit.status.last_applied_revision, v5, "nothing triggered a poll");

    // GitHub: the change lands without waiting for the hour.
    let started = Instant::now();
    assert_eq!(
        post("gitops", vec![event.clone(), signed.clone()], push.clone())
            .await
            .0,
        202
    );
    service.wait_applied("manufracture", &v6).await;
    eprintln!("commit -> applied through the webhook: {:?}", started.elapsed());
    assert_eq!(service_port(&format!("manufracture-{id}")).await, Some(5445));

    // Gitea, GitLab and the generic HMAC header: each one's own proof polls its source.
    for (name, provider, repo) in &others {
        let kit = format!("cm-{provider}");
        repo.edit(&format!("kits/{kit}/config.yaml"), "value: \"1\"", "value: \"2\"");
        let commit = repo.commit("two");
        let mut headers = match *provider {
            "gitea" => vec![
                ("X-Gitea-Event", "push".to_owned()),
                ("X-Gitea-Signature", hmac_hex(&push, "whsec-123")),
            ],
            "gitlab" => vec![
                ("X-Gitlab-Event", "Push Hook".to_owned()),
                ("X-Gitlab-Token", "whsec-123".to_owned()),
            ],
            _ => vec![(
                "X-Kitsync-Signature",
                format!("sha256={}", hmac_hex(&push, "whsec-123")),
            )],
        };
        // The wrong proof first: nothing moves.
        let last = headers.pop().expect("proof header");
        let mut wrong = headers.clone();
        wrong.push((last.0, last.1.replace('a', "b").replace("whsec", "wh")));
        assert_eq!(post(name, wrong, push.clone()).await.0, 401, "{provider}");
        headers.push(last);
        assert_eq!(post(name, headers, push.clone()).await.0, 202, "{provider}");
        service.wait_applied(&kit, &commit).await;
        let cm = config_map(&format!("{kit}-{id}"), &kit).await.expect("ConfigMap");
        assert_eq!(
            cm.data.and_then(|d| d.get("value").cloned()).as_deref(),
            Some("2"),
            "{provider}"
        );
    }

    // A burst of 200 valid calls is coalesced into a few polls; the probes answer throughout.
    let before = polls(&scrape(probes).await, "gitops");
    let burst: Vec<_> = (0..200)
        .map(|_| post("gitops", vec![event.clone(), signed.clone()], push.clone()))
        .collect();
    let probing = async {
        for _ in 0..10 {
            assert_eq!(get("/healthz").await.0, 200);
        }
    };
    let (codes, ()) = tokio::join!(futures::future::join_all(burst), probing);
    for (code, _) in codes {
        assert_eq!(code, 202);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = polls(&scrape(probes).await, "gitops");
    eprintln!("200 webhook calls caused {} polls", after - before);
    assert!(after > before, "the burst polled");
    assert!(after - before <= 5.0, "200 calls caused {} polls", after - before);

    // Slow senders: a trickled body gets 408 after webhookTimeout (1 s); headers that never
    // finish get the connection closed.
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", hooks)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let started = Instant::now();
        let head = "POST /hooks/gitops HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ref\":";
        stream.write_all(head.as_bytes()).expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let body_cut = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

        let mut stream = TcpStream::connect(("127.0.0.1", hooks)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let started = Instant::now();
        stream
            .write_all(b"POST /hooks/gitops HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (body_cut, started.elapsed())
    });
    let (body_cut, headers_cut) = slow.await.expect("slow senders");
    assert!(
        body_cut < Duration::from_secs(8),
        "trickled body cut after {body_cut:?}"
    );
    assert!(
        headers_cut < Duration::from_secs(8),
        "unfinished headers cut after {headers_cut:?}"
    );
    assert_eq!(get("/healthz").await.0, 200);

    // Every family, with the values of what happened above.
    let m = scrape(probes).await;
    let families = [
        "kitsync_reconcile_duration_seconds",
        "kitsync_objects_total",
        "kitsync_plugin_call_duration_seconds",
        "kitsync_git_poll_duration_seconds",
        "kitsync_git_poll_errors_total",
        "kitsync_webhook_requests_total",
        "kitsync_kits",
        "kitsync_kit_info",
        "kitsync_build_info",
    ];
    for family in families {
        assert!(
            m.docs.contains_key(family) || m.samples.iter().any(|s| s.metric.starts_with(family)),
            "no {family} in /metrics"
        );
    }
    let webhook = |source: &str, result: &str| {
        sample(
            &m,
            "kitsync_webhook_requests_total",
            &[("source", source), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(webhook("gitops", "unauthorized"), 4.0);
    assert_eq!(webhook("gitops", "too_large"), 1.0);
    assert_eq!(webhook("gitops", "malformed"), 1.0);
    assert_eq!(webhook("gitops", "ignored"), 1.0);
    assert_eq!(webhook("gitops", "triggered"), 201.0);
    assert_eq!(webhook("gitops", "timed_out"), 1.0);
    assert_eq!(webhook("unknown", "not_found"), 1.0);
    assert_eq!(webhook("gitlab", "triggered"), 1.0);
    assert_eq!(
        sample(
            &m,
            "kitsync_kit_info",
            &[("kit", "manufracture"), ("revision", &v6)]
        ),
        Some(1.0),
        "the info metric names the last applied revision"
    );
    assert_eq!(
        sample(&m, "kitsync_kits", &[("condition", "Ready"), ("status", "True")]),
        Some(5.0),
        "five kits Ready"
    );
    assert!(
        sample(
            &m,
            "kitsync_objects_total",
            &[("kit", "manufracture"), ("action", "applied")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        sample(
            &m,
            "kitsync_reconcile_duration_seconds_count",
            &[("kit", "manufracture"), ("result", "applied")]
        )
        .or_else(|| sample(
            &m,
            "kitsync_reconcile_duration_seconds",
            &[("kit", "manufracture"), ("result", "applied")]
        ))
        .unwrap_or(0.0)
            >= 2.0,
        "two applies of manufracture"
    );
    assert!(
        sample(
            &m,
            "kitsync_plugin_call_duration_seconds",
            &[("plugin", "plugins/port-range.wasm"), ("stage", "validate")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "the example's port-range validator ran"
    );
    assert_eq!(
        sample(&m, "kitsync_git_poll_errors_total", &[("source", "gitops")]),
        Some(0.0)
    );
    // No error text, URL or secret in any label.
    for s in &m.samples {
        for (key, value) in s.labels.iter() {
            assert!(
                !value.contains("whsec") && !value.contains("file://") && !value.contains(' '),
                "label {key}={value:?} of {} is not a bounded word",
                s.metric
            );
        }
    }
    service.stop().await;
}

/// A poll that fails (here: the repository is not there yet) is retried with backoff, not after
/// the whole interval (an hour), so a push whose poll failed is not lost until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_poll_is_retried_before_the_interval() {
    let id = suffix("p");
    let repo = config_map_repo("late", &format!("late-{id}"), "1");
    let commit = repo.commit("first");
    let parent = tempfile::tempdir().expect("parent");
    let url_path = parent.path().join("gitops");
    let cache = tempfile::tempdir().expect("cache");
    let text = format!(
        "hostNamespace: kitsync-{id}\ncacheDir: {}\nretry: {{initial: 1s, max: 2s}}\nsources:\n  - name: gitops\n    url: file://{}\n    interval: 1h\n",
        cache.path().display(),
        url_path.display()
    );
    let file = cache.path().join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    let service = Service::start(HostConfig::load(&file).expect("host config parses")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(service.kit("late").await.is_none(), "nothing to apply yet");
    // The repository appears; the next retry (within 2 s) finds it.
    std::fs::rename(repo.path(), &url_path).expect("move the repository in");
    let started = Instant::now();
    service.wait_applied("late", &commit).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "applied {:?} after the repository appeared",
        started.elapsed()
    );
    service.stop().await;
}
