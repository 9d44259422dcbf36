//! The provider's grant a browser session keeps for revalidation (`session.revalidate_secs`):
//! the OAuth access and refresh tokens, server-side only, and its block in the session record.
//!
//! The block follows the record's strings (record version 4; a record without it has no
//! grant): `[access_expires_at u32][granted_at u32][access len u16][refresh len u16]` then the
//! two tokens, lengths little-endian. It is decoded only when a check is due, never on the
//! request path, and the tokens never leave the gateway: no cookie, header, log line or
//! `/userinfo` field carries them (`Debug` hides them).

/// A provider's grant for one session.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds when the access token expires.
    pub access_expires_at: u64,
    /// Unix seconds when the grant was last known good (the login): the revalidation clock
    /// starts here.
    pub granted_at: u64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("access_expires_at", &self.access_expires_at)
            .field("granted_at", &self.granted_at)
            .finish()
    }
}

/// Fixed part of the block: two times and two lengths.
const FIXED: usize = 12;
/// Longest token kept (WeChat's are about 100 bytes); a longer one means no grant is kept.
const MAX_TOKEN: usize = 1024;

fn unix32(t: u64) -> u32 {
    t.min(u32::MAX as u64) as u32
}

/// The block for `g`, appended to `out`. Returns false (and appends nothing) when a token is
/// too long to keep.
pub(super) fn encode(g: &Grant, out: &mut Vec<u8>) -> bool {
    let (a, r) = (g.access_token.as_bytes(), g.refresh_token.as_bytes());
    if a.len() > MAX_TOKEN || r.len() > MAX_TOKEN {
        return false;
    }
    out.reserve(FIXED + a.len() + r.len());
    out.extend_from_slice(&unix32(g.access_expires_at).to_le_bytes());
    out.extend_from_slice(&unix32(g.granted_at).to_le_bytes());
    out.extend_from_slice(&(a.len() as u16).to_le_bytes());
    out.extend_from_slice(&(r.len() as u16).to_le_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(r);
    true
}

/// The block's parts, borrowed: `(access_expires_at, granted_at, access, refresh)`. None when
/// the bytes are not exactly one block.
fn parts(b: &[u8]) -> Option<(u64, u64, &str, &str)> {
    if b.len() < FIXED {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let (alen, rlen) = (u16_at(8), u16_at(10));
    if alen > MAX_TOKEN || rlen > MAX_TOKEN || b.len() != FIXED + alen + rlen {
        return None;
    }
    let access = std::str::from_utf8(&b[FIXED..FIXED + alen]).ok()?;
    let refresh = std::str::from_utf8(&b[FIXED + alen..]).ok()?;
    Some((u32_at(0), u32_at(4), access, refresh))
}

/// Whether `tail` (the record's bytes after its strings) is a readable grant block or empty.
pub(super) fn valid_tail(tail: &[u8]) -> bool {
    tail.is_empty() || parts(tail).is_some()
}

/// The grant in `tail`, if there is one.
pub(super) fn decode(tail: &[u8]) -> Option<Grant> {
    let (access_expires_at, granted_at, a, r) = parts(tail)?;
    Some(Grant {
        access_token: a.to_string(),
        refresh_token: r.to_string(),
        access_expires_at,
        granted_at,
    })
}

/// When the grant was last known good, without decoding the tokens (the revalidation clock,
/// read on requests).
pub(super) fn granted_at(tail: &[u8]) -> Option<u64> {
    parts(tail).map(|p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grant() -> Grant {
        Grant {
            access_token: "AT_ACCESS".into(),
            refresh_token: "RT_REFRESH_TOKEN".into(),
            access_expires_at: 1_900_000_000,
            granted_at: 1_800_000_000,
        }
    }

    #[test]
    fn round_trip_and_debug_hides_tokens() {
        let mut b = Vec::new();
        assert!(encode(&grant(), &mut b));
        assert_eq!(b.len(), FIXED + 9 + 16);
        assert_eq!(decode(&b), Some(grant()));
        assert_eq!(granted_at(&b), Some(1_800_000_000));
        assert!(valid_tail(&b) && valid_tail(&[]));
        assert_eq!(decode(&[]), None);
        let dbg = format!("{:?}", grant());
        assert!(
            !dbg.contains("AT_ACCESS") && !dbg.contains("RT_REFRESH"),
            "{dbg}"
        );
    }

    #[test]
    fn too_long_tokens_are_not_kept() {
        let mut g = grant();
        g.refresh_token = "r".repeat(MAX_TOKEN + 1);
        let mut b = vec![7];
        assert!(!encode(&g, &mut b));
        assert_eq!(b, vec![7]);
    }

    #[test]
    fn damaged_blocks_are_refused() {
        let mut b = Vec::new();
        encode(&grant(), &mut b);
        for cut in 1..b.len() {
            assert!(!valid_tail(&b[..cut]), "cut at {cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(!valid_tail(&longer));
        let mut bad_utf8 = b.clone();
        bad_utf8[FIXED] = 0xff;
        assert!(decode(&bad_utf8).is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&b);
            let _ = granted_at(&b);
            prop_assert_eq!(valid_tail(&b), b.is_empty() || decode(&b).is_some());
        }

        #[test]
        fn any_grant_round_trips(a in "[A-Za-z0-9_-]{0,200}", r in "[A-Za-z0-9_-]{0,200}",
                                  e in any::<u32>(), g in any::<u32>()) {
            let grant = Grant { access_token: a, refresh_token: r,
                                access_expires_at: e as u64, granted_at: g as u64 };
            let mut b = Vec::new();
            prop_assert!(encode(&grant, &mut b));
            prop_assert_eq!(decode(&b), Some(grant));
        }
    }
}
