//! Cookie and `Authorization` header helpers, pure and allocation-free on the usual path:
//! parsing `Cookie` headers, finding and removing named cookies, bearer tokens, and removing
//! upstream `Set-Cookie` lines for named cookies. Used by the pipeline and the endpoints.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE, SET_COOKIE};

use crate::common::http_util::retain_header_values;

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

/// Every value of cookie `name` in the request, in order, over every `Cookie` header (values
/// that are not UTF-8 are skipped: none of the gateway's cookies is).
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter(move |(n, _)| *n == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
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

/// The token of one `Authorization` value `Bearer <token>` (scheme in any case, space or tab
/// after it).
pub(crate) fn parse_bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    parse_bearer(headers.get(AUTHORIZATION)?.to_str().ok()?)
}

/// Remove every `Authorization` value whose bearer token `is_ours` accepts; other values (Basic,
/// other bearer tokens) stay, in order. One lookup when there is no `Authorization` header.
#[inline]
pub fn strip_bearer_tokens(headers: &mut HeaderMap, is_ours: impl Fn(&str) -> bool) {
    let ours = |v: &HeaderValue| v.to_str().ok().and_then(parse_bearer).is_some_and(&is_ours);
    retain_header_values(headers, AUTHORIZATION, |v| !ours(v));
}

/// The name under which a browser will send back the cookie a `Set-Cookie` value sets: the
/// part before the first `=` of the part before the first `;`, trimmed. A nameless cookie
/// (`=_wxgate=x`, or no `=` at all) is sent as its bare value, `_wxgate=x`: then the name is
/// read from that value the same way.
fn set_cookie_name(v: &[u8]) -> &[u8] {
    let first = v.split(|&b| b == b';').next().unwrap_or_default();
    let (name, value) = split_part(first.trim_ascii());
    match value {
        Some(value) if name.is_empty() => split_part(value).0,
        _ => name,
    }
}

/// Remove the `Set-Cookie` lines of a response that set one of `names` (the gateway's own
/// cookies: an upstream must not be able to set or replace them); others stay, in order.
/// One lookup when the response sets no cookie.
pub(crate) fn strip_set_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let ours = |v: &HeaderValue| {
        let n = set_cookie_name(v.as_bytes());
        names.iter().any(|x| x.as_bytes() == n)
    };
    retain_header_values(headers, SET_COOKIE, |v| !ours(v));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::HeaderName;

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
    fn cookie_pair_values() {
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
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer tok"));
        assert_eq!(find_cookie(&h, "_wxgate"), Some("abc"));
        assert_eq!(find_cookie(&h, "_wx"), None);
        assert_eq!(bearer_token(&h), Some("tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer\t tok2"));
        assert_eq!(bearer_token(&h), Some("tok2"));
        for v in ["Bearer", "Bearer ", "Bearertok", ""] {
            assert_eq!(parse_bearer(v), None, "{v:?}");
        }
    }

    #[test]
    fn every_session_cookie_value() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("_wxgate=stale; a=1; _wxgate=\"q\""),
        );
        h.append(COOKIE, HeaderValue::from_bytes(b"_wxgate=\xff").unwrap());
        h.append(
            COOKIE,
            HeaderValue::from_static("_wxgate_login=l; _wxgate=third"),
        );
        let all: Vec<_> = cookie_values(&h, "_wxgate").collect();
        assert_eq!(all, vec!["stale", "q", "third"]);
        assert_eq!(cookie_values(&h, "none").count(), 0);
    }

    #[test]
    fn upstream_cannot_set_gateway_cookies() {
        let names = ["_wxgate", "_wxgate_login"];
        let mut h = HeaderMap::new();
        for v in [
            "a=1; Path=/",
            "_wxgate=fixed; Path=/; HttpOnly",
            " _wxgate_login =x",
            "_wxgate_other=2",
            "_wxgate",
            "b=_wxgate",
            // Nameless: the browser sends these back as `_wxgate=fixed`.
            "=_wxgate=fixed; Path=/",
            " = _wxgate =fixed",
            "=b=_wxgate",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_static(v));
        }
        h.insert("x-other", HeaderValue::from_static("1"));
        strip_set_cookies(&mut h, &names);
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(
            left,
            vec!["a=1; Path=/", "_wxgate_other=2", "b=_wxgate", "=b=_wxgate"]
        );
        assert_eq!(set_cookie_name(b""), b"");
        assert_eq!(set_cookie_name(b"=; a=b"), b"");
        assert_eq!(set_cookie_name(b"_wxgate; Path=/"), b"_wxgate");
        assert!(h.contains_key("x-other"));

        let mut h = HeaderMap::new();
        h.insert(SET_COOKIE, HeaderValue::from_static("_wxgate=x"));
        strip_set_cookies(&mut h, &names);
        assert!(!h.contains_key(SET_COOKIE));
        let mut h = HeaderMap::new();
        strip_set_cookies(&mut h, &names);
        assert!(h.is_empty());
    }

    pub(crate) mod props {
        use super::*;
        use proptest::prelude::*;

        /// Bytes a header value may hold (visible ASCII, space, tab, obs-text), with the
        /// separators and the gateway's names made likely.
        pub(crate) fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"_wxgate".to_vec()),
                Just(b"_wxgate_login".to_vec()),
                Just(b"=".to_vec()),
                Just(b";".to_vec()),
                Just(b" ".to_vec()),
                Just(b"\t".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"Bearer ".to_vec()),
                Just("张".as_bytes().to_vec()),
                proptest::collection::vec(
                    prop_oneof![0x20u8..=0x7e, Just(b'\t'), 0x80u8..=0xff],
                    0..12
                ),
            ];
            proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
        }

        pub(crate) fn headers(values: &[Vec<u8>], name: &HeaderName) -> HeaderMap {
            let mut h = HeaderMap::new();
            for v in values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(name.clone(), v);
                }
            }
            h
        }

        /// Every `;` part of every Cookie header, trimmed and non-empty.
        fn parts(h: &HeaderMap) -> Vec<Vec<u8>> {
            h.get_all(COOKIE)
                .iter()
                .flat_map(|v| {
                    cookie_parts(v.as_bytes())
                        .map(<[u8]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn cookie_parsing_never_panics_and_strip_is_exact(
                values in proptest::collection::vec(value_bytes(), 0..4)
            ) {
                let names = ["_wxgate", "_wxgate_login"];
                let mut h = headers(&values, &COOKIE);
                for v in h.get_all(COOKIE) {
                    for (n, _) in cookie_pairs(v.as_bytes()) {
                        prop_assert!(!n.contains(&b';'));
                    }
                }
                let _ = find_cookie(&h, "_wxgate");
                let _ = cookie_values(&h, "_wxgate").count();
                let ours = |p: &[u8]| names.iter().any(|n| n.as_bytes() == split_part(p).0);
                let before = parts(&h);
                let had_ours = before.iter().any(|p| ours(p));
                let untouched = h.clone();
                let others_before: Vec<Vec<u8>> = before.into_iter().filter(|p| !ours(p)).collect();

                strip_cookies(&mut h, &names);

                let after = parts(&h);
                prop_assert!(after.iter().all(|p| !ours(p)), "a gateway cookie left: {after:?}");
                prop_assert_eq!(&after, &others_before, "another cookie was dropped or changed");
                prop_assert_eq!(find_cookie(&h, "_wxgate"), None);
                prop_assert_eq!(find_cookie(&h, "_wxgate_login"), None);
                if had_ours {
                    for v in h.get_all(COOKIE) {
                        prop_assert!(cookie_parts(v.as_bytes()).next().is_some(), "empty Cookie header left");
                    }
                } else {
                    prop_assert_eq!(h, untouched, "nothing of ours: the headers stay as they were");
                }
            }

            #[test]
            fn set_cookie_strip_is_exact(
                values in proptest::collection::vec(value_bytes(), 0..4)
            ) {
                let names = ["_wxgate", "_wxgate_login"];
                let mut h = headers(&values, &SET_COOKIE);
                let ours = |v: &HeaderValue| names.iter().any(|n| n.as_bytes() == set_cookie_name(v.as_bytes()));
                let others: Vec<HeaderValue> =
                    h.get_all(SET_COOKIE).iter().filter(|v| !ours(v)).cloned().collect();
                strip_set_cookies(&mut h, &names);
                let after: Vec<HeaderValue> = h.get_all(SET_COOKIE).iter().cloned().collect();
                prop_assert_eq!(after, others);
            }

        }
    }
}
