//! The upstream connection pool: HTTP/1.1 keep-alive connections to the one upstream, one pool
//! per worker thread (so the connections live on the thread that uses them, and the pool's lock
//! is never contended).
//!
//! A connection is hyper's connection-level client (`hyper::client::conn::http1`), its I/O driven
//! by a task on the worker's runtime. It is taken out of the pool for one request and goes back
//! when the response body has been read to its end ([`UpstreamBody`]), the moment HTTP/1.1 allows
//! the next request on it. No per-request task, no URI-keyed map: the pool knows one upstream.
//! Idle connections that the upstream closed are dropped when seen; the others after
//! [`IDLE_TIMEOUT`] (a reaper task per pool), and never more than `upstream.pool_max_idle`.
//!
//! All workers together open at most `upstream.max_connections` ([`UpstreamLimit`]): each
//! connection holds a permit for its whole life, idle ones included. A request that finds none
//! free waits up to `connect_timeout_ms`, then fails with [`PoolError::Busy`] (503). While one
//! waits, the pools stop keeping connections idle and their reapers close the idle ones, so
//! idle connections of one worker do not starve another.
//!
//! A response body that brings no bytes for `upstream.timeout_secs` is aborted
//! ([`BodyError::Stalled`]) and its connection closed; timed on the worker's coarse timer, armed
//! once per stall, not per frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{ready, Either as FutEither, FutureExt};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::common::held::Held;
use crate::common::timer::{CoarseSleep, CoarseTimer};

/// The upstream connections of all workers together.
pub struct UpstreamLimit {
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit now (in all workers).
    waiting: AtomicUsize,
}

impl UpstreamLimit {
    pub fn new(max_connections: usize) -> Arc<UpstreamLimit> {
        Arc::new(UpstreamLimit {
            permits: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            waiting: AtomicUsize::new(0),
        })
    }

    fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// A permit, waiting up to `wait` for one.
    async fn acquire(&self, wait: Duration) -> Result<OwnedSemaphorePermit, PoolError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(Ok(p)) => Ok(p),
            _ => Err(PoolError::Busy),
        }
    }
}

/// An upstream socket and its permit: the permit goes back when the socket closes, also when
/// the connection was handed to an upgrade (WebSocket).
type UpstreamIo = Held<TcpStream, OwnedSemaphorePermit>;

/// What goes upstream: the client's body, or nothing (then the request can be sent again).
pub type ReqBody = Either<Incoming, Empty<Bytes>>;

/// The request as it goes upstream: a body that has ended already is sent as none (so the
/// request can be replayed).
pub fn outgoing(req: Request<Incoming>) -> Request<ReqBody> {
    req.map(|b| {
        if b.is_end_stream() {
            ReqBody::Right(Empty::new())
        } else {
            ReqBody::Left(b)
        }
    })
}

/// After a pooled connection failed a request: the request to send on a new connection (one
/// never written, or the replay copy when the connection was closed under it), or the error.
fn resend(
    mut e: hyper::client::conn::TrySendError<Request<ReqBody>>,
    replay: Option<Box<Request<ReqBody>>>,
) -> Result<Request<ReqBody>, PoolError> {
    match (e.take_message(), replay) {
        (Some(req), _) => Ok(req),
        (None, Some(again)) if e.error().is_incomplete_message() => {
            tracing::debug!(
                "pooled upstream connection closed under the request; sending it again"
            );
            Ok(*again)
        }
        (None, _) => Err(PoolError::Request(e.into_error())),
    }
}

/// Safe to send twice: an idempotent method, no body, not an upgrade.
fn replayable(req: &Request<ReqBody>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) && matches!(req.body(), Either::Right(_))
        && !req.headers().contains_key(http::header::UPGRADE)
}

/// How long a connection may sit idle in the pool.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the reaper looks (idle times are counted in these ticks).
const REAP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {host} timed out")]
    ConnectTimeout { host: String },
    #[error("upstream.max_connections reached; no connection came free in time")]
    Busy,
    #[error("HTTP/1.1 handshake with the upstream: {0}")]
    Handshake(hyper::Error),
    #[error("{0}")]
    Request(hyper::Error),
}

struct Idle {
    send: SendRequest<ReqBody>,
    /// The reaper tick when it went idle.
    since: u32,
}

struct Inner {
    idle: Mutex<Vec<Idle>>,
    /// `host:port` of the upstream.
    host: String,
    connect_timeout: Duration,
    max_idle: usize,
    /// Reaper ticks so far (a clock without clock reads on the request path).
    tick: AtomicU32,
    limit: Arc<UpstreamLimit>,
    /// The worker's timer, for response bodies that stall.
    timer: CoarseTimer,
    /// How long a response body may bring nothing, in `timer` ticks.
    stall_ticks: u64,
}

/// One worker's connections to the upstream.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool for `authority` (port 80 when it names none). Call [`Pool::start_reaper`] from the
    /// runtime the pool is used on. New connections take a permit of `limit`; a response body
    /// that brings nothing for `stall` is aborted (timed on `timer`, the worker's).
    pub fn new(
        authority: &http::uri::Authority,
        connect_timeout: Duration,
        max_idle: usize,
        limit: Arc<UpstreamLimit>,
        timer: CoarseTimer,
        stall: Duration,
    ) -> Pool {
        let host = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(Vec::new()),
                host,
                connect_timeout,
                max_idle,
                tick: AtomicU32::new(0),
                stall_ticks: timer.ticks_in(stall),
                limit,
                timer,
            }),
        }
    }

    /// Close idle connections after [`IDLE_TIMEOUT`]; the task ends with the pool.
    pub fn start_reaper(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let max_ticks = (IDLE_TIMEOUT.as_secs() / REAP_EVERY.as_secs()) as u32;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let now = inner.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                let mut idle = inner.idle.lock().unwrap_or_else(|e| e.into_inner());
                if inner.limit.contended() {
                    // Another request (maybe on another worker) waits for a connection: free
                    // the permits that idle ones hold.
                    idle.clear();
                }
                idle.retain(|i| !i.send.is_closed() && now.wrapping_sub(i.since) <= max_ticks);
            }
        });
    }

    /// Send `req` (origin-form URI, `Host` set) on an idle connection, or a new one.
    ///
    /// An idle connection can be closed by the upstream at the moment it is reused (its
    /// keep-alive timeout). A request that was not written yet is sent again on a new
    /// connection; so is one without a body and with an idempotent method that got no answer
    /// at all on a connection that had been idle for a reaper tick or more (what nginx does
    /// too). Nothing else is retried.
    ///
    /// Built from combinators, not an async fn: an async fn keeps its argument (the request)
    /// in its state for its whole life next to the future it awaits, and that state is part of
    /// every request's future, which is moved whole (HTTP/2: several times per request).
    pub fn send(
        &self,
        req: Request<ReqBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, PoolError>> + Send + '_ {
        // The path of almost every request: an idle connection. A new connection is the other
        // path, boxed, so that its state does not weigh on the future moved for every request.
        let Some((mut send, since)) = self.take_idle() else {
            return FutEither::Left(Box::pin(self.send_new(req)));
        };
        // Only a connection idle since an earlier tick (up to a second or more) can meet an
        // upstream's keep-alive timeout; one just used needs no copy to replay. Boxed for the
        // same reason as above: held while the answer is awaited, and rarely there.
        let stale = since != self.inner.tick.load(Ordering::Relaxed);
        let replay = (stale && replayable(&req)).then(|| {
            let mut again = Request::new(ReqBody::Right(Empty::new()));
            *again.method_mut() = req.method().clone();
            *again.uri_mut() = req.uri().clone();
            *again.version_mut() = req.version();
            *again.headers_mut() = req.headers().clone();
            Box::new(again)
        });
        let sent = send.try_send_request(req);
        FutEither::Right(sent.then(move |r| match r {
            Ok(resp) => FutEither::Left(ready(Ok(self.wrap(resp, send)))),
            Err(e) => match resend(e, replay) {
                Ok(again) => FutEither::Right(Box::pin(self.send_new(again))),
                Err(e) => FutEither::Left(ready(Err(e))),
            },
        }))
    }

    /// Send `req` on a new connection.
    async fn send_new(&self, req: Request<ReqBody>) -> Result<Response<UpstreamBody>, PoolError> {
        let mut send = self.connect().await?;
        match send.send_request(req).await {
            Ok(resp) => Ok(self.wrap(resp, send)),
            Err(e) => Err(PoolError::Request(e)),
        }
    }

    fn wrap(&self, resp: Response<Incoming>, send: SendRequest<ReqBody>) -> Response<UpstreamBody> {
        // 101: the connection now belongs to the upgrade; it never comes back.
        let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
        let pool = self.inner.clone();
        let progress = pool.timer.ticks();
        resp.map(|inner| UpstreamBody {
            inner,
            send: reusable.then_some(send),
            pool,
            progress,
            stall: None,
        })
    }

    /// The most recently used idle connection that can take a request now.
    fn take_idle(&self) -> Option<(SendRequest<ReqBody>, u32)> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle.pop() {
            if i.send.is_ready() {
                return Some((i.send, i.since));
            }
            // Closed, or (rarely) not yet ready: a connection is only pooled once its response
            // is read, so "not ready" means its request body is still going; let it go.
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, PoolError> {
        let host = &self.inner.host;
        let timeout = self.inner.connect_timeout;
        let permit = self.inner.limit.acquire(timeout).await?;
        let connecting = async {
            let addrs: Vec<_> = tokio::net::lookup_host(host.as_str())
                .await
                .map_err(|source| PoolError::Resolve {
                    host: host.clone(),
                    source,
                })?
                .collect();
            let mut last = PoolError::NoAddress { host: host.clone() };
            for addr in addrs {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                };
                let stream = match socket {
                    Ok(s) => {
                        let _ = s.set_keepalive(true);
                        s.connect(addr).await
                    }
                    Err(e) => Err(e),
                };
                match stream {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(source) => last = PoolError::Connect { addr, source },
                }
            }
            Err(last)
        };
        let stream: UpstreamIo = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| PoolError::ConnectTimeout { host: host.clone() })
            .and_then(|r| r)
            .map(|s| Held::new(s, permit))?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(send)
    }
}

impl Inner {
    fn give_back(&self, send: SendRequest<ReqBody>) {
        // Closed, or wanted by a request waiting for a permit: dropped, it closes.
        if send.is_closed() || self.limit.contended() {
            return;
        }
        let since = self.tick.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle { send, since });
        }
    }
}

/// Why an upstream response body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    #[error("the upstream response body stalled")]
    Stalled,
}

/// An upstream response body. Read to its end, it returns its connection to the pool; dropped
/// before that, the connection closes with it (HTTP/1.1 cannot abandon a response midway).
/// Bringing no bytes for the stall limit, it ends with [`BodyError::Stalled`] and its connection
/// closes.
pub struct UpstreamBody {
    inner: Incoming,
    /// The connection, to go back to the pool at the end (none after an upgrade).
    send: Option<SendRequest<ReqBody>>,
    pool: Arc<Inner>,
    /// The tick of the last frame.
    progress: u64,
    /// Armed on the first wait for data, moved only when it fires.
    stall: Option<CoarseSleep>,
}

impl UpstreamBody {
    fn finished(&mut self) {
        if let Some(send) = self.send.take() {
            self.pool.give_back(send);
        }
    }

    /// Waiting for the upstream: has it brought nothing for the stall limit? Registers the
    /// waker to be asked again when it might have.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let timer = &self.pool.timer;
        // Due one tick late: `progress` lags the clock by up to a tick.
        let due = self
            .progress
            .saturating_add(self.pool.stall_ticks)
            .saturating_add(1);
        loop {
            let sleep = self
                .stall
                .get_or_insert_with(|| timer.sleep_until_tick(due));
            if Pin::new(sleep).poll(cx).is_pending() {
                return false;
            }
            if timer.ticks() >= due {
                return true;
            }
            // Fired for an older stall: bytes came since; wait from the last of them.
            self.stall = None;
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(f))) => {
                self.progress = self.pool.timer.ticks();
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.send = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                if self.stalled(cx) {
                    tracing::warn!(
                        limit_ticks = self.pool.stall_ticks,
                        "upstream response body stalled; aborted, connection closed"
                    );
                    // The connection goes when the body is dropped: never back to the pool.
                    self.send = None;
                    return Poll::Ready(Some(Err(BodyError::Stalled)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper's server stops polling once `is_end_stream` says so: that is the end too.
        if self.inner.is_end_stream() {
            self.finished();
        }
    }
}
