//! WeCom (企业微信) login against the mock WeCom: the exact in-app authorize and SSO URLs, full
//! PC and in-app logins, the choice page when WeChat serves the browser too, the one corp
//! access token (cached across logins, renewed once for concurrent logins after it died),
//! non-members, `access.allow_wecom_userids`, spoofed `X-WeCom-*` headers and the 60020 page.

#![allow(dead_code)]

mod common;
mod link_app;

use common::*;
use http::{Request, StatusCode};

const WECOM_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 wxwork/4.1.10 MicroMessenger/7.0.1 Language/zh";

/// The gateway with `[wecom]` (and the WeChat website app when `website`) pointed at a fresh
/// mock; `extra` is appended (sections of its own).
async fn wecom_env(website: bool, extra: &str) -> Env {
    wecom_env_full(website, "", extra).await
}

/// [`wecom_env`] with `wecom_lines` appended to the `[wecom]` section (`secret = ...` there
/// replaces the mock's).
async fn wecom_env_full(website: bool, wecom_lines: &str, extra: &str) -> Env {
    let up = start_upstream().await;
    let mock = start_mock(wxgate::tools::mock::MockOptions::default()).await;
    let m = mock.url();
    let website = if website {
        format!(
            "[wechat.website]\nappid = \"{}\"\nsecret = \"{}\"\n",
            fixtures::WEBSITE_APPID,
            fixtures::WEBSITE_SECRET
        )
    } else {
        String::new()
    };
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"

[upstream]
url = "http://{up}"
timeout_secs = 2

[wechat]
api_base = "{m}"
open_base = "{m}"
timeout_ms = 2000

{website}
{wecom}
[session]
cookie_secret = "{SECRET}"

{extra}
"#,
        up = up.addr,
        wecom = if wecom_lines.contains("secret =") {
            fixtures::wecom_toml(&m)
                .replace(&format!("secret = \"{}\"\n", fixtures::WECOM_SECRET), "")
        } else {
            fixtures::wecom_toml(&m)
        }
        .trim_end()
        .to_string()
            + "\n"
            + wecom_lines
            + "\n",
    );
    let gw = start_gateway(&toml).await;
    Env { up, mock, gw }
}

fn wecom_browser() -> Browser {
    Browser {
        ua: WECOM_UA.into(),
        cookies: vec![],
    }
}

async fn mock_json(env: &Env, method: &str, path: &str) -> serde_json::Value {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}{}", env.mock.url(), path))
        .body(empty())
        .unwrap();
    send(&client(), req).await.json()
}

async fn gettoken_calls(env: &Env) -> u64 {
    mock_json(env, "GET", "/mock/wecom/calls").await["gettoken"]
        .as_u64()
        .unwrap()
}

/// `/login` for this browser, then the callback with a code the mock mints for `user` (no
/// login page): the callback's answer.
async fn quick_login(env: &Env, b: &mut Browser, user: &str) -> Reply {
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2Fhome")).await;
    assert_eq!(r.status, StatusCode::FOUND, "login: {}", r.text());
    let state = state_of(&r.location());
    let code = mock_json(env, "POST", &format!("/mock/wecom/code?user={user}")).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    b.nav(
        &env.gw
            .url(&format!("/_wxgate/callback?code={code}&state={state}")),
    )
    .await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn exact_sso_and_in_app_urls() {
    let env = wecom_env(false, "").await;
    let callback = enc(&env.gw.url("/_wxgate/callback"));
    let (corp, agent, m) = (
        fixtures::WECOM_CORP_ID,
        fixtures::WECOM_AGENT_ID,
        env.mock.url(),
    );

    let pc = Browser::pc()
        .nav(&env.gw.url("/_wxgate/login?rd=%2F"))
        .await;
    assert_eq!(pc.status, StatusCode::FOUND);
    let url = pc.location();
    let state = state_of(&url);
    assert_eq!(
        url,
        format!("{m}/wwlogin/sso/login?login_type=CorpApp&appid={corp}&agentid={agent}&redirect_uri={callback}&state={state}")
    );

    let in_app = wecom_browser()
        .nav(&env.gw.url("/_wxgate/login?rd=%2F"))
        .await;
    assert_eq!(in_app.status, StatusCode::FOUND);
    let url = in_app.location();
    let state = state_of(&url);
    assert_eq!(
        url,
        format!("{m}/connect/oauth2/authorize?appid={corp}&redirect_uri={callback}&response_type=code&scope=snsapi_base&state={state}&agentid={agent}#wechat_redirect")
    );
    env.gw.stop().await;
}

/// What a WeCom member's requests carry upstream, on `/auth` and `/userinfo`.
async fn check_member_identity(env: &Env, b: &mut Browser, userid: &str) {
    let r = fetch(env, b, "/home").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.echoed_header("x-wecom-userid").as_deref(), Some(userid));
    assert_eq!(
        r.echoed_header("x-wecom-corpid").as_deref(),
        Some(fixtures::WECOM_CORP_ID)
    );
    assert_eq!(r.echoed_header("x-wechat-source").as_deref(), Some("wecom"));
    for h in ["x-wechat-openid", "x-wechat-unionid", "x-wechat-appid"] {
        assert_eq!(r.echoed_header(h), None, "{h}");
    }

    let info = fetch(env, b, "/_wxgate/userinfo").await.json();
    assert_eq!(info["wecom_userid"], userid);
    assert_eq!(info["wecom_corpid"], fixtures::WECOM_CORP_ID);
    assert_eq!(info["source"], "wecom");
    assert!(info.get("openid").is_none() && info.get("unionid").is_none());

    let auth = fetch(env, b, "/_wxgate/auth").await;
    assert_eq!(auth.status, StatusCode::ACCEPTED);
    assert_eq!(auth.headers["x-wecom-userid"], userid);
    assert_eq!(auth.headers["x-wecom-corpid"], fixtures::WECOM_CORP_ID);
    assert_eq!(auth.headers["x-wechat-source"], "wecom");
    assert!(!auth.headers.contains_key("x-wechat-openid"));
}

#[tokio::test]
async fn full_pc_login_through_the_sso_page() {
    let env = wecom_env(false, "").await;
    let mut b = Browser::pc();
    assert_eq!(login(&env, &mut b, "/home", "zhangsan").await, "/home");
    check_member_identity(&env, &mut b, "zhangsan").await;
    env.gw.stop().await;
}

#[tokio::test]
async fn full_in_app_login_even_with_wechat_configured() {
    let env = wecom_env(true, "").await;
    let mut b = wecom_browser();
    let (authorize, _) = to_callback(&env, &mut b.clone(), "/home", "lisi").await;
    assert!(
        authorize.contains("/connect/oauth2/authorize?appid=ww"),
        "{authorize}"
    );
    assert_eq!(login(&env, &mut b, "/home", "lisi").await, "/home");
    check_member_identity(&env, &mut b, "lisi").await;
    env.gw.stop().await;
}

#[tokio::test]
async fn pc_chooses_between_wechat_and_wecom() {
    let env = wecom_env(true, "").await;
    let mut b = Browser::pc();
    let page = b.nav(&env.gw.url("/_wxgate/login?rd=%2Fhome")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("企业微信") && html.contains("WeCom") && html.contains("WeChat"));
    let wecom = find_link(&html, "via-wecom").expect("WeCom button");
    let wechat = find_link(&html, "via-wechat").expect("WeChat button");
    assert_eq!(wecom, "/_wxgate/login?rd=%2Fhome&via=wecom");
    let r = b.nav(&env.gw.url(&wecom)).await;
    assert!(
        r.location()
            .contains("/wwlogin/sso/login?login_type=CorpApp"),
        "{}",
        r.location()
    );
    let r = b.nav(&env.gw.url(&wechat)).await;
    assert!(
        r.location().contains("/connect/qrconnect?"),
        "{}",
        r.location()
    );
    // The WeCom button leads to a working login.
    let r = b.nav(&env.gw.url(&wecom)).await;
    let page = b.nav(&r.location()).await;
    let link = find_link(&page.text(), "user-wangwu").unwrap();
    let cb = b.nav(&format!("{}{}", env.mock.url(), link)).await;
    let done = b.nav(&cb.location()).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.text());
    assert_eq!(done.location(), "/home");
    check_member_identity(&env, &mut b, "wangwu").await;
    env.gw.stop().await;
}

#[tokio::test]
async fn one_token_for_fifty_logins() {
    let env = wecom_env(false, "[access]\nlogin_rate_per_minute = 0\n").await;
    for i in 0..50 {
        let mut b = Browser::pc();
        let r = quick_login(&env, &mut b, ["zhangsan", "lisi", "wangwu"][i % 3]).await;
        assert_eq!(r.status, StatusCode::FOUND, "login {i}: {}", r.text());
        assert_eq!(r.location(), "/home");
    }
    let calls = mock_json(&env, "GET", "/mock/wecom/calls").await;
    assert_eq!(calls["gettoken"], 1, "{calls}");
    assert_eq!(calls["getuserinfo"], 50, "{calls}");
    env.gw.stop().await;
}

#[tokio::test]
async fn dead_token_renewed_once_for_twenty_concurrent_logins() {
    let env = wecom_env(false, "[access]\nlogin_rate_per_minute = 0\n").await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(gettoken_calls(&env).await, 1);
    // Every token issued so far dies: the gateway's cached one gets 42001.
    mock_json(&env, "POST", "/mock/wecom/expire").await;
    let env = std::sync::Arc::new(env);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = Browser::pc();
            let r = quick_login(&env, &mut b, "lisi").await;
            assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
            let r = fetch(&env, &mut b, "/x").await;
            r.echoed_header("x-wecom-userid")
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().as_deref(), Some("lisi"));
    }
    assert_eq!(gettoken_calls(&env).await, 2, "renewed exactly once");
}

#[tokio::test]
async fn short_lived_token_renewed_before_it_expires() {
    let env = wecom_env(false, "").await;
    mock_json(&env, "POST", "/mock/wecom/token_ttl?secs=2").await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(gettoken_calls(&env).await, 1, "still fresh");
    // Renewed one second before its end (half its life), so never used expired.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let calls = mock_json(&env, "GET", "/mock/wecom/calls").await;
    assert_eq!(calls["gettoken"], 2, "{calls}");
    assert_eq!(
        calls["getuserinfo"], 3,
        "no call was answered 42001: {calls}"
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn non_member_refused_unless_allowed() {
    let env = wecom_env(false, "").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/home", fixtures::WECOM_GUEST).await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("Members only"), "{}", r.text());
    assert!(b.cookie("_wxgate").is_none());
    env.gw.stop().await;

    let env = wecom_env_full(false, "allow_non_members = true", "").await;
    let mut b = Browser::pc();
    let r = quick_login(&env, &mut b, fixtures::WECOM_GUEST).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let r = fetch(&env, &mut b, "/home").await;
    // Its WeCom openid, in WeCom's header: never taken for a WeChat openid.
    assert_eq!(
        r.echoed_header("x-wecom-openid"),
        Some(fixtures::wecom_openid(fixtures::WECOM_GUEST))
    );
    assert_eq!(r.echoed_header("x-wechat-openid"), None);
    assert_eq!(r.echoed_header("x-wecom-userid"), None);
    assert_eq!(r.echoed_header("x-wechat-source").as_deref(), Some("wecom"));
    let info = fetch(&env, &mut b, "/_wxgate/userinfo").await.json();
    assert_eq!(info["wecom_member"], false);
    env.gw.stop().await;
}

#[tokio::test]
async fn allow_list_enforced() {
    let env = wecom_env(false, "[access]\nallow_wecom_userids = [\"lisi\"]\n").await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // The refused employee sees the userid to send an administrator, not an openid.
    let page = r.text();
    assert!(page.contains("zhangsan"), "{page}");
    assert!(page.contains("换个账号"), "{page}");
    let mut b = Browser::pc();
    let r = quick_login(&env, &mut b, "lisi").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let r = fetch(&env, &mut b, "/home").await;
    assert_eq!(r.echoed_header("x-wecom-userid").as_deref(), Some("lisi"));
    env.gw.stop().await;
}

#[tokio::test]
async fn spoofed_wecom_headers_stripped_on_public_and_protected_paths() {
    let env = wecom_env(false, "[access]\npublic_paths = [\"/public/\"]\n").await;
    let spoof = |url: String, cookie: Option<String>| {
        let mut r = Request::get(url)
            .header("x-wecom-userid", "boss")
            .header("X_WeCom_CorpId", "wwEvil")
            .header("xwecomuserid", "boss2")
            .header("x-wechat-source", "wecom");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.body(empty()).unwrap()
    };
    let r = send(&client(), spoof(env.gw.url("/public/a"), None)).await;
    assert_eq!(r.status, StatusCode::OK);
    for (name, value) in r.echoed_headers() {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        assert!(
            !n.starts_with("xwecom") && !n.starts_with("xwechat"),
            "{name}: {value}"
        );
    }
    let mut b = Browser::pc();
    let r = quick_login(&env, &mut b, "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = send(
        &client(),
        spoof(env.gw.url("/private"), Some(b.cookie_header())),
    )
    .await;
    let ids: Vec<_> = r
        .echoed_headers()
        .into_iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace(['-', '_'], "")
                .starts_with("xwecom")
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            ("x-wecom-userid".to_string(), "zhangsan".to_string()),
            (
                "x-wecom-corpid".to_string(),
                fixtures::WECOM_CORP_ID.to_string()
            )
        ]
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn untrusted_ip_gives_the_60020_page() {
    let env = wecom_env(false, "").await;
    mock_json(&env, "POST", "/mock/wecom/untrusted_ip?on=1").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/home", "zhangsan").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let html = r.text();
    assert!(html.contains("企业可信IP"), "{html}");
    assert!(html.contains("trusted IPs"), "{html}");
    env.gw.stop().await;
}

#[tokio::test]
async fn wrong_secret_is_a_502_and_reused_code_a_400() {
    let env = wecom_env(false, "").await;
    let mut b = Browser::pc();
    // A code used once already: WeCom's 40029.
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    let state = state_of(&r.location());
    let code = mock_json(&env, "POST", "/mock/wecom/code?user=lisi").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = b
        .nav(
            &env.gw
                .url(&format!("/_wxgate/callback?code={code}&state={state}")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::FOUND);
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    let state = state_of(&r.location());
    let again = b
        .nav(
            &env.gw
                .url(&format!("/_wxgate/callback?code={code}&state={state}")),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    env.gw.stop().await;

    let env = wecom_env_full(false, "secret = \"wrong-secret\"", "").await;
    let r = quick_login(&env, &mut Browser::pc(), "lisi").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert_eq!(gettoken_calls(&env).await, 1);
    env.gw.stop().await;
}

#[tokio::test]
async fn wecom_calls_in_the_api_metrics() {
    let env = wecom_env(false, "").await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND);
    mock_json(&env, "POST", "/mock/wecom/untrusted_ip?on=1").await;
    let r = quick_login(&env, &mut Browser::pc(), "zhangsan").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let m = env.gw.metrics().await;
    for want in [
        "wxgate_wechat_api_seconds_count{endpoint=\"cgi-bin/gettoken\"} 1",
        "wxgate_wechat_api_seconds_count{endpoint=\"cgi-bin/auth/getuserinfo\"} 2",
        "endpoint=\"cgi-bin/auth/getuserinfo\",errcode=\"60020\"} 1",
        "wxgate_logins_total{source=\"wecom\",outcome=\"ok\"} 1",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }
    env.gw.stop().await;
}

#[tokio::test]
async fn phone_browsers() {
    const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1";
    let phone = || Browser {
        ua: PHONE.into(),
        cookies: vec![],
    };
    // WeCom only: WeCom's login page.
    let env = wecom_env(false, "").await;
    let r = phone().nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        r.location().contains("/wwlogin/sso/login?"),
        "{}",
        r.location()
    );
    env.gw.stop().await;
    // WeChat too: the "open in WeChat" page, as without WeCom.
    let env = wecom_env(true, "").await;
    let r = phone().nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("id=\"copy\""), "{}", r.text());
    env.gw.stop().await;
}

#[tokio::test]
async fn failed_renewal_shared_by_concurrent_logins() {
    let env = wecom_env(false, "[access]\nlogin_rate_per_minute = 0\n").await;
    mock_json(&env, "POST", "/mock/wecom/untrusted_ip?on=1").await;
    let env = std::sync::Arc::new(env);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            quick_login(&env, &mut Browser::pc(), "lisi").await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        gettoken_calls(&env).await,
        1,
        "WeCom asked once, not once per login"
    );
    // Fixed in the console: a second later the logins work again.
    mock_json(&env, "POST", "/mock/wecom/untrusted_ip?on=0").await;
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let r = quick_login(&env, &mut Browser::pc(), "lisi").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(gettoken_calls(&env).await, 2);
}

#[tokio::test]
async fn account_linking_gets_the_wecom_userid() {
    let app = link_app::LinkApp::always(link_app::Reply::UserId("u-7".into())).await;
    let env = wecom_env(false, &app.toml(2000)).await;
    let mut b = Browser::pc();
    let r = quick_login(&env, &mut b, "zhangsan").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let call = &app.calls()[0];
    assert!(call.signature_ok);
    assert_eq!(call.json["source"], "wecom");
    assert_eq!(call.json["appid"], fixtures::WECOM_CORP_ID);
    assert_eq!(call.json["wecom_userid"], "zhangsan");
    assert!(call.json["openid"].is_null() && call.json["unionid"].is_null());
    let r = fetch(&env, &mut b, "/home").await;
    assert_eq!(r.echoed_header("x-wechat-userid").as_deref(), Some("u-7"));
    assert_eq!(
        r.echoed_header("x-wecom-userid").as_deref(),
        Some("zhangsan")
    );
    let info = fetch(&env, &mut b, "/_wxgate/userinfo").await.json();
    assert_eq!(info["user_id"], "u-7");
    env.gw.stop().await;
}
