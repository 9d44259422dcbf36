//! The session-store seam: the trait every store implements and the settings a store is built
//! from (the store chosen at start is in `chosen.rs`).
//!
//! Adding a store: a file beside `memory.rs` implementing [`SessionStore`], a [`Backend`]
//! variant, one arm in `Store::connect` and one in `delegate!` (`chosen.rs`), and a run of the
//! conformance suite (`tests/session_stores.rs`) against it.

use std::future::Future;
use std::time::Duration;

use super::{PendingLogin, Session, SessionId};

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

/// What a store is built from: typed values, not the config tree (the server fills it in from
/// the `[session]` section; a test writes it by hand).
#[derive(Debug, Clone)]
pub struct SessionStoreSettings {
    /// A session's absolute lifetime (`session.ttl_secs`). The record carries its own
    /// `expires_at`, which is what [`SessionStore::get`] checks; this only bounds how long a
    /// record nobody reads is kept (the idle timeout, when shorter, wins).
    pub ttl: Duration,
    /// Idle timeout (`session.idle_secs`): a session neither read nor written for this long is
    /// gone.
    pub idle: Duration,
    /// Most sessions kept in memory (`session.max_sessions`); at capacity the least recently
    /// used goes first. With Redis, the size of the cache in front of it.
    pub capacity: u64,
    /// Where sessions live.
    pub backend: Backend,
    /// Memory store only (`session.snapshot_path`): where sessions are written at shutdown and
    /// read back at start.
    pub snapshot: Option<super::SnapshotFile>,
}

/// Where sessions live (`session.store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process (moka): not shared between instances; across restarts only with a
    /// snapshot ([`SessionStoreSettings::snapshot`]).
    Memory,
    /// In Redis, shared by every instance pointing at it.
    Redis {
        /// Which Redis: one server, a Cluster, or a master behind Sentinel.
        deployment: RedisDeployment,
        /// `session.cache_ms`: a session read from Redis is served from this process's cache
        /// for at most this long (zero: no cache, every read goes to Redis).
        cache: Duration,
    },
}

/// The Redis deployment sessions live in (exactly one of `session.redis_url`,
/// `session.redis_cluster`, `session.redis_sentinels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisDeployment {
    /// One server: a `redis://` or `rediss://` (TLS) URL.
    Server { url: String },
    /// A Redis Cluster: seed nodes as `redis://` / `rediss://` URLs (the rest is discovered).
    Cluster { nodes: Vec<String> },
    /// The master Sentinel names `master`, asked of `sentinels` (`redis://` URLs; a password in
    /// them is also used for the master) and followed across failovers.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// The session store: sessions by id, and logins in flight by nonce.
///
/// The contract every implementation keeps (checked by the conformance suite in
/// `tests/session_stores.rs`, which runs against each store):
/// - **Sessions.** [`insert`](Self::insert) stores a record under an id, replacing any record
///   already there. [`get`](Self::get) returns it byte for byte, or `None` when the id is
///   unknown, was [`remove`](Self::remove)d, its absolute expiry has passed (`expires_at() <=
///   now`), it was neither read nor written for the store's idle timeout, or what is stored
///   cannot be read as a record (never an error for that: a damaged record is no session). A
///   successful `get` restarts the idle clock. Removing an unknown id is not an error.
/// - **Logins in flight.** [`put_pending`](Self::put_pending) keeps a [`PendingLogin`] under
///   its nonce for at most `ttl` (after that, taking it gives `None`), replacing any record
///   already under that nonce; an `rd` longer than [`MAX_RD`](crate::common::redirect::MAX_RD)
///   is refused with an error. [`take_pending`](Self::take_pending) returns and removes it in
///   one step: it is single-use, also when two callers (two instances, with Redis) race for
///   the same nonce — exactly one of them gets it.
/// - **Errors** ([`StoreError`]) mean only "the store cannot answer now" (Redis down or slow):
///   the caller answers 503, never lets the request pass.
/// - Identifiers are not kept readable: a store that writes outside the process (Redis) keys
///   sessions by a one-way digest of the id, never by the id itself.
pub trait SessionStore: Send + Sync + 'static {
    /// The session stored under `id`, if it is still live at `now` (Unix seconds).
    fn get(
        &self,
        id: &SessionId,
        now: u64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;
    /// Store `s` under `id`, replacing any record there.
    fn insert(
        &self,
        id: SessionId,
        s: Session,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Store `s` under `id` only if a record is there now; `false`: there was none (a logout
    /// or a revocation took it while the caller was busy), and nothing is written. For
    /// updates of a live session after slow work (a phone number joined): an update must
    /// never bring back a session that was ended meanwhile.
    fn replace(
        &self,
        id: SessionId,
        s: Session,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Forget `id` (logout, revocation); no error when it is unknown.
    fn remove(&self, id: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// `Ok` when the store can answer now (`/readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Remember a login in flight under its nonce, for at most `ttl`.
    fn put_pending(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Take (and so consume) a login in flight: exactly one caller gets it, every later or
    /// concurrent one gets `None`; `None` too once its TTL has passed.
    fn take_pending(
        &self,
        nonce: &str,
    ) -> impl Future<Output = Result<Option<PendingLogin>, StoreError>> + Send;
    /// Number of sessions held, for metrics: approximate (it may still count some that expired
    /// or were removed a moment ago), and `None` when the store cannot say cheaply (Redis).
    fn session_count(&self) -> Option<u64>;
    /// Operations that failed with [`StoreError::Unavailable`] since start, for metrics
    /// (`wxgate_store_errors_total`); stores that cannot fail that way say 0.
    fn error_count(&self) -> u64 {
        0
    }
}
