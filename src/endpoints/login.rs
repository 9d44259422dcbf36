//! What every login shares, browser or JSON, whatever the provider: the limit on the code a
//! client hands in, and the last step: identity → access check → account linking (when
//! `[link]` is on) → session record in the store → its cookie.

use http::header::HeaderValue;
use http::Response;

use super::audit;
use super::context::Ctx;
use super::cookies::cookie_header;
use super::link_hook::{self, Answer, Subject};
use super::link_ticket::{pending_key, Tickets, TICKET_TTL_SECS};
use crate::common::audit::Action;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::{unix_now, Body};
use crate::providers::{Identity, ProviderFailure};
use crate::session::{NewSession, PendingLogin, Session, SessionId, SessionStore};

/// Longest authorization `code` passed on to a provider (WeChat's are 32 characters):
/// anything longer is refused before a provider call is made for it.
pub(crate) const MAX_CODE: usize = 256;

/// The session record of an identity, expiring after `session.ttl_secs`.
pub(super) fn session_of(cx: &Ctx<'_>, i: &Identity) -> Session {
    Session::new(&NewSession {
        openid: &i.openid,
        unionid: i.unionid.as_deref(),
        appid: &i.appid,
        origin: i.origin,
        nickname: &i.nickname,
        avatar: &i.avatar,
        expires_at: unix_now() + cx.settings.session.ttl.as_secs(),
    })
}

/// Count a provider's failure in the logins counter (when it counts) and pass it on.
pub(super) fn provider_failed(
    cx: &Ctx<'_>,
    source: &'static str,
    e: ProviderFailure,
) -> GatewayError {
    if let Some(outcome) = e.outcome() {
        cx.metrics.login(source, outcome);
    }
    let e = GatewayError::from(e);
    audit::failed_login(cx, source, e.code());
    e
}

/// Whether the access rules let this session in (counted, audited and logged when not; the
/// 403 offers a new login that returns to `rd`).
fn check_access(cx: &Ctx<'_>, s: &Session, rd: &str) -> Result<(), GatewayError> {
    let Some(reason) = cx.access.refusal(s) else {
        return Ok(());
    };
    let source = cx.providers.kind_name(s.origin());
    cx.metrics.login(source, "forbidden");
    Err(audit::refusal(cx, s, reason, rd))
}

/// Check access, store the session under a new id, and build its cookie.
pub(super) async fn start_session(
    cx: &Ctx<'_>,
    s: Session,
    rd: &str,
) -> Result<(SessionId, HeaderValue), GatewayError> {
    check_access(cx, &s, rd)?;
    let source = cx.providers.kind_name(s.origin());
    let id = SessionId::random();
    audit::session_event(cx, Action::Login, &s, "ok", "");
    cx.store.insert(id, s).await?;
    cx.metrics.login(source, "ok");
    let ttl = cx.settings.session.ttl.as_secs() as i64;
    Ok((
        id,
        cookie_header(cx.settings, cx.session_cookie, &id.encode(), "/", ttl),
    ))
}

/// Who finishes a login: a browser (and where it returns to) or an app / mini program.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via<'a> {
    Browser { rd: &'a str },
    Json,
}

/// How a login ended.
pub(super) enum Finished {
    /// A session: its id, its cookie and the record.
    Session(SessionId, HeaderValue, Session),
    /// No session (yet): the answer to send as it is (the app's bind page or refusal).
    Answered(Response<Body>),
}

/// The last step of every login, whatever the provider: the access rules, then the app's
/// account-linking hook when `[link]` is on (user id, bind page, refusal, or a closed failure:
/// no session then), then the session.
pub(super) async fn finish(
    cx: &Ctx<'_>,
    identity: &Identity,
    via: Via<'_>,
) -> Result<Finished, GatewayError> {
    let mut session = session_of(cx, identity);
    if let (Via::Browser { .. }, Some(grant), Some(_)) =
        (&via, &identity.grant, cx.settings.session.revalidate)
    {
        // Browser sessions keep the grant for revalidation, in the record only (never a
        // cookie, header or /userinfo field); app and mini-program sessions are not re-checked.
        session = session.with_grant(Some(grant));
    }
    let rd = match via {
        Via::Browser { rd } => rd,
        Via::Json => "/",
    };
    check_access(cx, &session, rd)?;
    if let Some(link) = cx.link {
        let source = cx.providers.kind_name(identity.origin);
        let mut subject = Subject::of(identity, source, None);
        if cx
            .providers
            .get(identity.origin)
            .is_some_and(|p| p.link_id_field(identity) == "wecom_userid")
        {
            // A WeCom member: the id is a userid, not an openid.
            subject.wecom_userid = subject.openid.take();
        }
        let answer = link.call(&subject).await.inspect_err(|_| {
            cx.metrics.login(source, "link_error");
            audit::session_event(cx, Action::Link, &session, "failed", "link_error");
        })?;
        let json = matches!(via, Via::Json);
        match linked(cx, identity, None, via, answer).await? {
            Linked::UserId(user_id) => session = session.with_link(Some(&user_id), None),
            Linked::Bind { url, ticket } => {
                return Ok(Finished::Answered(link_hook::bind(json, &url, &ticket)))
            }
            Linked::Refused(message) => {
                return Ok(Finished::Answered(link_hook::refused(json, &message)))
            }
        }
    }
    let (id, cookie) = start_session(cx, session.clone(), rd).await?;
    Ok(Finished::Session(id, cookie, session))
}

/// The app's decision, with the ticket made for a bind hand-off.
pub(super) enum Linked {
    UserId(String),
    /// The app's page and the ticket it resumes with.
    Bind {
        url: String,
        ticket: String,
    },
    /// The app's message (may be empty).
    Refused(String),
}

/// The app's answer about `identity` (and `phone`), counted and logged; for a bind hand-off,
/// a fresh ticket and its login in flight in the session store.
pub(super) async fn linked(
    cx: &Ctx<'_>,
    identity: &Identity,
    phone: Option<&str>,
    via: Via<'_>,
    answer: Answer,
) -> Result<Linked, GatewayError> {
    let source = cx.providers.kind_name(identity.origin);
    let outcome = match &answer {
        Answer::UserId(_) => "linked",
        Answer::Refused(_) => "refused",
        Answer::Bind(_) => "bind_required",
    };
    audit::session_event(cx, Action::Link, &session_of(cx, identity), outcome, "");
    match answer {
        Answer::UserId(user_id) => Ok(Linked::UserId(user_id)),
        Answer::Refused(message) => {
            cx.metrics.login(source, "link_refused");
            tracing::info!(source, "login refused by the account-linking hook");
            Ok(Linked::Refused(message))
        }
        Answer::Bind(url) => {
            let Some(link) = cx.link else {
                return Err(LoginError::NotFound.into());
            };
            let (browser, rd) = match via {
                Via::Browser { rd } => (true, rd.to_string()),
                Via::Json => (false, String::new()),
            };
            let claims = Tickets::claims(identity, phone, browser, unix_now());
            cx.store
                .put_pending(
                    &pending_key(&claims.id),
                    PendingLogin {
                        rd,
                        origin: identity.origin,
                    },
                    std::time::Duration::from_secs(TICKET_TTL_SECS),
                )
                .await?;
            cx.metrics.login(source, "bind_required");
            tracing::info!(source, "login handed to the app's bind page");
            let ticket = link.tickets.seal(&claims);
            Ok(Linked::Bind { url, ticket })
        }
    }
}
