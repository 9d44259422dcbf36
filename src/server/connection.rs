//! One client connection: hyper serving it, the requests in progress on it, and the idle watch.
//!
//! Each connection is closed once it has had no request in progress for
//! `server.idle_timeout_ms`: before its first byte, during a partial protocol preface, between
//! keep-alive requests, an HTTP/2 connection with no stream (GOAWAY, then close). Bytes alone do
//! not keep a connection open (HTTP/2 PINGs, a trickled preface); a request in progress,
//! long-polling included, is never cut by it (`upstream.timeout_secs` bounds those). The idle
//! watch costs a request two atomic updates, no clock read and no timer registration: one
//! coarse-timer sleep per connection, moved only when it fires.
//! A client that stops taking a response (a slow read: its upstream connection would be held
//! forever) is cut off once it has taken nothing for the idle timeout, as nginx's send_timeout
//! does; on HTTP/2, when no stream of the connection has moved for that long.
//!
//! The same watch keeps `server.header_read_timeout_ms` on HTTP/1: a connection that has not
//! completed a request head that long after it started, or after its previous response was sent,
//! is closed (a slowloris client trickling a head, or a keep-alive connection left open). hyper
//! can do this itself, but arms a boxed timer for every request; here it is the connection's one
//! sleep. It never applies to HTTP/2 (chosen by ALPN, or seen in a request).
//!
//! Each request takes the worker's [`Serving`] current when it starts (a reload swaps it) and
//! keeps it until its response has been sent.
//!
//! Shutdown drains without cutting a request in transit: an HTTP/2 connection gets GOAWAY at
//! once (streams the client already sent are served); an HTTP/1 connection answers its next
//! request with `Connection: close` and closes after it, and one that sends nothing is closed
//! after [`DRAIN_LINGER`] (a client may be writing a request on it at that very moment).

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::common::http_util::{self, Body};
use crate::common::timer::CoarseTimer;
use crate::pipeline::response::ResponseBody;
use crate::server::limits::{self};
use crate::server::serving::Serving;
use crate::server::shutdown::stopped;
use crate::server::wake_gate::WakeGate;

/// At shutdown, how long an HTTP/1 connection with no request in progress is kept open for
/// one last request (answered with `Connection: close`).
pub(crate) const DRAIN_LINGER: Duration = Duration::from_millis(1000);

/// What every request on one connection shares: one refcount per request, not three.
pub(crate) struct Conn {
    /// The worker's current [`Serving`]; each request loads it once.
    serving: Arc<ArcSwap<Serving>>,
    peer: crate::proxy::Peer,
    /// Shutdown asked for: HTTP/1 responses say `Connection: close`.
    draining: AtomicBool,
    /// An HTTP/2 request has been seen on it.
    h2: AtomicBool,
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
    /// `server.header_read_timeout_ms` in ticks; `None` on a connection that ALPN made HTTP/2.
    head_ticks: Option<u64>,
}

/// What the idle watch saw.
#[derive(Debug, PartialEq, Eq)]
enum Quiet {
    /// No request in progress for the idle timeout.
    Idle,
    /// A response waits for the client, which has taken nothing for the idle timeout (it
    /// stopped reading: a slow-read client would hold its upstream connection forever).
    ClientStalled,
    /// HTTP/1: no request head completed within the header-read timeout of the connection's
    /// start or of its previous response.
    HeadTimeout,
}

/// With no request in progress since tick `since`: the tick at which the connection is to be
/// closed, and why. `head` is the header-read timeout in ticks when it applies (HTTP/1). One tick
/// late: `since` lags the clock by up to a tick.
fn quiet_due(since: u64, idle: u64, head: Option<u64>) -> (u64, Quiet) {
    let due = |ticks: u64| since.saturating_add(ticks).saturating_add(1);
    match head.map(due) {
        Some(h) if h < due(idle) => (h, Quiet::HeadTimeout),
        _ => (due(idle), Quiet::Idle),
    }
}

impl Conn {
    /// A new connection's shared state; idle from now. `head_ticks`: the header-read timeout,
    /// `None` when the connection is HTTP/2 from the start (ALPN).
    pub(crate) fn new(
        serving: Arc<ArcSwap<Serving>>,
        peer: crate::proxy::Peer,
        timer: CoarseTimer,
        idle_ticks: u64,
        head_ticks: Option<u64>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            serving,
            peer,
            draining: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            inflight: AtomicU32::new(0),
            idle_since: AtomicU64::new(timer.ticks()),
            waiting: AtomicU32::new(0),
            body_polled: AtomicU64::new(0),
            idle_ticks,
            head_ticks,
            timer,
        })
    }

    /// Resolves once the connection has had no request in progress for the idle timeout (or,
    /// on HTTP/1, the header-read timeout), or its client has stopped taking a response for as
    /// long as the idle timeout.
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
            let head = self.head_ticks.filter(|_| !self.h2.load(Ordering::Relaxed));
            let since = self.idle_since.load(Ordering::Acquire);
            let (due, why) = quiet_due(since, self.idle_ticks, head);
            if now >= due && self.inflight.load(Ordering::Acquire) == 0 {
                return why;
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

/// A request in progress on its connection (see [`Conn::inflight`]), and what it is served
/// with until its response has been sent.
struct InFlight {
    conn: Arc<Conn>,
    serving: Arc<Serving>,
    /// Counted in [`Conn::waiting`].
    waiting: bool,
}

impl InFlight {
    fn new(conn: Arc<Conn>) -> InFlight {
        conn.inflight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            serving: conn.serving.load_full(),
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

/// One request on `conn`, start to end. An async block, not an async fn: an async fn would
/// keep a second copy of the request in the future hyper holds for it.
fn answer(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Tracked<ResponseBody>>, Infallible>> + Send + 'static {
    let guard = InFlight::new(conn);
    let h2 = req.version() == Version::HTTP_2;
    if h2 && !guard.conn.h2.load(Ordering::Relaxed) {
        guard.conn.h2.store(true, Ordering::Relaxed);
    }
    async move {
        let (c, s) = (&*guard.conn, &*guard.serving);
        let mut resp = if h2 && limits::too_many_headers(req.headers()) {
            crate::pipeline::response::own(too_many_headers(&req))
        } else {
            s.app.handle(req, &c.peer, &s.proxy).await
        };
        // Shutdown: this is the connection's last response (hyper closes it after).
        if !h2 && c.draining.load(Ordering::Relaxed) {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(resp.map(|inner| Tracked { inner, guard }))
    }
}

/// Serve one connection (TLS or plain) until it ends, it has been idle for the idle timeout,
/// or shutdown drains it. `h2` is the TLS handshake's choice (ALPN); without one, hyper
/// tells the protocol by the preface.
pub(crate) async fn serve_io<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    conn: Arc<Conn>,
    stop: watch::Receiver<bool>,
    h2: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let watch = conn.clone();
    if h2 {
        // Boxed: a request's future is about 1.3 KiB, and HTTP/2 moves it several times (into
        // its stream, into the stream's task); boxed, a pointer moves. HTTP/1 keeps it in
        // place in the connection, where the allocation would be the extra cost.
        let svc = service_fn(move |req| Box::pin(answer(conn.clone(), req)));
        drive(builder, io, svc, watch, stop).await
    } else {
        let svc = service_fn(move |req| answer(conn.clone(), req));
        drive(builder, io, svc, watch, stop).await
    }
}

/// What ended one round of [`drive`]'s wait: hyper, or one of the watchers.
enum Woke<R> {
    Served(R),
    Stop,
    Linger,
    Quiet(Quiet),
    Kill,
}

/// A watcher of this round, if it is on: its output once it is ready.
fn poll_watcher<F: Future>(w: &mut Option<Pin<&mut F>>, cx: &mut Context<'_>) -> Option<F::Output> {
    match w.as_mut()?.as_mut().poll(cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// hyper serving one connection with `svc`, and what may end it early (see the module's
/// documentation). The watchers sit behind a [`WakeGate`]: a wake for hyper does not poll them.
async fn drive<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    watch: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
        Request<Incoming>,
        Response = Response<Tracked<ResponseBody>>,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
    TokioExecutor: auto::HttpServerConnExec<S::Future, Tracked<ResponseBody>>,
{
    let peer = watch.peer.addr;
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(serving);
    let mut draining = false;
    // Shutdown on a connection not known to be HTTP/2: when to close it if it is idle then.
    let mut linger_until: Option<u64> = None;
    // Once an idle close was asked for: the tick after which the connection is dropped if it
    // has not closed by itself (a partial request head; an HTTP/2 peer that does not answer
    // the GOAWAY's PING).
    let mut kill_at: Option<u64> = None;
    let gate = WakeGate::new();
    let result = loop {
        // This round's watchers, polled (after hyper) only when one of them woke the task.
        let stop_w = pin!((!draining).then(|| stopped(&mut stop)));
        let linger_w = pin!(linger_until.map(|t| watch.timer.sleep_until_tick(t)));
        let quiet_w = pin!(kill_at.is_none().then(|| watch.quiet()));
        let kill_w = pin!(kill_at.map(|t| watch.past(t)));
        let (mut stop_w, mut linger_w) = (stop_w.as_pin_mut(), linger_w.as_pin_mut());
        let (mut quiet_w, mut kill_w) = (quiet_w.as_pin_mut(), kill_w.as_pin_mut());
        gate.reopen();
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = serving.as_mut().poll(cx) {
                return Poll::Ready(Woke::Served(r));
            }
            let Some(mut cx) = gate.open(cx) else {
                return Poll::Pending;
            };
            if poll_watcher(&mut stop_w, &mut cx).is_some() {
                return Poll::Ready(Woke::Stop);
            }
            if poll_watcher(&mut linger_w, &mut cx).is_some() {
                return Poll::Ready(Woke::Linger);
            }
            if let Some(q) = poll_watcher(&mut quiet_w, &mut cx) {
                return Poll::Ready(Woke::Quiet(q));
            }
            if poll_watcher(&mut kill_w, &mut cx).is_some() {
                return Poll::Ready(Woke::Kill);
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Served(r) => break r,
            Woke::Stop => {
                draining = true;
                watch.draining.store(true, Ordering::Relaxed);
                if watch.h2.load(Ordering::Relaxed) {
                    // GOAWAY: streams the client sent before it are served, then it closes.
                    serving.as_mut().graceful_shutdown();
                } else {
                    let t = &watch.timer;
                    linger_until = Some(t.ticks().saturating_add(t.ticks_in(DRAIN_LINGER).max(1)));
                }
            }
            Woke::Linger => {
                // Closes at once when idle, else after the response in progress.
                linger_until = None;
                serving.as_mut().graceful_shutdown();
            }
            Woke::Quiet(Quiet::ClientStalled) => {
                tracing::debug!(%peer, "client stopped reading a response; connection closed");
                break Ok(());
            }
            Woke::Quiet(Quiet::HeadTimeout) => {
                // As hyper's own header-read timeout: no request is owed an answer, the
                // connection is dropped (a partial head, if any, with it).
                tracing::debug!(%peer, "no request head in time; connection closed");
                break Ok(());
            }
            Woke::Quiet(Quiet::Idle) => {
                tracing::debug!(%peer, "idle connection closed");
                serving.as_mut().graceful_shutdown();
                let second = watch.timer.ticks_in(Duration::from_secs(1));
                let grace = (watch.idle_ticks / 4).clamp(1, second);
                kill_at = Some(watch.timer.ticks().saturating_add(grace));
            }
            Woke::Kill => break Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_timeout_closes_an_idle_connection() {
        // HTTP/1, header-read timeout shorter than the idle timeout: it decides.
        assert_eq!(quiet_due(100, 600, Some(100)), (201, Quiet::HeadTimeout));
        // Longer (or equal): the idle timeout does.
        assert_eq!(quiet_due(100, 600, Some(900)), (701, Quiet::Idle));
        assert_eq!(quiet_due(100, 600, Some(600)), (701, Quiet::Idle));
        // HTTP/2: only the idle timeout.
        assert_eq!(quiet_due(100, 600, None), (701, Quiet::Idle));
        // No overflow at the far end of the clock.
        assert_eq!(
            quiet_due(u64::MAX - 1, 600, Some(1)),
            (u64::MAX, Quiet::Idle)
        );
    }
}
