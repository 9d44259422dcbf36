//! Issue 4: mobile-app and mini-program logins (JSON endpoints, bearer sessions).

mod common;

use common::*;
use http::{Request, StatusCode};
use serde_json::{json, Value};

async fn mint(env: &Env, appid: &str, user: &str, extra: &str) -> Value {
    let r = send(
        &client(),
        Request::post(format!(
            "{}/mock/code?appid={appid}&user={user}{extra}",
            env.mock.url()
        ))
        .body(empty())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

async fn post_json(env: &Env, path: &str, body: &str) -> Reply {
    send(
        &client(),
        Request::post(env.gw.url(path))
            .header("content-type", "application/json")
            .body(common::body(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn with_bearer(env: &Env, method: &str, path: &str, token: &str) -> Reply {
    send(
        &client(),
        Request::builder()
            .method(method)
            .uri(env.gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json")
            .body(empty())
            .unwrap(),
    )
    .await
}

async fn app_login(env: &Env, user: &str) -> Value {
    let code = mint(env, fixtures::MOBILE_APPID, user, "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        env,
        "/_wxgate/app/login",
        &json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

async fn mini_login(env: &Env, user: &str, with_data: bool) -> Value {
    mini_login_with(env, user, with_data, "").await
}

/// A mini-program login; `extra`: more `/mock/code` parameters (`&profile=user`: the user's own
/// profile in `encryptedData`, as before 2022-11).
async fn mini_login_with(env: &Env, user: &str, with_data: bool, extra: &str) -> Value {
    let m = mint(env, fixtures::MINI_APPID, user, extra).await;
    let body = if with_data {
        json!({"code": m["code"], "encryptedData": m["encryptedData"], "iv": m["iv"]})
    } else {
        json!({"code": m["code"]})
    };
    let r = post_json(env, "/_wxgate/miniprogram/login", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn app_login_end_to_end() {
    let env = env("").await;
    let v = app_login(&env, "alice").await;
    assert_eq!(
        v["openid"],
        fixtures::openid(fixtures::MOBILE_APPID, "alice")
    );
    assert_eq!(
        v["unionid"],
        fixtures::user("alice").unwrap().unionid.unwrap()
    );
    assert_eq!(v["expires_in"], 604800);
    let token = v["token"].as_str().unwrap();
    assert!(token.len() >= 22);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{v}");

    // The bearer token works on protected paths; the upstream sees identity, not the token.
    let r = with_bearer(&env, "GET", "/api/orders", token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.echoed_header("x-wechat-source").as_deref(),
        Some("mobile_app")
    );
    assert_eq!(
        r.echoed_header("x-wechat-appid").as_deref(),
        Some(fixtures::MOBILE_APPID)
    );
    assert_eq!(
        r.echoed_header("x-wechat-nickname").as_deref(),
        Some("Alice%20%F0%9F%90%BC%20%E5%B0%8F%E7%88%B1")
    );
    assert_eq!(
        r.echoed_header("authorization"),
        None,
        "the gateway's bearer token is not forwarded"
    );
    // /auth and /userinfo accept it too.
    let r = with_bearer(&env, "GET", "/_wxgate/auth", token).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.headers["x-wechat-source"], "mobile_app");
    let r = with_bearer(&env, "GET", "/_wxgate/userinfo", token).await;
    assert_eq!(r.json()["source"], "mobile_app");
    assert!(!r.text().contains(token));
    // /logout revokes it.
    let r = with_bearer(&env, "POST", "/_wxgate/logout", token).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a bearer logout is JSON, not a redirect"
    );
    assert_eq!(r.json(), serde_json::json!({"ok": true}));
    assert!(r.headers.get("set-cookie").is_none(), "no cookie to expire");
    let r = with_bearer(&env, "GET", "/api/orders", token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthenticated");
}

#[tokio::test]
async fn foreign_authorization_headers_pass_with_cookie_sessions() {
    // A cookie session plus the app's own Basic auth: only the gateway's bearer is stripped.
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "alice").await;
    let r = send(
        &client(),
        Request::get(env.gw.url("/x"))
            .header("cookie", b.cookie_header())
            .header("authorization", "Basic dXNlcjpwYXNz")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.echoed_header("authorization").as_deref(),
        Some("Basic dXNlcjpwYXNz")
    );
}

#[tokio::test]
async fn mini_program_login_with_and_without_encrypted_data() {
    let env = env("").await;
    let v = mini_login(&env, "alice", true).await;
    assert_eq!(v["openid"], fixtures::openid(fixtures::MINI_APPID, "alice"));
    assert_eq!(
        v["unionid"],
        fixtures::user("alice").unwrap().unionid.unwrap()
    );
    let token = v["token"].as_str().unwrap();
    let r = with_bearer(&env, "GET", "/profile", token).await;
    assert_eq!(
        r.echoed_header("x-wechat-source").as_deref(),
        Some("mini_program")
    );
    // Today's encryptedData has the placeholder profile ("微信用户", a grey avatar): nobody's
    // name, so none is passed on.
    assert_eq!(r.echoed_header("x-wechat-nickname"), None);
    assert_eq!(r.echoed_header("x-wechat-avatar"), None);
    let info = with_bearer(&env, "GET", "/_wxgate/userinfo", token)
        .await
        .json();
    assert!(!info.to_string().contains("微信用户"), "{info}");
    // A real profile in it (as before 2022-11) is passed on.
    let v = mini_login_with(&env, "alice", true, "&profile=user").await;
    let r = with_bearer(&env, "GET", "/profile", v["token"].as_str().unwrap()).await;
    assert_eq!(
        r.echoed_header("x-wechat-nickname").as_deref(),
        Some("Alice%20%F0%9F%90%BC%20%E5%B0%8F%E7%88%B1")
    );
    assert_eq!(
        r.echoed_header("x-wechat-avatar").as_deref(),
        Some(fixtures::user("alice").unwrap().avatar)
    );
    let u = with_bearer(&env, "GET", "/_wxgate/userinfo", token).await;
    let text = u.text();
    assert!(
        !text.contains("session_key") && !text.contains("sessionKey"),
        "{text}"
    );

    // Without encryptedData: openid/unionid from jscode2session only.
    let v = mini_login(&env, "bob", false).await;
    assert_eq!(
        v["unionid"],
        fixtures::user("bob").unwrap().unionid.unwrap()
    );
    // A user without unionid.
    let v = mini_login(&env, "carol", true).await;
    assert_eq!(v["unionid"], Value::Null);
    let r = with_bearer(&env, "GET", "/p", v["token"].as_str().unwrap()).await;
    assert_eq!(r.echoed_header("x-wechat-unionid"), None);
}

#[tokio::test]
async fn mini_program_unionid_from_decrypted_data() {
    let env = env("").await;
    let m = mint(&env, fixtures::MINI_APPID, "alice", "&unionid=data").await;
    // Without the data, jscode2session gives no unionid ...
    let r = post_json(
        &env,
        "/_wxgate/miniprogram/login",
        &json!({"code": m["code"]}).to_string(),
    )
    .await;
    assert_eq!(r.json()["unionid"], Value::Null);
    // ... with it, the decrypted data does.
    let m = mint(&env, fixtures::MINI_APPID, "alice", "&unionid=data").await;
    let body = json!({"code": m["code"], "encryptedData": m["encryptedData"], "iv": m["iv"]});
    let r = post_json(&env, "/_wxgate/miniprogram/login", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["unionid"],
        fixtures::user("alice").unwrap().unionid.unwrap()
    );
}

#[tokio::test]
async fn same_unionid_across_website_app_and_mini_program() {
    let env = env("").await;
    let mut b = Browser::pc();
    login(&env, &mut b, "/", "bob").await;
    let web = fetch(&env, &mut b, "/")
        .await
        .echoed_header("x-wechat-unionid")
        .unwrap();
    let app = app_login(&env, "bob").await;
    let app_u = with_bearer(&env, "GET", "/", app["token"].as_str().unwrap())
        .await
        .echoed_header("x-wechat-unionid")
        .unwrap();
    let mini = mini_login(&env, "bob", true).await;
    let mini_u = with_bearer(&env, "GET", "/", mini["token"].as_str().unwrap())
        .await
        .echoed_header("x-wechat-unionid")
        .unwrap();
    assert_eq!(web, app_u);
    assert_eq!(web, mini_u);
    // ... while the openids differ per app.
    assert_ne!(app["openid"], mini["openid"]);
}

#[tokio::test]
async fn foreign_watermark_rejected() {
    let env = env("").await;
    let m = mint(
        &env,
        fixtures::MINI_APPID,
        "alice",
        "&watermark_appid=wxOTHERAPP00000000",
    )
    .await;
    let body = json!({"code": m["code"], "encryptedData": m["encryptedData"], "iv": m["iv"]});
    let r = post_json(&env, "/_wxgate/miniprogram/login", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // One answer for every decrypt failure (issue 11 item 8): no word about the watermark.
    assert_eq!(r.json()["error"], "invalid_encrypted_data", "{}", r.text());
}

#[tokio::test]
async fn every_bad_input_gets_a_json_4xx() {
    let env = env("").await;
    let m = mint(&env, fixtures::MINI_APPID, "alice", "").await;
    let enc = m["encryptedData"].as_str().unwrap().to_string();
    let iv = m["iv"].as_str().unwrap().to_string();
    // Each case: (path, content-type, body, expected status, words in the message).
    let long = format!("{{\"code\":\"{}\"}}", "a".repeat(40_000));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "/_wxgate/app/login",
            "application/json",
            "not json".into(),
            400,
            "not valid JSON",
        ),
        (
            "/_wxgate/app/login",
            "text/plain",
            "{\"code\":\"x\"}".into(),
            415,
            "application/json",
        ),
        (
            "/_wxgate/app/login",
            "",
            "{\"code\":\"x\"}".into(),
            415,
            "application/json",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            "[1,2]".into(),
            400,
            "JSON object",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            "{}".into(),
            400,
            "`code` is required",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            "{\"code\":42}".into(),
            400,
            "`code` must be a string",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            "{\"code\":\"\"}".into(),
            400,
            "must not be empty",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            "{\"code\":\"nosuchcode\"}".into(),
            400,
            "invalid",
        ),
        (
            "/_wxgate/app/login",
            "application/json",
            long,
            413,
            "larger than",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json",
            "{\"code\":null}".into(),
            400,
            "`code` is required",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json",
            "{\"code\":\"nosuchcode\"}".into(),
            400,
            "invalid",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json",
            json!({"code":"c","encryptedData": enc}).to_string(),
            400,
            "`iv` is required",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json",
            json!({"code":"c","iv": iv}).to_string(),
            400,
            "`encryptedData` is required",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json",
            json!({"code":"c","iv": 5, "encryptedData": enc}).to_string(),
            400,
            "`iv` must be a string",
        ),
        (
            "/_wxgate/miniprogram/login",
            "application/json; charset=utf-8",
            "{\"code\":".into(),
            400,
            "not valid JSON",
        ),
    ];
    for (path, ct, body, status, words) in cases {
        let mut req = Request::post(env.gw.url(path));
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let r = send(&client(), req.body(common::body(body.clone())).unwrap()).await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{path} {}: {}",
            &body[..body.len().min(60)],
            r.text()
        );
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v = r.json();
        assert!(v["error"].is_string());
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(words),
            "{path}: message {msg:?} lacks {words:?}"
        );
    }
    // Wrong method.
    let r = send(
        &client(),
        Request::get(env.gw.url("/_wxgate/app/login"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn used_and_expired_codes() {
    let env = env("").await;
    let code = mint(&env, fixtures::MOBILE_APPID, "alice", "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({ "code": code }).to_string();
    assert_eq!(
        post_json(&env, "/_wxgate/app/login", &body).await.status,
        StatusCode::OK
    );
    let r = post_json(&env, "/_wxgate/app/login", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_code");
    assert!(!r.text().contains(&code), "the code is not echoed");

    let code = mint(&env, fixtures::MOBILE_APPID, "alice", "&ttl_secs=0").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &env,
        "/_wxgate/app/login",
        &json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let m = mint(&env, fixtures::MINI_APPID, "alice", "").await;
    let body = json!({"code": m["code"]}).to_string();
    assert_eq!(
        post_json(&env, "/_wxgate/miniprogram/login", &body)
            .await
            .status,
        StatusCode::OK
    );
    let r = post_json(&env, "/_wxgate/miniprogram/login", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let m = mint(&env, fixtures::MINI_APPID, "alice", "&ttl_secs=0").await;
    let r = post_json(
        &env,
        "/_wxgate/miniprogram/login",
        &json!({"code": m["code"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A code minted for the mobile app is not a mini-program code.
    let code = mint(&env, fixtures::MOBILE_APPID, "alice", "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &env,
        "/_wxgate/miniprogram/login",
        &json!({"code": code}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn broken_encrypted_data_inputs() {
    let env = env("").await;
    type Mangle = Box<dyn Fn(&str, &str) -> (String, String)>;
    let cases: Vec<(Mangle, &str)> = vec![
        (
            Box::new(|_e, i| ("%%%not base64%%%".into(), i.into())),
            "base64",
        ),
        (Box::new(|e, _i| (e.into(), "@@@@".into())), "base64"),
        (Box::new(|e, _i| (e.into(), "AAAAAAAA".into())), "iv"),
        (
            Box::new(|_e, i| ("QUJD".into(), i.into())),
            "multiple of 16",
        ),
        // A valid block of garbage under the right key: bad padding or not JSON.
        (
            Box::new(|e, i| (e[..e.len().min(44)].to_string(), i.into())),
            "",
        ),
    ];
    for (f, words) in cases {
        let m = mint(&env, fixtures::MINI_APPID, "alice", "").await;
        let (enc, iv) = f(
            m["encryptedData"].as_str().unwrap(),
            m["iv"].as_str().unwrap(),
        );
        let body = json!({"code": m["code"], "encryptedData": enc, "iv": iv});
        let r = post_json(&env, "/_wxgate/miniprogram/login", &body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        // Whatever broke (`words`), the same answer: a difference would be an oracle.
        assert_eq!(
            r.json(),
            json!({"error": "invalid_encrypted_data",
                   "message": "encryptedData could not be decrypted or verified"}),
            "{words}"
        );
    }
    // Wrong iv (right length): decrypts to garbage → bad padding or not JSON, never a panic.
    let m = mint(&env, fixtures::MINI_APPID, "alice", "").await;
    let body = json!({"code": m["code"], "encryptedData": m["encryptedData"], "iv": "AAAAAAAAAAAAAAAAAAAAAA=="});
    let r = post_json(&env, "/_wxgate/miniprogram/login", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn random_or_revoked_bearer_is_401() {
    let env = env("").await;
    for t in [
        wxgate::session::SessionId::random().encode(),
        "x".into(),
        "a".repeat(5000),
        "Bearer".into(),
    ] {
        let r = with_bearer(&env, "GET", "/api", &t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = with_bearer(&env, "GET", "/_wxgate/auth", &t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test]
async fn access_rules_apply_to_app_logins() {
    let env = env("[access]\nrequire_unionid = true\n").await;
    let code = mint(&env, fixtures::MOBILE_APPID, "carol", "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &env,
        "/_wxgate/app/login",
        &json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "forbidden");
    let m = mint(&env, fixtures::MINI_APPID, "carol", "").await;
    let r = post_json(
        &env,
        "/_wxgate/miniprogram/login",
        &json!({"code": m["code"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unconfigured_endpoints_say_so() {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = config_toml(up.addr, &mock.url(), "");
    let gw = start_gateway(&toml).await;
    let env = Env { up, mock, gw };
    let r = post_json(&env, "/_wxgate/app/login", "{\"code\":\"x\"}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("not configured"));
    let r = post_json(&env, "/_wxgate/miniprogram/login", "{\"code\":\"x\"}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn wechat_sample_vector_decrypts() {
    // WeChat's published sample (official decryption demos, wechatpy's tests).
    let session_key = "tiihtNczf5v6AKRyjwEUhQ==";
    let iv = "r7BXXKkLb8qrSNn05n0qiA==";
    let enc = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    let data = wxgate::providers::wechat::crypto::decrypt_and_verify(
        session_key,
        enc,
        iv,
        "wx4f4bc4dec97d474b",
    )
    .unwrap();
    assert_eq!(
        data.open_id.as_deref(),
        Some("oGZUI0egBJY1zhBYw2KhdUfwVJJE")
    );
    assert_eq!(data.nick_name.as_deref(), Some("Band"));
    assert!(wxgate::providers::wechat::crypto::decrypt_and_verify(
        session_key,
        enc,
        iv,
        "wxSOMEOTHERAPP"
    )
    .is_err());
}

#[tokio::test]
async fn json_refusal_carries_reason_and_identifiers() {
    let only = fixtures::openid(fixtures::MOBILE_APPID, "alice");
    let env = env(&format!("[access]\nallow_openids = [\"{only}\"]\n")).await;
    let code = mint(&env, fixtures::MOBILE_APPID, "bob", "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &env,
        "/_wxgate/app/login",
        &json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "forbidden");
    assert_eq!(v["reason"], "not_allowed");
    assert_eq!(v["openid"], fixtures::openid(fixtures::MOBILE_APPID, "bob"));
    assert_eq!(
        v["unionid"],
        fixtures::user("bob").unwrap().unionid.unwrap()
    );

    let env = self::env("[access]\nrequire_unionid = true\n").await;
    let code = mint(&env, fixtures::MOBILE_APPID, "carol", "").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_json(
        &env,
        "/_wxgate/app/login",
        &json!({ "code": code }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let v = r.json();
    assert_eq!(v["reason"], "unionid_required");
    assert_eq!(
        v["openid"],
        fixtures::openid(fixtures::MOBILE_APPID, "carol")
    );
    assert!(v.get("unionid").is_none(), "{v}");
}

#[tokio::test]
async fn json_endpoints_answer_405_in_json_with_allow() {
    let env = env("").await;
    for (path, allow) in [
        ("/_wxgate/app/login", "POST"),
        ("/_wxgate/miniprogram/login", "POST"),
        ("/_wxgate/miniprogram/phone", "POST"),
        ("/_wxgate/userinfo", "GET, HEAD"),
    ] {
        let method = if allow == "POST" { "GET" } else { "DELETE" };
        // A browser-like Accept: still JSON, these are API endpoints.
        let r = send(
            &client(),
            Request::builder()
                .method(method)
                .uri(env.gw.url(path))
                .header("accept", "text/html,*/*")
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(r.headers["allow"], allow, "{path}");
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(r.json()["error"], "method_not_allowed", "{path}");
    }
    // A page endpoint keeps its page for browsers.
    let r = send(
        &client(),
        Request::builder()
            .method("PUT")
            .uri(env.gw.url("/_wxgate/login"))
            .header("accept", "text/html")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET, HEAD");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}
