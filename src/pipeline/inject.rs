//! Phase "inject": the identity headers the gateway vouches for (`X-WeChat-*`), built from the
//! session record and signed when `headers.sign_secret` is set.

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use crate::session::Session;

pub(crate) static OPENID: HeaderName = HeaderName::from_static("x-wechat-openid");
pub(crate) static UNIONID: HeaderName = HeaderName::from_static("x-wechat-unionid");
pub(crate) static APPID: HeaderName = HeaderName::from_static("x-wechat-appid");
pub(crate) static SOURCE: HeaderName = HeaderName::from_static("x-wechat-source");
pub(crate) static NICKNAME: HeaderName = HeaderName::from_static("x-wechat-nickname");
pub(crate) static AVATAR: HeaderName = HeaderName::from_static("x-wechat-avatar");
pub(crate) static SIGNATURE: HeaderName = HeaderName::from_static("x-wechat-signature");

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
pub(crate) fn signature(secret: &[u8], t: u64, unionid: &str, openid: &str) -> String {
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
pub(crate) fn insert_identity(
    headers: &mut HeaderMap,
    s: &Session,
    sign_secret: Option<&[u8]>,
    now: u64,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
