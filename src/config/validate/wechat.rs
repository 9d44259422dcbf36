//! `[wechat]`: API endpoints, timeout, the four app kinds and the official-account scope.

use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::{AppConfig, WechatConfig};
use crate::config::settings::{OfficialScope, WechatApp, WechatSettings};

/// `other_login`: another provider (`[wecom]`) is configured, so no WeChat app is needed.
pub(super) fn check(w: &WechatConfig, other_login: bool) -> Result<WechatSettings, ConfigError> {
    for (key, val) in [
        ("wechat.api_base", &w.api_base),
        ("wechat.open_base", &w.open_base),
    ] {
        let parsed =
            url::Url::parse(val).map_err(|e| invalid(key, format!("'{val}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(key, "must be an http(s) URL"));
        }
    }
    if w.timeout_ms == 0 {
        return Err(invalid("wechat.timeout_ms", "must be at least 1"));
    }
    let mut any = false;
    for (name, app) in w.apps() {
        let Some(app) = app else { continue };
        any = true;
        if app.appid.trim().is_empty() {
            return Err(invalid(format!("wechat.{name}.appid"), "is empty"));
        }
        if !app.appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                format!("wechat.{name}.appid"),
                "must be letters and digits (wx...)",
            ));
        }
        if app.secret.is_empty() {
            return Err(invalid(
                format!("wechat.{name}.secret"),
                "is empty (set secret or secret_file)",
            ));
        }
        if app.scope.is_some() && name != "official_account" {
            return Err(invalid(
                format!("wechat.{name}.scope"),
                "only wechat.official_account has a scope",
            ));
        }
    }
    if !any && !other_login {
        return Err(invalid(
            "wechat",
            "no WeChat app configured (and no [wecom]): set at least one of [wechat.website], [wechat.official_account], [wechat.mobile_app], [wechat.mini_program], [wecom]",
        ));
    }
    let scope = w
        .official_account
        .as_ref()
        .and_then(|a| a.scope.as_deref())
        .unwrap_or("snsapi_userinfo");
    let official_scope = OfficialScope::parse(scope).ok_or_else(|| {
        invalid(
            "wechat.official_account.scope",
            format!("'{scope}' must be snsapi_userinfo, snsapi_base or auto"),
        )
    })?;
    let app = |a: &Option<AppConfig>| {
        a.as_ref().map(|a| WechatApp {
            appid: a.appid.clone(),
            secret: a.secret.clone(),
        })
    };
    Ok(WechatSettings {
        api_base: w.api_base.trim_end_matches('/').to_string(),
        open_base: w.open_base.trim_end_matches('/').to_string(),
        timeout: Duration::from_millis(w.timeout_ms),
        website: app(&w.website),
        official_account: app(&w.official_account),
        mobile_app: app(&w.mobile_app),
        mini_program: app(&w.mini_program),
        official_scope,
    })
}

/// Longest `session.revalidate_secs`: WeChat's refresh token lives 30 days, so a session not
/// re-checked within that could never be re-checked at all.
const MAX_REVALIDATE_SECS: u64 = 30 * 86_400;

/// `session.revalidate_secs` (re-checking browser sessions' WeChat grants): 0 = off.
pub(super) fn check_revalidate(secs: u64) -> Result<Option<Duration>, ConfigError> {
    match secs {
        0 => Ok(None),
        s if s > MAX_REVALIDATE_SECS => Err(invalid(
            "session.revalidate_secs",
            format!(
                "{s} is longer than WeChat's refresh token lives (at most {MAX_REVALIDATE_SECS}, 30 days; 0 = off)"
            ),
        )),
        s => Ok(Some(Duration::from_secs(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revalidate_secs_bounds() {
        assert_eq!(check_revalidate(0).unwrap(), None);
        assert_eq!(check_revalidate(1).unwrap(), Some(Duration::from_secs(1)));
        assert!(check_revalidate(MAX_REVALIDATE_SECS).is_ok());
        let e = check_revalidate(MAX_REVALIDATE_SECS + 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.revalidate_secs"), "{e}");
    }

    #[test]
    fn scope_values() {
        for (v, want) in [
            ("snsapi_userinfo", Some(OfficialScope::SnsapiUserinfo)),
            ("snsapi_base", Some(OfficialScope::SnsapiBase)),
            ("auto", Some(OfficialScope::Auto)),
            ("snsapi_login", None),
            ("Auto", None),
            ("", None),
        ] {
            assert_eq!(OfficialScope::parse(v), want, "{v}");
        }
    }
}
