//! Sessions: the server-side record behind a cookie or bearer token, the store trait, and the
//! in-memory store on moka (absolute TTL, idle timeout, bounded capacity). The same store
//! keeps the short-lived records of logins in flight.

pub mod redis;

use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use rand::RngCore;
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
const MAX_FIELD: usize = 2048;
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
        if raw.bytes().all(crate::pipeline::identity::is_unreserved) {
            return self.header(Field::Nickname);
        }
        let enc = crate::pipeline::identity::encode_nickname(raw);
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

/// 128 random bits; rendered as 22 URL-safe base64 characters in cookies and bearer tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

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

/// What `/login` leaves behind for `/callback`: where to go, and through which app. (Which
/// browser started it is in the signed state.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub rd: String,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// The session store. Implementations: [`MemoryStore`] and [`crate::session::redis::RedisStore`].
pub trait SessionStore: Send + Sync + 'static {
    fn get(
        &self,
        id: &SessionId,
        now: u64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;
    fn insert(
        &self,
        id: SessionId,
        s: Session,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn remove(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Remember a login in flight under its nonce, for at most `ttl`.
    fn put_pending(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Take (and so consume) a login in flight: the second caller gets `None`.
    fn take_pending(
        &self,
        nonce: &str,
    ) -> impl Future<Output = Result<Option<PendingLogin>, StoreError>> + Send;
    /// Number of live sessions (approximate), for metrics; `None` when the store cannot say cheaply.
    fn session_count(&self) -> Option<u64>;
}

/// Sessions in process memory.
pub struct MemoryStore {
    sessions: moka::sync::Cache<SessionId, Session>,
    pending: moka::sync::Cache<Box<str>, Pending>,
}

/// A login in flight as the memory store keeps it: the record and its own lifetime.
#[derive(Clone)]
struct Pending {
    login: PendingLogin,
    ttl: Duration,
    /// Checked on take too: moka's `remove` hands back an entry that expired but was not
    /// evicted yet.
    deadline: std::time::Instant,
}

/// Total weight (bytes, see [`pending_weight`]) of the logins in flight kept in memory.
///
/// 64 MiB: an ordinary login weighs ~250 bytes (rd of a few dozen bytes), so this holds
/// ~250 000 logins in flight (400 a second for the full 10 minutes); a worst case one
/// (`rd` at its 2048-byte limit, 6 KiB once percent-encoded is refused) weighs under 2.3 KiB,
/// so even then ~29 000. It is the ceiling of what unauthenticated `/login`s can make the
/// gateway hold; the per-IP login rate limit decides how much of it one client can fill.
pub const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes a login in flight costs: its strings plus the cache's own per-entry bookkeeping
/// (moka's entry, deque node and hash slot: measured at well under 200 bytes, counted as 200).
pub(crate) fn pending_weight(nonce: &str, p: &PendingLogin) -> u32 {
    let bytes = 200 + nonce.len() + p.rd.len();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// moka's weigher signature takes the key as stored.
#[allow(clippy::borrowed_box)]
fn weigh_pending(nonce: &Box<str>, p: &Pending) -> u32 {
    pending_weight(nonce, &p.login)
}

struct PendingExpiry;

impl moka::Expiry<Box<str>, Pending> for PendingExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        value: &Pending,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryStore {
    pub fn new(ttl: Duration, idle: Duration, capacity: u64) -> Self {
        Self {
            // Idle timeout in moka; the absolute lifetime is checked on every read (the record
            // carries it), which spares moka's write-order queue: ~30 bytes less per session.
            // LRU, not TinyLFU: at capacity a new login must be admitted, never dropped.
            sessions: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle.min(ttl))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            // Weighed by bytes, each entry expiring after the TTL `/login` gave it. LRU: the
            // oldest login in flight goes first when full.
            pending: moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING_BYTES)
                .weigher(weigh_pending)
                .expire_after(PendingExpiry)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        }
    }
}

impl SessionStore for MemoryStore {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.get(id).filter(|s| s.expires_at() > now))
    }
    async fn insert(&self, id: SessionId, s: Session) -> Result<(), StoreError> {
        self.sessions.insert(id, s);
        Ok(())
    }
    async fn remove(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions.invalidate(id);
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_pending(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if p.rd.len() > crate::common::redirect::MAX_RD {
            // Callers pass a checked rd; this keeps the bound true whatever they do.
            return Err(StoreError::Unavailable("login record too large".into()));
        }
        self.pending.insert(
            nonce.into(),
            Pending {
                login: p,
                ttl,
                deadline: std::time::Instant::now() + ttl,
            },
        );
        Ok(())
    }
    async fn take_pending(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        Ok(self
            .pending
            .remove(nonce)
            .filter(|p| p.deadline > std::time::Instant::now())
            .map(|p| p.login))
    }
    fn session_count(&self) -> Option<u64> {
        Some(self.sessions.entry_count())
    }
}

/// The configured store, chosen at start.
pub enum Store {
    Memory(MemoryStore),
    Redis(crate::session::redis::RedisStore),
}

impl Store {
    pub async fn connect(cfg: &crate::config::SessionConfig) -> Result<Store, StoreError> {
        let (ttl, idle) = (
            Duration::from_secs(cfg.ttl_secs),
            Duration::from_secs(cfg.idle_secs),
        );
        if cfg.store == "redis" {
            let r = crate::session::redis::RedisStore::connect(&cfg.redis_url, ttl, idle).await?;
            return Ok(Store::Redis(r));
        }
        Ok(Store::Memory(MemoryStore::new(ttl, idle, cfg.max_sessions)))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => $e,
            Store::Redis($s) => $e,
        }
    };
}

impl SessionStore for Store {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Session>, StoreError> {
        delegate!(self, s => s.get(id, now).await)
    }
    async fn insert(&self, id: SessionId, v: Session) -> Result<(), StoreError> {
        delegate!(self, s => s.insert(id, v).await)
    }
    async fn remove(&self, id: &SessionId) -> Result<(), StoreError> {
        delegate!(self, s => s.remove(id).await)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self, s => s.ping().await)
    }
    async fn put_pending(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.put_pending(nonce, p, ttl).await)
    }
    async fn take_pending(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        delegate!(self, s => s.take_pending(nonce).await)
    }
    fn session_count(&self) -> Option<u64> {
        delegate!(self, s => s.session_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exp: u64) -> Session {
        Session::new(&NewSession {
            openid: "o1",
            unionid: Some("u1"),
            appid: "wx1",
            source: Source::Website,
            nickname: "A B",
            avatar: "",
            created_at: 0,
            expires_at: exp,
            session_key: None,
        })
    }

    #[test]
    fn session_record_round_trip() {
        let n = NewSession {
            openid: "oOpen",
            unionid: None,
            appid: "wxA",
            source: Source::MiniProgram,
            nickname: "Alice 🐼\u{7}",
            avatar: "https://a/b/132",
            created_at: 7,
            expires_at: 99,
            session_key: Some("k3y=="),
        };
        let s = Session::new(&n);
        assert_eq!(s.openid(), "oOpen");
        assert_eq!(s.unionid(), None);
        assert_eq!(s.unionid_header(), None);
        assert_eq!(s.appid(), "wxA");
        assert_eq!(s.source(), Source::MiniProgram);
        assert_eq!(s.nickname(), "Alice 🐼\u{7}");
        let plain = Session::new(&NewSession {
            nickname: "Bob_1.x~",
            ..n
        });
        assert_eq!(plain.nickname_header().unwrap(), "Bob_1.x~");
        assert_eq!(s.nickname_header().unwrap(), "Alice%20%F0%9F%90%BC%07");
        assert_eq!(s.avatar(), "https://a/b/132");
        assert_eq!((s.created_at(), s.expires_at()), (7, 99));
        assert_eq!(s.session_key(), Some("k3y=="));
        assert!(
            !format!("{s:?}").contains("k3y"),
            "Debug hides the session key"
        );
        let back = Session::from_bytes(s.as_bytes().clone()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn corrupt_records_rejected() {
        let s = sample(5);
        let b = s.as_bytes().clone();
        assert!(Session::from_bytes(b.slice(..b.len() - 1)).is_none());
        assert!(Session::from_bytes(Bytes::from_static(b"{}")).is_none());
        let mut v = b.to_vec();
        v[0] = 9;
        assert!(Session::from_bytes(Bytes::from(v)).is_none());
        let mut v = b.to_vec();
        v.push(b'x');
        assert!(Session::from_bytes(Bytes::from(v)).is_none());
    }

    #[test]
    fn oversized_fields_are_bounded() {
        let long = "é".repeat(5000);
        let s = Session::new(&NewSession {
            openid: "o",
            unionid: None,
            appid: "a",
            source: Source::Website,
            nickname: "",
            avatar: &long,
            created_at: 0,
            expires_at: 1,
            session_key: None,
        });
        assert!(s.avatar().len() <= MAX_FIELD);
        assert!(Session::from_bytes(s.as_bytes().clone()).is_some());
    }

    #[test]
    fn id_round_trip_and_strict_parse() {
        let id = SessionId::random();
        let s = id.encode();
        assert_eq!(s.len(), 22);
        assert_eq!(SessionId::parse(&s), Some(id));
        assert_eq!(SessionId::parse(&s[..21]), None);
        assert_eq!(SessionId::parse(&format!("{s}A")), None);
        assert_eq!(SessionId::parse(&"!".repeat(22)), None);
        // The last character carries 2 spare bits: only the canonical form is accepted.
        let mut alt = s.clone().into_bytes();
        alt[21] = if alt[21] == b'A' { b'B' } else { b'A' };
        let alt = String::from_utf8(alt).unwrap();
        assert_ne!(SessionId::parse(&alt), Some(id));
        assert_ne!(SessionId::random(), id);
        assert!(!format!("{id:?}").contains(&s));
    }

    #[tokio::test]
    async fn memory_store_expiry_and_removal() {
        let st = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let id = SessionId::random();
        st.insert(id, sample(100)).await.unwrap();
        assert!(st.get(&id, 99).await.unwrap().is_some());
        assert!(st.get(&id, 100).await.unwrap().is_none(), "absolute expiry");
        st.remove(&id).await.unwrap();
        assert!(st.get(&id, 0).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idle_timeout() {
        let st = MemoryStore::new(Duration::from_secs(60), Duration::from_millis(200), 10);
        let id = SessionId::random();
        st.insert(id, sample(u64::MAX)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(st.get(&id, 0).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(
            st.get(&id, 0).await.unwrap().is_some(),
            "a read keeps it alive"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(st.get(&id, 0).await.unwrap().is_none(), "idle too long");
    }

    #[tokio::test]
    async fn pending_is_single_use() {
        let st = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let p = PendingLogin {
            rd: "/x".into(),
            source: Source::Website,
        };
        st.put_pending("n1", p.clone(), Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(st.take_pending("n1").await.unwrap(), Some(p));
        assert_eq!(st.take_pending("n1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn pending_honours_its_ttl() {
        let st = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let p = |rd: &str| PendingLogin {
            rd: rd.into(),
            source: Source::Website,
        };
        st.put_pending("short", p("/a"), Duration::from_millis(150))
            .await
            .unwrap();
        st.put_pending("long", p("/b"), Duration::from_secs(600))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(st.take_pending("short").await.unwrap(), None, "expired");
        assert_eq!(st.take_pending("long").await.unwrap(), Some(p("/b")));
    }

    #[tokio::test]
    async fn pending_is_weighed_by_bytes() {
        let st = MemoryStore::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let big = PendingLogin {
            rd: format!("/{}", "x".repeat(crate::common::redirect::MAX_RD - 1)),
            source: Source::Website,
        };
        let per = pending_weight(&"n".repeat(32), &big) as u64;
        let fits = MAX_PENDING_BYTES / per;
        for i in 0..fits + 2000 {
            st.put_pending(&format!("{i:032}"), big.clone(), Duration::from_secs(600))
                .await
                .unwrap();
        }
        st.pending.run_pending_tasks();
        assert!(st.pending.weighted_size() <= MAX_PENDING_BYTES);
        assert!(
            st.pending.entry_count() <= fits,
            "{}",
            st.pending.entry_count()
        );
        // The newest logins are the ones kept.
        let last = format!("{:032}", fits + 1999);
        assert_eq!(st.take_pending(&last).await.unwrap(), Some(big.clone()));
        // An over-long rd is never stored.
        let huge = PendingLogin {
            rd: "/".repeat(crate::common::redirect::MAX_RD + 1),
            source: Source::Website,
        };
        assert!(st
            .put_pending("h", huge, Duration::from_secs(1))
            .await
            .is_err());
    }
}
