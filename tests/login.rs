//! Issue 3: browser login against the mock WeChat, sessions, identity headers, and every
//! adversarial case we know of.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn pc_browser_full_flow() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (authorize, cb) = to_callback(&env, &mut b, "/dest/page?x=1&y=%2F", "alice").await;
    let state = state_of(&authorize);
    assert_eq!(
        authorize,
        format!(
            "{}/connect/qrconnect?appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A{}%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_login&state={state}#wechat_redirect",
            env.mock.url(),
            fixtures::WEBSITE_APPID,
            env.gw.addr.port()
        )
    );
    assert!(state.len() <= 128 && state.bytes().all(|c| c.is_ascii_alphanumeric()));
    let login_cookie = b.cookie("_wxgate_login").expect("login cookie");
    assert!(!login_cookie.is_empty());

    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/dest/page?x=1&y=%2F");
    let sc = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_wxgate="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(sc.contains(attr), "{attr} missing in {sc}");
    }
    assert!(
        !sc.contains("Secure"),
        "plain-http public_url: no Secure ({sc})"
    );

    let r = fetch(&env, &mut b, "/dest/page?x=1").await;
    assert_eq!(r.status, StatusCode::OK);
    let h = |n: &str| r.echoed_header(n);
    assert_eq!(
        h("x-wechat-openid"),
        Some(fixtures::openid(fixtures::WEBSITE_APPID, "alice"))
    );
    assert_eq!(
        h("x-wechat-unionid").as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    assert_eq!(
        h("x-wechat-appid").as_deref(),
        Some(fixtures::WEBSITE_APPID)
    );
    assert_eq!(h("x-wechat-source").as_deref(), Some("website"));
    assert_eq!(
        h("x-wechat-nickname").as_deref(),
        Some("Alice%20%F0%9F%90%BC%20%E5%B0%8F%E7%88%B1")
    );
    assert_eq!(
        h("x-wechat-avatar").as_deref(),
        Some(fixtures::user("alice").unwrap().avatar)
    );
    assert_eq!(
        h("x-wechat-signature"),
        None,
        "no sign_secret, no signature"
    );
    assert_eq!(
        h("cookie"),
        None,
        "the gateway's cookies are not sent upstream"
    );
}

#[tokio::test]
async fn wechat_browser_full_flow_same_unionid() {
    let env = env("").await;
    let mut b = Browser::wechat();
    let (authorize, cb) = to_callback(&env, &mut b, "/m", "alice").await;
    let state = state_of(&authorize);
    assert_eq!(
        authorize,
        format!(
            "{}/connect/oauth2/authorize?appid={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A{}%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_userinfo&state={state}&connect_redirect=1#wechat_redirect",
            env.mock.url(),
            fixtures::OFFICIAL_APPID,
            env.gw.addr.port()
        )
    );
    let r = b.nav(&cb).await;
    assert_eq!(r.location(), "/m");
    let r = fetch(&env, &mut b, "/m").await;
    assert_eq!(
        r.echoed_header("x-wechat-source").as_deref(),
        Some("official_account")
    );
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        Some(fixtures::openid(fixtures::OFFICIAL_APPID, "alice"))
    );
    assert_eq!(
        r.echoed_header("x-wechat-unionid").as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    // Case-insensitive User-Agent detection.
    let mut b2 = Browser {
        ua: "Mozilla/5.0 micromessenger/7.0".into(),
        cookies: vec![],
    };
    let r = b2.nav(&env.gw.url("/_wxgate/login")).await;
    assert!(
        r.location().contains("/connect/oauth2/authorize?"),
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn snsapi_base_is_silent_and_openid_only() {
    let env = env("").await;
    drop(env.gw);
    let toml = full_config(env.up.addr, &env.mock.url(), "").replace(
        "secret = \"mock-official-secret-00000000000002\"",
        "secret = \"mock-official-secret-00000000000002\"\nscope = \"snsapi_base\"",
    );
    let gw = start_gateway(&toml).await;
    let env = Env { gw, ..env };
    let mut b = Browser::wechat();
    let (authorize, cb) = to_callback(&env, &mut b, "/", "alice").await;
    assert!(authorize.contains("&scope=snsapi_base&"));
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = fetch(&env, &mut b, "/").await;
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        Some(fixtures::openid(fixtures::OFFICIAL_APPID, "alice"))
    );
    assert_eq!(r.echoed_header("x-wechat-unionid"), None);
    assert_eq!(r.echoed_header("x-wechat-nickname"), None);
}

#[tokio::test]
async fn user_without_unionid_and_control_char_nickname() {
    let env = env("").await;
    let mut carol = Browser::pc();
    login(&env, &mut carol, "/", "carol").await;
    let r = fetch(&env, &mut carol, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.echoed_header("x-wechat-unionid"), None);
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        Some(fixtures::openid(fixtures::WEBSITE_APPID, "carol"))
    );
    let mut req = Request::get(env.gw.url("/_wxgate/userinfo"));
    req = req.header("cookie", carol.cookie_header());
    let u = send(&client(), req.body(empty()).unwrap()).await;
    assert_eq!(u.json()["unionid"], serde_json::Value::Null);

    let mut bob = Browser::pc();
    login(&env, &mut bob, "/", "bob").await;
    let r = fetch(&env, &mut bob, "/").await;
    let nick = r.echoed_header("x-wechat-nickname").unwrap();
    assert!(nick.starts_with("%E7%8E%8B%E5%B0%8F%E6%98%8E"), "{nick}");
}

#[tokio::test]
async fn userinfo_and_auth_endpoints() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let c = client();
    let r = send(
        &c,
        Request::get(env.gw.url("/_wxgate/userinfo"))
            .header("cookie", b.cookie_header())
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        v["openid"],
        fixtures::openid(fixtures::WEBSITE_APPID, "alice")
    );
    assert_eq!(v["nickname"], "Alice 🐼 小爱");
    assert_eq!(v["source"], "website");
    assert_eq!(v["appid"], fixtures::WEBSITE_APPID);
    assert!(v["expires_at"].as_u64().unwrap() > wxgate::common::http_util::unix_now());
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(!k.contains("token") && !k.contains("session_key"), "{k}");
    }

    for method in ["GET", "POST", "HEAD"] {
        let r = send(
            &c,
            Request::builder()
                .method(method)
                .uri(env.gw.url("/_wxgate/auth"))
                .header("cookie", b.cookie_header())
                .header("x-wechat-unionid", "spoof")
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{method}");
        assert_eq!(
            r.headers["x-wechat-unionid"],
            fixtures::user("alice").unwrap().unionid.unwrap()
        );
        assert_eq!(r.headers["x-wechat-source"], "website");
    }
    // No session: 401, never a redirect, even for a browser navigation.
    let r = send(
        &c,
        Request::get(env.gw.url("/_wxgate/auth"))
            .header("accept", "text/html")
            .header("sec-fetch-mode", "navigate")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("location").is_none());
    let r = send(
        &c,
        Request::get(env.gw.url("/_wxgate/userinfo"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test]
async fn unauthenticated_navigation_redirects_and_api_gets_401() {
    let env = env("").await;
    let mut b = Browser::pc();
    let r = fetch(&env, &mut b, "/orders/42?tab=items&x=%2F").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.location(),
        format!(
            "/_wxgate/login?rd={}",
            "%2Forders%2F42%3Ftab%3Ditems%26x%3D%252F"
        )
    );
    // The rd round-trips through the whole login.
    let target = login(&env, &mut b, "/orders/42?tab=items&x=%2F", "alice").await;
    assert_eq!(target, "/orders/42?tab=items&x=%2F");

    let c = client();
    for req in [
        Request::get(env.gw.url("/api/x"))
            .header("accept", "application/json")
            .body(empty())
            .unwrap(),
        Request::post(env.gw.url("/api/x"))
            .header("accept", "text/html")
            .body(empty())
            .unwrap(),
        Request::get(env.gw.url("/api/x"))
            .header("accept", "text/html")
            .header("x-requested-with", "XMLHttpRequest")
            .body(empty())
            .unwrap(),
        Request::get(env.gw.url("/api/x")).body(empty()).unwrap(),
    ] {
        let r = send(&c, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let v = r.json();
        assert_eq!(v["error"], "unauthenticated");
        assert!(
            v["login_url"]
                .as_str()
                .unwrap()
                .contains("/_wxgate/login?rd=%2Fapi%2Fx"),
            "{v}"
        );
    }
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test]
async fn tampered_state_rejected() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let state = state_of(&cb);
    let mut t = state.clone().into_bytes();
    t[5] = if t[5] == b'a' { b'b' } else { b'a' };
    let tampered = cb.replace(&state, std::str::from_utf8(&t).unwrap());
    let r = b.nav(&tampered).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("重新登录") && r.text().contains("Sign in again"));
    assert!(b.cookie("_wxgate").is_none());
    // Garbage and missing states.
    for q in [
        "state=%3Cscript%3E&code=x",
        "code=x",
        "state=&code=x",
        &format!("state={}&code=x", "a".repeat(5000)),
    ] {
        let r = b.nav(&env.gw.url(&format!("/_wxgate/callback?{q}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(!r.text().contains("<script>"));
    }
}

#[tokio::test]
async fn expired_state_rejected() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let binding = b.cookie("_wxgate_login").unwrap();
    let signer = wxgate::endpoints::login_state::StateSigner::new(SECRET.as_bytes());
    let (old_state, _) = signer.issue(&binding, wxgate::common::http_util::unix_now() - 601);
    let r = b.nav(&cb.replace(&state_of(&cb), &old_state)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("expired"), "{}", r.text());
}

#[tokio::test]
async fn foreign_browser_state_rejected() {
    let env = env("").await;
    let mut victim = Browser::pc();
    let (_, cb) = to_callback(&env, &mut victim, "/", "alice").await;
    // An attacker hands the callback URL to someone else (login CSRF) — or opens it elsewhere.
    let mut other = Browser::pc();
    let r = other.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(other.cookie("_wxgate").is_none());
    let mut other2 = Browser::pc();
    other2
        .cookies
        .push(("_wxgate_login".into(), "0".repeat(32)));
    let r = other2.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The rightful browser can still finish.
    let r = victim.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test]
async fn replayed_state_and_repeated_callback() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/target", "alice").await;
    let login_cookie = b.cookie("_wxgate_login").unwrap();
    let r = b.nav(&cb).await;
    assert_eq!(r.location(), "/target");
    // WeChat calls twice: the same browser is sent to the target again.
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/target");
    // A replay from a browser without the binding cookie fails.
    let mut thief = Browser::pc();
    let r = thief.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Even with a stolen binding cookie, the replay creates no new session.
    let mut thief = Browser::pc();
    thief.cookies.push(("_wxgate_login".into(), login_cookie));
    let r = thief.nav(&cb).await;
    assert!(r.cookie_value("_wxgate").is_none());
}

#[tokio::test]
async fn used_code_is_a_retry_page() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb1) = to_callback(&env, &mut b, "/", "alice").await;
    assert_eq!(b.nav(&cb1).await.status, StatusCode::FOUND);
    // A new login whose callback carries the already used code.
    let (_, cb2) = to_callback(&env, &mut b, "/again", "alice").await;
    let code1 = cb1
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let code2 = cb2
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let r = b.nav(&cb2.replace(code2, code1)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let t = r.text();
    assert!(
        t.contains("/_wxgate/login?rd=") && t.contains("Sign in again"),
        "{t}"
    );
    assert!(!t.contains(code1), "the code is not echoed");
}

#[tokio::test]
async fn expired_code_is_a_retry_page() {
    let env = env_with(
        "",
        wxgate::tools::mock::MockOptions {
            code_ttl: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("Sign in again"));
}

#[tokio::test]
async fn refused_consent_is_a_retry_page() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/wanted", "deny").await;
    assert!(!cb.contains("code="), "{cb}");
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let t = r.text();
    assert!(
        t.contains("/_wxgate/login?rd=%2Fwanted") && t.contains("授权"),
        "the retry keeps the target: {t}"
    );
    assert!(b.cookie("_wxgate").is_none());
}

async fn wechat_failure(mode: &str, want: StatusCode) {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let r = send(
        &client(),
        Request::post(format!(
            "{}/mock/fail?mode={mode}&count=5&delay_ms=5000",
            env.mock.url()
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = Instant::now();
    let r = b.nav(&cb).await;
    assert_eq!(r.status, want, "{mode}: {}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{mode} took {:?}",
        t.elapsed()
    );
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(b.cookie("_wxgate").is_none());
}

#[tokio::test]
async fn wechat_busy_is_503() {
    wechat_failure("busy", StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn wechat_rate_limited_is_503() {
    wechat_failure("ratelimit", StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn wechat_garbage_is_502() {
    wechat_failure("garbage", StatusCode::BAD_GATEWAY).await;
    wechat_failure("empty_gbk", StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn wechat_5xx_is_502() {
    wechat_failure("status500", StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn wechat_slow_times_out_as_502() {
    // Gateway wechat.timeout_ms = 1000; the mock sleeps 5 s.
    wechat_failure("slow", StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn wechat_down_is_502() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let dead = closed_port().await;
    let toml = full_config(up.addr, &mock.url(), "").replace(
        &format!("api_base = \"{}\"", mock.url()),
        &format!("api_base = \"http://{dead}\""),
    );
    let gw = start_gateway(&toml).await;
    let env = Env { up, mock, gw };
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn open_redirects_become_root() {
    let env = env("[access]\nredirect_hosts = [\"shop.example.com\"]\n").await;
    let port = env.gw.addr.port();
    let mut cases: Vec<(String, String)> = [
        "https://evil",
        "https://evil.example/x",
        "//evil",
        "//evil/x",
        "/\\evil",
        "%2F%2Fevil",
        "/%09/evil",
        "https:evil",
        "javascript:alert(document.cookie)",
        "https://127.0.0.1.evil/",
        "https://public-host.evil/",
        "http://127.0.0.1@evil/",
        "http://127.0.0.1:1/",
    ]
    .iter()
    .map(|s| (s.to_string(), "/".to_string()))
    .collect();
    cases.push(("/ok/path?a=1".into(), "/ok/path?a=1".into()));
    cases.push((
        format!("http://127.0.0.1:{port}/abs"),
        format!("http://127.0.0.1:{port}/abs"),
    ));
    cases.push((
        "https://shop.example.com/cart".into(),
        "https://shop.example.com/cart".into(),
    ));
    for (rd, want) in cases {
        // `%2F%2Fevil` and `/%09/evil` are sent as written (one decoding gives //evil, /<TAB>/evil).
        let raw_rd = if rd.contains('%') {
            rd.clone()
        } else {
            enc(&rd)
        };
        let mut b = Browser::pc();
        let r = b
            .nav(&env.gw.url(&format!("/_wxgate/login?rd={raw_rd}")))
            .await;
        assert_eq!(r.status, StatusCode::FOUND);
        let authorize = r.location();
        let page = b.nav(authorize.split('#').next().unwrap()).await;
        let link = find_link(&page.text(), "user-alice").unwrap();
        let cb = b
            .nav(&format!("{}{}", env.mock.url(), link))
            .await
            .location();
        let r = b.nav(&cb).await;
        assert_eq!(r.location(), want, "rd={rd}");

        let r = b
            .nav(&env.gw.url(&format!("/_wxgate/logout?rd={raw_rd}")))
            .await;
        assert_eq!(r.location(), want, "logout rd={rd}");
    }
}

#[tokio::test]
async fn forged_truncated_oversized_cookies() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let real = b.cookie("_wxgate").unwrap();
    let c = client();
    for bad in [
        real[..real.len() - 1].to_string(),
        format!("{real}A"),
        "A".repeat(32),
        wxgate::session::SessionId::random().encode(),
        "x".repeat(16_000),
        "../../etc/passwd".into(),
        "%00%ff".into(),
        String::new(),
    ] {
        let r = send(
            &c,
            Request::get(env.gw.url("/api"))
                .header("cookie", format!("_wxgate={bad}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            &bad[..bad.len().min(40)]
        );
        let r = send(
            &c,
            Request::get(env.gw.url("/_wxgate/auth"))
                .header("cookie", format!("_wxgate={bad}"))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(env.up.hits(), 0);
    let r = fetch(&env, &mut b, "/").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_server_side() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let copied = b.cookie_header();
    let c = client();
    let ok = send(
        &c,
        Request::get(env.gw.url("/x"))
            .header("cookie", &copied)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = b.nav(&env.gw.url("/_wxgate/logout?rd=%2Fbye")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/bye");
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("_wxgate=;") && c.contains("Max-Age=0")));
    let r = send(
        &c,
        Request::get(env.gw.url("/x"))
            .header("cookie", &copied)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a copied cookie stops working after logout"
    );

    // POST works too.
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "bob").await;
    let copied = b.cookie_header();
    let r = send(
        &c,
        Request::post(env.gw.url("/_wxgate/logout"))
            .header("cookie", &copied)
            .body(empty())
            .unwrap(),
    )
    .await;
    // Without rd: the signed-out page, never a new login at once.
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("已退出登录") && r.text().contains("Signed out"));
    assert!(r.text().contains("href=\"/_wxgate/login?rd=%2F\""));
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("_wxgate=;") && c.contains("Max-Age=0")));
    let r = send(
        &c,
        Request::get(env.gw.url("/_wxgate/auth"))
            .header("cookie", &copied)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn new_session_id_at_every_login() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let first = b.cookie("_wxgate").unwrap();
    login(&env, &mut b, "/", "alice").await;
    let second = b.cookie("_wxgate").unwrap();
    assert_ne!(first, second);
    assert!(second.len() >= 22, "at least 128 bits");
}

#[tokio::test]
async fn allowlists_and_require_unionid() {
    let alice_union = fixtures::user("alice").unwrap().unionid.unwrap();
    let carol_openid = fixtures::openid(fixtures::WEBSITE_APPID, "carol");
    let env = env(&format!(
        "[access]\nallow_unionids = [\"{alice_union}\"]\nallow_openids = [\"{carol_openid}\"]\n"
    ))
    .await;
    let mut alice = Browser::pc();
    assert_eq!(login(&env, &mut alice, "/", "alice").await, "/");
    let mut carol = Browser::pc();
    assert_eq!(login(&env, &mut carol, "/", "carol").await, "/");
    let mut bob = Browser::pc();
    let (_, cb) = to_callback(&env, &mut bob, "/", "bob").await;
    let r = bob.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = html_unescape(&r.text());
    assert!(page.contains("Access denied") && page.contains("无访问权限"));
    // What the user sends an administrator, and a way out: logout, then a new login.
    let bob_openid = fixtures::openid(fixtures::WEBSITE_APPID, "bob");
    let bob_union = fixtures::user("bob").unwrap().unionid.unwrap();
    assert!(
        page.contains(&bob_openid) && page.contains(bob_union),
        "{page}"
    );
    assert!(page.contains("换个账号 / Switch account"), "{page}");
    let switch = find_href(&page, "换个账号 / Switch").expect("switch account link");
    assert_eq!(switch, "/_wxgate/logout?rd=%2F_wxgate%2Flogin%3Frd%3D%252F");
    let r = bob.nav(&env.gw.url(&switch)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/_wxgate/login?rd=%2F");
    let r = bob.nav(&env.gw.url(&r.location())).await;
    assert_eq!(r.status, StatusCode::FOUND, "a new login starts");
    assert!(bob.cookie("_wxgate").is_none());

    let env = self::env("[access]\nrequire_unionid = true\n").await;
    let mut carol = Browser::pc();
    let (_, cb) = to_callback(&env, &mut carol, "/", "carol").await;
    let r = carol.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = html_unescape(&r.text());
    // The operator's setup, not "you are not allowed".
    assert!(
        page.contains("Open Platform") && page.contains("开放平台"),
        "{page}"
    );
    assert!(!page.contains("Access denied"), "{page}");
    assert!(page.contains(&fixtures::openid(fixtures::WEBSITE_APPID, "carol")));
    let mut alice = Browser::pc();
    assert_eq!(login(&env, &mut alice, "/", "alice").await, "/");
}

/// The `href` of the first link whose text starts with `label`.
fn find_href(html: &str, label: &str) -> Option<String> {
    let end = html.find(label)?;
    let start = html[..end].rfind("href=\"")? + 6;
    let stop = html[start..].find('"')? + start;
    Some(html[start..stop].to_string())
}

#[tokio::test]
async fn spoofed_identity_with_real_login() {
    let env = env("[access]\npublic_paths = [\"/pub/\"]\n").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "carol").await;
    for path in ["/pub/a", "/private"] {
        for with_session in [false, true] {
            let cookie = if with_session {
                format!("Cookie: {}\r\n", b.cookie_header())
            } else {
                String::new()
            };
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}X-WeChat-UnionId: spoofU\r\nX_WeChat_UnionId: spoofV\r\nx_wechat_openid: spoofO\r\nConnection: close\r\n\r\n"
            );
            let out = raw(env.gw.addr, req.as_bytes()).await;
            assert!(
                !out.contains("spoof"),
                "{path} session={with_session}: {out}"
            );
        }
    }
}

#[tokio::test]
async fn signature_header_when_configured() {
    let env = env("[headers]\nsign_secret = \"upstream-shared-secret\"\n").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let r = fetch(&env, &mut b, "/").await;
    let sig = r.echoed_header("x-wechat-signature").unwrap();
    let (t, v1) = sig.split_once(",v1=").unwrap();
    let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let openid = r.echoed_header("x-wechat-openid").unwrap();
    let unionid = r.echoed_header("x-wechat-unionid").unwrap();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"upstream-shared-secret").unwrap();
    mac.update(format!("{t}.{unionid}.{openid}").as_bytes());
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    assert!(t.abs_diff(wxgate::common::http_util::unix_now()) < 10);
}

#[tokio::test]
async fn missing_app_pages() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    // Only an official account: a PC browser gets the "open in WeChat" page with a QR code.
    let toml = full_config(up.addr, &mock.url(), "");
    let only_oa = remove_section(
        &remove_section(
            &remove_section(&toml, "[wechat.website]"),
            "[wechat.mobile_app]",
        ),
        "[wechat.mini_program]",
    );
    let gw = start_gateway(&only_oa).await;
    let env = Env { up, mock, gw };
    let mut b = Browser::pc();
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2Fx")).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.text();
    assert!(
        t.contains("<svg")
            && t.contains("请在微信中打开")
            && t.contains("Open this page in WeChat"),
        "{t}"
    );
    // Inside WeChat it works.
    let mut w = Browser::wechat();
    login(&env, &mut w, "/", "alice").await;

    // Only a mini program: no browser login at all.
    let toml = full_config(env.up.addr, &env.mock.url(), "");
    let only_mini = remove_section(
        &remove_section(
            &remove_section(&toml, "[wechat.website]"),
            "[wechat.mobile_app]",
        ),
        "[wechat.official_account]",
    );
    let gw = start_gateway(&only_mini).await;
    let r = Browser::pc().nav(&gw.url("/_wxgate/login")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.text().contains("not configured") || r.text().contains("no WeChat login"),
        "{}",
        r.text()
    );
}

fn remove_section(toml: &str, header: &str) -> String {
    let start = toml.find(header).unwrap();
    let rest = &toml[start + header.len()..];
    let end = rest
        .find("\n[")
        .map(|i| start + header.len() + i + 1)
        .unwrap_or(toml.len());
    format!("{}{}", &toml[..start], &toml[end..])
}

#[tokio::test]
async fn pages_are_bilingual_and_self_contained() {
    let env = env("").await;
    let mut b = Browser::pc();
    let r = b
        .nav(&env.gw.url("/_wxgate/callback?state=zz&code=1"))
        .await;
    let t = r.text();
    assert!(t.contains("lang=\"zh-CN\"") && t.contains("无效") && t.contains("Invalid"));
    assert!(
        !t.contains("http://") && !t.contains("https://"),
        "no external assets: {t}"
    );
}

#[tokio::test]
async fn multi_site_return_targets() {
    let env = env("[access]\nredirect_hosts = [\"shop.example.com\"]\n").await;
    let port = env.gw.addr.port();
    let c = client();
    let nav = |host: &str, extra: Option<(&str, &str)>| {
        let mut b = Request::get(env.gw.url("/cart?id=1&x=2"))
            .header("host", host)
            .header("accept", "text/html");
        if let Some((k, v)) = extra {
            b = b.header(k, v);
        }
        b.body(empty()).unwrap()
    };
    // Another allowed site: log in on public_url, come back to the absolute URL.
    let r = send(&c, nav("shop.example.com", None)).await;
    assert_eq!(
        r.location(),
        format!("http://127.0.0.1:{port}/_wxgate/login?rd=http%3A%2F%2Fshop.example.com%2Fcart%3Fid%3D1%26x%3D2")
    );
    // The public host itself, and hosts that are not allowed: a relative path.
    let r = send(&c, nav(&format!("127.0.0.1:{port}"), None)).await;
    assert_eq!(r.location(), "/_wxgate/login?rd=%2Fcart%3Fid%3D1%26x%3D2");
    let r = send(&c, nav("evil.example", None)).await;
    assert_eq!(r.location(), "/_wxgate/login?rd=%2Fcart%3Fid%3D1%26x%3D2");
    // X-Forwarded-Host from an untrusted peer is ignored.
    let r = send(
        &c,
        nav(
            "evil.example",
            Some(("x-forwarded-host", "shop.example.com")),
        ),
    )
    .await;
    assert_eq!(r.location(), "/_wxgate/login?rd=%2Fcart%3Fid%3D1%26x%3D2");
    // API calls get the same target in login_url; /auth uses X-Original-URI + Host.
    let r = send(
        &c,
        Request::get(env.gw.url("/api"))
            .header("host", "shop.example.com")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert!(
        r.json()["login_url"]
            .as_str()
            .unwrap()
            .ends_with("rd=http%3A%2F%2Fshop.example.com%2Fapi"),
        "{}",
        r.text()
    );
    let r = send(
        &c,
        Request::get(env.gw.url("/_wxgate/auth"))
            .header("host", "shop.example.com")
            .header("x-original-uri", "/orders?a=1")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.json()["login_url"]
            .as_str()
            .unwrap()
            .ends_with("rd=http%3A%2F%2Fshop.example.com%2Forders%3Fa%3D1"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn cookie_domain_applies_to_login_and_session_cookies() {
    let env = env("cookie_domain = \".example.com\"\n").await;
    let mut b = Browser::pc();
    let r = b.nav(&env.gw.url("/_wxgate/login")).await;
    let login = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_wxgate_login="))
        .unwrap();
    assert!(
        login.contains("Domain=example.com") || login.contains("Domain=.example.com"),
        "{login}"
    );
}

#[tokio::test]
async fn favicon_is_public_by_default() {
    // No `access.public_paths`: /favicon.ico still reaches the upstream without a session (no
    // 401 / login redirect logged at every login), and without identity headers.
    let env = env("").await;
    let c = client();
    let hits = env.up.hits();
    let r = send(
        &c,
        Request::get(env.gw.url("/favicon.ico"))
            .header("accept", "image/avif,image/webp,*/*")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(env.up.hits(), hits + 1);
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let r = fetch(&env, &mut b, "/favicon.ico").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        None,
        "public: no identity"
    );
    // Only that exact path: anything under or beside it still needs a session.
    for path in ["/favicon.ico/x", "/favicon.icox", "/favicon.ico;a=b"] {
        let r = send(&c, Request::get(env.gw.url(path)).body(empty()).unwrap()).await;
        assert!(
            r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::BAD_REQUEST,
            "{path}: {}",
            r.status
        );
    }
}
