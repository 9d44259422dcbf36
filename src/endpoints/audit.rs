//! The endpoints' audit lines (`wxgate::audit`, the typed event of `common/audit.rs`) and the
//! access-rules refusal every endpoint answers the same way.

use super::context::Ctx;
use super::urls;
use crate::common::audit::{Action, AuditEvent, Who};
use crate::common::error::{GatewayError, Refusal, RefusalReason};
use crate::session::Session;

/// One audit line about a session (made, ended, refused, linked).
pub(super) fn session_event(
    cx: &Ctx<'_>,
    action: Action,
    s: &Session,
    outcome: &str,
    reason: &str,
) {
    let who = cx.providers.who(s);
    AuditEvent {
        action,
        client_ip: Some(cx.client_ip),
        source: cx.providers.kind_name(s.origin()),
        appid: s.appid(),
        who: &who,
        outcome,
        reason,
    }
    .emit();
}

/// The audit line of a login that failed before anyone was identified (declined, bad or used
/// code, the provider's error): the source and the reason code only.
pub(super) fn failed_login(cx: &Ctx<'_>, source: &str, reason: &str) {
    AuditEvent {
        action: Action::Login,
        client_ip: Some(cx.client_ip),
        source,
        appid: "",
        who: &Who::default(),
        outcome: "failed",
        reason,
    }
    .emit();
}

/// The 403 for a session the access rules refuse: audited, with who it is and the "switch
/// account" link back to a login that returns to `rd`.
pub(crate) fn refusal(cx: &Ctx<'_>, s: &Session, reason: RefusalReason, rd: &str) -> GatewayError {
    session_event(cx, Action::Refusal, s, "forbidden", reason.code());
    GatewayError::Forbidden(Box::new(Refusal {
        reason,
        who: cx.providers.who(s),
        switch_url: urls::switch_account_path(cx.settings.prefix(), rd),
    }))
}
