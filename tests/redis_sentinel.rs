//! Redis behind Sentinel (`session.redis_sentinels` + `redis_sentinel_master`), over real
//! servers on loopback ports: one master, one replica, three sentinels (quorum 2). The master
//! is killed during a stream of authenticated requests; the sentinels promote the replica and
//! the gateway follows. Sessions written before the kill (replicated: checked with WAIT) still
//! work, new logins work, and requests fail (503, never a pass, never a logout) only during the
//! failover window, which the test prints.
//!
//! The gateway runs without the session cache (`cache_ms = 0`) so that every request needs
//! Redis: the failover is fully visible.

mod common;
mod redis_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_support::{
    cmd, sentinel_master_port, start_redis, start_replica, start_sentinel, SENTINEL_MASTER,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_sessions_and_fails_only_during_the_window() {
    let master = start_redis().await;
    let replica = start_replica(master.port).await;
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(start_sentinel(master.port, 2).await);
    }
    // The sentinels find the replica and each other (hello messages, every 2 s).
    let t = Instant::now();
    for s in &sentinels {
        loop {
            let replicas: Vec<redis::Value> =
                cmd(s.port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER])
                    .await
                    .unwrap();
            let peers: Vec<redis::Value> = cmd(s.port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER])
                .await
                .unwrap();
            if replicas.len() == 1 && peers.len() == 2 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "sentinels did not discover the set"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let list = sentinels
        .iter()
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = full_config(up.addr, &mock.url(), "").replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!(
            "cookie_secret = \"{SECRET}\"\nstore = \"redis\"\nredis_sentinels = [{list}]\n\
             redis_sentinel_master = \"{SENTINEL_MASTER}\"\ncache_ms = 0\n"
        ),
    );
    let gw = start_gateway(&toml).await;
    let env = Env { up, mock, gw };

    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        let mut b = Browser::pc();
        assert_eq!(login(&env, &mut b, "/x", user).await, "/x");
        cookies.push(b.cookie_header());
    }
    // Wait until the replica has every write so far: a write on this connection, then WAIT
    // (replication is one ordered stream, so the sessions before it are there too).
    let mut raw = redis_support::raw(master.port).await;
    let () = redis::cmd("SET")
        .arg("wxgate-test:marker")
        .arg("1")
        .query_async(&mut raw)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica has the sessions");
    drop(raw);

    // A stream of authenticated requests across the failover.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(Instant, StatusCode)>::new()));
    let mut tasks = Vec::new();
    for cookie in &cookies {
        let (stop, seen, url, cookie) =
            (stop.clone(), seen.clone(), env.gw.url("/x"), cookie.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = api_get(url.clone(), &cookie).await;
                seen.lock().unwrap().push((Instant::now(), r.status));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    drop(master); // SIGKILL
    let t = Instant::now();
    while sentinel_master_port(sentinels[0].port).await != Some(replica.port) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the sentinels did not promote the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted = killed.elapsed();
    // Requests keep flowing a while on the new master.
    let t = Instant::now();
    loop {
        let ok_since = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, s)| *at > killed && *s == StatusCode::OK)
            .count();
        if ok_since >= 40 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no service after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for (at, s) in &seen {
        assert!(
            *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE,
            "{s} at {:?} from the kill: a session was lost or passed",
            at.checked_duration_since(killed)
        );
    }
    assert!(
        seen.iter()
            .all(|(at, s)| *s == StatusCode::OK || *at > killed),
        "failures before the kill"
    );
    let failures: Vec<Duration> = seen
        .iter()
        .filter(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(at, _)| at.duration_since(killed))
        .collect();
    let window = failures.iter().max().copied().unwrap_or_default();
    let after_window = seen
        .iter()
        .filter(|(at, s)| at.duration_since(killed) > window && *s == StatusCode::OK)
        .count();
    println!(
        "failover: replica promoted {promoted:?} after the kill; {} requests failed (503), \
         the last {window:?} after the kill; {after_window} served after the window",
        failures.len()
    );
    assert!(
        window <= promoted + Duration::from_secs(2),
        "failures went on {window:?} after the kill, the promotion took {promoted:?}"
    );
    assert!(
        after_window >= 20,
        "sessions written before the failover work after it"
    );

    // A new login works on the new master, and the old sessions still do.
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/y", "alice").await, "/y");
    assert_eq!(
        api_get(env.gw.url("/y"), &b.cookie_header()).await.status,
        StatusCode::OK
    );
    for c in &cookies {
        assert_eq!(api_get(env.gw.url("/x"), c).await.status, StatusCode::OK);
    }
    let info: String = cmd(replica.port, &["INFO", "replication"]).await.unwrap();
    assert!(info.contains("role:master"), "{info}");
    env.gw.stop().await;
}
