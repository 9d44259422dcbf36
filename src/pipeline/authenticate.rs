//! Phase "authenticate": the live session behind a request's cookie or bearer token, and the
//! answer when there is none (302 to login for browser navigations, 401 JSON for the rest).

use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::cookies;
use crate::common::http_util::{self, Body};
use crate::pipeline::app::App;
use crate::proxy::Peer;
use crate::session::{Session, SessionId, SessionStore, StoreError};

/// Session cookies tried per request at most (a stale one may precede the live one): bounds
/// the store lookups one request can cause.
pub(crate) const MAX_SESSION_COOKIES: usize = 4;

/// A session found for a request.
pub(crate) struct Authenticated {
    pub(crate) id: SessionId,
    pub(crate) session: Session,
}

impl App {
    /// The session behind the request's cookie or bearer token, if it is live. Every session
    /// cookie is tried in order (a stale one from another path or domain may come first), at
    /// most [`MAX_SESSION_COOKIES`] of them, then the bearer token.
    pub(crate) async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Authenticated>, StoreError> {
        let now = http_util::unix_now();
        let cookies = cookies::cookie_values(headers, &self.session_cookie)
            .filter_map(SessionId::parse)
            .take(MAX_SESSION_COOKIES);
        for id in cookies {
            if let Some(session) = self.store.get(&id, now).await? {
                return Ok(Some(Authenticated { id, session }));
            }
        }
        if let Some(id) = cookies::bearer_token(headers).and_then(SessionId::parse) {
            if let Some(session) = self.store.get(&id, now).await? {
                return Ok(Some(Authenticated { id, session }));
            }
        }
        Ok(None)
    }

    /// 302 to login for browser navigations, 401 JSON for everything else.
    pub(crate) fn unauthenticated(&self, req: &Request<Incoming>, peer: &Peer) -> Response<Body> {
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
        let mut r = http_util::unauthenticated_json(&self.login_url(&rd));
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wxgate\""),
        );
        r
    }

    /// Where to return after login for a request for `pq`: the path itself on public_url's
    /// host, an absolute URL on a host of `access.redirect_hosts` (multi-site), else the path.
    /// The host is `X-Forwarded-Host` from a trusted proxy, else `Host` / `:authority`.
    pub(crate) fn return_target(
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
}
