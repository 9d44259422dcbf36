//! The login providers configured on this gateway, built once at start from the settings.

use http::HeaderMap;

use super::provider::{BrowserMatch, JsonEndpoint, LoginProvider};
use crate::common::error::ProviderFailure;
use crate::common::metrics::ApiCalls;
use crate::config::Settings;
use crate::session::{Origin, Session};

/// Every configured login provider, in the order browsers are matched.
pub(crate) struct Registry {
    providers: Vec<Box<dyn LoginProvider>>,
}

/// A browser's login, as [`Registry::browser_login`] chose it.
pub(crate) enum BrowserLogin<'a> {
    Start(&'a dyn LoginProvider, Origin),
    OpenInApp,
    /// A phone browser outside the app that could log the user in.
    PhoneOutsideApp,
    None,
}

impl Registry {
    /// The providers the settings configure. Fails when one cannot be set up (e.g. its HTTP
    /// client).
    /// `calls` counts every provider's API calls (latency and errcodes by endpoint).
    pub(crate) fn from_settings(
        settings: &Settings,
        calls: &ApiCalls,
    ) -> Result<Registry, ProviderFailure> {
        let providers: Vec<Box<dyn LoginProvider>> = vec![
            // One line per provider.
            Box::new(super::wechat::Wechat::from_settings(settings, calls)?),
        ];
        let ids: Vec<&str> = providers.iter().map(|p| p.id()).collect();
        tracing::debug!(providers = ?ids, "login providers");
        Ok(Registry { providers })
    }

    /// The provider that made a session or pending login.
    pub(crate) fn get(&self, origin: Origin) -> Option<&dyn LoginProvider> {
        self.providers
            .iter()
            .find(|p| p.record_id() == origin.provider)
            .map(|p| p.as_ref())
    }

    /// A kind's name (`"website"`), `"unknown"` for a provider no longer configured.
    pub(crate) fn kind_name(&self, origin: Origin) -> &'static str {
        self.get(origin)
            .map(|p| p.kind_name(origin.kind))
            .unwrap_or("unknown")
    }

    /// The first provider with a login for this browser; else whether one could log the user
    /// in inside its app.
    pub(crate) fn browser_login(&self, headers: &HeaderMap) -> BrowserLogin<'_> {
        let mut open_in_app = false;
        let mut phone = false;
        for p in &self.providers {
            match p.browser_match(headers) {
                BrowserMatch::Kind(kind) => {
                    let origin = Origin {
                        provider: p.record_id(),
                        kind,
                    };
                    return BrowserLogin::Start(p.as_ref(), origin);
                }
                BrowserMatch::OpenInApp => open_in_app = true,
                BrowserMatch::PhoneOutsideApp => phone = true,
                BrowserMatch::None => {}
            }
        }
        if phone {
            BrowserLogin::PhoneOutsideApp
        } else if open_in_app {
            BrowserLogin::OpenInApp
        } else {
            BrowserLogin::None
        }
    }

    /// The provider and kind serving a JSON login endpoint.
    pub(crate) fn json_login(&self, endpoint: JsonEndpoint) -> Option<(&dyn LoginProvider, u8)> {
        self.providers
            .iter()
            .find_map(|p| p.json_kind(endpoint).map(|k| (p.as_ref(), k)))
    }

    /// Who a session is, named by the provider that made it (its openid only, for a provider
    /// no longer configured).
    pub(crate) fn who(&self, session: &Session) -> crate::common::audit::Who {
        match self.get(session.origin()) {
            Some(p) => p.who(session),
            None => crate::common::audit::Who {
                openid: session.openid().to_string(),
                ..Default::default()
            },
        }
    }

    /// The identity headers for a session, written by the provider that made it.
    pub(crate) fn insert_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign_secret: Option<&[u8]>,
        now: u64,
    ) {
        if let Some(p) = self.get(session.origin()) {
            p.insert_identity(headers, session, sign_secret, now);
        }
    }
}
