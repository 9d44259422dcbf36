//! A login's last step, the same for every provider and endpoint: identity → access check →
//! session record in the store → its cookie.

use http::header::HeaderValue;

use super::cookies::cookie_header;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::unix_now;
use crate::pipeline::App;
use crate::providers::{Identity, ProviderFailure};
use crate::session::{NewSession, Session, SessionId, SessionStore};

/// The session record of an identity, expiring after `session.ttl_secs`.
pub(super) fn session_of(app: &App, i: &Identity) -> Session {
    Session::new(&NewSession {
        openid: &i.openid,
        unionid: i.unionid.as_deref(),
        appid: &i.appid,
        origin: i.origin,
        nickname: &i.nickname,
        avatar: &i.avatar,
        expires_at: unix_now() + app.settings.raw.session.ttl_secs,
    })
}

/// Count a provider's failure in the logins counter (when it counts) and pass it on.
pub(super) fn provider_failed(app: &App, source: &'static str, e: ProviderFailure) -> GatewayError {
    if let Some(outcome) = e.outcome() {
        app.metrics.login(source, outcome);
    }
    e.into()
}

/// Check access, store the session under a new id, and build its cookie.
pub(super) async fn start_session(
    app: &App,
    s: Session,
) -> Result<(SessionId, HeaderValue), GatewayError> {
    let source = app.providers.kind_name(s.origin());
    if !app.access.allows_session(&s) {
        app.metrics.login(source, "forbidden");
        tracing::info!(source, "login refused by access rules");
        return Err(LoginError::NotAllowed.into());
    }
    let id = SessionId::random();
    app.store.insert(id, s).await?;
    app.metrics.login(source, "ok");
    let ttl = app.settings.raw.session.ttl_secs as i64;
    Ok((
        id,
        cookie_header(&app.settings, &app.session_cookie, &id.encode(), "/", ttl),
    ))
}
