//! The audit trail (log target `wxgate::audit`): one line per login, logout, refusal and
//! account-linking outcome — who (openid, unionid, WeCom userid), from where (client IP), which
//! app and login kind, the outcome and its reason. Every provider emits the same typed
//! [`AuditEvent`]; nothing else is written to this target. Never a secret, code, token or
//! session id: the event has no field that could hold one.

use std::net::IpAddr;

/// Who a login or session is, as a provider names its users: WeChat fills `openid` and
/// `unionid` (empty when WeChat gave none), WeCom its `wecom_userid`. Shown on the 403 page,
/// written in the 403 JSON and in audit lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    pub openid: String,
    pub unionid: String,
    pub wecom_userid: String,
}

impl Who {
    /// The identifiers a user can send to an administrator: label and value, the empty ones
    /// left out.
    pub fn shown(&self) -> Vec<(&'static str, &str)> {
        [
            ("WeCom UserID", self.wecom_userid.as_str()),
            ("OpenID", self.openid.as_str()),
            ("UnionID", self.unionid.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Logout,
    /// A login or a request refused by the access rules (or the provider's own rules).
    Refusal,
    /// The account-linking hook's decision (bind page, refusal, user id after a bind).
    Link,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Logout => "logout",
            Action::Refusal => "refusal",
            Action::Link => "link",
        }
    }
}

/// One audit line.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub action: Action,
    /// The client's address (the trusted proxy's `X-Forwarded-For` when there is one).
    pub client_ip: Option<IpAddr>,
    /// The login kind (`website`, `official_account`, `mobile_app`, `mini_program`, `wecom`).
    pub source: &'a str,
    pub appid: &'a str,
    pub who: &'a Who,
    /// `ok`, `forbidden`, `failed`, `bind_required`, `refused`, ...
    pub outcome: &'a str,
    /// A short, fixed reason code (`not_allowed`, `unionid_required`, `invalid_code`, ...);
    /// empty when there is nothing more to say.
    pub reason: &'a str,
}

impl AuditEvent<'_> {
    /// Write the line (target `wxgate::audit`, level info).
    pub fn emit(&self) {
        let ip = self.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::info!(
            target: "wxgate::audit",
            event = self.action.as_str(),
            client_ip = %ip,
            source = self.source,
            appid = self.appid,
            openid = %self.who.openid,
            unionid = %self.who.unionid,
            wecom_userid = %self.who.wecom_userid,
            outcome = self.outcome,
            reason = self.reason,
            "audit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_leaves_out_empty_identifiers() {
        let w = Who {
            openid: "o1".into(),
            ..Who::default()
        };
        assert_eq!(w.shown(), vec![("OpenID", "o1")]);
        let w = Who {
            wecom_userid: "zhangsan".into(),
            ..Who::default()
        };
        assert_eq!(w.shown(), vec![("WeCom UserID", "zhangsan")]);
    }
}
