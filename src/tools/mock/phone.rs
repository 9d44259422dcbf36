//! The mock's mini-program phone numbers: `POST /cgi-bin/stable_token` and `POST
//! /wxa/business/getuserphonenumber`, behaving like WeChat where it matters (errors as HTTP 200
//! `text/plain` JSON; a stale token answered 40001; codes single-use, 5 minutes; quota 1400001
//! on request), and their test controls under `/mock/phone/`:
//!
//! - `POST /mock/phone/code?user=alice[&phone=DIGITS&country=86]` → `{"code"}` for
//!   `getPhoneNumber` (default numbers: [`phone_of`]);
//! - `POST /mock/phone/stale`: the current token becomes stale (the next phone call with it
//!   gets 40001; `stable_token` then hands out a new one);
//! - `POST /mock/phone/quota?count=N`: the next N phone calls answer 1400001;
//! - `POST /mock/phone/token?ttl_secs=N&delay_ms=M`: lifetime of the tokens issued from now
//!   on, and a delay before each `stable_token` answer (to make callers overlap);
//! - `GET /mock/phone/calls` → `{"stable_token", "force_refresh", "getuserphonenumber"}`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use moka::sync::Cache;
use serde_json::{json, Value};

use super::fixtures;
use super::reply::*;
use super::state::*;

/// Lifetime of a `getPhoneNumber` code.
const CODE_TTL: Duration = Duration::from_secs(300);
/// Largest request body the mock reads.
const MAX_BODY: usize = 16 * 1024;

/// The phone number a test user shares: `(country code, number)`.
pub fn phone_of(user_key: &str) -> Option<(&'static str, &'static str)> {
    Some(match user_key {
        "alice" => ("86", "13800000001"),
        "bob" => ("86", "13800000002"),
        "carol" => ("86", "13800000003"),
        _ => return None,
    })
}

struct Token {
    value: String,
    expires_at: Instant,
    stale: bool,
}

struct PhoneCode {
    country: String,
    number: String,
    expires_at: Instant,
    used: AtomicBool,
}

pub(super) struct PhoneState {
    /// The one current token (an earlier one is answered 40001, like a stale one).
    token: Mutex<Option<Token>>,
    codes: Cache<String, Arc<PhoneCode>>,
    quota_failures: AtomicU64,
    token_ttl_secs: AtomicU64,
    token_delay_ms: AtomicU64,
    stable_token_calls: AtomicU64,
    force_refresh_calls: AtomicU64,
    phone_calls: AtomicU64,
}

impl Default for PhoneState {
    fn default() -> Self {
        PhoneState {
            token: Mutex::new(None),
            codes: cache(CODE_TTL + GRACE),
            quota_failures: AtomicU64::new(0),
            token_ttl_secs: AtomicU64::new(7200),
            token_delay_ms: AtomicU64::new(0),
            stable_token_calls: AtomicU64::new(0),
            force_refresh_calls: AtomicU64::new(0),
            phone_calls: AtomicU64::new(0),
        }
    }
}

/// Whether `path` is one of this file's.
pub(super) fn handles(path: &str) -> bool {
    matches!(
        path,
        "/cgi-bin/stable_token" | "/wxa/business/getuserphonenumber"
    ) || path.starts_with("/mock/phone/")
}

pub(super) async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let q = parse_query(req.uri().query());
    let path = req.uri().path().to_string();
    let post = req.method() == Method::POST;
    let get = req.method() == Method::GET;
    let p = &state.phone;
    match path.as_str() {
        "/cgi-bin/stable_token" if post => match body_json(req).await {
            Some(b) => stable_token(p, &b).await,
            None => api_error(47001, "data format error"),
        },
        "/wxa/business/getuserphonenumber" if post => {
            Calls::bump(&p.phone_calls);
            match body_json(req).await {
                Some(b) => get_phone(p, &q, &b),
                None => api_error(47001, "data format error"),
            }
        }
        "/mock/phone/code" if post || get => mint(p, &q),
        "/mock/phone/stale" if post => {
            if let Some(t) = p.token.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                t.stale = true;
            }
            control_json(StatusCode::OK, json!({ "ok": true }))
        }
        "/mock/phone/quota" if post => match param(&q, "count").map(str::parse::<u64>) {
            Some(Ok(n)) => {
                p.quota_failures.store(n, Ordering::SeqCst);
                control_json(StatusCode::OK, json!({ "ok": true }))
            }
            _ => control_error("count must be a non-negative integer"),
        },
        "/mock/phone/token" if post => {
            for (key, slot) in [
                ("ttl_secs", &p.token_ttl_secs),
                ("delay_ms", &p.token_delay_ms),
            ] {
                match param(&q, key).map(str::parse::<u64>) {
                    None => {}
                    Some(Ok(n)) => slot.store(n.min(86_400_000), Ordering::SeqCst),
                    Some(Err(_)) => return control_error("ttl_secs and delay_ms are integers"),
                }
            }
            control_json(StatusCode::OK, json!({ "ok": true }))
        }
        "/mock/phone/calls" if get => {
            let g = |c: &AtomicU64| c.load(Ordering::SeqCst);
            control_json(
                StatusCode::OK,
                json!({
                    "stable_token": g(&p.stable_token_calls),
                    "force_refresh": g(&p.force_refresh_calls),
                    "getuserphonenumber": g(&p.phone_calls),
                }),
            )
        }
        _ if handles(&path) => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed",
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

async fn body_json(req: Request<Incoming>) -> Option<Value> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes: Bytes = limited.collect().await.ok()?.to_bytes();
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

async fn stable_token(p: &PhoneState, b: &Value) -> Resp {
    Calls::bump(&p.stable_token_calls);
    let delay = p.token_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let s = |k: &str| b.get(k).and_then(Value::as_str);
    if s("grant_type") != Some("client_credential") {
        return api_error(40002, "invalid grant_type");
    }
    let Some(appid) = s("appid") else {
        return api_error(41002, "appid missing");
    };
    let Some(app) = find_app(appid) else {
        return api_error(40013, "invalid appid");
    };
    match s("secret") {
        None => return api_error(41004, "appsecret missing"),
        Some(secret) if secret != app.secret => return api_error(40125, "invalid appsecret"),
        Some(_) => {}
    }
    if app.kind != AppKind::MiniProgram {
        // The mock serves phone numbers for its mini program only.
        return api_error(40013, "invalid appid");
    }
    let force = b.get("force_refresh").and_then(Value::as_bool) == Some(true);
    if force {
        Calls::bump(&p.force_refresh_calls);
    }
    let mut t = p.token.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let keep = t
        .as_ref()
        .is_some_and(|t| !force && !t.stale && now < t.expires_at);
    if !keep {
        let ttl = p.token_ttl_secs.load(Ordering::SeqCst);
        *t = Some(Token {
            value: format!("stable-{}", random_alnum(40)),
            expires_at: now + Duration::from_secs(ttl),
            stale: false,
        });
    }
    let t = t.as_ref().expect("set above");
    let left = t.expires_at.saturating_duration_since(now).as_secs();
    api_ok(json!({ "access_token": t.value, "expires_in": left }).to_string())
}

fn get_phone(p: &PhoneState, q: &Query, b: &Value) -> Resp {
    let Some(token) = param(q, "access_token") else {
        return api_error(41001, "access_token missing");
    };
    let valid = p
        .token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|t| t.value == token && !t.stale && Instant::now() < t.expires_at);
    if !valid {
        return api_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    }
    let quota = p
        .quota_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if quota.is_ok() {
        return api_error(1_400_001, "feature quota used up");
    }
    let Some(code) = b.get("code").and_then(Value::as_str) else {
        return api_error(47001, "data format error");
    };
    let Some(entry) = p.codes.get(code) else {
        return api_error(40029, "invalid code");
    };
    if entry.used.swap(true, Ordering::AcqRel) {
        return api_error(40163, "code been used");
    }
    if Instant::now() >= entry.expires_at {
        return api_error(40029, "invalid code");
    }
    let pure = &entry.number;
    let shown = if entry.country == "86" {
        pure.clone()
    } else {
        format!("+{}{}", entry.country, pure)
    };
    api_ok(
        json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": shown,
                "purePhoneNumber": pure,
                "countryCode": entry.country,
                "watermark": { "timestamp": unix_now(), "appid": fixtures::MINI_APPID },
            }
        })
        .to_string(),
    )
}

fn mint(p: &PhoneState, q: &Query) -> Resp {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let (country, number) = match (param(q, "phone"), param(q, "user").and_then(phone_of)) {
        (Some(n), _) if digits(n) => (param(q, "country").unwrap_or("86"), n),
        (Some(_), _) => return control_error("phone must be digits"),
        (None, Some((c, n))) => (c, n),
        (None, None) => return control_error("user (alice, bob or carol) or phone required"),
    };
    if !digits(country) {
        return control_error("country must be digits");
    }
    let code = random_alnum(32);
    p.codes.insert(
        code.clone(),
        Arc::new(PhoneCode {
            country: country.to_string(),
            number: number.to_string(),
            expires_at: Instant::now() + CODE_TTL,
            used: AtomicBool::new(false),
        }),
    );
    control_json(StatusCode::OK, json!({ "code": code }))
}
