//! Who the client is, as the upstream is told: the peer (trusted proxy or not), the
//! `X-Forwarded-*` headers, and one `Cookie` header for HTTP/1.1 upstreams.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&peer))
}

/// The client end of a connection, worked out once per connection, not per request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// In `server.trusted_proxies`: its `X-Forwarded-*` are believed.
    pub trusted: bool,
    /// The peer IP as a header value (the whole `X-Forwarded-For` of an untrusted peer).
    pub ip_value: HeaderValue,
}

impl Peer {
    pub fn new(addr: std::net::SocketAddr, trusted: &[IpNet]) -> Peer {
        let ip = addr.ip();
        Peer {
            addr,
            trusted: is_trusted(ip, trusted),
            ip_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
        }
    }
}

/// A header through which a client states its own address, scheme, host, port or path prefix
/// (`X-Forwarded-*`, RFC 7239 `Forwarded`, nginx's `X-Real-IP`, and the like). Upstreams and
/// their frameworks believe them from the gateway; only a trusted proxy may send them.
fn is_client_forwarding(n: &HeaderName) -> bool {
    let s = n.as_str();
    s.starts_with("x-forwarded-")
        || matches!(
            s,
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "true-client-ip"
                | "x-original-forwarded-for"
        )
}

/// Remove what an untrusted client says about where it is (see [`is_client_forwarding`]).
/// One look at each name; allocates only when there is one.
fn strip_client_forwarding(h: &mut HeaderMap) {
    crate::common::http_util::remove_headers_where(h, is_client_forwarding);
}

/// `X-Forwarded-For/Proto/Host`. From an untrusted peer, every incoming forwarding header
/// (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, ...) is removed and For/Proto/Host are set;
/// from a trusted one, the chain is extended and Proto/Host are kept when present.
pub fn set_forwarded(
    h: &mut HeaderMap,
    peer: &Peer,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let trusted = peer.trusted;
    if trusted {
        let prior: Vec<&str> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let xff = if prior.is_empty() {
            peer.addr.ip().to_string()
        } else {
            format!("{}, {}", prior.join(", "), peer.addr.ip())
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(X_FORWARDED_FOR.clone(), v);
        }
    } else {
        strip_client_forwarding(h);
        h.insert(X_FORWARDED_FOR.clone(), peer.ip_value.clone());
    }
    if !(trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted && h.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(v) => {
                h.insert(X_FORWARDED_HOST.clone(), v);
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 upstreams want one (RFC 9113 8.2.3).
pub fn join_cookies(h: &mut HeaderMap) {
    let mut it = h.get_all(header::COOKIE).iter();
    if it.next().is_none() || it.next().is_none() {
        return;
    }
    let joined: Vec<u8> = h
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::common::http_util::header_map as hm;

    #[test]
    fn forwarded_untrusted_replaces() {
        let mut h = hm(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
        ]);
        let peer = Peer::new("10.0.0.1:5000".parse().unwrap(), &[]);
        set_forwarded(
            &mut h,
            &peer,
            "https",
            Some(HeaderValue::from_static("app")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app");
    }

    #[test]
    fn forwarded_trusted_appends() {
        let mut h = hm(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer = Peer::new(
            "10.0.0.1:5000".parse().unwrap(),
            &["10.0.0.0/8".parse().unwrap()],
        );
        assert!(peer.trusted);
        set_forwarded(&mut h, &peer, "http", Some(HeaderValue::from_static("app")));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app");
    }

    #[test]
    fn untrusted_client_forwarding_removed() {
        let mut h = hm(&[
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/evil"),
            ("true-client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("x-forwarded", "kept: not a prefix match"),
            ("x-keep", "1"),
        ]);
        let peer = Peer::new("10.0.0.1:5000".parse().unwrap(), &[]);
        set_forwarded(&mut h, &peer, "https", None);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "x-forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-keep"
            ]
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");

        // A trusted proxy's are believed: kept as they are.
        let mut h = hm(&[
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        let peer = Peer::new(
            "10.0.0.1:5000".parse().unwrap(),
            &["10.0.0.0/8".parse().unwrap()],
        );
        set_forwarded(&mut h, &peer, "https", None);
        assert_eq!(h["forwarded"], "for=203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn trust_matching() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::1".parse().unwrap(), &nets));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn cookies_joined() {
        let mut h = hm(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
