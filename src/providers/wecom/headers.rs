//! WeCom's identity headers for the upstream: `X-WeCom-UserId`, `X-WeCom-CorpId` and
//! `X-WeChat-Source: wecom` (no OpenId / UnionId: a member is known by the userid), and
//! `X-WeChat-UserId` when account linking gave the session the app's own user id. A
//! non-member (`wecom.allow_non_members`) has no userid: `X-WeCom-OpenId` carries the openid
//! WeCom gave (never `X-WeChat-OpenId`: a WeCom openid is not a WeChat one). With
//! `headers.sign_secret`, `X-WeChat-Signature` signs the userid (or that openid) in the
//! openid's place: `hmac(secret, "<t>..<userid>")`.

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use crate::providers::provider::IdentityHeaders;
use crate::session::Session;

pub(crate) static USERID: HeaderName = HeaderName::from_static("x-wecom-userid");
pub(crate) static CORPID: HeaderName = HeaderName::from_static("x-wecom-corpid");
static SOURCE: HeaderName = HeaderName::from_static("x-wechat-source");
static OPENID: HeaderName = HeaderName::from_static("x-wecom-openid");
static SIGNATURE: HeaderName = HeaderName::from_static("x-wechat-signature");

/// `t=<unix>,v1=<hex hmac-sha256(secret, "<t>..<id>")>`: X-WeChat-Signature's formula with no
/// unionid and the WeCom id in the openid's place.
fn signature(secret: &[u8], t: u64, id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(format!("{t}..{id}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The session's id (userid, or a non-member's openid) is its record's openid field, the
/// corp id its appid field.
pub(super) fn identity(s: &Session, member: bool, out: &mut IdentityHeaders) {
    if let Some(v) = s.openid_header() {
        out.push((if member { &USERID } else { &OPENID }, v));
    }
    if let Some(v) = s.appid_header() {
        out.push((&CORPID, v));
    }
    out.push((&SOURCE, HeaderValue::from_static("wecom")));
}

/// `X-WeChat-Signature` for `s` at `now`.
pub(super) fn signature_header(
    s: &Session,
    secret: &[u8],
    now: u64,
) -> Option<(&'static HeaderName, HeaderValue)> {
    HeaderValue::from_str(&signature(secret, now, s.openid()))
        .ok()
        .map(|v| (&SIGNATURE, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{NewSession, Origin};

    fn session(id: &str) -> Session {
        Session::new(&NewSession {
            openid: id,
            unionid: None,
            appid: "ww01",
            origin: Origin {
                provider: 1,
                kind: 0,
            },
            nickname: "",
            avatar: "",
            expires_at: 9,
        })
    }

    /// The headers of a session, signed with `secret` at 1700000000.
    fn headers(s: &Session, member: bool, secret: Option<&[u8]>) -> http::HeaderMap {
        let mut out = IdentityHeaders::new();
        identity(s, member, &mut out);
        out.extend(secret.and_then(|k| signature_header(s, k, 1700000000)));
        out.into_iter().map(|(n, v)| (n.clone(), v)).collect()
    }

    #[test]
    fn member_and_non_member() {
        let h = headers(&session("zhangsan"), true, None);
        assert_eq!(h[&USERID], "zhangsan");
        assert_eq!(h[&CORPID], "ww01");
        assert_eq!(h[&SOURCE], "wecom");
        assert!(!h.contains_key(&OPENID) && !h.contains_key("x-wechat-unionid"));
        assert!(!h.contains_key("x-wechat-openid"));
        assert!(!h.contains_key(&SIGNATURE));
        let h = headers(&session("oX"), false, Some(b"k"));
        assert_eq!(h[&OPENID], "oX");
        assert_eq!(OPENID.as_str(), "x-wecom-openid");
        assert!(!h.contains_key(&USERID) && !h.contains_key("x-wechat-openid"));
        let sig = h[&SIGNATURE].to_str().unwrap();
        assert_eq!(sig, signature(b"k", 1700000000, "oX"));
        assert!(sig.starts_with("t=1700000000,v1=") && sig.len() == 16 + 64);
    }
}
