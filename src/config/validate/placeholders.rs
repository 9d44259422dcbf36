//! Secrets that still hold the example file's placeholder text are refused (`run` and `check`):
//! `cp config.example.toml wxgate.toml` must not give a gateway that signs cookies with a secret
//! printed in the repository, or one that fails at the first login with WeChat's "invalid
//! appsecret".

use super::super::error::{invalid, ConfigError};
use super::super::file::Config;

/// What the example file's placeholders start with (`replace-me-…`, `replace-with-…`).
const PLACEHOLDER_PREFIX: &str = "replace-";

/// Whether `value` is one of the example file's placeholders.
pub(super) fn is_placeholder(value: &str) -> bool {
    value
        .trim()
        .get(..PLACEHOLDER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PLACEHOLDER_PREFIX))
}

/// How to fill in a secret the gateway makes up itself (cookie and signing secrets).
const GENERATE: &str =
    "generate one with `openssl rand -base64 48` (or `head -c 48 /dev/urandom | base64`)";

/// The first secret that still holds a placeholder, named with what to put there instead.
pub(super) fn check(c: &Config) -> Result<(), ConfigError> {
    for (name, app) in c.wechat.apps() {
        if let Some(app) = app {
            if is_placeholder(&app.secret) {
                return Err(invalid(
                    format!("wechat.{name}.secret"),
                    "still holds the example's placeholder: put the app's AppSecret here \
                     (WeChat console: 开发 → 基本配置 / 开发配置 → AppSecret), or use secret_file",
                ));
            }
        }
    }
    if is_placeholder(&c.wecom.secret) {
        return Err(invalid(
            "wecom.secret",
            "still holds the example's placeholder: put the self-built app's Secret here \
             (WeCom admin console: 应用管理 → the app → Secret), or use secret_file",
        ));
    }
    for (key, value) in [
        ("session.cookie_secret", &c.session.cookie_secret),
        ("headers.sign_secret", &c.headers.sign_secret),
    ] {
        if is_placeholder(value) {
            return Err(invalid(
                key,
                format!("still holds the example's placeholder: {GENERATE}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "replace-me-with-32-or-more-random-bytes-0123456789",
            "replace-with-the-website-app-secret",
            "REPLACE-ME",
            "  replace-with-x",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        for s in [
            "",
            "replac",
            "0123456789abcdef0123456789abcdef",
            "my-replace-secret",
            "替换-me",
        ] {
            assert!(!is_placeholder(s), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_needs_the_prefix(s in "\\PC{0,40}") {
            let _ = is_placeholder(&s);
            proptest::prop_assert_eq!(
                is_placeholder(&s),
                s.trim().to_ascii_lowercase().starts_with("replace-")
            );
        }
    }
}
