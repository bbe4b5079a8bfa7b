//! One sink: its bounded queue, the task that delivers from it in order, the request bodies
//! and signature, and the retry policy.
//!
//! Nothing here prints the sink's URL or key: errors from the HTTP client are shown without
//! their URL, and a receiver's answer is quoted only in part and with the URL removed.

use super::config::SinkKind;
use super::{Alert, Event};
use crate::metrics::{AlertResult, Metrics};
use crate::redact::REDACTED;
use hmac::{Hmac, Mac};
use reqwest::{StatusCode, Url};
use sha2::Sha256;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The header carrying the body's HMAC-SHA256, as `sha256=<hex>` (the same scheme kitsync's
/// own generic webhook receiver checks).
pub const SIGNATURE_HEADER: &str = "x-kitsync-signature";

/// How alerts are delivered; the defaults suit real sinks, tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Longest time for one request, connection to the end of the answer (default 10 s).
    pub request_timeout: Duration,
    /// Wait before the first retry; doubles at each retry (default 1 s).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (default 1 min); also caps a `Retry-After`.
    pub max_backoff: Duration,
    /// Attempts before an alert is given up (default 10).
    pub max_attempts: u32,
    /// Time after the first attempt past which no retry starts (default 15 min).
    pub give_up_after: Duration,
    /// Alerts waiting per sink; a full queue drops its oldest (default 1024).
    pub queue_capacity: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            request_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 10,
            give_up_after: Duration::from_secs(15 * 60),
            queue_capacity: 1024,
        }
    }
}

/// Where and how one sink is called: read and checked at start.
pub(super) struct Target {
    pub(super) name: String,
    pub(super) kind: SinkKind,
    pub(super) url: Url,
    pub(super) key: Option<Vec<u8>>,
}

// The URL (a bearer secret for Slack) and the key never reach a log through Debug.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &REDACTED)
            .field("key", &self.key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A sink's waiting alerts. A `VecDeque` under a lock rather than a channel, because a full
/// queue must drop its oldest alert (the newest says more about now), which channels cannot.
#[derive(Debug)]
pub(super) struct Queue {
    items: Mutex<VecDeque<Alert>>,
    capacity: usize,
    wake: Notify,
    closed: AtomicBool,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Self {
        Queue {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(64))),
            capacity: capacity.max(1),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds `alert` without waiting; returns the alert dropped to make room, if any.
    ///
    /// # Errors
    /// The queue is closed (the alerter shut down): `alert` is given back.
    pub(super) fn push(&self, alert: Alert) -> Result<Option<Alert>, Alert> {
        if self.closed.load(Ordering::Acquire) {
            return Err(alert);
        }
        let dropped = {
            let Ok(mut items) = self.items.lock() else {
                return Err(alert);
            };
            let dropped = if items.len() >= self.capacity {
                items.pop_front()
            } else {
                None
            };
            items.push_back(alert);
            dropped
        };
        // Stores a permit when the worker is busy, so no wake-up is lost.
        self.wake.notify_one();
        Ok(dropped)
    }

    fn pop(&self) -> Option<Alert> {
        self.items.lock().ok()?.pop_front()
    }

    /// Takes what is left (at shutdown).
    pub(super) fn drain(&self) -> Vec<Alert> {
        self.items
            .lock()
            .map(|mut items| items.drain(..).collect())
            .unwrap_or_default()
    }

    /// No more alerts are taken; the worker ends once the queue is empty.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// Delivers the alerts of one sink, one at a time and in order, until its queue is closed
/// and empty. An alert being retried holds back the ones behind it, which keeps their order.
pub(super) async fn run(
    target: Target,
    queue: Arc<Queue>,
    client: reqwest::Client,
    policy: DeliveryPolicy,
    metrics: Arc<Metrics>,
) {
    loop {
        match queue.pop() {
            Some(alert) => {
                let mut flight = InFlight {
                    sink: &target.name,
                    alert: &alert,
                    metrics: &metrics,
                    done: false,
                };
                let result = deliver(&target, &client, &policy, &alert).await;
                flight.done = true;
                metrics.alert(&target.name, alert.event.as_str(), result);
            }
            None if queue.closed.load(Ordering::Acquire) => break,
            None => queue.wake.notified().await,
        }
    }
}

/// Counts the alert being delivered as dropped if its task is stopped first (the grace of
/// [`Alerter::shutdown`](super::Alerter::shutdown) ran out), so that every alert is counted.
struct InFlight<'a> {
    sink: &'a str,
    alert: &'a Alert,
    metrics: &'a Metrics,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(
                sink = self.sink,
                kit = self.alert.kit,
                revision = self.alert.revision,
                event = self.alert.event.as_str(),
                "alert not delivered before its sink was stopped"
            );
            self.metrics
                .alert(self.sink, self.alert.event.as_str(), AlertResult::Dropped);
        }
    }
}

/// Why an attempt did not deliver.
enum Failure {
    /// Worth another attempt (connection, timeout, 5xx, 429), after at least this long.
    Transient(String, Option<Duration>),
    /// Will not improve (other 4xx, 3xx: redirects are not followed).
    Permanent(String),
}

// Every log line of a delivery names the sink, kit, revision and event through this span.
#[tracing::instrument(level = "info", skip_all, fields(sink = %target.name, kit = %alert.kit, revision = %alert.revision, event = alert.event.as_str()))]
async fn deliver(
    target: &Target,
    client: &reqwest::Client,
    policy: &DeliveryPolicy,
    alert: &Alert,
) -> AlertResult {
    let body = match target.kind {
        SinkKind::Webhook => json_body(alert),
        SinkKind::Slack => slack_body(alert),
    };
    let signature = target.key.as_deref().map(|key| sign(key, &body));
    let started = Instant::now();
    let mut backoff = policy.initial_backoff;
    for attempt in 1..=policy.max_attempts.max(1) {
        let mut request = client
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(attempt, "alert sent");
                return AlertResult::Sent;
            }
            Ok(response) => classify(response, &target.url).await,
            Err(e) => Failure::Transient(describe(e, &target.url), None),
        };
        let reason = match failure {
            Failure::Permanent(reason) => {
                tracing::warn!(reason, "alert refused by the sink; not retried");
                return AlertResult::Failed;
            }
            Failure::Transient(reason, retry_after) => {
                let wait = retry_after.map_or(backoff, |after| after.min(policy.max_backoff).max(backoff));
                if attempt < policy.max_attempts && started.elapsed() + wait <= policy.give_up_after {
                    tracing::debug!(
                        attempt,
                        reason,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "alert not delivered; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                    continue;
                }
                reason
            }
        };
        tracing::warn!(attempts = attempt, reason, "alert given up");
        return AlertResult::Failed;
    }
    AlertResult::Failed
}

/// Sorts a non-2xx answer: 429 and 5xx are transient, the rest permanent.
async fn classify(response: reqwest::Response, url: &Url) -> Failure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reason = format!("HTTP {}{}", status.as_u16(), answer_excerpt(response, url).await);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Failure::Transient(reason, retry_after)
    } else {
        Failure::Permanent(reason)
    }
}

/// The start of a receiver's answer (Slack says why in it: `invalid_payload`, `no_text`),
/// on one line, with the URL removed should the receiver echo it.
async fn answer_excerpt(mut response: reqwest::Response, url: &Url) -> String {
    const MAX: usize = 200;
    let mut bytes = Vec::new();
    while bytes.len() < MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).replace(url.as_str(), REDACTED);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A client error as text, without the URL reqwest puts in its messages.
fn describe(error: reqwest::Error, url: &Url) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text.replace(url.as_str(), REDACTED)
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub(super) fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The generic webhook body: exactly `kit`, `revision`, `event`, `message`, `time`.
pub(super) fn json_body(alert: &Alert) -> Vec<u8> {
    serde_json::json!({
        "kit": alert.kit,
        "revision": alert.revision,
        "event": alert.event.as_str(),
        "message": alert.message,
        "time": alert.time.to_string(),
    })
    .to_string()
    .into_bytes()
}

/// The Slack body: `{"text": "..."}` in Slack's mrkdwn.
pub(super) fn slack_body(alert: &Alert) -> Vec<u8> {
    serde_json::json!({ "text": slack_text(alert) })
        .to_string()
        .into_bytes()
}

fn slack_text(alert: &Alert) -> String {
    let what = match alert.event {
        Event::RevisionDetected => "sees a new revision",
        Event::Applied => "applied",
        Event::Converged => "converged",
        Event::Drifted => "drifted",
        Event::Failed => "failed",
        Event::Recovered => "recovered",
    };
    let revision: String = alert.revision.chars().take(12).collect();
    let at = if revision.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", escape(&revision))
    };
    let mut text = format!("kitsync: *{}* {what}{at}", escape(&alert.kit));
    if !alert.message.is_empty() {
        text.push_str(": ");
        text.push_str(&escape(&alert.message));
    }
    text
}

/// Slack's three control characters. Without this a message from a commit could ping
/// `<!channel>` or disguise a link.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(event: Event, message: &str) -> Alert {
        Alert {
            kit: "web".into(),
            revision: "0123456789abcdef0123".into(),
            event,
            message: message.into(),
            time: "2025-01-02T03:04:05Z".parse().expect("time"),
        }
    }

    #[test]
    fn the_json_body_has_exactly_the_documented_fields() {
        let body: serde_json::Value =
            serde_json::from_slice(&json_body(&alert(Event::RevisionDetected, "new commit"))).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "kit": "web",
                "revision": "0123456789abcdef0123",
                "event": "revision-detected",
                "message": "new commit",
                "time": "2025-01-02T03:04:05Z",
            })
        );
    }

    #[test]
    fn slack_text_is_escaped_and_short() {
        let body: serde_json::Value =
            serde_json::from_slice(&slack_body(&alert(Event::Failed, "<!channel> a & b"))).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "text": "kitsync: *web* failed at `0123456789ab`: &lt;!channel&gt; a &amp; b"
            })
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let queue = Queue::new(2);
        assert_eq!(queue.push(alert(Event::Applied, "1")), Ok(None));
        assert_eq!(queue.push(alert(Event::Applied, "2")), Ok(None));
        let dropped = queue
            .push(alert(Event::Applied, "3"))
            .expect("open")
            .expect("full");
        assert_eq!(dropped.message, "1");
        let left: Vec<String> = queue.drain().into_iter().map(|a| a.message).collect();
        assert_eq!(left, ["2", "3"]);
        queue.close();
        assert_eq!(
            queue.push(alert(Event::Applied, "4")).map_err(|a| a.message),
            Err("4".into()),
            "a closed queue takes nothing"
        );
    }

    #[test]
    fn debug_hides_the_url_and_key() {
        let target = Target {
            name: "chat".into(),
            kind: SinkKind::Slack,
            url: Url::parse("https://hooks.slack.com/services/T0/B0/XYZSECRET").expect("url"),
            key: Some(b"XYZKEY".to_vec()),
        };
        let shown = format!("{target:?}");
        assert!(
            !shown.contains("XYZSECRET") && !shown.contains("XYZKEY"),
            "{shown}"
        );
    }
}
