//! Identity headers: removing spoofed `X-WeChat-*` headers from every request, building the
//! ones the gateway vouches for, signing them, and keeping the gateway's own credentials
//! (cookies, bearer token) away from the upstream.

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use crate::session::Session;

pub static OPENID: HeaderName = HeaderName::from_static("x-wechat-openid");
pub static UNIONID: HeaderName = HeaderName::from_static("x-wechat-unionid");
pub static APPID: HeaderName = HeaderName::from_static("x-wechat-appid");
pub static SOURCE: HeaderName = HeaderName::from_static("x-wechat-source");
pub static NICKNAME: HeaderName = HeaderName::from_static("x-wechat-nickname");
pub static AVATAR: HeaderName = HeaderName::from_static("x-wechat-avatar");
pub static SIGNATURE: HeaderName = HeaderName::from_static("x-wechat-signature");

const PREFIX: &[u8] = b"x-wechat-";

/// True when a header name reads as `X-WeChat-*` with `_` read as `-` (names are lowercase
/// in `http`). Such headers may only come from the gateway.
pub fn is_identity_header(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > PREFIX.len()
        && b[..PREFIX.len()]
            .iter()
            .zip(PREFIX)
            .all(|(&c, &p)| c.to_ascii_lowercase() == p || (c == b'_' && p == b'-'))
}

/// Remove every spoofed identity header. Allocates only when one is present.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| is_identity_header(k.as_str())) {
        return;
    }
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

/// Characters kept as they are in `X-WeChat-Nickname`: RFC 3986 unreserved.
const NICK: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

pub fn encode_nickname(nick: &str) -> String {
    // Exact size up front: one allocation, no regrowth (this runs per request).
    let len = nick
        .bytes()
        .map(|b| if is_unreserved(b) { 1 } else { 3 })
        .sum();
    let mut out = String::with_capacity(len);
    out.extend(utf8_percent_encode(nick, NICK));
    out
}

/// `t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<unionid>.<openid>")>`
pub fn signature(secret: &[u8], t: u64, unionid: &str, openid: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(unionid.as_bytes());
    mac.update(b".");
    mac.update(openid.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Write the identity headers for `s` (after stripping, so nothing spoofed survives).
/// The values are zero-copy slices of the session record: no allocation per request.
pub fn insert_identity(headers: &mut HeaderMap, s: &Session, sign_secret: Option<&[u8]>, now: u64) {
    if let Some(v) = s.openid_header() {
        headers.insert(OPENID.clone(), v);
    }
    if let Some(v) = s.unionid_header() {
        headers.insert(UNIONID.clone(), v);
    }
    if let Some(v) = s.appid_header() {
        headers.insert(APPID.clone(), v);
    }
    headers.insert(
        SOURCE.clone(),
        HeaderValue::from_static(s.source().as_str()),
    );
    if let Some(v) = s.nickname_header() {
        headers.insert(NICKNAME.clone(), v);
    }
    if let Some(v) = s.avatar_header() {
        headers.insert(AVATAR.clone(), v);
    }
    if let Some(secret) = sign_secret {
        let sig = signature(secret, now, s.unionid().unwrap_or(""), s.openid());
        if let Ok(v) = HeaderValue::from_str(&sig) {
            headers.insert(SIGNATURE.clone(), v);
        }
    }
}

/// Drop the named cookies from every `Cookie` header; drop a header left empty.
/// One pass to look; allocates only when one of `names` is there next to other cookies.
///
/// Bytes, not `str`: a header with a raw UTF-8 cookie value (browsers send them as the site set
/// them) is parsed like any other, so the gateway's cookies never ride along in it.
pub fn strip_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let ours = |p: &[u8]| names.iter().any(|n| n.as_bytes() == split_part(p).0);
    let (mut any_ours, mut others) = (false, false);
    for v in headers.get_all(COOKIE) {
        for p in cookie_parts(v.as_bytes()) {
            if ours(p) {
                any_ours = true;
            } else {
                others = true;
            }
        }
    }
    if !any_ours {
        return;
    }
    // Only the gateway's cookies (an API client, or a site with no cookies of its own): the
    // header goes, nothing to rebuild.
    if !others {
        headers.remove(COOKIE);
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            let rest: Vec<&[u8]> = cookie_parts(v.as_bytes()).filter(|p| !ours(p)).collect();
            (!rest.is_empty())
                .then(|| HeaderValue::from_bytes(&rest.join(&b"; "[..])).ok())
                .flatten()
        })
        .collect();
    headers.remove(COOKIE);
    for v in kept {
        headers.append(COOKIE, v);
    }
}

/// The non-empty `;`-separated parts of one Cookie header value, trimmed.
fn cookie_parts(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// A `name=value` part as its name (the whole part when it has no `=`) and its value.
fn split_part(p: &[u8]) -> (&[u8], Option<&[u8]>) {
    match p.iter().position(|&b| b == b'=') {
        Some(i) => (p[..i].trim_ascii(), Some(p[i + 1..].trim_ascii())),
        None => (p, None),
    }
}

/// `name=value` pairs of one Cookie header value (parts without `=` are skipped; quotes around
/// a value are removed).
pub fn cookie_pairs(v: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    cookie_parts(v).filter_map(|p| {
        let (name, value) = split_part(p);
        let mut value = value?;
        while let [b'"', rest @ ..] = value {
            value = rest;
        }
        while let [rest @ .., b'"'] = value {
            value = rest;
        }
        Some((name, value))
    })
}

/// The value of cookie `name` in the request, first occurrence (`None` when that value is not
/// UTF-8: none of the gateway's cookies is).
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names() {
        for n in [
            "x-wechat-unionid",
            "x_wechat_unionid",
            "x-wechat_openid",
            "x_wechat-anything",
            "X-WeChat-Foo",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in [
            "x-wechat",
            "x-wechat-",
            "x-wechatty",
            "wechat-unionid",
            "x-we-chat-id",
            "content-type",
        ] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    #[test]
    fn strips_spoofs_only() {
        let mut h = HeaderMap::new();
        h.insert("x-wechat-unionid", HeaderValue::from_static("evil"));
        h.insert("x_wechat_openid", HeaderValue::from_static("evil"));
        h.insert("x-request-id", HeaderValue::from_static("keep"));
        strip_identity_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-request-id"));
    }

    #[test]
    fn nickname_encoding() {
        assert_eq!(encode_nickname("Alice 🐼"), "Alice%20%F0%9F%90%BC");
        assert_eq!(encode_nickname("王"), "%E7%8E%8B");
        assert_eq!(encode_nickname("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn signature_format() {
        let s = signature(b"secret", 1700000000, "u1", "o1");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature(b"secret", 1700000000, "u1", "o2"));
    }

    #[test]
    fn cookie_stripping() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; _wxgate=sid; b=2"));
        h.append(COOKIE, HeaderValue::from_static("_wxgate_login=x"));
        strip_cookies(&mut h, &["_wxgate", "_wxgate_login"]);
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_static("a=1; b=2")]);

        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("_wxgate_other=1; x=_wxgate"),
        );
        strip_cookies(&mut h, &["_wxgate"]);
        assert_eq!(h.get(COOKIE).unwrap(), "_wxgate_other=1; x=_wxgate");

        // Nothing but the gateway's own: no Cookie header at all upstream.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("_wxgate=sid; "));
        h.append(COOKIE, HeaderValue::from_static("_wxgate_login=x"));
        strip_cookies(&mut h, &["_wxgate", "_wxgate_login"]);
        assert!(!h.contains_key(COOKIE));
        // A non-UTF-8 value is not ours: kept as it is.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("_wxgate=sid"));
        h.append(COOKIE, HeaderValue::from_bytes(b"z=\xff").unwrap());
        strip_cookies(&mut h, &["_wxgate"]);
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_bytes(b"z=\xff").unwrap()]);

        // Ours next to a raw UTF-8 cookie in the same header: still taken out.
        let mut h = HeaderMap::new();
        let mixed = "name=张三; _wxgate=sid;b=2";
        h.append(COOKIE, HeaderValue::from_bytes(mixed.as_bytes()).unwrap());
        strip_cookies(&mut h, &["_wxgate"]);
        assert_eq!(
            h.get(COOKIE).unwrap().as_bytes(),
            "name=张三; b=2".as_bytes()
        );

        // Nothing of ours: untouched, even odd spacing.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static(" a=1 ;;b=2 "));
        strip_cookies(&mut h, &["_wxgate"]);
        assert_eq!(h.get(COOKIE).unwrap(), " a=1 ;;b=2 ");
    }

    #[test]
    fn cookie_values() {
        let pairs: Vec<_> = cookie_pairs(b" a = 1 ;flag; q=\"x y\"; e=; =v").collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (b"q", b"x y"),
                (b"e", b""),
                (b"", b"v")
            ]
        );
        let mut h = HeaderMap::new();
        let mixed = "name=张三; _wxgate=sid";
        h.insert(COOKIE, HeaderValue::from_bytes(mixed.as_bytes()).unwrap());
        assert_eq!(find_cookie(&h, "_wxgate"), Some("sid"));
        assert_eq!(find_cookie(&h, "name"), Some("张三"));
        h.insert(COOKIE, HeaderValue::from_bytes(b"_wxgate=\xff").unwrap());
        assert_eq!(find_cookie(&h, "_wxgate"), None);
    }

    #[test]
    fn finds_cookie_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("x=1; _wxgate=abc"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok"),
        );
        assert_eq!(find_cookie(&h, "_wxgate"), Some("abc"));
        assert_eq!(find_cookie(&h, "_wx"), None);
        assert_eq!(bearer_token(&h), Some("tok"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer_token(&h), None);
    }
}
