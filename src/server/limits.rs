//! Limits on what a client can hold open: connections at once (in all and per client IP),
//! headers per request, and how the acceptor backs off when the process runs out of file
//! descriptors.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;

/// Header fields a request may carry, HTTP/1 and HTTP/2 alike (hyper's HTTP/1 parser stops at
/// this many and answers 431).
pub const MAX_HEADERS: usize = 100;

/// More than [`MAX_HEADERS`] fields. The `Cookie` crumbs HTTP/2 clients send separately
/// (RFC 9113 8.2.3) count as one field, as they do on HTTP/1. O(1) for every request under the
/// limit.
pub fn too_many_headers(h: &HeaderMap) -> bool {
    if h.len() <= MAX_HEADERS {
        return false;
    }
    let cookies = h.get_all(http::header::COOKIE).iter().count();
    h.len() - cookies.saturating_sub(1) > MAX_HEADERS
}

/// The open client connections, in all and per IP. The per-IP map holds only IPs with a
/// connection open, so its size is bounded by `max_connections`.
pub struct ConnLimits {
    max: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// One open connection's slot; given back when dropped.
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl ConnLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let ip = canonical(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max {
            return Err(Refused::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// IPs with a connection open now.
    #[cfg(test)]
    pub fn ips(&self) -> usize {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accept error that says nothing about the listener (one connection went away before it
/// was accepted): try again at once. Anything else (out of file descriptors, of memory, of
/// buffers) calls for a pause before the next try.
pub fn accept_error_is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Pause after an accept error other than a transient one.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one "still failing" line per this long.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// The acceptor's failure state, for one log line per state change (and one every few seconds
/// while it lasts) instead of one per attempt.
#[derive(Default)]
pub struct AcceptFailures {
    /// Since when accepting fails, and failures since the last log line.
    failing: Option<(Instant, u64)>,
    last_log: Option<Instant>,
}

/// What to log after an accept attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptLog {
    Nothing,
    /// The first failure after a success.
    Started,
    /// Still failing: this many failures since the last line.
    Still(u64),
    /// Accepting again after failing for this long.
    Recovered(Duration),
}

impl AcceptFailures {
    pub fn failed(&mut self, now: Instant) -> AcceptLog {
        match &mut self.failing {
            None => {
                self.failing = Some((now, 0));
                self.last_log = Some(now);
                AcceptLog::Started
            }
            Some((_, n)) => {
                *n += 1;
                if self
                    .last_log
                    .is_none_or(|t| now.saturating_duration_since(t) >= ACCEPT_LOG_EVERY)
                {
                    self.last_log = Some(now);
                    AcceptLog::Still(std::mem::take(n))
                } else {
                    AcceptLog::Nothing
                }
            }
        }
    }

    pub fn accepted(&mut self, now: Instant) -> AcceptLog {
        match self.failing.take() {
            Some((since, _)) => AcceptLog::Recovered(now.saturating_duration_since(since)),
            None => AcceptLog::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    fn headers(n: usize, cookies: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..n {
            h.append(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        for i in 0..cookies {
            h.append(
                http::header::COOKIE,
                HeaderValue::from_str(&format!("c{i}=1")).unwrap(),
            );
        }
        h
    }

    #[test]
    fn header_count() {
        assert!(!too_many_headers(&headers(100, 0)));
        assert!(too_many_headers(&headers(101, 0)));
        assert!(too_many_headers(&headers(150, 0)));
        // Cookie crumbs count as one field.
        assert!(!too_many_headers(&headers(99, 60)));
        assert!(too_many_headers(&headers(100, 2)));
        // Repeated values of one name count each.
        let mut h = HeaderMap::new();
        for _ in 0..101 {
            h.append("x-same", HeaderValue::from_static("v"));
        }
        assert!(too_many_headers(&h));
    }

    #[test]
    fn connection_caps_and_release() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let g1 = l.admit(a).unwrap();
        let g2 = l.admit(mapped).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refused::PerIp));
        let g3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refused::Total));
        assert_eq!((l.open(), l.ips()), (3, 2));
        drop(g1);
        let g4 = l.admit(a).unwrap();
        drop((g2, g3, g4));
        assert_eq!((l.open(), l.ips()), (0, 0), "no entry is left behind");
    }

    #[test]
    fn accept_errors() {
        assert!(accept_error_is_transient(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // EMFILE on Linux.
        assert!(!accept_error_is_transient(&io::Error::from_raw_os_error(
            24
        )));
        assert!(!accept_error_is_transient(&io::Error::from(
            io::ErrorKind::OutOfMemory
        )));
    }

    #[test]
    fn accept_failures_log_once_per_state_change() {
        let mut f = AcceptFailures::default();
        let t0 = Instant::now();
        assert_eq!(f.accepted(t0), AcceptLog::Nothing);
        assert_eq!(f.failed(t0), AcceptLog::Started);
        let mut logged = 0;
        for i in 1..=200u64 {
            // Every 50 ms for 10 s.
            if f.failed(t0 + Duration::from_millis(50 * i)) != AcceptLog::Nothing {
                logged += 1;
            }
        }
        assert_eq!(logged, 2, "one line per 5 s");
        assert_eq!(
            f.accepted(t0 + Duration::from_secs(11)),
            AcceptLog::Recovered(Duration::from_secs(11))
        );
        assert_eq!(f.accepted(t0 + Duration::from_secs(12)), AcceptLog::Nothing);
        assert_eq!(f.failed(t0 + Duration::from_secs(13)), AcceptLog::Started);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Any sequence of admits and releases keeps the counts exact and the map bounded.
        #[test]
        fn admits_and_releases_balance(ops in proptest::collection::vec((0u8..8, any::<bool>()), 0..200)) {
            let l = ConnLimits::new(10, 3);
            let mut held: Vec<(u8, ConnGuard)> = Vec::new();
            for (ip, release) in ops {
                if release {
                    if let Some(i) = held.iter().position(|(h, _)| *h == ip) {
                        held.swap_remove(i);
                    }
                } else {
                    let addr = IpAddr::from([10, 0, 0, ip]);
                    let per_ip = held.iter().filter(|(h, _)| *h == ip).count();
                    match l.admit(addr) {
                        Ok(g) => {
                            prop_assert!(held.len() < 10 && per_ip < 3);
                            held.push((ip, g));
                        }
                        Err(Refused::Total) => prop_assert!(held.len() >= 10),
                        Err(Refused::PerIp) => prop_assert!(per_ip >= 3),
                    }
                }
                prop_assert_eq!(l.open(), held.len());
                prop_assert!(l.ips() <= held.len());
            }
            drop(held);
            prop_assert_eq!((l.open(), l.ips()), (0, 0));
        }
    }
}
