//! Sessions in Redis (`session.store = "redis"`): several gateway instances share logins and
//! revocations. Records are the session's compact binary form; keys expire after the idle timeout and are refreshed on
//! read (GETEX); the absolute expiry is checked on every read. Login state uses GETDEL so a
//! state is consumed once across all instances.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::session::{PendingLogin, Session, SessionId, SessionStore, StoreError};

/// Longest a store operation may take before the request gets a 503.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest login-in-flight record written to Redis (JSON of a `PendingLogin`).
const MAX_LOGIN_RECORD: usize = crate::common::redirect::MAX_RD + 256;

pub struct RedisStore {
    conn: ConnectionManager,
    idle_secs: u64,
    ttl_secs: u64,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        ttl: Duration,
        idle: Duration,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| unavailable(format!("bad redis_url: {:?}", e.kind())))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let conn = tokio::time::timeout(
            OP_TIMEOUT * 2,
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| unavailable("timed out connecting to redis"))?
        .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            idle_secs: idle.as_secs().max(1),
            ttl_secs: ttl.as_secs().max(1),
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("redis timed out")),
        }
    }
}

impl RedisStore {
    async fn put_login(
        &self,
        key: &str,
        p: &PendingLogin,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let v = serde_json::to_vec(p).map_err(unavailable)?;
        // A login in flight is a checked rd (at most 2048 bytes) and a source: anything bigger
        // is refused rather than kept in Redis for ten minutes.
        if v.len() > MAX_LOGIN_RECORD {
            return Err(unavailable("login record too large"));
        }
        self.run::<()>(
            redis::cmd("SET")
                .arg(key)
                .arg(v)
                .arg("EX")
                .arg(ttl.as_secs().max(1)),
        )
        .await
    }

    /// `GET` or `GETDEL` (consume) a login record.
    async fn get_login(&self, verb: &str, key: &str) -> Result<Option<PendingLogin>, StoreError> {
        let raw: Option<Vec<u8>> = self.run(redis::cmd(verb).arg(key)).await?;
        Ok(raw
            .filter(|r| r.len() <= MAX_LOGIN_RECORD)
            .and_then(|r| serde_json::from_slice(&r).ok()))
    }
}

fn session_key(id: &SessionId) -> String {
    format!("wxgate:s:{}", hex::encode(id.0))
}

impl SessionStore for RedisStore {
    async fn get(&self, id: &SessionId, now: u64) -> Result<Option<Session>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .run(
                redis::cmd("GETEX")
                    .arg(session_key(id))
                    .arg("EX")
                    .arg(self.idle_secs),
            )
            .await?;
        // A record we cannot read is no session (and never a crash).
        Ok(raw
            .and_then(|r| Session::from_bytes(r.into()))
            .filter(|s| s.expires_at() > now))
    }
    async fn insert(&self, id: SessionId, s: Session) -> Result<(), StoreError> {
        let ex = self.idle_secs.min(self.ttl_secs);
        self.run::<()>(
            redis::cmd("SET")
                .arg(session_key(&id))
                .arg(s.as_bytes().as_ref())
                .arg("EX")
                .arg(ex),
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
        self.put_login(&format!("wxgate:p:{nonce}"), &p, ttl).await
    }
    async fn take_pending(&self, nonce: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.get_login("GETDEL", &format!("wxgate:p:{nonce}")).await
    }
    fn session_count(&self) -> Option<u64> {
        None
    }
}
