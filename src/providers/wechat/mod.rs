//! WeChat server-side API client (`/sns/*` on `api.weixin.qq.com`, or the mock).
//!
//! Parsing is lenient the way WeChat needs it: any content type, lossy UTF-8, raw control
//! characters inside strings tolerated, `errcode` checked before anything else (number or numeric
//! string). Errors never carry the secret, the code, tokens, session keys or the request URL, and
//! nothing here logs them: only the endpoint path and the errcode are logged.

pub mod crypto;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

/// Largest response body accepted from WeChat (real answers are well under 4 KiB).
const MAX_BODY: usize = 256 * 1024;
/// Longest `errmsg` kept in [`WechatError::Api`].
const MAX_ERRMSG: usize = 200;

/// An app's credentials. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCreds {
    pub appid: String,
    pub secret: String,
}

impl fmt::Debug for AppCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCreds")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Failure of a WeChat API call. The `Display` text is safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// Could not connect / the connection broke (also: the client could not be set up).
    #[error("WeChat API unreachable")]
    Unreachable,
    #[error("WeChat API timed out")]
    Timeout,
    /// Non-2xx HTTP status.
    #[error("WeChat API answered HTTP {0}")]
    Status(u16),
    /// Empty body, not JSON, or required fields missing.
    #[error("WeChat API answered with an unparseable response")]
    Garbage,
    /// `errcode` present and non-zero. `msg` is WeChat's `errmsg`, scrubbed of anything sent.
    #[error("WeChat API error {code}: {msg}")]
    Api { code: i64, msg: String },
}

/// What a caller should do about a [`WechatError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The code / token is unusable: start the login again (40029, 40163, 42003, 40001, 40014,
    /// 42007, 40030, 42002).
    Relogin,
    /// WeChat is busy or rate limiting: retry later, 503 (-1, 45011).
    Busy,
    /// Not authorized / user blocked (48001, 50001, 40226).
    Forbidden,
    /// Everything else: configuration errors, bad openid, unreachable, timeout, 5xx, garbage.
    Upstream,
}

impl WechatError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WechatError::Api { code, .. } => match code {
                40029 | 40163 | 42003 | 40001 | 40014 | 42007 | 40030 | 42002 => {
                    ErrorClass::Relogin
                }
                -1 | 45011 => ErrorClass::Busy,
                48001 | 50001 | 40226 => ErrorClass::Forbidden,
                _ => ErrorClass::Upstream,
            },
            _ => ErrorClass::Upstream,
        }
    }

    /// Bad or missing appid / secret (40013, 40125, 41002, 41004): log a configuration error.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            WechatError::Api {
                code: 40013 | 40125 | 41002 | 41004,
                ..
            }
        )
    }

    /// WeChat's errcode, when this is an API error.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Answer of `/sns/oauth2/access_token` and `/sns/oauth2/refresh_token`. `Debug` hides tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub openid: String,
    pub scope: String,
    pub unionid: Option<String>,
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"<redacted>")
            .field("openid", &self.openid)
            .field("scope", &self.scope)
            .field("unionid", &self.unionid)
            .finish()
    }
}

/// Answer of `/sns/userinfo` (sex / province / city / country / privilege are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub openid: String,
    pub nickname: String,
    pub headimgurl: String,
    pub unionid: Option<String>,
}

/// Answer of `/sns/jscode2session`. `Debug` hides the session key.
#[derive(Clone, PartialEq, Eq)]
pub struct JsSession {
    pub openid: String,
    pub session_key: String,
    pub unionid: Option<String>,
}

impl fmt::Debug for JsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsSession")
            .field("openid", &self.openid)
            .field("session_key", &"<redacted>")
            .field("unionid", &self.unionid)
            .finish()
    }
}

/// Client for WeChat's `/sns/*` APIs. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    api_base: Arc<str>,
}

impl fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatClient")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl WechatClient {
    /// `api_base` without a trailing slash, e.g. `https://api.weixin.qq.com` or
    /// `http://127.0.0.1:PORT` (the mock). `timeout` bounds each whole call (connect, request,
    /// body). Fails with [`WechatError::Unreachable`] when `api_base` is not an http(s) URL or the
    /// HTTP client cannot be built.
    pub fn new(api_base: &str, timeout: Duration) -> Result<WechatClient, WechatError> {
        let api_base = api_base.trim().trim_end_matches('/');
        let parsed = url::Url::parse(api_base).map_err(|_| WechatError::Unreachable)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(WechatError::Unreachable);
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| WechatError::Unreachable)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            // A 3xx is an answer like any other non-2xx: `Status`.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")));
        if is_loopback_host(&parsed) {
            // The mock on localhost: never send that through an environment-configured proxy.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|_| WechatError::Unreachable)?;
        Ok(WechatClient {
            http,
            api_base: Arc::from(api_base),
        })
    }

    /// The configured API base (no trailing slash).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `GET /sns/oauth2/access_token`: exchange a website / official-account / mobile-app code.
    pub async fn exchange_code(
        &self,
        appid: &str,
        secret: &str,
        code: &str,
    ) -> Result<OAuthToken, WechatError> {
        let params = [
            ("appid", appid),
            ("secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
        ];
        self.call(
            "/sns/oauth2/access_token",
            &params,
            &[secret, code],
            parse_oauth_token,
        )
        .await
    }

    /// `GET /sns/oauth2/refresh_token`.
    pub async fn refresh_token(
        &self,
        appid: &str,
        refresh_token: &str,
    ) -> Result<OAuthToken, WechatError> {
        let params = [
            ("appid", appid),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.call(
            "/sns/oauth2/refresh_token",
            &params,
            &[refresh_token],
            parse_oauth_token,
        )
        .await
    }

    /// `GET /sns/userinfo` (lang=zh_CN).
    pub async fn userinfo(
        &self,
        access_token: &str,
        openid: &str,
    ) -> Result<UserInfo, WechatError> {
        let params = [
            ("access_token", access_token),
            ("openid", openid),
            ("lang", "zh_CN"),
        ];
        self.call("/sns/userinfo", &params, &[access_token], parse_userinfo)
            .await
    }

    /// `GET /sns/jscode2session`: exchange a mini-program `wx.login()` code.
    pub async fn jscode2session(
        &self,
        appid: &str,
        secret: &str,
        js_code: &str,
    ) -> Result<JsSession, WechatError> {
        let params = [
            ("appid", appid),
            ("secret", secret),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ];
        self.call(
            "/sns/jscode2session",
            &params,
            &[secret, js_code],
            parse_jscode2session,
        )
        .await
    }

    /// `GET /sns/auth`: Ok when the access token is valid for that openid.
    pub async fn check_token(&self, access_token: &str, openid: &str) -> Result<(), WechatError> {
        let params = [("access_token", access_token), ("openid", openid)];
        self.call("/sns/auth", &params, &[access_token], parse_check)
            .await
    }

    /// Performs the GET and returns the raw body. The URL (which holds secrets) never leaves this
    /// function, and reqwest errors are mapped without being formatted.
    async fn call<T>(
        &self,
        endpoint: &'static str,
        params: &[(&str, &str)],
        sensitive: &[&str],
        parse: fn(&[u8], &[&str]) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let mut url = url::Url::parse(&format!("{}{}", self.api_base, endpoint))
            .map_err(|_| WechatError::Unreachable)?;
        url.query_pairs_mut().extend_pairs(params.iter().copied());

        let result = match self.fetch(url).await {
            Ok(body) => parse(&body, sensitive),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => tracing::debug!(endpoint, "WeChat API call succeeded"),
            Err(WechatError::Api { code, .. }) => {
                tracing::debug!(endpoint, errcode = *code, "WeChat API error")
            }
            Err(e) => tracing::debug!(endpoint, error = e.kind_name(), "WeChat API call failed"),
        }
        result
    }

    async fn fetch(&self, url: url::Url) -> Result<Vec<u8>, WechatError> {
        let mut resp = self.http.get(url).send().await.map_err(map_reqwest)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(WechatError::Status(status.as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(WechatError::Garbage);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(WechatError::Garbage);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl WechatError {
    fn kind_name(&self) -> &'static str {
        match self {
            WechatError::Unreachable => "unreachable",
            WechatError::Timeout => "timeout",
            WechatError::Status(_) => "http status",
            WechatError::Garbage => "garbage",
            WechatError::Api { .. } => "api error",
        }
    }
}

/// Maps a reqwest error to a variant. Never formats it: its text holds the URL with the secret.
fn map_reqwest(e: reqwest::Error) -> WechatError {
    if e.is_timeout() {
        WechatError::Timeout
    } else {
        WechatError::Unreachable
    }
}

/// Escapes raw control characters (U+0000–U+001F) found inside JSON strings as `\u00XX`, leaving
/// everything outside strings (structural whitespace included) untouched. Borrows when there is
/// nothing to do.
pub fn sanitize_json(s: &str) -> Cow<'_, str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut in_string = false;
    let mut escaped = false;
    // Byte-wise is fine: '"', '\\' and control characters are ASCII, and UTF-8 continuation or
    // lead bytes are all >= 0x80.
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if !in_string {
            if b == b'"' {
                in_string = true;
            }
            continue;
        }
        if escaped {
            escaped = false;
            if b >= 0x20 {
                continue;
            }
        } else if b == b'\\' {
            escaped = true;
            continue;
        } else if b == b'"' {
            in_string = false;
            continue;
        }
        if b < 0x20 {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len() + 16));
            o.push_str(&s[last..i]);
            o.push_str("\\u00");
            o.push(char::from(HEX[usize::from(b >> 4)]));
            o.push(char::from(HEX[usize::from(b & 0xf)]));
            last = i + 1;
        }
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[last..]);
            Cow::Owned(o)
        }
    }
}

/// Replaces every occurrence of the values we sent with `***`, drops control characters and
/// bounds the length.
fn scrub(msg: &str, sensitive: &[&str]) -> String {
    let mut m: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERRMSG)
        .collect();
    for s in sensitive {
        if !s.is_empty() && m.contains(s) {
            m = m.replace(s, "***");
        }
    }
    m
}

fn parse_errcode(v: &Value) -> Result<Option<i64>, WechatError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
                    _ => Err(WechatError::Garbage),
                }
            }
        }
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| WechatError::Garbage),
        _ => Err(WechatError::Garbage),
    }
}

/// Body → JSON object, with `errcode` checked first. Returns the object and whether `errcode`
/// was present (and 0).
fn parse_object(
    body: &[u8],
    sensitive: &[&str],
) -> Result<(Map<String, Value>, bool), WechatError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(WechatError::Garbage);
    }
    let text = sanitize_json(text);
    let value: Value = serde_json::from_str(&text).map_err(|_| WechatError::Garbage)?;
    let Value::Object(map) = value else {
        return Err(WechatError::Garbage);
    };
    let errcode = match map.get("errcode") {
        Some(v) => parse_errcode(v)?,
        None => None,
    };
    if let Some(code) = errcode {
        if code != 0 {
            let msg = map.get("errmsg").and_then(Value::as_str).unwrap_or("");
            return Err(WechatError::Api {
                code,
                msg: scrub(msg, sensitive),
            });
        }
    }
    Ok((map, errcode.is_some()))
}

fn required_str(map: &Map<String, Value>, key: &str) -> Result<String, WechatError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(WechatError::Garbage),
    }
}

fn lenient_str(map: &Map<String, Value>, key: &str) -> String {
    match map.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn optional_str(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn lenient_i64(map: &Map<String, Value>, key: &str) -> Option<i64> {
    match map.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses an `/sns/oauth2/access_token` or `/sns/oauth2/refresh_token` body.
pub fn parse_oauth_token(body: &[u8], sensitive: &[&str]) -> Result<OAuthToken, WechatError> {
    let (map, _) = parse_object(body, sensitive)?;
    Ok(OAuthToken {
        access_token: required_str(&map, "access_token")?,
        expires_in: lenient_i64(&map, "expires_in").unwrap_or(7200),
        refresh_token: lenient_str(&map, "refresh_token"),
        openid: required_str(&map, "openid")?,
        scope: lenient_str(&map, "scope"),
        unionid: optional_str(&map, "unionid"),
    })
}

/// Parses an `/sns/userinfo` body.
pub fn parse_userinfo(body: &[u8], sensitive: &[&str]) -> Result<UserInfo, WechatError> {
    let (map, _) = parse_object(body, sensitive)?;
    Ok(UserInfo {
        openid: required_str(&map, "openid")?,
        nickname: lenient_str(&map, "nickname"),
        headimgurl: lenient_str(&map, "headimgurl"),
        unionid: optional_str(&map, "unionid"),
    })
}

/// Parses an `/sns/jscode2session` body.
pub fn parse_jscode2session(body: &[u8], sensitive: &[&str]) -> Result<JsSession, WechatError> {
    let (map, _) = parse_object(body, sensitive)?;
    Ok(JsSession {
        openid: required_str(&map, "openid")?,
        session_key: required_str(&map, "session_key")?,
        unionid: optional_str(&map, "unionid"),
    })
}

/// Parses an `/sns/auth` body: `{"errcode":0,"errmsg":"ok"}`.
pub fn parse_check(body: &[u8], sensitive: &[&str]) -> Result<(), WechatError> {
    let (_, had_errcode) = parse_object(body, sensitive)?;
    if had_errcode {
        Ok(())
    } else {
        Err(WechatError::Garbage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_leaves_clean_json_borrowed() {
        let s = "{\n\t\"a\": \"b\\n\\\"c\",\r\n \"d\": [1, 2]\n}";
        assert!(matches!(sanitize_json(s), Cow::Borrowed(_)));
        assert!(matches!(sanitize_json(""), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_escapes_control_characters_in_strings_only() {
        let s = "{\n\"nickname\":\"王小明\u{7}\",\t\"x\":\"a\u{0}b\u{1f}\u{9}\"}\n";
        let out = sanitize_json(s);
        assert_eq!(
            out,
            "{\n\"nickname\":\"王小明\\u0007\",\t\"x\":\"a\\u0000b\\u001f\\u0009\"}\n"
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["nickname"], "王小明\u{7}");
        assert_eq!(v["x"], "a\u{0}b\u{1f}\t");
    }

    #[test]
    fn sanitize_tracks_escaped_quotes_and_backslashes() {
        // The \" does not end the string; the \\ does not escape the closing quote.
        let s = "{\"a\":\"x\\\"\u{1}\",\"b\":\"y\\\\\",\"c\":\"\u{2}\"}";
        let out = sanitize_json(s);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "x\"\u{1}");
        assert_eq!(v["b"], "y\\");
        assert_eq!(v["c"], "\u{2}");
    }

    #[test]
    fn sanitize_handles_emoji_and_unterminated_input() {
        let s = "{\"n\":\"🐼\u{8}😀\"}";
        let v: Value = serde_json::from_str(&sanitize_json(s)).unwrap();
        assert_eq!(v["n"], "🐼\u{8}😀");
        // Must not panic on truncated input.
        let _ = sanitize_json("{\"n\":\"abc\\");
        let _ = sanitize_json("\"\u{1}");
        let _ = sanitize_json("\\\u{1}\"\\\u{1}");
    }

    #[test]
    fn errcode_first_number_or_string() {
        let e =
            parse_oauth_token(br#"{"errcode":40029,"errmsg":"invalid code"}"#, &[]).unwrap_err();
        assert_eq!(
            e,
            WechatError::Api {
                code: 40029,
                msg: "invalid code".into()
            }
        );
        assert_eq!(e.class(), ErrorClass::Relogin);
        let e = parse_oauth_token(br#"{"errcode":"40163","errmsg":"code been used"}"#, &[])
            .unwrap_err();
        assert_eq!(e.errcode(), Some(40163));
        let e = parse_userinfo(br#"{"errcode":" -1 ","errmsg":"system error"}"#, &[]).unwrap_err();
        assert_eq!(e.errcode(), Some(-1));
        assert_eq!(e.class(), ErrorClass::Busy);
        // errcode wins even when success fields are present.
        let e = parse_jscode2session(
            br#"{"openid":"o1","session_key":"k","errcode":40226,"errmsg":"risky"}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Forbidden);
        // errcode 0 is success.
        let s =
            parse_jscode2session(br#"{"errcode":0,"openid":"o1","session_key":"k"}"#, &[]).unwrap();
        assert_eq!(s.openid, "o1");
        // Non-numeric errcode is garbage.
        assert_eq!(
            parse_userinfo(br#"{"errcode":"abc","openid":"o"}"#, &[]).unwrap_err(),
            WechatError::Garbage
        );
    }

    #[test]
    fn errmsg_is_scrubbed_of_sent_values() {
        let e = parse_oauth_token(
            b"{\"errcode\":40125,\"errmsg\":\"invalid appsecret SEKRET for code CODE123\x07\"}",
            &["SEKRET", "CODE123"],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("SEKRET") && !text.contains("CODE123"),
            "{text}"
        );
        assert!(text.contains("40125"));
        assert!(e.is_config_error());
        assert_eq!(e.class(), ErrorClass::Upstream);
    }

    #[test]
    fn oauth_token_parses() {
        let t = parse_oauth_token(
            br#"{"access_token":"AT","expires_in":7200,"refresh_token":"RT","openid":"o1","scope":"snsapi_login","unionid":"u1","is_snapshotuser":1}"#,
            &[],
        )
        .unwrap();
        assert_eq!(t.access_token, "AT");
        assert_eq!(t.expires_in, 7200);
        assert_eq!(t.unionid.as_deref(), Some("u1"));
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("AT\"") && !dbg.contains("RT"), "{dbg}");
        let t = parse_oauth_token(
            br#"{"access_token":"AT","expires_in":"7200","openid":"o1","scope":"snsapi_base","unionid":""}"#,
            &[],
        )
        .unwrap();
        assert_eq!(t.unionid, None);
        assert_eq!(t.refresh_token, "");
        assert_eq!(
            parse_oauth_token(br#"{"openid":"o1"}"#, &[]).unwrap_err(),
            WechatError::Garbage
        );
    }

    #[test]
    fn userinfo_lenient() {
        let body = "{\"openid\":\"o1\",\"nickname\":\"王小明\u{7}\",\"sex\":\"1\",\"province\":null,\
                    \"city\":1,\"privilege\":\"x\",\"headimgurl\":\"https://x/0\",\"unionid\":\"u\"}";
        let u = parse_userinfo(body.as_bytes(), &[]).unwrap();
        assert_eq!(u.nickname, "王小明\u{7}");
        assert_eq!(u.headimgurl, "https://x/0");
        assert_eq!(u.unionid.as_deref(), Some("u"));

        let body =
            r#"{"openid":"o1","nickname":"Alice 🐼 小爱 \ud83d\ude00","sex":0,"headimgurl":""}"#;
        let u = parse_userinfo(body.as_bytes(), &[]).unwrap();
        assert_eq!(u.nickname, "Alice 🐼 小爱 😀");
        assert_eq!(u.unionid, None);

        // Invalid UTF-8 (e.g. a truncated emoji) is replaced, not fatal.
        let mut body = b"{\"openid\":\"o1\",\"nickname\":\"a".to_vec();
        body.extend_from_slice(&[0xf0, 0x9f, 0x90]);
        body.extend_from_slice(b"\"}");
        let u = parse_userinfo(&body, &[]).unwrap();
        assert!(u.nickname.starts_with('a'));

        // BOM and surrounding whitespace.
        let u = parse_userinfo("\u{feff}  {\"openid\":\"o1\"} \n".as_bytes(), &[]).unwrap();
        assert_eq!(u.nickname, "");
    }

    #[test]
    fn garbage_bodies() {
        for body in [
            &b""[..],
            b"   ",
            b"<html><body>502 Bad Gateway</body></html>",
            // "system busy" in GBK, not UTF-8, not JSON.
            &[0xcf, 0xb5, 0xcd, 0xb3, 0xc3, 0xa6],
            b"[]",
            b"null",
            b"{\"openid\":",
            b"{\"openid\":\"\"}",
            b"{\"openid\":123}",
        ] {
            assert_eq!(
                parse_userinfo(body, &[]).unwrap_err(),
                WechatError::Garbage,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn check_token_bodies() {
        assert_eq!(parse_check(br#"{"errcode":0,"errmsg":"ok"}"#, &[]), Ok(()));
        assert_eq!(
            parse_check(br#"{"errcode":40001,"errmsg":"invalid credential"}"#, &[])
                .unwrap_err()
                .class(),
            ErrorClass::Relogin
        );
        assert_eq!(parse_check(b"{}", &[]).unwrap_err(), WechatError::Garbage);
    }

    #[test]
    fn classes() {
        let api = |code| WechatError::Api {
            code,
            msg: String::new(),
        };
        for c in [40029, 40163, 42003, 40001, 40014, 42007, 40030, 42002] {
            assert_eq!(api(c).class(), ErrorClass::Relogin, "{c}");
        }
        for c in [-1, 45011] {
            assert_eq!(api(c).class(), ErrorClass::Busy, "{c}");
        }
        for c in [48001, 50001, 40226] {
            assert_eq!(api(c).class(), ErrorClass::Forbidden, "{c}");
        }
        for c in [40013, 40125, 41002, 41004, 40003, 42001, 99999] {
            assert_eq!(api(c).class(), ErrorClass::Upstream, "{c}");
        }
        for c in [40013, 40125, 41002, 41004] {
            assert!(api(c).is_config_error());
        }
        assert!(!api(40029).is_config_error());
        for e in [
            WechatError::Unreachable,
            WechatError::Timeout,
            WechatError::Status(500),
            WechatError::Status(404),
            WechatError::Garbage,
        ] {
            assert_eq!(e.class(), ErrorClass::Upstream);
            assert!(!e.is_config_error());
            assert_eq!(e.errcode(), None);
        }
    }

    #[test]
    fn new_validates_api_base() {
        assert!(WechatClient::new("https://api.weixin.qq.com", Duration::from_secs(5)).is_ok());
        let c = WechatClient::new("http://127.0.0.1:9/", Duration::from_secs(5)).unwrap();
        assert_eq!(c.api_base(), "http://127.0.0.1:9");
        assert_eq!(
            WechatClient::new("not a url", Duration::from_secs(5)).unwrap_err(),
            WechatError::Unreachable
        );
        assert_eq!(
            WechatClient::new("ftp://x", Duration::from_secs(5)).unwrap_err(),
            WechatError::Unreachable
        );
        let creds = AppCreds {
            appid: "wx1".into(),
            secret: "s3cr3t".into(),
        };
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    /// JSON-ish bodies: objects with the keys the parsers read, values of every kind, raw
    /// control characters and stray quotes and backslashes.
    fn jsonish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("errcode".to_string()),
            Just("errmsg".to_string()),
            Just("openid".to_string()),
            Just("unionid".to_string()),
            Just("session_key".to_string()),
            Just("access_token".to_string()),
            Just("expires_in".to_string()),
            Just("nickname".to_string()),
            "[a-z_]{1,8}",
        ];
        let val = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            "[\\PC\\x00-\\x1f\"\\\\]{0,12}".prop_map(|s| format!("\"{s}\"")),
            Just("null".to_string()),
            Just("[1,{}]".to_string()),
            Just("1e999".to_string()),
        ];
        proptest::collection::vec((key, val), 0..6).prop_map(|kv| {
            let inner: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(","))
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// Any bytes: every parser answers (a value or an error), never panics.
        #[test]
        fn parsers_never_panic_on_bytes(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_oauth_token(&body, &["s"]);
            let _ = parse_userinfo(&body, &["s"]);
            let _ = parse_jscode2session(&body, &["s"]);
            let _ = parse_check(&body, &["s"]);
        }

        /// JSON-shaped bodies reach the field readers; errmsg never carries a sensitive value.
        #[test]
        fn parsers_never_panic_on_jsonish(body in jsonish(), secret in "[a-z]{4,8}") {
            let body = body.replace("SECRET", &secret);
            for r in [
                parse_oauth_token(body.as_bytes(), &[&secret]).err(),
                parse_userinfo(body.as_bytes(), &[&secret]).err(),
                parse_jscode2session(body.as_bytes(), &[&secret]).err(),
                parse_check(body.as_bytes(), &[&secret]).err(),
            ]
            .into_iter()
            .flatten()
            {
                if let WechatError::Api { msg, .. } = r {
                    proptest::prop_assert!(!msg.contains(&secret));
                    proptest::prop_assert!(msg.chars().count() <= MAX_ERRMSG);
                }
            }
        }

        /// sanitize_json: no raw control character left inside a string, the rest unchanged,
        /// and valid JSON stays the same JSON.
        #[test]
        fn sanitize_any_text(s in "[\\PC\\x00-\\x1f\"\\\\{}:,]{0,64}") {
            let out = sanitize_json(&s);
            if !s.bytes().any(|b| b < 0x20) {
                proptest::prop_assert_eq!(out.as_ref(), s.as_str());
            }
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                proptest::prop_assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(v));
            }
        }
    }
}
