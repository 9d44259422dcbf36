//! Account linking's call to the app (`[link]`): after every successful login and before any
//! session exists, `POST link.url` with the identity as JSON, signed with
//! `X-Wxgate-Signature: t=<unix>,v1=<hex hmac-sha256(link.secret, "<t>.<body>")>`. The app's
//! answer decides: `{"user_id"}` (the session carries it), `{"bind_url"}` (its own page first,
//! resumed at `/link/complete`, see `link_complete.rs`), 403 `{"message"}` (refused). Anything
//! else, a timeout or no answer fails the login closed (503), and at most [`MAX_ANSWER`] bytes
//! of an answer are read.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::link_ticket::{valid_user_id, Tickets};
use crate::common::capped_body::{read_capped, CappedError};
use crate::common::http_util::{self, unix_now, Body};
use crate::common::pages::{self, Page, Text};
use crate::config::LinkSettings;
use crate::providers::Identity;

/// Most bytes of the app's answer read; a longer one is no answer.
pub(crate) const MAX_ANSWER: usize = 4096;
/// Longest `bind_url` accepted from the app.
const MAX_BIND_URL: usize = 2048;
/// Longest refusal message shown (characters).
const MAX_MESSAGE: usize = 500;

/// The app's hook, built once at start when `[link] url` is set.
pub(crate) struct Link {
    http: reqwest::Client,
    url: url::Url,
    pub(crate) tickets: Tickets,
}

/// What the gateway tells the app about a login (absent values are `null`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) source: &'a str,
    pub(crate) appid: &'a str,
    pub(crate) openid: Option<&'a str>,
    pub(crate) unionid: Option<&'a str>,
    pub(crate) nickname: Option<&'a str>,
    pub(crate) avatar: Option<&'a str>,
    pub(crate) phone: Option<&'a str>,
    pub(crate) wecom_userid: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A provider's identity, with the phone when known.
    pub(crate) fn of(i: &'a Identity, source: &'a str, phone: Option<&'a str>) -> Subject<'a> {
        let some = |s: &'a str| (!s.is_empty()).then_some(s);
        Subject {
            source,
            appid: &i.appid,
            openid: some(&i.openid),
            unionid: i.unionid.as_deref().and_then(some),
            nickname: some(&i.nickname),
            avatar: some(&i.avatar),
            phone,
            wecom_userid: None,
        }
    }

    /// The exact bytes sent (and signed).
    pub(crate) fn body(&self) -> Vec<u8> {
        json!({
            "source": self.source,
            "appid": self.appid,
            "openid": self.openid,
            "unionid": self.unionid,
            "nickname": self.nickname,
            "avatar": self.avatar,
            "phone": self.phone,
            "wecom_userid": self.wecom_userid,
        })
        .to_string()
        .into_bytes()
    }
}

/// The app's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The app's own user id for this login.
    UserId(String),
    /// Send the user to this page of the app first (with a ticket).
    Bind(String),
    /// Login refused, with the app's message (may be empty).
    Refused(String),
}

/// Account-linking failures: the hook gave no usable answer (503), or a resume was bad (400).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("account-linking call failed: {0}")]
    Unavailable(&'static str),
    #[error("account-linking resume refused: {0}")]
    BadResume(&'static str),
}

impl crate::common::error::ErrorAnswer for LinkError {
    fn status(&self) -> StatusCode {
        match self {
            LinkError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            LinkError::BadResume(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LinkError::Unavailable(_) => "link_unavailable",
            LinkError::BadResume(_) => "invalid_ticket",
        }
    }

    #[rustfmt::skip]
    fn texts(&self) -> (Text<'static>, Text<'static>) {
        let t = |zh, en| Text { zh, en };
        match self {
            LinkError::Unavailable(_) => (
                t("暂时无法登录", "Sign-in unavailable"),
                t("本站的账号服务暂时没有响应，未能完成登录。请稍后重试。", "The site's account service did not answer, so you are not signed in. Please try again in a moment."),
            ),
            LinkError::BadResume(_) => (
                t("绑定链接无效", "Invalid binding link"),
                t("此账号绑定链接无效、已使用或已过期，请重新登录。", "This account-binding link is invalid, already used or expired. Please sign in again."),
            ),
        }
    }

    fn offers_retry(&self) -> bool {
        true
    }

    fn log(&self) {
        tracing::warn!(error = %self, "account linking");
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl Link {
    /// The hook's HTTP client (no redirects followed; `link.timeout_ms` for the whole call).
    pub(crate) fn new(s: &LinkSettings) -> Result<Link, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut b = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(s.timeout)
            .connect_timeout(s.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&s.url) {
            b = b.no_proxy();
        }
        Ok(Link {
            http: b.build().map_err(|e| e.to_string())?,
            url: s.url.clone(),
            tickets: Tickets::new(s.secret.expose()),
        })
    }

    /// Ask the app about a login. Never longer than `link.timeout_ms` (the client's timeout
    /// covers connecting, sending and reading the answer).
    pub(crate) async fn call(&self, subject: &Subject<'_>) -> Result<Answer, LinkError> {
        let body = subject.body();
        let sig = self.tickets.call_signature(unix_now(), &body);
        let mut resp = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-wxgate-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                LinkError::Unavailable(if e.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                })
            })?;
        let status = resp.status().as_u16();
        let answer = read_capped(&mut resp, MAX_ANSWER).await.map_err(|e| {
            LinkError::Unavailable(match e {
                CappedError::TooLarge => "answer too large",
                CappedError::Read(e) if e.is_timeout() => "timed out",
                CappedError::Read(_) => "answer cut short",
            })
        })?;
        parse_answer(status, &answer).map_err(LinkError::Unavailable)
    }
}

/// The app's answer → its decision, or why it is none.
pub(crate) fn parse_answer(status: u16, body: &[u8]) -> Result<Answer, &'static str> {
    let object = || match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    match status {
        200 => {
            let m = object().ok_or("answer is not a JSON object")?;
            match (m.get("user_id"), m.get("bind_url")) {
                (Some(Value::String(u)), _) if valid_user_id(u) => Ok(Answer::UserId(u.clone())),
                (Some(Value::Number(n)), _) if n.is_u64() || n.is_i64() => {
                    Ok(Answer::UserId(n.to_string()))
                }
                (Some(v), _) if !v.is_null() => {
                    Err("user_id is not 1-128 visible ASCII characters")
                }
                (_, Some(Value::String(b))) if valid_bind_url(b) => Ok(Answer::Bind(b.clone())),
                (_, Some(v)) if !v.is_null() => Err("bind_url is not an http(s) URL or a /path"),
                _ => Err("answer has neither user_id nor bind_url"),
            }
        }
        403 => {
            let msg = object()
                .and_then(|m| m.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            Ok(Answer::Refused(
                msg.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(MAX_MESSAGE)
                    .collect::<String>()
                    .trim()
                    .to_string(),
            ))
        }
        _ => Err("unexpected HTTP status"),
    }
}

/// A page of the app: an absolute http(s) URL, or a path on this site (`/bind`, not `//x`);
/// ASCII (percent-encoded), as a `Location` must be.
pub(crate) fn valid_bind_url(s: &str) -> bool {
    if s.is_empty()
        || !s.is_ascii()
        || s.len() > MAX_BIND_URL
        || s.chars().any(|c| c.is_control() || c.is_whitespace())
        || s.contains('\\')
    {
        return false;
    }
    if s.starts_with('/') {
        return !s.starts_with("//");
    }
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// `bind_url` with `ticket=T` added to its query (before any `#fragment`).
pub(crate) fn with_ticket(bind_url: &str, ticket: &str) -> String {
    let (base, frag) = match bind_url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (bind_url, None),
    };
    let sep = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{sep}ticket={ticket}");
    if let Some(f) = frag {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The app refused the login: 403 with its message (page or JSON).
pub(crate) fn refused(json: bool, message: &str) -> Response<Body> {
    let default = Text {
        zh: "本站拒绝了此次登录。",
        en: "The site refused this sign-in.",
    };
    if json {
        let m = if message.is_empty() {
            default.en
        } else {
            message
        };
        return http_util::json(
            StatusCode::FORBIDDEN,
            &json!({"error": "forbidden", "message": m}),
        );
    }
    pages::render(Page {
        status: StatusCode::FORBIDDEN,
        title: Text {
            zh: "无法登录",
            en: "Sign-in refused",
        },
        message: if message.is_empty() {
            default
        } else {
            Text {
                zh: message,
                en: "",
            }
        },
        action: None,
        extra_html: None,
    })
}

/// The hand-off to the app's page: browsers 302 to `bind_url?ticket=T`; apps and mini
/// programs `{"bind_required":true,"ticket":T}` and no token.
pub(crate) fn bind(json: bool, bind_url: &str, ticket: &str) -> Response<Body> {
    if json {
        http_util::json(
            StatusCode::OK,
            &json!({"bind_required": true, "ticket": ticket}),
        )
    } else {
        http_util::redirect(&with_ticket(bind_url, ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answers() {
        let p = |s: u16, b: &str| parse_answer(s, b.as_bytes());
        assert_eq!(
            p(200, r#"{"user_id":"42"}"#),
            Ok(Answer::UserId("42".into()))
        );
        assert_eq!(p(200, r#"{"user_id":42}"#), Ok(Answer::UserId("42".into())));
        assert_eq!(
            p(
                200,
                r#"{"user_id":null,"bind_url":"https://a.example/bind?x=1"}"#
            ),
            Ok(Answer::Bind("https://a.example/bind?x=1".into()))
        );
        assert_eq!(
            p(200, r#"{"bind_url":"/bind"}"#),
            Ok(Answer::Bind("/bind".into()))
        );
        assert_eq!(
            p(403, r#"{"message":"此微信已绑定其他账号\u0007"}"#),
            Ok(Answer::Refused("此微信已绑定其他账号".into()))
        );
        assert_eq!(p(403, "nope"), Ok(Answer::Refused(String::new())));
        for bad in [
            (200, r#"{"user_id":""}"#),
            (200, r#"{"user_id":"a b"}"#),
            (200, r#"{"user_id":1.5}"#),
            (200, r#"{"user_id":true}"#),
            (200, r#"{"bind_url":"//evil.example/x"}"#),
            (200, r#"{"bind_url":"javascript:alert(1)"}"#),
            (200, r#"{"bind_url":"/a b"}"#),
            (200, r#"{}"#),
            (200, "[]"),
            (200, "<html>"),
            (200, ""),
            (500, r#"{"user_id":"42"}"#),
            (302, ""),
            (401, r#"{"message":"x"}"#),
        ] {
            assert!(p(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tickets_join_the_bind_url() {
        assert_eq!(with_ticket("/bind", "T"), "/bind?ticket=T");
        assert_eq!(with_ticket("/bind?p=1", "T"), "/bind?p=1&ticket=T");
        assert_eq!(with_ticket("/bind?", "T"), "/bind?ticket=T");
        assert_eq!(
            with_ticket("https://a.example/b?x=1#/route", "T"),
            "https://a.example/b?x=1&ticket=T#/route"
        );
    }

    #[test]
    fn subject_body_has_every_key() {
        let i = Identity {
            origin: crate::session::Origin {
                provider: 0,
                kind: 3,
            },
            openid: "o".into(),
            unionid: None,
            appid: "wx".into(),
            nickname: String::new(),
            avatar: "a".into(),
            grant: None,
        };
        let v: Value =
            serde_json::from_slice(&Subject::of(&i, "mini_program", None).body()).unwrap();
        for k in [
            "source",
            "appid",
            "openid",
            "unionid",
            "nickname",
            "avatar",
            "phone",
            "wecom_userid",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v["unionid"].is_null() && v["nickname"].is_null() && v["phone"].is_null());
        assert_eq!(v["source"], "mini_program");
    }

    proptest! {
        #[test]
        fn any_answer_is_parsed_without_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_answer(status, &body);
        }

        #[test]
        fn accepted_bind_urls_stay_urls(s in "\\PC{0,60}") {
            if valid_bind_url(&s) {
                let with = with_ticket(&s, "T");
                prop_assert!(with.contains("ticket=T"));
                prop_assert!(http::HeaderValue::from_str(&with).is_ok());
            }
        }
    }
}
