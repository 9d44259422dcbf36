//! A tiny account-linking app for the tests: answers the gateway's `[link]` call the way a
//! test tells it, checks the call's signature with the documented formula, and signs resumes.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

pub const LINK_SECRET: &str = "test-link-secret-0123456789abcdef0123";

/// What the app answers a call with.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 `{"user_id"}`.
    UserId(String),
    /// 200 `{"bind_url"}`.
    Bind(String),
    /// 403 `{"message"}`.
    Refuse(String),
    /// Wait this long, then `{"user_id":"late"}`.
    Sleep(Duration),
    /// Any status and body.
    Raw(u16, String),
}

/// One call the app received.
#[derive(Debug, Clone)]
pub struct Call {
    pub body: Vec<u8>,
    pub json: Value,
    pub signature: String,
    /// Whether `signature` verified: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>.
    pub signature_ok: bool,
    pub content_type: String,
}

type Decide = dyn Fn(&Value) -> Reply + Send + Sync;

pub struct LinkApp {
    pub addr: SocketAddr,
    pub calls: Arc<Mutex<Vec<Call>>>,
    decide: Arc<Mutex<Arc<Decide>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LinkApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn hmac_hex(secret: &str, msg: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Checks `t=<unix>,v1=<hex>` against the body, as the README tells apps to.
pub fn verify(signature: &str, body: &[u8], secret: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(t_num) = t.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(t_num) > 300 {
        return false;
    }
    let msg = format!("{t}.{}", String::from_utf8_lossy(body));
    hmac_hex(secret, &msg) == v1
}

/// `(t, sig)` for a resume: sig = hex hmac-sha256(secret, "<t>.<ticket>.<user_id>").
pub fn sign_resume(ticket: &str, user_id: &str, t: u64) -> String {
    hmac_hex(LINK_SECRET, &format!("{t}.{ticket}.{user_id}"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl LinkApp {
    pub async fn start(decide: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> LinkApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let decide: Arc<Mutex<Arc<Decide>>> = Arc::new(Mutex::new(Arc::new(decide)));
        let (c, d) = (calls.clone(), decide.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, d) = (c.clone(), d.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (c, d) = (c.clone(), d.clone());
                        async move { Ok::<_, Infallible>(handle(req, &c, &d).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        LinkApp {
            addr,
            calls,
            decide,
            task,
        }
    }

    /// Always the same reply.
    pub async fn always(r: Reply) -> LinkApp {
        LinkApp::start(move |_| r.clone()).await
    }

    pub fn set(&self, decide: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.decide.lock().unwrap() = Arc::new(decide);
    }

    pub fn url(&self) -> String {
        format!("http://{}/auth/wechat-link", self.addr)
    }

    /// The `[link]` section pointing at this app.
    pub fn toml(&self, timeout_ms: u64) -> String {
        format!(
            "[link]\nurl = \"{}\"\nsecret = \"{LINK_SECRET}\"\ntimeout_ms = {timeout_ms}\n",
            self.url()
        )
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    calls: &Mutex<Vec<Call>>,
    decide: &Mutex<Arc<Decide>>,
) -> Response<Full<Bytes>> {
    let signature = req
        .headers()
        .get("x-wxgate-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let signature_ok = verify(&signature, &body, LINK_SECRET);
    calls.lock().unwrap().push(Call {
        body: body.clone(),
        json: json.clone(),
        signature,
        signature_ok,
        content_type,
    });
    let decide = decide.lock().unwrap().clone();
    let (status, text) = match decide(&json) {
        Reply::UserId(u) => (200, serde_json::json!({ "user_id": u }).to_string()),
        Reply::Bind(b) => (200, serde_json::json!({ "bind_url": b }).to_string()),
        Reply::Refuse(m) => (403, serde_json::json!({ "message": m }).to_string()),
        Reply::Sleep(d) => {
            tokio::time::sleep(d).await;
            (200, r#"{"user_id":"late"}"#.to_string())
        }
        Reply::Raw(s, b) => (s, b),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// `ticket` from a bind URL the gateway redirected to.
pub fn ticket_of(location: &str) -> String {
    let q = location.split('?').nth(1).unwrap_or("");
    let q = q.split('#').next().unwrap();
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no ticket in {location}"))
}

/// `/_wxgate/link/complete?...` for a browser resume.
pub fn complete_path(ticket: &str, user_id: &str, t: u64, sig: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "/_wxgate/link/complete?ticket={}&user_id={}&t={t}&sig={sig}",
        enc(ticket),
        enc(user_id)
    )
}

// ---- gateway helpers (the test crate declares `mod common;` beside this module) ----

use super::common::{self, client, empty, fixtures, send, Env};

pub async fn mint(env: &Env, appid: &str, user: &str) -> Value {
    let r = send(
        &client(),
        Request::post(format!(
            "{}/mock/code?appid={appid}&user={user}",
            env.mock.url()
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

pub async fn post_json(env: &Env, path: &str, body: &Value) -> common::Reply {
    send(
        &client(),
        Request::post(env.gw.url(path))
            .header("content-type", "application/json")
            .body(common::body(body.to_string()))
            .unwrap(),
    )
    .await
}

pub async fn with_bearer(env: &Env, method: &str, path: &str, token: &str) -> common::Reply {
    with_bearer_headers(env, method, path, token, &[]).await
}

pub async fn with_bearer_headers(
    env: &Env,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> common::Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(env.gw.url(path))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(empty()).unwrap()).await
}

/// POST /app/login for `user` (the mobile app): the gateway's answer.
pub async fn app_login(env: &Env, user: &str) -> common::Reply {
    let code = mint(env, fixtures::MOBILE_APPID, user).await["code"].clone();
    post_json(
        env,
        "/_wxgate/app/login",
        &serde_json::json!({ "code": code }),
    )
    .await
}

/// POST /miniprogram/login for `user`: the gateway's answer.
pub async fn mini_login(env: &Env, user: &str) -> common::Reply {
    let code = mint(env, fixtures::MINI_APPID, user).await["code"].clone();
    post_json(
        env,
        "/_wxgate/miniprogram/login",
        &serde_json::json!({ "code": code }),
    )
    .await
}

/// POST /link/complete for an app's ticket, signed for `user_id` now.
pub async fn complete_json(env: &Env, ticket: &str, user_id: &str) -> common::Reply {
    let t = now();
    let sig = sign_resume(ticket, user_id, t);
    post_json(
        env,
        "/_wxgate/link/complete",
        &serde_json::json!({"ticket": ticket, "user_id": user_id, "t": t, "sig": sig}),
    )
    .await
}
