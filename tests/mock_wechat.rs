//! The mock WeChat platform driven by the real WeChat client (and a browser-ish HTTP client).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wxgate::providers::wechat::crypto::{self, CryptoError};
use wxgate::providers::wechat::{ErrorClass, WechatClient, WechatError};
use wxgate::tools::mock::fixtures::{self, *};
use wxgate::tools::mock::{self, MockOptions, MockServer};

const CALLBACK: &str = "http://localhost:8443/_wxgate/callback";

async fn start_with(opts: MockOptions) -> MockServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::start(listener, opts).await.unwrap()
}

async fn start_mock() -> MockServer {
    start_with(MockOptions::default()).await
}

fn client(m: &MockServer) -> WechatClient {
    WechatClient::new(
        &m.url(),
        Duration::from_secs(5),
        wxgate::common::metrics::ApiCalls::default(),
    )
    .unwrap()
}

/// A browser stand-in: no redirects followed, no proxy.
fn browser() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

struct Page {
    status: u16,
    content_type: String,
    location: Option<String>,
    body: String,
}

async fn get(url: &str) -> Page {
    let resp = browser().get(url).send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = resp.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    let body = resp.text().await.unwrap();
    Page {
        status,
        content_type,
        location,
        body,
    }
}

async fn post_json(url: &str) -> (u16, Value) {
    let resp = browser().post(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn qrconnect_url(
    m: &MockServer,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    format!(
        "{}/connect/qrconnect?appid={appid}&redirect_uri={}&response_type=code&scope={scope}&state={state}#wechat_redirect",
        m.url(),
        enc(redirect_uri)
    )
}

fn authorize_url(
    m: &MockServer,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    format!(
        "{}/connect/oauth2/authorize?appid={appid}&redirect_uri={}&response_type=code&scope={scope}&state={state}&connect_redirect=1#wechat_redirect",
        m.url(),
        enc(redirect_uri)
    )
}

/// The `href` of the element with that id, made absolute.
fn href(m: &MockServer, page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\" href=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    format!("{}{}", m.url(), &page[start..end])
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Runs the website QR login for `user` and returns (code, state) from the callback.
async fn website_login(m: &MockServer, user: &str, state: &str) -> (String, String) {
    let page = get(&qrconnect_url(
        m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_login",
        state,
    ))
    .await;
    assert_eq!(page.status, 200);
    let redirect = get(&href(m, &page.body, &format!("user-{user}"))).await;
    assert_eq!(redirect.status, 302);
    let location = redirect.location.unwrap();
    assert!(
        location.starts_with(&format!("{CALLBACK}?code=")),
        "{location}"
    );
    let q = query(&location);
    (q["code"].clone(), q["state"].clone())
}

async fn mint(m: &MockServer, appid: &str, user: &str, extra: &str) -> Value {
    let (status, body) = post_json(&format!(
        "{}/mock/code?appid={appid}&user={user}{extra}",
        m.url()
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn fail(m: &MockServer, mode: &str, extra: &str) {
    let (status, _) = post_json(&format!("{}/mock/fail?mode={mode}{extra}", m.url())).await;
    assert_eq!(status, 200);
}

fn assert_no_leak(e: &WechatError, needles: &[&str]) {
    let text = format!("{e} | {e:?}");
    for n in needles {
        assert!(!text.contains(n), "error text {text:?} leaks {n:?}");
    }
}

fn api_code(e: &WechatError) -> i64 {
    match e {
        WechatError::Api { code, .. } => *code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn qrconnect_round_trip() {
    let m = start_mock().await;
    let wx = client(&m);

    let page = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_login",
        "abc123",
    ))
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.body.contains("微信登录"));
    assert!(page.body.contains("(mock)"));
    for u in USERS {
        assert!(page
            .body
            .contains(&format!("class=\"user\" id=\"user-{}\"", u.key)));
    }
    assert!(page.body.contains("id=\"deny\""));

    // alice: emoji nickname, unionid.
    let (code, state) = website_login(&m, "alice", "abc123").await;
    assert_eq!(state, "abc123");
    let token = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, &code)
        .await
        .unwrap();
    let alice = fixtures::user("alice").unwrap();
    assert_eq!(token.openid, fixtures::openid(WEBSITE_APPID, "alice"));
    assert_eq!(token.unionid.as_deref(), alice.unionid);
    assert_eq!(token.scope, "snsapi_login");
    assert_eq!(token.expires_in, 7200);
    assert!(token
        .access_token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric()));
    let info = wx
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(info.nickname, "Alice 🐼 小爱");
    assert_eq!(info.nickname, alice.nickname);
    assert_eq!(info.headimgurl, alice.avatar);
    assert_eq!(info.unionid.as_deref(), alice.unionid);
    wx.check_token(&token.access_token, &token.openid)
        .await
        .unwrap();

    // Refresh gives a working access token.
    let refreshed = wx
        .refresh_token(WEBSITE_APPID, &token.refresh_token)
        .await
        .unwrap();
    assert_ne!(refreshed.access_token, token.access_token);
    assert_eq!(refreshed.openid, token.openid);
    wx.userinfo(&refreshed.access_token, &refreshed.openid)
        .await
        .unwrap();

    // bob: raw control character inside the JSON string, still parses.
    let (code, _) = website_login(&m, "bob", "s2").await;
    let token = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, &code)
        .await
        .unwrap();
    let raw = get(&format!(
        "{}/sns/userinfo?access_token={}&openid={}&lang=zh_CN",
        m.url(),
        token.access_token,
        token.openid
    ))
    .await;
    assert!(
        raw.body.contains("王小明\u{7}\""),
        "the mock must emit the BEL raw"
    );
    assert!(raw.content_type.starts_with("application/json"));
    let info = wx
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(info.nickname, "王小明\u{7}");
    assert!(info.unionid.is_some());

    // carol: no unionid.
    let (code, _) = website_login(&m, "carol", "s3").await;
    let token = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, &code)
        .await
        .unwrap();
    assert_eq!(token.unionid, None);
    let info = wx
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(info.unionid, None);
    assert_eq!(info.openid, fixtures::openid(WEBSITE_APPID, "carol"));

    // Token errors.
    let e = wx.userinfo("nope", &token.openid).await.unwrap_err();
    assert_eq!(api_code(&e), 40001);
    assert_eq!(e.class(), ErrorClass::Relogin);
    let e = wx
        .userinfo(&token.access_token, "oSomeoneElse")
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40003);
    assert_eq!(e.class(), ErrorClass::Upstream);
    let e = wx
        .check_token(&token.access_token, "oSomeoneElse")
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40003);
    let e = wx.refresh_token(WEBSITE_APPID, "bogus").await.unwrap_err();
    assert_eq!(api_code(&e), 40030);
    assert_eq!(e.class(), ErrorClass::Relogin);
}

#[tokio::test]
async fn redirect_keeps_existing_query_and_odd_state() {
    let m = start_mock().await;
    let cb = "http://127.0.0.1:9000/cb?next=%2Fhome";
    let page = get(&qrconnect_url(&m, WEBSITE_APPID, cb, "snsapi_login", "")).await;
    assert_eq!(page.status, 200);
    let r = get(&href(&m, &page.body, "user-alice")).await;
    let loc = r.location.unwrap();
    assert!(
        loc.starts_with("http://127.0.0.1:9000/cb?next=%2Fhome&code="),
        "{loc}"
    );
    let q = query(&loc);
    assert_eq!(q["next"], "/home");
    assert_eq!(q["state"], "", "an empty state comes back empty");
}

#[tokio::test]
async fn official_account_snsapi_base_is_silent() {
    let m = start_mock().await;
    let wx = client(&m);
    let r = get(&authorize_url(
        &m,
        OFFICIAL_APPID,
        CALLBACK,
        "snsapi_base",
        "xyz789",
    ))
    .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let q = query(&r.location.unwrap());
    assert_eq!(q["state"], "xyz789");
    let token = wx
        .exchange_code(OFFICIAL_APPID, OFFICIAL_SECRET, &q["code"])
        .await
        .unwrap();
    assert_eq!(token.scope, "snsapi_base");
    assert_eq!(token.openid, fixtures::openid(OFFICIAL_APPID, "alice"));
    assert_eq!(token.unionid, None, "no unionid with snsapi_base");
    let e = wx
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 48001);
    assert_eq!(e.class(), ErrorClass::Forbidden);
}

#[tokio::test]
async fn official_account_snsapi_userinfo_shows_page() {
    let m = start_mock().await;
    let wx = client(&m);
    let page = get(&authorize_url(
        &m,
        OFFICIAL_APPID,
        CALLBACK,
        "snsapi_userinfo",
        "st",
    ))
    .await;
    assert_eq!(page.status, 200);
    let r = get(&href(&m, &page.body, "user-bob")).await;
    let q = query(&r.location.unwrap());
    assert_eq!(q["state"], "st");
    let token = wx
        .exchange_code(OFFICIAL_APPID, OFFICIAL_SECRET, &q["code"])
        .await
        .unwrap();
    assert_eq!(token.scope, "snsapi_userinfo");
    assert_eq!(token.openid, fixtures::openid(OFFICIAL_APPID, "bob"));
    assert_ne!(token.openid, fixtures::openid(WEBSITE_APPID, "bob"));
    assert_eq!(
        token.unionid.as_deref(),
        fixtures::user("bob").unwrap().unionid
    );
    let info = wx
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(info.nickname, "王小明\u{7}");
}

#[tokio::test]
async fn authorize_page_errors() {
    let m = start_mock().await;
    // Foreign redirect domain → 10003 page, HTTP 200 like WeChat.
    let p = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        "https://evil.example/cb",
        "snsapi_login",
        "s",
    ))
    .await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("redirect_uri 参数错误") && p.body.contains("10003"));
    assert!(p.content_type.starts_with("text/html"));
    let p = get(&authorize_url(
        &m,
        OFFICIAL_APPID,
        "https://localhost.evil.example/cb",
        "snsapi_base",
        "s",
    ))
    .await;
    assert!(p.body.contains("10003"));
    assert_eq!(p.location, None);
    // Missing redirect_uri.
    let p = get(&format!(
        "{}/connect/qrconnect?appid={WEBSITE_APPID}&response_type=code&scope=snsapi_login&state=s",
        m.url()
    ))
    .await;
    assert!(p.body.contains("10003"));
    // WeChat pattern-matches the link: the same parameters in another order, or without
    // response_type=code, are no login.
    for q in [
        format!("redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&appid={WEBSITE_APPID}&response_type=code&scope=snsapi_login&state=s"),
        format!("appid={WEBSITE_APPID}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&response_type=token&scope=snsapi_login&state=s"),
    ] {
        let p = get(&format!("{}/connect/qrconnect?{q}", m.url())).await;
        assert_eq!(p.status, 200);
        assert!(p.body.contains("Oops! Something went wrong"), "{q}: {}", p.body);
        assert!(!p.body.contains("user-alice"), "{q}");
    }
    // Unknown appid / appid of another kind → 40013.
    let p = get(&qrconnect_url(
        &m,
        "wx0000000000000000",
        CALLBACK,
        "snsapi_login",
        "s",
    ))
    .await;
    assert!(p.body.contains("40013"));
    let p = get(&qrconnect_url(
        &m,
        OFFICIAL_APPID,
        CALLBACK,
        "snsapi_login",
        "s",
    ))
    .await;
    assert!(p.body.contains("40013"));
    let p = get(&authorize_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_base",
        "s",
    ))
    .await;
    assert!(p.body.contains("40013"));
    // Wrong scope → 10005.
    let p = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_userinfo",
        "s",
    ))
    .await;
    assert!(p.body.contains("10005"));
    let p = get(&authorize_url(
        &m,
        OFFICIAL_APPID,
        CALLBACK,
        "snsapi_login",
        "s",
    ))
    .await;
    assert!(p.body.contains("10005"));
    // Unknown ticket → 400.
    let p = get(&format!(
        "{}/connect/confirm?ticket=nope&user=alice",
        m.url()
    ))
    .await;
    assert_eq!(p.status, 400);
    // Unknown user on a good ticket → 400.
    let page = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_login",
        "s",
    ))
    .await;
    let link = href(&m, &page.body, "user-alice").replace("user=alice", "user=mallory");
    assert_eq!(get(&link).await.status, 400);
}

#[tokio::test]
async fn configured_redirect_domains() {
    let m = start_with(MockOptions {
        redirect_domains: vec!["App.Example.com".into()],
        ..MockOptions::default()
    })
    .await;
    let ok = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        "https://app.example.com:8443/cb",
        "snsapi_login",
        "s",
    ))
    .await;
    assert!(ok.body.contains("id=\"user-alice\""));
    let bad = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_login",
        "s",
    ))
    .await;
    assert!(bad.body.contains("10003"));
}

#[tokio::test]
async fn deny_returns_only_state() {
    let m = start_mock().await;
    let page = get(&qrconnect_url(
        &m,
        WEBSITE_APPID,
        CALLBACK,
        "snsapi_login",
        "deny42",
    ))
    .await;
    let r = get(&href(&m, &page.body, "deny")).await;
    assert_eq!(r.status, 302);
    let loc = r.location.unwrap();
    assert_eq!(loc, format!("{CALLBACK}?state=deny42"));
}

#[tokio::test]
async fn code_rules() {
    let m = start_mock().await;
    let wx = client(&m);
    let (code, _) = website_login(&m, "alice", "s").await;
    wx.exchange_code(WEBSITE_APPID, WEBSITE_SECRET, &code)
        .await
        .unwrap();

    // Reuse → 40163, relogin.
    let e = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, &code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40163);
    assert_eq!(e.class(), ErrorClass::Relogin);
    assert!(!e.is_config_error());
    assert_no_leak(&e, &[WEBSITE_SECRET, &code]);

    // Unknown code → 40029.
    let e = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, "NOSUCHCODE123")
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40029);
    assert_eq!(e.class(), ErrorClass::Relogin);
    assert_no_leak(&e, &[WEBSITE_SECRET, "NOSUCHCODE123"]);

    // Code minted for another app → 40029.
    let (code, _) = website_login(&m, "alice", "s").await;
    let e = wx
        .exchange_code(MOBILE_APPID, MOBILE_SECRET, &code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40029);

    // Expired → 42003.
    let c = mint(&m, MOBILE_APPID, "alice", "&ttl_secs=0").await;
    let code = c["code"].as_str().unwrap().to_string();
    let e = wx
        .exchange_code(MOBILE_APPID, MOBILE_SECRET, &code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 42003);
    assert_eq!(e.class(), ErrorClass::Relogin);
    assert_no_leak(&e, &[MOBILE_SECRET, &code]);

    // Wrong secret → 40125, a configuration error, classed Upstream.
    let c = mint(&m, MOBILE_APPID, "alice", "").await;
    let code = c["code"].as_str().unwrap().to_string();
    let wrong = "wrong-secret-value-123456";
    let e = wx
        .exchange_code(MOBILE_APPID, wrong, &code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40125);
    assert_eq!(e.class(), ErrorClass::Upstream);
    assert!(e.is_config_error());
    assert_no_leak(&e, &[wrong, &code]);

    // Unknown appid → 40013; missing secret → 41004.
    let e = wx
        .exchange_code("wx0000000000000000", MOBILE_SECRET, &code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40013);
    assert!(e.is_config_error());
    assert_no_leak(&e, &[MOBILE_SECRET, &code]);
    let e = wx.exchange_code(MOBILE_APPID, "", &code).await.unwrap_err();
    assert_eq!(api_code(&e), 41004);
    assert!(e.is_config_error());

    // The code survived the failed attempts (they failed before touching it).
    let t = wx
        .exchange_code(MOBILE_APPID, MOBILE_SECRET, &code)
        .await
        .unwrap();
    assert_eq!(t.openid, c["openid"].as_str().unwrap());
}

#[tokio::test]
async fn mobile_app_code() {
    let m = start_mock().await;
    let wx = client(&m);
    let c = mint(&m, MOBILE_APPID, "alice", "").await;
    let t = wx
        .exchange_code(MOBILE_APPID, MOBILE_SECRET, c["code"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(t.scope, "snsapi_userinfo");
    assert_eq!(t.openid, fixtures::openid(MOBILE_APPID, "alice"));
    assert_eq!(
        t.unionid.as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    let info = wx.userinfo(&t.access_token, &t.openid).await.unwrap();
    assert_eq!(info.nickname, "Alice 🐼 小爱");

    // Control endpoint input validation.
    let (s, _) = post_json(&format!("{}/mock/code?appid=wx0&user=alice", m.url())).await;
    assert_eq!(s, 400);
    let (s, _) = post_json(&format!(
        "{}/mock/code?appid={MOBILE_APPID}&user=zed",
        m.url()
    ))
    .await;
    assert_eq!(s, 400);
    let (s, _) = post_json(&format!(
        "{}/mock/code?appid={MOBILE_APPID}&user=alice&ttl_secs=x",
        m.url()
    ))
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn mini_program_login_and_user_data() {
    let m = start_mock().await;
    let wx = client(&m);
    let c = mint(&m, MINI_APPID, "alice", "").await;
    let code = c["code"].as_str().unwrap();
    let js = wx
        .jscode2session(MINI_APPID, MINI_SECRET, code)
        .await
        .unwrap();
    assert_eq!(js.openid, fixtures::openid(MINI_APPID, "alice"));
    assert_eq!(
        js.unionid.as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    assert!(!format!("{js:?}").contains(&js.session_key));

    let data = crypto::decrypt_and_verify(
        &js.session_key,
        c["encryptedData"].as_str().unwrap(),
        c["iv"].as_str().unwrap(),
        MINI_APPID,
    )
    .unwrap();
    assert_eq!(data.open_id.as_deref(), Some(js.openid.as_str()));
    assert_eq!(data.union_id, js.unionid);
    // Today's WeChat: the placeholder profile for everyone (2022-11).
    assert_eq!(
        data.nick_name.as_deref(),
        Some(fixtures::PLACEHOLDER_NICKNAME)
    );
    assert_eq!(
        data.avatar_url.as_deref(),
        Some(fixtures::PLACEHOLDER_AVATAR)
    );
    assert_eq!(data.watermark_appid, MINI_APPID);
    assert!(data.watermark_timestamp.is_some());

    // Single use.
    let e = wx
        .jscode2session(MINI_APPID, MINI_SECRET, code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40163);
    assert_no_leak(&e, &[MINI_SECRET, code]);

    // bob's control character survives encryption; carol has no unionid.
    let c = mint(&m, MINI_APPID, "carol", "").await;
    let js = wx
        .jscode2session(MINI_APPID, MINI_SECRET, c["code"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(js.unionid, None);
    let data = crypto::decrypt_and_verify(
        &js.session_key,
        c["encryptedData"].as_str().unwrap(),
        c["iv"].as_str().unwrap(),
        MINI_APPID,
    )
    .unwrap();
    assert_eq!(data.union_id, None);

    // Foreign watermark is rejected.
    let c = mint(&m, MINI_APPID, "bob", "&watermark_appid=wx9999999999999999").await;
    let js = wx
        .jscode2session(MINI_APPID, MINI_SECRET, c["code"].as_str().unwrap())
        .await
        .unwrap();
    let e = crypto::decrypt_and_verify(
        &js.session_key,
        c["encryptedData"].as_str().unwrap(),
        c["iv"].as_str().unwrap(),
        MINI_APPID,
    )
    .unwrap_err();
    assert_eq!(e, CryptoError::WatermarkMismatch);
    assert!(!e.to_string().contains(&js.session_key));

    // Data from an earlier wx.login (other session key) does not decrypt.
    let old = mint(&m, MINI_APPID, "alice", "").await;
    let fresh = mint(&m, MINI_APPID, "alice", "").await;
    let js = wx
        .jscode2session(MINI_APPID, MINI_SECRET, fresh["code"].as_str().unwrap())
        .await
        .unwrap();
    let r = crypto::decrypt_and_verify(
        &js.session_key,
        old["encryptedData"].as_str().unwrap(),
        old["iv"].as_str().unwrap(),
        MINI_APPID,
    );
    assert!(r.is_err());

    // Code rules apply here too.
    let c = mint(&m, MINI_APPID, "alice", "&ttl_secs=0").await;
    let e = wx
        .jscode2session(MINI_APPID, MINI_SECRET, c["code"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 42003);
    let c = mint(&m, MINI_APPID, "alice", "").await;
    let code = c["code"].as_str().unwrap();
    let e = wx
        .jscode2session(MINI_APPID, "bad-secret-xyz", code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40125);
    assert!(e.is_config_error());
    assert_no_leak(&e, &["bad-secret-xyz", code]);
    let e = wx
        .jscode2session("wx0000000000000000", MINI_SECRET, code)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40013);
    let e = wx
        .jscode2session(MINI_APPID, MINI_SECRET, "unknowncode")
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 40029);
    // A mini-program code is not an OAuth code.
    let e = wx
        .exchange_code(MINI_APPID, MINI_SECRET, code)
        .await
        .unwrap_err();
    assert!(e.is_config_error() || e.class() == ErrorClass::Relogin);
}

#[tokio::test]
async fn failure_modes() {
    let m = start_mock().await;
    let wx = client(&m);

    async fn try_exchange(m: &MockServer, wx: &WechatClient) -> (Result<(), WechatError>, String) {
        let c = mint(m, MOBILE_APPID, "alice", "").await;
        let code = c["code"].as_str().unwrap().to_string();
        let r = wx
            .exchange_code(MOBILE_APPID, MOBILE_SECRET, &code)
            .await
            .map(|_| ());
        (r, code)
    }

    type Check = fn(&WechatError) -> bool;
    let cases: [(&str, Check); 5] = [
        ("busy", |e| {
            api_code(e) == -1 && e.class() == ErrorClass::Busy
        }),
        ("ratelimit", |e| {
            api_code(e) == 45011 && e.class() == ErrorClass::Busy
        }),
        ("garbage", |e| *e == WechatError::Garbage),
        ("status500", |e| *e == WechatError::Status(500)),
        ("empty_gbk", |e| *e == WechatError::Garbage),
    ];
    for (mode, check) in cases {
        fail(&m, mode, "").await;
        let (r, code) = try_exchange(&m, &wx).await;
        let e = r.unwrap_err();
        assert!(check(&e), "{mode}: {e:?}");
        if mode != "busy" && mode != "ratelimit" {
            assert_eq!(e.class(), ErrorClass::Upstream, "{mode}");
        }
        assert_no_leak(&e, &[MOBILE_SECRET, &code]);
        // count=1 by default: the next call is normal again.
        let (r, _) = try_exchange(&m, &wx).await;
        r.unwrap();
    }

    // empty_gbk really is an empty text/html; charset=gbk body.
    fail(&m, "empty_gbk", "").await;
    let raw = get(&format!("{}/sns/auth?access_token=x&openid=y", m.url())).await;
    assert_eq!(raw.content_type, "text/html; charset=gbk");
    assert!(raw.body.is_empty());

    // count=N fails N calls; reset clears.
    fail(&m, "busy", "&count=2").await;
    assert!(try_exchange(&m, &wx).await.0.is_err());
    assert!(try_exchange(&m, &wx).await.0.is_err());
    try_exchange(&m, &wx).await.0.unwrap();
    fail(&m, "status500", "&count=5").await;
    assert!(try_exchange(&m, &wx).await.0.is_err());
    let (s, _) = post_json(&format!("{}/mock/reset", m.url())).await;
    assert_eq!(s, 200);
    try_exchange(&m, &wx).await.0.unwrap();

    // slow → Timeout with a short client timeout; a patient client gets through.
    fail(&m, "slow", "&delay_ms=2000").await;
    let impatient = WechatClient::new(
        &m.url(),
        Duration::from_millis(300),
        wxgate::common::metrics::ApiCalls::default(),
    )
    .unwrap();
    let c = mint(&m, MOBILE_APPID, "alice", "").await;
    let code = c["code"].as_str().unwrap();
    let started = std::time::Instant::now();
    let e = impatient
        .exchange_code(MOBILE_APPID, MOBILE_SECRET, code)
        .await
        .unwrap_err();
    assert_eq!(e, WechatError::Timeout);
    assert_eq!(e.class(), ErrorClass::Upstream);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_no_leak(&e, &[MOBILE_SECRET, code]);
    fail(&m, "slow", "&delay_ms=100").await;
    let (r, _) = try_exchange(&m, &wx).await;
    r.unwrap();

    // Bad control input.
    let (s, _) = post_json(&format!("{}/mock/fail?mode=explode", m.url())).await;
    assert_eq!(s, 400);

    // Call counts.
    let calls: Value =
        serde_json::from_str(&get(&format!("{}/mock/calls", m.url())).await.body).unwrap();
    assert!(calls["access_token"].as_u64().unwrap() >= 15, "{calls}");
    assert_eq!(calls["auth"].as_u64(), Some(1));
    assert_eq!(calls["jscode2session"].as_u64(), Some(0));
}

#[tokio::test]
async fn api_errors_are_text_plain_http_200() {
    let m = start_mock().await;
    let r = get(&format!(
        "{}/sns/oauth2/access_token?appid={WEBSITE_APPID}&secret={WEBSITE_SECRET}&code=x&grant_type=authorization_code",
        m.url()
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errcode"], 40029);
    assert!(v["errmsg"].as_str().unwrap().starts_with("invalid code"));
    let r = get(&format!("{}/sns/oauth2/access_token?appid={WEBSITE_APPID}&secret={WEBSITE_SECRET}&grant_type=authorization_code", m.url())).await;
    assert!(r.body.contains("41008"));
    assert_eq!(get(&format!("{}/sns/nothing", m.url())).await.status, 404);
}

#[tokio::test]
async fn unreachable_and_stopped() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let wx = WechatClient::new(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
        wxgate::common::metrics::ApiCalls::default(),
    )
    .unwrap();
    let e = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, "CODE4242")
        .await
        .unwrap_err();
    assert_eq!(e, WechatError::Unreachable);
    assert_eq!(e.class(), ErrorClass::Upstream);
    assert_no_leak(
        &e,
        &[WEBSITE_SECRET, "CODE4242", "127.0.0.1", "access_token"],
    );
    let e = wx
        .jscode2session(MINI_APPID, MINI_SECRET, "CODE4242")
        .await
        .unwrap_err();
    assert_eq!(e, WechatError::Unreachable);

    // Dropping the MockServer stops it.
    let m = start_mock().await;
    // (Non-2xx statuses other than 5xx are Status too: a path prefix the mock does not serve.)
    let lost = WechatClient::new(
        &format!("{}/prefix/", m.url()),
        Duration::from_secs(2),
        wxgate::common::metrics::ApiCalls::default(),
    )
    .unwrap();
    let e = lost
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, "CODE4242")
        .await
        .unwrap_err();
    assert_eq!(e, WechatError::Status(404));
    assert_no_leak(&e, &[WEBSITE_SECRET, "CODE4242"]);
    let wx = client(&m);
    let (s, _) = post_json(&format!("{}/mock/reset", m.url())).await;
    assert_eq!(s, 200);
    drop(m);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = wx
        .exchange_code(WEBSITE_APPID, WEBSITE_SECRET, "x")
        .await
        .unwrap_err();
    assert_eq!(e, WechatError::Unreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_logins() {
    let m = start_mock().await;
    let wx = client(&m);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let wx = wx.clone();
        let url = m.url();
        let user = ["alice", "bob", "carol"][i % 3];
        tasks.push(tokio::spawn(async move {
            let (_, c) =
                post_json(&format!("{url}/mock/code?appid={MOBILE_APPID}&user={user}")).await;
            let t = wx
                .exchange_code(MOBILE_APPID, MOBILE_SECRET, c["code"].as_str().unwrap())
                .await
                .unwrap();
            let info = wx.userinfo(&t.access_token, &t.openid).await.unwrap();
            assert_eq!(info.nickname, fixtures::user(user).unwrap().nickname);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
