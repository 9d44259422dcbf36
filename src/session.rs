//! Sessions: the server-side record behind a cookie or bearer token, the store trait, and the
//! in-memory store on moka (absolute TTL, idle timeout, bounded capacity). The same store
//! keeps the short-lived login-state records (pending and completed logins).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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

/// One logged-in user. Kept compact: a million of these live in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub openid: Box<str>,
    pub unionid: Option<Box<str>>,
    pub appid: Box<str>,
    pub source: Source,
    /// Percent-encoded UTF-8, ready for `X-WeChat-Nickname`.
    pub nickname_enc: Box<str>,
    pub avatar: Box<str>,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    /// Mini program only; never leaves the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<Box<str>>,
}

impl Session {
    pub fn nickname(&self) -> String {
        percent_encoding::percent_decode_str(&self.nickname_enc)
            .decode_utf8_lossy()
            .into_owned()
    }
}

/// 192 random bits; rendered as 32 URL-safe base64 characters in cookies and bearer tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 24]);

impl SessionId {
    pub fn random() -> Self {
        let mut b = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut b);
        SessionId(b)
    }

    /// Strict parse: anything but exactly 32 base64url characters is no session.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        let mut b = [0u8; 24];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut b) {
            Ok(24) => Some(SessionId(b)),
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

/// What `/login` leaves behind for `/callback`: where to go, and which browser started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub rd: String,
    pub binding: String,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// The session store. Implementations: [`MemoryStore`] and [`crate::redis_store::RedisStore`].
pub trait SessionStore: Send + Sync + 'static {
    fn get(
        &self,
        id: &SessionId,
        now: u64,
    ) -> impl Future<Output = Result<Option<Arc<Session>>, StoreError>> + Send;
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
    /// Remember that a login finished, so a repeated callback from the same browser can redirect.
    fn put_completed(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get_completed(
        &self,
        nonce: &str,
    ) -> impl Future<Output = Result<Option<PendingLogin>, StoreError>> + Send;
    /// Number of live sessions (approximate), for metrics; `None` when the store cannot say cheaply.
    fn session_count(&self) -> Option<u64>;
}

/// Sessions in process memory.
pub struct MemoryStore {
    sessions: moka::sync::Cache<SessionId, Arc<Session>>,
    pending: moka::sync::Cache<Box<str>, PendingLogin>,
    completed: moka::sync::Cache<Box<str>, PendingLogin>,
}

/// Upper bound on logins in flight kept in memory.
const MAX_PENDING: u64 = 200_000;

impl MemoryStore {
    pub fn new(ttl: Duration, idle: Duration, capacity: u64) -> Self {
        let login_ttl = Duration::from_secs(600);
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .time_to_idle(idle)
                .build(),
            pending: moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(login_ttl)
                .build(),
            completed: moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(login_ttl)
                .build(),
        }
    }
}

impl SessionStore for MemoryStore {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.sessions.get(id).filter(|s| s.expires_at > now))
    }
    async fn insert(&self, id: SessionId, s: Session) -> Result<(), StoreError> {
        self.sessions.insert(id, Arc::new(s));
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
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        self.pending.insert(nonce.into(), p);
        Ok(())
    }
    async fn take_pending(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        Ok(self.pending.remove(nonce))
    }
    async fn put_completed(
        &self,
        nonce: &str,
        p: PendingLogin,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        self.completed.insert(nonce.into(), p);
        Ok(())
    }
    async fn get_completed(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        Ok(self.completed.get(nonce))
    }
    fn session_count(&self) -> Option<u64> {
        Some(self.sessions.entry_count())
    }
}

/// The configured store, chosen at start.
pub enum Store {
    Memory(MemoryStore),
    Redis(crate::redis_store::RedisStore),
}

impl Store {
    pub async fn connect(cfg: &crate::config::SessionConfig) -> Result<Store, StoreError> {
        let (ttl, idle) = (
            Duration::from_secs(cfg.ttl_secs),
            Duration::from_secs(cfg.idle_secs),
        );
        if cfg.store == "redis" {
            let r = crate::redis_store::RedisStore::connect(&cfg.redis_url, ttl, idle).await?;
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
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Arc<Session>>, StoreError> {
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
    async fn put_completed(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.put_completed(nonce, p, ttl).await)
    }
    async fn get_completed(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        delegate!(self, s => s.get_completed(nonce).await)
    }
    fn session_count(&self) -> Option<u64> {
        delegate!(self, s => s.session_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exp: u64) -> Session {
        Session {
            openid: "o1".into(),
            unionid: Some("u1".into()),
            appid: "wx1".into(),
            source: Source::Website,
            nickname_enc: "A%20B".into(),
            avatar: "".into(),
            created_at: 0,
            expires_at: exp,
            session_key: None,
        }
    }

    #[test]
    fn id_round_trip_and_strict_parse() {
        let id = SessionId::random();
        let s = id.encode();
        assert_eq!(s.len(), 32);
        assert_eq!(SessionId::parse(&s), Some(id));
        assert_eq!(SessionId::parse(&s[..31]), None);
        assert_eq!(SessionId::parse(&format!("{s}A")), None);
        assert_eq!(SessionId::parse(&"!".repeat(32)), None);
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
            binding: "b".into(),
            source: Source::Website,
        };
        st.put_pending("n1", p.clone(), Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(st.take_pending("n1").await.unwrap(), Some(p));
        assert_eq!(st.take_pending("n1").await.unwrap(), None);
    }
}
