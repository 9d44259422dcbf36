//! What the endpoints get from the pipeline for one request: the gateway's parts, and what the
//! pipeline read from the request's headers. The endpoints never call back into the pipeline.

use crate::common::http_util::unix_now;
use crate::common::metrics::Metrics;
use crate::config::Settings;
use crate::providers::Registry;
use crate::session::{Authenticated, Credentials, Session, Store, StoreError};

use std::sync::{Arc, Weak};

use super::callback_runs::CallbackRuns;
use super::login_state::StateSigner;
use super::rate_limit::LoginLimiter;
use super::revalidate::Revalidator;

/// The gateway's parts the endpoints use, borrowed for one request.
pub(crate) struct Ctx<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) store: &'a Store,
    pub(crate) providers: &'a Registry,
    pub(crate) signer: &'a StateSigner,
    pub(crate) metrics: &'a Metrics,
    pub(crate) session_cookie: &'a str,
    pub(crate) login_cookie: &'a str,
    pub(crate) sign_secret: Option<&'a [u8]>,
    pub(crate) login_limiter: Option<&'a LoginLimiter>,
    /// The account-linking hook (`[link]`), when on.
    pub(crate) link: Option<&'a super::link_hook::Link>,
    /// The access rules (`access.*`).
    pub(crate) access: &'a dyn AccessRules,
    /// The client's address (a trusted proxy's `X-Forwarded-For`), for audit lines.
    pub(crate) client_ip: std::net::IpAddr,
    /// The request's session credentials (cookies, bearer token).
    pub(crate) credentials: Credentials,
    /// `session.revalidate_secs` > 0: re-checks browser sessions' grants.
    pub(crate) revalidator: Option<&'a Revalidator>,
    /// The login callbacks in progress (see [`CallbackRuns`]).
    pub(crate) callback_runs: &'a Arc<CallbackRuns>,
    /// Where this context came from, to make it again in a task that outlives the request.
    pub(crate) source: &'a Weak<dyn CtxSource>,
}

/// What makes a [`Ctx`] (the pipeline's App): a login callback's run makes one again in a task
/// of its own, which the request that started it may not outlive.
pub(crate) trait CtxSource: Send + Sync + 'static {
    /// The context for a request from `client_ip` presenting `credentials`.
    fn ctx(&self, client_ip: std::net::IpAddr, credentials: Credentials) -> Ctx<'_>;
}

/// Who may pass: the access rules (`access.*`) over a session's identity.
pub(crate) trait AccessRules: Sync {
    /// Why the rules refuse this session; None: it may pass.
    fn refusal(&self, s: &Session) -> Option<crate::common::error::RefusalReason>;
    /// Whether a unionid could let in this openid, which the rules refuse without one (the
    /// consent round of `scope = "auto"`).
    fn needs_unionid(&self, openid: &str) -> bool;
}

impl Ctx<'_> {
    /// The request's live session, if any.
    pub(crate) async fn authenticate(&self) -> Result<Option<Authenticated>, StoreError> {
        let found = crate::session::authenticate(self.store, &self.credentials, unix_now()).await?;
        match self.revalidator {
            Some(r) => r.vet(self.store, found).await,
            None => Ok(found),
        }
    }
}
