//! [`App`]: everything a request needs, built from the settings at start and again on each
//! reload ([`App::reloaded`]). What must outlive a reload — the session store (pending logins
//! with it), the metrics, the login rate limiter's counts, the state signer — is shared between
//! an App and the one that replaces it; the rest is rebuilt from the new settings.

use std::sync::{Arc, Weak};

use http::header::HeaderValue;

use crate::common::metrics::Metrics;
use crate::config::Settings;
use crate::endpoints::callback_runs::CallbackRuns;
use crate::endpoints::context::CtxSource;
use crate::endpoints::login_state::StateSigner;
use crate::endpoints::rate_limit::LoginLimiter;
use crate::pipeline::access::Access;
use crate::pipeline::verification::Verification;
use crate::providers::{ProviderFailure, Registry};
use crate::session::Store;

/// Everything a request needs, built at start and on each reload. A request reads the App it
/// started with to its end.
pub struct App {
    pub(crate) settings: Settings,
    /// The same store for the process's whole life (a reload keeps it).
    pub store: Arc<Store>,
    pub(crate) providers: Arc<Registry>,
    pub(crate) signer: StateSigner,
    pub(crate) verification: Verification,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access: Access,
    pub(crate) session_cookie: String,
    pub(crate) login_cookie: String,
    pub(crate) sign_secret: Option<Vec<u8>>,
    /// `https` when this listener terminates TLS.
    pub(crate) proto: &'static str,
    /// `access.login_rate_per_minute` (None when 0).
    pub(crate) login_limiter: Option<Arc<LoginLimiter>>,
    /// `Strict-Transport-Security` for every response (TLS and `server.hsts_max_age_secs` > 0).
    pub(crate) hsts: Option<HeaderValue>,
    /// `session.revalidate_secs` > 0: re-checks browser sessions' grants.
    pub(crate) revalidator: Option<crate::endpoints::revalidate::Revalidator>,
    /// The account-linking hook (`[link]`), when `link.url` is set.
    pub(crate) link: Option<crate::endpoints::link_hook::Link>,
    /// The login callbacks in progress (a reload keeps them).
    pub(crate) callback_runs: Arc<CallbackRuns>,
    /// This App, for what must outlive a request (a callback's run).
    pub(crate) me: Weak<dyn CtxSource>,
}

/// What an App shares with the App a reload replaces it with.
struct Kept {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    signer: StateSigner,
    login_limiter: Option<Arc<LoginLimiter>>,
    callback_runs: Arc<CallbackRuns>,
}

impl App {
    pub(crate) fn new(settings: Settings, store: Store) -> Result<Arc<App>, ProviderFailure> {
        let kept = Kept {
            store: Arc::new(store),
            metrics: Arc::new(Metrics::new()),
            signer: StateSigner::new(settings.cookie_secret()),
            login_limiter: LoginLimiter::new(settings.access.login_rate_per_minute).map(Arc::new),
            callback_runs: Arc::default(),
        };
        App::build(settings, kept)
    }

    /// The App for reloaded `settings`: the same store, metrics and (while
    /// `access.login_rate_per_minute` is unchanged) rate limiter state; the same state signer
    /// while `session.cookie_secret` is unchanged. Everything else comes from `settings`.
    pub(crate) fn reloaded(&self, settings: Settings) -> Result<Arc<App>, ProviderFailure> {
        let rate = settings.access.login_rate_per_minute;
        let kept = Kept {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            signer: if settings.cookie_secret() == self.settings.cookie_secret() {
                self.signer.clone()
            } else {
                StateSigner::new(settings.cookie_secret())
            },
            login_limiter: if rate == self.settings.access.login_rate_per_minute {
                self.login_limiter.clone()
            } else {
                LoginLimiter::new(rate).map(Arc::new)
            },
            callback_runs: self.callback_runs.clone(),
        };
        App::build(settings, kept)
    }

    fn build(settings: Settings, kept: Kept) -> Result<Arc<App>, ProviderFailure> {
        let providers = Arc::new(Registry::from_settings(
            &settings,
            &kept.metrics.api_calls(),
        )?);
        // Rebuilt with the providers: a check in flight finishes with the old ones.
        let revalidator = crate::endpoints::revalidate::Revalidator::new(
            settings.session.revalidate,
            settings.session.ttl,
            settings.session.max_sessions,
            providers.clone(),
            kept.metrics.revalidations.clone(),
        );
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
        Ok(Arc::new_cyclic(|me: &Weak<App>| App {
            me: me.clone(),
            callback_runs: kept.callback_runs,
            link,
            providers: providers.clone(),
            signer: kept.signer,
            verification: Verification::new(&settings.verification),
            metrics: kept.metrics,
            revalidator,
            access: Access {
                allow_unionids: settings.access.allow_unionids.clone(),
                allow_openids: settings.access.allow_openids.clone(),
                require_unionid: settings.access.require_unionid,
                providers: providers.clone(),
            },
            session_cookie: settings.session.cookie_name.clone(),
            login_cookie: settings.session.login_cookie.clone(),
            sign_secret,
            login_limiter: kept.login_limiter,
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
            store: kept.store,
            settings,
        }))
    }

    /// The settings this App was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
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
