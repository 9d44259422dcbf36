//! Failures of WeChat API calls and what a caller should do about them.

use crate::common::error::{ErrorClass, ProviderError};
use crate::common::pages::Text;

/// Failure of a WeChat API call. The `Display` text is safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// Could not connect / the connection broke (also: the client could not be set up).
    #[error("WeChat API unreachable")]
    Unreachable,
    #[error("WeChat API timed out")]
    Timeout,
    /// Non-2xx HTTP status.
    #[error("WeChat API answered HTTP {0}")]
    Status(u16),
    /// Empty body, not JSON, or required fields missing.
    #[error("WeChat API answered with an unparseable response")]
    Garbage,
    /// `errcode` present and non-zero. `msg` is WeChat's `errmsg`, scrubbed of anything sent.
    #[error("WeChat API error {code}: {msg}")]
    Api { code: i64, msg: String },
    /// The login came back with `is_snapshotuser: 1` (WeChat's snapshot page, 快照页): a
    /// virtual identity, never a session.
    #[error("WeChat answered for a snapshot-page user (virtual identity)")]
    SnapshotUser,
}

impl WechatError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WechatError::Api { code, .. } => match code {
                40029 | 40163 | 42003 | 40001 | 40014 | 42007 | 40030 | 42002 => {
                    ErrorClass::Relogin
                }
                -1 | 45011 => ErrorClass::Busy,
                48001 | 50001 | 40226 => ErrorClass::Forbidden,
                _ => ErrorClass::Upstream,
            },
            WechatError::SnapshotUser => ErrorClass::VirtualIdentity,
            _ => ErrorClass::Upstream,
        }
    }

    /// Bad or missing appid / secret (40013, 40125, 41002, 41004): log a configuration error.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            WechatError::Api {
                code: 40013 | 40125 | 41002 | 41004,
                ..
            }
        )
    }
}

impl WechatError {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            WechatError::Unreachable => "unreachable",
            WechatError::Timeout => "timeout",
            WechatError::Status(_) => "http status",
            WechatError::Garbage => "garbage",
            WechatError::Api { .. } => "api error",
            WechatError::SnapshotUser => "snapshot user",
        }
    }
}

/// The `outcome` label of `wxgate_logins_total` for a login that failed this way: a client's
/// invalid, used or expired code is the client's (`invalid_code`), not WeChat failing — only
/// `wechat_*` outcomes should page anyone.
fn login_outcome(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Relogin => "invalid_code",
        ErrorClass::VirtualIdentity => "snapshot_user",
        ErrorClass::Busy => "wechat_busy",
        ErrorClass::Forbidden => "wechat_forbidden",
        ErrorClass::InvalidInput => "invalid_request",
        ErrorClass::Upstream => "wechat_error",
    }
}

impl ProviderError for WechatError {
    fn class(&self) -> ErrorClass {
        WechatError::class(self)
    }

    fn code(&self) -> &'static str {
        match WechatError::class(self) {
            ErrorClass::Relogin => "invalid_code",
            ErrorClass::Busy => "wechat_busy",
            ErrorClass::Forbidden => "wechat_forbidden",
            ErrorClass::VirtualIdentity => "snapshot_user",
            ErrorClass::Upstream | ErrorClass::InvalidInput => "wechat_error",
        }
    }

    fn texts(&self) -> (Text<'static>, Text<'static>) {
        let t = |zh, en| Text { zh, en };
        match WechatError::class(self) {
                ErrorClass::Relogin => (
                    t("登录已失效", "Login expired"),
                    t("微信授权码无效、已使用或已过期，请重新登录。", "The WeChat authorization code is invalid, already used or expired. Please sign in again."),
                ),
                ErrorClass::Busy => (
                    t("微信繁忙", "WeChat is busy"),
                    t("微信服务繁忙，请稍后重新登录。", "WeChat is busy right now. Please sign in again in a moment."),
                ),
                ErrorClass::Forbidden => (
                    t("微信拒绝了授权", "WeChat refused"),
                    t("微信未授权此操作。", "WeChat did not authorize this request."),
                ),
                ErrorClass::VirtualIdentity => (
                    t("请使用完整服务", "Tap “使用完整服务” (Use full service)"),
                    t("您正在浏览微信的页面快照，无法登录。请点击屏幕底部的「使用完整服务」，然后重新登录。", "WeChat is showing you a snapshot of this page, which cannot sign you in. Tap 「使用完整服务」 (Use full service) at the bottom of the screen, then sign in again."),
                ),
                ErrorClass::Upstream | ErrorClass::InvalidInput => (
                    t("微信服务出错", "WeChat error"),
                    t("与微信服务器通信失败，请稍后再试。", "Talking to WeChat failed. Please try again later."),
                ),
            }
    }

    fn outcome(&self) -> Option<&'static str> {
        Some(login_outcome(WechatError::class(self)))
    }

    fn log(&self) {
        if *self == WechatError::SnapshotUser {
            tracing::info!("login refused: WeChat snapshot-page user (virtual identity)");
        } else if self.is_config_error() {
            tracing::error!(error = %self, "WeChat rejected the gateway's app credentials: check wechat.*.appid / secret");
        } else {
            tracing::warn!(error = %self, "WeChat call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_bad_code_is_not_a_wechat_error() {
        let api = |code| WechatError::Api {
            code,
            msg: String::new(),
        };
        for code in [40029, 40163, 42003] {
            assert_eq!(api(code).outcome(), Some("invalid_code"), "{code}");
        }
        assert_eq!(api(-1).outcome(), Some("wechat_busy"));
        assert_eq!(api(48001).outcome(), Some("wechat_forbidden"));
        assert_eq!(api(40125).outcome(), Some("wechat_error"));
        assert_eq!(WechatError::Unreachable.outcome(), Some("wechat_error"));
        assert_eq!(WechatError::Timeout.outcome(), Some("wechat_error"));
    }

    #[test]
    fn classes() {
        let api = |code| WechatError::Api {
            code,
            msg: String::new(),
        };
        for c in [40029, 40163, 42003, 40001, 40014, 42007, 40030, 42002] {
            assert_eq!(api(c).class(), ErrorClass::Relogin, "{c}");
        }
        for c in [-1, 45011] {
            assert_eq!(api(c).class(), ErrorClass::Busy, "{c}");
        }
        for c in [48001, 50001, 40226] {
            assert_eq!(api(c).class(), ErrorClass::Forbidden, "{c}");
        }
        for c in [40013, 40125, 41002, 41004, 40003, 42001, 99999] {
            assert_eq!(api(c).class(), ErrorClass::Upstream, "{c}");
        }
        for c in [40013, 40125, 41002, 41004] {
            assert!(api(c).is_config_error());
        }
        let snap = WechatError::SnapshotUser;
        assert_eq!(snap.class(), ErrorClass::VirtualIdentity);
        assert_eq!(snap.outcome(), Some("snapshot_user"));
        assert_eq!(ProviderError::code(&snap), "snapshot_user");
        assert_eq!(ProviderError::outcome(&snap), Some("snapshot_user"));
        assert!(!api(40029).is_config_error());
        for e in [
            WechatError::Unreachable,
            WechatError::Timeout,
            WechatError::Status(500),
            WechatError::Status(404),
            WechatError::Garbage,
        ] {
            assert_eq!(e.class(), ErrorClass::Upstream);
            assert!(!e.is_config_error());
        }
    }
}
