//! `POST /miniprogram/phone`: the bearer token of a mini-program session and `{"code"}` from
//! `getPhoneNumber` → the provider's phone lookup → 200 `{"phone", "pure_phone",
//! "country_code"}`, and the phone (E.164) joins the session (`X-WeChat-Phone`).
//!
//! With `[link]` on, the phone also joins the link call: the app's hook is called again with
//! it, as after a login, because the phone is what most apps bind accounts by. `{"user_id"}`:
//! the session carries it (replacing an earlier one). `{"bind_url"}`: the answer adds
//! `"bind_required": true` and a ticket, which `POST /link/complete` turns into a new token
//! (this session keeps going without the phone meanwhile). 403: the app refused this user, and
//! the session ends. No usable answer: 503 and the session stays as it was (without the phone;
//! the client asks `getPhoneNumber` again).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::Ctx;
use super::json_login::read_json;
use super::link_hook::{refused, Subject};
use super::login::{linked, Linked, Via, MAX_CODE};
use super::urls;
use crate::common::error::{ApiError, GatewayError};
use crate::common::http_util::{self, Body};
use crate::providers::Identity;
use crate::session::SessionStore;

#[derive(Debug, Deserialize)]
struct PhoneBody {
    #[serde(default)]
    code: Value,
}

/// The `code` field: a non-empty string of at most [`MAX_CODE`] bytes.
fn code_of(b: &PhoneBody) -> Result<&str, ApiError> {
    match &b.code {
        Value::Null => Err(ApiError::BadRequest("field `code` is required".into())),
        Value::String(s) if s.is_empty() => Err(ApiError::BadRequest(
            "field `code` must not be empty".into(),
        )),
        Value::String(s) if s.len() > MAX_CODE => {
            Err(ApiError::BadRequest("field `code` is too long".into()))
        }
        Value::String(s) => Ok(s),
        _ => Err(ApiError::BadRequest("field `code` must be a string".into())),
    }
}

pub(super) async fn phone(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let Some(a) = cx.authenticate().await? else {
        return Ok(http_util::unauthenticated_json(&urls::login_url(
            cx.settings,
            "/",
        )));
    };
    let origin = a.session.origin();
    let provider = cx.providers.get(origin);
    let body: PhoneBody = read_json(req, cx.settings.server.body_timeout).await?;
    let code = code_of(&body)?;
    let lookup = provider
        .and_then(|p| p.phone_number(origin.kind, code))
        .ok_or_else(|| {
            ApiError::BadRequest("phone numbers need the token of a mini-program session".into())
        })?;
    let number = lookup.await?;
    let e164 = number.e164();
    let mut answer = json!({
        "phone": number.phone,
        "pure_phone": number.pure_phone,
        "country_code": number.country_code,
    });
    let mut user_id = a.session.user_id().map(str::to_string);
    if let Some(link) = cx.link {
        let s = &a.session;
        let identity = Identity {
            origin,
            openid: s.openid().to_string(),
            unionid: s.unionid().map(str::to_string),
            appid: s.appid().to_string(),
            nickname: s.nickname().to_string(),
            avatar: s.avatar().to_string(),
            grant: None,
        };
        let source = cx.providers.kind_name(origin);
        let decision = link
            .call(&Subject::of(&identity, source, Some(&e164)))
            .await?;
        match linked(cx, &identity, Some(&e164), Via::Json, decision).await? {
            Linked::UserId(u) => user_id = Some(u),
            Linked::Bind { ticket, .. } => {
                answer["bind_required"] = Value::Bool(true);
                answer["ticket"] = Value::from(ticket);
                return Ok(http_util::json(StatusCode::OK, &answer));
            }
            Linked::Refused(message) => {
                cx.store.remove(&a.id).await?;
                tracing::info!(source, session = %a.id.fingerprint(), "session ended: the app refused it with the phone");
                return Ok(refused(true, &message));
            }
        }
    }
    let updated = a.session.with_link(user_id.as_deref(), Some(&e164));
    // Only onto the session still there: a logout during the calls above stays a logout.
    if !cx.store.replace(a.id, updated).await? {
        tracing::info!(session = %a.id.fingerprint(), "session ended while its phone number was looked up");
        return Ok(http_util::unauthenticated_json(&urls::login_url(
            cx.settings,
            "/",
        )));
    }
    if let Some(u) = user_id {
        answer["user_id"] = Value::from(u);
    }
    tracing::info!(session = %a.id.fingerprint(), "phone number joined the session");
    Ok(http_util::json(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Result<String, String> {
        let b: PhoneBody = serde_json::from_str(body).map_err(|e| e.to_string())?;
        code_of(&b).map(str::to_string).map_err(|e| e.to_string())
    }

    #[test]
    fn codes() {
        assert_eq!(code(r#"{"code":"abc"}"#), Ok("abc".into()));
        assert_eq!(code(r#"{}"#).unwrap_err(), "field `code` is required");
        assert_eq!(
            code(r#"{"code":""}"#).unwrap_err(),
            "field `code` must not be empty"
        );
        assert_eq!(
            code(r#"{"code":5}"#).unwrap_err(),
            "field `code` must be a string"
        );
        let long = format!(r#"{{"code":"{}"}}"#, "c".repeat(MAX_CODE + 1));
        assert_eq!(code(&long).unwrap_err(), "field `code` is too long");
    }
}
