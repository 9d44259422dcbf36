//! Return-URL validation for `rd`: a local path, or an absolute URL on an allowed host.
//! Everything else becomes `/`.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

use crate::config::PublicUrl;

/// Bytes escaped in an accepted local path: non-ASCII (and the odd few browsers mangle).
const PATH_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');

/// `encodeURIComponent`: everything but `A-Za-z0-9-_.!~*'()` is escaped.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Longest `rd` accepted, in bytes, as given (decoded) and as returned (percent-encoded):
/// anything longer is invalid and becomes `/`. It bounds what a login in flight keeps and the
/// completed-login cookie (base64 of it: under a browser's 4 KiB cookie limit).
pub const MAX_RD: usize = 2048;

/// `rd` as already decoded from the query string.
pub fn safe_return(rd: &str, public: &PublicUrl, redirect_hosts: &[String]) -> String {
    let out = check_return(rd, public, redirect_hosts);
    if out.len() > MAX_RD {
        return "/".into();
    }
    out
}

fn check_return(rd: &str, public: &PublicUrl, redirect_hosts: &[String]) -> String {
    // Before any parsing: a 60 KB `rd` costs nothing but this comparison.
    if rd.len() > MAX_RD || rd.chars().any(|c| c.is_control()) || rd.contains('\\') {
        return "/".into();
    }
    if rd.starts_with('/') {
        if rd.starts_with("//") {
            return "/".into();
        }
        return utf8_percent_encode(rd, PATH_ESCAPE).to_string();
    }
    let Ok(u) = url::Url::parse(rd) else {
        return "/".into();
    };
    // Only the exact forms scheme://host[:port]/...: not `https:evil`, no userinfo.
    let lower = rd.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return "/".into();
    }
    if !u.username().is_empty() || u.password().is_some() {
        return "/".into();
    }
    let Some(host) = u.host_str() else {
        return "/".into();
    };
    let host = host.to_ascii_lowercase();
    let allowed = if host == public.host {
        u.scheme() == public.url.scheme()
            && u.port_or_known_default() == public.url.port_or_known_default()
    } else {
        redirect_hosts
            .iter()
            .any(|h| host_matches(h, &host, u.port()))
    };
    if allowed {
        u.to_string()
    } else {
        "/".into()
    }
}

/// `h` is `host` or `host:port` from `access.redirect_hosts`.
fn host_matches(h: &str, host: &str, port: Option<u16>) -> bool {
    match h.rsplit_once(':') {
        Some((hn, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
            hn.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == port
        }
        _ => h.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> PublicUrl {
        let url = url::Url::parse("https://app.example.com").unwrap();
        PublicUrl {
            origin: "https://app.example.com".into(),
            host: "app.example.com".into(),
            secure: true,
            url,
        }
    }

    fn check(rd: &str) -> String {
        safe_return(
            rd,
            &public(),
            &["shop.example.com".into(), "admin.example.com:8443".into()],
        )
    }

    #[test]
    fn local_paths_kept() {
        assert_eq!(check("/"), "/");
        assert_eq!(check("/a/b?x=1&y=%2F#frag"), "/a/b?x=1&y=%2F#frag");
        assert_eq!(check("/文章"), "/%E6%96%87%E7%AB%A0");
    }

    #[test]
    fn open_redirects_refused() {
        for rd in [
            "https://evil",
            "https://evil.com/x",
            "//evil",
            "//evil.com/x",
            "/\\evil",
            "\\\\evil",
            "/\t/evil",
            "/%09/evil".replace("%09", "\t").as_str(),
            "https:evil",
            "https:/evil",
            "http:\\\\evil",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            "https://app.example.com.evil/",
            "https://public-host.evil",
            "https://app.example.com@evil.com/",
            "https://evil.com\\@app.example.com/",
            "https://app.example.com:8443/",
            "https://admin.example.com/",
            "http://app.example.com/",
            "evil.com",
            "",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(check(rd), "/", "{rd:?}");
        }
    }

    #[test]
    fn long_rd_is_invalid() {
        let ok = format!("/{}", "a".repeat(MAX_RD - 1));
        assert_eq!(check(&ok), ok);
        assert_eq!(check(&format!("/{}", "a".repeat(MAX_RD))), "/");
        assert_eq!(check(&format!("/{}", "a".repeat(62_000))), "/");
        // Within the limit as given, over it once percent-encoded.
        assert_eq!(check(&format!("/{}", "文".repeat(600))), "/");
        let abs = format!("https://app.example.com/{}", "b".repeat(MAX_RD));
        assert_eq!(check(&abs), "/");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Any input: no panic, and the answer is `/`, a bounded local path, or an allowed URL.
        #[test]
        fn any_rd_is_safe(rd in proptest::prelude::any::<String>()) {
            let out = check(&rd);
            proptest::prop_assert!(out.len() <= MAX_RD);
            proptest::prop_assert!(!out.chars().any(|c| c.is_control() || c == '\\'));
            if out.starts_with('/') {
                proptest::prop_assert!(!out.starts_with("//"));
            } else {
                let u = url::Url::parse(&out).unwrap();
                let host = u.host_str().unwrap_or("");
                proptest::prop_assert!(
                    ["app.example.com", "shop.example.com", "admin.example.com"].contains(&host),
                    "{out}"
                );
            }
        }

        #[test]
        fn url_like_rd_is_safe(rd in "(https?:|/|//|\\\\)?[a-z./@:%\\\\?#-]{0,40}") {
            let out = check(&rd);
            proptest::prop_assert!(out.starts_with('/') || out.starts_with("https://") || out.starts_with("http://"));
            proptest::prop_assert!(!out.starts_with("//"));
        }
    }

    #[test]
    fn allowed_hosts() {
        assert_eq!(
            check("https://app.example.com/x?y=1"),
            "https://app.example.com/x?y=1"
        );
        assert_eq!(
            check("https://APP.example.com/x"),
            "https://app.example.com/x"
        );
        assert_eq!(
            check("https://shop.example.com/cart"),
            "https://shop.example.com/cart"
        );
        assert_eq!(
            check("https://admin.example.com:8443/"),
            "https://admin.example.com:8443/"
        );
    }
}
