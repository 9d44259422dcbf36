//! The store chosen at start: memory or Redis, behind the one [`SessionStore`] seam.

use std::time::Duration;

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::{Backend, SessionStore, SessionStoreSettings, StoreError};
use super::{PendingLogin, Session, SessionId};

/// The configured store, chosen at start. (Which one is its own business: callers see
/// [`SessionStore`].)
pub struct Store(Backing);

enum Backing {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Build the store `settings` names; with Redis, connect to it (an error when it cannot be
    /// reached: the gateway does not start without its store).
    pub async fn connect(settings: &SessionStoreSettings) -> Result<Store, StoreError> {
        Ok(Store(match &settings.backend {
            Backend::Memory => {
                let m = MemoryStore::new(settings);
                m.load_snapshot(unix_now());
                Backing::Memory(m)
            }
            Backend::Redis { deployment, cache } => {
                Backing::Redis(RedisStore::connect(deployment, *cache, settings).await?)
            }
        }))
    }

    /// Memory store with `session.snapshot_path`: write every live session to the snapshot
    /// (called once the workers have drained). Logs the outcome; never fails the shutdown.
    pub fn save_snapshot(&self) {
        if let Backing::Memory(m) = &self.0 {
            m.save_snapshot(unix_now());
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.0 {
            Backing::Memory($s) => $e,
            Backing::Redis($s) => $e,
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
    async fn replace(&self, id: SessionId, v: Session) -> Result<bool, StoreError> {
        delegate!(self, s => s.replace(id, v).await)
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
    fn error_count(&self) -> u64 {
        delegate!(self, s => s.error_count())
    }
}
