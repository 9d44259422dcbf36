//! Sessions in Redis (`session.store = "redis"`): several gateway instances share logins and
//! revocations. Records are the session's compact binary form, keyed by a one-way digest of the
//! id (Redis holds no usable session id); keys expire after the idle timeout and are refreshed
//! on read (GETEX); the absolute expiry is checked on every read. Logins in flight expire after
//! their own TTL (in milliseconds) and are taken with GETDEL, so a state is consumed once across
//! all instances.
//!
//! Redis unreachable: every operation fails fast (connection refused) or within `OP_TIMEOUT`
//! with `StoreError::Unavailable` (a 503), the outage is logged once when it starts and once
//! when it ends, and the connection comes back by itself on the first operation after Redis
//! does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::Digest;

use super::{PendingLogin, Session, SessionId, SessionStore, SessionStoreSettings, StoreError};

/// Longest a store operation may take before the request gets a 503.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest login-in-flight record written to Redis (JSON of a `PendingLogin`).
const MAX_LOGIN_RECORD: usize = crate::common::redirect::MAX_RD + 256;

pub(crate) struct RedisStore {
    conn: ConnectionManager,
    /// Idle timeout, in milliseconds (at least 1).
    idle_ms: u64,
    /// Expiry of a new key: the shorter of the idle timeout and the absolute lifetime.
    insert_ms: u64,
    /// Whether the last operation failed: the outage is logged once when it starts and once
    /// when it ends, not once per request.
    down: AtomicBool,
    /// Failed operations since start (`wxgate_store_errors_total`).
    errors: AtomicU64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A duration as Redis' `PX` wants it: whole milliseconds, at least 1 (`PX 0` is an error).
fn px(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Where a session lives: SHA-256 of the id, so what Redis holds (or a dump of it) cannot be
/// turned back into a cookie or bearer token.
fn session_key(id: &SessionId) -> String {
    format!("wxgate:s:{}", hex::encode(sha2::Sha256::digest(id.0)))
}

/// Where a login in flight lives (the nonce alone is no login: the state is signed).
fn pending_key(nonce: &str) -> String {
    format!("wxgate:p:{nonce}")
}

impl RedisStore {
    /// Connect to `url`; `ttl` and `idle` of `settings` set the keys' lifetimes.
    pub(crate) async fn connect(
        url: &str,
        settings: &SessionStoreSettings,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| unavailable(format!("bad redis_url: {:?}", e.kind())))?;
        // No retries inside a reconnect: the manager's backoff starts at one second (plus
        // jitter), and a request would wait on it; the service must come back within moments
        // of Redis. A failed reconnect leaves a connection-refused error that the next
        // operation turns into a fresh attempt (and `run` retries it once), so reconnecting is
        // driven by requests and `/readyz` probes, one attempt at a time.
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(0);
        let conn = tokio::time::timeout(
            OP_TIMEOUT * 2,
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| unavailable("timed out connecting to redis"))?
        .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            idle_ms: px(settings.idle),
            insert_ms: px(settings.idle.min(settings.ttl)),
            down: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        })
    }

    /// One command, bounded by [`OP_TIMEOUT`] in all (a dead or silent Redis never holds a
    /// request longer).
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let r = match tokio::time::timeout(OP_TIMEOUT, self.query(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("redis timed out")),
        };
        self.note(&r);
        r
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn = self.conn.clone();
        match cmd.query_async::<T>(&mut conn).await {
            // The connection was refused: the command never left, so it is safe to send again.
            // The failed connection started a new attempt; the first request after Redis is
            // back rides on it instead of getting a 503.
            Err(e) if e.is_connection_refusal() => cmd.query_async::<T>(&mut conn).await,
            r => r,
        }
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
}

impl SessionStore for RedisStore {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Session>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .run(
                redis::cmd("GETEX")
                    .arg(session_key(id))
                    .arg("PX")
                    .arg(self.idle_ms),
            )
            .await?;
        // A record we cannot read is no session (and never a crash).
        Ok(raw
            .and_then(|r| Session::from_bytes(r.into()))
            .filter(|s| s.expires_at() > now))
    }
    async fn insert(&self, id: SessionId, s: Session) -> Result<(), StoreError> {
        self.run::<()>(
            redis::cmd("SET")
                .arg(session_key(&id))
                .arg(s.as_bytes().as_ref())
                .arg("PX")
                .arg(self.insert_ms),
        )
        .await
    }
    async fn remove(&self, id: &SessionId) -> Result<(), StoreError> {
        self.run::<i64>(redis::cmd("DEL").arg(session_key(id)))
            .await
            .map(|_| ())
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

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn keys_hold_no_usable_id() {
        for _ in 0..64 {
            let id = SessionId::random();
            let key = session_key(&id);
            assert!(key.starts_with("wxgate:s:"), "{key}");
            let lower = key.to_ascii_lowercase();
            assert!(!lower.contains(&hex::encode(id.0)), "{key}");
            assert!(!key.contains(&id.encode()), "{key}");
            for b64 in [
                base64::engine::general_purpose::STANDARD.encode(id.0),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.0),
            ] {
                assert!(!key.contains(b64.trim_end_matches('=')), "{key}");
            }
            // Nor the raw bytes (a key is a String: ASCII hex after the prefix).
            assert!(!key.as_bytes().windows(16).any(|w| w == id.0));
            // Same id, same key; another id, another key.
            assert_eq!(key, session_key(&id));
            assert_ne!(key, session_key(&SessionId::random()));
        }
    }

    #[test]
    fn px_is_whole_milliseconds_at_least_one() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_micros(1500)), 1);
        assert_eq!(px(Duration::from_millis(150)), 150);
        assert_eq!(px(Duration::from_secs(600)), 600_000);
    }
}
