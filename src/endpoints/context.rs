//! What the endpoints get from the pipeline for one request: the gateway's parts, and what the
//! pipeline read from the request's headers. The endpoints never call back into the pipeline.

use crate::common::http_util::unix_now;
use crate::common::metrics::Metrics;
use crate::config::Settings;
use crate::providers::Registry;
use crate::session::{Authenticated, Credentials, Session, Store, StoreError};

use super::login_state::StateSigner;
use super::rate_limit::LoginLimiter;

/// The gateway's parts the endpoints use, borrowed for one request.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub store: &'a Store,
    pub providers: &'a Registry,
    pub signer: &'a StateSigner,
    pub metrics: &'a Metrics,
    pub session_cookie: &'a str,
    pub login_cookie: &'a str,
    pub sign_secret: Option<&'a [u8]>,
    pub login_limiter: Option<&'a LoginLimiter>,
    /// The access rules (`access.*`).
    pub access: &'a dyn AccessRules,
    /// The request's session credentials (cookies, bearer token).
    pub credentials: Credentials,
}

/// Who may pass: the access rules (`access.*`) over a session's identity.
pub trait AccessRules: Sync {
    fn allows_session(&self, s: &Session) -> bool;
}

impl Ctx<'_> {
    /// The request's live session, if any.
    pub async fn authenticate(&self) -> Result<Option<Authenticated>, StoreError> {
        crate::session::authenticate(self.store, &self.credentials, unix_now()).await
    }
}
