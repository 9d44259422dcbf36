//! Account linking (`[link]`) over real sockets: the gateway, the mock WeChat, the echo
//! upstream and a tiny link app (`link_app/`), all on 127.0.0.1:0.

mod common;
mod link_app;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use link_app::*;
use serde_json::json;

async fn linked_env(app: &LinkApp, timeout_ms: u64) -> Env {
    env(&app.toml(timeout_ms)).await
}

fn session_cookie_set(r: &common::Reply) -> bool {
    r.cookie_value("_wxgate").is_some_and(|v| !v.is_empty())
}

#[tokio::test]
async fn link_call_signature_verifies_with_the_documented_formula() {
    let app = LinkApp::always(link_app::Reply::UserId("42".into())).await;
    let env = linked_env(&app, 2000).await;
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/x", "alice").await, "/x");
    let calls = app.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert!(c.content_type.starts_with("application/json"));
    // t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>, recomputed here from the raw body.
    let (t, v1) = c.signature.split_once(",v1=").expect("t=..,v1=..");
    let t = t.strip_prefix("t=").expect("t=");
    assert!(now().abs_diff(t.parse().unwrap()) < 5);
    let body = String::from_utf8(c.body.clone()).unwrap();
    assert_eq!(v1, hmac_hex(LINK_SECRET, &format!("{t}.{body}")));
    assert!(c.signature_ok);
    // Another secret does not verify it.
    assert!(!verify(
        &c.signature,
        &c.body,
        "another-secret-0123456789abcdef0123"
    ));
    // The body: every documented key, absent values null.
    let j = &c.json;
    assert_eq!(j["source"], "website");
    assert_eq!(j["appid"], fixtures::WEBSITE_APPID);
    assert_eq!(
        j["openid"],
        fixtures::openid(fixtures::WEBSITE_APPID, "alice")
    );
    assert_eq!(j["unionid"], "oUnionAlice00000000000000001");
    assert_eq!(j["nickname"], "Alice 🐼 小爱");
    assert!(j["avatar"].as_str().unwrap().starts_with("https://"));
    assert!(j["phone"].is_null() && j["wecom_userid"].is_null());
    // carol has no unionid: null, not "".
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "carol").await;
    assert!(app.calls()[1].json["unionid"].is_null());
}

#[tokio::test]
async fn user_id_reaches_the_upstream_and_userinfo() {
    let app = LinkApp::always(link_app::Reply::UserId("u-42".into())).await;
    let env = linked_env(&app, 2000).await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/page", "alice").await;
    let r = fetch(&env, &mut b, "/page").await;
    assert_eq!(r.echoed_header("x-wechat-userid").as_deref(), Some("u-42"));
    assert_eq!(r.echoed_header("x-wechat-phone"), None);
    let info = fetch(&env, &mut b, "/_wxgate/userinfo").await.json();
    assert_eq!(info["user_id"], "u-42");
    // The app login's token JSON says it too, and the bearer session carries it.
    let r = app_login(&env, "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["user_id"], "u-42");
    let up = with_bearer(&env, "GET", "/", j["token"].as_str().unwrap()).await;
    assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("u-42"));
    assert_eq!(app.calls()[1].json["source"], "mobile_app");
}

#[tokio::test]
async fn without_link_sessions_carry_no_user_id() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    assert_eq!(
        fetch(&env, &mut b, "/")
            .await
            .echoed_header("x-wechat-userid"),
        None
    );
    assert!(fetch(&env, &mut b, "/_wxgate/userinfo").await.json()["user_id"].is_null());
    let r = send(
        &client(),
        get(&env.gw.url("/_wxgate/link/complete?ticket=x"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bind_flow_in_a_browser() {
    let app = LinkApp::always(link_app::Reply::Bind(
        "https://shop.example/bind-phone?ref=7#top".into(),
    ))
    .await;
    let env = linked_env(&app, 2000).await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/orders?id=1", "alice").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let loc = r.location();
    assert!(
        loc.starts_with("https://shop.example/bind-phone?ref=7&ticket="),
        "{loc}"
    );
    assert!(loc.ends_with("#top"), "{loc}");
    assert!(!session_cookie_set(&r), "no session before the app binds");
    let ticket = ticket_of(&loc);
    // Not logged in yet.
    assert_eq!(
        fetch(&env, &mut b, "/orders").await.status,
        StatusCode::FOUND
    );
    // The app binds and resumes.
    let t = now();
    let r = b
        .nav(&env.gw.url(&complete_path(
            &ticket,
            "9001",
            t,
            &sign_resume(&ticket, "9001", t),
        )))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/orders?id=1");
    assert!(session_cookie_set(&r));
    let up = fetch(&env, &mut b, "/orders?id=1").await;
    assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("9001"));
    assert_eq!(
        up.echoed_header("x-wechat-unionid").as_deref(),
        Some("oUnionAlice00000000000000001")
    );
    // Used once: the same link again is refused.
    let mut other = Browser::pc();
    let again = other
        .nav(&env.gw.url(&complete_path(
            &ticket,
            "9001",
            t,
            &sign_resume(&ticket, "9001", t),
        )))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(!session_cookie_set(&again));
    // An app-login ticket resumes only by POST, a browser's only by GET.
    let r = complete_json(&env, &ticket, "9001").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bind_flow_of_an_app_and_a_mini_program() {
    let app = LinkApp::always(link_app::Reply::Bind("/bind-phone".into())).await;
    let env = linked_env(&app, 2000).await;
    for (r, source) in [
        (app_login(&env, "alice").await, "mobile_app"),
        (mini_login(&env, "bob").await, "mini_program"),
    ] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let j = r.json();
        assert_eq!(j["bind_required"], true);
        assert!(j.get("token").is_none(), "no token before binding: {j}");
        let ticket = j["ticket"].as_str().unwrap().to_string();
        // A browser GET cannot turn an app's ticket into a cookie.
        let t = now();
        let get_it = send(
            &client(),
            get(&env.gw.url(&complete_path(
                &ticket,
                "7",
                t,
                &sign_resume(&ticket, "7", t),
            )))
            .body(empty())
            .unwrap(),
        )
        .await;
        assert_eq!(get_it.status, StatusCode::BAD_REQUEST);
        let done = complete_json(&env, &ticket, "7").await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text());
        let d = done.json();
        assert_eq!(d["user_id"], "7");
        assert!(d["expires_in"].as_u64().unwrap() > 0);
        let up = with_bearer(&env, "GET", "/", d["token"].as_str().unwrap()).await;
        assert_eq!(up.echoed_header("x-wechat-userid").as_deref(), Some("7"));
        assert_eq!(up.echoed_header("x-wechat-source").as_deref(), Some(source));
        // Reused → 400 JSON.
        let again = complete_json(&env, &ticket, "7").await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.json()["error"], "invalid_ticket");
    }
}

#[tokio::test]
async fn forged_reused_stale_or_expired_resumes_are_400() {
    let app = LinkApp::always(link_app::Reply::Bind("/bind".into())).await;
    let env = linked_env(&app, 2000).await;
    let ticket = app_login(&env, "alice").await.json()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let t = now();
    let sig = sign_resume(&ticket, "42", t);
    let post = |body: serde_json::Value| {
        let env = &env;
        async move { post_json(env, "/_wxgate/link/complete", &body).await }
    };
    // Signature for another user id, by another secret, stale, from the future.
    for body in [
        json!({"ticket": ticket, "user_id": "43", "t": t, "sig": sig}),
        json!({"ticket": ticket, "user_id": "42", "t": t, "sig": hmac_hex("another-secret-0123456789abcdef0123", &format!("{t}.{ticket}.42"))}),
        json!({"ticket": ticket, "user_id": "42", "t": t - 301, "sig": sign_resume(&ticket, "42", t - 301)}),
        json!({"ticket": ticket, "user_id": "42", "t": t + 120, "sig": sign_resume(&ticket, "42", t + 120)}),
        json!({"ticket": ticket, "user_id": "42", "t": t.to_string(), "sig": "0".repeat(64)}),
    ] {
        let r = post(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_ticket");
    }
    // A forged ticket, correctly signed by someone who knows the secret, is still no ticket.
    let mut forged = ticket.clone().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = complete_json(&env, &forged, "42").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Bad shapes: 400 with a message, never a panic.
    for body in [
        json!({}),
        json!({"ticket": 1, "user_id": "42", "t": t, "sig": sig}),
        json!({"ticket": ticket, "user_id": "4 2", "t": t, "sig": sig}),
        json!({"ticket": "x".repeat(5000), "user_id": "42", "t": t, "sig": sig}),
    ] {
        assert_eq!(post(body).await.status, StatusCode::BAD_REQUEST);
    }
    // The real one still works once (the failures above consumed nothing), then never again.
    assert_eq!(
        post(json!({"ticket": ticket, "user_id": "42", "t": t, "sig": sig}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(json!({"ticket": ticket, "user_id": "42", "t": t, "sig": sig}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // An authentic ticket past its 10 minutes.
    let expired = seal_expired_ticket();
    let r = complete_json(&env, &expired, "42").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Oversized bodies are refused before parsing.
    let big = json!({"ticket": "x".repeat(20_000)});
    assert_eq!(post(big).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A ticket sealed exactly as the gateway seals them (AES-256-GCM under HMAC-SHA256(link.secret,
/// "wxgate link ticket v1")) whose claims expired a minute ago: authentic, but too old.
fn seal_expired_ticket() -> String {
    use base64::Engine;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, LINK_SECRET.as_bytes());
    let tag = ring::hmac::sign(&k, b"wxgate link ticket v1");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, tag.as_ref()).unwrap());
    let mut claims = vec![1u8];
    claims.extend_from_slice(&[7u8; 16]);
    claims.extend_from_slice(&(now() - 60).to_le_bytes());
    claims.extend_from_slice(&[0, 0, 2]); // app, WeChat, mobile app
    for s in [
        Some("oExpired"),
        None,
        Some(fixtures::MOBILE_APPID),
        Some(""),
        Some(""),
        None,
    ] {
        match s {
            None => claims.extend_from_slice(&u16::MAX.to_le_bytes()),
            Some(s) => {
                claims.extend_from_slice(&(s.len() as u16).to_le_bytes());
                claims.extend_from_slice(s.as_bytes());
            }
        }
    }
    let nonce = [3u8; 12];
    let t = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut claims,
        )
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&claims);
    out.extend_from_slice(t.as_ref());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

#[tokio::test]
async fn hook_timeout_fails_closed_with_503_and_no_session() {
    let app = LinkApp::always(link_app::Reply::Sleep(Duration::from_secs(3))).await;
    let env = linked_env(&app, 300).await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let started = Instant::now();
    let r = b.nav(&cb).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(!session_cookie_set(&r), "{:?}", r.set_cookies());
    assert!(r.text().contains("Sign-in unavailable"));
    assert_eq!(fetch(&env, &mut b, "/").await.status, StatusCode::FOUND);
    let r = app_login(&env, "alice").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "link_unavailable");
    assert!(r.json().get("token").is_none());
}

#[tokio::test]
async fn hook_unreachable_garbage_or_huge_answers_fail_closed() {
    let app = LinkApp::always(link_app::Reply::Raw(200, "<html>oops</html>".into())).await;
    let env = linked_env(&app, 2000).await;
    for reply in [
        link_app::Reply::Raw(200, "<html>oops</html>".into()),
        link_app::Reply::Raw(500, r#"{"user_id":"1"}"#.into()),
        link_app::Reply::Raw(200, r#"{"user_id":"has space"}"#.into()),
        link_app::Reply::Raw(200, r#"{"bind_url":"javascript:alert(1)"}"#.into()),
        link_app::Reply::Raw(
            200,
            format!(r#"{{"user_id":"1","pad":"{}"}}"#, "x".repeat(10_000)),
        ),
    ] {
        app.set(move |_| reply.clone());
        let r = app_login(&env, "alice").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert_eq!(r.json()["error"], "link_unavailable");
    }
    // Nobody listening.
    let closed = closed_port().await;
    let env2 = common::env(&format!(
        "[link]\nurl = \"http://{closed}/link\"\nsecret = \"{LINK_SECRET}\"\n"
    ))
    .await;
    let r = app_login(&env2, "alice").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn hook_refusal_shows_the_apps_message() {
    let app = LinkApp::always(link_app::Reply::Refuse("此微信已绑定其他账号 <b>".into())).await;
    let env = linked_env(&app, 2000).await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.text().contains("此微信已绑定其他账号 &lt;b&gt;"),
        "{}",
        r.text()
    );
    assert!(!session_cookie_set(&r));
    let r = app_login(&env, "alice").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["message"], "此微信已绑定其他账号 <b>");
    assert!(r.json().get("token").is_none());
}

#[tokio::test]
async fn spoofed_link_headers_are_stripped() {
    let app = LinkApp::always(link_app::Reply::UserId("real".into())).await;
    let env = linked_env(&app, 2000).await;
    let token = app_login(&env, "alice").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let spoofs = [
        ("x-wechat-userid", "evil"),
        ("x_wechat_userid", "evil2"),
        ("x-wechat-phone", "+10000000000"),
        ("X-WeChat.Phone", "+10000000001"),
    ];
    // On a linked session: the gateway's value only.
    let r = with_bearer_headers(&env, "GET", "/", &token, &spoofs).await;
    let h = r.echoed_headers();
    let ids: Vec<_> = h
        .iter()
        .filter(|(k, _)| {
            k.to_ascii_lowercase()
                .replace(['_', '.'], "-")
                .contains("wechat-userid")
        })
        .collect();
    assert_eq!(
        ids,
        vec![&("x-wechat-userid".to_string(), "real".to_string())]
    );
    assert!(!h
        .iter()
        .any(|(k, v)| k.to_ascii_lowercase().contains("phone") || v.starts_with("+1000")));
    // On a public path, without a session: nothing at all.
    let env2 = common::env("[access]\npublic_paths = [\"/pub/\"]").await;
    let mut b = send(
        &client(),
        spoofs
            .iter()
            .fold(get(&env2.gw.url("/pub/x")), |b, (k, v)| b.header(*k, *v))
            .body(empty())
            .unwrap(),
    )
    .await
    .echoed_headers();
    b.retain(|(k, _)| k.to_ascii_lowercase().contains("wechat"));
    assert!(b.is_empty(), "{b:?}");
}

#[tokio::test]
async fn link_complete_is_rate_limited() {
    let app = LinkApp::always(link_app::Reply::Bind("/bind".into())).await;
    let env = env(&format!(
        "{}\n[access]\nlogin_rate_per_minute = 3\n",
        app.toml(2000)
    ))
    .await;
    let mut statuses = vec![];
    for _ in 0..5 {
        let r = send(
            &client(),
            get(&env
                .gw
                .url("/_wxgate/link/complete?ticket=x&user_id=1&t=1&sig=0"))
            .body(empty())
            .unwrap(),
        )
        .await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.contains_key("retry-after"));
        }
    }
    assert!(
        statuses.contains(&400) && statuses.ends_with(&[429]),
        "{statuses:?}"
    );
    let r = complete_json(&env, "x", "1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"], "rate_limited");
}
