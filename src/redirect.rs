//! Return-URL validation for `rd`: a local path, or an absolute URL on an allowed host.
//! Everything else becomes `/`.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::config::PublicUrl;

/// Bytes escaped in an accepted local path: non-ASCII (and the odd few browsers mangle).
const PATH_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');

/// `rd` as already decoded from the query string.
pub fn safe_return(rd: &str, public: &PublicUrl, redirect_hosts: &[String]) -> String {
    if rd.chars().any(|c| c.is_control()) || rd.contains('\\') {
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
