//! Account linking across instances: two gateways on one real `redis-server` (see
//! `redis_support`). A ticket issued by one instance resumes on the other (the return URL
//! travels in Redis), and only once, even when two instances race for it.

mod common;
mod link_app;
mod redis_support;

use common::*;
use http::StatusCode;
use link_app::*;
use redis_support::start_redis;
use serde_json::json;

/// Two gateways sharing one Redis, one mock and one link app.
async fn two_gateways(redis: &redis_support::Redis, app: &LinkApp) -> (Env, Gateway) {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = full_config(up.addr, &mock.url(), &app.toml(2000)).replace(
        &format!("cookie_secret = \"{SECRET}\""),
        &format!(
            "cookie_secret = \"{SECRET}\"\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"",
            redis.port
        ),
    );
    let a = start_gateway(&toml).await;
    let b = start_gateway(&toml).await;
    (Env { up, mock, gw: a }, b)
}

#[tokio::test]
async fn tickets_resume_on_any_instance_and_only_once() {
    let redis = start_redis().await;
    let app = LinkApp::always(link_app::Reply::Bind("/bind".into())).await;
    let (env, other) = two_gateways(&redis, &app).await;

    // A browser's ticket from instance A resumes on B, back to the original page.
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/deep/page?x=1", "alice").await;
    let ticket = ticket_of(&b.nav(&cb).await.location());
    let t = now();
    let path = complete_path(&ticket, "42", t, &sign_resume(&ticket, "42", t));
    let r = b.nav(&other.url(&path)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/deep/page?x=1");
    assert!(b.cookie("_wxgate").is_some());
    // ... and not again on A.
    let mut c = Browser::pc();
    assert_eq!(
        c.nav(&env.gw.url(&path)).await.status,
        StatusCode::BAD_REQUEST
    );

    // An app's ticket, resumed on both instances at once: exactly one token.
    for _ in 0..5 {
        let ticket = app_login(&env, "bob").await.json()["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        let t = now();
        let body =
            json!({"ticket": ticket, "user_id": "7", "t": t, "sig": sign_resume(&ticket, "7", t)})
                .to_string();
        let post = |url: String| {
            let body = body.clone();
            async move {
                send(
                    &client(),
                    http::Request::post(url)
                        .header("content-type", "application/json")
                        .body(common::body(body))
                        .unwrap(),
                )
                .await
            }
        };
        let (x, y) = tokio::join!(
            post(env.gw.url("/_wxgate/link/complete")),
            post(other.url("/_wxgate/link/complete"))
        );
        let mut statuses = [x.status.as_u16(), y.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 400], "{} / {}", x.text(), y.text());
        let winner = if x.status == StatusCode::OK { x } else { y };
        let token = winner.json()["token"].as_str().unwrap().to_string();
        for gw in [&env.gw, &other] {
            let up = send(
                &client(),
                get(&gw.url("/"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("7"));
        }
    }
    other.stop().await;
}
