//! A master behind Redis Sentinel, followed across failovers: the sentinels (the redis crate's
//! `sentinel::Sentinel`) name the master, which is checked to really be one (`ROLE`); commands
//! go over one multiplexed connection to it. When that connection fails (the master died,
//! refused, timed out) or answers READONLY (it was demoted to a replica), it is dropped and the
//! next command asks the sentinels again — so after the sentinels promote a replica, the
//! store is on the new master with the next request.

use std::sync::Mutex;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{AsyncConnectionConfig, FromRedisValue, IntoConnectionInfo, RedisResult};

use super::command::{Sendable, OP_TIMEOUT};

pub(crate) struct Following {
    /// The sentinels (asked one after the other); the lock also makes one task at a time
    /// look the master up, the others then use what it found.
    sentinels: tokio::sync::Mutex<Sentinel>,
    master: String,
    /// TLS and credentials for the master, taken from the sentinel URLs.
    node: SentinelNodeConnectionInfo,
    /// The connection to the current master, with a generation number (a failed command
    /// forgets only the connection it failed on).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Following {
    pub(super) fn new(sentinels: &[String], master: &str) -> Result<Following, String> {
        let infos = sentinels
            .iter()
            .map(|s| s.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| format!("bad redis_sentinels: {:?}", e.kind()))?;
        let first = infos.first().ok_or("redis_sentinels is empty")?.clone();
        let tls = matches!(first.addr, redis::ConnectionAddr::TcpTls { .. });
        let node = SentinelNodeConnectionInfo {
            tls_mode: tls.then_some(redis::TlsMode::Secure),
            redis_connection_info: Some(first.redis),
        };
        Ok(Following {
            sentinels: tokio::sync::Mutex::new(
                Sentinel::build(infos).map_err(|e| format!("bad redis_sentinels: {e}"))?,
            ),
            master: master.to_string(),
            node,
            current: Mutex::new(None),
            generation: Default::default(),
        })
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A client for the master the sentinels name now.
    pub(super) async fn master_client(&self) -> RedisResult<redis::Client> {
        let mut s = self.sentinels.lock().await;
        s.async_master_for(&self.master, Some(&self.node)).await
    }

    /// The connection to the current master: the one in use, or a new one to the master the
    /// sentinels name now.
    pub(super) async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let mut s = self.sentinels.lock().await;
        // Another task may have connected while this one waited for the lock.
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let client = s.async_master_for(&self.master, Some(&self.node)).await?;
        drop(s);
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT);
        let conn = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        let g = 1 + self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((g, conn.clone()));
        Ok((g, conn))
    }

    /// One command on the current master; a failure that means "not the master any more"
    /// drops the connection, so the next command asks the sentinels.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &impl Sendable) -> RedisResult<T> {
        let (g, mut conn) = self.connection().await?;
        let r = cmd.send(&mut conn).await;
        if let Err(e) = &r {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == redis::ErrorKind::ReadOnly
            {
                let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
                if cur.as_ref().is_some_and(|(cg, _)| *cg == g) {
                    *cur = None;
                }
            }
        }
        r
    }
}
