//! The connections to each kind of Redis deployment, all through the redis crate's own support:
//! one server (`aio::ConnectionManager`), a Cluster (`cluster_async::ClusterConnection`: slots,
//! MOVED/ASK, reconnects) and a master behind Sentinel (`sentinel.rs`). Each also says where
//! the invalidation subscription connects (`Subscriber`).

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult};

use super::command::{timed_out, Sendable, OP_TIMEOUT};
use super::sentinel::Following;
use crate::session::store::RedisDeployment;

/// The connection the store's commands go over.
#[derive(Clone)]
pub(super) enum Conn {
    Server(Box<ConnectionManager>),
    Cluster(redis::cluster_async::ClusterConnection),
    Sentinel(Arc<Following>),
}

/// Where the invalidation subscription connects (and reconnects).
pub(super) enum Subscriber {
    /// The one server.
    Server(redis::Client),
    /// Any node of the Cluster (a classic PUBLISH reaches every node): the seeds, in turn.
    Cluster(Vec<redis::Client>),
    /// The current master, as the sentinels name it.
    Sentinel(Arc<Following>),
}

/// The error `redis::Client::open` gives, without the URL (it may hold a password).
fn bad(what: &str, e: &redis::RedisError) -> String {
    format!("bad {what}: {:?}", e.kind())
}

/// Connect to `d`: the command connection and the subscription's address. Errors are for the
/// log (no password in them).
pub(super) async fn connect(d: &RedisDeployment) -> Result<(Conn, Subscriber), String> {
    match d {
        RedisDeployment::Server { url } => {
            let client = redis::Client::open(url.as_str()).map_err(|e| bad("redis_url", &e))?;
            // No retries inside a reconnect: the manager's backoff starts at one second (plus
            // jitter), and a request would wait on it; the service must come back within
            // moments of Redis. A failed reconnect leaves a connection-refused error that the
            // next operation turns into a fresh attempt (and `query` retries it once), so
            // reconnecting is driven by requests and `/readyz` probes, one attempt at a time.
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(OP_TIMEOUT)
                .set_response_timeout(OP_TIMEOUT)
                .set_number_of_retries(0);
            let conn = tokio::time::timeout(
                OP_TIMEOUT * 2,
                client.get_connection_manager_with_config(cfg),
            )
            .await
            .map_err(|_| "timed out connecting to redis".to_string())?
            .map_err(|e| e.to_string())?;
            Ok((Conn::Server(Box::new(conn)), Subscriber::Server(client)))
        }
        RedisDeployment::Cluster { nodes } => {
            let clients = nodes
                .iter()
                .map(|n| redis::Client::open(n.as_str()).map_err(|e| bad("redis_cluster", &e)))
                .collect::<Result<Vec<_>, _>>()?;
            let infos: Vec<redis::ConnectionInfo> = clients
                .iter()
                .map(|c| c.get_connection_info().clone())
                .collect();
            // One retry: a MOVED after a failover is followed; a dead node is not waited on
            // for long (the whole operation is bounded by OP_TIMEOUT anyway).
            let client = redis::cluster::ClusterClient::builder(infos)
                .connection_timeout(OP_TIMEOUT)
                .response_timeout(OP_TIMEOUT)
                .retries(2)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .build()
                .map_err(|e| bad("redis_cluster", &e))?;
            let conn = tokio::time::timeout(OP_TIMEOUT * 2, client.get_async_connection())
                .await
                .map_err(|_| "timed out connecting to the redis cluster".to_string())?
                .map_err(|e| e.to_string())?;
            Ok((Conn::Cluster(conn), Subscriber::Cluster(clients)))
        }
        RedisDeployment::Sentinel { sentinels, master } => {
            let f = Arc::new(Following::new(sentinels, master)?);
            // Connect now: the gateway does not start without its store.
            tokio::time::timeout(OP_TIMEOUT * 2, f.connection())
                .await
                .map_err(|_| "timed out asking the sentinels for the master".to_string())?
                .map_err(|e| e.to_string())?;
            Ok((Conn::Sentinel(f.clone()), Subscriber::Sentinel(f)))
        }
    }
}

impl Conn {
    /// One command (or pipeline). A refused connection means the command never left, so it is
    /// sent once more: the failed attempt started a reconnect, and the first request after
    /// Redis is back rides on it instead of getting a 503.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &impl Sendable) -> RedisResult<T> {
        match self.once(cmd).await {
            Err(e) if e.is_connection_refusal() || e.kind() == redis::ErrorKind::ReadOnly => {
                self.once(cmd).await
            }
            r => r,
        }
    }

    async fn once<T: FromRedisValue>(&self, cmd: &impl Sendable) -> RedisResult<T> {
        match self {
            Conn::Server(c) => cmd.send(&mut (**c).clone()).await,
            Conn::Cluster(c) => cmd.send(&mut c.clone()).await,
            Conn::Sentinel(f) => f.query(cmd).await,
        }
    }
}

impl Subscriber {
    /// A fresh pub/sub connection (bounded by [`OP_TIMEOUT`]).
    pub(super) async fn open(&self) -> RedisResult<redis::aio::PubSub> {
        let timed = |c: redis::Client| async move {
            match tokio::time::timeout(OP_TIMEOUT, c.get_async_pubsub()).await {
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            }
        };
        match self {
            Subscriber::Server(c) => timed(c.clone()).await,
            Subscriber::Cluster(nodes) => {
                let mut last = None;
                for c in nodes {
                    match timed(c.clone()).await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(timed_out))
            }
            Subscriber::Sentinel(f) => {
                let client = match tokio::time::timeout(OP_TIMEOUT, f.master_client()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(timed_out()),
                };
                timed(client).await
            }
        }
    }
}
