//! The session record: one logged-in user as a single compact, immutable byte buffer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::grant::{self, Grant};

/// Which login made a session: the provider (its record id, see the provider registry) and the
/// provider's own kind of login (e.g. WeChat's website or mini program). The record carries the
/// two bytes; only the provider knows what they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub provider: u8,
    pub kind: u8,
}

/// One logged-in user, kept as a single immutable byte buffer: a million of these live in
/// memory, and the identity headers are zero-copy slices of it.
///
/// Layout (version 3): `[version][provider][kind][expires_at u32][lengths]` then the strings
/// openid, unionid, appid, nickname (raw UTF-8: a third of its percent-encoded size for CJK and
/// emoji), avatar. Lengths are one byte (255 = absent) except nickname and avatar (two bytes,
/// little-endian). Every byte saved here is a megabyte at a million sessions.
///
/// Version 4 appends the account-linking block (see [`Session::with_link`]) after those strings,
/// then, optionally, the grant block (`session/grant.rs`: the provider's tokens for
/// revalidation, see [`Session::with_grant`]); version-3 records (neither block) are still read,
/// as records without a user id, phone or grant.
///
/// Version 2 (before providers) is still read: `[2][source][created_at u32][expires_at u32]`,
/// six lengths, the same strings plus a session key. It had one provider, record id 0, whose
/// kind bytes are the v2 source bytes; created_at and the session key are dropped on reading.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    buf: Bytes,
}

/// The fields of a new session.
#[derive(Clone, Copy)]
pub struct NewSession<'a> {
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub appid: &'a str,
    pub origin: Origin,
    /// Raw UTF-8, as the provider gave it.
    pub nickname: &'a str,
    pub avatar: &'a str,
    /// Unix seconds.
    pub expires_at: u64,
}

const VERSION: u8 = 4;
/// (offset, width) of each field's length in the header, in field order.
const LENS: [(usize, usize); 5] = [(7, 1), (8, 1), (9, 1), (10, 2), (12, 2)];
const HEAD: usize = 14;
/// An absent field, in a one-byte length slot (openid, unionid, appid: at most
/// [`MAX_SHORT_FIELD`] bytes). The two-byte slots (nickname, avatar) are always present, maybe
/// empty: 255 there is a length like any other.
const ABSENT: u16 = 255;
/// Longest value kept per field (WeChat's are far shorter; this bounds hostile input).
pub(super) const MAX_FIELD: usize = 2048;
const MAX_SHORT_FIELD: usize = 254;

/// Version 2: its header, length slots (the sixth is the session key) and kinds.
mod v2 {
    pub(super) const VERSION: u8 = 2;
    pub(super) const LENS: [(usize, usize); 6] =
        [(10, 1), (11, 1), (12, 1), (13, 2), (15, 2), (17, 1)];
    pub(super) const HEAD: usize = 18;
    pub(super) const KINDS: u8 = 4;
}

#[derive(Clone, Copy)]
enum Field {
    OpenId = 0,
    UnionId = 1,
    AppId = 2,
    Nickname = 3,
    Avatar = 4,
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// A field's length from its slot; None: absent (see [`ABSENT`]).
fn read_len(buf: &[u8], (at, width): (usize, usize)) -> Option<u16> {
    if width == 1 {
        Some(buf[at] as u16).filter(|&l| l != ABSENT)
    } else {
        Some(u16::from_le_bytes([buf[at], buf[at + 1]]))
    }
}

/// The strings after a header with these length slots, each checked for UTF-8; None when the
/// lengths do not add up to the buffer.
/// No allocation: this runs on every Redis read.
fn read_fields<'a, const N: usize>(
    buf: &'a [u8],
    head: usize,
    lens: &[(usize, usize); N],
) -> Option<[Option<&'a str>; N]> {
    let mut at = head;
    let mut out = [None; N];
    for (o, &slot) in out.iter_mut().zip(lens) {
        let Some(len) = read_len(buf, slot) else {
            continue;
        };
        let end = at.checked_add(len as usize).filter(|&e| e <= buf.len())?;
        *o = Some(std::str::from_utf8(&buf[at..end]).ok()?);
        at = end;
    }
    (at == buf.len()).then_some(out)
}

impl Session {
    pub fn new(n: &NewSession<'_>) -> Session {
        let mut fields: [Option<&str>; 5] = [
            Some(n.openid),
            n.unionid,
            Some(n.appid),
            Some(n.nickname),
            Some(n.avatar),
        ];
        for (f, (_, width)) in fields.iter_mut().zip(LENS) {
            *f = f.map(|f| {
                truncate(
                    f,
                    if width == 1 {
                        MAX_SHORT_FIELD
                    } else {
                        MAX_FIELD
                    },
                )
            });
        }
        let total = HEAD + fields.iter().flatten().map(|f| f.len()).sum::<usize>() + link::EMPTY;
        let mut v = Vec::with_capacity(total);
        v.push(VERSION);
        v.push(n.origin.provider);
        v.push(n.origin.kind);
        v.extend_from_slice(&unix32(n.expires_at).to_le_bytes());
        for (f, (_, width)) in fields.iter().zip(LENS) {
            // A two-byte slot has no "absent": its fields are always given (maybe empty).
            let len = match f {
                Some(f) => f.len() as u16,
                None if width == 1 => ABSENT,
                None => 0,
            };
            v.extend_from_slice(&len.to_le_bytes()[..width]);
        }
        for f in fields.iter().flatten() {
            v.extend_from_slice(f.as_bytes());
        }
        link::push_block(&mut v, None, None);
        Session {
            buf: Bytes::from(v),
        }
    }

    /// A stored record (Redis), checked: a record we cannot read is no session. Version 2
    /// records are converted.
    pub fn from_bytes(buf: Bytes) -> Option<Session> {
        match buf.first() {
            Some(&VERSION) if buf.len() >= HEAD => {
                let end = link::base_end(&buf)?;
                read_fields(&buf[..end], HEAD, &LENS)?;
                let link_len = link::block_len(&buf[end..])?;
                grant::valid_tail(&buf[end + link_len..]).then_some(Session { buf })
            }
            Some(&link::V3) if buf.len() >= HEAD => {
                read_fields(&buf, HEAD, &LENS)?;
                Some(link::from_v3(&buf))
            }
            Some(&v2::VERSION) if buf.len() >= v2::HEAD && buf[1] < v2::KINDS => {
                let f = read_fields(&buf, v2::HEAD, &v2::LENS)?;
                let expires_at = u32::from_le_bytes(buf[6..10].try_into().ok()?);
                Some(Session::new(&NewSession {
                    openid: f[0]?,
                    unionid: f[1],
                    appid: f[2]?,
                    origin: Origin {
                        provider: 0,
                        kind: buf[1],
                    },
                    nickname: f[3]?,
                    avatar: f[4]?,
                    expires_at: expires_at as u64,
                }))
            }
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    fn range(&self, f: Field) -> Option<std::ops::Range<usize>> {
        let mut start = HEAD;
        for slot in &LENS[..f as usize] {
            start += read_len(&self.buf, *slot).unwrap_or(0) as usize;
        }
        read_len(&self.buf, LENS[f as usize]).map(|len| start..start + len as usize)
    }

    fn str(&self, f: Field) -> Option<&str> {
        self.range(f)
            .map(|r| std::str::from_utf8(&self.buf[r]).unwrap_or(""))
    }

    fn header(&self, f: Field) -> Option<http::HeaderValue> {
        let r = self.range(f).filter(|r| !r.is_empty())?;
        http::HeaderValue::from_maybe_shared(self.buf.slice(r)).ok()
    }

    /// Which provider and kind of login made this session.
    pub fn origin(&self) -> Origin {
        Origin {
            provider: self.buf[1],
            kind: self.buf[2],
        }
    }
    pub fn expires_at(&self) -> u64 {
        u32::from_le_bytes(self.buf[3..7].try_into().unwrap_or_default()) as u64
    }
    pub fn openid(&self) -> &str {
        self.str(Field::OpenId).unwrap_or("")
    }
    pub fn unionid(&self) -> Option<&str> {
        self.str(Field::UnionId)
    }
    pub fn appid(&self) -> &str {
        self.str(Field::AppId).unwrap_or("")
    }
    pub fn nickname(&self) -> &str {
        self.str(Field::Nickname).unwrap_or("")
    }
    /// The nickname's bytes (UTF-8, checked when the record was made or read), without checking
    /// them again: for the per-request header, which encodes byte by byte anyway.
    pub fn nickname_bytes(&self) -> &[u8] {
        self.range(Field::Nickname)
            .map_or(&[][..], |r| &self.buf[r])
    }
    pub fn avatar(&self) -> &str {
        self.str(Field::Avatar).unwrap_or("")
    }

    /// Zero-copy header values (None when empty or not a valid header value).
    pub fn openid_header(&self) -> Option<http::HeaderValue> {
        self.header(Field::OpenId)
    }
    pub fn unionid_header(&self) -> Option<http::HeaderValue> {
        self.header(Field::UnionId)
    }
    pub fn appid_header(&self) -> Option<http::HeaderValue> {
        self.header(Field::AppId)
    }
    /// The raw nickname as a header value: for a provider that found nothing to encode in it.
    pub fn nickname_header_raw(&self) -> Option<http::HeaderValue> {
        self.header(Field::Nickname)
    }
    pub fn avatar_header(&self) -> Option<http::HeaderValue> {
        self.header(Field::Avatar)
    }
}

// --- The grant block (revalidation, `session/grant.rs`) -------------------------------------

impl Session {
    /// This record with `g` as its grant (replacing any), or without one when `g` is None or
    /// its tokens are too long to keep.
    pub fn with_grant(&self, g: Option<&Grant>) -> Session {
        let head = self.without_grant();
        let mut v = Vec::with_capacity(head.len() + 256);
        v.extend_from_slice(head);
        if let Some(g) = g {
            grant::encode(g, &mut v);
        }
        v.shrink_to_fit();
        Session {
            buf: Bytes::from(v),
        }
    }

    /// The provider's grant this session keeps (only with `session.revalidate_secs`).
    pub fn grant(&self) -> Option<Grant> {
        grant::decode(self.grant_tail())
    }

    /// When the grant was last known good, without decoding its tokens.
    pub fn granted_at(&self) -> Option<u64> {
        grant::granted_at(self.grant_tail())
    }

    /// The record's bytes after the link block: the grant block, or nothing.
    fn grant_tail(&self) -> &[u8] {
        &self.buf[self.without_grant().len()..]
    }

    /// The record's bytes up to the grant block: who the session is (the identity headers are
    /// made of these alone), without the provider's tokens.
    pub fn without_grant(&self) -> &[u8] {
        let end = link::end(&self.buf).unwrap_or(self.buf.len());
        &self.buf[..end]
    }
}

/// Unix seconds fit 32 bits until 2106.
fn unix32(t: u64) -> u32 {
    t.min(u32::MAX as u64) as u32
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("openid", &self.openid())
            .field("unionid", &self.unionid())
            .field("appid", &self.appid())
            .field("origin", &self.origin())
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

/// The account-linking block of version 4, after the identity strings: `[user_id len]
/// [phone len]` (one byte each, 255 = absent) then the two strings. Kept apart from the fields
/// above so a later block can follow it the same way.
mod link {
    use super::{read_len, truncate, Session, ABSENT, HEAD, LENS, MAX_SHORT_FIELD};
    use bytes::Bytes;

    /// The version before the block.
    pub(super) const V3: u8 = 3;

    /// Where the identity strings end (the block starts), when the lengths fit the buffer.
    pub(super) fn base_end(buf: &[u8]) -> Option<usize> {
        let mut end = HEAD;
        for slot in LENS {
            end += read_len(buf, slot).unwrap_or(0) as usize;
        }
        (end <= buf.len()).then_some(end)
    }

    /// The block's two strings and its length, when it is well formed (the grant block, if
    /// any, follows it).
    pub(super) fn read_block(block: &[u8]) -> Option<([Option<&str>; 2], usize)> {
        let [a, b, rest @ ..] = block else {
            return None;
        };
        let mut out = [None, None];
        let mut at = 0;
        for (o, len) in out.iter_mut().zip([*a, *b]) {
            if u16::from(len) == ABSENT {
                continue;
            }
            let s = rest.get(at..at + len as usize)?;
            *o = Some(std::str::from_utf8(s).ok()?);
            at += len as usize;
        }
        Some((out, EMPTY + at))
    }

    /// The block's length, when it is well formed.
    pub(super) fn block_len(block: &[u8]) -> Option<usize> {
        read_block(block).map(|(_, len)| len)
    }

    /// Where the block ends (and the grant block, if any, starts).
    pub(super) fn end(buf: &[u8]) -> Option<usize> {
        let at = base_end(buf)?;
        Some(at + block_len(&buf[at..])?)
    }

    /// Size of a block with neither field.
    pub(super) const EMPTY: usize = 2;

    fn fields<'a>(user_id: Option<&'a str>, phone: Option<&'a str>) -> [Option<&'a str>; 2] {
        [user_id, phone].map(|f| f.map(|f| truncate(f, MAX_SHORT_FIELD)))
    }

    pub(super) fn push_block(v: &mut Vec<u8>, user_id: Option<&str>, phone: Option<&str>) {
        let fields = fields(user_id, phone);
        for f in fields {
            v.push(f.map_or(ABSENT as u8, |f| f.len() as u8));
        }
        for f in fields.iter().flatten() {
            v.extend_from_slice(f.as_bytes());
        }
    }

    /// A checked version-3 record as version 4, with an empty block.
    pub(super) fn from_v3(buf: &[u8]) -> Session {
        let mut v = Vec::with_capacity(buf.len() + EMPTY);
        v.push(super::VERSION);
        v.extend_from_slice(&buf[1..]);
        push_block(&mut v, None, None);
        Session {
            buf: Bytes::from(v),
        }
    }

    impl Session {
        fn link_fields(&self) -> ([Option<&str>; 2], usize) {
            let end = base_end(&self.buf).unwrap_or(self.buf.len());
            let fields = read_block(&self.buf[end..]).map_or([None, None], |(f, _)| f);
            (fields, end)
        }

        /// The app's own user id, from account linking (`X-WeChat-UserId`).
        pub fn user_id(&self) -> Option<&str> {
            self.link_fields().0[0]
        }

        /// The phone number (E.164), once the user shared it (`X-WeChat-Phone`).
        pub fn phone(&self) -> Option<&str> {
            self.link_fields().0[1]
        }

        /// The same session with this user id and phone (each at most 254 bytes; `None`:
        /// absent).
        pub fn with_link(&self, user_id: Option<&str>, phone: Option<&str>) -> Session {
            let end = self.link_fields().1;
            // The grant block, if any, stays after the new link block.
            let grant = self.grant_tail();
            // Exactly the record's size: a million of these live in memory.
            let strings: usize = fields(user_id, phone)
                .iter()
                .flatten()
                .map(|f| f.len())
                .sum();
            let mut v = Vec::with_capacity(end + EMPTY + strings + grant.len());
            v.extend_from_slice(&self.buf[..end]);
            push_block(&mut v, user_id, phone);
            v.extend_from_slice(grant);
            Session {
                buf: Bytes::from(v),
            }
        }

        /// The user id and phone as header values, read in one pass over the record
        /// (`X-WeChat-UserId`, `X-WeChat-Phone`; this runs on every proxied request).
        pub fn link_headers(&self) -> [Option<http::HeaderValue>; 2] {
            // Zero-copy: slices of the record.
            self.link_fields().0.map(|f| {
                let f = f.filter(|f| !f.is_empty())?;
                http::HeaderValue::from_maybe_shared(self.buf.slice_ref(f.as_bytes())).ok()
            })
        }

        pub fn user_id_header(&self) -> Option<http::HeaderValue> {
            let [user_id, _] = self.link_headers();
            user_id
        }

        pub fn phone_header(&self) -> Option<http::HeaderValue> {
            let [_, phone] = self.link_headers();
            phone
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::{NewSession, Origin, Session};
        use bytes::Bytes;
        use proptest::prelude::*;

        fn sample() -> Session {
            with_profile(Some("uUnion"), "Alice 🐼", "")
        }

        /// openid `oOpen`, appid `wxA`, with this unionid, nickname and avatar.
        fn with_profile(unionid: Option<&str>, nickname: &str, avatar: &str) -> Session {
            Session::new(&NewSession {
                openid: "oOpen",
                unionid,
                appid: "wxA",
                origin: Origin {
                    provider: 0,
                    kind: 3,
                },
                nickname,
                avatar,
                expires_at: 99,
            })
        }

        #[test]
        fn new_records_have_no_link_and_keep_it_through_bytes() {
            let s = sample();
            assert_eq!(s.as_bytes()[0], 4);
            assert_eq!((s.user_id(), s.phone()), (None, None));
            assert!(s.user_id_header().is_none());
            let l = s.with_link(Some("42"), Some("+8613800000000"));
            assert_eq!(l.user_id(), Some("42"));
            assert_eq!(l.phone(), Some("+8613800000000"));
            assert_eq!(l.user_id_header().unwrap(), "42");
            assert_eq!(l.phone_header().unwrap(), "+8613800000000");
            assert_eq!(
                (l.openid(), l.unionid(), l.nickname()),
                ("oOpen", Some("uUnion"), "Alice 🐼")
            );
            let back = Session::from_bytes(l.as_bytes().clone()).unwrap();
            assert_eq!(back, l);
            // Replacing the block, not appending to it.
            let again = l.with_link(None, Some("+1"));
            assert_eq!((again.user_id(), again.phone()), (None, Some("+1")));
            assert_eq!(again.as_bytes().len(), s.as_bytes().len() + 2);
            // A damaged block is no record.
            let b = l.as_bytes();
            assert!(Session::from_bytes(b.slice(..b.len() - 1)).is_none());
            let mut v = b.to_vec();
            v.push(b'x');
            assert!(Session::from_bytes(Bytes::from(v)).is_none());
        }

        #[test]
        fn version_3_records_are_read_without_link() {
            let s = sample();
            let b = s.as_bytes();
            let mut v3 = b[..b.len() - 2].to_vec();
            v3[0] = 3;
            let r = Session::from_bytes(Bytes::from(v3)).unwrap();
            assert_eq!(r, s);
            assert_eq!(r.user_id(), None);
        }

        /// A nickname or avatar of exactly 255 bytes (the one-byte slots' "absent") is a
        /// length like any other in its two-byte slot: it was read as absent, which moved every
        /// later field, the link block included, onto the nickname's bytes.
        #[test]
        fn nickname_and_avatar_of_any_length_keep_their_place() {
            for len in [0, 1, 254, 255, 256, 511, 2048] {
                let nick = "n".repeat(len);
                let avatar = "a".repeat(len);
                let l = with_profile(Some("uUnion"), &nick, &avatar)
                    .with_link(Some("42"), Some("+8613800000000"));
                for r in [
                    l.clone(),
                    Session::from_bytes(l.as_bytes().clone()).unwrap(),
                ] {
                    assert_eq!(r.nickname(), nick, "{len}");
                    assert_eq!(r.avatar(), avatar, "{len}");
                    assert_eq!((r.openid(), r.unionid()), ("oOpen", Some("uUnion")));
                    assert_eq!(r.user_id(), Some("42"), "{len}");
                    assert_eq!(r.phone(), Some("+8613800000000"), "{len}");
                }
            }
        }

        proptest! {
            #[test]
            fn identity_fields_of_any_length_round_trip(nick in ".{0,300}", avatar in "[a-z:/.]{0,300}") {
                let s = with_profile(None, &nick, &avatar).with_link(Some("u"), None);
                let back = Session::from_bytes(s.as_bytes().clone()).unwrap();
                prop_assert_eq!(back.nickname(), nick.as_str());
                prop_assert_eq!(back.avatar(), avatar.as_str());
                prop_assert_eq!(back.unionid(), None);
                prop_assert_eq!(back.user_id(), Some("u"));
            }

            #[test]
            fn any_link_round_trips(uid in proptest::option::of(".{0,300}"), phone in proptest::option::of("[+0-9]{0,20}")) {
                let l = sample().with_link(uid.as_deref(), phone.as_deref());
                let back = Session::from_bytes(l.as_bytes().clone()).unwrap();
                prop_assert_eq!(back.phone(), phone.as_deref());
                prop_assert!(back.user_id().map(str::len).unwrap_or(0) <= 254);
                if uid.as_ref().is_some_and(|u| u.len() <= 254) {
                    prop_assert_eq!(back.user_id(), uid.as_deref());
                }
            }

            #[test]
            fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
                let mut v = sample().as_bytes().to_vec();
                v.truncate(v.len() - 2);
                v.extend_from_slice(&bytes);
                let _ = Session::from_bytes(Bytes::from(v)).map(|s| (s.user_id().map(str::len), s.phone_header()));
            }
        }
    }
}
