//! Test controls: `/mock/code` mints app and mini-program codes, `/mock/fail` injects failures.

use std::time::Duration;

use http::StatusCode;
use rand::Rng;
use serde_json::{json, Value};

use super::fixtures::{self};
use super::reply::*;
use super::state::*;

/// A fresh session key: (base64, raw bytes).
pub(super) fn random_session_key() -> (String, [u8; 16]) {
    use base64::Engine;
    let key: [u8; 16] = rand::thread_rng().gen();
    (base64::engine::general_purpose::STANDARD.encode(key), key)
}

pub(super) fn mock_code(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.mock_code);
    let Some(app) = param(q, "appid").and_then(find_app) else {
        return control_error("unknown appid");
    };
    let Some(user) = param(q, "user").and_then(fixtures::user) else {
        return control_error("unknown user (alice, bob, carol or snapshot)");
    };
    let ttl = match param(q, "ttl_secs").map(str::parse::<u64>) {
        None => None,
        Some(Ok(secs)) => Some(Duration::from_secs(secs)),
        Some(Err(_)) => return control_error("ttl_secs must be a non-negative integer"),
    };
    let openid = fixtures::openid(app.appid, user.key);
    match app.kind {
        AppKind::MiniProgram => {
            let (session_key, key) = random_session_key();
            let iv: [u8; 16] = rand::thread_rng().gen();
            let watermark_appid = param(q, "watermark_appid").unwrap_or(app.appid);
            // Today's WeChat: every user's profile is the placeholder; `profile=user` gives the
            // user's own, as before 2022-11.
            let (nickname, avatar) = if param(q, "profile") == Some("user") {
                (user.nickname, user.avatar)
            } else {
                (fixtures::PLACEHOLDER_NICKNAME, fixtures::PLACEHOLDER_AVATAR)
            };
            let mut data = json!({
                "openId": openid,
                "nickName": nickname,
                "gender": 0,
                "language": "zh_CN",
                "city": "",
                "province": "",
                "country": "",
                "avatarUrl": avatar,
                "watermark": { "appid": watermark_appid, "timestamp": unix_now() },
            });
            if let Some(u) = user.unionid {
                data["unionId"] = Value::from(u);
            }
            let encrypted = crate::providers::wechat::crypto::encrypt_user_data(
                &key,
                &iv,
                data.to_string().as_bytes(),
            );
            // `unionid=data` mints a code whose jscode2session answer lacks the unionid.
            let in_response = param(q, "unionid") != Some("data");
            let code = state.mint_code(
                app,
                user,
                SNSAPI_USERINFO,
                ttl,
                Some((session_key, in_response)),
            );
            use base64::Engine;
            control_json(
                StatusCode::OK,
                json!({
                    "code": code,
                    "openid": openid,
                    "encryptedData": encrypted,
                    "iv": base64::engine::general_purpose::STANDARD.encode(iv),
                }),
            )
        }
        kind => {
            let requested = match kind {
                AppKind::Website => SNSAPI_LOGIN,
                _ => param(q, "scope").unwrap_or(SNSAPI_USERINFO),
            };
            let Some(scope) = scope_for(app, requested) else {
                return control_error("scope not valid for this app");
            };
            let code = state.mint_code(app, user, scope, ttl, None);
            control_json(StatusCode::OK, json!({ "code": code, "openid": openid }))
        }
    }
}

pub(super) fn mock_fail(state: &State, q: &Query) -> Resp {
    let Some(mode) = param(q, "mode").and_then(FailMode::parse) else {
        return control_error(
            "mode must be busy, ratelimit, garbage, status500, slow or empty_gbk",
        );
    };
    let count = match param(q, "count").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => return control_error("count must be a non-negative integer"),
    };
    let delay = match param(q, "delay_ms").map(str::parse::<u64>) {
        None => Duration::from_millis(10_000),
        Some(Ok(ms)) => Duration::from_millis(ms.min(600_000)),
        Some(Err(_)) => return control_error("delay_ms must be a non-negative integer"),
    };
    state.set_failure((count > 0).then_some(Failure {
        mode,
        remaining: count,
        delay,
    }));
    control_json(StatusCode::OK, json!({ "ok": true }))
}
