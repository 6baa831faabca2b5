//! The accept loop every podid listener runs, and each connection's task:
//! TLS handshake, HTTP/1.1 (or HTTP/2 when TLS negotiates it), and the
//! watchdog that cuts a connection whose phase outlives its deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
#[cfg(feature = "http2")]
use hyper::server::conn::http2;
#[cfg(feature = "http2")]
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::body::RequestBody;
use crate::conn::{watchdog_step, ConnState, Cut, Watched};
use crate::limits::ListenLimits;
use crate::ListenError;

/// An error a service or body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`serve`] serves: a hyper service of requests with a [`RequestBody`]
/// whose future can move to another thread.
pub trait Handler<B>:
    hyper::service::Service<
        Request<RequestBody>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<T, B> Handler<B> for T where
    T: hyper::service::Service<
            Request<RequestBody>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// An answer body [`serve`] can send.
pub trait AnswerBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<T> AnswerBody for T where T: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// How long an idle connection told to close (HTTP/2: GOAWAY) may take to do so.
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors, most likely).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The kernel's queue of connections not yet accepted (capped by
/// `net.core.somaxconn`): where connections wait while a listener is at its
/// cap, or busy. (tokio's default, 128, overflows when hundreds connect at once.)
pub const ACCEPT_BACKLOG: u32 = 1024;

/// Binds `addr` with an accept queue of [`ACCEPT_BACKLOG`]; the listener and
/// its bound address (port 0 picks one).
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(ACCEPT_BACKLOG)?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// A service per connection for a tower service (an axum `Router`): clones
/// of `service`, the peer address unused.
pub fn tower_service<T: Clone>(service: T) -> impl Fn(SocketAddr) -> TowerToHyperService<T> {
    move |_peer| TowerToHyperService::new(service.clone())
}

/// What every connection of one listener shares.
struct Shared {
    limits: ListenLimits,
    tls: Option<TlsAcceptor>,
    http1: http1::Builder,
    #[cfg(feature = "http2")]
    http2: http2::Builder<TokioExecutor>,
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each
/// with the service `make_service` makes for its peer address; then stops
/// accepting, asks every connection to close after its request in flight,
/// and cuts those still open after `limits.drain_timeout`.
///
/// At most `limits.max_connections` are open at once: at the cap the loop
/// stops accepting, so further connections wait in the kernel's accept queue.
/// Plain connections speak HTTP/1.1; with `tls`, HTTP/2 when the client
/// negotiates it by ALPN, else HTTP/1.1. Each connection is held to the
/// deadlines of `limits` ([`ListenLimits`]); request bodies are
/// [`RequestBody`], failing past the body read deadline.
///
/// # Errors
/// [`ListenError::Limits`] when `limits` cannot be enforced (nothing is served).
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: ListenLimits,
    tls: Option<TlsAcceptor>,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError>
where
    M: Fn(SocketAddr) -> S,
    S: Handler<B>,
    B: AnswerBody,
{
    limits.validate()?;
    let mut h1 = http1::Builder::new();
    h1.keep_alive(true)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let max_connections = limits.max_connections;
    let drain_timeout = limits.drain_timeout;
    let shared = Arc::new(Shared {
        http1: h1,
        #[cfg(feature = "http2")]
        http2: http2_builder(&limits),
        limits,
        tls,
    });
    let permits = Arc::new(Semaphore::new(max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut at_cap = false;
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max_connections,
                        "connection cap reached: new connections wait in the accept queue"
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let service = make_service(peer);
        tasks.spawn(connection(
            tcp,
            peer,
            service,
            shared.clone(),
            stop_rx.clone(),
            permit,
        ));
        while let Some(done) = tasks.try_join_next() {
            log_panic(done);
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(drain_timeout, async {
        while let Some(done) = tasks.join_next().await {
            log_panic(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_ms = drain_timeout.as_millis(),
            "connections still busy at the drain timeout were cut"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// HTTP/2 under `limits`: the header list and the streams bounded, and
/// flow-control windows small enough that a client cannot send much request
/// body ahead of the handler (256 KiB a stream, 512 KiB a connection).
#[cfg(feature = "http2")]
fn http2_builder(limits: &ListenLimits) -> http2::Builder<TokioExecutor> {
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(512 * 1024);
    h2
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("a connection task panicked");
        }
    }
}

/// Serves one accepted connection to its end; the permit is its slot under the cap.
async fn connection<S, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    service: S,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    S: Handler<B>,
    B: AnswerBody,
{
    let _ = tcp.set_nodelay(true);
    let limits = &shared.limits;
    let body_timeout = limits.body_read_timeout;
    let Some(acceptor) = &shared.tls else {
        let state = Arc::new(ConnState::new(true));
        let io = TokioIo::new(Watched::new(tcp, state.clone()));
        let service = Tracked::new(service, state.clone(), body_timeout);
        let conn = shared.http1.serve_connection(io, service);
        return drive(conn, &state, limits, stop, peer).await;
    };
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "cut: TLS handshake not complete by its deadline");
                return;
            }
        },
    };
    let h2 =
        cfg!(feature = "http2") && stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let state = Arc::new(ConnState::new(!h2));
    let io = TokioIo::new(Watched::new(stream, state.clone()));
    let service = Tracked::new(service, state.clone(), body_timeout);
    #[cfg(feature = "http2")]
    if h2 {
        let conn = shared.http2.serve_connection(io, service);
        return drive(conn, &state, limits, stop, peer).await;
    }
    let conn = shared.http1.serve_connection(io, service);
    drive(conn, &state, limits, stop, peer).await;
}

/// Runs `conn` until it ends, closing it gracefully at shutdown and cutting
/// it when its phase's deadline passes.
async fn drive<C>(
    conn: C,
    state: &ConnState,
    limits: &ListenLimits,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    let step = watchdog_step(limits);
    let first = state
        .deadline(limits)
        .map_or(Instant::now() + step, |(d, _)| d);
    let sleep = tokio::time::sleep_until(first);
    tokio::pin!(sleep);
    let (mut closing, mut stopping) = (false, false);
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                if !closing {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = sleep.as_mut() => {
                let now = Instant::now();
                match state.deadline(limits) {
                    Some((deadline, cut)) if deadline <= now => match cut {
                        Cut::Head => {
                            tracing::debug!(%peer, "cut: request head not complete by its deadline");
                            return;
                        }
                        Cut::Idle if closing => {
                            tracing::debug!(%peer, "cut: idle connection still open");
                            return;
                        }
                        Cut::Idle => {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                            sleep.as_mut().reset(now + IDLE_GRACE);
                        }
                    },
                    next => {
                        let wake = next.map_or(now + step, |(d, _)| d.min(now + step));
                        sleep.as_mut().reset(wake);
                    }
                }
            }
        }
    }
}

/// A connection's service: marks its requests in flight and gives the
/// handler the body under its read deadline.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
    body_timeout: Duration,
}

impl<S> Tracked<S> {
    fn new(inner: S, state: Arc<ConnState>, body_timeout: Duration) -> Self {
        Tracked {
            inner,
            state,
            body_timeout,
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<RequestBody>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.state.request_started();
        let timeout = self.body_timeout;
        let request = request.map(|body| RequestBody::new(body, timeout));
        TrackedFuture {
            inner: self.inner.call(request),
            done: Some(Finish(self.state.clone())),
        }
    }
}

/// Marks its request finished when dropped.
struct Finish(Arc<ConnState>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project_lite::pin_project! {
    /// A handler's future; its request is finished when it answers or is dropped.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        done: Option<Finish>,
    }
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.done.take();
        Poll::Ready(output)
    }
}
