//! The gateway's own endpoints under `prefix`, a file per concern: `browser_login.rs`
//! (`/login`, `/callback`, `/logout`), `forward_auth.rs` (`/auth`, `/userinfo`),
//! `json_login.rs` (the JSON logins of mobile apps and mini programs), `link_hook.rs`,
//! `link_ticket.rs` and `link_complete.rs` (account linking: the call to the app after every
//! login, the ticket, the resume), `miniprogram_phone.rs` (a mini program's phone number),
//! `ops.rs` (health,
//! readiness, metrics); `login.rs` (what every login shares), `cookies.rs`, `urls.rs` (login
//! URLs, return targets), `login_state.rs` (signed login state, login cookie) and
//! `rate_limit.rs` (per-client login rate). This file dispatches.
//!
//! Logins go through the provider registry (`crate::providers`), never to a provider directly.

mod audit;
mod browser_login;
pub(crate) mod callback_runs;
mod choose_page;
pub(crate) mod context;
mod cookies;
mod forward_auth;
mod json_login;
mod link_complete;
pub(crate) mod link_hook;
mod link_ticket;
mod login;
pub mod login_state;
mod miniprogram_phone;
mod mobile_page;
mod ops;
pub(crate) mod rate_limit;
pub(crate) mod revalidate;
pub(crate) mod urls;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use self::context::Ctx;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::{self, query_param, Body};
use crate::common::redirect::safe_return;
pub use crate::common::redirect::COMPONENT;
use crate::providers::JsonEndpoint;

pub(crate) use self::audit::refusal;

/// The endpoints `access.login_rate_per_minute` counts.
fn is_rate_limited_endpoint(sub: &str) -> bool {
    matches!(
        sub,
        "/login" | "/callback" | "/app/login" | "/miniprogram/login" | "/link/complete"
    )
}

pub(crate) async fn handle(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    peer: &crate::proxy::Peer,
) -> Response<Body> {
    let sub = &req.uri().path()[cx.settings.prefix().len()..];
    let m = req.method();
    let get = m == Method::GET || m == Method::HEAD;
    let json = http_util::wants_json(req.headers());
    if let Some(limiter) = cx.login_limiter.filter(|_| is_rate_limited_endpoint(sub)) {
        let client = rate_limit::client_ip(
            peer.addr.ip(),
            peer.trusted,
            req.headers(),
            &cx.settings.trusted_proxies,
        );
        if let Err(secs) = limiter.check(client) {
            cx.metrics.rate_limited.inc();
            let json_endpoint = matches!(sub, "/app/login" | "/miniprogram/login")
                || (sub == "/link/complete" && m == Method::POST);
            let json = json || json_endpoint;
            return GatewayError::RateLimited(secs).into_response(json, "");
        }
    }
    let result = match sub {
        "/healthz" if get => Ok(ops::healthz()),
        "/readyz" if get => Ok(ops::readyz(cx).await),
        // With server.metrics_listen, /metrics is served only there.
        "/metrics" if cx.settings.metrics_listen.is_some() => Err(LoginError::NotFound.into()),
        "/metrics" if get => Ok(ops::metrics(cx)),
        "/login" if get => browser_login::login(cx, &req).await,
        "/callback" if get => browser_login::callback(cx, &req).await,
        "/logout" if get || m == Method::POST => browser_login::logout(cx, &req).await,
        // nginx auth_request keeps the original method: answer any.
        "/auth" => forward_auth::auth(cx, &req, peer).await,
        "/userinfo" if get => forward_auth::userinfo(cx).await,
        "/app/login" if m == Method::POST => {
            return json_endpoint(json_login::login(cx, req, JsonEndpoint::MobileApp).await)
        }
        "/miniprogram/login" if m == Method::POST => {
            return json_endpoint(json_login::login(cx, req, JsonEndpoint::MiniProgram).await)
        }
        "/miniprogram/phone" if m == Method::POST => {
            return json_endpoint(miniprogram_phone::phone(cx, req).await)
        }
        "/link/complete" if get => link_complete::complete_get(cx, &req).await,
        "/link/complete" if m == Method::POST => {
            return json_endpoint(link_complete::complete_post(cx, req).await)
        }
        _ => match allowed_methods(sub) {
            Some(allow) => {
                // A browser's pages answer in HTML; the JSON endpoints (and the probes) in JSON.
                let json = json || !matches!(sub, "/login" | "/callback" | "/logout");
                let e = GatewayError::from(LoginError::MethodNotAllowed);
                e.log();
                let mut r = e.into_response(json, "");
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                return r;
            }
            None => Err(LoginError::NotFound.into()),
        },
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            let retry = retry_url(cx, &req);
            e.log();
            e.into_response(json, &retry)
        }
    }
}

/// The `Allow` header of an endpoint (405 answers); None: no such endpoint.
fn allowed_methods(sub: &str) -> Option<&'static str> {
    Some(match sub {
        "/healthz" | "/readyz" | "/metrics" | "/login" | "/callback" | "/userinfo" => "GET, HEAD",
        "/logout" => "GET, HEAD, POST",
        "/app/login" | "/miniprogram/login" | "/miniprogram/phone" => "POST",
        "/link/complete" => "GET, HEAD, POST",
        _ => return None,
    })
}

fn json_endpoint(r: Result<Response<Body>, GatewayError>) -> Response<Body> {
    r.unwrap_or_else(|e| {
        e.log();
        e.into_response(true, "")
    })
}

/// Where "sign in again" points: `/login` with the same `rd`, when there is one.
fn retry_url(cx: &Ctx<'_>, req: &Request<Incoming>) -> String {
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let s = cx.settings;
    urls::login_path(
        s.prefix(),
        &safe_return(&rd, &s.public, &s.access.redirect_hosts),
    )
}
