//! Whether this process may write to the cluster now, and the Kubernetes clients that refuse
//! every write when it may not.
//!
//! With leader election several replicas run and only the one holding the Lease writes. The
//! election itself (`serve::leader`) records each successful renewal here; [`Leadership`]
//! answers "still held?" from that record and this process's own monotonic clock, never from
//! a notification that may come late. [`Leadership::client`] builds clients that ask it just
//! before each write leaves, so the check covers every write of every module (applies,
//! prunes, inventories, Kit statuses, Events, the Kit CRD) without each one remembering to.
//!
//! Why in the client and not at the start of a reconcile: a replica frozen in the middle of
//! an apply (SIGSTOP, a stall) and resumed after another replica took over sends its next
//! write straight into this check, whatever step it was at, and whether or not the election
//! task has run since.
//!
//! # Guarantees
//! - A write (POST, PUT, PATCH, DELETE that is not a dry run) through a gated client is sent
//!   only while `now < renewal sent + renewDeadline`, by `CLOCK_MONOTONIC` (std's
//!   [`Instant`]), which keeps running while the process is stopped.
//! - kube's retries of throttled or unavailable requests (429, 503, 504) pass the check again
//!   at every attempt: they are moved outside it.
//!
//! # Caveats
//! - Kubernetes has no fencing token: a request that passed the check just before a freeze
//!   longer than `leaseDuration - renewDeadline` can still arrive after a takeover. That
//!   difference is the allowance for a request in flight.
//! - `CLOCK_MONOTONIC` does not run while the whole machine is suspended or a VM is paused.

use futures::future::BoxFuture;
use kube::client::Body;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower::{BoxError, Service};

/// A write refused because this process does not hold the lease (or its own clock says the
/// lease may have passed to another replica).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not the leader: {method} {path} refused (this replica does not hold the lease)")]
pub struct NotLeader {
    /// The HTTP method of the refused request.
    pub method: String,
    /// Its path, without the query.
    pub path: String,
}

impl NotLeader {
    /// The refusal inside a client error, if that is what `error` is.
    pub fn of(error: &kube::Error) -> Option<&NotLeader> {
        match error {
            kube::Error::Service(e) => e.downcast_ref::<NotLeader>(),
            _ => None,
        }
    }
}

/// Whether this process may write now. Cheap to clone; every clone sees the same state.
#[derive(Clone)]
pub struct Leadership {
    state: Arc<State>,
}

struct State {
    /// False: no election, this process always writes.
    elected: bool,
    /// The origin of `until`.
    base: Instant,
    /// Nanoseconds after `base` until which writes are allowed; 0 when not held.
    until: AtomicU64,
    /// Leading or not, for tasks that start and stop work with it.
    leading: watch::Sender<bool>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("elected", &self.state.elected)
            .field("holds", &self.holds())
            .finish()
    }
}

impl Default for Leadership {
    fn default() -> Self {
        Self::always()
    }
}

impl Leadership {
    fn with(elected: bool) -> Self {
        let (leading, _) = watch::channel(!elected);
        Leadership {
            state: Arc::new(State {
                elected,
                base: Instant::now(),
                until: AtomicU64::new(0),
                leading,
            }),
        }
    }

    /// No election: this process is the only writer and always may write.
    pub fn always() -> Self {
        Self::with(false)
    }

    /// Leader election: nothing may be written until [`Leadership::renewed`] says so.
    pub fn elected() -> Self {
        Self::with(true)
    }

    /// Whether writes are decided by an election.
    pub fn is_elected(&self) -> bool {
        self.state.elected
    }

    /// True while this process may write: always without election; with it, while the last
    /// successful renewal is younger than the renew deadline by this process's clock.
    pub fn holds(&self) -> bool {
        if !self.state.elected {
            return true;
        }
        let until = self.state.until.load(Ordering::Acquire);
        until != 0 && self.nanos(Instant::now()) < until
    }

    fn nanos(&self, at: Instant) -> u64 {
        // +1 keeps 0 free to mean "not held".
        u64::try_from(at.saturating_duration_since(self.state.base).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Records a successful acquisition or renewal whose request was sent at `sent`: writes
    /// are allowed until `sent + deadline`. Measuring from the send, not the answer, keeps the
    /// deadline on the safe side of when the API server stored the renewal.
    pub fn renewed(&self, sent: Instant, deadline: Duration) {
        if !self.state.elected {
            return;
        }
        self.state
            .until
            .store(self.nanos(sent + deadline), Ordering::Release);
        self.state
            .leading
            .send_if_modified(|leading| !std::mem::replace(leading, true));
    }

    /// Stops every write at once: the lease was lost, is being released, or may have passed.
    pub fn lost(&self) {
        if !self.state.elected {
            return;
        }
        self.state.until.store(0, Ordering::Release);
        self.state
            .leading
            .send_if_modified(|leading| std::mem::replace(leading, false));
    }

    /// Leading or not, changing as the election goes (always `true` without election). Work
    /// starts and stops on it; writes are still checked against [`Leadership::holds`].
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.state.leading.subscribe()
    }

    /// A client for `config` whose writes are refused with [`NotLeader`] unless
    /// [`Leadership::holds`] at the moment each one is sent. Without election, the plain
    /// client.
    ///
    /// # Errors
    /// As `kube::Client::try_from`: the configuration cannot make a client.
    pub fn client(&self, mut config: kube::Config) -> Result<kube::Client, kube::Error> {
        if !self.state.elected {
            return kube::Client::try_from(config);
        }
        // kube's retry layer sits at the bottom of its stack, under anything added here: a
        // write that passed the check could be sent again after a backoff, past the lease.
        // The retries move above the check, so every attempt passes it.
        let retry = std::mem::replace(&mut config.default_retry, false);
        let leadership = self.clone();
        let layer =
            tower::layer::layer_fn(move |service: Stack| {
                // The boxed stack is not Clone, and retrying needs a clonable service.
                let gated = Gate {
                    inner: tower::buffer::Buffer::new(service, 1024),
                    leadership: leadership.clone(),
                };
                tower::ServiceBuilder::new()
                    .option_layer(retry.then(|| {
                        tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
                    }))
                    .service(gated)
            });
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&layer)
            .build())
    }
}

/// The service stack kube builds from a configuration (`kube::client::GenericService`, which
/// kube does not export by name).
type Stack =
    tower::util::BoxService<http::Request<Body>, http::Response<Box<kube::client::DynBody>>, BoxError>;

/// A request that changes something on the server (a dry run changes nothing).
fn is_write<B>(request: &http::Request<B>) -> bool {
    use http::Method;
    let method = request.method();
    let writes = *method == Method::POST
        || *method == Method::PUT
        || *method == Method::PATCH
        || *method == Method::DELETE;
    writes
        && !request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "dryRun=All"))
}

/// Refuses writes while the leadership is not held; passes everything else.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    leadership: Leadership,
}

impl<S> Service<http::Request<Body>> for Gate<S>
where
    S: Service<http::Request<Body>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if is_write(&request) && !self.leadership.holds() {
            let refused = NotLeader {
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
            };
            tracing::warn!(method = %refused.method, path = %refused.path, "write refused: this replica does not hold the lease");
            return Box::pin(async move { Err(BoxError::from(refused)) });
        }
        let call = self.inner.call(request);
        Box::pin(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts what reaches the server side of the gate.
    #[derive(Clone, Default)]
    struct Counter(Arc<AtomicUsize>);

    impl Service<http::Request<Body>> for Counter {
        type Response = http::Response<Body>;
        type Error = BoxError;
        type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(http::Response::new(Body::empty())) })
        }
    }

    fn request(method: &str, uri: &str) -> http::Request<Body> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    }

    async fn send(gate: &mut Gate<Counter>, method: &str, uri: &str) -> Result<(), BoxError> {
        gate.call(request(method, uri)).await.map(|_| ())
    }

    #[test]
    fn without_election_writes_are_always_allowed() {
        let leadership = Leadership::always();
        assert!(leadership.holds());
        leadership.lost();
        assert!(leadership.holds(), "no election: nothing to lose");
        assert!(*leadership.changes().borrow());
    }

    #[test]
    fn a_renewal_holds_for_the_deadline_from_its_send() {
        let leadership = Leadership::elected();
        assert!(
            !leadership.holds(),
            "nothing is held before the first acquisition"
        );
        let sent = Instant::now();
        leadership.renewed(sent, Duration::from_secs(60));
        assert!(leadership.holds());
        assert!(*leadership.changes().borrow());
        // A renewal sent long ago (as seen after a freeze) holds no more.
        let stale = Instant::now()
            .checked_sub(Duration::from_secs(2))
            .expect("an instant 2 s ago");
        leadership.renewed(stale, Duration::from_secs(1));
        assert!(!leadership.holds(), "the deadline passed by this process's clock");
        leadership.renewed(Instant::now(), Duration::from_secs(60));
        leadership.lost();
        assert!(!leadership.holds());
        assert!(!*leadership.changes().borrow());
    }

    #[tokio::test]
    async fn the_gate_refuses_writes_but_not_reads_or_dry_runs_when_not_held() {
        let leadership = Leadership::elected();
        let server = Counter::default();
        let mut gate = Gate {
            inner: server.clone(),
            leadership: leadership.clone(),
        };
        let writes = [
            ("POST", "/api/v1/namespaces/x/configmaps"),
            ("PUT", "/api/v1/namespaces/x/configmaps/a"),
            ("PATCH", "/api/v1/namespaces/x/configmaps/a?fieldManager=kitsync"),
            ("DELETE", "/api/v1/namespaces/x/configmaps/a"),
        ];
        for (method, uri) in writes {
            let error = send(&mut gate, method, uri).await.expect_err(method);
            let refused = error.downcast_ref::<NotLeader>().expect("a NotLeader");
            assert_eq!(refused.method, method);
            assert!(!refused.path.contains('?'), "{}", refused.path);
        }
        assert_eq!(server.0.load(Ordering::SeqCst), 0, "no write reached the server");
        send(&mut gate, "GET", "/api/v1/namespaces/x/configmaps/a")
            .await
            .expect("reads pass");
        send(
            &mut gate,
            "PATCH",
            "/api/v1/namespaces/x/configmaps/a?dryRun=All&fieldManager=kitsync",
        )
        .await
        .expect("dry runs pass");
        assert_eq!(server.0.load(Ordering::SeqCst), 2);

        leadership.renewed(Instant::now(), Duration::from_secs(60));
        for (method, uri) in writes {
            send(&mut gate, method, uri).await.expect("held: writes pass");
        }
        assert_eq!(server.0.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn a_refusal_is_recognised_inside_a_client_error() {
        let refused = NotLeader {
            method: "PATCH".into(),
            path: "/x".into(),
        };
        let error = kube::Error::Service(BoxError::from(refused.clone()));
        assert_eq!(NotLeader::of(&error), Some(&refused));
        assert_eq!(NotLeader::of(&kube::Error::LinesCodecMaxLineLengthExceeded), None);
    }
}
