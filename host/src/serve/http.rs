//! The service's HTTP side: the webhook receiver (`POST /hooks/<source>`) that makes a source
//! poll now, and the probes and metrics (`/healthz`, `/readyz`, `/metrics`).
//!
//! A webhook call is a trigger only: its signature is checked, in constant time, before the
//! body is parsed, and the commit always comes from the remote's ref at the next poll, never
//! from the payload. Triggers of one source coalesce: a burst causes one poll (or two).

use super::config::{Provider, WebhookSettings};
use crate::metrics::{Metrics, WebhookOutcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};

/// A source's webhook: how calls are checked, and what to wake.
pub struct Hook {
    /// The provider's signature scheme.
    pub provider: Provider,
    /// The shared secret (`None` only with the operator's explicit insecure flag).
    pub secret: Option<String>,
    /// Woken on a valid call; holds one permit, so a burst coalesces.
    pub trigger: Arc<Notify>,
}

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// Every source has been polled once (successfully or not).
    pub sources_polled: AtomicBool,
    /// The Kit CRD is installed.
    pub crd_installed: AtomicBool,
    /// This replica follows another (leader election): it has read the Lease and watches
    /// for its turn. A follower is ready; it reconciles nothing until it leads.
    pub following: AtomicBool,
}

/// How long a webhook sender may take to send its headers, and then its whole request,
/// unless the host config says otherwise (`webhookTimeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once per listener; more wait in the kernel's backlog, so slow
/// senders cannot hold every socket and file descriptor of the host.
const MAX_CONNECTIONS: usize = 256;

/// What the webhook handler needs.
struct Receiver {
    hooks: HashMap<String, Hook>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

/// Serves the webhook receiver on `addr` (`POST /hooks/<source>`) until shutdown. A request
/// whose headers or body take longer than `timeout` gets 408 and its connection is closed.
///
/// # Errors
/// The address cannot be bound.
pub async fn webhooks(
    addr: SocketAddr,
    hooks: HashMap<String, Hook>,
    max_body_bytes: usize,
    timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let receiver = Arc::new(Receiver {
        hooks,
        metrics,
        timeout,
    });
    let app = Router::new()
        .route("/hooks/{source}", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(receiver.clone(), within_timeout))
        .with_state(receiver);
    serve(addr, app, timeout, shutdown).await
}

/// Serves the probes and metrics on `addr` (`/healthz`, `/readyz`, `/metrics`) until shutdown.
///
/// # Errors
/// The address cannot be bound.
pub async fn probes(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(|State(health): State<Arc<Health>>| async move {
                let ready = health.sources_polled.load(Ordering::Relaxed)
                    && health.crd_installed.load(Ordering::Relaxed);
                if health.following.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready: following the leader\n")
                } else if ready {
                    (StatusCode::OK, "ready\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: sources not polled yet\n",
                    )
                }
            }),
        )
        .with_state(health)
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    metrics.encode(),
                )
            }),
        );
    serve(addr, app, DEFAULT_TIMEOUT, shutdown).await
}

/// Accepts connections on `addr` and serves `app` over HTTP/1.1 until shutdown, with a bound
/// on connections and on the time a client may take to send its headers (hyper's own
/// timer; `axum::serve` sets none, so a client that never finishes its headers would keep
/// its connection forever).
async fn serve(
    addr: SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(%addr, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop(slot);
            });
        }
        // Answers in flight finish; idle keep-alive connections close.
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(%addr, "HTTP connections still open at shutdown; dropped");
        }
    });
    Ok(())
}

/// Bounds the whole request, body included: a sender that trickles its body gets 408.
async fn within_timeout(State(receiver): State<Arc<Receiver>>, request: Request, next: Next) -> Response {
    let source = request
        .uri()
        .path()
        .strip_prefix("/hooks/")
        .filter(|s| receiver.hooks.contains_key(*s))
        .map(str::to_owned);
    match tokio::time::timeout(receiver.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            receiver
                .metrics
                .webhook(source.as_deref(), WebhookOutcome::TimedOut);
            tracing::warn!(source, "webhook refused: the sender took longer than the timeout");
            (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response()
        }
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, &'static str) {
    let (outcome, answer) = answer(&receiver.hooks, &source, &headers, body);
    let known = receiver.hooks.contains_key(&source).then_some(source.as_str());
    receiver.metrics.webhook(known, outcome);
    answer
}

fn answer(
    hooks: &HashMap<String, Hook>,
    source: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (WebhookOutcome, (StatusCode, &'static str)) {
    let Some(hook) = hooks.get(source) else {
        return (
            WebhookOutcome::NotFound,
            (StatusCode::NOT_FOUND, "no such source\n"),
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(source, "webhook refused: body over webhookMaxBodyBytes");
            return (
                WebhookOutcome::TooLarge,
                (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            );
        }
        Err(_) => {
            return (
                WebhookOutcome::Malformed,
                (StatusCode::BAD_REQUEST, "body could not be read\n"),
            );
        }
    };
    if !authentic(hook, headers, &body) {
        tracing::warn!(source, provider = ?hook.provider, "webhook refused: missing or wrong signature");
        return (
            WebhookOutcome::Unauthorized,
            (StatusCode::UNAUTHORIZED, "missing or wrong signature\n"),
        );
    }
    let event = event(hook.provider, headers);
    if event.as_deref() == Some("ping") {
        return (WebhookOutcome::Ignored, (StatusCode::OK, "pong\n"));
    }
    // Parsed only once authentic; nothing in it is used but its being JSON.
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return (
            WebhookOutcome::Malformed,
            (StatusCode::BAD_REQUEST, "body is not JSON\n"),
        );
    }
    if !is_push(hook.provider, event.as_deref()) {
        return (WebhookOutcome::Ignored, (StatusCode::ACCEPTED, "event ignored\n"));
    }
    tracing::info!(source, "webhook: polling now");
    hook.trigger.notify_one();
    (
        WebhookOutcome::Triggered,
        (StatusCode::ACCEPTED, "poll triggered\n"),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn event(provider: Provider, headers: &HeaderMap) -> Option<String> {
    let name = match provider {
        Provider::Github => "x-github-event",
        Provider::Gitea => "x-gitea-event",
        Provider::Gitlab => "x-gitlab-event",
        Provider::Generic => "x-kitsync-event",
    };
    header(headers, name).map(str::to_ascii_lowercase)
}

fn is_push(provider: Provider, event: Option<&str>) -> bool {
    match provider {
        Provider::Github | Provider::Gitea => matches!(event, Some("push" | "create")),
        Provider::Gitlab => matches!(event, Some("push hook" | "tag push hook")),
        Provider::Generic => true,
    }
}

/// Whether the call carries the provider's proof of the shared secret, checked in constant
/// time. Only SHA-256 HMACs are accepted (GitHub's `sha1=` header is refused).
fn authentic(hook: &Hook, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(secret) = &hook.secret else {
        return true; // the operator's explicit insecure setting; warned at start
    };
    let hmac_hex = |value: &str| -> bool {
        let Ok(expected) = hex::decode(value.trim()) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    };
    match hook.provider {
        Provider::Github => header(headers, "x-hub-signature-256")
            .and_then(|v| v.strip_prefix("sha256="))
            .is_some_and(hmac_hex),
        Provider::Gitea => header(headers, "x-gitea-signature").is_some_and(hmac_hex),
        Provider::Generic => header(headers, "x-kitsync-signature")
            .and_then(|v| v.strip_prefix("sha256="))
            .is_some_and(hmac_hex),
        // GitLab sends the secret itself: compare MACs of both, in constant time.
        Provider::Gitlab => header(headers, "x-gitlab-token").is_some_and(|token| {
            let key = b"kitsync-gitlab-token";
            let Ok(mut of_token) = Hmac::<Sha256>::new_from_slice(key) else {
                return false;
            };
            of_token.update(token.as_bytes());
            let token_digest = of_token.finalize().into_bytes();
            let Ok(mut of_secret) = Hmac::<Sha256>::new_from_slice(key) else {
                return false;
            };
            of_secret.update(secret.as_bytes());
            of_secret.verify_slice(&token_digest).is_ok()
        }),
    }
}

/// The settings' secrets, read now (a missing file or variable is an error at start).
///
/// # Errors
/// A secret that cannot be read, named by where it should be.
pub fn hook_for(settings: &WebhookSettings) -> Result<Hook, String> {
    let secret = match &settings.secret {
        Some(secret) => Some(secret.read().map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Hook {
        provider: settings.provider,
        secret,
        trigger: Arc::new(Notify::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(provider: Provider) -> Hook {
        Hook {
            provider,
            secret: Some("s3cret".into()),
            trigger: Arc::new(Notify::new()),
        }
    }

    fn sign(body: &[u8], secret: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn each_provider_accepts_its_own_proof_and_nothing_else() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(body, "s3cret");
        let other_body = sign(b"{}", "s3cret");
        let wrong_key = sign(body, "guess");
        let cases: [(Provider, &'static str, String, String); 3] = [
            (
                Provider::Github,
                "x-hub-signature-256",
                format!("sha256={good}"),
                format!("sha256={wrong_key}"),
            ),
            (
                Provider::Gitea,
                "x-gitea-signature",
                good.clone(),
                wrong_key.clone(),
            ),
            (
                Provider::Generic,
                "x-kitsync-signature",
                format!("sha256={good}"),
                format!("sha256={other_body}"),
            ),
        ];
        for (provider, name, valid, invalid) in cases {
            let h = hook(provider);
            assert!(authentic(&h, &headers(&[(name, valid)]), body), "{provider:?}");
            assert!(!authentic(&h, &headers(&[(name, invalid)]), body), "{provider:?}");
            assert!(
                !authentic(&h, &HeaderMap::new(), body),
                "{provider:?} without a header"
            );
            assert!(
                !authentic(&h, &headers(&[(name, "zz-not-hex".into())]), body),
                "{provider:?}"
            );
        }
        let github = hook(Provider::Github);
        let sha1 = headers(&[("x-hub-signature-256", format!("sha1={good}"))]);
        assert!(!authentic(&github, &sha1, body), "sha1 is refused");
        let gitlab = hook(Provider::Gitlab);
        assert!(authentic(
            &gitlab,
            &headers(&[("x-gitlab-token", "s3cret".into())]),
            body
        ));
        assert!(!authentic(
            &gitlab,
            &headers(&[("x-gitlab-token", "s3cre".into())]),
            body
        ));
        assert!(!authentic(&gitlab, &HeaderMap::new(), body));
    }

    #[test]
    fn push_events_by_provider() {
        assert!(is_push(Provider::Github, Some("push")));
        assert!(!is_push(Provider::Github, Some("issues")));
        assert!(is_push(Provider::Gitlab, Some("push hook")));
        assert!(!is_push(Provider::Gitlab, None));
        assert!(is_push(Provider::Generic, None));
    }
}
