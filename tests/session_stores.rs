//! The session-store conformance suite: one set of checks of the `SessionStore` contract (see
//! its docs in `src/session/store.rs`), run with the same code against every store — the
//! memory store, and the Redis store on a real `redis-server` (one per test, on a random
//! loopback port). A new store gets a `Kind`, an arm in `open`, and a `conformance!` line.
//!
//! Timings are short but with wide margins: this runs next to the whole suite on two cores.

mod redis_support;

use std::sync::Arc;
use std::time::Duration;

use redis_support::{start_redis, Redis};
use wxgate::session::{
    Backend, NewSession, PendingLogin, Session, SessionId, SessionStore, SessionStoreSettings,
    Store,
};
// Records carry a provider origin; the stores never look inside it.
use wxgate::providers::wechat::Source;

/// Longest return URL a login in flight may carry (`common::redirect::MAX_RD`).
const MAX_RD: usize = 2048;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Memory,
    Redis,
}

/// A fresh, empty store of one kind (and the Redis server behind it, if any).
struct Under {
    store: Arc<Store>,
    /// Declared after `store`: the server goes after the connection to it.
    redis: Option<Redis>,
}

impl Under {
    /// A raw connection to the Redis behind the store, to look at (or damage) what it holds.
    async fn raw(&self) -> redis::aio::ConnectionManager {
        let url = self.redis.as_ref().expect("a Redis store").url();
        redis::Client::open(url)
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap()
    }
}

/// The factory: `kind`, built with this idle timeout (lifetime one hour, room for 1000).
async fn open(kind: Kind, idle: Duration) -> Under {
    let (backend, redis) = match kind {
        Kind::Memory => (Backend::Memory, None),
        Kind::Redis => {
            let r = start_redis().await;
            (Backend::Redis { url: r.url() }, Some(r))
        }
    };
    let settings = SessionStoreSettings {
        ttl: Duration::from_secs(3600),
        idle,
        capacity: 1000,
        backend,
        snapshot: None,
    };
    let store = Store::connect(&settings).await.expect("the store opens");
    Under {
        store: Arc::new(store),
        redis,
    }
}

async fn open_default(kind: Kind) -> Under {
    open(kind, Duration::from_secs(3600)).await
}

/// A session record ending at `expires_at` (Unix seconds), with every field in use.
fn record(openid: &str, expires_at: u64) -> Session {
    Session::new(&NewSession {
        openid,
        unionid: Some("uUnion"),
        appid: "wxApp",
        origin: Source::MiniProgram.into(),
        nickname: "Alice 🐼 李\u{7}",
        avatar: "https://thirdwx.qlogo.cn/mmopen/x/132",
        expires_at,
    })
}

fn pending(rd: &str) -> PendingLogin {
    PendingLogin {
        rd: rd.into(),
        origin: Source::Website.into(),
    }
}

const NEVER: u64 = u64::MAX;
const NOW: u64 = 1_700_000_100;

// ---------------------------------------------------------------------------------------------
// The checks. Each takes the kind of store; `conformance!` below runs each for every kind.

async fn round_trip_is_byte_exact(kind: Kind) {
    let u = open_default(kind).await;
    let (a, b) = (SessionId::random(), SessionId::random());
    let (ra, rb) = (record("oA", NEVER), record("oB", NOW + 60));
    u.store.insert(a, ra.clone()).await.unwrap();
    u.store.insert(b, rb.clone()).await.unwrap();
    let got = u.store.get(&a, NOW).await.unwrap().expect("stored");
    assert_eq!(
        got.as_bytes(),
        ra.as_bytes(),
        "the compact record, byte for byte"
    );
    assert_eq!(got.openid(), "oA");
    assert_eq!(got.nickname(), "Alice 🐼 李\u{7}");
    assert_eq!(got.avatar(), "https://thirdwx.qlogo.cn/mmopen/x/132");
    let got = u.store.get(&b, NOW).await.unwrap().expect("stored");
    assert_eq!(got.as_bytes(), rb.as_bytes());
    // Reading does not consume.
    assert!(u.store.get(&a, NOW).await.unwrap().is_some());
}

async fn unknown_id_is_none(kind: Kind) {
    let u = open_default(kind).await;
    assert!(u
        .store
        .get(&SessionId::random(), NOW)
        .await
        .unwrap()
        .is_none());
    u.store
        .insert(SessionId::random(), record("o", NEVER))
        .await
        .unwrap();
    assert!(u
        .store
        .get(&SessionId::random(), NOW)
        .await
        .unwrap()
        .is_none());
}

async fn remove_forgets(kind: Kind) {
    let u = open_default(kind).await;
    let (a, b) = (SessionId::random(), SessionId::random());
    u.store.insert(a, record("oA", NEVER)).await.unwrap();
    u.store.insert(b, record("oB", NEVER)).await.unwrap();
    u.store.remove(&a).await.unwrap();
    assert!(u.store.get(&a, NOW).await.unwrap().is_none());
    assert!(
        u.store.get(&b, NOW).await.unwrap().is_some(),
        "only that one"
    );
    // Removing again, or an id never seen, is no error.
    u.store.remove(&a).await.unwrap();
    u.store.remove(&SessionId::random()).await.unwrap();
}

async fn insert_replaces(kind: Kind) {
    let u = open_default(kind).await;
    let id = SessionId::random();
    u.store.insert(id, record("old", NEVER)).await.unwrap();
    let new = record("new", NOW + 10);
    u.store.insert(id, new.clone()).await.unwrap();
    let got = u.store.get(&id, NOW).await.unwrap().unwrap();
    assert_eq!(got.as_bytes(), new.as_bytes());
}

async fn absolute_expiry(kind: Kind) {
    let u = open_default(kind).await;
    let id = SessionId::random();
    u.store.insert(id, record("o", 100)).await.unwrap();
    assert!(u.store.get(&id, 99).await.unwrap().is_some());
    assert!(
        u.store.get(&id, 100).await.unwrap().is_none(),
        "absolute expiry"
    );
    assert!(u.store.get(&id, NOW).await.unwrap().is_none());
}

async fn idle_timeout(kind: Kind) {
    let u = open(kind, Duration::from_secs(2)).await;
    let (used, unused) = (SessionId::random(), SessionId::random());
    u.store.insert(used, record("used", NEVER)).await.unwrap();
    u.store
        .insert(unused, record("unused", NEVER))
        .await
        .unwrap();
    // Read every second, it outlives the idle timeout (2 s) ...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            u.store.get(&used, NOW).await.unwrap().is_some(),
            "a read keeps it alive"
        );
    }
    // ... and the one nobody read (3 s) is gone.
    assert!(
        u.store.get(&unused, NOW).await.unwrap().is_none(),
        "idle too long"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        u.store.get(&used, NOW).await.unwrap().is_none(),
        "idle too long"
    );
}

async fn pending_is_single_use(kind: Kind) {
    let u = open_default(kind).await;
    let ttl = Duration::from_secs(600);
    u.store.put_pending("n1", pending("/x"), ttl).await.unwrap();
    u.store.put_pending("n2", pending("/y"), ttl).await.unwrap();
    assert_eq!(
        u.store.take_pending("n1").await.unwrap(),
        Some(pending("/x"))
    );
    assert_eq!(u.store.take_pending("n1").await.unwrap(), None, "used up");
    assert_eq!(u.store.take_pending("n3").await.unwrap(), None, "unknown");
    assert_eq!(
        u.store.take_pending("n2").await.unwrap(),
        Some(pending("/y"))
    );
}

async fn pending_put_replaces(kind: Kind) {
    let u = open_default(kind).await;
    let ttl = Duration::from_secs(600);
    u.store
        .put_pending("n", pending("/old"), ttl)
        .await
        .unwrap();
    u.store
        .put_pending("n", pending("/new"), ttl)
        .await
        .unwrap();
    assert_eq!(
        u.store.take_pending("n").await.unwrap(),
        Some(pending("/new"))
    );
    assert_eq!(u.store.take_pending("n").await.unwrap(), None);
}

async fn pending_honours_its_ttl(kind: Kind) {
    // The store's own lifetimes are an hour: only the TTL given here can end these.
    let u = open_default(kind).await;
    u.store
        .put_pending("short", pending("/a"), Duration::from_millis(200))
        .await
        .unwrap();
    u.store
        .put_pending("long", pending("/b"), Duration::from_secs(600))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        u.store.take_pending("short").await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        u.store.take_pending("long").await.unwrap(),
        Some(pending("/b"))
    );
}

async fn concurrent_takes_have_one_winner(kind: Kind) {
    let u = open_default(kind).await;
    for round in 0..20 {
        let nonce = format!("race{round}");
        u.store
            .put_pending(&nonce, pending("/r"), Duration::from_secs(600))
            .await
            .unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let (store, start, nonce) = (u.store.clone(), start.clone(), nonce.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.take_pending(&nonce).await.unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for t in takers {
            if let Some(p) = t.await.unwrap() {
                assert_eq!(p, pending("/r"));
                won += 1;
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one caller gets the login");
    }
}

async fn oversized_pending_refused(kind: Kind) {
    let u = open_default(kind).await;
    let ttl = Duration::from_secs(600);
    let longest = format!("/{}", "x".repeat(MAX_RD - 1));
    u.store
        .put_pending("ok", pending(&longest), ttl)
        .await
        .unwrap();
    assert_eq!(
        u.store.take_pending("ok").await.unwrap(),
        Some(pending(&longest))
    );
    let over = format!("/{}", "x".repeat(MAX_RD));
    assert!(u
        .store
        .put_pending("no", pending(&over), ttl)
        .await
        .is_err());
    assert_eq!(u.store.take_pending("no").await.unwrap(), None);
}

async fn ping_and_count(kind: Kind) {
    let u = open_default(kind).await;
    u.store.ping().await.unwrap();
    for i in 0..3 {
        u.store
            .insert(SessionId::random(), record(&format!("o{i}"), NEVER))
            .await
            .unwrap();
    }
    match (kind, u.store.session_count()) {
        (Kind::Redis, n) => assert_eq!(n, None, "Redis cannot count cheaply"),
        (_, Some(n)) => assert!(n <= 3, "{n}: approximate, never more than were stored"),
        (k, None) => panic!("{k:?} can count"),
    }
}

macro_rules! conformance {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn round_trip_is_byte_exact() {
                super::round_trip_is_byte_exact($kind).await
            }
            #[tokio::test]
            async fn unknown_id_is_none() {
                super::unknown_id_is_none($kind).await
            }
            #[tokio::test]
            async fn remove_forgets() {
                super::remove_forgets($kind).await
            }
            #[tokio::test]
            async fn insert_replaces() {
                super::insert_replaces($kind).await
            }
            #[tokio::test]
            async fn absolute_expiry() {
                super::absolute_expiry($kind).await
            }
            #[tokio::test]
            async fn idle_timeout() {
                super::idle_timeout($kind).await
            }
            #[tokio::test]
            async fn pending_is_single_use() {
                super::pending_is_single_use($kind).await
            }
            #[tokio::test]
            async fn pending_put_replaces() {
                super::pending_put_replaces($kind).await
            }
            #[tokio::test]
            async fn pending_honours_its_ttl() {
                super::pending_honours_its_ttl($kind).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_takes_have_one_winner() {
                super::concurrent_takes_have_one_winner($kind).await
            }
            #[tokio::test]
            async fn oversized_pending_refused() {
                super::oversized_pending_refused($kind).await
            }
            #[tokio::test]
            async fn ping_and_count() {
                super::ping_and_count($kind).await
            }
        }
    };
}

conformance!(memory, Kind::Memory);
conformance!(redis_store, Kind::Redis);

// ---------------------------------------------------------------------------------------------
// Redis only: what lands in Redis, and what the store makes of a value it did not write.

/// Every key in the Redis behind `u`, with its value.
async fn dump(u: &Under) -> Vec<(String, Vec<u8>)> {
    let mut raw = u.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut raw)
            .await
            .unwrap();
        out.push((k, v));
    }
    out
}

#[tokio::test]
async fn redis_holds_no_usable_session_id() {
    use base64::Engine;
    let u = open_default(Kind::Redis).await;
    let id = SessionId::random();
    u.store.insert(id, record("o", NEVER)).await.unwrap();
    let all = dump(&u).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let raw_id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id.encode())
        .unwrap();
    let (key, value) = &all[0];
    let forms = [
        id.encode(),
        hex::encode(&raw_id),
        hex::encode_upper(&raw_id),
        base64::engine::general_purpose::STANDARD.encode(&raw_id),
    ];
    for form in &forms {
        assert!(
            !key.contains(form.trim_end_matches('=')),
            "{key} holds {form}"
        );
        assert!(
            !value.windows(form.len()).any(|w| w == form.as_bytes()),
            "the value holds {form}"
        );
    }
    for bytes in [key.as_bytes(), value.as_slice()] {
        assert!(
            !bytes.windows(16).any(|w| w == raw_id.as_slice()),
            "raw id bytes"
        );
    }
    // Found again under the same derivation, and removed from Redis by `remove`.
    assert!(u.store.get(&id, NOW).await.unwrap().is_some());
    u.store.remove(&id).await.unwrap();
    assert!(dump(&u).await.is_empty());
}

#[tokio::test]
async fn redis_damaged_values_are_no_session() {
    let u = open_default(Kind::Redis).await;
    let id = SessionId::random();
    let r = record("o", NEVER);
    u.store.insert(id, r.clone()).await.unwrap();
    let (key, _) = dump(&u).await.remove(0);
    let whole = r.as_bytes().to_vec();
    let damaged: [Vec<u8>; 4] = [
        b"not a session".to_vec(),
        Vec::new(),
        whole[..whole.len() - 1].to_vec(),
        [whole.as_slice(), b"x"].concat(),
    ];
    let mut raw = u.raw().await;
    for bad in damaged {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(bad)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            u.store.get(&id, NOW).await.unwrap().is_none(),
            "a damaged record reads as no session, not an error"
        );
    }
    // Logins in flight too.
    u.store
        .put_pending("n", pending("/x"), Duration::from_secs(600))
        .await
        .unwrap();
    let (pkey, _) = dump(&u).await.into_iter().find(|(k, _)| k != &key).unwrap();
    let () = redis::cmd("SET")
        .arg(&pkey)
        .arg("{\"rd\":")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(u.store.take_pending("n").await.unwrap(), None);
}

#[tokio::test]
async fn redis_ttls_are_set_in_milliseconds() {
    let u = open(Kind::Redis, Duration::from_millis(1500)).await;
    u.store
        .insert(SessionId::random(), record("o", NEVER))
        .await
        .unwrap();
    u.store
        .put_pending("n", pending("/x"), Duration::from_millis(700))
        .await
        .unwrap();
    let mut raw = u.raw().await;
    for (key, _) in dump(&u).await {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        let want = if key.starts_with("wxgate:p:") {
            700
        } else {
            1500
        };
        assert!(
            pttl > 0 && pttl <= want && pttl > want - 500,
            "{key}: PTTL {pttl}, want about {want}"
        );
    }
}

#[tokio::test]
async fn redis_gone_is_an_error_not_a_miss() {
    let u = open_default(Kind::Redis).await;
    let id = SessionId::random();
    u.store.insert(id, record("o", NEVER)).await.unwrap();
    let Under { store, redis } = u;
    drop(redis);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.ping().await.is_err());
    assert!(store.get(&id, NOW).await.is_err(), "never a pass");
    assert!(store.take_pending("n").await.is_err());
}
