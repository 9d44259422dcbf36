//! Redis going away under a running gateway (`session.store = "redis"`), over real processes:
//! the `wxgate` binary (its log read from stderr, its survival checked) and `redis-server`,
//! killed and started again on the same port.
//!
//! While Redis is down every request that needs a session is answered 503 (JSON
//! `store_unavailable` or a page), never 200 and never a redirect to login; `/readyz` is 503;
//! the outage is logged once, not once per request. When Redis is back the gateway serves again
//! by itself within 2 s.
//!
//! The gateway runs without the session cache (`cache_ms = 0`), so every request needs Redis;
//! with the cache, a session read in the last `cache_ms` is still served during an outage (that
//! and the 503 for every other session: `session_stores.rs`, `redis_outage_serves_only_cached_sessions`).

mod common;
mod redis_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use redis_support::{free_port, start_redis_on};

/// The `wxgate run` child, its stderr collected; killed on drop.
struct Child {
    child: std::process::Child,
    log: Arc<Mutex<String>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_run(config: &std::path::Path) -> Child {
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("wxgate listening") {
                let _ = tx.send(());
            }
            let mut g = l2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("wxgate did not start");
    Child { child, log }
}

async fn page_get(url: String, cookie: &str) -> Reply {
    send(
        &client(),
        Request::get(url)
            .header("cookie", cookie)
            .header("user-agent", PC_UA)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("sec-fetch-mode", "navigate")
            .body(empty())
            .unwrap(),
    )
    .await
}

async fn readyz(gw: &Gateway) -> StatusCode {
    send(
        &client(),
        get(&gw.url("/_wxgate/readyz")).body(empty()).unwrap(),
    )
    .await
    .status
}

/// One answer of the request stream: whether its cookie was a real session, JSON or page, the
/// status, the error code (JSON) and whether it cleared the session cookie.
#[derive(Debug)]
struct Seen {
    valid: bool,
    json: bool,
    status: StatusCode,
    code: Option<String>,
    clears_cookie: bool,
    /// When it was sent, from the test's start; its answer was in `took` later.
    started: Duration,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_and_recovers() {
    let redis_port = free_port().await;
    let redis = start_redis_on(redis_port).await;

    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let port = free_port().await;
    let toml = full_config(up.addr, &mock.url(), "")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(
            "public_url = \"http://127.0.0.1\"",
            &format!("public_url = \"http://127.0.0.1:{port}\""),
        )
        .replace(
            &format!("cookie_secret = \"{SECRET}\""),
            &format!(
                "cookie_secret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis_port}/0\"\ncache_ms = 0\n"
            ),
        );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut child = spawn_run(&cfg);
    let env = Env {
        up,
        mock,
        gw: Gateway {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            running: None,
        },
    };

    // Several sessions.
    let mut cookies = vec![];
    for user in ["alice", "bob", "alice"] {
        let mut b = Browser::pc();
        assert_eq!(login(&env, &mut b, "/x", user).await, "/x");
        cookies.push(b.cookie_header());
    }
    let bogus = "_wxgate=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    for c in &cookies {
        assert_eq!(api_get(env.gw.url("/x"), c).await.status, StatusCode::OK);
    }
    assert_eq!(
        api_get(env.gw.url("/x"), &bogus).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(readyz(&env.gw).await, StatusCode::OK);

    // A stream of requests (real sessions and a bogus one, JSON and pages) across the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let epoch = Instant::now();
    let mut tasks = vec![];
    for w in 0..4 {
        let (stop, seen, gw_url) = (stop.clone(), seen.clone(), env.gw.url("/x"));
        let cookies = cookies.clone();
        let bogus = bogus.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let valid = i % 4 != 3;
                let cookie = if valid {
                    cookies[i % cookies.len()].clone()
                } else {
                    bogus.clone()
                };
                let json = i % 2 == 0;
                let t = Instant::now();
                let r = if json {
                    api_get(gw_url.clone(), &cookie).await
                } else {
                    page_get(gw_url.clone(), &cookie).await
                };
                let code = if json && r.status != StatusCode::OK {
                    serde_json::from_slice::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string))
                } else {
                    None
                };
                let clears_cookie = r.set_cookies().iter().any(|c| {
                    c.starts_with("_wxgate=") && c.to_ascii_lowercase().contains("max-age=0")
                });
                seen.lock().unwrap().push(Seen {
                    valid,
                    json,
                    status: r.status,
                    code,
                    clears_cookie,
                    started: t - epoch,
                    took: t.elapsed(),
                });
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(redis); // SIGKILL: the connection drops, new connections are refused
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readyz(&env.gw).await, StatusCode::SERVICE_UNAVAILABLE);
    // A login cannot start either (its state lives in Redis): an answer, not a hang.
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/miniprogram/login"))
            .header("content-type", "application/json")
            .body(body(r#"{"code":"x"}"#))
            .unwrap(),
    )
    .await;
    assert_ne!(r.status, StatusCode::OK);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(child.child.try_wait().unwrap().is_none(), "gateway crashed");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.iter().filter(|s| s.status == StatusCode::OK).count() > 0,
        "no request before the outage"
    );
    assert!(
        seen.iter()
            .filter(|s| s.valid && s.status == StatusCode::SERVICE_UNAVAILABLE)
            .count()
            > 20,
        "too few requests during the outage: {seen:?}"
    );
    for s in &seen {
        assert!(!s.clears_cookie, "an outage logged someone out: {s:?}");
        assert!(s.took < Duration::from_millis(2500), "slow answer: {s:?}");
        if s.valid {
            assert!(
                s.status == StatusCode::OK || s.status == StatusCode::SERVICE_UNAVAILABLE,
                "{s:?}"
            );
        } else {
            assert!(
                [
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::UNAUTHORIZED,
                    StatusCode::FOUND
                ]
                .contains(&s.status),
                "a bogus cookie got {s:?}"
            );
        }
        if s.status == StatusCode::SERVICE_UNAVAILABLE && s.json {
            assert_eq!(s.code.as_deref(), Some("store_unavailable"), "{s:?}");
        }
    }
    // No 200 for a request sent after the first 503 was in (the outage does not come and go).
    // A request that read its session just before the kill may still finish with 200 after
    // another one's 503: the workers' requests overlap, so judge by when each was sent.
    let first_503 = seen
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .map(|s| s.started + s.took)
        .min()
        .unwrap();
    assert!(
        seen.iter()
            .filter(|s| s.started > first_503)
            .all(|s| s.status != StatusCode::OK),
        "200 during the outage: {seen:?}"
    );
    // A browser gets a page, not a redirect.
    let r = page_get(env.gw.url("/x"), &cookies[0]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // Redis back on the same port, empty (the sessions are gone): the gateway serves again by
    // itself. Measured from the moment Redis accepts connections.
    let redis = start_redis_on(redis_port).await;
    let back = Instant::now();
    while readyz(&env.gw).await != StatusCode::OK {
        assert!(back.elapsed() < Duration::from_secs(2), "/readyz still 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = back.elapsed();
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/x", "bob").await, "/x");
    let r = api_get(env.gw.url("/x"), &b.cookie_header()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let served_after = back.elapsed();
    eprintln!(
        "recovery: /readyz 200 after {ready_after:?}, login + request after {served_after:?}"
    );
    assert!(served_after < Duration::from_secs(2), "{served_after:?}");
    // The old sessions died with Redis' memory: no 200 for them, an ordinary 401.
    assert_eq!(
        api_get(env.gw.url("/x"), &cookies[0]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // /metrics counts the failures.
    let m = env.gw.metrics().await;
    let line = m
        .lines()
        .find(|l| l.starts_with("wxgate_store_errors_total "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no store error counter: {m}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 20, "{line}");

    assert!(child.child.try_wait().unwrap().is_none(), "gateway crashed");
    // One line for the outage and one for the recovery, not one per failed request.
    let log = child.log.lock().unwrap().clone();
    let down = log
        .lines()
        .filter(|l| l.contains("session store unavailable"))
        .count();
    let up_again = log
        .lines()
        .filter(|l| l.contains("session store available again"))
        .count();
    assert_eq!(down, 1, "{log}");
    assert_eq!(up_again, 1, "{log}");
    drop(redis);
}
