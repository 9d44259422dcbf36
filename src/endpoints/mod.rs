//! The gateway's own endpoints under `prefix`: browser login (`/login`, `/callback`,
//! `/logout`), forward-auth (`/auth`), `/userinfo`, the JSON logins of mobile apps and mini
//! programs, and health, readiness and metrics.

pub mod login_state;
pub mod rate_limit;

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use self::login_state::{LoginCookie, LOGIN_TTL_SECS};
use crate::common::cookies;
use crate::common::error::{ApiError, GatewayError, LoginError};
use crate::common::http_util::{self, query_param, unix_now, Body};
use crate::common::redirect::safe_return;
use crate::config::AppConfig;
use crate::pipeline::inject;
use crate::pipeline::App;
use crate::session::{NewSession, PendingLogin, Session, SessionId, SessionStore, Source};

/// `encodeURIComponent`: everything but `A-Za-z0-9-_.!~*'()` is escaped.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Largest JSON body accepted by the login endpoints.
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// Longest authorization `code` passed on to WeChat (theirs are 32 characters): anything
/// longer is refused before a WeChat call is made for it.
pub const MAX_CODE: usize = 256;

/// The endpoints `access.login_rate_per_minute` counts.
fn is_rate_limited_endpoint(sub: &str) -> bool {
    matches!(
        sub,
        "/login" | "/callback" | "/app/login" | "/miniprogram/login"
    )
}

pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    peer: &crate::proxy::Peer,
) -> Response<Body> {
    let sub = &req.uri().path()[app.prefix().len()..];
    let m = req.method();
    let get = m == Method::GET || m == Method::HEAD;
    let json = http_util::wants_json(req.headers());
    if let Some(limiter) = app
        .login_limiter
        .as_ref()
        .filter(|_| is_rate_limited_endpoint(sub))
    {
        let client = crate::endpoints::rate_limit::client_ip(
            peer.addr.ip(),
            peer.trusted,
            req.headers(),
            &app.settings.trusted_proxies,
        );
        if let Err(secs) = limiter.check(client) {
            app.metrics.rate_limited.inc();
            let json_endpoint = matches!(sub, "/app/login" | "/miniprogram/login");
            let json = json || json_endpoint;
            return GatewayError::RateLimited(secs).into_response(json, "");
        }
    }
    let result = match sub {
        "/healthz" if get => Ok(http_util::respond(StatusCode::OK, http_util::TEXT, "ok")),
        "/readyz" if get => Ok(readyz(app).await),
        // With server.metrics_listen, /metrics is served only there.
        "/metrics" if app.settings.metrics_listen.is_some() => Err(LoginError::NotFound.into()),
        "/metrics" if get => {
            if let Some(n) = app.store.session_count() {
                app.metrics.sessions.set(n as i64);
            }
            Ok(http_util::respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.render(),
            ))
        }
        "/login" if get => login(app, &req).await,
        "/callback" if get => callback(app, &req).await,
        "/logout" if get || m == Method::POST => logout(app, &req).await,
        // nginx auth_request keeps the original method: answer any.
        "/auth" => auth(app, &req, peer).await,
        "/userinfo" if get => userinfo(app, &req).await,
        "/app/login" if m == Method::POST => return json_endpoint(app_login(app, req).await),
        "/miniprogram/login" if m == Method::POST => {
            return json_endpoint(mini_login(app, req).await)
        }
        "/healthz" | "/readyz" | "/metrics" | "/login" | "/callback" | "/logout" | "/userinfo"
        | "/app/login" | "/miniprogram/login" => Err(LoginError::MethodNotAllowed.into()),
        _ => Err(LoginError::NotFound.into()),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            let retry = retry_url(app, &req);
            e.log();
            e.into_response(json, &retry)
        }
    }
}

fn json_endpoint(r: Result<Response<Body>, GatewayError>) -> Response<Body> {
    r.unwrap_or_else(|e| {
        e.log();
        e.into_response(true, "")
    })
}

/// Where "sign in again" points: `/login` with the same `rd`, when there is one.
fn retry_url(app: &App, req: &Request<Incoming>) -> String {
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let s = &app.settings;
    app.login_path(&safe_return(&rd, &s.public, &s.raw.access.redirect_hosts))
}

async fn readyz(app: &App) -> Response<Body> {
    match app.store.ping().await {
        Ok(()) => http_util::respond(StatusCode::OK, http_util::TEXT, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            http_util::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                http_util::TEXT,
                "session store unavailable",
            )
        }
    }
}

fn is_wechat_browser(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(USER_AGENT)
        .map(|v| {
            v.as_bytes()
                .windows(b"micromessenger".len())
                .any(|w| w.eq_ignore_ascii_case(b"micromessenger"))
        })
        .unwrap_or(false)
}

fn cookie_header(app: &App, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let mut c = cookie::Cookie::build((name.to_string(), value.to_string()))
        .path(path.to_string())
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(app.settings.public.secure)
        .max_age(cookie::time::Duration::seconds(max_age));
    let domain = &app.settings.raw.session.cookie_domain;
    // Both the session and the login cookie: in a multi-site setup the login may start on
    // one subdomain and come back through public_url's host.
    if !domain.is_empty() {
        c = c.domain(domain.clone());
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// The authorize URL, exactly as WeChat pattern-matches it.
pub fn authorize_url(
    open_base: &str,
    source: Source,
    appid: &str,
    callback: &str,
    scope: &str,
    state: &str,
) -> String {
    let enc = utf8_percent_encode(callback, COMPONENT);
    match source {
        Source::OfficialAccount => format!(
            "{open_base}/connect/oauth2/authorize?appid={appid}&redirect_uri={enc}&response_type=code&scope={scope}&state={state}&connect_redirect=1#wechat_redirect"
        ),
        _ => format!(
            "{open_base}/connect/qrconnect?appid={appid}&redirect_uri={enc}&response_type=code&scope=snsapi_login&state={state}#wechat_redirect"
        ),
    }
}

async fn login(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let s = &app.settings;
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let rd = safe_return(&rd, &s.public, &s.raw.access.redirect_hosts);
    let in_wechat = is_wechat_browser(req);
    let w = &s.raw.wechat;
    let (source, app_cfg) = match (in_wechat, &w.official_account, &w.website) {
        (true, Some(oa), _) => (Source::OfficialAccount, oa),
        (false, _, Some(web)) => (Source::Website, web),
        (false, Some(_), None) => {
            // A PC browser, and only an official account: scan to continue inside WeChat.
            return Ok(crate::common::pages::open_in_wechat(&app.login_url(&rd)));
        }
        (true, None, Some(web)) => (Source::Website, web),
        _ => return Err(LoginError::AppNotConfigured.into()),
    };
    // Always a fresh binding, never the client's: a binding an attacker planted must not
    // sign this login. The browser's newest earlier bindings stay in the cookie, so a login
    // started in another tab can still finish.
    let binding = login_state::random_hex(16);
    let cookie_value = LoginCookie::parse(cookies::find_cookie(req.headers(), &app.login_cookie))
        .with_fresh(&binding);
    let (state, nonce) = app.signer.issue(&binding, unix_now());
    app.store
        .put_pending(
            &nonce,
            PendingLogin { rd, source },
            Duration::from_secs(LOGIN_TTL_SECS),
        )
        .await?;
    let scope = if source == Source::OfficialAccount {
        s.official_scope.as_str()
    } else {
        "snsapi_login"
    };
    let url = authorize_url(
        &s.open_base,
        source,
        &app_cfg.appid,
        &s.callback_url,
        scope,
        &state,
    );
    let mut r = http_util::redirect(&url);
    r.headers_mut().append(
        SET_COOKIE,
        cookie_header(
            app,
            &app.login_cookie,
            &cookie_value,
            app.prefix(),
            LOGIN_TTL_SECS as i64,
        ),
    );
    Ok(r)
}

async fn callback(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let q = req.uri().query();
    let state = query_param(q, "state")
        .filter(|s| !s.is_empty())
        .ok_or(LoginError::MissingState)?;
    let cookie = LoginCookie::parse(cookies::find_cookie(req.headers(), &app.login_cookie));
    // Verified: one of the bindings is this browser's.
    let nonce = app
        .signer
        .verify_any(&state, &cookie.bindings, unix_now())?;
    let Some(pending) = app.store.take_pending(nonce).await? else {
        // WeChat sometimes calls twice: the same browser that finished goes where it meant to.
        if let Some((done, rd)) = &cookie.completed {
            if *done == nonce {
                let s = &app.settings;
                return Ok(http_util::redirect(&safe_return(
                    rd,
                    &s.public,
                    &s.raw.access.redirect_hosts,
                )));
            }
        }
        return Err(LoginError::StateUsed.into());
    };
    // From here on the target is known: "sign in again" returns there.
    let retry = app.login_path(&pending.rd);
    match finish_login(app, q, nonce, &cookie, pending).await {
        Ok(r) => Ok(r),
        Err(e) => {
            e.log();
            Ok(e.into_response(false, &retry))
        }
    }
}

/// The callback once its state checked out: code → session → redirect.
async fn finish_login(
    app: &App,
    q: Option<&str>,
    nonce: &str,
    login_cookie: &LoginCookie<'_>,
    pending: PendingLogin,
) -> Result<Response<Body>, GatewayError> {
    let source = pending.source;
    let Some(code) = query_param(q, "code").filter(|c| !c.is_empty()) else {
        app.metrics.login(source.as_str(), "refused");
        return Err(LoginError::Refused.into());
    };
    if code.len() > MAX_CODE {
        app.metrics.login(source.as_str(), "invalid_code");
        return Err(LoginError::BadCode.into());
    }
    let w = &app.settings.raw.wechat;
    let cfg = match source {
        Source::OfficialAccount => w.official_account.as_ref(),
        _ => w.website.as_ref(),
    }
    .ok_or(LoginError::AppNotConfigured)?;
    let session = exchange_and_fetch(app, cfg, &code, source)
        .await
        .inspect_err(|_| app.metrics.login(source.as_str(), "wechat_error"))?;
    let (id, cookie) = start_session(app, session).await?;
    let mut r = http_util::redirect(&pending.rd);
    r.headers_mut().append(SET_COOKIE, cookie);
    let done = login_cookie.completed_value(nonce, &pending.rd);
    let ttl = login_state::COMPLETED_TTL_SECS as i64;
    r.headers_mut().append(
        SET_COOKIE,
        cookie_header(app, &app.login_cookie, &done, app.prefix(), ttl),
    );
    tracing::info!(source = source.as_str(), session = %id.fingerprint(), "login");
    Ok(r)
}

/// Code → token → userinfo (when the scope allows), as a session record (source to be set).
async fn exchange_and_fetch(
    app: &App,
    cfg: &AppConfig,
    code: &str,
    source: Source,
) -> Result<Session, GatewayError> {
    let tok = app
        .wechat
        .exchange_code(&cfg.appid, &cfg.secret, code)
        .await?;
    let wants_info = tok.scope.contains("snsapi_userinfo") || tok.scope.contains("snsapi_login");
    let (nickname, avatar, info_union) = if wants_info {
        let info = app.wechat.userinfo(&tok.access_token, &tok.openid).await?;
        (info.nickname, info.headimgurl, info.unionid)
    } else {
        (String::new(), String::new(), None)
    };
    let now = unix_now();
    let unionid = info_union.or(tok.unionid).filter(|u| !u.is_empty());
    Ok(Session::new(&NewSession {
        openid: &tok.openid,
        unionid: unionid.as_deref(),
        appid: &cfg.appid,
        source,
        nickname: &nickname,
        avatar: &avatar,
        created_at: now,
        expires_at: now + app.settings.raw.session.ttl_secs,
        session_key: None,
    }))
}

/// Check access, store the session under a new id, and build its cookie.
async fn start_session(app: &App, s: Session) -> Result<(SessionId, HeaderValue), GatewayError> {
    let source = s.source().as_str();
    if !app.access.allows_session(&s) {
        app.metrics.login(source, "forbidden");
        tracing::info!(source, "login refused by access rules");
        return Err(LoginError::NotAllowed.into());
    }
    let id = SessionId::random();
    app.store.insert(id, s).await?;
    app.metrics.login(source, "ok");
    let ttl = app.settings.raw.session.ttl_secs as i64;
    Ok((
        id,
        cookie_header(app, &app.session_cookie, &id.encode(), "/", ttl),
    ))
}

async fn logout(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    if let Some(a) = app.authenticate(req.headers()).await? {
        app.store.remove(&a.id).await?;
        tracing::info!(session = %a.id.fingerprint(), "logout");
    }
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let rd = safe_return(
        &rd,
        &app.settings.public,
        &app.settings.raw.access.redirect_hosts,
    );
    let mut r = http_util::redirect(&rd);
    r.headers_mut().append(
        SET_COOKIE,
        cookie_header(app, &app.session_cookie, "", "/", 0),
    );
    Ok(r)
}

/// nginx `auth_request` / Caddy `forward_auth` / Traefik `forwardAuth`: never redirects.
async fn auth(
    app: &App,
    req: &Request<Incoming>,
    peer: &crate::proxy::Peer,
) -> Result<Response<Body>, GatewayError> {
    let Some(a) = app.authenticate(req.headers()).await? else {
        let uri = forwarded_uri(req).unwrap_or_else(|| "/".into());
        let rd = app.return_target(req.headers(), req.uri().authority(), &uri, peer);
        return Ok(http_util::unauthenticated_json(&app.login_url(&rd)));
    };
    if !app.access.allows_session(&a.session) {
        return Err(LoginError::NotAllowed.into());
    }
    let mut r = http_util::respond(StatusCode::ACCEPTED, http_util::TEXT, "");
    inject::insert_identity(
        r.headers_mut(),
        &a.session,
        app.sign_secret.as_deref(),
        unix_now(),
    );
    Ok(r)
}

/// The original URI an auth proxy asked about, when it says (`X-Original-URI`, `X-Forwarded-Uri`).
/// A path the gateway would refuse (dot segments) is no return target: None, so `/`.
fn forwarded_uri(req: &Request<Incoming>) -> Option<String> {
    ["x-original-uri", "x-forwarded-uri"]
        .iter()
        .find_map(|h| req.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.starts_with('/'))
        .filter(|s| {
            crate::common::paths::check_path(s.split(['?', '#']).next().unwrap_or("")).is_ok()
        })
        .map(str::to_string)
}

async fn userinfo(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let Some(a) = app.authenticate(req.headers()).await? else {
        return Ok(http_util::unauthenticated_json(&app.login_url("/")));
    };
    let s = &a.session;
    Ok(http_util::json(
        StatusCode::OK,
        &json!({
            "openid": s.openid(),
            "unionid": s.unionid(),
            "appid": s.appid(),
            "source": s.source().as_str(),
            "nickname": s.nickname(),
            "avatar": s.avatar(),
            "expires_at": s.expires_at(),
        }),
    ))
}

// ---- JSON logins: mobile app and mini program ----

async fn read_json(
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Result<serde_json::Map<String, Value>, GatewayError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType.into());
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_JSON_BODY);
    // The whole body within body_timeout_ms: a client that sends 5 of its 1000 bytes does not
    // keep the connection.
    let collected = tokio::time::timeout(body_timeout, limited.collect())
        .await
        .map_err(|_| ApiError::BodyTimeout)?;
    let bytes: Bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge(MAX_JSON_BODY).into())
        }
        Err(_) => {
            return Err(ApiError::BadRequest("could not read the request body".into()).into())
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::BadRequest("body must be a JSON object".into()).into()),
        Err(_) => Err(ApiError::BadRequest("body is not valid JSON".into()).into()),
    }
}

fn string_field<'a>(
    m: &'a serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) if required => {
            Err(ApiError::BadRequest(format!("field `{key}` is required")))
        }
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(ApiError::BadRequest(format!(
            "field `{key}` must not be empty"
        ))),
        Some(Value::String(s)) if s.len() > max_len(key) => {
            Err(ApiError::BadRequest(format!("field `{key}` is too long")))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "field `{key}` must be a string"
        ))),
    }
}

/// Longest value of a JSON login field: `code` is WeChat's (32 characters); the others
/// (`encryptedData`, `iv`) 4 KiB, and a wrong one is the one decrypt answer, not this.
fn max_len(key: &str) -> usize {
    if key == "code" {
        MAX_CODE
    } else {
        4096
    }
}

fn body_timeout(app: &App) -> Duration {
    Duration::from_millis(app.settings.raw.server.body_timeout_ms)
}

fn token_response(
    app: &App,
    id: &SessionId,
    s_openid: &str,
    s_unionid: Option<&str>,
) -> Response<Body> {
    http_util::json(
        StatusCode::OK,
        &json!({
            "token": id.encode(),
            "expires_in": app.settings.raw.session.ttl_secs,
            "openid": s_openid,
            "unionid": s_unionid,
        }),
    )
}

async fn app_login(app: &App, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let cfg = app
        .settings
        .raw
        .wechat
        .mobile_app
        .clone()
        .ok_or(ApiError::NotConfigured("mobile app"))?;
    let body = read_json(req, body_timeout(app)).await?;
    let code = string_field(&body, "code", true)?.unwrap_or_default();
    let session = exchange_and_fetch(app, &cfg, code, Source::MobileApp)
        .await
        .inspect_err(|_| app.metrics.login("mobile_app", "wechat_error"))?;
    let (openid, unionid) = (
        session.openid().to_string(),
        session.unionid().map(str::to_string),
    );
    let (id, _) = start_session(app, session).await?;
    tracing::info!(source = "mobile_app", session = %id.fingerprint(), "login");
    Ok(token_response(app, &id, &openid, unionid.as_deref()))
}

async fn mini_login(app: &App, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
    let cfg = app
        .settings
        .raw
        .wechat
        .mini_program
        .clone()
        .ok_or(ApiError::NotConfigured("mini program"))?;
    let body = read_json(req, body_timeout(app)).await?;
    let code = string_field(&body, "code", true)?.unwrap_or_default();
    let enc = string_field(&body, "encryptedData", false)?;
    let iv = string_field(&body, "iv", false)?;
    let enc_iv = match (enc, iv) {
        (Some(e), Some(i)) => Some((e, i)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(
                ApiError::BadRequest("field `iv` is required with `encryptedData`".into()).into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                ApiError::BadRequest("field `encryptedData` is required with `iv`".into()).into(),
            )
        }
    };
    let js = app
        .wechat
        .jscode2session(&cfg.appid, &cfg.secret, code)
        .await
        .inspect_err(|_| app.metrics.login("mini_program", "wechat_error"))?;
    let (mut nickname, mut avatar, mut data_union) = (String::new(), String::new(), None);
    if let Some((enc, iv)) = enc_iv {
        let data = crate::providers::wechat::crypto::decrypt_and_verify(
            &js.session_key,
            enc,
            iv,
            &cfg.appid,
        )?;
        if data.open_id.as_deref().is_some_and(|o| o != js.openid) {
            return Err(crate::providers::wechat::crypto::CryptoError::OtherUser.into());
        }
        nickname = data.nick_name.unwrap_or_default();
        avatar = data.avatar_url.unwrap_or_default();
        data_union = data.union_id;
    }
    let now = unix_now();
    let unionid = js.unionid.or(data_union).filter(|u| !u.is_empty());
    let session = Session::new(&NewSession {
        openid: &js.openid,
        unionid: unionid.as_deref(),
        appid: &cfg.appid,
        source: Source::MiniProgram,
        nickname: &nickname,
        avatar: &avatar,
        created_at: now,
        expires_at: now + app.settings.raw.session.ttl_secs,
        session_key: Some(&js.session_key),
    });
    let (openid, unionid) = (
        session.openid().to_string(),
        session.unionid().map(str::to_string),
    );
    let (id, _) = start_session(app, session).await?;
    tracing::info!(source = "mini_program", session = %id.fingerprint(), "login");
    Ok(token_response(app, &id, &openid, unionid.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_urls_exact() {
        let cb = "https://app.example.com/_wxgate/callback";
        assert_eq!(
            authorize_url("https://open.weixin.qq.com", Source::Website, "wxA", cb, "snsapi_login", "S1"),
            "https://open.weixin.qq.com/connect/qrconnect?appid=wxA&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_login&state=S1#wechat_redirect"
        );
        assert_eq!(
            authorize_url("https://open.weixin.qq.com", Source::OfficialAccount, "wxB", cb, "snsapi_base", "S2"),
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxB&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_base&state=S2&connect_redirect=1#wechat_redirect"
        );
    }
}
