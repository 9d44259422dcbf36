//! Account linking's ticket and the app's resume signature.
//!
//! The ticket the app's bind page receives is opaque to it: the identity the gateway vouched
//! for, sealed (AES-256-GCM, key derived from `link.secret`) so it can be neither read nor
//! altered, expiring after [`TICKET_TTL_SECS`]. It also names a login in flight the session
//! store keeps for the same time (the return URL travels there, server-side); taking that
//! entry at `/link/complete` is what makes the ticket single-use, across instances too.
//!
//! The app resumes with `sig` = hex hmac-sha256(link.secret, "<t>.<ticket>.<user_id>"),
//! checked in constant time, `t` no older than [`SIG_MAX_AGE_SECS`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

use crate::providers::Identity;
use crate::session::{truncate, Origin};

/// A ticket's lifetime (and its login in flight's).
pub(crate) const TICKET_TTL_SECS: u64 = 600;
/// Longest ticket accepted at `/link/complete` (issued ones are well under it: the strings in
/// a ticket are bounded by [`MAX_TEXT`]).
pub(crate) const MAX_TICKET: usize = 2048;
/// Oldest `t` accepted in a resume signature; and how far ahead of our clock it may be.
pub(crate) const SIG_MAX_AGE_SECS: u64 = 300;
pub(crate) const SIG_MAX_SKEW_SECS: u64 = 60;
/// Longest user id the app may give (it becomes `X-WeChat-UserId`).
pub(crate) const MAX_USER_ID: usize = 128;
/// Longest nickname / avatar carried in a ticket (WeChat's are far shorter).
const MAX_TEXT: usize = 256;
const VERSION: u8 = 1;
const KEY_LABEL: &[u8] = b"wxgate link ticket v1";
const TAG_LEN: usize = 16;

/// The single-use part of a ticket: where its login in flight lives in the session store.
pub(crate) fn pending_key(id: &[u8; 16]) -> String {
    format!("link.{}", hex::encode(id))
}

/// Who a ticket is for, and how the login resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) id: [u8; 16],
    pub(crate) expires_at: u64,
    /// Started by a browser (resumes with GET) or an app / mini program (POST).
    pub(crate) browser: bool,
    pub(crate) identity: Identity,
    pub(crate) phone: Option<String>,
}

/// Seals and opens tickets; verifies resume signatures.
pub(crate) struct Tickets {
    key: LessSafeKey,
    secret: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketProblem {
    /// Not a ticket this gateway sealed with this secret.
    Forged,
    Expired,
}

fn put(v: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => v.extend_from_slice(&u16::MAX.to_le_bytes()),
        Some(s) => {
            v.extend_from_slice(&(s.len() as u16).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
        }
    }
}

/// Reads what [`put`] wrote.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn str(&mut self) -> Option<Option<String>> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        if len == u16::MAX {
            return Some(None);
        }
        let s = std::str::from_utf8(self.take(len as usize)?).ok()?;
        Some(Some(s.to_string()))
    }
}

impl Claims {
    fn encode(&self) -> Vec<u8> {
        let i = &self.identity;
        let mut v = Vec::with_capacity(64 + i.openid.len() + i.nickname.len() + i.avatar.len());
        v.push(VERSION);
        v.extend_from_slice(&self.id);
        v.extend_from_slice(&self.expires_at.to_le_bytes());
        v.push(self.browser as u8);
        v.push(i.origin.provider);
        v.push(i.origin.kind);
        for s in [
            Some(truncate(&i.openid, MAX_TEXT)),
            i.unionid.as_deref().map(|u| truncate(u, MAX_TEXT)),
            Some(truncate(&i.appid, MAX_TEXT)),
            Some(truncate(&i.nickname, MAX_TEXT)),
            Some(truncate(&i.avatar, MAX_TEXT)),
            self.phone.as_deref().map(|p| truncate(p, 32)),
        ] {
            put(&mut v, s);
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Claims> {
        let mut r = Reader(b);
        if r.take(1)? != [VERSION] {
            return None;
        }
        let id: [u8; 16] = r.take(16)?.try_into().ok()?;
        let expires_at = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let head = r.take(3)?;
        let (browser, origin) = (
            head[0] == 1,
            Origin {
                provider: head[1],
                kind: head[2],
            },
        );
        let openid = r.str()??;
        let unionid = r.str()?;
        let appid = r.str()??;
        let nickname = r.str()??;
        let avatar = r.str()??;
        let phone = r.str()?;
        if !r.0.is_empty() {
            return None;
        }
        Some(Claims {
            id,
            expires_at,
            browser,
            identity: Identity {
                origin,
                openid,
                unionid,
                appid,
                nickname,
                avatar,
                grant: None,
            },
            phone,
        })
    }
}

/// hex hmac-sha256(secret, parts joined by `.`).
pub(crate) fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b".");
        }
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

impl Tickets {
    pub(crate) fn new(secret: &[u8]) -> Tickets {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&k, KEY_LABEL);
        let key = UnboundKey::new(&AES_256_GCM, tag.as_ref()).expect("32-byte key");
        Tickets {
            key: LessSafeKey::new(key),
            secret: secret.to_vec(),
        }
    }

    /// New claims for `identity`, expiring [`TICKET_TTL_SECS`] after `now`.
    pub(crate) fn claims(
        identity: &Identity,
        phone: Option<&str>,
        browser: bool,
        now: u64,
    ) -> Claims {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .expect("the system random source works");
        Claims {
            id,
            expires_at: now + TICKET_TTL_SECS,
            browser,
            identity: identity.clone(),
            phone: phone.map(str::to_string),
        }
    }

    /// The ticket: base64url(nonce ‖ sealed claims ‖ tag), URL-safe as it is.
    pub(crate) fn seal(&self, c: &Claims) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut body = c.encode();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut body,
            )
            .expect("sealing a small buffer");
        let mut out = Vec::with_capacity(NONCE_LEN + body.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The claims of a ticket this gateway sealed, unexpired at `now`.
    pub(crate) fn open(&self, ticket: &str, now: u64) -> Result<Claims, TicketProblem> {
        if ticket.len() > MAX_TICKET {
            return Err(TicketProblem::Forged);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(ticket)
            .map_err(|_| TicketProblem::Forged)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(TicketProblem::Forged);
        }
        let nonce: [u8; NONCE_LEN] = raw[..NONCE_LEN].try_into().expect("length checked");
        let mut sealed = raw[NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| TicketProblem::Forged)?;
        let c = Claims::decode(plain).ok_or(TicketProblem::Forged)?;
        if c.expires_at <= now {
            return Err(TicketProblem::Expired);
        }
        Ok(c)
    }

    /// `X-Wxgate-Signature` of a call to the app: `t=<unix>,v1=<hex hmac-sha256(secret,
    /// "<t>.<body>")>`.
    pub(crate) fn call_signature(&self, t: u64, body: &[u8]) -> String {
        format!(
            "t={t},v1={}",
            hmac_hex(&self.secret, &[t.to_string().as_bytes(), body])
        )
    }

    /// Whether `sig` is hex hmac-sha256(secret, "<t>.<ticket>.<user_id>"), compared in
    /// constant time, with `t` fresh at `now`.
    pub(crate) fn resume_ok(
        &self,
        t: u64,
        ticket: &str,
        user_id: &str,
        sig: &str,
        now: u64,
    ) -> bool {
        if t.saturating_add(SIG_MAX_AGE_SECS) < now || t > now.saturating_add(SIG_MAX_SKEW_SECS) {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(ticket.as_bytes());
        mac.update(b".");
        mac.update(user_id.as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

/// A user id the app may give: 1 to [`MAX_USER_ID`] visible ASCII characters (it becomes a
/// header value and is signed as text).
pub(crate) fn valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_USER_ID && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn identity() -> Identity {
        Identity {
            origin: Origin {
                provider: 0,
                kind: 0,
            },
            openid: "oOpen".into(),
            unionid: Some("uUnion".into()),
            appid: "wxA".into(),
            nickname: "Alice 🐼".into(),
            avatar: "https://a/132".into(),
            grant: None,
        }
    }

    #[test]
    fn tickets_round_trip_and_expire() {
        let t = Tickets::new(SECRET);
        let c = Tickets::claims(&identity(), Some("+8613800000000"), true, 1000);
        let ticket = t.seal(&c);
        assert!(ticket.len() < 400, "{}", ticket.len());
        assert!(ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t.open(&ticket, 1000), Ok(c.clone()));
        assert_eq!(t.open(&ticket, 1600), Err(TicketProblem::Expired));
        // Another secret, a flipped character, a truncation: forged.
        assert_eq!(
            Tickets::new(b"another secret, also 32 bytes long!").open(&ticket, 1000),
            Err(TicketProblem::Forged)
        );
        let mut flipped = ticket.clone().into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            t.open(std::str::from_utf8(&flipped).unwrap(), 1000),
            Err(TicketProblem::Forged)
        );
        assert_eq!(
            t.open(&ticket[..ticket.len() - 1], 1000),
            Err(TicketProblem::Forged)
        );
        assert_eq!(
            t.open(&"A".repeat(MAX_TICKET + 1), 1000),
            Err(TicketProblem::Forged)
        );
        // Two tickets for the same identity differ (fresh id and nonce).
        let c2 = Tickets::claims(&identity(), None, false, 1000);
        assert_ne!(c.id, c2.id);
        assert_ne!(t.seal(&c2), ticket);
    }

    #[test]
    fn long_strings_keep_tickets_bounded() {
        let t = Tickets::new(SECRET);
        let mut i = identity();
        i.nickname = "é".repeat(5000);
        i.avatar = "a".repeat(5000);
        i.openid = "o".repeat(300);
        i.unionid = Some("u".repeat(300));
        i.appid = "w".repeat(300);
        let ticket = t.seal(&Tickets::claims(&i, Some(&"1".repeat(99)), false, 1));
        assert!(ticket.len() <= MAX_TICKET, "{}", ticket.len());
        let back = t.open(&ticket, 1).unwrap();
        assert!(back.identity.nickname.len() <= MAX_TEXT);
    }

    #[test]
    fn resume_signature() {
        let t = Tickets::new(SECRET);
        let sig = hmac_hex(SECRET, &[b"1000", b"TICKET", b"42"]);
        assert!(t.resume_ok(1000, "TICKET", "42", &sig, 1000));
        assert!(t.resume_ok(1000, "TICKET", "42", &sig, 1000 + SIG_MAX_AGE_SECS));
        assert!(!t.resume_ok(1000, "TICKET", "42", &sig, 1001 + SIG_MAX_AGE_SECS));
        assert!(!t.resume_ok(1000, "TICKET", "42", &sig, 1000 - SIG_MAX_SKEW_SECS - 1));
        assert!(!t.resume_ok(1000, "TICKET", "43", &sig, 1000));
        assert!(!t.resume_ok(1001, "TICKET", "42", &sig, 1000));
        assert!(!t.resume_ok(1000, "TICKET", "42", &sig[..62], 1000));
        assert!(!t.resume_ok(1000, "TICKET", "42", "zz", 1000));
        assert!(!t.resume_ok(u64::MAX - 10, "TICKET", "42", &sig, 1000));
    }

    #[test]
    fn call_signature_format() {
        let t = Tickets::new(SECRET);
        let s = t.call_signature(1700000000, b"{}");
        assert_eq!(
            s,
            format!(
                "t=1700000000,v1={}",
                hmac_hex(SECRET, &[b"1700000000", b"{}"])
            )
        );
    }

    #[test]
    fn user_ids() {
        assert!(valid_user_id("42") && valid_user_id("user:abc@example.com"));
        assert!(!valid_user_id("") && !valid_user_id("a b") && !valid_user_id("é"));
        assert!(!valid_user_id(&"1".repeat(MAX_USER_ID + 1)));
    }

    proptest! {
        #[test]
        fn any_string_is_no_ticket(s in "[A-Za-z0-9_-]{0,300}") {
            let t = Tickets::new(SECRET);
            prop_assert!(t.open(&s, 0).is_err());
        }

        #[test]
        fn claims_round_trip(nick in ".{0,40}", phone in proptest::option::of("[+0-9]{1,20}"), browser: bool) {
            let t = Tickets::new(SECRET);
            let mut i = identity();
            i.nickname = nick;
            let c = Tickets::claims(&i, phone.as_deref(), browser, 5);
            prop_assert_eq!(t.open(&t.seal(&c), 5), Ok(c));
        }
    }
}
