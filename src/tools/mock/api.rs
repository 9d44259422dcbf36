//! The server-side APIs (`/sns/*`), with injected failures.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};

use super::control::*;
use super::fixtures::{self};
use super::reply::*;
use super::state::*;

pub(super) async fn sns(state: &State, endpoint: &str, q: &Query) -> Resp {
    let (counter, handler): (&AtomicU64, fn(&State, &Query) -> Resp) = match endpoint {
        "oauth2/access_token" => (&state.calls.access_token, sns_access_token),
        "oauth2/refresh_token" => (&state.calls.refresh_token, sns_refresh_token),
        "auth" => (&state.calls.auth, sns_auth),
        "userinfo" => (&state.calls.userinfo, sns_userinfo),
        "jscode2session" => (&state.calls.jscode2session, sns_jscode2session),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    };
    Calls::bump(counter);
    if let Some((mode, delay)) = state.take_failure() {
        match mode {
            FailMode::Busy => return api_error(-1, "system error"),
            FailMode::RateLimit => {
                return api_error(45011, "api minute-quota reach limit  mustslower  retry next minute")
            }
            FailMode::Garbage => {
                return respond(
                    StatusCode::OK,
                    "text/html",
                    "<html><head><title>502 Bad Gateway</title></head><body>\
                     <center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                )
            }
            FailMode::Status500 => {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/html",
                    "<html><body><h1>500 Internal Server Error</h1></body></html>",
                )
            }
            FailMode::EmptyGbk => return respond(StatusCode::OK, "text/html; charset=gbk", ""),
            FailMode::Slow => tokio::time::sleep(delay).await,
        }
    }
    handler(state, q)
}

/// appid / secret checks shared by the code exchanges.
pub(super) fn check_app(q: &Query) -> Result<&'static App, ApiErr> {
    let appid = param(q, "appid").ok_or(ApiErr(41002, "appid missing"))?;
    let app = find_app(appid).ok_or(ApiErr(40013, "invalid appid"))?;
    let secret = param(q, "secret").ok_or(ApiErr(41004, "appsecret missing"))?;
    if secret != app.secret {
        return Err(ApiErr(40125, "invalid appsecret"));
    }
    Ok(app)
}

pub(super) fn check_grant(q: &Query, expected: &str) -> Result<(), ApiErr> {
    if param(q, "grant_type") == Some(expected) {
        Ok(())
    } else {
        Err(ApiErr(40002, "invalid grant_type"))
    }
}

pub(super) fn sns_access_token(state: &State, q: &Query) -> Resp {
    sns_access_token_inner(state, q).unwrap_or_else(Resp::from)
}

pub(super) fn sns_access_token_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let app = check_app(q)?;
        if app.kind == AppKind::MiniProgram {
            return Err(ApiErr(40013, "invalid appid, use jscode2session"));
        }
        let code = param(q, "code").ok_or(ApiErr(41008, "missing code"))?;
        check_grant(q, "authorization_code")?;
        let entry = state.take_code(app, code)?;
        let body = state.issue_tokens(
            TokenEntry {
                app,
                user: entry.user,
                scope: entry.scope,
                openid: fixtures::openid(app.appid, entry.user.key),
            },
            None,
        );
        Ok(api_ok(body.to_string()))
    }
}

pub(super) fn sns_refresh_token(state: &State, q: &Query) -> Resp {
    sns_refresh_token_inner(state, q).unwrap_or_else(Resp::from)
}

pub(super) fn sns_refresh_token_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let appid = param(q, "appid").ok_or(ApiErr(41002, "appid missing"))?;
        let app = find_app(appid).ok_or(ApiErr(40013, "invalid appid"))?;
        check_grant(q, "refresh_token")?;
        let rt = param(q, "refresh_token").ok_or(ApiErr(41003, "refresh_token missing"))?;
        let entry = state
            .refresh_tokens
            .get(rt)
            .filter(|e| e.app.appid == app.appid)
            .ok_or(ApiErr(40030, "invalid refresh_token"))?;
        let body = state.issue_tokens(
            TokenEntry {
                app: entry.app,
                user: entry.user,
                scope: entry.scope,
                openid: entry.openid.clone(),
            },
            Some(rt.to_string()),
        );
        Ok(api_ok(body.to_string()))
    }
}

pub(super) fn check_access_token(state: &State, q: &Query) -> Result<Arc<TokenEntry>, ApiErr> {
    let token = param(q, "access_token").ok_or(ApiErr(41001, "access_token missing"))?;
    if state.grants.is_expired(token) {
        return Err(ApiErr(42001, "access_token expired"));
    }
    let entry = state.access_tokens.get(token).ok_or(ApiErr(
        40001,
        "invalid credential, access_token is invalid or not latest",
    ))?;
    let openid = param(q, "openid").ok_or(ApiErr(41009, "missing openid"))?;
    if openid != entry.openid {
        return Err(ApiErr(40003, "invalid openid"));
    }
    Ok(entry)
}

pub(super) fn sns_auth(state: &State, q: &Query) -> Resp {
    match check_access_token(state, q) {
        Ok(_) => api_ok(json!({ "errcode": 0, "errmsg": "ok" }).to_string()),
        Err(e) => e.into(),
    }
}

pub(super) fn sns_userinfo(state: &State, q: &Query) -> Resp {
    let entry = match check_access_token(state, q) {
        Ok(e) => e,
        Err(e) => return e.into(),
    };
    if entry.scope == SNSAPI_BASE {
        return api_error(48001, "api unauthorized");
    }
    api_ok(userinfo_json(&entry.openid, entry.user))
}

pub(super) fn sns_jscode2session(state: &State, q: &Query) -> Resp {
    sns_jscode2session_inner(state, q).unwrap_or_else(Resp::from)
}

pub(super) fn sns_jscode2session_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let app = check_app(q)?;
        if app.kind != AppKind::MiniProgram {
            return Err(ApiErr(40013, "invalid appid"));
        }
        let code = param(q, "js_code").ok_or(ApiErr(41008, "missing code"))?;
        check_grant(q, "authorization_code")?;
        let entry = state.take_code(app, code)?;
        let session_key = entry
            .session_key
            .clone()
            .unwrap_or_else(|| random_session_key().0);
        let mut body = json!({
            "session_key": session_key,
            "openid": fixtures::openid(app.appid, entry.user.key),
        });
        if let Some(u) = entry.user.unionid.filter(|_| entry.unionid_in_response) {
            body["unionid"] = Value::from(u);
        }
        Ok(api_ok(body.to_string()))
    }
}
