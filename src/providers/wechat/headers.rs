//! WeChat's identity headers for the upstream: `X-WeChat-OpenId`, `-UnionId`, `-AppId`,
//! `-Source`, `-Nickname` (percent-encoded UTF-8), `-Avatar` and, with `headers.sign_secret`,
//! `-Signature`. The values are zero-copy slices of the session record where possible.

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use crate::providers::provider::IdentityHeaders;
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

pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The nickname's UTF-8 bytes, percent-encoded.
pub fn encode_nickname(nick: &[u8]) -> String {
    // Exact size up front: one allocation, no regrowth (this runs per request).
    let len = nick
        .iter()
        .map(|&b| if is_unreserved(b) { 1 } else { 3 })
        .sum();
    let mut out = String::with_capacity(len);
    out.extend(percent_encode(nick, NICK));
    out
}

/// `X-WeChat-Nickname`: zero-copy when there is nothing to encode.
fn nickname_header(s: &Session) -> Option<HeaderValue> {
    let raw = s.nickname_bytes();
    if raw.iter().all(|&b| is_unreserved(b)) {
        return s.nickname_header_raw();
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(encode_nickname(raw))).ok()
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

/// The identity headers for `s` (unsigned); `source` is the name of its app kind.
pub(crate) fn identity(s: &Session, source: &'static str, out: &mut IdentityHeaders) {
    let mut add = |name: &'static HeaderName, v: Option<HeaderValue>| {
        if let Some(v) = v {
            out.push((name, v));
        }
    };
    add(&OPENID, s.openid_header());
    add(&UNIONID, s.unionid_header());
    add(&APPID, s.appid_header());
    add(&SOURCE, Some(HeaderValue::from_static(source)));
    add(&NICKNAME, nickname_header(s));
    add(&AVATAR, s.avatar_header());
}

/// `X-WeChat-Signature` for `s` at `now`.
pub(crate) fn signature_header(
    s: &Session,
    secret: &[u8],
    now: u64,
) -> Option<(&'static HeaderName, HeaderValue)> {
    let sig = signature(secret, now, s.unionid().unwrap_or(""), s.openid());
    HeaderValue::from_str(&sig).ok().map(|v| (&SIGNATURE, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::NewSession;

    #[test]
    fn nickname_encoding() {
        assert_eq!(
            encode_nickname("Alice 🐼".as_bytes()),
            "Alice%20%F0%9F%90%BC"
        );
        assert_eq!(encode_nickname("王".as_bytes()), "%E7%8E%8B");
        assert_eq!(encode_nickname("a\r\nb".as_bytes()), "a%0D%0Ab");
    }

    #[test]
    fn signature_format() {
        let s = signature(b"secret", 1700000000, "u1", "o1");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature(b"secret", 1700000000, "u1", "o2"));
    }

    /// The headers of a mini program's session, signed with `secret`.
    fn headers(s: &Session, secret: Option<&[u8]>) -> http::HeaderMap {
        let mut out = IdentityHeaders::new();
        identity(s, "mini_program", &mut out);
        out.extend(secret.and_then(|k| signature_header(s, k, 1)));
        out.into_iter().map(|(n, v)| (n.clone(), v)).collect()
    }

    #[test]
    fn headers_of_a_session() {
        let n = NewSession {
            openid: "oOpen",
            unionid: None,
            appid: "wxA",
            origin: crate::providers::wechat::app::Source::MiniProgram.into(),
            nickname: "Alice 🐼\u{7}",
            avatar: "https://a/b/132",
            expires_at: 99,
        };
        let h = headers(&Session::new(&n), None);
        assert_eq!(h[&NICKNAME], "Alice%20%F0%9F%90%BC%07");
        assert_eq!(h[&SOURCE], "mini_program");
        assert_eq!(h[&OPENID], "oOpen");
        assert!(!h.contains_key(&UNIONID) && !h.contains_key(&SIGNATURE));
        let plain = Session::new(&NewSession {
            nickname: "Bob_1.x~",
            ..n
        });
        let h = headers(&plain, Some(b"k"));
        assert_eq!(h[&NICKNAME], "Bob_1.x~");
        assert!(h.contains_key(&SIGNATURE));
    }
}
