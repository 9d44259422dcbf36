//! Issue 14.3: `session.revalidate_secs`: browser sessions keep WeChat's grant server-side and
//! are re-checked (`sns/auth`, `refresh_token` once expired) at most that often, one check per
//! session at a time, off the request path; a revoked grant ends the session, WeChat being
//! unreachable does not.

mod common;
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};

const EXTRA: &str = "revalidate_secs = 1\n";

async fn calls(env: &Env, name: &str) -> u64 {
    env.mock_calls().await[name].as_u64().unwrap()
}

/// A browser logged in through the website (QR) login as alice.
async fn logged_in(env: &Env) -> Browser {
    let mut b = Browser::pc();
    assert_eq!(login(env, &mut b, "/app", "alice").await, "/app");
    assert_eq!(fetch(env, &mut b, "/app").await.status, StatusCode::OK);
    b
}

/// Requests every 100 ms until the session is gone (a redirect to login) or `limit` passes;
/// returns how long it took.
async fn until_logged_out(gw: &Gateway, b: &mut Browser, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let r = b.nav(&gw.url("/app")).await;
        if r.status == StatusCode::FOUND {
            assert!(
                r.location().starts_with("/_wxgate/login"),
                "{}",
                r.location()
            );
            return Some(start.elapsed());
        }
        assert_eq!(r.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn revoked_grant_ends_the_session_within_the_interval() {
    let env = env(EXTRA).await;
    let mut b = logged_in(&env).await;
    let cookie = b.cookie("_wxgate").unwrap();
    // Still granted: checks pass and the session stays.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        until_logged_out(&env.gw, &mut b, Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert!(calls(&env, "auth").await >= 1, "sns/auth was asked");

    let revoked = env.mock_post("/mock/revoke?user=alice").await;
    assert!(revoked["access_tokens"].as_u64().unwrap() >= 1, "{revoked}");
    let took = until_logged_out(&env.gw, &mut b, Duration::from_secs(4))
        .await
        .expect("the revoked session ends");
    assert!(
        took <= Duration::from_secs(2),
        "revalidate_secs + 1 s; took {took:?}"
    );
    // Gone from the store: the copied cookie no longer works either.
    let mut copy = Browser::pc();
    copy.cookies = vec![("_wxgate".into(), cookie)];
    assert_eq!(
        fetch(&env, &mut copy, "/app").await.status,
        StatusCode::FOUND
    );
    let m = env.gw.metrics().await;
    assert!(
        m.contains("wxgate_revalidations_total{outcome=\"revoked\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("wxgate_revalidations_total{outcome=\"valid\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn wechat_unreachable_keeps_the_session() {
    let env = env(EXTRA).await;
    let mut b = logged_in(&env).await;
    // Every WeChat API call fails from now on (HTTP 500 pages).
    env.mock_post("/mock/fail?mode=status500&count=1000").await;
    let before = calls(&env, "auth").await;
    assert!(
        until_logged_out(&env.gw, &mut b, Duration::from_millis(3500))
            .await
            .is_none()
    );
    assert!(calls(&env, "auth").await > before, "checks were tried");
    let m = env.gw.metrics().await;
    assert!(
        m.contains("wxgate_revalidations_total{outcome=\"unknown\"}"),
        "{m}"
    );
    assert!(!m.contains("outcome=\"revoked\""), "{m}");
}

#[tokio::test]
async fn wechat_gone_keeps_the_session() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let gw = start_gateway(&full_config(up.addr, &mock.url(), EXTRA)).await;
    let env = Env { up, mock, gw };
    let mut b = logged_in(&env).await;
    // The mock is gone: connections refused.
    let Env { up: _up, mock, gw } = env;
    drop(mock);
    assert!(until_logged_out(&gw, &mut b, Duration::from_millis(2500))
        .await
        .is_none());
    let m = gw.metrics().await;
    assert!(
        m.contains("wxgate_revalidations_total{outcome=\"unknown\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn one_check_at_a_time_and_off_the_request_path() {
    // WeChat calls may take 5 s here, so that a check outlasts revalidate_secs.
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml =
        full_config(up.addr, &mock.url(), EXTRA).replace("timeout_ms = 1000", "timeout_ms = 5000");
    let gw = start_gateway(&toml).await;
    let env = Env { up, mock, gw };
    let b = logged_in(&env).await;
    // The next sns/auth takes 2.5 s: longer than revalidate_secs.
    env.mock_post("/mock/fail?mode=slow&delay_ms=2500&count=1")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the session is due
    let before = calls(&env, "auth").await;
    // 10 concurrent requests, then one every 100 ms for 2 s, while that check runs: each is
    // answered at once, and no second check starts although the session is due again.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (mut b, url) = (b.clone(), env.gw.url("/app"));
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            (b.nav(&url).await.status, start.elapsed())
        }));
    }
    for t in tasks {
        let (status, took) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            took < Duration::from_millis(800),
            "waited for the check: {took:?}"
        );
    }
    let mut b2 = b.clone();
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(b2.nav(&env.gw.url("/app")).await.status, StatusCode::OK);
        assert!(start.elapsed() < Duration::from_millis(800));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls(&env, "auth").await - before, 1, "one check at a time");
    // Once it finished, the next due request starts the next one.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(b2.nav(&env.gw.url("/app")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&env, "auth").await - before, 2);
}

#[tokio::test]
async fn expired_access_token_is_refreshed() {
    let env = env(EXTRA).await;
    let mut b = logged_in(&env).await;
    let expired = env.mock_post("/mock/expire?user=alice").await;
    assert!(expired["access_tokens"].as_u64().unwrap() >= 1);
    assert!(
        until_logged_out(&env.gw, &mut b, Duration::from_millis(2500))
            .await
            .is_none()
    );
    assert!(
        calls(&env, "refresh_token").await >= 1,
        "the grant was refreshed"
    );
    let m = env.gw.metrics().await;
    assert!(
        m.contains("wxgate_revalidations_total{outcome=\"renewed\"}"),
        "{m}"
    );
    // The renewed token is used from then on, and a revocation still ends the session.
    env.mock_post("/mock/revoke?user=alice").await;
    assert!(until_logged_out(&env.gw, &mut b, Duration::from_secs(3))
        .await
        .is_some());
}

#[tokio::test]
async fn tokens_never_leave_the_gateway() {
    let env = env(EXTRA).await;
    let mut b = logged_in(&env).await;
    let r = fetch(&env, &mut b, "/app").await;
    for (name, value) in r.echoed_headers() {
        assert!(!name.contains("token"), "{name}");
        // The mock's tokens are 64 alphanumerics; no such value reaches the upstream.
        assert!(
            !(value.len() == 64 && value.bytes().all(|c| c.is_ascii_alphanumeric())),
            "{name}: {value}"
        );
    }
    let cookie = b.cookie("_wxgate").unwrap();
    let r = send(
        &client(),
        get(&env.gw.url("/_wxgate/userinfo"))
            .header("cookie", format!("_wxgate={cookie}"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    for k in v.as_object().unwrap().keys() {
        assert!(!k.contains("token"), "{k} in {v}");
    }
}

#[tokio::test]
async fn off_by_default_no_checks() {
    let env = env("").await;
    let mut b = logged_in(&env).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.mock_post("/mock/revoke?user=alice").await;
    assert!(
        until_logged_out(&env.gw, &mut b, Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert_eq!(calls(&env, "auth").await, 0);
}

#[tokio::test]
async fn app_sessions_are_not_rechecked() {
    // JSON logins keep no grant: nothing to re-check, no WeChat call per request.
    let env = env(EXTRA).await;
    let code = env
        .mock_post(&format!(
            "/mock/code?appid={}&user=alice",
            fixtures::MOBILE_APPID
        ))
        .await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(body(format!("{{\"code\":\"{code}\"}}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let r = send(
            &client(),
            get(&env.gw.url("/api"))
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(calls(&env, "auth").await, 0);
}

#[tokio::test]
async fn forward_auth_sees_the_revocation() {
    // nginx auth_request / forwardAuth: /auth is where the session is checked.
    let env = env(EXTRA).await;
    let b = logged_in(&env).await;
    let cookie = format!("_wxgate={}", b.cookie("_wxgate").unwrap());
    let auth = || async {
        send(
            &client(),
            get(&env.gw.url("/_wxgate/auth"))
                .header("cookie", &cookie)
                .body(empty())
                .unwrap(),
        )
        .await
        .status
    };
    assert_eq!(auth().await, StatusCode::ACCEPTED);
    env.mock_post("/mock/revoke?user=alice").await;
    let start = Instant::now();
    loop {
        match auth().await {
            StatusCode::ACCEPTED if start.elapsed() < Duration::from_secs(3) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            StatusCode::UNAUTHORIZED => break,
            other => panic!("{other} after {:?}", start.elapsed()),
        }
    }
    assert!(
        start.elapsed() <= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn redis_sessions_keep_the_grant_and_revocation_reaches_every_instance() {
    let redis = redis_support::start_redis().await;
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = full_config(
        up.addr,
        &mock.url(),
        &format!(
            "{EXTRA}store = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"\n",
            redis.port
        ),
    );
    let a = start_gateway(&toml).await;
    let other = start_gateway(&toml).await;
    let env = Env { up, mock, gw: a };
    let b = logged_in(&env).await;
    // Instance B read the record (with its grant) from Redis and checks it too.
    let mut on_b = b.clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = calls(&env, "auth").await;
    assert_eq!(on_b.nav(&other.url("/app")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls(&env, "auth").await,
        before + 1,
        "B re-checked the grant from Redis"
    );

    env.mock_post("/mock/revoke?user=alice").await;
    let took = until_logged_out(&other, &mut on_b, Duration::from_secs(4))
        .await
        .expect("B ends the revoked session");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    // Removed from Redis: A refuses it too, within a second.
    let mut on_a = b.clone();
    let took = until_logged_out(&env.gw, &mut on_a, Duration::from_secs(2))
        .await
        .expect("A no longer knows the session");
    assert!(took <= Duration::from_millis(1100), "{took:?}");
}
