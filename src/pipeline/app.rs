//! [`App`]: everything a request needs, built once at start from the settings.

use std::sync::Arc;

use http::header::HeaderValue;

use crate::common::metrics::Metrics;
use crate::config::Settings;
use crate::endpoints::login_state::StateSigner;
use crate::pipeline::access::Access;
use crate::pipeline::verification::Verification;
use crate::providers::{ProviderFailure, Registry};
use crate::session::Store;

/// Everything a request needs, built once at start.
pub struct App {
    pub(crate) settings: Settings,
    pub store: Store,
    pub(crate) providers: Registry,
    pub(crate) signer: StateSigner,
    pub(crate) verification: Verification,
    pub(crate) metrics: Metrics,
    pub(crate) access: Access,
    pub(crate) session_cookie: String,
    pub(crate) login_cookie: String,
    pub(crate) sign_secret: Option<Vec<u8>>,
    /// `https` when this listener terminates TLS.
    pub(crate) proto: &'static str,
    /// `access.login_rate_per_minute` (None when 0).
    pub(crate) login_limiter: Option<crate::endpoints::rate_limit::LoginLimiter>,
    /// `Strict-Transport-Security` for every response (TLS and `server.hsts_max_age_secs` > 0).
    pub(crate) hsts: Option<HeaderValue>,
    /// The account-linking hook (`[link]`), when `link.url` is set.
    pub(crate) link: Option<crate::endpoints::link_hook::Link>,
}

impl App {
    pub(crate) fn new(settings: Settings, store: Store) -> Result<Arc<App>, ProviderFailure> {
        let providers = Registry::from_settings(&settings)?;
        let sign_secret = settings
            .headers
            .sign_secret
            .as_ref()
            .map(|s| s.expose().to_vec());
        let link = match &settings.link {
            Some(l) => Some(crate::endpoints::link_hook::Link::new(l).map_err(|e| {
                tracing::error!(error = %e, "cannot build the account-linking HTTP client");
                ProviderFailure::from(crate::providers::wechat::WechatError::Unreachable)
            })?),
            None => None,
        };
        Ok(Arc::new(App {
            link,
            providers,
            signer: StateSigner::new(settings.cookie_secret()),
            verification: Verification::new(&settings.verification),
            metrics: Metrics::new(),
            access: Access {
                allow_unionids: settings.access.allow_unionids.clone(),
                allow_openids: settings.access.allow_openids.clone(),
                require_unionid: settings.access.require_unionid,
            },
            session_cookie: settings.session.cookie_name.clone(),
            login_cookie: settings.session.login_cookie.clone(),
            sign_secret,
            login_limiter: crate::endpoints::rate_limit::LoginLimiter::new(
                settings.access.login_rate_per_minute,
            ),
            proto: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
            hsts: (settings.tls.is_some() && settings.server.hsts_max_age_secs > 0)
                .then(|| {
                    HeaderValue::from_str(&format!("max-age={}", settings.server.hsts_max_age_secs))
                })
                .and_then(Result::ok),
            store,
            settings,
        }))
    }

    pub(crate) fn prefix(&self) -> &str {
        self.settings.prefix()
    }

    /// `{prefix}/login?rd=...`
    pub(crate) fn login_path(&self, rd: &str) -> String {
        crate::endpoints::urls::login_path(self.prefix(), rd)
    }

    /// `{public_url}{prefix}/login?rd=...`
    pub(crate) fn login_url(&self, rd: &str) -> String {
        crate::endpoints::urls::login_url(&self.settings, rd)
    }
}
