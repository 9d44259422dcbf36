//! Revocations reaching every instance's cache: Redis pub/sub on one channel.
//!
//! - A remove (logout, revocation) or a replacing insert publishes `s:<instance>:<digest hex>`
//!   — the one-way key digest, never the session id — in the same round trip as the write;
//!   every other instance drops that entry (the writer already did).
//! - Every instance publishes its own heartbeat `h:<instance>:<ms>` every [`HEARTBEAT`]; seeing
//!   it come back over the subscription keeps the cache trusted (`cache.rs`).
//! - The subscription task reconnects on its own (every [`RETRY`] while Redis is away). While
//!   it is down the cache is not trusted (reads go to Redis; only if Redis cannot answer is a
//!   cached entry served); each new subscription starts from an empty cache.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::cache::{Cache, Digest};
use super::connect::{Conn, Subscriber};

/// The pub/sub channel every instance listens on.
pub(super) const CHANNEL: &str = "wxgate:invalidate";

/// How often an instance publishes its heartbeat.
pub(super) const HEARTBEAT: Duration = Duration::from_millis(200);

/// No message at all for this long: the subscription is taken for dead and renewed.
const SILENCE: Duration = Duration::from_secs(2);

/// Pause between attempts to subscribe while Redis is away.
const RETRY: Duration = Duration::from_millis(200);

/// A message on [`CHANNEL`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// Drop this session (digest) from the cache; sent by instance `from`.
    Session { from: u64, key: Digest },
    /// Instance `from`'s heartbeat, sent at `ms` on its own clock.
    Heartbeat { from: u64, ms: u64 },
}

impl Message {
    pub(super) fn encode(&self) -> String {
        match self {
            Message::Session { from, key } => format!("s:{from:016x}:{}", hex::encode(key)),
            Message::Heartbeat { from, ms } => format!("h:{from:016x}:{ms}"),
        }
    }

    /// A message read off the channel; anything else (another program's, damaged) is `None`.
    pub(super) fn decode(raw: &[u8]) -> Option<Message> {
        let s = std::str::from_utf8(raw).ok()?;
        let (kind, rest) = s.split_once(':')?;
        let (from, body) = rest.split_once(':')?;
        if from.len() != 16 {
            return None;
        }
        let from = u64::from_str_radix(from, 16).ok()?;
        match kind {
            "s" if body.len() == 64 => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(body, &mut key).ok()?;
                Some(Message::Session { from, key })
            }
            "h" if !body.is_empty()
                && body.len() <= 20
                && body.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(Message::Heartbeat {
                    from,
                    ms: body.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// `PUBLISH` of `m`, to add to the pipeline that writes.
pub(super) fn publish(m: &Message) -> redis::Cmd {
    let mut c = redis::cmd("PUBLISH");
    c.arg(CHANNEL).arg(m.encode());
    c
}

/// The background tasks of a cached store; they end when this is dropped (with the store).
pub(super) struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Start the heartbeat and the subscription for `cache`, as instance `me`.
pub(super) fn start(me: u64, conn: Conn, sub: Subscriber, cache: Arc<Cache>) -> Tasks {
    let conn2 = conn.clone();
    let heart = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                beat(me, &conn, &cache).await;
            }
        })
    };
    let listen = tokio::spawn(subscribe_forever(me, sub, conn2, cache));
    Tasks(vec![heart, listen])
}

/// This instance's heartbeat, published now (failing is the point of a heartbeat: the cache
/// then stops being trusted).
async fn beat(me: u64, conn: &Conn, cache: &Cache) {
    let m = Message::Heartbeat {
        from: me,
        ms: cache.clock_ms(),
    };
    let _ = tokio::time::timeout(HEARTBEAT * 2, conn.query::<i64>(&publish(&m))).await;
}

async fn subscribe_forever(me: u64, sub: Subscriber, conn: Conn, cache: Arc<Cache>) {
    let mut was_up = true;
    let mut refused_logged = false;
    loop {
        cache.distrust();
        let ps = match sub.open().await {
            Ok(mut ps) => ps.subscribe(CHANNEL).await.map(|()| ps),
            Err(e) => Err(e),
        };
        let mut ps = match ps {
            Ok(ps) => ps,
            Err(e) => {
                // Redis away: the store's own outage line says so. Redis refusing (an ACL
                // without pub/sub, say) is a setup problem: said once, and the cache stays off.
                let unreachable = e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_timeout();
                if !unreachable && !refused_logged {
                    tracing::warn!(error = %e, "session cache off: redis refuses the invalidation subscription; every read goes to redis");
                    refused_logged = true;
                } else if was_up {
                    tracing::debug!(
                        "session cache: invalidation subscription down; reading through to redis"
                    );
                }
                was_up = false;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Invalidations may have been missed while unsubscribed: start empty. Trusted again
        // once this instance's next heartbeat comes back.
        cache.distrust_and_clear();
        was_up = true;
        // Trusted again as soon as a heartbeat makes the round trip, not at the next tick.
        beat(me, &conn, &cache).await;
        let mut stream = ps.on_message();
        // Silence longer than this (this instance's heartbeat comes every 200 ms) means a dead
        // connection that did not say so: resubscribe.
        while let Ok(Some(msg)) = tokio::time::timeout(SILENCE, stream.next()).await {
            match Message::decode(msg.get_payload_bytes()) {
                Some(Message::Session { from, key }) if from != me => cache.invalidate(&key),
                Some(Message::Heartbeat { from, ms }) if from == me => cache.heartbeat_seen(ms),
                _ => {}
            }
        }
        // The connection ended (Redis gone, failover, killed): the loop clears and resubscribes.
    }
}
