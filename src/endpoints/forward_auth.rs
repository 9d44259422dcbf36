//! Forward-auth for a proxy in front (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `forwardAuth`): `/auth` answers 202 with the identity headers or 401 with the login URL, never
//! a redirect; and `/userinfo`, the session's identity as JSON.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::urls;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::{self, unix_now, Body};
use crate::pipeline::App;

pub(super) async fn auth(
    app: &App,
    req: &Request<Incoming>,
    peer: &crate::proxy::Peer,
) -> Result<Response<Body>, GatewayError> {
    let Some(a) = app.authenticate(req.headers()).await? else {
        let uri = forwarded_uri(req.headers()).unwrap_or_else(|| "/".into());
        let rd = urls::return_target(
            &app.settings,
            req.headers(),
            req.uri().authority(),
            &uri,
            peer.trusted,
        );
        return Ok(http_util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthenticated", "login_url": urls::login_url(&app.settings, &rd)}),
        ));
    };
    if !app.access.allows_session(&a.session) {
        return Err(LoginError::NotAllowed.into());
    }
    let mut r = http_util::respond(StatusCode::ACCEPTED, http_util::TEXT, "");
    app.providers.insert_identity(
        r.headers_mut(),
        &a.session,
        app.sign_secret.as_deref(),
        unix_now(),
    );
    Ok(r)
}

/// The original URI an auth proxy asked about, when it says (`X-Original-URI`, `X-Forwarded-Uri`).
/// A path the gateway would refuse (dot segments) is no return target: None, so `/`.
fn forwarded_uri(headers: &http::HeaderMap) -> Option<String> {
    ["x-original-uri", "x-forwarded-uri"]
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.starts_with('/'))
        .filter(|s| {
            crate::pipeline::paths::check_path(s.split(['?', '#']).next().unwrap_or("")).is_ok()
        })
        .map(str::to_string)
}

pub(super) async fn userinfo(
    app: &App,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let Some(a) = app.authenticate(req.headers()).await? else {
        return Ok(http_util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthenticated", "login_url": urls::login_url(&app.settings, "/")}),
        ));
    };
    let s = &a.session;
    Ok(http_util::json(
        StatusCode::OK,
        &json!({
            "openid": s.openid(),
            "unionid": s.unionid(),
            "appid": s.appid(),
            "source": app.providers.kind_name(s.origin()),
            "nickname": s.nickname(),
            "avatar": s.avatar(),
            "expires_at": s.expires_at(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_uri_only_plain_paths() {
        let mut h = http::HeaderMap::new();
        assert_eq!(forwarded_uri(&h), None);
        h.insert("x-forwarded-uri", "/a/b?c=1".parse().unwrap());
        assert_eq!(forwarded_uri(&h).as_deref(), Some("/a/b?c=1"));
        h.insert("x-original-uri", "/x/../admin".parse().unwrap());
        assert_eq!(forwarded_uri(&h), None);
        h.insert("x-original-uri", "https://evil/".parse().unwrap());
        assert_eq!(forwarded_uri(&h), None);
    }
}
