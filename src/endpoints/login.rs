//! What every login shares, browser or JSON, whatever the provider: the limit on the code a
//! client hands in, and the last step: identity → access check → session record in the store →
//! its cookie.

use http::header::HeaderValue;

use super::context::Ctx;
use super::cookies::cookie_header;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::unix_now;
use crate::providers::{Identity, ProviderFailure};
use crate::session::{NewSession, Session, SessionId, SessionStore};

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
    e.into()
}

/// Check access, store the session under a new id, and build its cookie.
pub(super) async fn start_session(
    cx: &Ctx<'_>,
    s: Session,
) -> Result<(SessionId, HeaderValue), GatewayError> {
    let source = cx.providers.kind_name(s.origin());
    if !cx.access.allows_session(&s) {
        cx.metrics.login(source, "forbidden");
        tracing::info!(source, "login refused by access rules");
        return Err(LoginError::NotAllowed.into());
    }
    let id = SessionId::random();
    cx.store.insert(id, s).await?;
    cx.metrics.login(source, "ok");
    let ttl = cx.settings.session.ttl.as_secs() as i64;
    Ok((
        id,
        cookie_header(cx.settings, cx.session_cookie, &id.encode(), "/", ttl),
    ))
}
