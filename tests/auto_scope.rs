//! Issue 14.2: `wechat.official_account.scope = "auto"`: a silent `snsapi_base` round first,
//! and one `snsapi_userinfo` (consent) round only when the silent one gave no unionid and the
//! access rules need one; never a second consent screen.

mod common;

use common::*;
use http::StatusCode;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every app kind, the official account with `scope = "auto"`; `extra` goes in `[session]`
/// (and may open later sections).
async fn auto_env(extra: &str) -> Env {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let toml = full_config(up.addr, &mock.url(), extra).replace(
        "[wechat.official_account]\n",
        "[wechat.official_account]\nscope = \"auto\"\n",
    );
    assert!(toml.contains("scope = \"auto\""));
    let gw = start_gateway(&toml).await;
    Env { up, mock, gw }
}

fn authorize_url(env: &Env, scope: &str, state: &str) -> String {
    format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope={scope}&state={state}&connect_redirect=1#wechat_redirect",
        env.mock.url(),
        fixtures::OFFICIAL_APPID,
        enc(&env.gw.url("/_wxgate/callback")),
    )
}

/// `/login` → the silent round's authorize URL (checked exactly) → the mock's silent answer:
/// the callback URL of the first round.
async fn silent_round(env: &Env, b: &mut Browser, rd: &str) -> String {
    let r = b
        .nav(&env.gw.url(&format!("/_wxgate/login?rd={}", enc(rd))))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let first = r.location();
    assert_eq!(first, authorize_url(env, "snsapi_base", &state_of(&first)));
    let r = b.nav(first.split('#').next().unwrap()).await;
    assert_eq!(r.status, StatusCode::FOUND, "snsapi_base answers silently");
    r.location()
}

#[tokio::test]
async fn silent_login_is_enough_without_rules() {
    let env = auto_env("").await;
    let mut b = Browser::wechat();
    let cb = silent_round(&env, &mut b, "/page").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/page", "no consent round");
    let r = fetch(&env, &mut b, "/page").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.echoed_header("x-wechat-openid"),
        Some(fixtures::openid(fixtures::OFFICIAL_APPID, "alice"))
    );
    assert_eq!(
        r.echoed_header("x-wechat-unionid"),
        None,
        "snsapi_base: openid only"
    );
    let c = env.mock_calls().await;
    assert_eq!(
        (c["authorize"].as_u64(), c["confirm"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(c["userinfo"], 0);
}

/// The consent round: the callback of the silent round sends the browser to
/// `snsapi_userinfo` with a new state; returns that URL.
async fn to_consent(env: &Env, b: &mut Browser, rd: &str) -> (String, String) {
    let cb1 = silent_round(env, b, rd).await;
    let r = b.nav(&cb1).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let second = r.location();
    let s2 = state_of(&second);
    assert_eq!(second, authorize_url(env, "snsapi_userinfo", &s2));
    assert_ne!(s2, state_of(&cb1), "a fresh state for the consent round");
    assert!(s2.len() <= 128 && s2.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert!(
        b.cookie("_wxgate").is_none(),
        "no session after the silent round"
    );
    (cb1, second)
}

async fn consent(env: &Env, b: &mut Browser, second: &str, user: &str) -> String {
    let page = b.nav(second.split('#').next().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "the consent page");
    let link = find_link(&page.text(), &format!("user-{user}")).unwrap();
    let r = b.nav(&format!("{}{}", env.mock.url(), link)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    r.location()
}

#[tokio::test]
async fn require_unionid_asks_for_consent_once() {
    let env = auto_env("[access]\nrequire_unionid = true\n").await;
    let mut b = Browser::wechat();
    let (cb1, second) = to_consent(&env, &mut b, "/deep?a=1").await;
    let cb2 = consent(&env, &mut b, &second, "alice").await;
    let r = b.nav(&cb2).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/deep?a=1");
    let r = fetch(&env, &mut b, "/deep?a=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.echoed_header("x-wechat-unionid").as_deref(),
        fixtures::user("alice").unwrap().unionid
    );
    assert_eq!(
        r.echoed_header("x-wechat-source").as_deref(),
        Some("official_account")
    );
    let c = env.mock_calls().await;
    assert_eq!(
        c["authorize"], 2,
        "one silent round, one consent round: {c}"
    );
    assert_eq!(c["confirm"], 1, "one consent screen: {c}");
    // Both states are single-use: the silent round's callback cannot start another round.
    let mut other = Browser::wechat();
    other.cookies = b.cookies.clone();
    other.cookies.retain(|(k, _)| k != "_wxgate");
    let r = other.nav(&cb1).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(env.mock_calls().await["authorize"], 2);
}

#[tokio::test]
async fn consent_without_unionid_is_refused_without_a_second_screen() {
    let env = auto_env("[access]\nrequire_unionid = true\n").await;
    let mut b = Browser::wechat();
    let (_, second) = to_consent(&env, &mut b, "/").await;
    let cb2 = consent(&env, &mut b, &second, "carol").await;
    let r = b.nav(&cb2).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "carol has no unionid: {}",
        r.text()
    );
    assert!(b.cookie("_wxgate").is_none());
    let c = env.mock_calls().await;
    assert_eq!(
        (c["authorize"].as_u64(), c["confirm"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn openid_already_allowed_needs_no_consent() {
    let alice = fixtures::openid(fixtures::OFFICIAL_APPID, "alice");
    let env = auto_env(&format!(
        "[access]\nallow_unionids = [\"oUnionSomeoneElse000000000000\"]\nallow_openids = [\"{alice}\"]\n"
    ))
    .await;
    let mut b = Browser::wechat();
    let cb = silent_round(&env, &mut b, "/x").await;
    let r = b.nav(&cb).await;
    assert_eq!(r.location(), "/x", "{}", r.text());
    assert_eq!(env.mock_calls().await["authorize"], 1);
}

#[tokio::test]
async fn allow_unionids_asks_for_consent() {
    let alice = fixtures::user("alice").unwrap().unionid.unwrap();
    let env = auto_env(&format!("[access]\nallow_unionids = [\"{alice}\"]\n")).await;
    let mut b = Browser::wechat();
    let (_, second) = to_consent(&env, &mut b, "/y").await;
    let cb2 = consent(&env, &mut b, &second, "alice").await;
    assert_eq!(b.nav(&cb2).await.location(), "/y");
}

#[tokio::test]
async fn pc_logins_are_unchanged_by_auto() {
    let env = auto_env("[access]\nrequire_unionid = true\n").await;
    let mut b = Browser::pc();
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=%2F")).await;
    assert!(
        r.location().contains("/connect/qrconnect?"),
        "{}",
        r.location()
    );
}

#[test]
fn scope_values_are_validated() {
    let base = |scope: &str, revalidate: &str| {
        format!(
            "[server]\npublic_url = \"https://a.example.com\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n\
             [wechat.official_account]\nappid = \"wx2\"\nsecret = \"s2\"\nscope = \"{scope}\"\n\
             [session]\ncookie_secret = \"0123456789abcdef0123456789abcdef\"\n{revalidate}\n"
        )
    };
    for ok in ["auto", "snsapi_base", "snsapi_userinfo"] {
        let s = wxgate::config::Config::from_toml(&base(ok, "")).unwrap();
        assert_eq!(s.wechat.official_scope.as_str(), ok);
    }
    for bad in ["snsapi_login", "AUTO", ""] {
        let e = wxgate::config::Config::from_toml(&base(bad, ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wechat.official_account.scope") && e.contains("auto"),
            "{e}"
        );
    }
    let s = wxgate::config::Config::from_toml(&base("auto", "revalidate_secs = 300")).unwrap();
    assert_eq!(
        s.session.revalidate,
        Some(std::time::Duration::from_secs(300))
    );
    let s = wxgate::config::Config::from_toml(&base("auto", "")).unwrap();
    assert_eq!(s.session.revalidate, None);
    let e = wxgate::config::Config::from_toml(&base("auto", "revalidate_secs = 99999999"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("session.revalidate_secs"), "{e}");
    let e = wxgate::config::Config::from_toml(&base("auto", "revalidate_secs = -1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("revalidate_secs"), "{e}");
}
