//! Failures of a WeCom login and what the gateway does about them.

use crate::common::error::{ErrorClass, ProviderError};
use crate::common::pages::Text;

/// WeCom's "IP not trusted" (企业可信IP): since 2022-06 new self-built apps must list the
/// server's egress IP.
pub(super) const UNTRUSTED_IP: i64 = 60020;

/// Failure of a WeCom login. `Display` is safe to log: no secret, code or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WecomError {
    #[error("WeCom API unreachable")]
    Unreachable,
    #[error("WeCom API timed out")]
    Timeout,
    #[error("WeCom API answered HTTP {0}")]
    Status(u16),
    #[error("WeCom API answered with an unparseable response")]
    Garbage,
    /// `errcode` present and non-zero (WeCom's `errmsg` is not kept: it may echo what was sent).
    #[error("WeCom API error {0}")]
    Api(i64),
    /// The user is not a member of the corp (WeCom gave only an openid) and
    /// `wecom.allow_non_members` is off.
    #[error("not a member of the WeCom corp")]
    NotMember,
}

impl WecomError {
    pub(super) fn class(&self) -> ErrorClass {
        match self {
            // A client's bad, used or expired code.
            WecomError::Api(40029 | 42003 | 40163) => ErrorClass::Relogin,
            WecomError::Api(-1 | 45009 | 45011) => ErrorClass::Busy,
            WecomError::NotMember => ErrorClass::Forbidden,
            _ => ErrorClass::Upstream,
        }
    }

    /// The gateway's own credentials are wrong (40001 invalid secret, 40013 invalid corpid,
    /// 40056 / 301002 agent): an operator's mistake.
    fn is_config_error(&self) -> bool {
        matches!(
            self,
            WecomError::Api(40001 | 40013 | 40056 | 301002 | 41004)
        )
    }

    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            WecomError::Unreachable => "unreachable",
            WecomError::Timeout => "timeout",
            WecomError::Status(_) => "http status",
            WecomError::Garbage => "garbage",
            WecomError::Api(_) => "api error",
            WecomError::NotMember => "not a member",
        }
    }
}

impl ProviderError for WecomError {
    fn class(&self) -> ErrorClass {
        WecomError::class(self)
    }

    fn code(&self) -> &'static str {
        match self {
            WecomError::NotMember => "not_member",
            WecomError::Api(UNTRUSTED_IP) => "wecom_untrusted_ip",
            _ => match WecomError::class(self) {
                ErrorClass::Relogin => "invalid_code",
                ErrorClass::Busy => "wecom_busy",
                _ => "wecom_error",
            },
        }
    }

    fn texts(&self) -> (Text<'static>, Text<'static>) {
        let t = |zh, en| Text { zh, en };
        match self {
            WecomError::NotMember => (
                t("仅限企业成员", "Members only"),
                t("本站仅对本企业的企业微信成员开放。", "This site is open only to members of this company in WeCom (企业微信)."),
            ),
            WecomError::Api(UNTRUSTED_IP) => (
                t("企业微信拒绝了本站服务器", "WeCom refused this server"),
                t("企业微信不信任本站服务器的IP地址。请网站管理员在企业微信管理后台将其加入应用的「企业可信IP」。", "WeCom does not trust this server's IP address. The site's administrator must add it to the app's trusted IPs (企业可信IP) in the WeCom admin console."),
            ),
            _ => match WecomError::class(self) {
                ErrorClass::Relogin => (
                    t("登录已失效", "Login expired"),
                    t("企业微信授权码无效、已使用或已过期，请重新登录。", "The WeCom authorization code is invalid, already used or expired. Please sign in again."),
                ),
                ErrorClass::Busy => (
                    t("企业微信繁忙", "WeCom is busy"),
                    t("企业微信服务繁忙，请稍后重新登录。", "WeCom is busy right now. Please sign in again in a moment."),
                ),
                _ => (
                    t("企业微信服务出错", "WeCom error"),
                    t("与企业微信服务器通信失败，请稍后再试。", "Talking to WeCom failed. Please try again later."),
                ),
            },
        }
    }

    fn outcome(&self) -> Option<&'static str> {
        Some(match self {
            WecomError::NotMember => "not_member",
            _ => match WecomError::class(self) {
                ErrorClass::Relogin => "invalid_code",
                ErrorClass::Busy => "wecom_busy",
                _ => "wecom_error",
            },
        })
    }

    fn log(&self) {
        match self {
            WecomError::Api(UNTRUSTED_IP) => tracing::error!(
                errcode = UNTRUSTED_IP,
                "WeCom refused the gateway's IP address (60020): in the WeCom admin console, \
                 应用管理 → the app of wecom.agent_id → 企业可信IP (trusted IP), add this \
                 server's egress IP address"
            ),
            e if e.is_config_error() => tracing::error!(
                error = %e,
                "WeCom rejected the gateway's app credentials: check wecom.corp_id, wecom.agent_id and wecom.secret"
            ),
            WecomError::NotMember => {
                tracing::info!("login refused: not a member of the WeCom corp")
            }
            e => tracing::warn!(error = %e, "WeCom call failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_codes() {
        assert_eq!(WecomError::Api(40029).class(), ErrorClass::Relogin);
        assert_eq!(WecomError::Api(40029).outcome(), Some("invalid_code"));
        assert_eq!(WecomError::NotMember.class(), ErrorClass::Forbidden);
        assert_eq!(ProviderError::code(&WecomError::NotMember), "not_member");
        let ip = WecomError::Api(UNTRUSTED_IP);
        assert_eq!(ip.class(), ErrorClass::Upstream);
        assert_eq!(ProviderError::code(&ip), "wecom_untrusted_ip");
        assert!(ip.texts().1.en.contains("trusted IPs"));
        assert!(WecomError::Api(40001).is_config_error());
        assert_eq!(WecomError::Api(-1).class(), ErrorClass::Busy);
        for e in [
            WecomError::Unreachable,
            WecomError::Timeout,
            WecomError::Garbage,
        ] {
            assert_eq!(e.class(), ErrorClass::Upstream);
            assert_eq!(e.outcome(), Some("wecom_error"));
        }
    }
}
