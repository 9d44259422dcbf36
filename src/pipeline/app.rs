//! [`App`]: everything a request needs, built once at start from the settings.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;

use crate::common::metrics::Metrics;
use crate::config::Settings;
use crate::endpoints::login_state::StateSigner;
use crate::pipeline::access::Access;
use crate::pipeline::verification::Verification;
use crate::providers::wechat::WechatClient;
use crate::session::Store;

/// Everything a request needs, built once at start.
pub struct App {
    pub(crate) settings: Settings,
    pub store: Store,
    pub(crate) wechat: WechatClient,
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
}

impl App {
    pub(crate) fn new(
        settings: Settings,
        store: Store,
    ) -> Result<Arc<App>, crate::providers::wechat::WechatError> {
        let raw = &settings.raw;
        let wechat = WechatClient::new(
            &settings.api_base,
            Duration::from_millis(raw.wechat.timeout_ms),
        )?;
        let sign_secret = (!raw.headers.sign_secret.is_empty())
            .then(|| raw.headers.sign_secret.as_bytes().to_vec());
        Ok(Arc::new(App {
            wechat,
            signer: StateSigner::new(settings.cookie_secret()),
            verification: Verification::new(&raw.verification),
            metrics: Metrics::new(),
            access: Access {
                allow_unionids: raw.access.allow_unionids.iter().cloned().collect(),
                allow_openids: raw.access.allow_openids.iter().cloned().collect(),
                require_unionid: raw.access.require_unionid,
            },
            session_cookie: raw.session.cookie_name.clone(),
            login_cookie: format!("{}_login", raw.session.cookie_name),
            sign_secret,
            login_limiter: crate::endpoints::rate_limit::LoginLimiter::new(
                raw.access.login_rate_per_minute,
            ),
            proto: if settings.tls.is_some() {
                "https"
            } else {
                "http"
            },
            hsts: (settings.tls.is_some() && raw.server.hsts_max_age_secs > 0)
                .then(|| {
                    HeaderValue::from_str(&format!("max-age={}", raw.server.hsts_max_age_secs))
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
        format!(
            "{}/login?rd={}",
            self.prefix(),
            percent_encoding::utf8_percent_encode(rd, crate::endpoints::COMPONENT)
        )
    }

    /// `{public_url}{prefix}/login?rd=...`
    pub(crate) fn login_url(&self, rd: &str) -> String {
        format!("{}{}", self.settings.public.origin, self.login_path(rd))
    }
}
