//! Test apps and users shared by the mock, the tests and `wxgate dev`: the one place for the
//! appids, secrets and users every test and the demo use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

pub const WEBSITE_APPID: &str = "wx1000000000000001";
pub const WEBSITE_SECRET: &str = "mock-website-secret-000000000000001";
pub const OFFICIAL_APPID: &str = "wx2000000000000002";
pub const OFFICIAL_SECRET: &str = "mock-official-secret-00000000000002";
pub const MOBILE_APPID: &str = "wx3000000000000003";
pub const MOBILE_SECRET: &str = "mock-mobile-secret-0000000000000003";
pub const MINI_APPID: &str = "wx4000000000000004";
pub const MINI_SECRET: &str = "mock-mini-secret-00000000000000004";

/// A test user. `key` is what tests and `/mock/code?user=` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestUser {
    pub key: &'static str,
    pub nickname: &'static str,
    pub unionid: Option<&'static str>,
    pub avatar: &'static str,
}

/// alice: emoji nickname; bob: Chinese nickname ending in a raw BEL (U+0007), which the mock
/// emits unescaped inside the JSON string like real WeChat sometimes does; carol: no unionid;
/// snapshot: a login from WeChat's snapshot page (快照页): `is_snapshotuser: 1` and a virtual
/// identity ("微信用户", a grey avatar), which the gateway must refuse.
pub const USERS: &[TestUser] = &[
    TestUser {
        key: "alice",
        nickname: "Alice 🐼 小爱",
        unionid: Some("oUnionAlice00000000000000001"),
        avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockalice/132",
    },
    TestUser {
        key: "bob",
        nickname: "王小明\u{7}",
        unionid: Some("oUnionBob0000000000000000002"),
        avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockbob/132",
    },
    TestUser {
        key: "carol",
        nickname: "Carol",
        unionid: None,
        avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockcarol/132",
    },
    TestUser {
        key: SNAPSHOT_USER,
        nickname: PLACEHOLDER_NICKNAME,
        unionid: Some("oUnionSnapshotVirtual0000004"),
        avatar: PLACEHOLDER_AVATAR,
    },
];

/// The profile WeChat gives a mini program for every user since 2022-11 (`getUserProfile`,
/// `getUserInfo`), and a snapshot-page login.
pub const PLACEHOLDER_NICKNAME: &str = "微信用户";
pub const PLACEHOLDER_AVATAR: &str = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132";

/// The user whose logins come back from WeChat's snapshot page (`is_snapshotuser: 1`).
pub const SNAPSHOT_USER: &str = "snapshot";

/// Whether this user's logins come back as snapshot-page logins.
pub fn is_snapshot(key: &str) -> bool {
    key == SNAPSHOT_USER
}

/// Deterministic openid for (app, user): 28 characters, starts with `o`, `[A-Za-z0-9_-]`.
pub fn openid(appid: &str, user_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"wxgate-mock-openid\0");
    h.update(appid.as_bytes());
    h.update(b"\0");
    h.update(user_key.as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(h.finalize());
    let mut out = String::with_capacity(28);
    out.push('o');
    out.push_str(&encoded[..27]);
    out
}

pub fn user(key: &str) -> Option<&'static TestUser> {
    USERS.iter().find(|u| u.key == key)
}

/// The four `[wechat.*]` app sections with the mock's credentials (for `dev` and tests).
pub fn apps_toml() -> String {
    [
        ("website", WEBSITE_APPID, WEBSITE_SECRET),
        ("official_account", OFFICIAL_APPID, OFFICIAL_SECRET),
        ("mobile_app", MOBILE_APPID, MOBILE_SECRET),
        ("mini_program", MINI_APPID, MINI_SECRET),
    ]
    .iter()
    .map(|(name, appid, secret)| {
        format!("[wechat.{name}]\nappid = \"{appid}\"\nsecret = \"{secret}\"\n\n")
    })
    .collect()
}

// ---- WeCom (企业微信) ----

/// The mock corp's id, its self-built app's AgentId and Secret.
pub const WECOM_CORP_ID: &str = "ww5000000000000005";
pub const WECOM_AGENT_ID: &str = "1000005";
pub const WECOM_SECRET: &str = "mock-wecom-secret-00000000000000005";

/// A person the mock WeCom logs in: an employee (a userid) or, with `member: false`, someone
/// outside the corp (WeCom gives only an openid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WecomPerson {
    /// What tests and the pages use; an employee's userid.
    pub key: &'static str,
    pub name: &'static str,
    pub member: bool,
}

/// Three employees and one non-member (`guest`).
pub const WECOM_PEOPLE: &[WecomPerson] = &[
    WecomPerson {
        key: "zhangsan",
        name: "张三",
        member: true,
    },
    WecomPerson {
        key: "lisi",
        name: "李四",
        member: true,
    },
    WecomPerson {
        key: "wangwu",
        name: "王五",
        member: true,
    },
    WecomPerson {
        key: WECOM_GUEST,
        name: "访客 (非企业成员 / not a member)",
        member: false,
    },
];

/// The non-member.
pub const WECOM_GUEST: &str = "guest";

pub fn wecom_person(key: &str) -> Option<&'static WecomPerson> {
    WECOM_PEOPLE.iter().find(|p| p.key == key)
}

/// The openid WeCom gives a non-member.
pub fn wecom_openid(key: &str) -> String {
    openid(WECOM_CORP_ID, key)
}

/// The `[wecom]` section with the mock's credentials, `base` its api_base and login_base.
pub fn wecom_toml(base: &str) -> String {
    format!(
        "[wecom]\ncorp_id = \"{WECOM_CORP_ID}\"\nagent_id = \"{WECOM_AGENT_ID}\"\nsecret = \"{WECOM_SECRET}\"\n\
         api_base = \"{base}\"\nlogin_base = \"{base}\"\n\n"
    )
}
