//! Whether this process may write to the cluster now, and the Kubernetes clients that send
//! nothing when it may not.
//!
//! With leader election several replicas run and only the one holding the Lease writes. The
//! election itself (`serve::leader`) records each successful renewal here; [`Leadership`]
//! answers "still held?" from that record and this process's own monotonic clock, never from
//! a notification that may come late. [`Leadership::client`] builds the leader's clients: they
//! ask it before each request is queued and again before each byte is written to the socket,
//! so the check covers every write of every module (applies, prunes, inventories, Kit
//! statuses, Events, the Kit CRD) without each one remembering to.
//!
//! Why in the client and not at the start of a reconcile: a replica frozen in the middle of
//! an apply (SIGSTOP, a stall) and resumed after another replica took over sends its next
//! write straight into this check, whatever step it was at, and whether or not the election
//! task has run since. Why down at the socket too: a request that passed a check above the
//! connection pool and TLS can wait there, frozen, and leave after the takeover.
//!
//! # Guarantees
//! - Through a client of [`Leadership::client`], no byte is written to the API server's
//!   socket unless `now < renewal sent + renewDeadline` by `CLOCK_MONOTONIC` (std's
//!   [`Instant`]), which keeps running while the process is stopped. A request cut short by
//!   that is incomplete, and the API server drops it.
//! - Retries (kube's, of 429, 503 and 504) are written through the same sockets.
//!
//! # Caveats
//! - Kubernetes has no fencing token: bytes written to the socket just before a freeze are
//!   sent by the kernel at once, and the check-to-write window is a few instructions, but a
//!   request still in flight can arrive late. `leaseDuration - renewDeadline` is that
//!   allowance.
//! - `CLOCK_MONOTONIC` does not run while the whole machine is suspended or a VM is paused.

use futures::future::BoxFuture;
use kube::client::Body;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower::{BoxError, Service};

/// A request refused because this process does not hold the lease (or its own clock says
/// the lease may have passed to another replica).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    /// Refused before it was queued.
    #[error("not the leader: {method} {path} refused (this replica does not hold the lease)")]
    Request {
        /// The HTTP method.
        method: String,
        /// The path, without the query.
        path: String,
    },
    /// Cut off at the socket: it passed the first check, was still waiting to be written
    /// when the lease passed, and was not written (or not whole, which the server drops).
    #[error("not the leader: a request still waiting to be written was cut off at the socket")]
    Socket,
}

impl NotLeader {
    /// The refusal anywhere in `error`'s chain of causes (a socket refusal comes wrapped in
    /// the HTTP client's and the TLS layer's errors), if that is what it is.
    pub fn of(error: &kube::Error) -> Option<&NotLeader> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(refused) = e.downcast_ref::<NotLeader>() {
                return Some(refused);
            }
            if let Some(refused) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<NotLeader>())
            {
                return Some(refused);
            }
            cause = e.source();
        }
        None
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

    /// A client for `config` that sends nothing unless [`Leadership::holds`]: each request is
    /// refused with [`NotLeader`] before it is queued, and each byte is checked again just
    /// before it is written to the socket. Without election, the plain client.
    ///
    /// It is the leader's client: reads are refused too once the lease is lost, when the work
    /// that reads through it is stopping anyway.
    ///
    /// # Errors
    /// As `kube::Client::try_from`: the configuration cannot make a client.
    pub fn client(&self, config: kube::Config) -> Result<kube::Client, kube::Error> {
        // kube's own client validates the configuration (proxies, TLS) and knows when exec
        // credentials expire; the fenced client below takes that over.
        let plain = kube::Client::try_from(config.clone())?;
        if !self.state.elected {
            return Ok(plain);
        }
        fenced(config, self.clone()).map(|c| c.with_valid_until(*plain.valid_until()))
    }
}

/// kube's client stack (`kube::client::ClientBuilder::try_from`) rebuilt from its public parts,
/// with the connector's sockets fenced and the gate on top. Rebuilt rather than wrapped because
/// the last check has to sit under the connection pool and TLS: a request that passed a check
/// above them can wait there (a pooled connection, a handshake, encryption) while the process
/// is frozen, and leave after the takeover. kube's tracing spans of each request are left out.
fn fenced(config: kube::Config, leadership: Leadership) -> Result<kube::Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(Fence {
        inner: http,
        leadership: leadership.clone(),
    })?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let service = tower::ServiceBuilder::new()
        .layer_fn(move |inner| Gate {
            inner,
            leadership: leadership.clone(),
        })
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// Refuses every request while the leadership does not hold, before it is queued.
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
        if !self.leadership.holds() {
            let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
            tracing::warn!(%method, %path, "request refused: this replica does not hold the lease");
            let refused = NotLeader::Request { method, path };
            return Box::pin(async move { Err(BoxError::from(refused)) });
        }
        Box::pin(self.inner.call(request))
    }
}

/// Connects as its inner connector does; its sockets refuse writes while the leadership
/// does not hold.
#[derive(Clone)]
struct Fence<C> {
    inner: C,
    leadership: Leadership,
}

impl<C> Service<http::Uri> for Fence<C>
where
    C: Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = Fenced<C::Response>;
    type Error = C::Error;
    type Future = BoxFuture<'static, Result<Self::Response, C::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let leadership = self.leadership.clone();
        Box::pin(async move {
            Ok(Fenced {
                io: connecting.await?,
                leadership,
            })
        })
    }
}

/// A socket whose every write first asks the leadership: the last check before the wire.
struct Fenced<T> {
    io: T,
    leadership: Leadership,
}

impl<T> Fenced<T> {
    fn refuse(&self) -> Option<std::io::Error> {
        if self.leadership.holds() {
            return None;
        }
        tracing::warn!("write cut off at the socket: this replica does not hold the lease");
        Some(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            NotLeader::Socket,
        ))
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Fenced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Fenced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(refused) = self.refuse() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(refused) = self.refuse() {
            return Poll::Ready(Err(refused));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection> hyper_util::client::legacy::connect::Connection
    for Fenced<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected()
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
    async fn the_gate_refuses_every_request_while_not_held() {
        let leadership = Leadership::elected();
        let server = Counter::default();
        let mut gate = Gate {
            inner: server.clone(),
            leadership: leadership.clone(),
        };
        let requests = [
            ("GET", "/api/v1/namespaces/x/configmaps/a"),
            ("POST", "/api/v1/namespaces/x/configmaps"),
            ("PUT", "/api/v1/namespaces/x/configmaps/a"),
            ("PATCH", "/api/v1/namespaces/x/configmaps/a?fieldManager=kitsync"),
            ("DELETE", "/api/v1/namespaces/x/configmaps/a"),
        ];
        for (method, uri) in requests {
            let error = send(&mut gate, method, uri).await.expect_err(method);
            let Some(NotLeader::Request { method: m, path }) = error.downcast_ref::<NotLeader>() else {
                panic!("not a NotLeader: {error}");
            };
            assert_eq!(m, method);
            assert!(!path.contains('?'), "{path}");
        }
        assert_eq!(server.0.load(Ordering::SeqCst), 0, "nothing reached the server");

        leadership.renewed(Instant::now(), Duration::from_secs(60));
        for (method, uri) in requests {
            send(&mut gate, method, uri).await.expect("held: sent");
        }
        assert_eq!(server.0.load(Ordering::SeqCst), requests.len());
        leadership.lost();
        send(&mut gate, "PATCH", "/x")
            .await
            .expect_err("lost: refused at once");
    }

    #[tokio::test]
    async fn a_fenced_socket_writes_nothing_while_not_held() {
        use hyper::rt::Write as _;
        use tokio::io::AsyncReadExt;
        let leadership = Leadership::elected();
        let (client, mut server) = tokio::io::duplex(64);
        let mut socket = Fenced {
            io: hyper_util::rt::TokioIo::new(client),
            leadership: leadership.clone(),
        };
        let write = async |socket: &mut Fenced<_>, bytes: &'static [u8]| {
            futures::future::poll_fn(|cx| Pin::new(&mut *socket).poll_write(cx, bytes)).await
        };
        let refused = write(&mut socket, b"PATCH").await.expect_err("not held");
        assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            refused.get_ref().and_then(|e| e.downcast_ref::<NotLeader>()),
            Some(&NotLeader::Socket)
        );
        leadership.renewed(Instant::now(), Duration::from_secs(60));
        assert_eq!(write(&mut socket, b"GET").await.expect("held"), 3);
        leadership.lost();
        write(&mut socket, b"PATCH").await.expect_err("lost");
        drop(socket);
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.expect("read");
        assert_eq!(
            received, b"GET",
            "only the write made while held reached the wire"
        );
    }

    #[test]
    fn a_refusal_is_recognised_inside_a_client_error() {
        let refused = NotLeader::Request {
            method: "PATCH".into(),
            path: "/x".into(),
        };
        let error = kube::Error::Service(BoxError::from(refused.clone()));
        assert_eq!(NotLeader::of(&error), Some(&refused));
        assert_eq!(NotLeader::of(&kube::Error::LinesCodecMaxLineLengthExceeded), None);
        // At the socket: an io::Error inside whatever the HTTP client wraps it in.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (SendRequest)")]
        struct Wrapper(#[source] std::io::Error);
        let socket = std::io::Error::new(std::io::ErrorKind::PermissionDenied, NotLeader::Socket);
        let error = kube::Error::Service(BoxError::from(Wrapper(socket)));
        assert_eq!(NotLeader::of(&error), Some(&NotLeader::Socket));
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            NotLeader::of(&kube::Error::Service(BoxError::from(Wrapper(other)))),
            None
        );
    }
}
