//! The `state` parameter WeChat carries through login: `[0-9a-f]{72}` = nonce (16 random
//! bytes) + expiry (unix seconds, 8 hex digits) + HMAC-SHA256 tag (16 bytes) over nonce,
//! expiry and the browser binding (the value of the short-lived login cookie). Only
//! alphanumerics, well under WeChat's 128-byte limit, useless in another browser.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub(crate) const STATE_LEN: usize = 32 + 8 + 32;
/// Lifetime of a login in flight.
pub(crate) const LOGIN_TTL_SECS: u64 = 600;
/// How long a finished login is remembered, so that WeChat's repeated callback (within
/// seconds) sends the same browser to its target instead of failing.
pub(crate) const COMPLETED_TTL_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    #[error("the login state is malformed")]
    Malformed,
    #[error("the login state has expired")]
    Expired,
    #[error("the login state was not issued to this browser")]
    WrongBrowser,
}

impl crate::common::error::ErrorAnswer for StateError {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::BAD_REQUEST
    }

    fn code(&self) -> &'static str {
        "invalid_state"
    }

    #[rustfmt::skip]
    fn texts(&self) -> (crate::common::pages::Text<'static>, crate::common::pages::Text<'static>) {
        let t = |zh, en| crate::common::pages::Text { zh, en };
        match self {
            StateError::Expired => (
                t("登录已超时", "Login timed out"),
                t("登录链接已过期，请重新登录。", "This login link has expired. Please sign in again."),
            ),
            StateError::WrongBrowser => (
                t("登录无法完成", "Login could not be completed"),
                t("登录需在发起登录的同一浏览器中完成，请重新登录。", "The login must finish in the browser that started it. Please sign in again."),
            ),
            StateError::Malformed => (
                t("无效的登录请求", "Invalid login request"),
                t("登录参数无效，请重新登录。", "The login parameters are invalid. Please sign in again."),
            ),
        }
    }

    fn offers_retry(&self) -> bool {
        true
    }
}

#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
}

impl StateSigner {
    /// Derive a purpose-bound key from the cookie secret.
    pub fn new(cookie_secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(cookie_secret).expect("any key length");
        mac.update(b"wxgate/login-state/v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn tag(&self, nonce: &str, exp: &str, binding: &str) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(nonce.as_bytes());
        mac.update(b"|");
        mac.update(exp.as_bytes());
        mac.update(b"|");
        mac.update(binding.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(&full[..16]);
        t
    }

    /// A fresh state for `binding`, valid until `now + LOGIN_TTL_SECS`. Returns (state, nonce).
    pub fn issue(&self, binding: &str, now: u64) -> (String, String) {
        let nonce = random_hex(16);
        let exp = format!("{:08x}", (now + LOGIN_TTL_SECS).min(u32::MAX as u64));
        let tag = hex::encode(self.tag(&nonce, &exp, binding));
        (format!("{nonce}{exp}{tag}"), nonce)
    }

    /// [`StateSigner::verify`] against each of this browser's bindings: the nonce when one
    /// of them signed the state.
    pub(crate) fn verify_any<'a>(
        &self,
        state: &'a str,
        bindings: &[&str],
        now: u64,
    ) -> Result<&'a str, StateError> {
        let mut err = StateError::WrongBrowser;
        for b in bindings {
            match self.verify(state, Some(b), now) {
                Ok(n) => return Ok(n),
                Err(StateError::WrongBrowser) => {}
                Err(e) => err = e,
            }
        }
        if bindings.is_empty() {
            // Still report a malformed state as such.
            self.verify(state, None, now)?;
        }
        Err(err)
    }

    /// Check a state from the callback against this browser's binding; returns the nonce.
    pub(crate) fn verify<'a>(
        &self,
        state: &'a str,
        binding: Option<&str>,
        now: u64,
    ) -> Result<&'a str, StateError> {
        if state.len() != STATE_LEN
            || !state
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StateError::Malformed);
        }
        let (nonce, rest) = state.split_at(32);
        let (exp, tag) = rest.split_at(8);
        let exp_n = u64::from_str_radix(exp, 16).map_err(|_| StateError::Malformed)?;
        let mut given = [0u8; 16];
        hex::decode_to_slice(tag, &mut given).map_err(|_| StateError::Malformed)?;
        let binding = binding.ok_or(StateError::WrongBrowser)?;
        if !bool::from(self.tag(nonce, exp, binding).ct_eq(&given)) {
            return Err(StateError::WrongBrowser);
        }
        if exp_n <= now {
            return Err(StateError::Expired);
        }
        Ok(nonce)
    }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A login cookie value we issued: 32 lowercase hex digits.
pub(crate) fn is_binding(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How many logins in flight one browser can finish: each `/login` issues a fresh binding
/// and keeps the newest earlier ones, so two or three tabs that each started a login can all
/// finish, in any order.
pub(crate) const MAX_BINDINGS: usize = 3;

/// The short-lived login cookie: `<binding>[-<binding>...]` (newest first, at most
/// [`MAX_BINDINGS`]) while logins are in flight, and `<bindings>.<nonce>.<base64url(rd)>` for a
/// minute after one finished, so that WeChat's repeated callback sends this browser to its
/// target. Nothing about finished logins is kept on the server.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LoginCookie<'a> {
    /// The well-formed bindings, newest first (at most [`MAX_BINDINGS`]).
    pub(crate) bindings: Vec<&'a str>,
    /// The nonce of the login this browser just finished, and where it went.
    pub(crate) completed: Option<(&'a str, String)>,
}

impl<'a> LoginCookie<'a> {
    pub(crate) fn parse(v: Option<&'a str>) -> LoginCookie<'a> {
        let Some(v) = v else {
            return LoginCookie::default();
        };
        let mut parts = v.splitn(3, '.');
        let bindings: Vec<&str> = parts
            .next()
            .unwrap_or("")
            .split('-')
            .filter(|b| is_binding(b))
            .take(MAX_BINDINGS)
            .collect();
        let completed = match (bindings.is_empty(), parts.next(), parts.next()) {
            // A base64 rd is never longer than this (rd is at most 2048 bytes).
            (false, Some(nonce), Some(rd)) if is_binding(nonce) && rd.len() <= 4 * 1024 => {
                URL_SAFE_NO_PAD
                    .decode(rd)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|rd| (nonce, rd))
            }
            _ => None,
        };
        LoginCookie {
            bindings,
            completed,
        }
    }

    /// The value `/login` sets: the `fresh` binding (never one the client sent) first, then
    /// the newest earlier ones this browser holds.
    pub(crate) fn with_fresh(&self, fresh: &str) -> String {
        let mut v = String::with_capacity(MAX_BINDINGS * 33);
        v.push_str(fresh);
        for b in self
            .bindings
            .iter()
            .filter(|b| **b != fresh)
            .take(MAX_BINDINGS - 1)
        {
            v.push('-');
            v.push_str(b);
        }
        v
    }

    /// The value after a login with `nonce` finished, going to `rd`; the bindings stay, so
    /// the browser's other logins in flight can still finish.
    pub(crate) fn completed_value(&self, nonce: &str, rd: &str) -> String {
        format!(
            "{}.{nonce}.{}",
            self.bindings.join("-"),
            URL_SAFE_NO_PAD.encode(rd)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let s = StateSigner::new(b"0123456789abcdef0123456789abcdef");
        let b = random_hex(16);
        let (state, nonce) = s.issue(&b, 1000);
        assert_eq!(state.len(), STATE_LEN);
        assert!(state.len() <= 128 && state.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(s.verify(&state, Some(&b), 1001), Ok(nonce.as_str()));
        assert_eq!(
            s.verify(&state, Some(&b), 1000 + LOGIN_TTL_SECS),
            Err(StateError::Expired)
        );
        assert_eq!(
            s.verify(&state, Some(&random_hex(16)), 1001),
            Err(StateError::WrongBrowser)
        );
        assert_eq!(s.verify(&state, None, 1001), Err(StateError::WrongBrowser));
    }

    #[test]
    fn login_cookie_forms() {
        let b = random_hex(16);
        let n = random_hex(16);
        assert_eq!(LoginCookie::parse(None), LoginCookie::default());
        assert_eq!(LoginCookie::parse(Some(&b)).bindings, vec![b.as_str()]);
        assert!(LoginCookie::parse(Some("nothex")).bindings.is_empty());
        let v = LoginCookie::parse(Some(&b)).completed_value(&n, "/x?y=1");
        let c = LoginCookie::parse(Some(&v));
        assert_eq!(c.bindings, vec![b.as_str()]);
        assert_eq!(c.completed, Some((n.as_str(), "/x?y=1".to_string())));
        assert_eq!(
            LoginCookie::parse(Some(&format!("{b}.{n}.%%%"))).completed,
            None
        );
        assert_eq!(
            LoginCookie::parse(Some(&format!("{b}.short.L3g"))).completed,
            None
        );
    }

    #[test]
    fn fresh_binding_first_and_at_most_three() {
        let (b1, b2, b3, b4) = (
            random_hex(16),
            random_hex(16),
            random_hex(16),
            random_hex(16),
        );
        let v = LoginCookie::default().with_fresh(&b1);
        assert_eq!(v, b1);
        let v = LoginCookie::parse(Some(&v)).with_fresh(&b2);
        let v = LoginCookie::parse(Some(&v)).with_fresh(&b3);
        let v = LoginCookie::parse(Some(&v)).with_fresh(&b4);
        assert_eq!(
            LoginCookie::parse(Some(&v)).bindings,
            vec![b4.as_str(), b3.as_str(), b2.as_str()]
        );
        // Junk in the list is dropped, and more than three are never read.
        let junk = format!("{b1}-zz-{b2}-{b3}-{b4}");
        assert_eq!(
            LoginCookie::parse(Some(&junk)).bindings,
            vec![b1.as_str(), b2.as_str(), b3.as_str()]
        );
        // The completed form keeps the bindings.
        let n = random_hex(16);
        let done = LoginCookie::parse(Some(&v)).completed_value(&n, "/r");
        let c = LoginCookie::parse(Some(&done));
        assert_eq!(c.bindings.len(), 3);
        assert_eq!(c.completed, Some((n.as_str(), "/r".to_string())));
    }

    #[test]
    fn verify_any_binding() {
        let s = StateSigner::new(b"0123456789abcdef0123456789abcdef");
        let (b1, b2, b3) = (random_hex(16), random_hex(16), random_hex(16));
        let (state, nonce) = s.issue(&b2, 1000);
        assert_eq!(s.verify_any(&state, &[&b1, &b2], 1001), Ok(nonce.as_str()));
        assert_eq!(
            s.verify_any(&state, &[&b1, &b3], 1001),
            Err(StateError::WrongBrowser)
        );
        assert_eq!(
            s.verify_any(&state, &[], 1001),
            Err(StateError::WrongBrowser)
        );
        assert_eq!(
            s.verify_any(&state, &[&b2], 1000 + LOGIN_TTL_SECS),
            Err(StateError::Expired)
        );
        assert_eq!(s.verify_any("x", &[], 1001), Err(StateError::Malformed));
        assert_eq!(s.verify_any("x", &[&b1], 1001), Err(StateError::Malformed));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Any state and cookie from a client: a clean answer, never a panic, and never a
        /// valid nonce without the key.
        #[test]
        fn any_state_and_cookie(state in proptest::prelude::any::<String>(),
                                cookie in proptest::prelude::any::<String>(),
                                hexy in "[0-9a-f]{72}") {
            let s = StateSigner::new(b"0123456789abcdef0123456789abcdef");
            let c = LoginCookie::parse(Some(&cookie));
            proptest::prop_assert!(c.bindings.len() <= MAX_BINDINGS);
            proptest::prop_assert!(s.verify_any(&state, &c.bindings, 1000).is_err());
            proptest::prop_assert!(s.verify(&hexy, c.bindings.first().copied(), 1000).is_err());
            let _ = c.with_fresh(&random_hex(16));
        }

        #[test]
        fn cookie_round_trip(rd in proptest::prelude::any::<String>()) {
            let b = random_hex(16);
            let n = random_hex(16);
            let v = LoginCookie::parse(Some(&b)).completed_value(&n, &rd);
            let c = LoginCookie::parse(Some(&v));
            if rd.len() <= 3 * 1024 {
                proptest::prop_assert_eq!(c.completed, Some((n.as_str(), rd.clone())));
            }
        }
    }

    #[test]
    fn tampering_detected() {
        let s = StateSigner::new(b"0123456789abcdef0123456789abcdef");
        let b = random_hex(16);
        let (state, _) = s.issue(&b, 1000);
        // Push the expiry forward: the tag no longer matches.
        let mut t = state.clone().into_bytes();
        t[32] = if t[32] == b'f' { b'e' } else { b'f' };
        assert_eq!(
            s.verify(std::str::from_utf8(&t).unwrap(), Some(&b), 1001),
            Err(StateError::WrongBrowser)
        );
        assert_eq!(
            s.verify(&state[..71], Some(&b), 1001),
            Err(StateError::Malformed)
        );
        assert_eq!(
            s.verify(&state.to_uppercase(), Some(&b), 1001),
            Err(StateError::Malformed)
        );
        let other = StateSigner::new(b"another secret that is long enough!!");
        assert_eq!(
            other.verify(&state, Some(&b), 1001),
            Err(StateError::WrongBrowser)
        );
    }
}
