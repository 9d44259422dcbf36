//! Phase 1 of every request: nothing that reads as an identity header (`X-WeChat-*`,
//! `X-WeCom-*`, in any spelling) survives from the client, and a gateway bearer token is never
//! passed on to the upstream.

use http::header::HeaderMap;

use crate::common::cookies;
use crate::common::http_util::remove_headers_where;
use crate::session::SessionId;

/// `X-WeChat-*` and `X-WeCom-*` with every character other than a letter or digit taken out.
const WECHAT: &[u8] = b"xwechat";
const WECOM: &[u8] = b"xwecom";

/// True when a header name reads as `X-WeChat-*` or `X-WeCom-*` once every character other than
/// a letter or digit is ignored, in any case (`X_WeChat.UnionId`, `XWeChat~UnionId`,
/// `x-we-chat-unionid` are all spoofs). Such headers may only come from the gateway.
///
/// No allocation, and most names are decided at their first or second letter.
pub(crate) fn is_identity_header(name: &str) -> bool {
    let mut seen = [0u8; 7];
    for (n, b) in name.bytes().filter(u8::is_ascii_alphanumeric).enumerate() {
        // `n` < 7 here: at 7 letters the name either equals WECHAT or is a prefix of neither.
        seen[n] = b.to_ascii_lowercase();
        let s = &seen[..=n];
        if s == WECHAT || s == WECOM {
            return true;
        }
        if !(WECHAT.starts_with(s) || WECOM.starts_with(s)) {
            return false;
        }
    }
    false
}

/// Remove every spoofed identity header. Allocates only when one is present.
pub(crate) fn strip_identity_headers(headers: &mut HeaderMap) {
    remove_headers_where(headers, |k| is_identity_header(k.as_str()));
}

/// Remove every `Authorization` value that is a gateway bearer token (`Bearer` and a token in
/// the gateway's session-id format, live or not: it is the gateway's either way); other values
/// (Basic, the app's own bearer tokens) stay. One lookup when there is no `Authorization` header.
pub(crate) fn strip_gateway_bearer(headers: &mut HeaderMap) {
    cookies::strip_bearer_tokens(headers, |t| SessionId::parse(t).is_some());
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, AUTHORIZATION};

    /// An `Authorization` value that is a gateway bearer token.
    fn is_gateway_bearer(v: &HeaderValue) -> bool {
        v.to_str()
            .ok()
            .and_then(cookies::parse_bearer)
            .and_then(SessionId::parse)
            .is_some()
    }

    #[test]
    fn identity_names() {
        for n in [
            "x-wechat-unionid",
            "x_wechat_unionid",
            "x-wechat_openid",
            "x_wechat-anything",
            "X-WeChat-Foo",
            "x-wechat.unionid",
            "x-wechat~unionid",
            "xwechat-unionid",
            "xwechatunionid",
            "x-we-chat-id",
            "-x-wechat-unionid",
            "x-wechat",
            "x-wechat-",
            "x-wecom-userid",
            "x_wecom.corpid",
            "xwecomuserid",
            "X-WECOM-UserId",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in [
            "wechat-unionid",
            "x-wecha",
            "x-weco",
            "x-we",
            "x-forwarded-for",
            "content-type",
            "x-wxgate",
            "xx-wechat-unionid",
            "x1-wechat-unionid",
            "",
            "-",
        ] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    /// The definition, written the slow way: the fast one must agree with it on any name.
    fn identity_reference(name: &str) -> bool {
        let norm: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        norm.starts_with("xwechat") || norm.starts_with("xwecom")
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

    fn sid() -> String {
        SessionId::random().encode()
    }

    #[test]
    fn gateway_bearer_removed_others_kept() {
        let ours = format!("Bearer {}", sid());
        // Alone.
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&ours).unwrap());
        strip_gateway_bearer(&mut h);
        assert!(!h.contains_key(AUTHORIZATION));
        // Any case of the scheme, tab separator: still ours.
        let mut h = HeaderMap::new();
        let tab = format!("bEaReR\t{}", sid());
        h.insert(AUTHORIZATION, HeaderValue::from_str(&tab).unwrap());
        strip_gateway_bearer(&mut h);
        assert!(!h.contains_key(AUTHORIZATION));
        // Next to other values: only ours goes, order kept.
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Basic eHg6eXk="));
        h.append(AUTHORIZATION, HeaderValue::from_str(&ours).unwrap());
        h.append(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer app.jwt.token"),
        );
        strip_gateway_bearer(&mut h);
        let left: Vec<_> = h.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(left, vec!["Basic eHg6eXk=", "Bearer app.jwt.token"]);
        // Not ours: untouched.
        for v in [
            "Basic eHg6eXk=",
            "Bearer app.jwt.token",
            "Bearer short",
            "Token AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            strip_gateway_bearer(&mut h);
            assert_eq!(h.get(AUTHORIZATION).unwrap(), v);
        }
        let mut h = HeaderMap::new();
        strip_gateway_bearer(&mut h);
        assert!(h.is_empty());
    }

    mod props {
        use super::*;
        use crate::common::cookies::tests::props::{headers, value_bytes};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn bearer_parsing_never_panics(
                values in proptest::collection::vec(value_bytes(), 0..3)
            ) {
                let mut h = headers(&values, &AUTHORIZATION);
                let others: Vec<HeaderValue> = h
                    .get_all(AUTHORIZATION)
                    .iter()
                    .filter(|v| !is_gateway_bearer(v))
                    .cloned()
                    .collect();
                let _ = cookies::bearer_token(&h);
                strip_gateway_bearer(&mut h);
                let after: Vec<HeaderValue> = h.get_all(AUTHORIZATION).iter().cloned().collect();
                prop_assert_eq!(after, others);
            }

            #[test]
            fn identity_header_test_matches_its_definition(name in "[-_.~!#$%&'*+^`|a-zA-Z0-9]{0,24}") {
                prop_assert_eq!(is_identity_header(&name), identity_reference(&name));
            }

            #[test]
            fn identity_spoofs_of_every_shape(
                seps in proptest::collection::vec("[-_.~!#$%&'*+^`|]{0,2}", 20),
                upper in proptest::collection::vec(any::<bool>(), 20),
                wecom in any::<bool>(),
            ) {
                // `X-WeChat-UnionId` / `X-WeCom-UserId` with any separators between any letters.
                let base = if wecom { "xwecomuserid" } else { "xwechatunionid" };
                let mut name = String::new();
                for (i, c) in base.chars().enumerate() {
                    name.push_str(&seps[i]);
                    name.push(if upper[i] { c.to_ascii_uppercase() } else { c });
                }
                prop_assert!(is_identity_header(&name), "{}", name);
            }
        }
    }
}
