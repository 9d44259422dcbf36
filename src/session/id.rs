//! The session id: 128 random bits behind a cookie or bearer token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// 128 random bits; rendered as 22 URL-safe base64 characters in cookies and bearer tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub(super) [u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut b);
        SessionId(b)
    }

    /// Strict parse: anything but exactly 22 base64url characters (canonical) is no session.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 22 {
            return None;
        }
        let mut b = [0u8; 18];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut b) {
            Ok(16) => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&b[..16]);
                Some(SessionId(id))
            }
            _ => None,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Not the id: a short digest that can be logged to correlate without revealing it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.0)[..4])
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({})", self.fingerprint())
    }
}
