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

pub const STATE_LEN: usize = 32 + 8 + 32;
/// Lifetime of a login in flight.
pub const LOGIN_TTL_SECS: u64 = 600;
/// How long a finished login is remembered, so that WeChat's repeated callback (within
/// seconds) sends the same browser to its target instead of failing.
pub const COMPLETED_TTL_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the login state is malformed")]
    Malformed,
    #[error("the login state has expired")]
    Expired,
    #[error("the login state was not issued to this browser")]
    WrongBrowser,
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

    /// Check a state from the callback against this browser's binding; returns the nonce.
    pub fn verify<'a>(
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

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A login cookie value we issued: 32 lowercase hex digits.
pub fn is_binding(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The short-lived login cookie: `<binding>` while a login is in flight, and
/// `<binding>.<nonce>.<base64url(rd)>` for a minute after one finished, so that WeChat's
/// repeated callback sends this browser to its target. Nothing about finished logins is kept
/// on the server.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoginCookie<'a> {
    pub binding: Option<&'a str>,
    /// The nonce of the login this browser just finished, and where it went.
    pub completed: Option<(&'a str, String)>,
}

impl<'a> LoginCookie<'a> {
    pub fn parse(v: Option<&'a str>) -> LoginCookie<'a> {
        let Some(v) = v else {
            return LoginCookie::default();
        };
        let mut parts = v.splitn(3, '.');
        let binding = parts.next().filter(|b| is_binding(b));
        let completed = match (binding, parts.next(), parts.next()) {
            (Some(_), Some(nonce), Some(rd)) if is_binding(nonce) => URL_SAFE_NO_PAD
                .decode(rd)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(|rd| (nonce, rd)),
            _ => None,
        };
        LoginCookie { binding, completed }
    }

    /// The value after a login with `nonce` finished, going to `rd`.
    pub fn completed_value(binding: &str, nonce: &str, rd: &str) -> String {
        format!("{binding}.{nonce}.{}", URL_SAFE_NO_PAD.encode(rd))
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
        assert_eq!(LoginCookie::parse(Some(&b)).binding, Some(b.as_str()));
        assert_eq!(LoginCookie::parse(Some("nothex")).binding, None);
        let v = LoginCookie::completed_value(&b, &n, "/x?y=1");
        let c = LoginCookie::parse(Some(&v));
        assert_eq!(c.binding, Some(b.as_str()));
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
