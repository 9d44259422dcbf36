//! Sessions in process memory (moka): absolute TTL, idle timeout, bounded capacity, and the
//! logins in flight weighed by bytes.

use std::time::Duration;

use super::snapshot::{self, SnapshotFile};
use super::{PendingLogin, Session, SessionId, SessionStore, SessionStoreSettings, StoreError};

/// Sessions in process memory.
pub(crate) struct MemoryStore {
    /// Hashed with foldhash (seeded per process) rather than SipHash: every request looks a
    /// session up, and the keys stored are the gateway's own 128 random bits (a client only
    /// chooses what it looks up, which adds nothing to the table).
    sessions: moka::sync::Cache<SessionId, Session, foldhash::fast::RandomState>,
    pub(super) pending: moka::sync::Cache<Box<str>, Pending>,
    /// `session.snapshot_path`: read at start, written at shutdown.
    snapshot: Option<SnapshotFile>,
}

/// A login in flight as the memory store keeps it: the record and its own lifetime.
#[derive(Clone)]
pub(super) struct Pending {
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
pub(crate) const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;

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
    /// Uses `ttl`, `idle` and `capacity` of `settings` (whatever its backend says).
    pub(crate) fn new(settings: &SessionStoreSettings) -> Self {
        let SessionStoreSettings {
            ttl,
            idle,
            capacity,
            ..
        } = *settings;
        let snapshot = settings.snapshot.clone();
        Self {
            // Idle timeout in moka; the absolute lifetime is checked on every read (the record
            // carries it), which spares moka's write-order queue: ~30 bytes less per session.
            // LRU, not TinyLFU: at capacity a new login must be admitted, never dropped.
            sessions: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle.min(ttl))
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build_with_hasher(foldhash::fast::RandomState::default()),
            // Weighed by bytes, each entry expiring after the TTL `/login` gave it. LRU: the
            // oldest login in flight goes first when full.
            pending: moka::sync::Cache::builder()
                .max_capacity(MAX_PENDING_BYTES)
                .weigher(weigh_pending)
                .expire_after(PendingExpiry)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            snapshot,
        }
    }

    /// Read the snapshot, when one is configured and present, into the store (expired sessions
    /// skipped) and remove the file. A file that cannot be read is one WARN line and an empty
    /// start. Returns how many sessions were loaded.
    pub(crate) fn load_snapshot(&self, now: u64) -> usize {
        let Some(snap) = &self.snapshot else {
            return 0;
        };
        let path = snap.path.display();
        let bytes = match snapshot::take_file(&snap.path) {
            Ok(Some(b)) => b,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!(%path, reason = %e, "session snapshot not read; starting empty");
                return 0;
            }
        };
        match snapshot::decode(&bytes, &snap.key) {
            Ok(entries) => {
                let mut n = 0;
                for (id, s) in entries {
                    if s.expires_at() > now {
                        self.sessions.insert(id, s);
                        n += 1;
                    }
                }
                tracing::info!(%path, sessions = n, "session snapshot loaded");
                n
            }
            Err(e) => {
                tracing::warn!(%path, reason = %e, "session snapshot ignored; starting empty");
                0
            }
        }
    }

    /// Write every live session to the snapshot, when one is configured. Logs the outcome (a
    /// failure is a WARN, never a failed shutdown).
    pub(crate) fn save_snapshot(&self, now: u64) {
        let Some(snap) = &self.snapshot else {
            return;
        };
        let live: Vec<(std::sync::Arc<SessionId>, Session)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at() > now)
            .collect();
        let bytes = snapshot::encode(live.iter().map(|(id, s)| (&**id, s)), &snap.key);
        let path = snap.path.display();
        match snapshot::write_file(&snap.path, &bytes) {
            Ok(()) => tracing::info!(%path, sessions = live.len(), "session snapshot written"),
            Err(e) => tracing::warn!(%path, reason = %e, "session snapshot not written"),
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
    async fn replace(&self, id: SessionId, s: Session) -> Result<bool, StoreError> {
        use moka::ops::compute::Op;
        // One step: a logout's `invalidate` lands before it (nothing is written) or after.
        let r = self.sessions.entry(id).and_compute_with(|old| match old {
            Some(_) => Op::Put(s),
            None => Op::Nop,
        });
        Ok(matches!(r, moka::ops::compute::CompResult::ReplacedWith(_)))
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
        if p.too_large() {
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
