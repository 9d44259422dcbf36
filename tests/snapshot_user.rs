//! Issue 14.1: logins from WeChat's snapshot page (快照页, `is_snapshotuser: 1`) make no
//! session: browsers get a 401 page asking to tap 「使用完整服务」 with a retry link, JSON
//! clients `{"error":"snapshot_user"}`, and the metrics count them.

mod common;

use common::*;
use http::{Request, StatusCode};
use serde_json::json;

fn no_session_cookie(r: &Reply) {
    assert!(
        !r.set_cookies().iter().any(|c| c.starts_with("_wxgate=")),
        "a session cookie was set: {:?}",
        r.set_cookies()
    );
}

async fn browser_snapshot_login(mut b: Browser, source: &str) {
    let env = env("").await;
    let (_, cb) = to_callback(&env, &mut b, "/page?x=1", fixtures::SNAPSHOT_USER).await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    no_session_cookie(&r);
    let page = r.text();
    assert!(page.contains("「使用完整服务」"), "{page}");
    assert!(page.contains("Use full service"), "{page}");
    assert_eq!(
        find_link(&page, "retry").or_else(|| {
            // The retry button is the page's one action link.
            let at = page.find("class=\"btn\" href=\"")? + 18;
            Some(html_unescape(&page[at..at + page[at..].find('"')?]))
        }),
        Some("/_wxgate/login?rd=%2Fpage%3Fx%3D1".to_string())
    );
    assert_eq!(
        r.headers["content-security-policy"], "frame-ancestors 'none'",
        "a gateway page"
    );
    // Nothing to log in with: the protected page sends the browser to login again.
    assert_eq!(b.cookie("_wxgate"), None);
    let r = fetch(&env, &mut b, "/page").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        r.location().starts_with("/_wxgate/login"),
        "{}",
        r.location()
    );
    assert_eq!(env.up.hits(), 0, "the upstream never saw the virtual user");
    let m = env.gw.metrics().await;
    assert!(
        m.contains(&format!(
            "wxgate_logins_total{{source=\"{source}\",outcome=\"snapshot_user\"}} 1"
        )),
        "{m}"
    );
    assert!(!m.contains("outcome=\"ok\""), "{m}");
}

#[tokio::test]
async fn snapshot_login_in_wechat_makes_no_session() {
    browser_snapshot_login(Browser::wechat(), "official_account").await;
}

#[tokio::test]
async fn snapshot_login_on_pc_makes_no_session() {
    browser_snapshot_login(Browser::pc(), "website").await;
}

#[tokio::test]
async fn snapshot_app_login_gets_json_and_no_token() {
    let env = env("").await;
    let minted = send(
        &client(),
        Request::post(format!(
            "{}/mock/code?appid={}&user={}",
            env.mock.url(),
            fixtures::MOBILE_APPID,
            fixtures::SNAPSHOT_USER
        ))
        .body(empty())
        .unwrap(),
    )
    .await
    .json();
    let code = minted["code"].as_str().unwrap();
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(body(json!({ "code": code }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "snapshot_user");
    assert!(v.get("token").is_none(), "{v}");
    no_session_cookie(&r);
    assert!(env
        .gw
        .metrics()
        .await
        .contains("wxgate_logins_total{source=\"mobile_app\",outcome=\"snapshot_user\"} 1"));
}

#[tokio::test]
async fn other_users_still_log_in() {
    // The same flow with a real user: a session, so the refusal above is the snapshot flag's.
    let env = env("").await;
    let mut b = Browser::wechat();
    assert_eq!(login(&env, &mut b, "/p", "alice").await, "/p");
    assert!(b.cookie("_wxgate").is_some());
    assert_eq!(fetch(&env, &mut b, "/p").await.status, StatusCode::OK);
}
