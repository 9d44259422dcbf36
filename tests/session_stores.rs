//! The session-store conformance suite: one set of checks of the `SessionStore` contract (see
//! its docs in `src/session/store.rs`), run with the same code against every store — the
//! memory store, and the Redis store on real `redis-server`s (started per test on random
//! loopback ports): one server without a cache (`cache_ms = 0`) and with one, a 3-master
//! Cluster, and a master behind Sentinel (both cached). A new store gets a `Kind`, an arm in
//! `open`, and a `conformance!` line. After the suite: what lands in Redis, and the cache's
//! own semantics (revocation across instances, no cache at 0, a lost subscription, outage).
//!
//! Timings are short but with wide margins: this runs next to the whole suite on two cores.

mod redis_support;

use std::sync::Arc;
use std::time::Duration;

use redis_support::{start_cluster, start_redis, start_sentinel, Cluster, Redis};
use wxgate::session::{
    Backend, NewSession, PendingLogin, RedisDeployment, Session, SessionId, SessionStore,
    SessionStoreSettings, Store,
};
// Records carry a provider origin; the stores never look inside it.
use wxgate::providers::wechat::Source;

/// Longest return URL a login in flight may carry (`common::redirect::MAX_RD`).
const MAX_RD: usize = 2048;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Memory,
    /// One server, no cache (`cache_ms = 0`).
    Redis,
    /// One server, with the cache.
    RedisCached,
    /// A 3-master Cluster, with the cache.
    Cluster,
    /// A master behind a sentinel, with the cache.
    Sentinel,
}

/// The Redis servers behind a store (killed on drop).
#[allow(dead_code)]
enum Servers {
    None,
    One(Redis),
    Cluster(Cluster),
    Sentinel { master: Redis, sentinel: Redis },
}

/// A fresh, empty store of one kind (and the Redis server behind it, if any).
struct Under {
    store: Arc<Store>,
    /// Declared after `store`: the servers go after the connection to them.
    servers: Servers,
    settings: SessionStoreSettings,
    /// The one server (kinds `Redis` and `RedisCached`).
    redis: Option<u16>,
}

impl Under {
    /// A raw connection to the Redis behind the store, to look at (or damage) what it holds.
    async fn raw(&self) -> redis::aio::ConnectionManager {
        let port = self.redis.expect("a Redis store");
        redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap()
    }

    /// Another store (another gateway instance) on the same Redis, same settings.
    async fn another(&self) -> Store {
        Store::connect(&self.settings)
            .await
            .expect("the store opens")
    }
}

/// The cache the conformance suite runs with: well under the idle timeout (the idle clock in
/// Redis restarts on cache misses only; config validation keeps cache_ms <= idle / 2).
fn suite_cache(idle: Duration) -> Duration {
    (idle / 4).min(Duration::from_secs(1))
}

/// The factory: `kind`, built with this idle timeout (lifetime one hour, room for 1000).
async fn open(kind: Kind, idle: Duration) -> Under {
    open_cached(kind, idle, suite_cache(idle)).await
}

/// Like [`open`], with this cache lifetime for the cached Redis kinds.
async fn open_cached(kind: Kind, idle: Duration, cache: Duration) -> Under {
    let redis = |deployment| Backend::Redis { deployment, cache };
    let (backend, servers, port) = match kind {
        Kind::Memory => (Backend::Memory, Servers::None, None),
        Kind::Redis | Kind::RedisCached => {
            let r = start_redis().await;
            let b = Backend::Redis {
                deployment: RedisDeployment::Server { url: r.url() },
                cache: if kind == Kind::Redis {
                    Duration::ZERO
                } else {
                    cache
                },
            };
            let port = r.port;
            (b, Servers::One(r), Some(port))
        }
        Kind::Cluster => {
            let c = start_cluster().await;
            let nodes = c.seeds().iter().map(|s| format!("redis://{s}")).collect();
            (
                redis(RedisDeployment::Cluster { nodes }),
                Servers::Cluster(c),
                None,
            )
        }
        Kind::Sentinel => {
            let master = start_redis().await;
            let sentinel = start_sentinel(master.port, 1).await;
            let b = redis(RedisDeployment::Sentinel {
                sentinels: vec![format!("redis://127.0.0.1:{}", sentinel.port)],
                master: redis_support::SENTINEL_MASTER.into(),
            });
            (b, Servers::Sentinel { master, sentinel }, None)
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
        servers,
        settings,
        redis: port,
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

/// `replace` writes only onto a record that is there: an update after slow work (a phone
/// number looked up) never brings back a session a logout ended meanwhile.
async fn replace_only_what_is_there(kind: Kind) {
    let u = open_default(kind).await;
    let id = SessionId::random();
    u.store.insert(id, record("old", NEVER)).await.unwrap();
    let new = record("new", NEVER);
    assert!(u.store.replace(id, new.clone()).await.unwrap());
    let got = u.store.get(&id, NOW).await.unwrap().unwrap();
    assert_eq!(got.as_bytes(), new.as_bytes());
    // A logout, then the late update: nothing comes back.
    u.store.remove(&id).await.unwrap();
    assert!(!u.store.replace(id, record("late", NEVER)).await.unwrap());
    assert!(u.store.get(&id, NOW).await.unwrap().is_none());
    assert!(!u
        .store
        .replace(SessionId::random(), record("x", NEVER))
        .await
        .unwrap());
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
        (Kind::Memory, Some(n)) => {
            assert!(n <= 3, "{n}: approximate, never more than were stored")
        }
        (Kind::Memory, None) => panic!("the memory store can count"),
        (_, n) => assert_eq!(n, None, "Redis cannot count cheaply"),
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
            async fn replace_only_what_is_there() {
                super::replace_only_what_is_there($kind).await
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
conformance!(redis_cached, Kind::RedisCached);
conformance!(redis_cluster, Kind::Cluster);
conformance!(redis_sentinel, Kind::Sentinel);

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
    let Under { store, servers, .. } = u;
    drop(servers);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.ping().await.is_err());
    assert!(store.get(&id, NOW).await.is_err(), "never a pass");
    assert!(store.take_pending("n").await.is_err());
}

// ---------------------------------------------------------------------------------------------
// The cache in front of Redis (`session.cache_ms`).

/// Deletes `id`'s key behind the stores' backs (no invalidation published): only a store that
/// asks Redis sees it gone.
async fn delete_quietly(u: &Under, id: &SessionId) {
    let mut raw = u.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("wxgate:s:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut raw)
            .await
            .unwrap();
        if Session::from_bytes(v.into()).is_some_and(|s| s.openid() == id_openid(id)) {
            let () = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    }
}

/// Each test session's openid is derived from its id, so `delete_quietly` can find its key
/// without the store's key derivation.
fn id_openid(id: &SessionId) -> String {
    format!("o-{}", &id.encode()[..8])
}

/// Waits until the store trusts its cache: a read is served without Redis (probed by a session
/// deleted quietly that the cache still answers for).
async fn cache_serves(store: &Store, id: &SessionId) -> bool {
    store.get(id, NOW).await.unwrap().is_some()
}

async fn wait_until_trusted(u: &Under, store: &Store) {
    // The heartbeat comes back within ~200 ms of subscribing.
    let probe = SessionId::random();
    store
        .insert(probe, record(&id_openid(&probe), NEVER))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        // Cached by the insert; once trusted it is served though Redis no longer has it.
        store
            .insert(probe, record(&id_openid(&probe), NEVER))
            .await
            .unwrap();
        delete_quietly(u, &probe).await;
        if cache_serves(store, &probe).await {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the cache never became trusted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_revocation_reaches_another_instance_within_a_second() {
    let u = open_cached(
        Kind::RedisCached,
        Duration::from_secs(3600),
        Duration::from_secs(5),
    )
    .await;
    let b = u.another().await;
    let id = SessionId::random();
    // B serves it from its cache: gone from Redis behind its back, B still answers. Trust
    // lapses when a heartbeat is late by more than FRESH (a loaded machine), and the read then
    // goes to Redis, the safe way round; so this is retried for up to 5 s, and must happen.
    let t = std::time::Instant::now();
    loop {
        wait_until_trusted(&u, &b).await;
        u.store
            .insert(id, record(&id_openid(&id), NEVER))
            .await
            .unwrap();
        assert!(
            b.get(&id, NOW).await.unwrap().is_some(),
            "B reads it (and caches it)"
        );
        delete_quietly(&u, &id).await;
        if b.get(&id, NOW).await.unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "never served from B's cache"
        );
    }
    // Put it back, then log out through A: B refuses it within a second.
    u.store
        .insert(id, record(&id_openid(&id), NEVER))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    u.store.remove(&id).await.unwrap();
    while b.get(&id, NOW).await.unwrap().is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "B still serves a revoked session"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "revocation reached the second instance in {:?}",
        t.elapsed()
    );
    // The cached read still checks the absolute expiry.
    let short = SessionId::random();
    u.store
        .insert(short, record(&id_openid(&short), NOW + 1))
        .await
        .unwrap();
    assert!(b.get(&short, NOW).await.unwrap().is_some());
    assert!(
        b.get(&short, NOW + 1).await.unwrap().is_none(),
        "expired, though cached"
    );
}

#[tokio::test]
async fn cache_ms_zero_caches_nothing() {
    let u = open_cached(Kind::Redis, Duration::from_secs(3600), Duration::ZERO).await;
    let id = SessionId::random();
    u.store
        .insert(id, record(&id_openid(&id), NEVER))
        .await
        .unwrap();
    assert!(u.store.get(&id, NOW).await.unwrap().is_some());
    delete_quietly(&u, &id).await;
    assert!(
        u.store.get(&id, NOW).await.unwrap().is_none(),
        "every read asks Redis"
    );
    // No subscription either: nobody listens on the invalidation channel.
    let mut raw = u.raw().await;
    let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("wxgate:invalidate")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(n[0].1, 0, "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_stops_serving_from_the_cache() {
    let u = open_cached(
        Kind::RedisCached,
        Duration::from_secs(3600),
        Duration::from_secs(5),
    )
    .await;
    wait_until_trusted(&u, &u.store).await;
    let id = SessionId::random();
    u.store
        .insert(id, record(&id_openid(&id), NEVER))
        .await
        .unwrap();
    delete_quietly(&u, &id).await;
    assert!(u.store.get(&id, NOW).await.unwrap().is_some(), "cached");
    // Cut the subscription: invalidations could be missed from now on.
    let mut raw = u.raw().await;
    let t = std::time::Instant::now();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the store's one subscription");
    while u.store.get(&id, NOW).await.unwrap().is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "still served from an unchecked cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "cache distrusted {:?} after the subscription was cut",
        t.elapsed()
    );
    // It resubscribes by itself, from an empty cache, and caches again.
    let t = std::time::Instant::now();
    loop {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("wxgate:invalidate")
            .query_async(&mut raw)
            .await
            .unwrap();
        if n[0].1 == 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "not resubscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_trusted(&u, &u.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_serves_only_cached_sessions() {
    let u = open_cached(
        Kind::RedisCached,
        Duration::from_secs(3600),
        Duration::from_secs(5),
    )
    .await;
    wait_until_trusted(&u, &u.store).await;
    let (cached, uncached) = (SessionId::random(), SessionId::random());
    u.store
        .insert(cached, record(&id_openid(&cached), NEVER))
        .await
        .unwrap();
    let b = u.another().await;
    b.insert(uncached, record(&id_openid(&uncached), NEVER))
        .await
        .unwrap();
    let Under { store, servers, .. } = u;
    drop(servers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.ping().await.is_err());
    assert!(
        store.get(&cached, NOW).await.unwrap().is_some(),
        "a cached session outlives the outage (up to cache_ms)"
    );
    assert!(
        store.get(&uncached, NOW).await.is_err(),
        "not cached here: 503, never a pass"
    );
    assert!(store.remove(&cached).await.is_err(), "a logout needs Redis");
}

// ---------------------------------------------------------------------------------------------
// Every Redis deployment: an outage is an error (503), fast, counted; the store comes back by
// itself when Redis does.

impl Servers {
    fn all(&mut self) -> Vec<&mut Redis> {
        match self {
            Servers::None => Vec::new(),
            Servers::One(r) => vec![r],
            Servers::Cluster(c) => c.nodes.iter_mut().collect(),
            // The sentinel stays up: it is the master that goes away.
            Servers::Sentinel { master, .. } => vec![master],
        }
    }
}

async fn outage_fails_fast_and_recovers(kind: Kind) {
    let mut u = open_default(kind).await;
    u.store.ping().await.unwrap();
    for r in u.servers.all() {
        r.kill();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = u.store.error_count();
    let unknown = SessionId::random();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        assert!(
            u.store.get(&unknown, NOW).await.is_err(),
            "never a miss, never a pass"
        );
        assert!(u.store.take_pending("n").await.is_err());
        assert!(u.store.ping().await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(2500 * 3),
            "{kind:?}: {:?} for three failed operations",
            t.elapsed()
        );
        println!("{kind:?}: three failed operations took {:?}", t.elapsed());
    }
    assert!(u.store.error_count() >= before + 9, "failures are counted");
    for r in u.servers.all() {
        r.start_again().await;
    }
    let back = std::time::Instant::now();
    let id = SessionId::random();
    loop {
        if u.store.insert(id, record("o", NEVER)).await.is_ok()
            && u.store.get(&id, NOW).await.is_ok_and(|s| s.is_some())
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "{kind:?} did not come back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{kind:?}: serving again {:?} after Redis restarted",
        back.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_redis_store() {
    outage_fails_fast_and_recovers(Kind::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_redis_cached() {
    outage_fails_fast_and_recovers(Kind::RedisCached).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_redis_cluster() {
    outage_fails_fast_and_recovers(Kind::Cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_redis_sentinel() {
    outage_fails_fast_and_recovers(Kind::Sentinel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pubsub_rights_the_cache_stays_off() {
    // A Redis user that may not use pub/sub: no invalidations can reach this instance, so it
    // must never serve from its cache (every read asks Redis), and it still works.
    let u = open_cached(
        Kind::RedisCached,
        Duration::from_secs(3600),
        Duration::from_secs(5),
    )
    .await;
    let port = u.redis.unwrap();
    let () = redis_support::cmd(
        port,
        &[
            "ACL", "SETUSER", "nopubsub", "on", ">pw", "~*", "&*", "+@all", "-@pubsub",
        ],
    )
    .await
    .unwrap();
    let mut settings = u.settings.clone();
    settings.backend = Backend::Redis {
        deployment: RedisDeployment::Server {
            url: format!("redis://nopubsub:pw@127.0.0.1:{port}/0"),
        },
        cache: Duration::from_secs(5),
    };
    let limited = Store::connect(&settings).await.expect("the store opens");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Writes work (the refused PUBLISH does not fail them), reads work, never from a cache.
    let id = SessionId::random();
    limited
        .insert(id, record(&id_openid(&id), NEVER))
        .await
        .unwrap();
    assert!(limited.get(&id, NOW).await.unwrap().is_some());
    assert!(u.store.get(&id, NOW).await.unwrap().is_some(), "in Redis");
    delete_quietly(&u, &id).await;
    assert!(
        limited.get(&id, NOW).await.unwrap().is_none(),
        "read through, not cached"
    );
    let other = SessionId::random();
    limited
        .insert(other, record(&id_openid(&other), NEVER))
        .await
        .unwrap();
    limited.remove(&other).await.unwrap();
    assert!(u.store.get(&other, NOW).await.unwrap().is_none());
    assert_eq!(
        limited.error_count(),
        0,
        "a refused PUBLISH is no store failure"
    );
}
