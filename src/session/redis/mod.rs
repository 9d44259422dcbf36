//! Sessions in Redis (`session.store = "redis"`): several gateway instances share logins and
//! revocations. Records are the session's compact binary form, keyed by a one-way digest of the
//! id (Redis holds no usable session id; in a Cluster the keys spread over all slots: no hash
//! tag); keys expire after the idle timeout and are refreshed on read (GETEX); the absolute
//! expiry is checked on every read, cached or not. Logins in flight expire after their own TTL
//! (in milliseconds) and are taken with GETDEL, so a state is consumed once across all
//! instances.
//!
//! One server, a Cluster or a master behind Sentinel (`connect.rs`, `sentinel.rs`). With
//! `session.cache_ms` > 0, a session read from Redis is served from this process's cache for at
//! most that long (`cache.rs`), revocations reach every instance over pub/sub
//! (`invalidation.rs`), and the idle clock in Redis is restarted on cache misses only — at
//! least every `cache_ms` for a session in use.
//!
//! Redis unreachable: every operation fails fast (connection refused) or within `OP_TIMEOUT`
//! with `StoreError::Unavailable` (a 503) — except a read of a session still in this process's
//! cache — the outage is logged once when it starts and once when it ends, and the connection
//! comes back by itself on the first operation after Redis does.

mod cache;
mod command;
mod connect;
mod invalidation;
mod sentinel;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

use super::store::RedisDeployment;
use super::{PendingLogin, Session, SessionId, SessionStore, SessionStoreSettings, StoreError};
use cache::{Cache, Digest};
use command::{Sendable, OP_TIMEOUT};
use connect::Conn;
use invalidation::Message;

/// Largest login-in-flight record written to Redis (JSON of a `PendingLogin`).
const MAX_LOGIN_RECORD: usize = crate::common::redirect::MAX_RD + 256;

pub(crate) struct RedisStore {
    conn: Conn,
    /// The session cache and its invalidation tasks (`session.cache_ms` > 0).
    cached: Option<(Arc<Cache>, invalidation::Tasks)>,
    /// This instance on the invalidation channel (random).
    me: u64,
    /// Idle timeout, in milliseconds (at least 1).
    idle_ms: u64,
    /// Expiry of a new key: the shorter of the idle timeout and the absolute lifetime.
    insert_ms: u64,
    /// Whether the last operation failed: the outage is logged once when it starts and once
    /// when it ends, not once per request.
    down: AtomicBool,
    /// Failed operations since start (`wxgate_store_errors_total`).
    errors: AtomicU64,
    /// Redis refused PUBLISH (ACL): writes go alone (see `write_and_invalidate`).
    publish_refused: AtomicBool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A duration as Redis' `PX` wants it: whole milliseconds, at least 1 (`PX 0` is an error).
fn px(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// SHA-256 of the id: what Redis (and the invalidation channel) knows a session by.
fn digest(id: &SessionId) -> Digest {
    sha2::Sha256::digest(id.0).into()
}

/// Where a session lives: the digest in hex, so what Redis holds (or a dump of it) cannot be
/// turned back into a cookie or bearer token.
fn key_of(d: &Digest) -> String {
    format!("wxgate:s:{}", hex::encode(d))
}

#[cfg(test)]
fn session_key(id: &SessionId) -> String {
    key_of(&digest(id))
}

/// Where a login in flight lives (the nonce alone is no login: the state is signed).
fn pending_key(nonce: &str) -> String {
    format!("wxgate:p:{nonce}")
}

impl RedisStore {
    /// Connect to `deployment`; `ttl` and `idle` of `settings` set the keys' lifetimes,
    /// `capacity` the cache's size.
    pub(crate) async fn connect(
        deployment: &RedisDeployment,
        cache_ttl: Duration,
        settings: &SessionStoreSettings,
    ) -> Result<RedisStore, StoreError> {
        let (conn, subscriber) = connect::connect(deployment).await.map_err(unavailable)?;
        let me = rand::random::<u64>();
        let cached = (!cache_ttl.is_zero()).then(|| {
            let cache = Arc::new(Cache::new(cache_ttl, settings.capacity.max(1)));
            let tasks = invalidation::start(me, conn.clone(), subscriber, cache.clone());
            (cache, tasks)
        });
        Ok(RedisStore {
            conn,
            cached,
            me,
            idle_ms: px(settings.idle),
            insert_ms: px(settings.idle.min(settings.ttl)),
            down: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            publish_refused: AtomicBool::new(false),
        })
    }

    fn cache(&self) -> Option<&Cache> {
        self.cached.as_ref().map(|(c, _)| &**c)
    }

    /// One command or pipeline, bounded by [`OP_TIMEOUT`] in all (a dead or silent Redis never
    /// holds a request longer).
    async fn run<T: redis::FromRedisValue>(&self, cmd: &impl Sendable) -> Result<T, StoreError> {
        let r = self.query(cmd).await.map_err(unavailable);
        self.note(&r);
        r
    }

    /// Count a failure, and log the store going down or coming back (once per change).
    fn note<T>(&self, r: &Result<T, StoreError>) {
        match r {
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "session store unavailable; answering 503 until it is back");
                }
            }
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("session store available again");
                }
            }
        }
    }

    /// A write of session `d`, then the invalidation that tells the other instances' caches:
    /// one round trip (a pipeline), except in a Cluster, where a pipeline stays within one
    /// slot and the channel hashes to another.
    ///
    /// Redis refusing PUBLISH (`NOPERM`: an ACL without pub/sub) does not fail the write: the
    /// same user cannot subscribe either, so no instance ever trusts its cache and nothing
    /// cached can go stale. The write is then sent alone, from now on.
    async fn write_and_invalidate(&self, write: redis::Cmd, d: &Digest) -> Result<(), StoreError> {
        self.write_and_invalidate_with::<redis::Value>(write, d)
            .await
            .map(|_| ())
    }

    /// [`Self::write_and_invalidate`], with the write's reply.
    async fn write_and_invalidate_with<T: redis::FromRedisValue>(
        &self,
        write: redis::Cmd,
        d: &Digest,
    ) -> Result<T, StoreError> {
        let publish = invalidation::publish(&Message::Session {
            from: self.me,
            key: *d,
        });
        if self.publish_refused.load(Ordering::Relaxed) {
            return self.run::<T>(&write).await;
        }
        let r = if matches!(self.conn, Conn::Cluster(_)) {
            let reply = self.run::<T>(&write).await?;
            self.query::<()>(&publish).await.map(|()| reply)
        } else {
            let mut p = redis::pipe();
            p.add_command(write.clone());
            p.add_command(publish).ignore();
            self.query::<(T,)>(&p).await.map(|(reply,)| reply)
        };
        match r {
            Err(e) if e.code() == Some("NOPERM") => {
                if !self.publish_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!("redis refuses PUBLISH: the session cache stays off");
                }
                self.run::<T>(&write).await
            }
            r => {
                let r = r.map_err(unavailable);
                self.note(&r);
                r
            }
        }
    }

    /// Like `run`, the error left as Redis gave it.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &impl Sendable) -> redis::RedisResult<T> {
        match tokio::time::timeout(OP_TIMEOUT, self.conn.query(cmd)).await {
            Ok(r) => r,
            Err(_) => Err(command::timed_out()),
        }
    }
}

impl SessionStore for RedisStore {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Session>, StoreError> {
        let d = digest(id);
        let live = |s: Session| Some(s).filter(|s| s.expires_at() > now);
        // The Redis read is boxed: its future (the redis client's, for every deployment) is
        // several times larger than the rest of a request's, and every request's future is as
        // large as its largest branch, memory store included. Boxed, the size is paid for by
        // the reads that happen (cache misses), not by every request.
        let Some(cache) = self.cache() else {
            return Ok(Box::pin(self.read(&d)).await?.and_then(live));
        };
        if let Some(s) = cache.get_trusted(&d) {
            return Ok(live(s));
        }
        let epoch = cache.epoch();
        match Box::pin(self.read(&d)).await {
            Ok(Some(s)) => {
                cache.fill(d, s.clone(), epoch);
                Ok(live(s))
            }
            Ok(None) => {
                // Gone from Redis: an (untrusted) cached copy must not outlive it, not even
                // for an outage.
                cache.invalidate(&d);
                Ok(None)
            }
            // Redis cannot answer: a session still cached (read at most cache_ms ago) is served.
            Err(e) => match cache.get_any(&d) {
                Some(s) => Ok(live(s)),
                None => Err(e),
            },
        }
    }
    async fn insert(&self, id: SessionId, s: Session) -> Result<(), StoreError> {
        let d = digest(&id);
        let mut set = redis::cmd("SET");
        set.arg(key_of(&d))
            .arg(s.as_bytes().as_ref())
            .arg("PX")
            .arg(self.insert_ms);
        // The record may replace one another instance has cached.
        self.write_and_invalidate(set, &d).await?;
        if let Some(cache) = self.cache() {
            cache.put(d, s);
        }
        Ok(())
    }
    async fn replace(&self, id: SessionId, s: Session) -> Result<bool, StoreError> {
        let d = digest(&id);
        let mut set = redis::cmd("SET");
        set.arg(key_of(&d))
            .arg(s.as_bytes().as_ref())
            .arg("PX")
            .arg(self.insert_ms)
            .arg("XX");
        // Nil: no record (a logout or a revocation took it): nothing is written.
        let reply: redis::Value = self.write_and_invalidate_with(set, &d).await?;
        let replaced = !matches!(reply, redis::Value::Nil);
        if let Some(cache) = self.cache() {
            if replaced {
                cache.put(d, s);
            } else {
                cache.invalidate(&d);
            }
        }
        Ok(replaced)
    }
    async fn remove(&self, id: &SessionId) -> Result<(), StoreError> {
        let d = digest(id);
        if let Some(cache) = self.cache() {
            cache.invalidate(&d);
        }
        let mut del = redis::cmd("DEL");
        del.arg(key_of(&d));
        self.write_and_invalidate(del, &d).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.run::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
    async fn put_pending(
        &self,
        nonce: &str,
        p: PendingLogin,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let v = serde_json::to_vec(&p).map_err(unavailable)?;
        // A login in flight is a checked rd (at most 2048 bytes) and a source: anything bigger
        // is refused rather than kept in Redis for ten minutes.
        if p.too_large() || v.len() > MAX_LOGIN_RECORD {
            return Err(unavailable("login record too large"));
        }
        self.run::<()>(
            redis::cmd("SET")
                .arg(pending_key(nonce))
                .arg(v)
                .arg("PX")
                .arg(px(ttl)),
        )
        .await
    }
    async fn take_pending(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .run(redis::cmd("GETDEL").arg(pending_key(nonce)))
            .await?;
        Ok(raw
            .filter(|r| r.len() <= MAX_LOGIN_RECORD)
            .and_then(|r| serde_json::from_slice(&r).ok()))
    }
    fn session_count(&self) -> Option<u64> {
        None
    }
    fn error_count(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl RedisStore {
    /// The record under `d` in Redis, restarting its idle clock (GETEX). A record that cannot
    /// be read is no session (and never a crash).
    async fn read(&self, d: &Digest) -> Result<Option<Session>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .run(
                redis::cmd("GETEX")
                    .arg(key_of(d))
                    .arg("PX")
                    .arg(self.idle_ms),
            )
            .await?;
        Ok(raw.and_then(|r| Session::from_bytes(r.into())))
    }
}

#[cfg(test)]
mod tests;
