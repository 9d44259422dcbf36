//! The JSON logins: `POST /app/login` (mobile app: `{"code"}`) and `POST /miniprogram/login`
//! (mini program: `{"code", "encryptedData"?, "iv"?}`) → `{"token", "expires_in", "openid",
//! "unionid"}`. Bodies are read within `server.body_timeout_ms`, at most [`MAX_JSON_BODY`]
//! bytes, and checked field by field with the messages clients see.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::Ctx;
use super::login::{finish, provider_failed, Finished, Via, MAX_CODE};
use crate::common::error::{ApiError, GatewayError};
use crate::common::http_util::{self, Body};
use crate::providers::{JsonCredentials, JsonEndpoint};
use crate::session::{Session, SessionId};

/// Largest JSON body accepted by the login endpoints.
pub(crate) const MAX_JSON_BODY: usize = 16 * 1024;

/// One field of a login body as sent: absent (or `null`), a string, or anything else.
#[derive(Debug, Default, PartialEq, Eq)]
enum Input {
    #[default]
    Missing,
    Text(String),
    NotText,
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Input::Missing,
            Value::String(s) => Input::Text(s),
            _ => Input::NotText,
        })
    }
}

/// `POST /app/login`.
#[derive(Debug, Deserialize)]
struct AppLoginBody {
    #[serde(default)]
    code: Input,
}

/// `POST /miniprogram/login`.
#[derive(Debug, Deserialize)]
struct MiniLoginBody {
    #[serde(default)]
    code: Input,
    #[serde(default, rename = "encryptedData")]
    encrypted_data: Input,
    #[serde(default)]
    iv: Input,
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

/// A field checked: present when `required`, a non-empty string, not too long.
fn string_field<'a>(v: &'a Input, key: &str, required: bool) -> Result<Option<&'a str>, ApiError> {
    match v {
        Input::Missing if required => {
            Err(ApiError::BadRequest(format!("field `{key}` is required")))
        }
        Input::Missing => Ok(None),
        Input::Text(s) if s.is_empty() => Err(ApiError::BadRequest(format!(
            "field `{key}` must not be empty"
        ))),
        Input::Text(s) if s.len() > max_len(key) => {
            Err(ApiError::BadRequest(format!("field `{key}` is too long")))
        }
        Input::Text(s) => Ok(Some(s)),
        Input::NotText => Err(ApiError::BadRequest(format!(
            "field `{key}` must be a string"
        ))),
    }
}

/// The body as a JSON object, then as `T`.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    body_timeout: Duration,
) -> Result<T, GatewayError> {
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
    parse_body(&bytes).map_err(Into::into)
}

/// Bytes → a JSON object (the last of duplicate keys wins) → `T`.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => serde_json::from_value(v)
            .map_err(|_| ApiError::BadRequest("body is not valid JSON".into())),
        Ok(_) => Err(ApiError::BadRequest("body must be a JSON object".into())),
        Err(_) => Err(ApiError::BadRequest("body is not valid JSON".into())),
    }
}

fn body_timeout(cx: &Ctx<'_>) -> Duration {
    cx.settings.server.body_timeout
}

/// `{"token", "expires_in", "openid", "unionid"}`, and `user_id` when account linking gave one.
pub(super) fn token_response(cx: &Ctx<'_>, id: &SessionId, s: &Session) -> Response<Body> {
    let mut v = json!({
        "token": id.encode(),
        "expires_in": cx.settings.session.ttl.as_secs(),
        "openid": s.openid(),
        "unionid": s.unionid(),
    });
    if let Some(u) = s.user_id() {
        v["user_id"] = Value::from(u);
    }
    http_util::json(StatusCode::OK, &v)
}

/// A JSON login body: its fields checked into credentials.
trait LoginBody: serde::de::DeserializeOwned + Send {
    fn credentials(&self) -> Result<JsonCredentials<'_>, ApiError>;
}

impl LoginBody for AppLoginBody {
    fn credentials(&self) -> Result<JsonCredentials<'_>, ApiError> {
        Ok(JsonCredentials {
            code: string_field(&self.code, "code", true)?.unwrap_or_default(),
            user_data: None,
        })
    }
}

impl LoginBody for MiniLoginBody {
    fn credentials(&self) -> Result<JsonCredentials<'_>, ApiError> {
        let code = string_field(&self.code, "code", true)?.unwrap_or_default();
        let enc = string_field(&self.encrypted_data, "encryptedData", false)?;
        let iv = string_field(&self.iv, "iv", false)?;
        let user_data = match (enc, iv) {
            (Some(e), Some(i)) => Some((e, i)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ApiError::BadRequest(
                    "field `iv` is required with `encryptedData`".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ApiError::BadRequest(
                    "field `encryptedData` is required with `iv`".into(),
                ))
            }
        };
        Ok(JsonCredentials { code, user_data })
    }
}

/// `POST /app/login` or `POST /miniprogram/login`.
pub(super) async fn login(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    endpoint: JsonEndpoint,
) -> Result<Response<Body>, GatewayError> {
    match endpoint {
        JsonEndpoint::MobileApp => {
            login_with::<AppLoginBody>(cx, req, endpoint, "mobile app").await
        }
        JsonEndpoint::MiniProgram => {
            login_with::<MiniLoginBody>(cx, req, endpoint, "mini program").await
        }
    }
}

async fn login_with<B: LoginBody>(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    endpoint: JsonEndpoint,
    what: &'static str,
) -> Result<Response<Body>, GatewayError> {
    let (provider, kind) = cx
        .providers
        .json_login(endpoint)
        .ok_or(ApiError::NotConfigured(what))?;
    let body: B = read_json(req, body_timeout(cx)).await?;
    let creds = body.credentials()?;
    let source = provider.kind_name(kind);
    let identity = provider
        .json_login(kind, creds)
        .await
        .map_err(|e| provider_failed(cx, source, e))?;
    let (id, session) = match finish(cx, &identity, Via::Json).await? {
        Finished::Session(id, _, session) => (id, session),
        Finished::Answered(r) => return Ok(r),
    };
    tracing::info!(source, session = %id.fingerprint(), "login");
    Ok(token_response(cx, &id, &session))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mini(body: &str) -> Result<(String, Option<(String, String)>), String> {
        let b: MiniLoginBody = parse_body(body.as_bytes()).map_err(|e| e.to_string())?;
        let c = b.credentials().map_err(|e| e.to_string())?;
        Ok((
            c.code.to_string(),
            c.user_data.map(|(e, i)| (e.to_string(), i.to_string())),
        ))
    }

    #[test]
    fn mini_program_bodies() {
        assert_eq!(mini(r#"{"code":"c"}"#), Ok(("c".into(), None)));
        assert_eq!(
            mini(r#"{"code":"c","encryptedData":"e","iv":"i","x":1}"#),
            Ok(("c".into(), Some(("e".into(), "i".into()))))
        );
        assert_eq!(
            mini(r#"{"code":null}"#).unwrap_err(),
            "field `code` is required"
        );
        assert_eq!(
            mini(r#"{"code":1}"#).unwrap_err(),
            "field `code` must be a string"
        );
        assert_eq!(
            mini(r#"{"code":""}"#).unwrap_err(),
            "field `code` must not be empty"
        );
        // The code is checked before the other fields, wherever it is in the body.
        assert_eq!(
            mini(r#"{"iv":5,"code":""}"#).unwrap_err(),
            "field `code` must not be empty"
        );
        assert_eq!(
            mini(r#"{"code":"c","encryptedData":"e"}"#).unwrap_err(),
            "field `iv` is required with `encryptedData`"
        );
        assert_eq!(
            mini(&format!(r#"{{"code":"{}"}}"#, "c".repeat(MAX_CODE + 1))).unwrap_err(),
            "field `code` is too long"
        );
        assert_eq!(mini("[1]").unwrap_err(), "body must be a JSON object");
        assert_eq!(mini("{").unwrap_err(), "body is not valid JSON");
        // Duplicate keys: the last wins, as before.
        assert_eq!(mini(r#"{"code":1,"code":"c"}"#), Ok(("c".into(), None)));
    }
}
