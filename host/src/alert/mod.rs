//! Alerts: tells people what happens to their kits, through webhook sinks named in the host
//! configuration (generic JSON, optionally signed, and Slack-compatible incoming webhooks).
//!
//! ```yaml
//! alerts:
//!   driftAlertAfter: 5m          # `drifted` only when a drift lasts longer (0s: at once; default 5m)
//!   sinks:
//!     - name: ops                # DNS-1123 label, unique; the `sink` label of metrics and logs
//!       type: webhook            # generic JSON (below)
//!       urlFile: /etc/kitsync/alerts/ops-url      # or urlEnv: VAR, or url: (see below)
//!       secretFile: /etc/kitsync/alerts/ops-hmac  # optional (or secretEnv: VAR)
//!       events: [failed, recovered, converged]    # optional filter; default all
//!     - name: chat
//!       type: slack              # Slack-compatible incoming webhook
//!       urlEnv: SLACK_WEBHOOK_URL
//! ```
//!
//! A sink's URL is read from a file or a variable when the [`Alerter`] starts, since most
//! receivers (Slack's among them) take the URL itself as the credential. `url:` inline is only
//! for URLs that hold no credential: kitsync refuses it for Slack sinks and for URLs with user
//! info or a query, but cannot see a token in a path, so keep those in `urlFile`/`urlEnv` too.
//! URLs and keys never appear in logs, errors, metrics or `Debug` output.
//!
//! # Events
//! `revision-detected` (a new commit touches the kit), `applied`, `converged` (applied and
//! healthy), `drifted` (live state diverged for longer than `driftAlertAfter`), `failed`
//! (render, policy, apply or health), `recovered` (the first success after a `failed`).
//!
//! # What a sink receives
//! Each alert is one `POST` with `Content-Type: application/json`:
//! - `webhook`: `{"kit": "web", "revision": "<commit sha>", "event": "failed", "message":
//!   "...", "time": "2025-01-02T03:04:05.123Z"}`: exactly these fields; `time` is RFC 3339 in
//!   UTC (fractional seconds as needed), when the alert was raised (not when a retry delivered it). With a key,
//!   `X-Kitsync-Signature: sha256=<hex HMAC-SHA256 of the body>`; the signed `time` lets a
//!   receiver refuse replays. Kit names are unique per host, so no source is named.
//! - `slack`: `{"text": "kitsync: *web* failed at `0123456789ab`: ..."}`, with `&`, `<` and
//!   `>` escaped so that no message can mention `@channel` or forge a link.
//!
//! # Guarantees
//! - [`Alerter::notify`] never waits and never fails: each sink has its own bounded queue and
//!   task; a full queue drops its oldest alert (warning, `kitsync_alerts_total{result="dropped"}`).
//! - Deduplicated: the same (kit, event, revision) is sent once, whatever its message. A
//!   `recovered` is sent only after a `failed` of that kit, and ends it, so a later `failed`
//!   (even at the same revision) is sent again.
//! - In order per sink: one alert at a time, later ones wait behind a retry.
//! - Retried on connection errors, timeouts (10 s per request), 5xx and 429 (`Retry-After`
//!   in seconds honoured up to the cap), waiting 1 s doubling to 1 min, for at most 10 attempts
//!   or 15 min; then given up with a warning. Other answers (4xx, and 3xx: redirects are not
//!   followed) are permanent failures, logged once. See [`DeliveryPolicy`].
//!
//! # Caveats
//! - The dedupe state lives in memory: after a restart, or on a new leader, the events of the
//!   current revisions may be sent once more.
//! - `message` is sent as given: the caller redacts kit secrets from it (as for status).
//! - Keys and URLs are read once, at start: a rotated secret takes a restart.

mod config;
mod gate;
mod sink;

pub use config::{
    AlertSettings, AlertsFile, DEFAULT_DRIFT_ALERT_AFTER, SinkFile, SinkKind, SinkSettings, UrlSource,
};
pub use sink::{DeliveryPolicy, SIGNATURE_HEADER};

use crate::metrics::{AlertResult, Metrics};
use gate::{DriftStep, Gate};
use serde::Deserialize;
use sink::{Queue, Target};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What happened to a kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A new commit touches the kit.
    RevisionDetected,
    /// The kit's objects were applied.
    Applied,
    /// Applied and healthy.
    Converged,
    /// The live state diverged from Git for longer than `driftAlertAfter`.
    Drifted,
    /// Render, policy, apply or health failed.
    Failed,
    /// The kit succeeded again after a `failed`.
    Recovered,
}

impl Event {
    /// Every event, in the order of a revision's life.
    pub const ALL: [Event; 6] = [
        Event::RevisionDetected,
        Event::Applied,
        Event::Converged,
        Event::Drifted,
        Event::Failed,
        Event::Recovered,
    ];

    /// The name used in the config, the JSON body and the `event` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RevisionDetected => "revision-detected",
            Event::Applied => "applied",
            Event::Converged => "converged",
            Event::Drifted => "drifted",
            Event::Failed => "failed",
            Event::Recovered => "recovered",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of events (a sink's filter).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventSet(u8);

impl EventSet {
    /// Every event.
    pub const ALL: EventSet = EventSet((1 << Event::ALL.len()) - 1);

    /// Whether `event` is in the set.
    pub fn contains(self, event: Event) -> bool {
        self.0 & (1 << event.index()) != 0
    }
}

impl FromIterator<Event> for EventSet {
    fn from_iter<I: IntoIterator<Item = Event>>(events: I) -> Self {
        EventSet(events.into_iter().fold(0, |bits, e| bits | (1 << e.index())))
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Event::ALL.iter().filter(|e| self.contains(**e)))
            .finish()
    }
}

/// Longest message sent, bytes; longer ones are cut (Slack refuses very long texts, and an
/// alert is a pointer to the Kit's status, not a copy of it).
pub const MAX_MESSAGE_BYTES: usize = 2000;

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The kit's name.
    pub kit: String,
    /// The commit the alert is about (may be empty when none is known yet).
    pub revision: String,
    /// What happened.
    pub event: Event,
    /// For people: the reason of a failure, what drifted. Already redacted.
    pub message: String,
    /// When it happened.
    pub time: jiff::Timestamp,
}

impl Alert {
    /// An alert raised now; `message` is cut to [`MAX_MESSAGE_BYTES`].
    pub fn new(kit: &str, revision: &str, event: Event, message: impl Into<String>) -> Alert {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Alert {
            kit: kit.to_owned(),
            revision: revision.to_owned(),
            event,
            message,
            time: jiff::Timestamp::now(),
        }
    }
}

/// Why the alerter cannot start. No variant holds a URL or a key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sink's URL or key cannot be read (the file or variable is named, not its value).
    #[error("alert sink {sink}: cannot read its {what}")]
    Secret {
        /// The sink.
        sink: String,
        /// `URL` or `signing key`.
        what: &'static str,
        /// Where it should have been.
        #[source]
        source: crate::source::Error,
    },
    /// A sink's URL or key is unusable.
    #[error("alert sink {sink}: {reason}")]
    Invalid {
        /// The sink.
        sink: String,
        /// What is wrong (never quoting the URL).
        reason: &'static str,
    },
    /// The HTTP client cannot be built (TLS set-up).
    #[error("building the HTTP client of alert sinks")]
    Client(#[source] reqwest::Error),
    /// Started outside a Tokio runtime, which delivery and drift timers run on.
    #[error("the alerter must be started inside a Tokio runtime")]
    NoRuntime,
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sends alerts to the configured sinks, deduplicated, in the background. Cheap to clone;
/// the delivery tasks stop when the last clone is dropped or at [`Alerter::shutdown`].
#[derive(Clone, Debug)]
pub struct Alerter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The dedupe and drift state. Alerts are queued while it is held, so that every sink
    /// sees them in the order they were admitted.
    gate: Mutex<Gate>,
    sinks: Vec<Sink>,
    drift_alert_after: Duration,
    metrics: Arc<Metrics>,
    /// Where drift timers run; `None` without sinks.
    runtime: Option<tokio::runtime::Handle>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Sink {
    name: String,
    events: EventSet,
    queue: Arc<Queue>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut gate) = self.gate.lock() {
            gate.stop_timers();
        }
        if let Ok(workers) = self.workers.get_mut() {
            for worker in workers.drain(..) {
                worker.abort();
            }
        }
    }
}

impl Alerter {
    /// An alerter with no sinks: every call is a no-op. Needs no runtime.
    pub fn disabled() -> Alerter {
        Alerter {
            inner: Arc::new(Inner::new(
                Vec::new(),
                DEFAULT_DRIFT_ALERT_AFTER,
                Arc::new(Metrics::new()),
                None,
                Vec::new(),
            )),
        }
    }

    /// Reads every sink's URL and key and starts one delivery task per sink, with the
    /// default [`DeliveryPolicy`].
    ///
    /// # Errors
    /// A URL or key that cannot be read or is unusable (named by sink, never quoted); no
    /// Tokio runtime; the HTTP client cannot be built.
    pub fn start(settings: &AlertSettings, metrics: Arc<Metrics>) -> Result<Alerter> {
        Self::with_policy(settings, metrics, DeliveryPolicy::default())
    }

    /// [`Alerter::start`] with another delivery policy.
    ///
    /// # Errors
    /// As [`Alerter::start`].
    pub fn with_policy(
        settings: &AlertSettings,
        metrics: Arc<Metrics>,
        policy: DeliveryPolicy,
    ) -> Result<Alerter> {
        let targets = settings.sinks.iter().map(target).collect::<Result<Vec<_>>>()?;
        if targets.is_empty() {
            let inner = Inner::new(Vec::new(), settings.drift_alert_after, metrics, None, Vec::new());
            return Ok(Alerter {
                inner: Arc::new(inner),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .connect_timeout(policy.request_timeout)
            // A redirect would re-send the alert (and its signature) to a URL nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kitsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Client)?;
        let mut sinks = Vec::new();
        let mut workers = Vec::new();
        for (target, settings) in targets.into_iter().zip(&settings.sinks) {
            let plain = target.url.scheme() == "http"
                && !matches!(target.url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if plain {
                tracing::warn!(
                    sink = target.name,
                    "alerts to this sink travel unencrypted (http)"
                );
            }
            tracing::info!(
                sink = target.name,
                kind = target.kind.as_str(),
                signed = target.key.is_some(),
                events = ?settings.events,
                "alert sink ready"
            );
            let queue = Arc::new(Queue::new(policy.queue_capacity));
            sinks.push(Sink {
                name: target.name.clone(),
                events: settings.events,
                queue: queue.clone(),
            });
            workers.push(runtime.spawn(sink::run(
                target,
                queue,
                client.clone(),
                policy.clone(),
                metrics.clone(),
            )));
        }
        let inner = Inner::new(sinks, settings.drift_alert_after, metrics, Some(runtime), workers);
        Ok(Alerter {
            inner: Arc::new(inner),
        })
    }

    /// Whether any sink is configured.
    pub fn is_enabled(&self) -> bool {
        !self.inner.sinks.is_empty()
    }

    /// Queues `alert` for every sink that wants its event, unless it is a duplicate (see the
    /// module's guarantees). Never waits on a sink; never fails.
    pub fn notify(&self, alert: Alert) {
        self.inner.notify(alert);
    }

    /// The drift code saw `kit` diverge from Git at `revision`. `drifted` is sent once the
    /// drift has lasted `driftAlertAfter` (at once when it is zero), unless
    /// [`Alerter::drift_ended`] came first.
    ///
    /// Per kit, not per object: call it whenever any object of the kit is found diverged;
    /// repeated calls keep the first start and update the revision and message the alert
    /// will carry. If the drift outlasts the delay and goes on at a new revision, that
    /// revision is alerted at once.
    pub fn drift_started(&self, kit: &str, revision: &str, message: &str) {
        Inner::drift_started(&self.inner, kit, revision, message);
    }

    /// No object of `kit` diverges any more (corrected, or Git caught up). A pending
    /// `drifted` is cancelled, and the next drift is a new one that alerts again.
    pub fn drift_ended(&self, kit: &str) {
        if let Ok(mut gate) = self.inner.gate.lock() {
            gate.drift_ended(kit);
        }
    }

    /// Forgets `kit` (removed from Git): its dedupe state and any pending drift.
    pub fn forget(&self, kit: &str) {
        if let Ok(mut gate) = self.inner.gate.lock() {
            gate.forget(kit);
        }
    }

    /// Stops taking alerts, lets the sinks deliver what is queued for at most `grace`, then
    /// stops their tasks; alerts left are counted as dropped.
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(mut gate) = self.inner.gate.lock() {
            gate.stop_timers();
        }
        for sink in &self.inner.sinks {
            sink.queue.close();
        }
        let mut workers: Vec<_> = self
            .inner
            .workers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        let drained = futures::future::join_all(workers.iter_mut());
        if tokio::time::timeout(grace, drained).await.is_err() {
            workers.iter().for_each(|w| w.abort());
            // Wait for the cancellations, so their in-flight alerts are counted on return.
            futures::future::join_all(workers).await;
        }
        for sink in &self.inner.sinks {
            for alert in sink.queue.drain() {
                self.inner
                    .dropped(sink, &alert, "alert not delivered before shutdown");
            }
        }
    }
}

impl Inner {
    fn new(
        sinks: Vec<Sink>,
        drift_alert_after: Duration,
        metrics: Arc<Metrics>,
        runtime: Option<tokio::runtime::Handle>,
        workers: Vec<tokio::task::JoinHandle<()>>,
    ) -> Inner {
        Inner {
            gate: Mutex::default(),
            sinks,
            drift_alert_after,
            metrics,
            runtime,
            workers: Mutex::new(workers),
        }
    }

    fn notify(&self, alert: Alert) {
        if self.sinks.is_empty() {
            return;
        }
        let Ok(mut gate) = self.gate.lock() else {
            return;
        };
        if !gate.admit(&alert.kit, alert.event, &alert.revision) {
            tracing::trace!(
                kit = alert.kit,
                revision = alert.revision,
                event = alert.event.as_str(),
                "alert already sent"
            );
            return;
        }
        self.fan_out(alert);
        drop(gate);
    }

    /// Queues an admitted alert; called with the gate held.
    fn fan_out(&self, alert: Alert) {
        for sink in self.sinks.iter().filter(|s| s.events.contains(alert.event)) {
            match sink.queue.push(alert.clone()) {
                Ok(None) => {}
                Ok(Some(oldest)) => self.dropped(sink, &oldest, "alert queue full: dropped the oldest alert"),
                Err(refused) => self.dropped(sink, &refused, "alerter shut down: alert not queued"),
            }
        }
    }

    fn dropped(&self, sink: &Sink, alert: &Alert, why: &'static str) {
        tracing::warn!(
            sink = sink.name,
            kit = alert.kit,
            revision = alert.revision,
            event = alert.event.as_str(),
            "{why}"
        );
        self.metrics
            .alert(&sink.name, alert.event.as_str(), AlertResult::Dropped);
    }

    fn drift_started(this: &Arc<Inner>, kit: &str, revision: &str, message: &str) {
        let Some(runtime) = &this.runtime else {
            return;
        };
        let Ok(mut gate) = this.gate.lock() else {
            return;
        };
        let delay = this.drift_alert_after;
        match gate.drift_started(kit, revision, message, delay.is_zero()) {
            DriftStep::Wait => {}
            DriftStep::SendNow => {
                if gate.admit(kit, Event::Drifted, revision) {
                    this.fan_out(Alert::new(
                        kit,
                        revision,
                        Event::Drifted,
                        drift_message(message, delay),
                    ));
                }
            }
            DriftStep::StartTimer(episode) => {
                // Weak: a pending timer must not keep the alerter (and its tasks) alive.
                let weak = Arc::downgrade(this);
                let owned = kit.to_owned();
                // From now, not from when the task is first polled, which may be later.
                let due = tokio::time::Instant::now() + delay;
                let timer = runtime.spawn(async move {
                    tokio::time::sleep_until(due).await;
                    Inner::drift_due(&weak, &owned, episode);
                });
                gate.set_timer(kit, episode, timer.abort_handle());
            }
        }
    }

    fn drift_due(weak: &Weak<Inner>, kit: &str, episode: u64) {
        let Some(this) = weak.upgrade() else { return };
        let Ok(mut gate) = this.gate.lock() else {
            return;
        };
        if let Some((revision, message)) = gate.drift_due(kit, episode)
            && gate.admit(kit, Event::Drifted, &revision)
        {
            let message = drift_message(&message, this.drift_alert_after);
            this.fan_out(Alert::new(kit, &revision, Event::Drifted, message));
        }
    }
}

/// The drift code's message, with how long the drift has lasted when there was a delay.
fn drift_message(message: &str, delay: Duration) -> String {
    if delay.is_zero() {
        return message.to_owned();
    }
    let secs = delay.as_secs();
    let lasted = match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{message} (drifted for more than {lasted})")
}

/// Reads a sink's URL and key now, so that a typo stops the start rather than every alert.
fn target(settings: &SinkSettings) -> Result<Target> {
    let sink = &settings.name;
    let url_text = match &settings.url {
        UrlSource::Inline(url) => url.clone(),
        UrlSource::Secret(secret) => secret.read().map_err(|source| Error::Secret {
            sink: sink.clone(),
            what: "URL",
            source,
        })?,
    };
    let invalid = |reason| Error::Invalid {
        sink: sink.clone(),
        reason,
    };
    let url =
        reqwest::Url::parse(&url_text).map_err(|_| invalid("its URL is not an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("its URL must be http or https"));
    }
    let key = match &settings.secret {
        None => None,
        Some(secret) => {
            let key = secret.read().map_err(|source| Error::Secret {
                sink: sink.clone(),
                what: "signing key",
                source,
            })?;
            if key.is_empty() {
                return Err(invalid("its signing key is empty"));
            }
            Some(key.into_bytes())
        }
    };
    Ok(Target {
        name: sink.clone(),
        kind: settings.kind,
        url,
        key,
    })
}

#[cfg(test)]
mod tests;
