//! The session-store seam: the trait every store implements, and the store chosen at start.

use std::future::Future;
use std::time::Duration;

use super::{MemoryStore, PendingLogin, Session, SessionId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

impl crate::common::error::ErrorAnswer for StoreError {
    fn status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn code(&self) -> &'static str {
        "store_unavailable"
    }

    #[rustfmt::skip]
    fn texts(&self) -> (crate::common::pages::Text<'static>, crate::common::pages::Text<'static>) {
        let t = |zh, en| crate::common::pages::Text { zh, en };
        (
            t("服务暂不可用", "Service unavailable"),
            t("会话存储暂不可用，请稍后再试。", "The session store is unavailable. Please try again shortly."),
        )
    }
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
