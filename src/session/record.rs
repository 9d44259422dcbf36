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
/// Layout (version 4): `[version][provider][kind][expires_at u32][lengths]` then the strings
/// openid, unionid, appid, nickname (raw UTF-8: a third of its percent-encoded size for CJK and
/// emoji), avatar. Lengths are one byte (255 = absent) except nickname and avatar (two bytes,
/// little-endian). Every byte saved here is a megabyte at a million sessions.
///
/// Version 4 adds, after the strings, an optional grant block (`session/grant.rs`: the
/// provider's tokens for revalidation); version 3 is the same layout without it and is still
/// read.
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
/// Version 3: version 4 without the grant block.
const V3: u8 = 3;
/// (offset, width) of each field's length in the header, in field order.
const LENS: [(usize, usize); 5] = [(7, 1), (8, 1), (9, 1), (10, 2), (12, 2)];
const HEAD: usize = 14;
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

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn read_len(buf: &[u8], (at, width): (usize, usize)) -> u16 {
    if width == 1 {
        buf[at] as u16
    } else {
        u16::from_le_bytes([buf[at], buf[at + 1]])
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
        let len = read_len(buf, slot);
        if len == ABSENT {
            continue;
        }
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
        let total = HEAD + fields.iter().flatten().map(|f| f.len()).sum::<usize>();
        let mut v = Vec::with_capacity(total);
        v.push(VERSION);
        v.push(n.origin.provider);
        v.push(n.origin.kind);
        v.extend_from_slice(&unix32(n.expires_at).to_le_bytes());
        for (f, (_, width)) in fields.iter().zip(LENS) {
            let len = f.map(|f| f.len() as u16).unwrap_or(ABSENT);
            v.extend_from_slice(&len.to_le_bytes()[..width]);
        }
        for f in fields.iter().flatten() {
            v.extend_from_slice(f.as_bytes());
        }
        Session {
            buf: Bytes::from(v),
        }
    }

    /// A stored record (Redis), checked: a record we cannot read is no session. Version 2
    /// records are converted.
    pub fn from_bytes(buf: Bytes) -> Option<Session> {
        match buf.first() {
            Some(&v) if (v == VERSION || v == V3) && buf.len() >= HEAD => {
                let end = strings_end(&buf)?;
                read_fields(&buf[..end], HEAD, &LENS)?;
                let tail = &buf[end..];
                (tail.is_empty() || (v == VERSION && grant::valid_tail(tail)))
                    .then_some(Session { buf })
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
            let len = read_len(&self.buf, *slot);
            if len != ABSENT {
                start += len as usize;
            }
        }
        let len = read_len(&self.buf, LENS[f as usize]);
        (len != ABSENT).then(|| start..start + len as usize)
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

/// Where the strings end (and the grant block, if any, starts); None when the lengths run
/// past the buffer.
fn strings_end(buf: &[u8]) -> Option<usize> {
    let mut at = HEAD;
    for slot in LENS {
        let len = read_len(buf, slot);
        if len != ABSENT {
            at += len as usize;
        }
    }
    (at <= buf.len()).then_some(at)
}

impl Session {
    /// This record with `g` as its grant (replacing any), or without one when `g` is None or
    /// its tokens are too long to keep.
    pub fn with_grant(&self, g: Option<&Grant>) -> Session {
        let end = strings_end(&self.buf).unwrap_or(self.buf.len());
        let mut v = Vec::with_capacity(end + 256);
        v.extend_from_slice(&self.buf[..end]);
        v[0] = VERSION;
        if let Some(g) = g {
            grant::encode(g, &mut v);
        }
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

    fn grant_tail(&self) -> &[u8] {
        let end = strings_end(&self.buf).unwrap_or(self.buf.len());
        &self.buf[end..]
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
