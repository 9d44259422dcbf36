//! The demo's account linking: `wxgate dev`'s upstream plays a site with its own accounts,
//! found by phone number, kept in memory. It is also the worked example of the README's
//! "Linking WeChat users to your accounts":
//!
//! - `POST /_demo/link` is the `[link] url` hook: it checks `X-Wxgate-Signature`, answers
//!   `{"user_id"}` for a WeChat user (or phone) it knows, else `{"bind_url":
//!   "/public/bind-phone?p=REF"}` (REF: its own note of who is binding).
//! - `GET /public/bind-phone?p&ticket` (a public path: no session yet) asks for the phone and a
//!   captcha (always `123456` here); `POST` binds (phone → account, WeChat → account) and sends
//!   the browser to `/_wxgate/link/complete` with the signed `user_id`.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::tools::mock::html_escape as escape;

/// The hook's path on the demo upstream.
pub const HOOK_PATH: &str = "/_demo/link";
/// The bind page (under the demo's public path `/public/`).
pub const BIND_PATH: &str = "/public/bind-phone";
/// The demo's captcha.
pub const CAPTCHA: &str = "123456";
const MAX_BODY: usize = 8 * 1024;

/// Someone on the bind page: who WeChat said they are.
struct Binding {
    wechat: String,
    nickname: String,
}

#[derive(Default)]
struct Accounts {
    by_wechat: HashMap<String, String>,
    by_phone: HashMap<String, String>,
    binding: HashMap<String, Binding>,
    next: u64,
}

/// The demo site's accounts and the secret it shares with the gateway (`link.secret`).
pub struct DemoSite {
    secret: String,
    accounts: Mutex<Accounts>,
}

type Resp = Response<Full<Bytes>>;

fn hmac_hex(secret: &str, msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`, with `t` within 5 minutes.
pub fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(secs) = t.parse::<u64>() else {
        return false;
    };
    if secs.abs_diff(unix_now()) > 300 {
        return false;
    }
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let want = hmac_hex(secret, &msg);
    // Constant time: as the README tells apps.
    use subtle::ConstantTimeEq;
    want.as_bytes().ct_eq(v1.as_bytes()).into()
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn form(query: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(query).into_owned().collect()
}

impl DemoSite {
    pub fn new(secret: &str) -> DemoSite {
        DemoSite {
            secret: secret.to_string(),
            accounts: Mutex::default(),
        }
    }

    /// Whether the demo upstream should hand `path` to this site.
    pub fn serves(path: &str) -> bool {
        path == HOOK_PATH || path == BIND_PATH
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let query = form(req.uri().query().unwrap_or("").as_bytes());
        let method = req.method().clone();
        let sig = req
            .headers()
            .get("x-wxgate-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "too large"),
        };
        match (path.as_str(), method) {
            (HOOK_PATH, Method::POST) => self.hook(&sig, &body),
            (BIND_PATH, Method::GET) => self.bind_page(&query, None),
            (BIND_PATH, Method::POST) => self.bind(&form(&body)),
            _ => respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed",
            ),
        }
    }

    /// The gateway's call after a login.
    fn hook(&self, sig: &str, body: &[u8]) -> Resp {
        if !signature_ok(&self.secret, sig, body) {
            return respond(StatusCode::UNAUTHORIZED, "text/plain", "bad signature");
        }
        let Ok(j) = serde_json::from_slice::<Value>(body) else {
            return respond(StatusCode::BAD_REQUEST, "text/plain", "not JSON");
        };
        if let Some(userid) = j["wecom_userid"].as_str() {
            // A WeCom employee: the corp's directory already says who this is, no binding.
            let answer = json!({ "user_id": format!("wecom:{userid}") });
            return respond(StatusCode::OK, "application/json", answer.to_string());
        }
        let wechat = j["unionid"]
            .as_str()
            .or(j["openid"].as_str())
            .unwrap_or("")
            .to_string();
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let known = a
            .by_wechat
            .get(&wechat)
            .cloned()
            .or_else(|| j["phone"].as_str().and_then(|p| a.by_phone.get(p).cloned()));
        let answer = match known {
            Some(user) => {
                a.by_wechat.insert(wechat, user.clone());
                json!({ "user_id": user })
            }
            None => {
                let reference = hex::encode(rand::random::<[u8; 12]>());
                if a.binding.len() > 10_000 {
                    a.binding.clear(); // a demo: bounded, not clever
                }
                a.binding.insert(
                    reference.clone(),
                    Binding {
                        wechat,
                        nickname: j["nickname"].as_str().unwrap_or("").to_string(),
                    },
                );
                json!({ "bind_url": format!("{BIND_PATH}?p={reference}") })
            }
        };
        respond(StatusCode::OK, "application/json", answer.to_string())
    }

    fn bind_page(&self, q: &HashMap<String, String>, error: Option<&str>) -> Resp {
        let reference = q.get("p").map(String::as_str).unwrap_or("");
        let ticket = q.get("ticket").map(String::as_str).unwrap_or("");
        let a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(who) = a.binding.get(reference) else {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "This binding page has expired: sign in again.",
            );
        };
        let error = error
            .map(|e| format!("<p id=\"error\" style=\"color:#c00\">{}</p>", escape(e)))
            .unwrap_or_default();
        let html = format!(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>绑定手机号</title>\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}input,button{{font-size:1rem;padding:.4rem;margin:.3rem 0;width:100%}}</style></head>\
<body><h1>绑定手机号 / Bind your phone</h1><p id=\"who\">{nick}，首次微信登录请绑定手机号。 First WeChat sign-in: bind a phone number to your account.</p>{error}\
<form method=\"post\" action=\"{BIND_PATH}\"><input type=\"hidden\" name=\"p\" value=\"{p}\"><input type=\"hidden\" name=\"ticket\" value=\"{t}\">\
<label>手机号 / Phone <input id=\"phone\" name=\"phone\" inputmode=\"numeric\" placeholder=\"13800000000\"></label>\
<label>验证码 / Code (demo: {CAPTCHA}) <input id=\"captcha\" name=\"captcha\" inputmode=\"numeric\"></label>\
<button id=\"bind\" type=\"submit\">绑定并登录 / Bind and sign in</button></form></body></html>",
            nick = escape(&who.nickname),
            p = escape(reference),
            t = escape(ticket),
        );
        respond(StatusCode::OK, "text/html; charset=utf-8", html)
    }

    /// The form: bind, then back to the gateway with the signed user id.
    fn bind(&self, f: &HashMap<String, String>) -> Resp {
        let phone = f.get("phone").map(|p| p.trim()).unwrap_or("");
        if !(6..=15).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
            return self.bind_page(f, Some("请输入手机号 / Enter a phone number (digits)"));
        }
        if f.get("captcha").map(|c| c.trim()) != Some(CAPTCHA) {
            return self.bind_page(f, Some("验证码错误 / Wrong code"));
        }
        let ticket = f.get("ticket").map(String::as_str).unwrap_or("");
        let reference = f.get("p").map(String::as_str).unwrap_or("");
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(who) = a.binding.remove(reference) else {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "This binding page has expired: sign in again.",
            );
        };
        let key = format!("+86{phone}");
        let user = match a.by_phone.get(&key) {
            Some(u) => u.clone(),
            None => {
                a.next += 1;
                let u = format!("u{}", 1000 + a.next);
                a.by_phone.insert(key, u.clone());
                u
            }
        };
        a.by_wechat.insert(who.wechat, user.clone());
        let t = unix_now();
        let sig = hmac_hex(&self.secret, format!("{t}.{ticket}.{user}").as_bytes());
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let location = format!(
            "/_wxgate/link/complete?ticket={}&user_id={}&t={t}&sig={sig}",
            enc(ticket),
            enc(&user)
        );
        let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "");
        if let Ok(v) = http::HeaderValue::from_str(&location) {
            r.headers_mut().insert(http::header::LOCATION, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let t = unix_now();
        let body = br#"{"openid":"o"}"#;
        let mut msg = format!("{t}.").into_bytes();
        msg.extend_from_slice(body);
        let header = format!("t={t},v1={}", hmac_hex("s", &msg));
        assert!(signature_ok("s", &header, body));
        assert!(!signature_ok("other", &header, body));
        assert!(!signature_ok("s", &header, b"{}"));
        assert!(!signature_ok("s", "t=1,v1=00", body));
        assert!(!signature_ok("s", "", body));
    }

    #[test]
    fn hook_answers_bind_then_user_id() {
        let site = DemoSite::new("s");
        let body = br#"{"openid":"o1","unionid":"u1","nickname":"A"}"#.to_vec();
        let t = unix_now();
        let mut msg = format!("{t}.").into_bytes();
        msg.extend_from_slice(&body);
        let sig = format!("t={t},v1={}", hmac_hex("s", &msg));
        let r = site.hook(&sig, &body);
        assert_eq!(r.status(), StatusCode::OK);
        let reference = {
            let a = site.accounts.lock().unwrap();
            a.binding.keys().next().unwrap().clone()
        };
        let mut f = HashMap::new();
        f.insert("p".to_string(), reference);
        f.insert("ticket".to_string(), "T".to_string());
        f.insert("phone".to_string(), "13800000009".to_string());
        f.insert("captcha".to_string(), "000000".to_string());
        assert_eq!(site.bind(&f).status(), StatusCode::OK); // wrong code: the form again
        f.insert("captcha".to_string(), CAPTCHA.to_string());
        let r = site.bind(&f);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            loc.starts_with("/_wxgate/link/complete?ticket=T&user_id=u1001&t="),
            "{loc}"
        );
        assert_eq!(site.hook(&sig, &body).status(), StatusCode::OK);
        assert_eq!(
            site.accounts
                .lock()
                .unwrap()
                .by_wechat
                .get("u1")
                .map(String::as_str),
            Some("u1001")
        );
        assert_eq!(
            site.hook("t=1,v1=0", &body).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
