//! This process's cache of sessions read from Redis (`session.cache_ms`): moka, keyed by the
//! same one-way digest as Redis (the invalidations name it), each entry kept at most `cache_ms`
//! after it was read or written, at most `max_sessions` of them.
//!
//! The cache is only *trusted* while the invalidation subscription is known to be live: this
//! instance's own heartbeat, published every [`HEARTBEAT`](super::invalidation::HEARTBEAT),
//! came back over the subscription less than [`FRESH`] after it was sent. Pub/sub delivers a
//! connection's messages in order, so every invalidation published before that heartbeat has
//! been applied; one published later is at most `FRESH` old. While not trusted (the
//! subscription is down, or just came back and has not seen a heartbeat yet), reads go to
//! Redis; only when Redis cannot answer either is a cached entry (at most `cache_ms` old)
//! served. A new subscription starts from an empty cache (invalidations may have been missed
//! while it was down).
//!
//! A read that fills the cache races with an invalidation of the same session: every
//! invalidation bumps an epoch before dropping the entry, and a fill re-checks the epoch after
//! inserting and drops its own entry when it moved — a stale record is never left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::super::Session;

/// The one-way key digest of a session id (SHA-256).
pub(super) type Digest = [u8; 32];

/// Longest a cache is trusted after this instance's last heartbeat was sent: the worst-case
/// delay before an invalidation that got lost with a silently dead subscription stops being
/// ignored (the revocation bound is 1 s).
pub(super) const FRESH: Duration = Duration::from_millis(800);

pub(super) struct Cache {
    entries: moka::sync::Cache<Digest, Session>,
    /// Bumped by every invalidation and clear, before the entry goes.
    epoch: AtomicU64,
    /// Milliseconds since `start` until which cached entries may be served without asking
    /// Redis; 0 = not trusted.
    trusted_until: AtomicU64,
    start: Instant,
}

impl Cache {
    pub(super) fn new(ttl: Duration, capacity: u64) -> Cache {
        Cache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            epoch: AtomicU64::new(0),
            trusted_until: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Milliseconds since this cache was made (the heartbeat's clock).
    pub(super) fn clock_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether cached entries may be served without asking Redis now.
    pub(super) fn trusted(&self) -> bool {
        self.clock_ms() < self.trusted_until.load(Ordering::Acquire)
    }

    /// This instance's heartbeat sent at `sent_ms` came back over the subscription.
    pub(super) fn heartbeat_seen(&self, sent_ms: u64) {
        let until = sent_ms.saturating_add(FRESH.as_millis() as u64);
        self.trusted_until.fetch_max(until, Ordering::AcqRel);
    }

    /// The subscription is down: reads go to Redis again (the entries stay, for an outage).
    pub(super) fn distrust(&self) {
        self.trusted_until.store(0, Ordering::Release);
    }

    /// The subscription is new: invalidations may have been missed, start empty.
    pub(super) fn distrust_and_clear(&self) {
        self.trusted_until.store(0, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    /// The cached record, when the cache may be trusted.
    pub(super) fn get_trusted(&self, key: &Digest) -> Option<Session> {
        if self.trusted() {
            self.entries.get(key)
        } else {
            None
        }
    }

    /// The cached record whether trusted or not (Redis cannot answer: the entry is at most
    /// `cache_ms` old).
    pub(super) fn get_any(&self, key: &Digest) -> Option<Session> {
        self.entries.get(key)
    }

    /// The epoch a read starts at (see [`fill`](Self::fill)).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Cache what a read that started at `epoch` found, unless an invalidation came in since.
    pub(super) fn fill(&self, key: Digest, s: Session, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        self.entries.insert(key, s);
        if self.epoch() != epoch {
            self.entries.invalidate(&key);
        }
    }

    /// Cache what this instance just wrote (an insert is its own fresh value).
    pub(super) fn put(&self, key: Digest, s: Session) {
        self.entries.insert(key, s);
    }

    /// Drop one session (removed here, or an invalidation from any instance).
    pub(super) fn invalidate(&self, key: &Digest) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
