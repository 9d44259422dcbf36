//! Gateways on the Redis session store, with the real `redis-server` (see `redis_support`).
//! The store's own contract is checked in `session_stores.rs`.

mod common;
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use redis_support::{start_redis, start_redis_on, Redis};

fn redis_extra(port: u16, more: &str) -> String {
    format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\n{more}")
}

/// Two gateways sharing one Redis and one mock.
async fn two_gateways(redis: &Redis, session_more: &str) -> (Env, Gateway) {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = full_config(up.addr, &mock.url(), "").replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!(
            "cookie_secret = \"{SECRET}\"\n{}",
            redis_extra(redis.port, session_more)
        ),
    );
    let a = start_gateway(&toml).await;
    let b = start_gateway(&toml).await;
    (Env { up, mock, gw: a }, b)
}

#[tokio::test]
async fn sessions_shared_and_revoked_across_instances() {
    let redis = start_redis().await;
    let (env, other) = two_gateways(&redis, "").await;
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/x", "alice").await, "/x");
    let cookie = b.cookie_header();
    let r = api_get(other.url("/x"), &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "instance B knows the session");
    assert_eq!(
        r.echoed_header("x-wechat-unionid").as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    // Logout on B revokes on A.
    let r = api_get(other.url("/_wxgate/logout"), &cookie).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api_get(env.gw.url("/x"), &cookie).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Bearer sessions too.
    let m = send(
        &client(),
        Request::post(format!(
            "{}/mock/code?appid={}&user=bob",
            env.mock.url(),
            fixtures::MINI_APPID
        ))
        .body(empty())
        .unwrap(),
    )
    .await
    .json();
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/miniprogram/login"))
            .header("content-type", "application/json")
            .body(common::body(serde_json::json!({"code": m["code"], "encryptedData": m["encryptedData"], "iv": m["iv"]}).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = send(
        &client(),
        Request::get(other.url("/_wxgate/auth"))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.headers["x-wechat-source"], "mini_program");
}

#[tokio::test]
async fn login_state_consumed_once_across_instances() {
    let redis = start_redis().await;
    let (env, other) = two_gateways(&redis, "").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/t", "alice").await;
    // The callback lands on B (load balancer), with the login cookie from A: works.
    let cb_b = cb.replace(
        &env.gw.addr.port().to_string(),
        &other.addr.port().to_string(),
    );
    let r = b.nav(&cb_b).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/t");
    let first = b.cookie("_wxgate").unwrap();
    // The same state again on A: a repeat from the same browser just redirects, no new session.
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/t");
    assert!(r.cookie_value("_wxgate").is_none());
    assert_eq!(b.cookie("_wxgate").unwrap(), first);
}

#[tokio::test]
async fn idle_and_absolute_expiry() {
    // Wide margins (seconds against Redis' millisecond expiry): this runs next to the whole
    // suite, Chromium included, on two cores.
    let redis = start_redis().await;
    let (env, _) = two_gateways(&redis, "idle_secs = 2\nttl_secs = 4\n").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let logged_in = std::time::Instant::now();
    let cookie = b.cookie_header();
    // Used every 0.4 s, it lives past the idle timeout (2 s) ... (the lifetime is counted in
    // whole seconds from login: the last use here is well inside it)
    while logged_in.elapsed() < Duration::from_millis(2200) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            api_get(env.gw.url("/"), &cookie).await.status,
            StatusCode::OK,
            "{:?} after login",
            logged_in.elapsed()
        );
    }
    // ... but not past the absolute lifetime (4 s), though used a moment ago.
    tokio::time::sleep(Duration::from_millis(4300).saturating_sub(logged_in.elapsed())).await;
    assert_eq!(
        api_get(env.gw.url("/"), &cookie).await.status,
        StatusCode::UNAUTHORIZED
    );

    let mut b = Browser::pc();
    login(&env, &mut b, "/", "bob").await;
    let cookie = b.cookie_header();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(
        api_get(env.gw.url("/"), &cookie).await.status,
        StatusCode::UNAUTHORIZED,
        "idle too long"
    );
}

#[tokio::test]
async fn redis_down_means_not_ready_and_503_then_recovers() {
    let redis = start_redis().await;
    let port = redis.port;
    let (env, other) = two_gateways(&redis, "").await;
    let mut b = Browser::pc();
    let logged_in = Instant::now();
    login(&env, &mut b, "/", "alice").await;
    let cookie = b.cookie_header();
    let ready = || async {
        send(
            &client(),
            Request::get(env.gw.url("/_wxgate/readyz"))
                .body(empty())
                .unwrap(),
        )
        .await
        .status
    };
    assert_eq!(ready().await, StatusCode::OK);
    drop(redis);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
    // Instance B never read the session: not in its cache, so 503 (never a pass).
    let r = api_get(other.url("/"), &cookie).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "store_unavailable");
    // Instance A wrote it, and serves it from its cache for at most cache_ms (5 s) after that.
    let r = api_get(env.gw.url("/"), &cookie).await;
    if logged_in.elapsed() < Duration::from_millis(4500) {
        assert_eq!(r.status, StatusCode::OK, "cached on A");
    }
    tokio::time::sleep(Duration::from_millis(5500).saturating_sub(logged_in.elapsed())).await;
    let r = api_get(env.gw.url("/"), &cookie).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no longer than cache_ms"
    );
    let r = send(
        &client(),
        Request::get(env.gw.url("/_wxgate/healthz"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "alive while not ready");
    // Redis comes back (empty: sessions are gone, the gateway is ready again).
    let _redis = start_redis_on(port).await;
    let t = Instant::now();
    while ready().await != StatusCode::OK {
        assert!(t.elapsed() < Duration::from_secs(15), "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        api_get(env.gw.url("/"), &cookie).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unreachable_redis_at_start_is_a_clear_error() {
    let dead = closed_port().await;
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "").replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!(
            "cookie_secret = \"{SECRET}\"\n{}",
            redis_extra(dead.port(), "")
        ),
    );
    let settings = wxgate::config::Config::from_toml(&toml).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = match wxgate::server::serve_on(l, settings).await {
        Ok(_) => panic!("started without redis"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("session store"), "{err}");
}
