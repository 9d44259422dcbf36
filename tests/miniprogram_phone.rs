//! `POST /_wxgate/miniprogram/phone` over real sockets against the mock WeChat: the phone
//! number, the cached `stable_token` (renewed early, once for concurrent callers, once more
//! when stale), WeChat's errors, and the phone joining the session and the link call.

mod common;
mod link_app;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use link_app::*;
use serde_json::{json, Value};

async fn calls(env: &Env) -> Value {
    env.mock_get("/mock/phone/calls").await
}

async fn phone_code(env: &Env, user: &str) -> String {
    env.mock_post(&format!("/mock/phone/code?user={user}"))
        .await["code"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn mini_token(env: &Env, user: &str) -> String {
    let r = mini_login(env, user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

async fn post_phone(env: &Env, token: &str, body: &Value) -> common::Reply {
    send(
        &client(),
        Request::post(env.gw.url("/_wxgate/miniprogram/phone"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(common::body(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn phone(env: &Env, token: &str, user: &str) -> common::Reply {
    let code = phone_code(env, user).await;
    post_phone(env, token, &json!({ "code": code })).await
}

#[tokio::test]
async fn phone_number_joins_the_session() {
    let env = env("").await;
    let token = mini_token(&env, "alice").await;
    let r = phone(&env, &token, "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"phone": "13800000001", "pure_phone": "13800000001", "country_code": "86"})
    );
    let up = with_bearer(&env, "GET", "/", &token).await;
    assert_eq!(
        up.echoed_header("x-wechat-phone").as_deref(),
        Some("+8613800000001")
    );
    // The token is cached: a second number costs no second stable_token call.
    let r = phone(&env, &token, "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    let c = calls(&env).await;
    assert_eq!(
        (c["stable_token"].as_u64(), c["getuserphonenumber"].as_u64()),
        (Some(1), Some(2))
    );
    // Both POSTs are counted in the WeChat API metrics like the GETs.
    let m = env.gw.metrics().await;
    for want in [
        "wxgate_wechat_api_seconds_count{endpoint=\"cgi-bin/stable_token\"} 1",
        "wxgate_wechat_api_seconds_count{endpoint=\"wxa/business/getuserphonenumber\"} 2",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    // A code used once is the client's 400.
    let code = phone_code(&env, "alice").await;
    assert_eq!(
        post_phone(&env, &token, &json!({"code": code}))
            .await
            .status,
        StatusCode::OK
    );
    let again = post_phone(&env, &token, &json!({"code": code})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    assert_eq!(again.json()["error"], "invalid_code");
    let unknown = post_phone(&env, &token, &json!({"code": "nope"})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stale_token_is_renewed_once_and_the_call_retried() {
    let env = env("").await;
    let token = mini_token(&env, "bob").await;
    assert_eq!(phone(&env, &token, "bob").await.status, StatusCode::OK);
    env.mock_post("/mock/phone/stale").await;
    let r = phone(&env, &token, "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["pure_phone"], "13800000002");
    let c = calls(&env).await;
    // One renewal (no forced refresh needed: WeChat gave a new token), one retry.
    assert_eq!(c["stable_token"], 2);
    assert_eq!(c["force_refresh"], 0);
    assert_eq!(c["getuserphonenumber"], 3);
    // And the renewed token stays cached.
    assert_eq!(phone(&env, &token, "bob").await.status, StatusCode::OK);
    assert_eq!(calls(&env).await["stable_token"], 2);
}

#[tokio::test]
async fn quota_used_up_is_a_clear_json_error() {
    let env = env("").await;
    let token = mini_token(&env, "alice").await;
    env.mock_post("/mock/phone/quota?count=1").await;
    let r = phone(&env, &token, "alice").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "phone_quota_exhausted");
    assert!(j["message"].as_str().unwrap().contains("quota"));
    // No phone in the session.
    let up = with_bearer(&env, "GET", "/", &token).await;
    assert_eq!(up.echoed_header("x-wechat-phone"), None);
    assert_eq!(phone(&env, &token, "alice").await.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_refresh() {
    let env = env("").await;
    env.mock_post("/mock/phone/token?delay_ms=300").await;
    let token = mini_token(&env, "carol").await;
    let mut codes = vec![];
    for _ in 0..8 {
        codes.push(phone_code(&env, "carol").await);
    }
    let bodies: Vec<Value> = codes.iter().map(|c| json!({ "code": c })).collect();
    let all =
        futures_util::future::join_all(bodies.iter().map(|b| post_phone(&env, &token, b))).await;
    for r in &all {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(calls(&env).await["stable_token"], 1);
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    let env = env("").await;
    // Tokens living 2 s are renewed after 1 s (half their life; 5 minutes early at 7200 s).
    env.mock_post("/mock/phone/token?ttl_secs=2").await;
    let token = mini_token(&env, "alice").await;
    assert_eq!(phone(&env, &token, "alice").await.status, StatusCode::OK);
    assert_eq!(phone(&env, &token, "alice").await.status, StatusCode::OK);
    assert_eq!(calls(&env).await["stable_token"], 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(phone(&env, &token, "alice").await.status, StatusCode::OK);
    let c = calls(&env).await;
    assert_eq!(c["stable_token"], 2);
    // Renewed in time: WeChat never had to refuse a token.
    assert_eq!(c["getuserphonenumber"], 3);
}

#[tokio::test]
async fn only_mini_program_sessions_and_good_bodies() {
    let env = env("").await;
    let code = phone_code(&env, "alice").await;
    // No session: 401 JSON.
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/miniprogram/phone"))
            .header("content-type", "application/json")
            .body(common::body(json!({ "code": code }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A mobile-app session: no phone numbers there.
    let app = app_login(&env, "alice").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_phone(&env, &app, &json!({ "code": code })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("mini-program"));
    let token = mini_token(&env, "alice").await;
    for body in [
        json!({}),
        json!({"code": 5}),
        json!({"code": ""}),
        json!({"code": "c".repeat(300)}),
    ] {
        let r = post_phone(&env, &token, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json()["error"], "invalid_request");
    }
    // GET is not the method; the code is still good after all that.
    assert_eq!(
        with_bearer(&env, "GET", "/_wxgate/miniprogram/phone", &token)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        post_phone(&env, &token, &json!({ "code": code }))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(calls(&env).await["getuserphonenumber"], 1);
}

#[tokio::test]
async fn phone_joins_the_link_call() {
    // The app knows alice's phone (user p-1); any other phone must be bound first.
    let app = LinkApp::start(|j| match j["phone"].as_str() {
        Some("+8613800000001") => link_app::Reply::UserId("p-1".into()),
        Some(_) => link_app::Reply::Bind("/bind-phone".into()),
        None => link_app::Reply::UserId("wx-only".into()),
    })
    .await;
    let env = env(&app.toml(2000)).await;
    let token = mini_token(&env, "alice").await;
    assert_eq!(
        with_bearer(&env, "GET", "/", &token)
            .await
            .echoed_header("x-wechat-userid")
            .as_deref(),
        Some("wx-only")
    );
    let r = phone(&env, &token, "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["user_id"], "p-1");
    let last = app.calls().pop().unwrap();
    assert!(last.signature_ok);
    assert_eq!(last.json["phone"], "+8613800000001");
    assert_eq!(last.json["source"], "mini_program");
    let up = with_bearer(&env, "GET", "/", &token).await;
    assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("p-1"));
    assert_eq!(
        up.echoed_header("x-wechat-phone").as_deref(),
        Some("+8613800000001")
    );

    // bob's phone is unknown to the app: bind first, then a new token with both.
    let bob = mini_token(&env, "bob").await;
    let r = phone(&env, &bob, "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["bind_required"], true);
    assert_eq!(j["pure_phone"], "13800000002");
    let done = complete_json(&env, j["ticket"].as_str().unwrap(), "b-2").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let up = with_bearer(&env, "GET", "/", done.json()["token"].as_str().unwrap()).await;
    assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("b-2"));
    assert_eq!(
        up.echoed_header("x-wechat-phone").as_deref(),
        Some("+8613800000002")
    );

    // The app refuses once it sees the phone: the session ends.
    app.set(|j| {
        if j["phone"].is_null() {
            link_app::Reply::UserId("c".into())
        } else {
            link_app::Reply::Refuse("该手机号已停用".into())
        }
    });
    let carol = mini_token(&env, "carol").await;
    let r = phone(&env, &carol, "carol").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["message"], "该手机号已停用");
    assert_eq!(
        with_bearer(&env, "GET", "/", &carol).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The app does not answer: 503, the session stays as it was, without the phone.
    app.set(|j| {
        if j["phone"].is_null() {
            link_app::Reply::UserId("d".into())
        } else {
            link_app::Reply::Sleep(Duration::from_secs(5))
        }
    });
    let d = mini_token(&env, "carol").await;
    let r = phone(&env, &d, "carol").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let up = with_bearer(&env, "GET", "/", &d).await;
    assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("d"));
    assert_eq!(up.echoed_header("x-wechat-phone"), None);
}

/// A logout while the number is being looked up (two WeChat calls, seconds when WeChat is slow)
/// stays a logout: the number is not written back onto the ended session, which would bring
/// it back to life.
#[tokio::test]
async fn a_logout_during_the_lookup_stays_a_logout() {
    let env = slow_env(Duration::from_millis(400)).await;
    let token = mini_token(&env, "alice").await;
    let body = json!({ "code": phone_code(&env, "alice").await });
    let (r, ()) = tokio::join!(post_phone(&env, &token, &body), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let out = with_bearer(&env, "POST", "/_wxgate/logout", &token).await;
        assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    });
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let up = with_bearer(&env, "GET", "/", &token).await;
    assert_eq!(up.status, StatusCode::UNAUTHORIZED, "the session came back");
}
