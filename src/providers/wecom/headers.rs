//! WeCom's identity headers for the upstream: `X-WeCom-UserId`, `X-WeCom-CorpId` and
//! `X-WeChat-Source: wecom` (no OpenId / UnionId: a member is known by the userid), and
//! `X-WeChat-UserId` when account linking gave the session the app's own user id. A
//! non-member (`wecom.allow_non_members`) has no userid: `X-WeChat-OpenId` carries the openid
//! WeCom gave. With `headers.sign_secret`, `X-WeChat-Signature` signs the userid in the
//! openid's place: `hmac(secret, "<t>..<userid>")`.

use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use crate::session::Session;

pub(crate) static USERID: HeaderName = HeaderName::from_static("x-wecom-userid");
pub(crate) static CORPID: HeaderName = HeaderName::from_static("x-wecom-corpid");
static SOURCE: HeaderName = HeaderName::from_static("x-wechat-source");
static OPENID: HeaderName = HeaderName::from_static("x-wechat-openid");
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
pub(super) fn insert_identity(
    headers: &mut HeaderMap,
    s: &Session,
    member: bool,
    sign_secret: Option<&[u8]>,
    now: u64,
) {
    if let Some(v) = s.openid_header() {
        let name = if member { &USERID } else { &OPENID };
        headers.insert(name.clone(), v);
    }
    if let Some(v) = s.appid_header() {
        headers.insert(CORPID.clone(), v);
    }
    headers.insert(SOURCE.clone(), HeaderValue::from_static("wecom"));
    if let Some(secret) = sign_secret {
        if let Ok(v) = HeaderValue::from_str(&signature(secret, now, s.openid())) {
            headers.insert(SIGNATURE.clone(), v);
        }
    }
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

    #[test]
    fn member_and_non_member() {
        let mut h = HeaderMap::new();
        insert_identity(&mut h, &session("zhangsan"), true, None, 1);
        assert_eq!(h[&USERID], "zhangsan");
        assert_eq!(h[&CORPID], "ww01");
        assert_eq!(h[&SOURCE], "wecom");
        assert!(!h.contains_key(&OPENID) && !h.contains_key("x-wechat-unionid"));
        assert!(!h.contains_key(&SIGNATURE));
        let mut h = HeaderMap::new();
        insert_identity(&mut h, &session("oX"), false, Some(b"k"), 1700000000);
        assert_eq!(h[&OPENID], "oX");
        assert!(!h.contains_key(&USERID));
        let sig = h[&SIGNATURE].to_str().unwrap();
        assert_eq!(sig, signature(b"k", 1700000000, "oX"));
        assert!(sig.starts_with("t=1700000000,v1=") && sig.len() == 16 + 64);
    }
}
