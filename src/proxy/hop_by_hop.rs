//! Hop-by-hop headers (RFC 9110 7.6.1): removed in both directions before anything else, with
//! a WebSocket handshake's `Connection: upgrade` + `Upgrade` kept on request.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Remove the hop-by-hop headers of an incoming request, keeping a WebSocket handshake's
/// `Connection: upgrade` + `Upgrade` (HTTP/1.1 only). Called first thing, before the gateway adds
/// `Host`, `X-Forwarded-*` or identity headers: `Connection` can then never name one of those away.
pub(crate) fn remove_request_hop_headers<B>(req: &mut Request<B>) {
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    remove_hop_headers(req.headers_mut(), upgrade);
}

/// Remove hop-by-hop headers: those named in `Connection` (never `Host`), then the fixed list. With
/// `upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket handshakes).
pub fn remove_hop_headers(h: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them, or only `Connection`: one look at each name instead of
    // a lookup per hop-by-hop name.
    let (mut connection, mut others) = (false, false);
    for k in h.keys() {
        if *k == header::CONNECTION {
            connection = true;
        } else if is_hop_name(k) {
            others = true;
        }
    }
    if !connection && !others {
        return;
    }
    if connection {
        remove_connection(h, upgrade);
    }
    // `Connection: keep-alive` alone (most upstream responses) is done now. (`others` was taken
    // before the named headers went: at worst the fixed list below runs for nothing.)
    if !upgrade && !others {
        return;
    }
    h.remove(&KEEP_ALIVE);
    crate::common::http_util::remove_headers_where(h, is_proxy_name);
    h.remove(header::TRAILER);
    h.remove(header::TRANSFER_ENCODING);
    if let Some(te) = h.remove(header::TE) {
        let trailers = te
            .to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false);
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        if h.contains_key(header::UPGRADE) {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    } else {
        h.remove(header::UPGRADE);
    }
}

/// Remove `Connection` and the headers it names (never `Host`; with `upgrade`, not `Upgrade`).
fn remove_connection(h: &mut HeaderMap, upgrade: bool) {
    // `Connection: keep-alive` / `close` (nearly every message) name nothing else to remove:
    // skip the allocation below for them.
    let only_plain_tokens = h.get_all(header::CONNECTION).iter().all(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').map(str::trim).all(|t| {
                t.is_empty()
                    || t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("close")
            })
        })
    });
    if !only_plain_tokens {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            // `Host` is end-to-end and required: naming it in `Connection` cannot remove it.
            .filter(|n| n != header::HOST && !(upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            h.remove(&n);
        }
    }
    h.remove(header::CONNECTION);
}

/// A header that is hop-by-hop by itself (RFC 9110 7.6.1, plus the legacy ones); headers named
/// in `Connection` are hop-by-hop too, and `Connection` is on this list.
fn is_hop_name(n: &HeaderName) -> bool {
    *n == header::CONNECTION
        || *n == header::TE
        || *n == header::TRANSFER_ENCODING
        || *n == header::TRAILER
        || *n == header::UPGRADE
        || *n == KEEP_ALIVE
        || is_proxy_name(n)
}

/// `Proxy-*` (`Proxy-Authorization`, `Proxy-Authenticate`, `Proxy-Connection`, and any other),
/// and `Proxy` itself: a CGI upstream (PHP behind nginx's `fastcgi_params`) would read a
/// client's `Proxy:` as its `HTTP_PROXY` and send its own outgoing requests through the
/// client's proxy ("httpoxy", CVE-2016-5385).
fn is_proxy_name(n: &HeaderName) -> bool {
    n.as_str()
        .strip_prefix("proxy")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// An HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::common::http_util::header_map as hm;

    #[test]
    fn hop_headers_removed() {
        let mut h = hm(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip, trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "1"),
        ]);
        remove_hop_headers(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn plain_connection_tokens_fast_path() {
        for v in ["keep-alive", "close", "Keep-Alive, close", ""] {
            let mut h = hm(&[
                ("connection", v),
                ("keep-alive", "timeout=5"),
                ("close", "not-a-hop"),
            ]);
            remove_hop_headers(&mut h, false);
            assert!(
                !h.contains_key("connection") && !h.contains_key("keep-alive"),
                "{v}"
            );
            assert!(h.contains_key("close"), "only named headers go: {v}");
        }
    }

    #[test]
    fn nothing_to_remove_leaves_the_map_alone() {
        let mut h = hm(&[("host", "app"), ("x-a", "1"), ("cookie", "a=1")]);
        let before = h.clone();
        remove_hop_headers(&mut h, false);
        assert_eq!(h, before);
        for name in ["proxy-connection", "keep-alive", "upgrade", "trailer"] {
            let mut h = hm(&[("host", "app"), (name, "x")]);
            remove_hop_headers(&mut h, false);
            assert!(!h.contains_key(name), "{name}");
            assert!(h.contains_key("host"));
        }
    }

    #[test]
    fn every_proxy_header_and_proxy_itself_removed() {
        for name in [
            "proxy",
            "proxy-authorization",
            "proxy-authenticate",
            "proxy-connection",
            "proxy-status",
            "proxy-foo",
        ] {
            let mut h = hm(&[
                ("host", "app"),
                (name, "x"),
                ("proxyish", "1"),
                ("x-proxy", "1"),
            ]);
            remove_hop_headers(&mut h, false);
            assert!(!h.contains_key(name), "{name}");
            assert!(
                h.contains_key("proxyish") && h.contains_key("x-proxy"),
                "{name}"
            );
            assert!(h.contains_key("host"));
        }
    }

    #[test]
    fn te_without_trailers_dropped() {
        let mut h = hm(&[("te", "gzip")]);
        remove_hop_headers(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn upgrade_kept_when_asked() {
        let mut h = hm(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        remove_hop_headers(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn connection_cannot_name_host() {
        let mut h = hm(&[
            ("host", "app"),
            ("connection", "host, x-a, Host"),
            ("x-a", "1"),
        ]);
        remove_hop_headers(&mut h, false);
        assert_eq!(h["host"], "app");
        assert!(!h.contains_key("x-a") && !h.contains_key("connection"));
    }

    #[test]
    fn request_hop_headers_before_anything_is_added() {
        let req = |conn: &str, version: Version| {
            let mut r = Request::builder()
                .version(version)
                .header("host", "app")
                .header("connection", conn)
                .header("x-wechat-unionid", "spoof")
                .header("x-forwarded-for", "6.6.6.6")
                .header("upgrade", "websocket")
                .header("x-keep", "1")
                .body(())
                .unwrap();
            remove_request_hop_headers(&mut r);
            r
        };
        let r = req("x-wechat-unionid, x-forwarded-for, host", Version::HTTP_11);
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["host", "x-keep"]);
        // A WebSocket handshake keeps its upgrade, loses what else Connection names.
        let r = req("Upgrade, x-forwarded-for", Version::HTTP_11);
        assert_eq!(r.headers()["connection"], "upgrade");
        assert_eq!(r.headers()["upgrade"], "websocket");
        assert!(!r.headers().contains_key("x-forwarded-for"));
        assert!(is_upgrade_request(r.headers()));
        // No upgrade over HTTP/1.0.
        let r = req("upgrade", Version::HTTP_10);
        assert!(!r.headers().contains_key("upgrade"));
        assert!(!r.headers().contains_key("connection"));
    }
}
