//! The session record: one logged-in user as a single compact, immutable byte buffer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which WeChat app a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Website,
    OfficialAccount,
    MobileApp,
    MiniProgram,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Website => "website",
            Source::OfficialAccount => "official_account",
            Source::MobileApp => "mobile_app",
            Source::MiniProgram => "mini_program",
        }
    }
}

/// One logged-in user, kept as a single immutable byte buffer: a million of these live in
/// memory, and the identity headers are zero-copy slices of it.
///
/// Layout: `[version][source][created_at u32][expires_at u32][lengths]` then the strings openid,
/// unionid, appid, nickname (raw UTF-8: a third of its percent-encoded size for CJK and emoji),
/// avatar, session_key. Lengths are one byte (255 =
/// absent) except nickname and avatar (two bytes, little-endian). Every byte saved here is a
/// megabyte at a million sessions.
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
    pub source: Source,
    /// Raw UTF-8, as WeChat gave it.
    pub nickname: &'a str,
    pub avatar: &'a str,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    /// Mini program only; never leaves the gateway.
    pub session_key: Option<&'a str>,
}

const VERSION: u8 = 2;
/// (offset, width) of each field's length in the header, in field order.
const LENS: [(usize, usize); 6] = [(10, 1), (11, 1), (12, 1), (13, 2), (15, 2), (17, 1)];
const HEAD: usize = 18;
const ABSENT: u16 = 255;
/// Longest value kept per field (WeChat's are far shorter; this bounds hostile input).
pub(super) const MAX_FIELD: usize = 2048;
const MAX_SHORT_FIELD: usize = 254;

#[derive(Clone, Copy)]
enum Field {
    OpenId = 0,
    UnionId = 1,
    AppId = 2,
    Nickname = 3,
    Avatar = 4,
    SessionKey = 5,
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

impl Session {
    pub fn new(n: &NewSession<'_>) -> Session {
        let fields: [Option<&str>; 6] = [
            Some(n.openid),
            n.unionid,
            Some(n.appid),
            Some(n.nickname),
            Some(n.avatar),
            n.session_key,
        ];
        let mut fields = fields;
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
        v.push(n.source as u8);
        v.extend_from_slice(&unix32(n.created_at).to_le_bytes());
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

    /// A stored record (Redis), checked: a record we cannot read is no session.
    pub fn from_bytes(buf: Bytes) -> Option<Session> {
        if buf.len() < HEAD || buf[0] != VERSION || Source::from_u8(buf[1]).is_none() {
            return None;
        }
        let s = Session { buf };
        let mut end = HEAD;
        for i in 0..6 {
            let len = s.len_of(i);
            if len != ABSENT {
                end += len as usize;
            }
        }
        if end != s.buf.len() {
            return None;
        }
        // Every field must be valid UTF-8 on its own (no split characters).
        for f in [
            Field::OpenId,
            Field::UnionId,
            Field::AppId,
            Field::Nickname,
            Field::Avatar,
            Field::SessionKey,
        ] {
            if let Some(r) = s.range(f) {
                std::str::from_utf8(&s.buf[r]).ok()?;
            }
        }
        Some(s)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    fn len_of(&self, i: usize) -> u16 {
        let (at, width) = LENS[i];
        if width == 1 {
            self.buf[at] as u16
        } else {
            u16::from_le_bytes([self.buf[at], self.buf[at + 1]])
        }
    }

    fn range(&self, f: Field) -> Option<std::ops::Range<usize>> {
        let mut start = HEAD;
        for i in 0..f as usize {
            let len = self.len_of(i);
            if len != ABSENT {
                start += len as usize;
            }
        }
        let len = self.len_of(f as usize);
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

    pub fn source(&self) -> Source {
        Source::from_u8(self.buf[1]).unwrap_or(Source::Website)
    }
    pub fn created_at(&self) -> u64 {
        u32::from_le_bytes(self.buf[2..6].try_into().unwrap_or_default()) as u64
    }
    pub fn expires_at(&self) -> u64 {
        u32::from_le_bytes(self.buf[6..10].try_into().unwrap_or_default()) as u64
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
    pub fn session_key(&self) -> Option<&str> {
        self.str(Field::SessionKey)
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
    /// Percent-encoded UTF-8 (nicknames hold emoji and control characters); zero-copy when
    /// there is nothing to encode.
    pub fn nickname_header(&self) -> Option<http::HeaderValue> {
        let raw = self.nickname();
        if raw.bytes().all(crate::pipeline::inject::is_unreserved) {
            return self.header(Field::Nickname);
        }
        let enc = crate::pipeline::inject::encode_nickname(raw);
        http::HeaderValue::from_maybe_shared(Bytes::from(enc)).ok()
    }
    pub fn avatar_header(&self) -> Option<http::HeaderValue> {
        self.header(Field::Avatar)
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
            .field("source", &self.source())
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

impl Source {
    fn from_u8(b: u8) -> Option<Source> {
        Some(match b {
            0 => Source::Website,
            1 => Source::OfficialAccount,
            2 => Source::MobileApp,
            3 => Source::MiniProgram,
            _ => return None,
        })
    }
}
