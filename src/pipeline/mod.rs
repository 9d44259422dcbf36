//! The request path, in phases: strip spoofed identity → gateway endpoints → verification
//! files → public paths → authenticate → authorize → inject identity → proxy.

pub mod inject;
pub mod paths;
pub mod strip;
pub mod verification;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use self::verification::Verification;
use crate::common::cookies;
use crate::common::error::{ApiError, GatewayError, LoginError};
use crate::common::http_util::{self, Body};
use crate::common::metrics::{Metrics, Route};
use crate::config::Settings;
use crate::endpoints::login_state::StateSigner;
use crate::providers::wechat::WechatClient;
use crate::proxy::pool::UpstreamBody;
use crate::proxy::{self, Peer, Proxy, ProxyError};
use crate::session::{Session, SessionId, SessionStore, Store, StoreError};

pub struct Access {
    pub allow_unionids: HashSet<String>,
    pub allow_openids: HashSet<String>,
    pub require_unionid: bool,
}

impl Access {
    /// [`Access::allows`] for a session's identity. With no rules (the usual case) it reads
    /// nothing from the session: this runs on every proxied request.
    pub fn allows_session(&self, s: &Session) -> bool {
        let open = !self.require_unionid
            && self.allow_unionids.is_empty()
            && self.allow_openids.is_empty();
        open || self.allows(s.openid(), s.unionid())
    }

    pub fn allows(&self, openid: &str, unionid: Option<&str>) -> bool {
        if self.require_unionid && unionid.is_none() {
            return false;
        }
        if self.allow_unionids.is_empty() && self.allow_openids.is_empty() {
            return true;
        }
        unionid.is_some_and(|u| self.allow_unionids.contains(u))
            || self.allow_openids.contains(openid)
    }
}

/// Everything a request needs, built once at start.
pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub wechat: WechatClient,
    pub signer: StateSigner,
    pub verification: Verification,
    pub metrics: Metrics,
    pub access: Access,
    pub session_cookie: String,
    pub login_cookie: String,
    pub sign_secret: Option<Vec<u8>>,
    /// `https` when this listener terminates TLS.
    pub proto: &'static str,
    /// `access.login_rate_per_minute` (None when 0).
    pub login_limiter: Option<crate::endpoints::rate_limit::LoginLimiter>,
    /// `Strict-Transport-Security` for every response (TLS and `server.hsts_max_age_secs` > 0).
    pub(crate) hsts: Option<HeaderValue>,
}

/// Session cookies tried per request at most (a stale one may precede the live one): bounds
/// the store lookups one request can cause.
pub(crate) const MAX_SESSION_COOKIES: usize = 4;

/// A session found for a request, and how it was presented.
pub struct Authenticated {
    pub id: SessionId,
    pub session: Session,
    pub bearer: bool,
}

impl App {
    pub fn new(
        settings: Settings,
        store: Store,
    ) -> Result<Arc<App>, crate::providers::wechat::WechatError> {
        let raw = &settings.raw;
        let wechat = WechatClient::new(
            &settings.api_base,
            Duration::from_millis(raw.wechat.timeout_ms),
        )?;
        let sign_secret = (!raw.headers.sign_secret.is_empty())
            .then(|| raw.headers.sign_secret.as_bytes().to_vec());
        Ok(Arc::new(App {
            wechat,
            signer: StateSigner::new(settings.cookie_secret()),
            verification: Verification::new(&raw.verification),
            metrics: Metrics::new(),
            access: Access {
                allow_unionids: raw.access.allow_unionids.iter().cloned().collect(),
                allow_openids: raw.access.allow_openids.iter().cloned().collect(),
                require_unionid: raw.access.require_unionid,
            },
            session_cookie: raw.session.cookie_name.clone(),
            login_cookie: format!("{}_login", raw.session.cookie_name),
            sign_secret,
            login_limiter: crate::endpoints::rate_limit::LoginLimiter::new(
                raw.access.login_rate_per_minute,
            ),
            proto: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
            hsts: (settings.tls.is_some() && raw.server.hsts_max_age_secs > 0)
                .then(|| {
                    HeaderValue::from_str(&format!("max-age={}", raw.server.hsts_max_age_secs))
                })
                .and_then(Result::ok),
            store,
            settings,
        }))
    }

    pub fn prefix(&self) -> &str {
        self.settings.prefix()
    }

    /// `{prefix}/login?rd=...`
    pub fn login_path(&self, rd: &str) -> String {
        format!(
            "{}/login?rd={}",
            self.prefix(),
            percent_encoding::utf8_percent_encode(rd, crate::endpoints::COMPONENT)
        )
    }

    /// `{public_url}{prefix}/login?rd=...`
    pub fn login_url(&self, rd: &str) -> String {
        format!("{}{}", self.settings.public.origin, self.login_path(rd))
    }

    /// One request, start to end, with its log line and metrics.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        proxy: &Proxy,
    ) -> Response<Body> {
        // The access line is at info: with it off (the usual production level is warn, or
        // info for wxgate::access only), nothing is read for it, not even the clock.
        if !tracing::enabled!(target: "wxgate::access", tracing::Level::INFO) {
            let (mut resp, route, upstream) = self.route(req, peer, proxy).await;
            self.secure_response(&mut resp);
            self.metrics
                .request(route, resp.status().as_u16(), upstream);
            return resp;
        }
        let started = Instant::now();
        let method = req.method().clone();
        // A refcount, not a copy: the path is logged after the request is consumed.
        let pq = req.uri().path_and_query().cloned();
        let (mut resp, route, upstream) = self.route(req, peer, proxy).await;
        self.secure_response(&mut resp);
        let status = resp.status().as_u16();
        self.metrics.request(route, status, upstream);
        tracing::info!(
            target: "wxgate::access",
            method = %method,
            path = pq.as_ref().map(|p| p.path()).unwrap_or("/"),
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            upstream_ms = upstream.map(|d| d.as_secs_f64() * 1e3),
            peer = %peer.addr.ip(),
        );
        resp
    }

    /// The one place for response security headers: on every answer the gateway makes itself
    /// (its own body: endpoints, pages, errors, redirects to login) `Cache-Control: no-store`,
    /// `Referrer-Policy`, `X-Content-Type-Options` (and the CSP on pages); upstream answers pass
    /// as they are. HSTS, when configured, on every response.
    fn secure_response(&self, resp: &mut Response<Body>) {
        if let http_body_util::Either::Right(_) = resp.body() {
            http_util::gateway_answer_headers(resp.headers_mut());
        }
        if let Some(v) = &self.hsts {
            resp.headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
    }

    async fn route(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        proxy: &Proxy,
    ) -> (Response<Body>, Route, Option<Duration>) {
        // Phase 1: hop-by-hop headers go before the gateway adds anything (so `Connection` can
        // never name Host, X-Forwarded-* or identity headers away), and nothing that reads as an
        // identity header survives, on any path.
        proxy::remove_request_hop_headers(&mut req);
        strip::strip_identity_headers(req.headers_mut());
        // Two Host lines: the gateway would read one and the upstream maybe the other
        // (RFC 9112 3.2: 400).
        if req.headers().get_all(HOST).iter().nth(1).is_some() {
            let e = GatewayError::from(ApiError::BadRequest("more than one Host header".into()));
            let json = http_util::wants_json(req.headers());
            return (e.into_response(json, "/"), Route::Gateway, None);
        }

        // Phase 2: a path some upstream could resolve differently from us is refused here,
        // before any decision is taken on it (DESIGN.md "Proxying" → Paths).
        let view = match paths::check_path(req.uri().path()) {
            Ok(v) => v,
            Err(e) => {
                let json = !http_util::is_navigation(req.method(), req.headers());
                tracing::debug!(error = %e, "path refused");
                let resp = GatewayError::from(e).into_response(json, "/");
                return (resp, Route::Gateway, None);
            }
        };
        let path = view.raw();
        let prefix = self.prefix();
        if paths::in_namespace(path, prefix) {
            // Boxed: the login flows' state is larger than the proxy path's, and the future of
            // every request is as large as its largest branch.
            let resp = Box::pin(crate::endpoints::handle(self, req, peer)).await;
            return (resp, Route::Gateway, None);
        }
        if view.has_params() && view.match_in_namespace(prefix) {
            // `/_wxgate;x/login`: the gateway's namespace, never the upstream's; its endpoints
            // take no `;parameters`.
            let json = !http_util::is_navigation(req.method(), req.headers());
            let resp = GatewayError::from(LoginError::NotFound).into_response(json, "/");
            return (resp, Route::Gateway, None);
        }

        if self.verification.is_enabled()
            && (req.method() == Method::GET || req.method() == Method::HEAD)
        {
            if let Some(name) = verification::requested_name(path) {
                if let Some(bytes) = self.verification.lookup(name).await {
                    let resp = http_util::respond(StatusCode::OK, "text/plain", bytes);
                    return (resp, Route::Verification, None);
                }
            }
        }

        if self.is_public(&view) {
            let (req, json) = self.prepare_forward(req, peer, None);
            let (resp, up) = self.forwarded(proxy.forward(req).await, json);
            return (resp, Route::Public, up);
        }

        let auth = match self.authenticate(req.headers()).await {
            Ok(a) => a,
            Err(e) => {
                let json = http_util::wants_json(req.headers());
                return (
                    GatewayError::from(e).into_response(json, "/"),
                    Route::Gateway,
                    None,
                );
            }
        };
        match auth {
            Some(a) if self.access.allows_session(&a.session) => {
                let (req, json) = self.prepare_forward(req, peer, Some(&a));
                let (resp, up) = self.forwarded(proxy.forward(req).await, json);
                (resp, Route::Proxy, up)
            }
            Some(_) => {
                let json = !http_util::is_navigation(req.method(), req.headers());
                let resp = GatewayError::from(LoginError::NotAllowed).into_response(json, "/");
                (resp, Route::Unauthenticated, None)
            }
            None => (
                self.unauthenticated(&req, peer),
                Route::Unauthenticated,
                None,
            ),
        }
    }

    /// 302 to login for browser navigations, 401 JSON for everything else.
    pub fn unauthenticated(&self, req: &Request<Incoming>, peer: &Peer) -> Response<Body> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let rd = self.return_target(req.headers(), req.uri().authority(), pq, peer);
        if http_util::is_navigation(req.method(), req.headers()) {
            // Same site: a relative redirect. Another site (multi-site): log in on public_url.
            let login = if rd.starts_with('/') {
                self.login_path(&rd)
            } else {
                self.login_url(&rd)
            };
            return http_util::redirect(&login);
        }
        let mut r = http_util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthenticated", "login_url": self.login_url(&rd)}),
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wxgate\""),
        );
        r
    }

    /// Where to return after login for a request for `pq`: the path itself on public_url's
    /// host, an absolute URL on a host of `access.redirect_hosts` (multi-site), else the path.
    /// The host is `X-Forwarded-Host` from a trusted proxy, else `Host` / `:authority`.
    pub fn return_target(
        &self,
        headers: &http::HeaderMap,
        authority: Option<&http::uri::Authority>,
        pq: &str,
        peer: &Peer,
    ) -> String {
        let forwarded = |name: &str| {
            peer.trusted
                .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
                .flatten()
                .map(|v| v.split(',').next().unwrap_or("").trim())
                .filter(|v| !v.is_empty())
        };
        let host = forwarded("x-forwarded-host")
            .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
            .or_else(|| authority.map(|a| a.as_str()));
        let Some(host) = host else {
            return pq.to_string();
        };
        let public = &self.settings.public;
        let proto = forwarded("x-forwarded-proto")
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or(public.url.scheme());
        let abs = format!("{proto}://{host}{pq}");
        let Ok(u) = url::Url::parse(&abs) else {
            return pq.to_string();
        };
        let on_public = u
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(&public.host));
        if on_public {
            return pq.to_string();
        }
        let checked = crate::common::redirect::safe_return(
            &abs,
            public,
            &self.settings.raw.access.redirect_hosts,
        );
        if checked == "/" {
            pq.to_string()
        } else {
            checked
        }
    }

    /// A public path: its match form (`;parameters` cut) starts with one of
    /// `access.public_paths`, and it is plain (no upstream can read it as another path).
    fn is_public(&self, view: &paths::PathView<'_>) -> bool {
        let pp = &self.settings.raw.access.public_paths;
        !pp.is_empty() && view.is_plain() && pp.iter().any(|p| view.match_starts_with(p))
    }

    /// The session behind the request's cookie or bearer token, if it is live. Every session
    /// cookie is tried in order (a stale one from another path or domain may come first), at
    /// most [`MAX_SESSION_COOKIES`] of them, then the bearer token.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Authenticated>, StoreError> {
        let now = http_util::unix_now();
        let cookies = cookies::cookie_values(headers, &self.session_cookie)
            .filter_map(SessionId::parse)
            .take(MAX_SESSION_COOKIES);
        for id in cookies {
            if let Some(session) = self.store.get(&id, now).await? {
                return Ok(Some(Authenticated {
                    id,
                    session,
                    bearer: false,
                }));
            }
        }
        if let Some(id) = cookies::bearer_token(headers).and_then(SessionId::parse) {
            if let Some(session) = self.store.get(&id, now).await? {
                return Ok(Some(Authenticated {
                    id,
                    session,
                    bearer: true,
                }));
            }
        }
        Ok(None)
    }

    /// The request as it goes upstream: identity (`auth`; None on public paths), cookies and
    /// `X-Forwarded-*` done. Also: whether an error should be answered in JSON.
    ///
    /// Synchronous on purpose: the caller awaits `proxy.forward` directly, so no async state
    /// along the way keeps another copy of the request (that state is moved on every request).
    fn prepare_forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        auth: Option<&Authenticated>,
    ) -> (Request<Incoming>, bool) {
        let h = req.headers_mut();
        // Room for the identity and X-Forwarded-* headers: one growth instead of several.
        h.reserve(10);
        cookies::strip_cookies(h, &[&self.session_cookie, &self.login_cookie]);
        // On every path, whatever authenticated the request: a gateway token is the gateway's.
        strip::strip_gateway_bearer(h);
        if let Some(a) = auth {
            inject::insert_identity(
                h,
                &a.session,
                self.sign_secret.as_deref(),
                http_util::unix_now(),
            );
        }
        let host = req.headers().get(HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        proxy::set_forwarded(req.headers_mut(), peer, self.proto, host);
        let json = http_util::wants_json(req.headers());
        (req, json)
    }

    /// The client's answer to a forwarded request: the upstream's, without any `Set-Cookie` for
    /// the gateway's own cookies (no session fixation through the upstream), or an error page
    /// (JSON when `json`); and how long the upstream took.
    fn forwarded(
        &self,
        r: Result<(Response<UpstreamBody>, Duration), ProxyError>,
        json: bool,
    ) -> (Response<Body>, Option<Duration>) {
        match r {
            Ok((mut resp, took)) => {
                cookies::strip_set_cookies(
                    resp.headers_mut(),
                    &[&self.session_cookie, &self.login_cookie],
                );
                (resp.map(http_body_util::Either::Left), Some(took))
            }
            Err(e) => (GatewayError::from(e).into_response(json, "/"), None),
        }
    }
}

/// A path with nothing an upstream might normalise differently from us: accepted by
/// [`paths::check_path`] and plain (no dot segments, no encoded dots or slashes, no
/// backslashes, no empty segments, no `;parameters` hiding any of these).
pub fn is_plain_path(path: &str) -> bool {
    paths::check_path(path).is_ok_and(|v| v.is_plain())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths() {
        assert!(is_plain_path("/static/app.js"));
        assert!(is_plain_path("/static/a.b/c"));
        assert!(is_plain_path("/static/app.js;jsessionid=1"));
        assert!(is_plain_path("/static;v=2/app.js"));
        for p in [
            "/static/../admin",
            "/static/%2e%2e/admin",
            "/static/%2E./admin",
            "/static/..%2fadmin",
            "/static//admin",
            "/static\\..\\admin",
            "/static/.",
            "/static/..;/admin",
            "/static/.;/..;/admin",
            "/static/%252e%252e/admin",
            "/static/%c0%ae%c0%ae/admin",
            "/static/a;x/../admin",
            "/static/;x/admin",
        ] {
            assert!(!is_plain_path(p), "{p}");
        }
    }

    #[test]
    fn access_rules() {
        let open = Access {
            allow_unionids: HashSet::new(),
            allow_openids: HashSet::new(),
            require_unionid: false,
        };
        assert!(open.allows("o", None));
        let strict = Access {
            allow_unionids: ["u1".to_string()].into(),
            allow_openids: ["o2".to_string()].into(),
            require_unionid: false,
        };
        assert!(strict.allows("o1", Some("u1")));
        assert!(strict.allows("o2", None));
        assert!(!strict.allows("o3", Some("u3")));
        let need = Access {
            allow_unionids: HashSet::new(),
            allow_openids: HashSet::new(),
            require_unionid: true,
        };
        assert!(!need.allows("o", None));
        assert!(need.allows("o", Some("u")));

        let session = |openid: &str, unionid: Option<&str>| {
            Session::new(&crate::session::NewSession {
                openid,
                unionid,
                appid: "wx1",
                source: crate::session::Source::Website,
                nickname: "",
                avatar: "",
                created_at: 1,
                expires_at: 2,
                session_key: None,
            })
        };
        assert!(open.allows_session(&session("o", None)));
        assert!(strict.allows_session(&session("o1", Some("u1"))));
        assert!(strict.allows_session(&session("o2", None)));
        assert!(!strict.allows_session(&session("o3", Some("u3"))));
        assert!(!need.allows_session(&session("o", None)));
        assert!(need.allows_session(&session("o", Some("u"))));
    }
}
