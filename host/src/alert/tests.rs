//! The alerter's admission and drift delay on paused time. Sinks here have queues but no
//! delivery task, so a test reads exactly what would be sent; delivery over HTTP is tested
//! in `host/tests/all/alerts.rs`.

use super::*;

/// An alerter whose sinks are bare queues, named with the events they take.
fn alerter(
    drift_alert_after: Duration,
    sinks: &[(&str, EventSet)],
) -> (Alerter, Vec<Arc<Queue>>, Arc<Metrics>) {
    alerter_with_capacity(drift_alert_after, sinks, 64)
}

fn alerter_with_capacity(
    drift_alert_after: Duration,
    sinks: &[(&str, EventSet)],
    capacity: usize,
) -> (Alerter, Vec<Arc<Queue>>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let queues: Vec<Arc<Queue>> = sinks.iter().map(|_| Arc::new(Queue::new(capacity))).collect();
    let sinks = sinks
        .iter()
        .zip(&queues)
        .map(|((name, events), queue)| Sink {
            name: (*name).to_owned(),
            events: *events,
            queue: queue.clone(),
        })
        .collect();
    let inner = Inner::new(
        sinks,
        drift_alert_after,
        metrics.clone(),
        Some(tokio::runtime::Handle::current()),
        Vec::new(),
    );
    (
        Alerter {
            inner: Arc::new(inner),
        },
        queues,
        metrics,
    )
}

/// What a queue holds, as (kit, event, revision), emptying it.
fn taken(queue: &Queue) -> Vec<(String, Event, String)> {
    queue
        .drain()
        .into_iter()
        .map(|a| (a.kit, a.event, a.revision))
        .collect()
}

fn one(kit: &str, event: Event, revision: &str) -> (String, Event, String) {
    (kit.to_owned(), event, revision.to_owned())
}

/// Lets spawned timers that are due run.
async fn settle() {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn notify_dedupes_and_filters_per_sink() {
    let only_failures: EventSet = [Event::Failed, Event::Recovered].into_iter().collect();
    let (alerter, queues, _) = alerter(Duration::ZERO, &[("all", EventSet::ALL), ("ops", only_failures)]);
    for (event, revision, message) in [
        (Event::RevisionDetected, "a", ""),
        (Event::Applied, "a", ""),
        (Event::Failed, "a", "health: web not ready"),
        (Event::Failed, "a", "health: timed out"),
        (Event::Recovered, "a", ""),
        (Event::Recovered, "a", ""),
        (Event::Converged, "a", ""),
        (Event::Converged, "a", ""),
    ] {
        alerter.notify(Alert::new("web", revision, event, message));
    }
    assert_eq!(
        taken(&queues[0]),
        [
            one("web", Event::RevisionDetected, "a"),
            one("web", Event::Applied, "a"),
            one("web", Event::Failed, "a"),
            one("web", Event::Recovered, "a"),
            one("web", Event::Converged, "a"),
        ]
    );
    assert_eq!(
        taken(&queues[1]),
        [one("web", Event::Failed, "a"), one("web", Event::Recovered, "a")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_drift_shorter_than_the_delay_sends_nothing() {
    let (alerter, queues, _) = alerter(Duration::from_secs(300), &[("all", EventSet::ALL)]);
    alerter.drift_started("web", "a", "Service web: spec.ports[0].port changed");
    tokio::time::advance(Duration::from_secs(299)).await;
    settle().await;
    alerter.drift_ended("web");
    tokio::time::advance(Duration::from_secs(600)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), []);
}

#[tokio::test(start_paused = true)]
async fn a_lasting_drift_sends_one_drifted_after_the_delay_from_its_first_start() {
    let (alerter, queues, _) = alerter(Duration::from_secs(300), &[("all", EventSet::ALL)]);
    alerter.drift_started("web", "a", "port changed");
    tokio::time::advance(Duration::from_secs(200)).await;
    // Seen again: the clock keeps its first start, the message is the latest.
    alerter.drift_started("web", "a", "port and image changed");
    tokio::time::advance(Duration::from_secs(99)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), [], "not yet: 299 s");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let sent = queues[0].drain();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].event, Event::Drifted);
    assert_eq!(
        sent[0].message,
        "port and image changed (drifted for more than 5m)"
    );
    // Still drifting, seen again and again: nothing more.
    alerter.drift_started("web", "a", "port changed");
    tokio::time::advance(Duration::from_secs(3600)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), []);
}

#[tokio::test(start_paused = true)]
async fn a_new_drift_after_the_end_of_one_waits_and_alerts_again() {
    let (alerter, queues, _) = alerter(Duration::from_secs(60), &[("all", EventSet::ALL)]);
    alerter.drift_started("web", "a", "m");
    tokio::time::advance(Duration::from_secs(61)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), [one("web", Event::Drifted, "a")]);
    alerter.drift_ended("web");
    alerter.drift_started("web", "a", "m");
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), [], "the new drift waits its own delay");
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), [one("web", Event::Drifted, "a")]);
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_alerts_at_once_and_kits_are_apart() {
    let (alerter, queues, _) = alerter(Duration::ZERO, &[("all", EventSet::ALL)]);
    alerter.drift_started("web", "a", "port changed");
    alerter.drift_started("web", "a", "port changed");
    alerter.drift_started("db", "a", "replicas changed");
    let sent = queues[0].drain();
    assert_eq!(
        sent.iter()
            .map(|a| (a.kit.as_str(), a.message.as_str()))
            .collect::<Vec<_>>(),
        [("web", "port changed"), ("db", "replicas changed")]
    );
    // A drift that outlasts a new revision is news at once.
    alerter.drift_started("web", "b", "port changed");
    assert_eq!(taken(&queues[0]), [one("web", Event::Drifted, "b")]);
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_kit_cancels_its_drift_timer() {
    let (alerter, queues, _) = alerter(Duration::from_secs(60), &[("all", EventSet::ALL)]);
    alerter.drift_started("web", "a", "m");
    alerter.forget("web");
    tokio::time::advance(Duration::from_secs(120)).await;
    settle().await;
    assert_eq!(taken(&queues[0]), []);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_the_oldest_and_counts_it() {
    let (alerter, queues, metrics) = alerter_with_capacity(Duration::ZERO, &[("all", EventSet::ALL)], 4);
    for revision in ["1", "2", "3", "4", "5", "6"] {
        alerter.notify(Alert::new("web", revision, Event::Applied, ""));
    }
    let kept: Vec<String> = queues[0].drain().into_iter().map(|a| a.revision).collect();
    assert_eq!(kept, ["3", "4", "5", "6"], "capacity 4 keeps the newest");
    let text = metrics.encode();
    assert!(
        text.contains(r#"kitsync_alerts_total{sink="all",event="applied",result="dropped"} 2"#),
        "{text}"
    );
}

#[test]
fn a_disabled_alerter_needs_no_runtime_and_does_nothing() {
    let alerter = Alerter::disabled();
    assert!(!alerter.is_enabled());
    alerter.notify(Alert::new("web", "a", Event::Failed, "x"));
    alerter.drift_started("web", "a", "x");
    alerter.drift_ended("web");
}

#[test]
fn starting_with_sinks_outside_a_runtime_is_an_error() {
    let settings = AlertSettings {
        sinks: vec![SinkSettings {
            name: "ops".into(),
            kind: SinkKind::Webhook,
            url: UrlSource::Inline("http://127.0.0.1:9/".into()),
            secret: None,
            events: EventSet::ALL,
        }],
        ..AlertSettings::default()
    };
    let err = Alerter::start(&settings, Arc::new(Metrics::new())).expect_err("no runtime");
    assert!(matches!(err, Error::NoRuntime), "{err}");
}

#[test]
fn unreadable_secrets_name_where_they_are_not_what() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "not a url XYZSECRET\n").expect("write");
    let sink = |url: UrlSource, secret: Option<crate::source::Secret>| AlertSettings {
        sinks: vec![SinkSettings {
            name: "ops".into(),
            kind: SinkKind::Webhook,
            url,
            secret,
            events: EventSet::ALL,
        }],
        ..AlertSettings::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let cases = [
        (
            sink(
                UrlSource::Secret(crate::source::Secret::File(dir.path().join("missing"))),
                None,
            ),
            "cannot read its URL",
        ),
        (
            sink(
                UrlSource::Secret(crate::source::Secret::File(url_file.clone())),
                None,
            ),
            "not an absolute http(s) URL",
        ),
        (
            sink(
                UrlSource::Inline("http://127.0.0.1:9/".into()),
                Some(crate::source::Secret::Env("KITSYNC_TEST_UNSET_ALERT_KEY".into())),
            ),
            "cannot read its signing key",
        ),
    ];
    for (settings, want) in cases {
        let err = Alerter::start(&settings, Arc::new(Metrics::new())).expect_err(want);
        let chain = format!("{:?} {}", anyhow::Error::from(err), "");
        assert!(chain.contains(want), "{chain}");
        assert!(!chain.contains("XYZSECRET"), "{chain}");
    }
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let alert = Alert::new("web", "a", Event::Failed, "é".repeat(MAX_MESSAGE_BYTES));
    assert!(alert.message.len() <= MAX_MESSAGE_BYTES);
    assert!(alert.message.ends_with('…'));
}

#[test]
fn event_names_round_trip_through_the_config_syntax() {
    for event in Event::ALL {
        let parsed: Event = serde_json::from_value(serde_json::Value::from(event.as_str())).expect("parses");
        assert_eq!(parsed, event);
    }
}
