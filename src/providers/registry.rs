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
    /// Several providers have a login for this browser: the user picks one (by its id).
    Choose(Vec<&'a dyn LoginProvider>),
    OpenInApp,
    /// A phone browser outside the app that could log the user in.
    PhoneOutsideApp,
    None,
}

fn start(p: &dyn LoginProvider, kind: u8) -> BrowserLogin<'_> {
    let origin = Origin {
        provider: p.record_id(),
        kind,
    };
    BrowserLogin::Start(p, origin)
}

impl Registry {
    /// The providers the settings configure. Fails when one cannot be set up (e.g. its HTTP
    /// client).
    /// `api` counts the providers' API calls (latency, errcodes).
    pub(crate) fn from_settings(
        settings: &Settings,
        api: &ApiCalls,
    ) -> Result<Registry, ProviderFailure> {
        let mut providers: Vec<Box<dyn LoginProvider>> = vec![
            // One line per provider.
            Box::new(super::wechat::Wechat::from_settings(settings)?),
        ];
        // WeCom only with `[wecom]` set.
        providers.extend(super::wecom::Wecom::boxed(settings, api)?);
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

    /// The login for this browser: a provider's in-app login first; else the one provider
    /// with a login for it, or the one `via` names (the choice page's links) when several
    /// have, else the choice; else whether one could log the user in inside its app.
    pub(crate) fn browser_login(&self, headers: &HeaderMap, via: Option<&str>) -> BrowserLogin<'_> {
        let mut open_in_app = false;
        let mut phone = false;
        let mut starts: Vec<(&dyn LoginProvider, u8)> = Vec::new();
        for p in &self.providers {
            match p.browser_match(headers) {
                BrowserMatch::InApp(kind) => return start(p.as_ref(), kind),
                BrowserMatch::Kind(kind) => starts.push((p.as_ref(), kind)),
                BrowserMatch::OpenInApp => open_in_app = true,
                BrowserMatch::PhoneOutsideApp => phone = true,
                BrowserMatch::None => {}
            }
        }
        if let Some(&(p, kind)) = via.and_then(|v| starts.iter().find(|(p, _)| p.id() == v)) {
            return start(p, kind);
        }
        match starts.as_slice() {
            [(p, kind)] => start(*p, *kind),
            [_, _, ..] => BrowserLogin::Choose(starts.into_iter().map(|(p, _)| p).collect()),
            [] if phone => BrowserLogin::PhoneOutsideApp,
            [] if open_in_app => BrowserLogin::OpenInApp,
            [] => BrowserLogin::None,
        }
    }

    /// The provider's own access rule for a session, when it has one.
    pub(crate) fn allows(&self, session: &Session) -> Option<bool> {
        self.get(session.origin()).and_then(|p| p.allows(session))
    }

    /// The provider and kind serving a JSON login endpoint.
    pub(crate) fn json_login(&self, endpoint: JsonEndpoint) -> Option<(&dyn LoginProvider, u8)> {
        self.providers
            .iter()
            .find_map(|p| p.json_kind(endpoint).map(|k| (p.as_ref(), k)))
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

    /// No providers (unit tests of the rules that consult the registry).
    #[cfg(test)]
    pub(crate) fn empty() -> Registry {
        Registry {
            providers: Vec::new(),
        }
    }
}
