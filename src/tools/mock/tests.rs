use super::fixtures::*;
use super::*;
use serde_json::Value;

#[test]
fn openids_are_deterministic_and_well_formed() {
    let apps = [WEBSITE_APPID, OFFICIAL_APPID, MOBILE_APPID, MINI_APPID];
    let mut seen = std::collections::HashSet::new();
    for app in apps {
        for u in USERS {
            let id = openid(app, u.key);
            assert_eq!(id, openid(app, u.key));
            assert_eq!(id.len(), 28, "{id}");
            assert!(id.starts_with('o'));
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            assert!(seen.insert(id), "openids must differ per (app, user)");
        }
    }
}

#[test]
fn users_fixture() {
    let alice = user("alice").unwrap();
    assert!(alice.nickname.chars().any(|c| c.len_utf8() == 4), "emoji");
    assert!(alice.unionid.is_some());
    let bob = user("bob").unwrap();
    assert!(bob.nickname.chars().any(|c| c.is_control()));
    assert!(bob.unionid.is_some());
    assert_eq!(user("carol").unwrap().unionid, None);
    assert!(user("mallory").is_none());
    for u in USERS {
        if let Some(id) = u.unionid {
            assert_eq!(id.len(), 28);
            assert!(id.starts_with('o'));
        }
    }
    let secrets = [WEBSITE_SECRET, OFFICIAL_SECRET, MOBILE_SECRET, MINI_SECRET];
    let distinct: std::collections::HashSet<_> = secrets.iter().collect();
    assert_eq!(distinct.len(), 4);
}

#[test]
fn userinfo_json_keeps_control_character_raw() {
    let bob = user("bob").unwrap();
    let s = userinfo_json("oX", bob);
    assert!(s.contains("王小明\u{7}\""));
    assert!(
        serde_json::from_str::<Value>(&s).is_err(),
        "strict parsers reject it"
    );
    let v: Value = serde_json::from_str(&crate::providers::wechat::sanitize_json(&s)).unwrap();
    assert_eq!(v["nickname"], bob.nickname);
    let alice = user("alice").unwrap();
    let v: Value = serde_json::from_str(&userinfo_json("oA", alice)).unwrap();
    assert_eq!(v["nickname"], alice.nickname);
    assert_eq!(v["unionid"], alice.unionid.unwrap());
}

#[test]
fn hosts_and_redirects() {
    assert_eq!(normalize_host("LocalHost:8443"), "localhost");
    assert_eq!(normalize_host("[::1]:8443"), "::1");
    assert_eq!(normalize_host("::1"), "::1");
    let state = State::new(MockOptions::default());
    assert!(state.redirect_allowed("https://localhost:8443/_wxgate/callback"));
    assert!(state.redirect_allowed("http://127.0.0.1/cb?x=1"));
    assert!(!state.redirect_allowed("https://evil.example/cb"));
    assert!(!state.redirect_allowed("https://localhost.evil.example/cb"));
    assert!(!state.redirect_allowed("javascript:alert(1)"));
    assert!(!state.redirect_allowed("/relative"));
    assert_eq!(
        callback_location("https://localhost/cb", Some("C1"), "S1").as_deref(),
        Some("https://localhost/cb?code=C1&state=S1")
    );
    assert_eq!(
        callback_location("https://localhost/cb?a=1#frag", None, "a b&c").as_deref(),
        Some("https://localhost/cb?a=1&state=a+b%26c#frag")
    );
}

#[test]
fn html_escape_works() {
    assert_eq!(
        html_escape("<a href=\"x\">&'\u{7}"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;␇"
    );
}
