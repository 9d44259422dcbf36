//! `access.login_rate_per_minute`: a per-client limit on the login endpoints (`/login`,
//! `/callback`, `/app/login`, `/miniprogram/login`), on governor's keyed GCRA limiter.
//!
//! The client is the peer's IP, or, when the peer is in `trusted_proxies`, the right-most
//! address of `X-Forwarded-For` that is not itself a trusted proxy. IPv6 clients are counted
//! per /64 (one customer's allocation: a single host can pick any address inside it).
//!
//! Bounded memory: every [`HOUSEKEEPING_EVERY`] checks, keys whose bucket is full again are
//! dropped (`retain_recent`) and the map shrunk; if a flood of distinct addresses still leaves
//! more than [`MAX_KEYS`], the limiter starts over (empty). So the key map never holds more
//! than `MAX_KEYS + HOUSEKEEPING_EVERY` keys (~100 bytes each: under 11 MB).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use ipnet::IpNet;

/// Most client keys kept after housekeeping.
pub(crate) const MAX_KEYS: usize = 100_000;
/// Housekeeping runs once per this many checks.
pub(crate) const HOUSEKEEPING_EVERY: u64 = 1024;

pub(crate) struct LoginLimiter {
    quota: Quota,
    limiter: RwLock<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

impl LoginLimiter {
    /// `None` when the limit is off (0).
    pub(crate) fn new(per_minute: u32) -> Option<LoginLimiter> {
        let n = NonZeroU32::new(per_minute)?;
        let quota = Quota::per_minute(n);
        Some(LoginLimiter {
            quota,
            limiter: RwLock::new(RateLimiter::keyed(quota)),
            checks: AtomicU64::new(0),
        })
    }

    /// `Ok` when this client may go on; else how long until it may (whole seconds, at least 1).
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), u64> {
        let key = rate_key(client);
        let result = {
            let l = self.limiter.read().unwrap_or_else(|e| e.into_inner());
            l.check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(l.clock().now()))
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY
            == HOUSEKEEPING_EVERY - 1
        {
            self.housekeeping();
        }
        result.map_err(retry_secs)
    }

    fn housekeeping(&self) {
        let too_many = {
            let l = self.limiter.read().unwrap_or_else(|e| e.into_inner());
            l.retain_recent();
            l.shrink_to_fit();
            l.len() > MAX_KEYS
        };
        if too_many {
            tracing::warn!(
                max = MAX_KEYS,
                "login rate limiter: too many distinct clients, starting over"
            );
            *self.limiter.write().unwrap_or_else(|e| e.into_inner()) =
                RateLimiter::keyed(self.quota);
        }
    }

    /// Client keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After: 0` would invite an instant retry).
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The limiter's key for a client: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64.
pub(crate) fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The client a request comes from: the peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` address that is not a trusted proxy. An entry that is not an
/// address ends the walk: the last trusted hop is the client then.
pub(crate) fn client_ip(
    peer: IpAddr,
    peer_trusted: bool,
    h: &HeaderMap,
    trusted: &[IpNet],
) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    let mut client = peer;
    // Several X-Forwarded-For headers are one list, in order.
    let values: Vec<&str> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some(ip) = parse_forwarded_ip(entry) else {
            return client;
        };
        if !crate::proxy::is_trusted(ip, trusted) {
            return ip;
        }
        client = ip;
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn nets() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        let h = xff(&["1.1.1.1"]);
        assert_eq!(client_ip(ip("8.8.8.8"), false, &h, &nets()), ip("8.8.8.8"));
    }

    #[test]
    fn trusted_peer_right_most_untrusted() {
        let peer = ip("10.0.0.1");
        let t = nets();
        assert_eq!(client_ip(peer, true, &xff(&[]), &t), peer);
        assert_eq!(client_ip(peer, true, &xff(&["1.1.1.1"]), &t), ip("1.1.1.1"));
        // The client's own (spoofable) entries are left of the one our proxy wrote.
        assert_eq!(
            client_ip(peer, true, &xff(&["6.6.6.6, 1.1.1.1"]), &t),
            ip("1.1.1.1")
        );
        assert_eq!(
            client_ip(peer, true, &xff(&["6.6.6.6", "1.1.1.1, 10.2.2.2"]), &t),
            ip("1.1.1.1")
        );
        assert_eq!(
            client_ip(peer, true, &xff(&["1.1.1.1:4444 , [2001:db8::1]:80"]), &t),
            ip("2001:db8::1")
        );
        // Garbage where an address should be: the last trusted hop.
        assert_eq!(
            client_ip(peer, true, &xff(&["1.1.1.1, nonsense, 10.3.3.3"]), &t),
            ip("10.3.3.3")
        );
        assert_eq!(client_ip(peer, true, &xff(&[" , "]), &t), peer);
        // Everything trusted: the left-most.
        assert_eq!(
            client_ip(peer, true, &xff(&["10.9.9.9, fd00::1"]), &t),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn keys() {
        assert_eq!(rate_key(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(rate_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(rate_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2:ffff::1")),
            rate_key(ip("2001:db8:1:2::9"))
        );
    }

    #[test]
    fn limits_per_client() {
        let l = LoginLimiter::new(3).unwrap();
        for _ in 0..3 {
            assert!(l.check(ip("1.1.1.1")).is_ok());
        }
        let wait = l.check(ip("1.1.1.1")).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(l.check(ip("2.2.2.2")).is_ok(), "another client");
        assert!(LoginLimiter::new(0).is_none());
    }

    #[test]
    fn key_map_is_bounded() {
        let l = LoginLimiter::new(5).unwrap();
        let n = MAX_KEYS as u32 + 3 * HOUSEKEEPING_EVERY as u32;
        for i in 0..n {
            let _ = l.check(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
            if i % 500 == 0 {
                assert!(l.len() <= MAX_KEYS + HOUSEKEEPING_EVERY as usize);
            }
        }
    }

    #[test]
    fn retry_seconds_round_up() {
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_secs(12)), 12);
        assert_eq!(retry_secs(Duration::from_millis(12_001)), 13);
    }
}
