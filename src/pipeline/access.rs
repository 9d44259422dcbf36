//! Phase "authorize": the access rules (`access.allow_unionids`, `access.allow_openids`,
//! `access.require_unionid`) a live session must pass to reach the upstream.

use std::collections::HashSet;
use std::sync::Arc;

use crate::providers::Registry;

use crate::common::error::RefusalReason;
use crate::session::Session;

pub(crate) struct Access {
    pub(crate) allow_unionids: HashSet<String>,
    pub(crate) allow_openids: HashSet<String>,
    pub(crate) require_unionid: bool,
    /// A provider's own rule for its sessions (WeCom's `access.allow_wecom_userids`) replaces
    /// the rules above for them.
    pub(crate) providers: Arc<Registry>,
}

impl crate::endpoints::context::AccessRules for Access {
    fn refusal(&self, s: &Session) -> Option<RefusalReason> {
        Access::refusal(self, s)
    }
    fn needs_unionid(&self, openid: &str) -> bool {
        Access::needs_unionid(self, openid)
    }
}

impl Access {
    /// [`Access::allows`] for a session's identity, after the session's provider had its say
    /// (WeCom's allow-list). With no rules (the usual case) it reads only the session's origin:
    /// this runs on every proxied request.
    pub(crate) fn allows_session(&self, s: &Session) -> bool {
        if let Some(verdict) = self.providers.allows(s) {
            return verdict;
        }
        let open = !self.require_unionid
            && self.allow_unionids.is_empty()
            && self.allow_openids.is_empty();
        open || self.allows(s.openid(), s.unionid())
    }

    /// Why the rules refuse this session, if they do: a missing unionid under
    /// `require_unionid` is the operator's setup, told apart from an allow-list refusal.
    pub(crate) fn refusal(&self, s: &Session) -> Option<RefusalReason> {
        if self.allows_session(s) {
            None
        } else if self.require_unionid && s.unionid().is_none() {
            Some(RefusalReason::UnionidRequired)
        } else {
            Some(RefusalReason::NotAllowed)
        }
    }

    /// Refused without a unionid, but some unionid could let this openid in: `require_unionid`
    /// (with the openid allowed, or no allow lists), or a non-empty `allow_unionids`.
    pub(crate) fn needs_unionid(&self, openid: &str) -> bool {
        !self.allows(openid, None)
            && (!self.allow_unionids.is_empty()
                || self.allow_openids.is_empty()
                || self.allow_openids.contains(openid))
    }

    pub(crate) fn allows(&self, openid: &str, unionid: Option<&str>) -> bool {
        if self.require_unionid && unionid.is_none() {
            return false;
        }
        if self.allow_unionids.is_empty() && self.allow_openids.is_empty() {
            return true;
        }
        unionid.is_some_and(|u| self.allow_unionids.contains(u))
            || self.allow_openids.contains(openid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules() {
        let open = Access {
            allow_unionids: HashSet::new(),
            allow_openids: HashSet::new(),
            require_unionid: false,
            providers: Arc::new(Registry::empty()),
        };
        assert!(open.allows("o", None));
        let strict = Access {
            allow_unionids: ["u1".to_string()].into(),
            allow_openids: ["o2".to_string()].into(),
            require_unionid: false,
            providers: Arc::new(Registry::empty()),
        };
        assert!(strict.allows("o1", Some("u1")));
        assert!(strict.allows("o2", None));
        assert!(!strict.allows("o3", Some("u3")));
        let need = Access {
            allow_unionids: HashSet::new(),
            allow_openids: HashSet::new(),
            require_unionid: true,
            providers: Arc::new(Registry::empty()),
        };
        assert!(!need.allows("o", None));
        assert!(need.allows("o", Some("u")));
        // Which logins a unionid could still let in (scope = "auto").
        assert!(!open.needs_unionid("o"));
        assert!(need.needs_unionid("o"));
        assert!(!strict.needs_unionid("o2"), "allowed by openid already");
        assert!(strict.needs_unionid("o3"), "allow_unionids could match");
        let openids_only = Access {
            allow_unionids: HashSet::new(),
            allow_openids: ["o2".to_string()].into(),
            require_unionid: true,
            providers: Arc::new(Registry::empty()),
        };
        assert!(openids_only.needs_unionid("o2"));
        assert!(!openids_only.needs_unionid("o3"), "no unionid lets o3 in");

        let session = |openid: &str, unionid: Option<&str>| {
            Session::new(&crate::session::NewSession {
                openid,
                unionid,
                appid: "wx1",
                origin: crate::session::Origin {
                    provider: 0,
                    kind: 0,
                },
                nickname: "",
                avatar: "",
                expires_at: 2,
            })
        };
        assert!(open.allows_session(&session("o", None)));
        assert!(strict.allows_session(&session("o1", Some("u1"))));
        assert!(strict.allows_session(&session("o2", None)));
        assert!(!strict.allows_session(&session("o3", Some("u3"))));
        assert!(!need.allows_session(&session("o", None)));
        assert!(need.allows_session(&session("o", Some("u"))));
        assert_eq!(
            need.refusal(&session("o", None)),
            Some(RefusalReason::UnionidRequired)
        );
        assert_eq!(need.refusal(&session("o", Some("u"))), None);
        assert_eq!(
            strict.refusal(&session("o3", Some("u3"))),
            Some(RefusalReason::NotAllowed)
        );
        assert_eq!(
            strict.refusal(&session("o3", None)),
            Some(RefusalReason::NotAllowed)
        );
    }
}
