//! What the store sends: a command or a pipeline ([`Sendable`], over any of the redis crate's
//! async connections), and how long it may take.

use std::time::Duration;

use redis::{FromRedisValue, RedisResult};

/// Longest a store operation may take before the request gets a 503 (connecting included).
pub(super) const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A command or a pipeline: what `Conn::query` sends.
pub(super) trait Sendable: Sync {
    fn send<T: FromRedisValue, C: redis::aio::ConnectionLike + Send>(
        &self,
        c: &mut C,
    ) -> impl std::future::Future<Output = RedisResult<T>> + Send;
}

impl Sendable for redis::Cmd {
    async fn send<T: FromRedisValue, C: redis::aio::ConnectionLike + Send>(
        &self,
        c: &mut C,
    ) -> RedisResult<T> {
        self.query_async(c).await
    }
}

impl Sendable for redis::Pipeline {
    async fn send<T: FromRedisValue, C: redis::aio::ConnectionLike + Send>(
        &self,
        c: &mut C,
    ) -> RedisResult<T> {
        self.query_async(c).await
    }
}

pub(super) fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis timed out",
    ))
}
