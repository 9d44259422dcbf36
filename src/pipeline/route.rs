//! The phases of one request, in order: strip (hop-by-hop and spoofed identity headers) →
//! route (gateway endpoints, verification files, public paths) → authenticate → authorize →
//! inject identity → forward → the response phase (response.rs), which every answer passes.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::common::cookies;
use crate::common::error::{ApiError, GatewayError, LoginError};
use crate::common::http_util;
use crate::common::metrics::Route;
use crate::common::paths;
use crate::pipeline::app::App;
use crate::pipeline::response::{own, AccessLine, ResponseBody};
use crate::pipeline::{strip, verification};
use crate::proxy::pool::UpstreamBody;
use crate::proxy::{self, Peer, Proxy, ProxyError};
use crate::session::Authenticated;

impl App {
    /// One request, start to end: its phases (below), then the response phase, which counts
    /// and logs it.
    ///
    /// Not an async fn, and `route` is an async block: an async fn keeps its arguments and a
    /// second copy of them in its state, and the request (264 bytes) would be held twice per
    /// layer in the future every request moves. Here `handle` holds none and `route` one.
    pub(crate) fn handle<'a>(
        &'a self,
        req: Request<Incoming>,
        peer: &'a Peer,
        proxy: &'a Proxy,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'a {
        // With the access line off (the usual production level is warn, or info for
        // wxgate::access only), nothing is read for it, not even the clock.
        let line = AccessLine::enabled().then(|| AccessLine::start(&req));
        self.route(req, peer, proxy)
            .map(move |(resp, route, upstream)| {
                let resp = self.respond(resp, route, upstream);
                if let Some(line) = line {
                    line.write(resp.status().as_u16(), upstream, peer);
                }
                resp
            })
    }

    // Written out, not an async fn: see `handle`.
    #[allow(clippy::manual_async_fn)]
    fn route<'a>(
        &'a self,
        mut req: Request<Incoming>,
        peer: &'a Peer,
        proxy: &'a Proxy,
    ) -> impl Future<Output = (Response<ResponseBody>, Route, Option<Duration>)> + Send + 'a {
        async move {
            // Phase 1: hop-by-hop headers go before the gateway adds anything (so `Connection`
            // can never name Host, X-Forwarded-* or identity headers away), and nothing that
            // reads as an identity header survives, on any path.
            proxy::remove_request_hop_headers(&mut req);
            strip::strip_identity_headers(req.headers_mut());
            // Two Host lines: the gateway would read one and the upstream maybe the other
            // (RFC 9112 3.2: 400).
            if req.headers().get_all(HOST).iter().nth(1).is_some() {
                let e = ApiError::BadRequest("more than one Host header".into());
                let json = http_util::wants_json(req.headers());
                return (error_answer(e, json), Route::Gateway, None);
            }

            // Phase 2: a path some upstream could resolve differently from us is refused
            // here, before any decision is taken on it (DESIGN.md "Proxying" → Paths).
            let view = match paths::check_path(req.uri().path()) {
                Ok(v) => v,
                Err(e) => {
                    let json = !http_util::is_navigation(req.method(), req.headers());
                    tracing::debug!(error = %e, "path refused");
                    let resp = error_answer(e, json);
                    return (resp, Route::Gateway, None);
                }
            };
            let path = view.raw();
            let prefix = self.prefix();
            if paths::in_namespace(path, prefix) {
                // Boxed: the login flows' state is larger than the proxy path's, and the
                // future of every request is as large as its largest branch.
                let cx = self.endpoint_ctx(req.headers(), peer);
                let resp = Box::pin(crate::endpoints::handle(&cx, req, peer)).await;
                return (own(resp), Route::Gateway, None);
            }
            if view.has_params() && view.match_in_namespace(prefix) {
                // `/_wxgate;x/login`: the gateway's namespace, never the upstream's; its
                // endpoints take no `;parameters`.
                let json = !http_util::is_navigation(req.method(), req.headers());
                let resp = error_answer(LoginError::NotFound, json);
                return (resp, Route::Gateway, None);
            }

            if self.verification.is_enabled()
                && (req.method() == Method::GET || req.method() == Method::HEAD)
            {
                if let Some(name) = verification::requested_name(path) {
                    // Boxed for the same reason: its file reads are the largest state here.
                    if let Some(bytes) = Box::pin(self.verification.lookup(name)).await {
                        let resp = http_util::respond(StatusCode::OK, "text/plain", bytes);
                        return (own(resp), Route::Verification, None);
                    }
                }
            }

            // Public, or a session the access rules allow: forwarded, at one await point (two
            // would each inline the forward future's code into this one).
            let (route, req, json) = if self.is_public(&view) {
                let (req, json) = self.prepare_forward(req, peer, None);
                (Route::Public, req, json)
            } else {
                let auth = match self.authenticate(req.headers()).await {
                    Ok(a) => a,
                    Err(e) => {
                        let json = http_util::wants_json(req.headers());
                        return (error_answer(e, json), Route::Gateway, None);
                    }
                };
                match auth {
                    Some(a) if self.access.allows_session(&a.session) => {
                        let (req, json) = self.prepare_forward(req, peer, Some(&a));
                        (Route::Proxy, req, json)
                    }
                    Some(a) => {
                        let json = !http_util::is_navigation(req.method(), req.headers());
                        let resp = error_answer(self.refusal(&req, peer, &a), json);
                        return (resp, Route::Unauthenticated, None);
                    }
                    None => {
                        let resp = own(self.unauthenticated(&req, peer));
                        return (resp, Route::Unauthenticated, None);
                    }
                }
            };
            let (resp, up) = self.forwarded(proxy.forward(req).await, json);
            (resp, route, up)
        }
    }

    /// The 403 for a live session the access rules refuse (audited; "switch account" returns
    /// here after a new login).
    fn refusal(&self, req: &Request<Incoming>, peer: &Peer, a: &Authenticated) -> GatewayError {
        let reason = self
            .access
            .refusal(&a.session)
            .unwrap_or(crate::common::error::RefusalReason::NotAllowed);
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let rd = self.return_target(req.headers(), req.uri().authority(), pq, peer);
        let cx = self.endpoint_ctx(req.headers(), peer);
        crate::endpoints::refusal(&cx, &a.session, reason, &rd)
    }

    /// A public path: its match form (`;parameters` cut) starts with one of
    /// `access.public_paths`, and it is plain (no upstream can read it as another path).
    fn is_public(&self, view: &paths::PathView<'_>) -> bool {
        let pp = &self.settings.access.public_paths;
        // `/favicon.ico` (exactly) is always public: browsers fetch it on every page, the
        // login pages included, and a 401 or a login redirect for it helps no one. It goes
        // upstream like any public path: without identity headers.
        (view.raw() == FAVICON || (!pp.is_empty() && pp.iter().any(|p| view.match_starts_with(p))))
            && view.is_plain()
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
            self.providers
                .insert_identity(h, &a.session, self.sign_secret.as_deref());
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

    /// The client's answer to a forwarded request: the upstream's (the response phase removes
    /// its `Set-Cookie` lines for the gateway's cookies), or an error page (JSON when `json`);
    /// and how long the upstream took.
    fn forwarded(
        &self,
        r: Result<(Response<UpstreamBody>, Duration), ProxyError>,
        json: bool,
    ) -> (Response<ResponseBody>, Option<Duration>) {
        match r {
            Ok((resp, took)) => (resp.map(http_body_util::Either::Left), Some(took)),
            Err(e) => (error_answer(e, json), None),
        }
    }
}

/// The one path public without configuration (see `is_public`).
const FAVICON: &str = "/favicon.ico";

/// An error as the client gets it: logged once, then rendered (JSON when `json`).
fn error_answer(e: impl Into<GatewayError>, json: bool) -> Response<ResponseBody> {
    let e = e.into();
    e.log();
    own(e.into_response(json, "/"))
}
