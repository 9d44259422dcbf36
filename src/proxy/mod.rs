//! Forwarding to the upstream (through the worker's [`Pool`]): bodies streamed both ways,
//! hop-by-hop headers removed in both directions, `X-Forwarded-*` per `trusted_proxies`,
//! WebSocket (HTTP/1.1 Upgrade) passed through.

pub(crate) mod forwarded;
pub(crate) mod hop_by_hop;
pub(crate) mod pool;

use self::forwarded::join_cookies;
pub use self::forwarded::{is_trusted, set_forwarded, Peer};
pub(crate) use self::hop_by_hop::remove_request_hop_headers;
use self::hop_by_hop::{is_upgrade_request, remove_hop_headers};

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::common::error::ErrorAnswer;
use crate::common::pages::Text;
use crate::common::timer::{CoarseTimer, Elapsed};
use crate::config::Settings;
use crate::proxy::pool::{outgoing, Pool, PoolError, UpstreamBody, UpstreamLimit};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream unreachable")]
    Unreachable,
    #[error("upstream did not answer in time")]
    Timeout,
    /// `upstream.max_connections` reached and none came free within `connect_timeout_ms`.
    #[error("upstream busy")]
    Busy,
}

impl ErrorAnswer for ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unreachable => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProxyError::Unreachable => "upstream_unreachable",
            ProxyError::Timeout => "upstream_timeout",
            ProxyError::Busy => "upstream_busy",
        }
    }

    #[rustfmt::skip]
    fn texts(&self) -> (Text<'static>, Text<'static>) {
        let t = |zh, en| Text { zh, en };
        match self {
            ProxyError::Unreachable => (
                t("服务暂不可用", "Service unavailable"),
                t("网关无法连接到后端服务，请稍后再试。", "The gateway could not reach the application. Please try again shortly."),
            ),
            ProxyError::Timeout => (
                t("服务响应超时", "Gateway timeout"),
                t("后端服务没有及时响应，请稍后再试。", "The application did not answer in time. Please try again."),
            ),
            ProxyError::Busy => (
                t("服务繁忙", "Upstream busy"),
                t("后端服务繁忙，请稍后再试。", "The application is busy. Please try again shortly."),
            ),
        }
    }
}

pub struct Proxy {
    pool: Pool,
    authority: http::uri::Authority,
    timeout: Duration,
    timer: CoarseTimer,
    /// `server.idle_timeout_ms`: an upgraded connection (WebSocket) that moves no byte either
    /// way for this long is closed.
    idle: Duration,
    /// The tick of the last "upstream busy" log line (one per [`BUSY_LOG_EVERY`] at most).
    busy_logged: AtomicU64,
}

/// At most one "upstream.max_connections reached" line per this long and worker.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);

impl Proxy {
    /// This worker's proxy; call it on the runtime that will use it (its pool's reaper runs there).
    /// `timer` (the worker's) times the upstream's answers; `limit` (all workers') caps the
    /// upstream connections.
    pub fn new(s: &Settings, timer: CoarseTimer, limit: Arc<UpstreamLimit>) -> Self {
        let pool = Pool::new(
            &s.upstream.authority,
            s.upstream.connect_timeout,
            s.upstream.pool_max_idle,
            limit,
            timer.clone(),
            s.upstream_timeout(),
        );
        pool.start_reaper();
        Self {
            pool,
            authority: s.upstream.authority.clone(),
            timeout: s.upstream_timeout(),
            timer,
            idle: s.server.idle_timeout,
            busy_logged: AtomicU64::new(0),
        }
    }

    /// Send `req` (headers already prepared by the caller: hop-by-hop removed, then identity and
    /// forwarded added) upstream.
    /// Returns the response with hop-by-hop headers removed and the time the upstream took.
    ///
    /// The request is prepared when this is called; the future only sends it and waits. (An
    /// async fn would keep a copy of the request in its state for its whole life, and that state
    /// is moved on every request.)
    pub fn forward(
        &self,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Result<(Response<UpstreamBody>, Duration), ProxyError>> + '_ {
        let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        // Host is kept; HTTP/2 carries it as :authority; with neither, the upstream's.
        if !req.headers().contains_key(header::HOST) {
            let host = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| HeaderValue::from_str(self.authority.as_str()).ok());
            if let Some(v) = host {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        if req.version() == Version::HTTP_2 {
            join_cookies(req.headers_mut());
        }
        // The request's hop-by-hop headers are gone already (`remove_request_hop_headers`, before
        // anything was added): removing them here would let `Connection` name the added ones.
        // Origin-form (`/path?query`) upstream, whatever form the client used.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
        *req.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        let sent = self
            .timer
            .timeout(self.timeout, self.pool.send(outgoing(req)));
        sent.map(move |r| self.answered(r, started, client_upgrade))
    }

    /// The upstream's answer (`r`, through the timeout) as the client gets it. Synchronous:
    /// `forward` maps the send future with it, so no async state keeps a copy of anything.
    fn answered(
        &self,
        r: Result<Result<Response<UpstreamBody>, PoolError>, Elapsed>,
        started: Instant,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<(Response<UpstreamBody>, Duration), ProxyError> {
        let mut resp = match r {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Err(PoolError::Busy)) => {
                let now = self.timer.ticks();
                let last = self.busy_logged.load(Ordering::Relaxed);
                if last == 0 || now >= last.saturating_add(self.timer.ticks_in(BUSY_LOG_EVERY)) {
                    self.busy_logged.store(now.max(1), Ordering::Relaxed);
                    tracing::warn!(
                        "upstream.max_connections reached: requests answered 503 (logged once per 10 s)"
                    );
                }
                return Err(ProxyError::Busy);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %ErrChain(&e), "upstream request failed");
                return Err(ProxyError::Unreachable);
            }
            Ok(Ok(r)) => r,
        };
        let took = started.elapsed();

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let (timer, idle) = (self.timer.clone(), self.idle);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((c, u)) => splice(TokioIo::new(c), TokioIo::new(u), timer, idle).await,
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
                remove_hop_headers(resp.headers_mut(), true);
                return Ok((resp, took));
            }
        }
        remove_hop_headers(resp.headers_mut(), false);
        Ok((resp, took))
    }
}

/// Copy both ways between an upgraded client connection and its upstream connection until
/// either closes, or no byte has moved either way for `idle` (as nginx's proxy_read_timeout
/// closes a quiet WebSocket): then both close.
async fn splice<C, U>(c: C, u: U, timer: CoarseTimer, idle: Duration)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let last = AtomicU64::new(timer.ticks());
    let mut c = Active {
        io: c,
        timer: &timer,
        last: &last,
    };
    let mut u = Active {
        io: u,
        timer: &timer,
        last: &last,
    };
    let idle_ticks = timer.ticks_in(idle);
    let quiet = async {
        loop {
            let due = last
                .load(Ordering::Relaxed)
                .saturating_add(idle_ticks)
                .saturating_add(1);
            if timer.ticks() >= due {
                return;
            }
            timer.sleep_until_tick(due).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
        _ = quiet => tracing::debug!("upgraded connection idle; closed"),
    }
}

/// An I/O object that notes the tick of its last read that brought bytes.
struct Active<'a, S> {
    io: S,
    timer: &'a CoarseTimer,
    last: &'a AtomicU64,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<'_, S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(self.timer.ticks(), Ordering::Relaxed);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<'_, S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Display an error with its sources (hyper-util hides the cause behind "client error").
pub struct ErrChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&chain_text(self.0))
    }
}

/// An error and its sources, `: `-separated, without repeats: hyper and std errors often print
/// their source inside their own text as well, which gave `Connection refused (os error 111):
/// Connection refused (os error 111)`.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chains_print_each_text_once() {
        let refused = || Some(Box::new(E("Connection refused (os error 111)", None)));
        let e = E("Connection refused (os error 111)", refused());
        assert_eq!(chain_text(&e), "Connection refused (os error 111)");
        let e = E(
            "client error (Connect)",
            Some(Box::new(E("tcp connect error", refused()))),
        );
        assert_eq!(
            chain_text(&e),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        let e = E(
            "tcp connect error: Connection refused (os error 111)",
            refused(),
        );
        assert_eq!(
            chain_text(&e),
            "tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(ErrChain(&E("a", None)).to_string(), "a");
    }
}
