//! WeChat can call the callback twice for one login (WECHAT-API.md: "lock on state and reuse the
//! first result"). When the second call comes while the first is still exchanging the code, the
//! browser has dropped the first navigation and, with it, the session cookie of its answer. The
//! second call must get that answer, not "this login link was already used".

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

/// The callback's path and query.
fn path_of(cb: &str) -> &str {
    let rest = cb.split_once("://").map_or(cb, |(_, r)| r);
    &rest[rest.find('/').unwrap()..]
}

#[tokio::test]
async fn second_callback_during_the_first_gets_its_answer_and_session() {
    let env = slow_env(Duration::from_millis(400)).await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/target", "alice").await;

    // The first call: the browser sends it, then navigates again before the answer comes (the
    // connection is closed under the request).
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nUser-Agent: {}\r\n\r\n",
        path_of(&cb),
        env.gw.addr,
        b.cookie_header(),
        b.ua
    );
    let mut first = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    first.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(first);

    // The second call, while the first still waits for WeChat: the first's answer, with the
    // session cookie.
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/target");
    assert!(r.cookie_value("_wxgate").is_some(), "no session cookie");
    let r = b.nav(&env.gw.url("/target")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        Some(wxgate::tools::mock::fixtures::openid(
            wxgate::tools::mock::fixtures::WEBSITE_APPID,
            "alice"
        ))
    );
}

#[tokio::test]
async fn two_callbacks_at_once_make_one_session() {
    let env = slow_env(Duration::from_millis(300)).await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/x", "alice").await;
    let (mut b1, mut b2) = (b.clone(), b.clone());
    let (r1, r2) = tokio::join!(b1.nav(&cb), b2.nav(&cb));
    for r in [&r1, &r2] {
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
        assert_eq!(r.location(), "/x");
    }
    // The same answer: one code exchange, one session.
    let (s1, s2) = (r1.cookie_value("_wxgate"), r2.cookie_value("_wxgate"));
    assert!(s1.is_some());
    assert_eq!(s1, s2);
    // Once the run has ended, a replay is what it was before: the browser that finished (it
    // holds the completed cookie) goes to the target without a new session; another with the
    // same binding cookie gets nothing.
    let r = b1.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/x");
    assert!(r.cookie_value("_wxgate").is_none());
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.cookie_value("_wxgate").is_none());
}
