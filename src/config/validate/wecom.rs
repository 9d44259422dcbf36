//! `[wecom]`: a WeCom (企业微信) self-built app. Off while `corp_id` is empty; when on, every
//! key is checked and named when wrong.

use crate::config::error::{invalid, ConfigError};
use crate::config::file::WecomConfig;
use crate::config::settings::WecomSettings;

/// Longest corp id / agent id accepted (WeCom's are 18 and 7 characters).
const MAX_ID: usize = 64;

pub(super) fn check(w: &WecomConfig) -> Result<Option<WecomSettings>, ConfigError> {
    if w.corp_id.trim().is_empty() {
        return Ok(None);
    }
    if w.corp_id.len() > MAX_ID || !w.corp_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "wecom.corp_id",
            "must be letters and digits (ww... or wx..., WeCom admin console: 我的企业 → 企业ID)",
        ));
    }
    if w.agent_id.trim().is_empty() {
        return Err(invalid(
            "wecom.agent_id",
            "is empty: the self-built app's AgentId (应用管理 → the app → AgentId)",
        ));
    }
    if w.agent_id.len() > MAX_ID || !w.agent_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("wecom.agent_id", "must be digits (e.g. 1000002)"));
    }
    if w.secret.is_empty() {
        return Err(invalid(
            "wecom.secret",
            "is empty (set secret or secret_file: the app's Secret, 应用管理 → the app → Secret)",
        ));
    }
    for (key, val) in [
        ("wecom.api_base", &w.api_base),
        ("wecom.login_base", &w.login_base),
    ] {
        let parsed =
            url::Url::parse(val).map_err(|e| invalid(key, format!("'{val}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(invalid(key, "must be an http(s) URL"));
        }
    }
    Ok(Some(WecomSettings {
        corp_id: w.corp_id.clone(),
        agent_id: w.agent_id.clone(),
        secret: w.secret.clone(),
        api_base: w.api_base.trim_end_matches('/').to_string(),
        login_base: w.login_base.trim_end_matches('/').to_string(),
        allow_non_members: w.allow_non_members,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> WecomConfig {
        WecomConfig {
            corp_id: "ww0123456789abcdef".into(),
            agent_id: "1000002".into(),
            secret: "s".into(),
            ..WecomConfig::default()
        }
    }

    #[test]
    fn off_without_corp_id() {
        assert!(check(&WecomConfig::default()).unwrap().is_none());
    }

    #[test]
    fn each_key_checked() {
        let s = check(&good()).unwrap().unwrap();
        assert_eq!(s.api_base, "https://qyapi.weixin.qq.com");
        assert_eq!(s.login_base, "https://login.work.weixin.qq.com");
        for (bad, key) in [
            (
                WecomConfig {
                    corp_id: "ww 1".into(),
                    ..good()
                },
                "wecom.corp_id",
            ),
            (
                WecomConfig {
                    agent_id: String::new(),
                    ..good()
                },
                "wecom.agent_id",
            ),
            (
                WecomConfig {
                    agent_id: "10x".into(),
                    ..good()
                },
                "wecom.agent_id",
            ),
            (
                WecomConfig {
                    secret: String::new(),
                    ..good()
                },
                "wecom.secret",
            ),
            (
                WecomConfig {
                    api_base: "ftp://x".into(),
                    ..good()
                },
                "wecom.api_base",
            ),
            (
                WecomConfig {
                    login_base: "nope".into(),
                    ..good()
                },
                "wecom.login_base",
            ),
        ] {
            let e = check(&bad).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}

#[cfg(test)]
mod load_tests {
    use crate::config::Config;

    const BASE: &str = "[server]\npublic_url = \"https://app.example.com\"\n\
        [session]\ncookie_secret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn wecom_alone_is_a_login_and_its_secret_is_redacted() {
        let s = Config::from_toml(&format!(
            "{BASE}[wecom]\ncorp_id = \"ww01\"\nagent_id = \"1000002\"\nsecret = \"topsecret\"\n\
             [access]\nallow_wecom_userids = [\"lisi\", \"lisi\"]\n"
        ))
        .unwrap();
        let w = s.wecom.as_ref().unwrap();
        assert_eq!(
            (w.corp_id.as_str(), w.agent_id.as_str()),
            ("ww01", "1000002")
        );
        assert_eq!(s.access.allow_wecom_userids.len(), 1);
        assert!(!s.redacted_toml().contains("topsecret"));
        assert!(!format!("{s:?}").contains("topsecret"));
        let e = Config::from_toml(BASE).unwrap_err().to_string();
        assert!(e.contains("[wecom]"), "{e}");
        let e = Config::from_toml(&format!(
            "{BASE}[wecom]\ncorp_id = \"ww01\"\nagent_id = \"1\"\nsecret = \"replace-with-the-secret\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("wecom.secret"), "{e}");
    }

    #[test]
    fn secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wecom");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = Config::from_toml(&format!(
            "{BASE}[wecom]\ncorp_id = \"ww01\"\nagent_id = \"1\"\nsecret_file = \"{}\"\n",
            path.display()
        ))
        .unwrap();
        assert_eq!(s.wecom.unwrap().secret, "from-file");
        let e = Config::from_toml(&format!(
            "{BASE}[wecom]\ncorp_id = \"ww01\"\nagent_id = \"1\"\nsecret = \"x\"\nsecret_file = \"{}\"\n",
            path.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("wecom.secret"), "{e}");
    }
}
