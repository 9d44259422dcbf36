//! Phase "authenticate": the live session behind a request's cookie or bearer token, and the
//! answer when there is none (302 to login for browser navigations, 401 JSON for the rest).

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::cookies;
use crate::common::http_util::{self, Body};
use crate::endpoints::context::{Ctx, CtxSource};
use crate::pipeline::app::App;
use crate::proxy::Peer;
use crate::session::{Authenticated, Credentials, SessionId, StoreError, MAX_SESSION_COOKIES};

impl App {
    /// The session ids the request presents: every session cookie in order (a stale one from
    /// another path or domain may come first), at most [`MAX_SESSION_COOKIES`] of them, then
    /// the bearer token.
    pub(crate) fn credentials(&self, headers: &http::HeaderMap) -> Credentials {
        Credentials::new(
            cookies::cookie_values(headers, &self.session_cookie)
                .filter_map(SessionId::parse)
                .take(MAX_SESSION_COOKIES),
            cookies::bearer_token(headers).and_then(SessionId::parse),
        )
    }

    /// The session behind the request's cookie or bearer token, if it is live.
    pub(crate) async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Authenticated>, StoreError> {
        let creds = self.credentials(headers);
        let found =
            crate::session::authenticate(&*self.store, &creds, http_util::unix_now()).await?;
        match &self.revalidator {
            Some(r) => r.vet(&self.store, found).await,
            None => Ok(found),
        }
    }

    /// What the gateway's endpoints get for a request under `prefix`.
    pub(crate) fn endpoint_ctx(&self, headers: &http::HeaderMap, peer: &Peer) -> Ctx<'_> {
        let client_ip = crate::endpoints::rate_limit::client_ip(
            peer.addr.ip(),
            peer.trusted,
            headers,
            &self.settings.trusted_proxies,
        );
        self.ctx(client_ip, self.credentials(headers))
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
        crate::endpoints::urls::return_target(&self.settings, headers, authority, pq, peer.trusted)
    }
}

impl CtxSource for App {
    fn ctx(&self, client_ip: std::net::IpAddr, credentials: Credentials) -> Ctx<'_> {
        Ctx {
            settings: &self.settings,
            store: &self.store,
            providers: &self.providers,
            signer: &self.signer,
            metrics: &self.metrics,
            session_cookie: &self.session_cookie,
            login_cookie: &self.login_cookie,
            sign_secret: self.sign_secret.as_deref(),
            login_limiter: self.login_limiter.as_deref(),
            link: self.link.as_ref(),
            access: &self.access,
            client_ip,
            credentials,
            revalidator: self.revalidator.as_ref(),
            callback_runs: &self.callback_runs,
            source: &self.me,
        }
    }
}
