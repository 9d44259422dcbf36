//! The seed's phone-binding test plan ("微信登录判断是否绑定手机号", 18 cases; the list and its
//! gloss are in the README, "Linking WeChat users to your accounts"), one test per case that
//! concerns the gateway, named after the case. The site is a small in-memory app behind
//! `[link]`: WeChat users bound to its accounts by unionid, accounts found by phone.
//!
//! Cases that do not concern the gateway, and why:
//! - 1, 2, 3, 9 — a user signed in with a phone number or a password binds a WeChat account:
//!   the site's own login and its own "bind WeChat" screen; no gateway login happens.
//! - 7 — a bound WeChat user binds a different, unbound phone: the site's rule on its own
//!   records (the gateway passes whatever user id the site resumes with, covered by 5).
//! - 10 — the site's database columns (`wechat_name`, `wechat_avatar`, `wechat_open_id`,
//!   `is_bind_avatar`): the gateway's part, handing the site those values, is case 5.
//! - 13, 14 — WeChat not installed or removed on the phone: the app's own login screen decides
//!   whether to show the WeChat button; no request reaches the gateway.

mod common;
mod link_app;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use link_app::*;
use serde_json::{json, Value};

/// The site's records: WeChat (unionid) → account, phone → account.
#[derive(Default)]
struct Site {
    by_wechat: HashMap<String, String>,
    by_phone: HashMap<String, String>,
    /// What the site last heard about a WeChat user (its "wechat_name / avatar / open_id").
    profile: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Site>>;

/// The site's answer to the gateway's call.
fn decide(site: &Shared, j: &Value) -> link_app::Reply {
    let mut s = site.lock().unwrap();
    let wechat = j["unionid"]
        .as_str()
        .or(j["openid"].as_str())
        .unwrap_or("")
        .to_string();
    s.profile.insert(wechat.clone(), j.clone());
    if let Some(user) = s.by_wechat.get(&wechat) {
        return link_app::Reply::UserId(user.clone());
    }
    if let Some(phone) = j["phone"].as_str() {
        if let Some(owner) = s.by_phone.get(phone) {
            let bound_elsewhere = s.by_wechat.values().any(|u| u == owner);
            if bound_elsewhere {
                return link_app::Reply::Refuse(
                    "该手机号已绑定其他微信 / This phone is bound to another WeChat".into(),
                );
            }
        }
    }
    link_app::Reply::Bind("/account/bind-phone".into())
}

async fn site_env() -> (Shared, LinkApp, Env) {
    let site: Shared = Arc::default();
    let s = site.clone();
    let app = LinkApp::start(move |j| decide(&s, j)).await;
    let env = env(&app.toml(1000)).await;
    (site, app, env)
}

/// The site's bind page after the user typed phone + captcha: records the binding and sends
/// the browser back to the gateway.
fn bind_page(site: &Shared, wechat: &str, phone: &str, ticket: &str) -> String {
    let mut s = site.lock().unwrap();
    let user = s
        .by_phone
        .get(phone)
        .cloned()
        .unwrap_or_else(|| format!("user-{phone}"));
    s.by_phone.insert(phone.to_string(), user.clone());
    s.by_wechat.insert(wechat.to_string(), user.clone());
    let t = now();
    complete_path(ticket, &user, t, &sign_resume(ticket, &user, t))
}

const ALICE_UNION: &str = "oUnionAlice00000000000000001";
const BOB_UNION: &str = "oUnionBob0000000000000000002";

/// WeChat login of `user` in a browser, up to the gateway's answer to the callback.
async fn wechat_login(env: &Env, b: &mut Browser, user: &str) -> common::Reply {
    let (_, cb) = to_callback(env, b, "/home", user).await;
    b.nav(&cb).await
}

#[tokio::test]
async fn case_12_wechat_login_unbound_goes_to_bind_page() {
    let (_site, _app, env) = site_env().await;
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "alice").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        r.location().starts_with("/account/bind-phone?ticket="),
        "{}",
        r.location()
    );
    assert!(b.cookie("_wxgate").is_none(), "no session before binding");
    // The app-login flavour: bind_required and no token.
    let j = app_login(&env, "alice").await.json();
    assert_eq!(j["bind_required"], true);
    assert!(j.get("token").is_none());
}

#[tokio::test]
async fn case_05_wechat_login_forced_phone_binding_succeeds_with_wechat_info() {
    let (site, app, env) = site_env().await;
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "alice").await;
    let ticket = ticket_of(&r.location());
    let back = bind_page(&site, ALICE_UNION, "+8613800000001", &ticket);
    let r = b.nav(&env.gw.url(&back)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/home");
    let up = fetch(&env, &mut b, "/home").await;
    assert_eq!(
        up.echoed_header("x-wechat-userid").as_deref(),
        Some("user-+8613800000001")
    );
    // The WeChat information the site stores came with the signed call.
    let call = &app.calls()[0];
    assert!(call.signature_ok);
    let p = site.lock().unwrap().profile[ALICE_UNION].clone();
    assert_eq!(p["nickname"], "Alice 🐼 小爱");
    assert_eq!(
        p["openid"],
        fixtures::openid(fixtures::WEBSITE_APPID, "alice")
    );
    assert!(p["avatar"].as_str().unwrap().starts_with("https://"));
}

#[tokio::test]
async fn case_11_after_binding_wechat_login_goes_straight_in() {
    let (site, _app, env) = site_env().await;
    site.lock()
        .unwrap()
        .by_wechat
        .insert(ALICE_UNION.into(), "42".into());
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "alice").await;
    assert_eq!(r.location(), "/home");
    assert!(b.cookie("_wxgate").is_some());
    assert_eq!(
        fetch(&env, &mut b, "/home")
            .await
            .echoed_header("x-wechat-userid")
            .as_deref(),
        Some("42")
    );
    // The same account through the mobile app (same unionid).
    let j = app_login(&env, "alice").await.json();
    assert_eq!(j["user_id"], "42");
}

#[tokio::test]
async fn case_06_bound_wechat_user_binding_again_is_not_asked_and_old_links_do_not_replay() {
    let (site, _app, env) = site_env().await;
    let mut b = Browser::pc();
    let ticket = ticket_of(&wechat_login(&env, &mut b, "alice").await.location());
    let back = bind_page(&site, ALICE_UNION, "+8613800000001", &ticket);
    assert_eq!(b.nav(&env.gw.url(&back)).await.status, StatusCode::FOUND);
    // Logging in again: straight in, no bind page.
    let mut again = Browser::pc();
    assert_eq!(
        wechat_login(&env, &mut again, "alice").await.location(),
        "/home"
    );
    // Replaying the earlier bind link does not bind (or log in) a second time.
    let mut replay = Browser::pc();
    let r = replay.nav(&env.gw.url(&back)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(replay.cookie("_wxgate").is_none());
}

#[tokio::test]
async fn case_04_user_b_binding_wechat_a_already_bound_sees_the_apps_403_message() {
    let (site, _app, env) = site_env().await;
    // WeChat A (alice) is bound to user A; the site refuses this WeChat for anyone else.
    site.lock()
        .unwrap()
        .by_wechat
        .insert(ALICE_UNION.into(), "user-a".into());
    let s = site.clone();
    _app.set(move |j| {
        if j["unionid"] == ALICE_UNION {
            link_app::Reply::Refuse(
                "该微信已被其他账号绑定 / This WeChat is bound to another account".into(),
            )
        } else {
            decide(&s, j)
        }
    });
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "alice").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("该微信已被其他账号绑定"), "{}", r.text());
    assert!(b.cookie("_wxgate").is_none());
}

#[tokio::test]
async fn case_08_wechat_user_b_binding_phone_a_of_wechat_a_sees_the_apps_403_message() {
    let (site, _app, env) = site_env().await;
    {
        let mut s = site.lock().unwrap();
        s.by_phone.insert("+8613800000002".into(), "user-a".into());
        s.by_wechat.insert(ALICE_UNION.into(), "user-a".into());
    }
    // WeChat user B in the mini program shares phone A (the mock gives bob +8613800000002).
    let r = mini_login(&env, "bob").await.json();
    assert_eq!(r["bind_required"], true);
    // Bound as a WeChat user first so the session exists (the site lets B in by WeChat alone).
    site.lock()
        .unwrap()
        .by_wechat
        .insert(BOB_UNION.into(), "user-b".into());
    let token = mini_login(&env, "bob").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    site.lock().unwrap().by_wechat.remove(BOB_UNION);
    let code = env.mock_post("/mock/phone/code?user=bob").await["code"].clone();
    let r = send(
        &client(),
        http::Request::post(env.gw.url("/_wxgate/miniprogram/phone"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(common::body(json!({ "code": code }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("该手机号已绑定其他微信"));
}

#[tokio::test]
async fn case_15_wechat_removed_during_the_bind_page_binding_still_completes() {
    let (site, _app, env) = site_env().await;
    let mut b = Browser::pc();
    let ticket = ticket_of(&wechat_login(&env, &mut b, "bob").await.location());
    // WeChat is gone from here on: every WeChat API call would fail.
    let fail = send(
        &client(),
        http::Request::post(format!(
            "{}/mock/fail?mode=status500&count=1000",
            env.mock.url()
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(fail.status, StatusCode::OK);
    let calls_before = env.mock_calls().await;
    let back = bind_page(&site, BOB_UNION, "+8613800000002", &ticket);
    let r = b.nav(&env.gw.url(&back)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let calls_after = env.mock_calls().await;
    assert_eq!(calls_before, calls_after, "resuming needs no WeChat call");
    assert_eq!(
        fetch(&env, &mut b, "/home")
            .await
            .echoed_header("x-wechat-userid")
            .as_deref(),
        Some("user-+8613800000002")
    );
}

#[tokio::test]
async fn case_16_going_back_from_the_wechat_page_and_logging_in_again_works() {
    let (site, _app, env) = site_env().await;
    site.lock()
        .unwrap()
        .by_wechat
        .insert(ALICE_UNION.into(), "42".into());
    let mut b = Browser::pc();
    // Start a login, go back without choosing anyone, start again, finish the second.
    let (_, first_cb) = to_callback(&env, &mut b, "/first", "alice").await;
    let (_, second_cb) = to_callback(&env, &mut b, "/home", "alice").await;
    let r = b.nav(&second_cb).await;
    assert_eq!(r.location(), "/home");
    // The abandoned one, if WeChat still delivers it, finishes too (same browser).
    let r = b.nav(&first_cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/first");
}

#[tokio::test]
async fn case_17_weak_or_no_network_fails_closed_and_clearly() {
    let (site, app, env) = site_env().await;
    // The site does not answer in time (weak network on its side): 503 page, no session.
    app.set(|_| link_app::Reply::Sleep(Duration::from_secs(3)));
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "alice").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text().contains("Sign in again"),
        "a retry link: {}",
        r.text()
    );
    assert!(b.cookie("_wxgate").is_none());
    // WeChat unreachable / slow during login: 502 page with a retry link.
    let s = site.clone();
    app.set(move |j| decide(&s, j));
    let fail = send(
        &client(),
        http::Request::post(format!(
            "{}/mock/fail?mode=slow&delay_ms=3000",
            env.mock.url()
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(fail.status, StatusCode::OK);
    let r = wechat_login(&env, &mut b, "alice").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    // The network comes back during the bind page: a resume that never arrived can be sent
    // again, the ticket is still good.
    let mut b = Browser::pc();
    let ticket = ticket_of(&wechat_login(&env, &mut b, "bob").await.location());
    let back = bind_page(&site, BOB_UNION, "+8613800000002", &ticket);
    let r = b.nav(&env.gw.url(&back)).await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test]
async fn case_18_authorization_login_and_binding_failures_offer_a_retry() {
    let (_site, _app, env) = site_env().await;
    // The user refuses the authorization.
    let mut b = Browser::pc();
    let r = wechat_login(&env, &mut b, "deny").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("/_wxgate/login?rd="), "{}", r.text());
    // A login code WeChat refuses.
    let r = app_login_code(&env, "not-a-code").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_code");
    // Binding fails: a resume the gateway cannot verify.
    let mut b = Browser::pc();
    let ticket = ticket_of(&wechat_login(&env, &mut b, "alice").await.location());
    let t = now();
    let r = b
        .nav(&env.gw.url(&complete_path(&ticket, "9", t, &"0".repeat(64))))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("Sign in again"), "{}", r.text());
    assert!(b.cookie("_wxgate").is_none());
}

async fn app_login_code(env: &Env, code: &str) -> common::Reply {
    post_json(env, "/_wxgate/app/login", &json!({ "code": code })).await
}
