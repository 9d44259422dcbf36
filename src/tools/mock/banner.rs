//! What `wxgate mock-wechat` prints at start: its URL, each app's appid and secret and the test
//! users, so a config can be pointed at it from the README alone.

use super::fixtures;

/// The start-up text for a mock listening at `base` (`http://127.0.0.1:9100`).
pub fn banner(base: &str) -> String {
    let mut out = format!(
        "mock WeChat listening on {base}\n\
         \n\
         Point a config at it:\n\
         \n\
         [wechat]\n\
         api_base = \"{base}\"\n\
         open_base = \"{base}\"\n\
         \n"
    );
    for (section, appid, secret) in [
        ("website", fixtures::WEBSITE_APPID, fixtures::WEBSITE_SECRET),
        (
            "official_account",
            fixtures::OFFICIAL_APPID,
            fixtures::OFFICIAL_SECRET,
        ),
        (
            "mobile_app",
            fixtures::MOBILE_APPID,
            fixtures::MOBILE_SECRET,
        ),
        ("mini_program", fixtures::MINI_APPID, fixtures::MINI_SECRET),
    ] {
        out.push_str(&format!(
            "[wechat.{section}]\nappid = \"{appid}\"\nsecret = \"{secret}\"\n\n"
        ));
    }
    out.push_str(&format!(
        "# WeCom (企业微信) on the same mock:\n[wecom]\ncorp_id = \"{}\"\nagent_id = \"{}\"\n\
         secret = \"{}\"\napi_base = \"{base}\"\nlogin_base = \"{base}\"\n\n",
        fixtures::WECOM_CORP_ID,
        fixtures::WECOM_AGENT_ID,
        fixtures::WECOM_SECRET,
    ));
    out.push_str("Test users (pick one on the mock's login page; `POST /mock/code?appid=&user=` mints app codes):\n");
    for u in fixtures::USERS {
        let note = match (u.unionid, fixtures::is_snapshot(u.key)) {
            (_, true) => "snapshot-page login (refused by the gateway)".to_string(),
            (Some(union), false) => format!("unionid {union}"),
            (None, false) => "no unionid".to_string(),
        };
        out.push_str(&format!(
            "  {:<9} {:<16} {note}\n",
            u.key,
            u.nickname.replace(|c: char| c.is_control(), "")
        ));
    }
    out.push_str("WeCom people (on the mock's WeCom login pages):\n");
    for p in fixtures::WECOM_PEOPLE {
        let note = if p.member {
            "employee (userid)"
        } else {
            "not a member: WeCom gives only an openid"
        };
        out.push_str(&format!("  {:<9} {:<16} {note}\n", p.key, p.name));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_every_app_and_user() {
        let b = super::banner("http://127.0.0.1:9100");
        assert!(b.contains("api_base = \"http://127.0.0.1:9100\""));
        assert!(
            b.contains(super::fixtures::WECOM_SECRET) && b.contains("zhangsan"),
            "{b}"
        );
        for s in [
            super::fixtures::WEBSITE_SECRET,
            super::fixtures::MINI_APPID,
            "alice",
            "carol",
        ] {
            assert!(b.contains(s), "{s}");
        }
        assert!(
            !b.contains('\u{7}'),
            "no raw control characters on a terminal"
        );
    }
}
