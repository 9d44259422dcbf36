//! The lenient WeChat JSON reader: any content type, lossy UTF-8, raw control characters inside
//! strings tolerated, `errcode` checked before anything else (number or numeric string), and
//! `errmsg` scrubbed of every value that was sent.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::error::WechatError;

/// Longest `errmsg` kept in [`WechatError::Api`].
const MAX_ERRMSG: usize = 200;

/// Answer of `/sns/oauth2/access_token` and `/sns/oauth2/refresh_token`. `Debug` hides tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub openid: String,
    pub scope: String,
    pub unionid: Option<String>,
    /// `is_snapshotuser: 1`: a login from WeChat's snapshot page (快照页), a virtual identity.
    pub is_snapshotuser: bool,
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
            .field("is_snapshotuser", &self.is_snapshotuser)
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
    /// `is_snapshotuser: 1` (see [`OAuthToken::is_snapshotuser`]).
    pub is_snapshotuser: bool,
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
    // Replaced before the message is cut: a value cut in half would no longer match.
    let mut m = msg.to_string();
    for s in sensitive {
        if !s.is_empty() && m.contains(s) {
            m = m.replace(s, "***");
        }
    }
    m.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERRMSG)
        .collect()
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
pub(super) fn parse_object(
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

/// `is_snapshotuser` is 1 (number, numeric string or `true`): WeChat's snapshot page.
fn is_snapshotuser(map: &Map<String, Value>) -> bool {
    map.get("is_snapshotuser") == Some(&Value::Bool(true))
        || lenient_i64(map, "is_snapshotuser") == Some(1)
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
        is_snapshotuser: is_snapshotuser(&map),
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
        is_snapshotuser: is_snapshotuser(&map),
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
    use crate::common::error::ErrorClass;

    #[test]
    fn a_secret_across_the_cut_is_still_taken_out() {
        // The secret starts before MAX_ERRMSG and ends after it.
        let secret = "S3CR3T-VALUE-0123456789";
        let msg = format!("{}{secret} more", "x".repeat(MAX_ERRMSG - 5));
        let out = scrub(&msg, &[secret]);
        assert!(!out.contains(&secret[..5]), "{out}");
        assert!(out.chars().count() <= MAX_ERRMSG);
    }

    #[test]
    fn snapshot_user_flag() {
        let tok = |extra: &str| {
            parse_oauth_token(
                format!(r#"{{"access_token":"A","openid":"o","scope":"snsapi_base"{extra}}}"#)
                    .as_bytes(),
                &[],
            )
            .unwrap()
            .is_snapshotuser
        };
        assert!(!tok(""));
        assert!(tok(r#","is_snapshotuser":1"#));
        assert!(tok(r#","is_snapshotuser":"1""#));
        assert!(tok(r#","is_snapshotuser":true"#));
        assert!(!tok(r#","is_snapshotuser":0"#));
        assert!(!tok(r#","is_snapshotuser":null"#));
        let info =
            parse_userinfo(br#"{"openid":"o","nickname":"n","is_snapshotuser":1}"#, &[]).unwrap();
        assert!(info.is_snapshotuser);
    }

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
        assert!(matches!(e, WechatError::Api { code: 40163, .. }));
        let e = parse_userinfo(br#"{"errcode":" -1 ","errmsg":"system error"}"#, &[]).unwrap_err();
        assert!(matches!(e, WechatError::Api { code: -1, .. }));
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
