//! Forward-auth for a proxy in front (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `forwardAuth`): `/auth` answers 202 with the identity headers or 401 with the login URL, never
//! a redirect; and `/userinfo`, the session's identity as JSON.

use crate::common::paths::check_path;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::context::Ctx;
use super::urls;
use crate::common::error::GatewayError;
use crate::common::http_util::{self, Body};

pub(super) async fn auth(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
    peer: &crate::proxy::Peer,
) -> Result<Response<Body>, GatewayError> {
    let Some(a) = cx.authenticate().await? else {
        let uri = forwarded_uri(req.headers()).unwrap_or_else(|| "/".into());
        let rd = urls::return_target(
            cx.settings,
            req.headers(),
            req.uri().authority(),
            &uri,
            peer.trusted,
        );
        return Ok(http_util::unauthenticated_json(&urls::login_url(
            cx.settings,
            &rd,
        )));
    };
    if let Some(reason) = cx.access.refusal(&a.session) {
        let uri = forwarded_uri(req.headers()).unwrap_or_else(|| "/".into());
        return Err(super::audit::refusal(cx, &a.session, reason, &uri));
    }
    let mut r = http_util::respond(StatusCode::ACCEPTED, http_util::TEXT, "");
    cx.providers
        .insert_identity(r.headers_mut(), &a.session, cx.sign_secret);
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
        .filter(|s| check_path(s.split(['?', '#']).next().unwrap_or("")).is_ok())
        .map(str::to_string)
}

pub(super) async fn userinfo(cx: &Ctx<'_>) -> Result<Response<Body>, GatewayError> {
    let Some(a) = cx.authenticate().await? else {
        return Ok(http_util::unauthenticated_json(&urls::login_url(
            cx.settings,
            "/",
        )));
    };
    let s = &a.session;
    let mut info = json!({
        "openid": s.openid(),
        "unionid": s.unionid(),
        "appid": s.appid(),
        "source": cx.providers.kind_name(s.origin()),
        "nickname": s.nickname(),
        "avatar": s.avatar(),
        "expires_at": s.expires_at(),
        "user_id": s.user_id(),
    });
    if let (Some(p), Some(map)) = (cx.providers.get(s.origin()), info.as_object_mut()) {
        p.describe(s, map);
    }
    Ok(http_util::json(StatusCode::OK, &info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_uri_only_paths_the_gateway_serves() {
        let mut h = http::HeaderMap::new();
        assert_eq!(forwarded_uri(&h), None);
        h.insert("x-forwarded-uri", "/a/b?c=..".parse().unwrap());
        assert_eq!(forwarded_uri(&h).as_deref(), Some("/a/b?c=.."));
        h.insert("x-original-uri", "/x/../admin".parse().unwrap());
        assert_eq!(forwarded_uri(&h), None);
        h.insert("x-original-uri", "https://evil/".parse().unwrap());
        assert_eq!(forwarded_uri(&h), None);
    }
}
