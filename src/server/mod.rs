//! The listener: TLS (rustls, ALPN h2 + http/1.1) or plain HTTP, hyper-util's auto builder
//! (HTTP/1.1 and HTTP/2) with header-read, handshake and size limits, and graceful shutdown.
//!
//! Connections are limited: `server.max_connections` in all and `server.max_connections_per_ip`
//! (a connection beyond them is closed at once), and each is closed once it has had no request
//! in progress for `server.idle_timeout_ms`: before its first byte, during a partial protocol
//! preface, between keep-alive requests, an HTTP/2 connection with no stream (GOAWAY, then
//! close). Bytes alone do not keep a connection open (HTTP/2 PINGs, a trickled preface); a
//! request in progress, long-polling included, is never cut by it (`upstream.timeout_secs`
//! bounds those). The idle watch costs a request two atomic updates, no clock read and no timer
//! registration: one coarse-timer sleep per connection, moved only when it fires.
//! A client that stops taking a response (a slow read: its upstream connection would be held
//! forever) is cut off once it has taken nothing for the idle timeout, as nginx's send_timeout
//! does; on HTTP/2, when no stream of the connection has moved for that long.
//! With `server.metrics_listen`, `/metrics` is served there, on its own plain-HTTP listener.

pub mod limits;
pub mod timer;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use self::limits::{AcceptFailures, AcceptLog, ConnGuard, ConnLimits, Held};
use crate::common::http_util::{self, Body};
use crate::config::Settings;
use crate::pipeline::App;
use crate::proxy::pool::UpstreamLimit;
use crate::proxy::Proxy;
use crate::server::timer::CoarseTimer;

/// A client socket and its connection slot (given back when the socket closes, upgrades too).
type ClientIo = Held<TcpStream, ConnGuard>;
/// What the acceptor hands a worker.
type Accepted = (std::net::TcpStream, SocketAddr, ConnGuard);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("session store: {0}")]
    Store(String),
    #[error("WeChat client: {0}")]
    Client(String),
}

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`server.metrics_listen`), when it is set.
    pub metrics_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    done: Vec<oneshot::Receiver<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish (within the grace period), return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for d in self.done {
            let _ = d.await;
        }
    }
}

/// Build the app from settings and start serving on `settings.listen`.
pub async fn serve(settings: Settings) -> Result<Running, ServeError> {
    let listener = bind(settings.listen).map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    serve_on(listener, settings).await
}

/// Accept-queue length asked for (the kernel caps it at `net.core.somaxconn`): the standard
/// library's 128 fills in a moment under a burst of connections, and then clients wait for
/// their SYN to be sent again (a second or more).
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-long accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How many worker threads serve connections: `server.workers`, or one per CPU.
fn worker_count(s: &Settings) -> usize {
    match s.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// The session store's settings from the `[session]` section.
fn store_settings(c: &crate::config::SessionSettings) -> crate::session::SessionStoreSettings {
    use crate::session::Backend;
    crate::session::SessionStoreSettings {
        ttl: c.ttl,
        idle: c.idle,
        capacity: c.max_sessions,
        backend: match &c.store {
            crate::config::StoreKind::Redis { url } => Backend::Redis { url: url.clone() },
            crate::config::StoreKind::Memory => Backend::Memory,
        },
    }
}

/// Like [`serve`], on a listener the caller bound (tests bind `127.0.0.1:0`).
///
/// Thread per core, like nginx's workers: each worker thread runs its own single-threaded
/// runtime and its own upstream connection pool, so a request never hops threads between the
/// client connection and the upstream connection. One acceptor deals new connections to the
/// workers in turn, so keep-alive load spreads evenly (a shared accept queue lets one worker
/// grab most connections).
pub async fn serve_on(listener: TcpListener, settings: Settings) -> Result<Running, ServeError> {
    let store = crate::session::Store::connect(&store_settings(&settings.session))
        .await
        .map_err(|e| ServeError::Store(e.to_string()))?;
    let tls = match &settings.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            tls::server_config(files).map_err(ServeError::Tls)?,
        )),
        None => None,
    };
    let workers = worker_count(&settings);
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind(addr).map_err(|source| ServeError::Bind { addr, source })?),
        None => None,
    };
    let conn_limits = ConnLimits::new(
        settings.server.max_connections,
        settings.server.max_connections_per_ip,
    );
    let upstream_limit = UpstreamLimit::new(settings.upstream.max_connections);
    let app = App::new(settings, store).map_err(|e| ServeError::Client(e.to_string()))?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: app.settings.listen,
        source,
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut done = Vec::with_capacity(workers + 1);
    let mut queues = Vec::with_capacity(workers);
    for i in 0..workers {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel::<Accepted>();
        let (app, tls, stop) = (app.clone(), tls.clone(), stop_rx.clone());
        let upstream_limit = upstream_limit.clone();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("wxgate-worker-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker(conn_rx, app, tls, stop, upstream_limit)),
                    Err(e) => tracing::error!(error = %e, "worker runtime failed to start"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| ServeError::Client(format!("cannot start worker thread: {e}")))?;
        queues.push(conn_tx);
        done.push(done_rx);
    }
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let metrics_addr = l.local_addr().map_err(|source| ServeError::Bind {
                addr: app.settings.listen,
                source,
            })?;
            let (metrics_done_tx, metrics_done_rx) = oneshot::channel();
            let (app, stop) = (app.clone(), stop_rx.clone());
            tokio::spawn(async move {
                metrics_server(l, app, stop).await;
                let _ = metrics_done_tx.send(());
            });
            done.push(metrics_done_rx);
            tracing::info!(addr = %metrics_addr, "metrics listening");
            Some(metrics_addr)
        }
        None => None,
    };
    let (acceptor_done_tx, acceptor_done_rx) = oneshot::channel();
    tokio::spawn(async move {
        acceptor(listener, queues, stop_rx, conn_limits).await;
        let _ = acceptor_done_tx.send(());
    });
    done.push(acceptor_done_rx);
    tracing::info!(%addr, tls = app.settings.tls.is_some(), workers, upstream = %app.settings.upstream.authority, "wxgate listening");
    Ok(Running {
        addr,
        metrics_addr,
        app,
        stop: stop_tx,
        done,
    })
}

/// Resolves once shutdown has been asked for (the watch guard is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accept connections and hand them to the workers in turn, until told to stop. A connection
/// over `max_connections` or `max_connections_per_ip` is closed at once. Out of file
/// descriptors (or memory), accepting pauses [`limits::ACCEPT_BACKOFF`] between tries, with one
/// log line when it starts failing, one every few seconds while it lasts and one when it works
/// again.
async fn acceptor(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    mut stop: watch::Receiver<bool>,
    conns: Arc<ConnLimits>,
) {
    let mut next = 0usize;
    let mut failures = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if limits::accept_error_is_transient(&e) => continue,
                Err(e) => {
                    match failures.failed(Instant::now()) {
                        AcceptLog::Started => tracing::warn!(error = %e, "accept failed; retrying every 50 ms until it works"),
                        AcceptLog::Still(n) => tracing::warn!(error = %e, failures = n, "accept still failing"),
                        _ => {}
                    }
                    tokio::time::sleep(limits::ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let AcceptLog::Recovered(d) = failures.accepted(Instant::now()) {
            tracing::warn!(
                failed_for_ms = d.as_millis() as u64,
                "accepting connections again"
            );
        }
        let guard = match conns.admit(peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                tracing::debug!(%peer, ?why, open = conns.open(), "connection refused: over the limit");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Re-registered on the worker's own runtime.
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        if queues.is_empty() {
            break;
        }
        next = (next + 1) % queues.len();
        let _ = queues[next].send((std_stream, peer, guard));
    }
    // Dropping the listener stops accepting; dropping the queues lets workers drain and end.
}

/// `timer`: the worker's coarse timer, for the header-read timeout armed on every request.
fn builder(s: &Settings, timer: CoarseTimer) -> auto::Builder<TokioExecutor> {
    let c = &s.server;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(timer)
        .header_read_timeout(c.header_read_timeout)
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(c.h2_max_concurrent_streams)
        .max_header_list_size(c.max_header_bytes.min(u32::MAX as usize) as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// What every request on one connection shares: one refcount per request, not three.
struct Conn {
    app: Arc<App>,
    proxy: Arc<Proxy>,
    peer: crate::proxy::Peer,
    timer: CoarseTimer,
    /// Requests in progress: from the request head until the response body has been sent.
    inflight: AtomicU32,
    /// The tick at which the connection last had no request in progress.
    idle_since: AtomicU64,
    /// Response bodies that handed hyper data and have not been asked for more since: hyper
    /// is waiting for the client to take what it has.
    waiting: AtomicU32,
    /// The tick at which hyper last asked a response body for data.
    body_polled: AtomicU64,
    /// `server.idle_timeout_ms` in ticks.
    idle_ticks: u64,
}

/// What the idle watch saw.
#[derive(Debug, PartialEq, Eq)]
enum Quiet {
    /// No request in progress for the idle timeout.
    Idle,
    /// A response waits for the client, which has taken nothing for the idle timeout (it
    /// stopped reading: a slow-read client would hold its upstream connection forever).
    ClientStalled,
}

impl Conn {
    /// Resolves once the connection has had no request in progress for the idle timeout, or
    /// its client has stopped taking a response for as long.
    async fn quiet(&self) -> Quiet {
        loop {
            let now = self.timer.ticks();
            if self.inflight.load(Ordering::Acquire) > 0 {
                let next = now.saturating_add(self.idle_ticks);
                if self.waiting.load(Ordering::Acquire) == 0 {
                    self.timer.sleep_until_tick(next).await;
                    continue;
                }
                let due = self
                    .body_polled
                    .load(Ordering::Acquire)
                    .saturating_add(self.idle_ticks)
                    .saturating_add(1);
                if now >= due {
                    return Quiet::ClientStalled;
                }
                self.timer.sleep_until_tick(due.min(next)).await;
                continue;
            }
            // One tick late: `idle_since` lags the clock by up to a tick.
            let due = self
                .idle_since
                .load(Ordering::Acquire)
                .saturating_add(self.idle_ticks)
                .saturating_add(1);
            if now >= due && self.inflight.load(Ordering::Acquire) == 0 {
                return Quiet::Idle;
            }
            self.timer.sleep_until_tick(due).await;
        }
    }

    /// After a graceful close was asked for: resolves at tick `at`, or, with a request still
    /// in progress, once the connection is quiet.
    async fn past(&self, at: u64) {
        self.timer.sleep_until_tick(at).await;
        if self.inflight.load(Ordering::Acquire) > 0 {
            self.quiet().await;
        }
    }
}

/// A request in progress on its connection (see [`Conn::inflight`]).
struct InFlight {
    conn: Arc<Conn>,
    /// Counted in [`Conn::waiting`].
    waiting: bool,
}

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.inflight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            conn,
            waiting: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.conn;
        if self.waiting {
            c.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        c.idle_since.store(c.timer.ticks(), Ordering::Release);
        c.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in progress until it is sent (or dropped), and
    /// notes whether hyper waits for it (the upstream) or for the client.
    pub(crate) struct Tracked<B> {
        #[pin]
        inner: B,
        guard: InFlight,
    }
}

impl<B: HttpBody> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let g = this.guard;
        g.conn
            .body_polled
            .store(g.conn.timer.ticks(), Ordering::Relaxed);
        let r = this.inner.poll_frame(cx);
        // Data handed over: until the next poll, hyper waits for the client.
        let waiting = matches!(r, Poll::Ready(Some(Ok(_))));
        if waiting != g.waiting {
            g.waiting = waiting;
            if waiting {
                g.conn.waiting.fetch_add(1, Ordering::AcqRel);
            } else {
                g.conn.waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
        r
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// 431 for an HTTP/2 request with more header fields than HTTP/1 accepts (hyper's HTTP/1
/// parser answers those 431 itself).
fn too_many_headers(req: &Request<Incoming>) -> Response<Body> {
    tracing::debug!(fields = req.headers().len(), "too many header fields");
    let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    if http_util::wants_json(req.headers()) {
        return http_util::json(
            status,
            &serde_json::json!({
                "error": "too_many_headers",
                "message": format!("more than {} header fields", limits::MAX_HEADERS),
            }),
        );
    }
    let t = |zh, en| crate::common::pages::Text { zh, en };
    crate::common::pages::render(crate::common::pages::Page {
        status,
        title: t("请求头过多", "Too many headers"),
        message: t(
            "请求携带的头部字段过多。",
            "The request carries too many header fields.",
        ),
        action: None,
        extra_html: None,
    })
}

/// Serve one connection (TLS or plain) until it ends, it has been idle for the idle timeout,
/// or shutdown drains it.
async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer.addr;
    let watch = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let conn = conn.clone();
        async move {
            let guard = InFlight::new(conn);
            let c = &*guard.conn;
            let resp =
                if req.version() == Version::HTTP_2 && limits::too_many_headers(req.headers()) {
                    too_many_headers(&req)
                } else {
                    c.app.handle(req, &c.peer, &c.proxy).await
                };
            Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, guard }))
        }
    });
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(serving);
    let mut draining = false;
    // Once an idle close was asked for: the tick after which the connection is dropped if it
    // has not closed by itself (a partial request head; an HTTP/2 peer that does not answer
    // the GOAWAY's PING).
    let mut kill_at: Option<u64> = None;
    let result = loop {
        let kill = kill_at;
        tokio::select! {
            biased;
            r = serving.as_mut() => break r,
            _ = stopped(&mut stop), if !draining => {
                draining = true;
                serving.as_mut().graceful_shutdown();
            }
            quiet = watch.quiet(), if kill_at.is_none() => {
                if quiet == Quiet::ClientStalled {
                    tracing::debug!(%peer, "client stopped reading a response; connection closed");
                    break Ok(());
                }
                tracing::debug!(%peer, "idle connection closed");
                serving.as_mut().graceful_shutdown();
                let second = watch.timer.ticks_in(Duration::from_secs(1));
                let grace = (watch.idle_ticks / 4).clamp(1, second);
                kill_at = Some(watch.timer.ticks().saturating_add(grace));
            }
            _ = watch.past(kill.unwrap_or(0)), if kill.is_some() => break Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn worker(
    mut conns: mpsc::UnboundedReceiver<Accepted>,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    upstream_limit: Arc<UpstreamLimit>,
) {
    // This worker's own upstream pool: its connections live on this thread.
    let timer = CoarseTimer::start();
    let proxy = Arc::new(Proxy::new(&app.settings, timer.clone(), upstream_limit));
    let builder = Arc::new(builder(&app.settings, timer.clone()));
    // Each connection task holds a sender; the receiver ends once all of them have.
    let (alive, mut all_closed) = mpsc::channel::<Infallible>(1);
    let handshake = app.settings.server.tls_handshake_timeout;
    let idle_ticks = timer.ticks_in(app.settings.server.idle_timeout);
    loop {
        let (stream, peer, guard) = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register connection");
                continue;
            }
        };
        let io: ClientIo = Held::new(stream, guard);
        let (app, proxy, timer) = (app.clone(), proxy.clone(), timer.clone());
        let builder = builder.clone();
        let tls = tls.clone();
        let (alive, stop) = (alive.clone(), stop.clone());
        tokio::spawn(async move {
            let _alive = alive;
            let conn = |timer: CoarseTimer| {
                Arc::new(Conn {
                    peer: crate::proxy::Peer::new(peer, &app.settings.trusted_proxies),
                    app,
                    proxy,
                    inflight: AtomicU32::new(0),
                    idle_since: AtomicU64::new(timer.ticks()),
                    waiting: AtomicU32::new(0),
                    body_polled: AtomicU64::new(0),
                    idle_ticks,
                    timer,
                })
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        // Idle from the end of the handshake.
                        Ok(Ok(s)) => serve_io(&builder, s, conn(timer), stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_io(&builder, io, conn(timer), stop).await,
            }
        });
    }
    drop(conns);
    drop(alive);
    let grace = app.settings.server.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        _ = all_closed.recv() => tracing::debug!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// `/metrics` as `{prefix}/metrics` serves it when `server.metrics_listen` is not set.
fn metrics_response(app: &App) -> Response<Body> {
    use crate::session::SessionStore;
    if let Some(n) = app.store.session_count() {
        app.metrics.sessions.set(n as i64);
    }
    http_util::respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.render(),
    )
}

/// The `server.metrics_listen` listener: plain HTTP/1.1, `GET /metrics` and nothing else.
async fn metrics_server(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.settings.server.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if !limits::accept_error_is_transient(&e) {
                        tracing::debug!(error = %e, "metrics accept failed");
                        tokio::time::sleep(limits::ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        let app = app.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let resp = if req.uri().path() == "/metrics"
                && (req.method() == Method::GET || req.method() == Method::HEAD)
            {
                metrics_response(&app)
            } else {
                http_util::respond(StatusCode::NOT_FOUND, http_util::TEXT, "not found")
            };
            std::future::ready(Ok::<_, Infallible>(resp))
        });
        let conn = b.serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(graceful.watch(conn));
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received");
}
