//! Forwarding to the upstream (through the worker's [`Pool`]): bodies streamed both ways,
//! hop-by-hop headers removed in both directions, `X-Forwarded-*` per `trusted_proxies`,
//! WebSocket (HTTP/1.1 Upgrade) passed through.

pub mod pool;

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::config::Settings;
use crate::proxy::pool::{outgoing, Pool, PoolError, ReqBody, UpstreamBody, UpstreamLimit};
use crate::server::timer::CoarseTimer;

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

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Remove the hop-by-hop headers of an incoming request, keeping a WebSocket handshake's
/// `Connection: upgrade` + `Upgrade` (HTTP/1.1 only). Called first thing, before the gateway adds
/// `Host`, `X-Forwarded-*` or identity headers: `Connection` can then never name one of those away.
pub(crate) fn remove_request_hop_headers<B>(req: &mut Request<B>) {
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    remove_hop_headers(req.headers_mut(), upgrade);
}

/// Remove hop-by-hop headers: those named in `Connection` (never `Host`), then the fixed list. With
/// `upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket handshakes).
pub fn remove_hop_headers(h: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them: one look at each name instead of a lookup per
    // hop-by-hop name.
    if !h.keys().any(is_hop_name) {
        return;
    }
    // `Connection: keep-alive` / `close` (nearly every message) name nothing else to remove:
    // skip the allocation below for them.
    let only_plain_tokens = h.get_all(header::CONNECTION).iter().all(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').map(str::trim).all(|t| {
                t.is_empty()
                    || t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("close")
            })
        })
    });
    if only_plain_tokens {
        h.remove(header::CONNECTION);
    } else if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            // `Host` is end-to-end and required: naming it in `Connection` cannot remove it.
            .filter(|n| n != header::HOST && !(upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            h.remove(&n);
        }
        h.remove(header::CONNECTION);
    }
    // `Connection: keep-alive` alone (most upstream responses) is done now.
    if !upgrade && !h.keys().any(is_hop_name) {
        return;
    }
    h.remove(&KEEP_ALIVE);
    h.remove(header::PROXY_AUTHENTICATE);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(&PROXY_CONNECTION);
    h.remove(header::TRAILER);
    h.remove(header::TRANSFER_ENCODING);
    if let Some(te) = h.remove(header::TE) {
        let trailers = te
            .to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false);
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        if h.contains_key(header::UPGRADE) {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    } else {
        h.remove(header::UPGRADE);
    }
}

/// A header that is hop-by-hop by itself (RFC 9110 7.6.1, plus the legacy ones); headers named
/// in `Connection` are hop-by-hop too, and `Connection` is on this list.
fn is_hop_name(n: &HeaderName) -> bool {
    *n == header::CONNECTION
        || *n == header::TE
        || *n == header::TRANSFER_ENCODING
        || *n == header::TRAILER
        || *n == header::UPGRADE
        || *n == header::PROXY_AUTHENTICATE
        || *n == header::PROXY_AUTHORIZATION
        || *n == KEEP_ALIVE
        || *n == PROXY_CONNECTION
}

/// An HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&peer))
}

/// The client end of a connection, worked out once per connection, not per request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// In `server.trusted_proxies`: its `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// The peer IP as a header value (the whole `X-Forwarded-For` of an untrusted peer).
    pub ip_value: HeaderValue,
}

impl Peer {
    pub fn new(addr: std::net::SocketAddr, trusted: &[IpNet]) -> Peer {
        let ip = addr.ip();
        Peer {
            addr,
            trusted: is_trusted(ip, trusted),
            ip_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
        }
    }
}

/// A header through which a client states its own address, scheme, host, port or path prefix
/// (`X-Forwarded-*`, RFC 7239 `Forwarded`, nginx's `X-Real-IP`, and the like). Upstreams and
/// their frameworks believe them from the gateway; only a trusted proxy may send them.
fn is_client_forwarding(n: &HeaderName) -> bool {
    let s = n.as_str();
    s.starts_with("x-forwarded-")
        || matches!(
            s,
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "true-client-ip"
                | "x-original-forwarded-for"
        )
}

/// Remove what an untrusted client says about where it is (see [`is_client_forwarding`]).
/// One look at each name; allocates only when there is one.
fn strip_client_forwarding(h: &mut HeaderMap) {
    if !h.keys().any(is_client_forwarding) {
        return;
    }
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_client_forwarding(n))
        .cloned()
        .collect();
    for n in names {
        h.remove(&n);
    }
}

/// `X-Forwarded-For/Proto/Host`. From an untrusted peer, every incoming forwarding header
/// (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, ...) is removed and For/Proto/Host are set;
/// from a trusted one, the chain is extended and Proto/Host are kept when present.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: &Peer,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let trusted = peer.trusted;
    if trusted {
        let prior: Vec<&str> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let xff = if prior.is_empty() {
            peer.addr.ip().to_string()
        } else {
            format!("{}, {}", prior.join(", "), peer.addr.ip())
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    } else {
        strip_client_forwarding(h);
        h.insert(X_FORWARDED_FOR.clone(), peer.ip_value.clone());
    }
    if !(trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted && h.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(v) => {
                h.insert(X_FORWARDED_HOST.clone(), v);
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 upstreams want one (RFC 9113 8.2.3).
pub fn join_cookies(h: &mut HeaderMap) {
    let mut it = h.get_all(header::COOKIE).iter();
    if it.next().is_none() || it.next().is_none() {
        return;
    }
    let joined: Vec<u8> = h
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
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
        let req = outgoing(req);
        self.send(req, client_upgrade)
    }

    async fn send(
        &self,
        req: Request<ReqBody>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<(Response<UpstreamBody>, Duration), ProxyError> {
        let started = Instant::now();
        let mut resp = match self.timer.timeout(self.timeout, self.pool.send(req)).await {
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
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_headers_removed() {
        let mut h = hm(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip, trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "1"),
        ]);
        remove_hop_headers(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn plain_connection_tokens_fast_path() {
        for v in ["keep-alive", "close", "Keep-Alive, close", ""] {
            let mut h = hm(&[
                ("connection", v),
                ("keep-alive", "timeout=5"),
                ("close", "not-a-hop"),
            ]);
            remove_hop_headers(&mut h, false);
            assert!(
                !h.contains_key("connection") && !h.contains_key("keep-alive"),
                "{v}"
            );
            assert!(h.contains_key("close"), "only named headers go: {v}");
        }
    }

    #[test]
    fn nothing_to_remove_leaves_the_map_alone() {
        let mut h = hm(&[("host", "app"), ("x-a", "1"), ("cookie", "a=1")]);
        let before = h.clone();
        remove_hop_headers(&mut h, false);
        assert_eq!(h, before);
        for name in ["proxy-connection", "keep-alive", "upgrade", "trailer"] {
            let mut h = hm(&[("host", "app"), (name, "x")]);
            remove_hop_headers(&mut h, false);
            assert!(!h.contains_key(name), "{name}");
            assert!(h.contains_key("host"));
        }
    }

    #[test]
    fn te_without_trailers_dropped() {
        let mut h = hm(&[("te", "gzip")]);
        remove_hop_headers(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn upgrade_kept_when_asked() {
        let mut h = hm(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        remove_hop_headers(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn forwarded_untrusted_replaces() {
        let mut h = hm(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
        ]);
        let peer = Peer::new("10.0.0.1:5000".parse().unwrap(), &[]);
        set_forwarded(
            &mut h,
            &peer,
            "https",
            Some(HeaderValue::from_static("app")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app");
    }

    #[test]
    fn forwarded_trusted_appends() {
        let mut h = hm(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer = Peer::new(
            "10.0.0.1:5000".parse().unwrap(),
            &["10.0.0.0/8".parse().unwrap()],
        );
        assert!(peer.trusted);
        set_forwarded(&mut h, &peer, "http", Some(HeaderValue::from_static("app")));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app");
    }

    #[test]
    fn connection_cannot_name_host() {
        let mut h = hm(&[
            ("host", "app"),
            ("connection", "host, x-a, Host"),
            ("x-a", "1"),
        ]);
        remove_hop_headers(&mut h, false);
        assert_eq!(h["host"], "app");
        assert!(!h.contains_key("x-a") && !h.contains_key("connection"));
    }

    #[test]
    fn request_hop_headers_before_anything_is_added() {
        let req = |conn: &str, version: Version| {
            let mut r = Request::builder()
                .version(version)
                .header("host", "app")
                .header("connection", conn)
                .header("x-wechat-unionid", "spoof")
                .header("x-forwarded-for", "6.6.6.6")
                .header("upgrade", "websocket")
                .header("x-keep", "1")
                .body(())
                .unwrap();
            remove_request_hop_headers(&mut r);
            r
        };
        let r = req("x-wechat-unionid, x-forwarded-for, host", Version::HTTP_11);
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["host", "x-keep"]);
        // A WebSocket handshake keeps its upgrade, loses what else Connection names.
        let r = req("Upgrade, x-forwarded-for", Version::HTTP_11);
        assert_eq!(r.headers()["connection"], "upgrade");
        assert_eq!(r.headers()["upgrade"], "websocket");
        assert!(!r.headers().contains_key("x-forwarded-for"));
        assert!(is_upgrade_request(r.headers()));
        // No upgrade over HTTP/1.0.
        let r = req("upgrade", Version::HTTP_10);
        assert!(!r.headers().contains_key("upgrade"));
        assert!(!r.headers().contains_key("connection"));
    }

    #[test]
    fn untrusted_client_forwarding_removed() {
        let mut h = hm(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/evil"),
            ("true-client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("x-forwarded", "kept: not a prefix match"),
            ("x-keep", "1"),
        ]);
        let peer = Peer::new("10.0.0.1:5000".parse().unwrap(), &[]);
        set_forwarded(&mut h, &peer, "https", None);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "x-forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-keep"
            ]
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");

        // A trusted proxy's are believed: kept as they are.
        let mut h = hm(&[
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        let peer = Peer::new(
            "10.0.0.1:5000".parse().unwrap(),
            &["10.0.0.0/8".parse().unwrap()],
        );
        set_forwarded(&mut h, &peer, "https", None);
        assert_eq!(h["forwarded"], "for=203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn trust_matching() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::1".parse().unwrap(), &nets));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn cookies_joined() {
        let mut h = hm(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
