//! The login providers configured on this gateway, built once at start from the settings.

use http::header::HeaderName;
use http::HeaderMap;

use super::provider::{BrowserMatch, JsonEndpoint, LoginProvider};
use crate::common::error::ProviderFailure;
use crate::common::metrics::ApiCalls;
use crate::config::Settings;
use crate::session::{Origin, Session};

/// Account linking: the app's own user id, and the phone a mini program shared.
static USERID: HeaderName = HeaderName::from_static("x-wechat-userid");
static PHONE: HeaderName = HeaderName::from_static("x-wechat-phone");

/// `X-WeChat-UserId` / `X-WeChat-Phone` when the session carries them (any provider).
fn insert_link(headers: &mut HeaderMap, session: &Session) {
    let [user_id, phone] = session.link_headers();
    if let Some(v) = user_id {
        headers.insert(USERID.clone(), v);
    }
    if let Some(v) = phone {
        headers.insert(PHONE.clone(), v);
    }
}

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
    /// `calls` counts every provider's API calls (latency and errcodes by endpoint).
    pub(crate) fn from_settings(
        settings: &Settings,
        calls: &ApiCalls,
    ) -> Result<Registry, ProviderFailure> {
        let mut providers: Vec<Box<dyn LoginProvider>> = vec![
            // One line per provider.
            Box::new(super::wechat::Wechat::from_settings(settings, calls)?),
        ];
        // WeCom only with `[wecom]` set.
        providers.extend(super::wecom::Wecom::boxed(settings, calls)?);
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

    /// The identity headers for a session, written by the provider that made it, then the
    /// account-linking headers, which are the same for every provider.
    pub(crate) fn insert_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign_secret: Option<&[u8]>,
        now: u64,
    ) {
        if let Some(p) = self.get(session.origin()) {
            p.insert_identity(headers, session, sign_secret, now);
            insert_link(headers, session);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pages::Text;
    use crate::providers::provider::{BoxFuture, Identity, JsonCredentials};

    /// A provider that answers every browser the same.
    struct Stub(&'static str, u8, BrowserMatch);

    impl LoginProvider for Stub {
        fn id(&self) -> &'static str {
            self.0
        }
        fn label(&self) -> Text<'static> {
            Text {
                zh: "桩",
                en: "stub",
            }
        }
        fn record_id(&self) -> u8 {
            self.1
        }
        fn kind_name(&self, _: u8) -> &'static str {
            "stub"
        }
        fn serves(&self, _: u8) -> bool {
            true
        }
        fn browser_match(&self, _: &HeaderMap) -> BrowserMatch {
            self.2
        }
        fn authorize_url(&self, _: u8, _: &str, _: &str) -> String {
            String::new()
        }
        fn redeem_code<'a>(
            &'a self,
            _: u8,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
            unreachable!()
        }
        fn json_kind(&self, _: JsonEndpoint) -> Option<u8> {
            None
        }
        fn json_login<'a>(
            &'a self,
            _: u8,
            _: JsonCredentials<'a>,
        ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
            unreachable!()
        }
        fn insert_identity(&self, _: &mut HeaderMap, _: &Session, _: Option<&[u8]>, _: u64) {}
    }

    fn registry(matches: &[BrowserMatch]) -> Registry {
        let ids = ["a", "b", "c"];
        Registry {
            providers: matches
                .iter()
                .enumerate()
                .map(|(i, m)| Box::new(Stub(ids[i], i as u8, *m)) as Box<dyn LoginProvider>)
                .collect(),
        }
    }

    /// Which provider and kind a browser starts with, or the names of the choice.
    fn outcome(r: &Registry, via: Option<&str>) -> String {
        match r.browser_login(&HeaderMap::new(), via) {
            BrowserLogin::Start(p, o) => format!("start {} {}", p.id(), o.kind),
            BrowserLogin::Choose(ps) => {
                let ids: Vec<_> = ps.iter().map(|p| p.id()).collect();
                format!("choose {}", ids.join(","))
            }
            BrowserLogin::OpenInApp => "open in app".into(),
            BrowserLogin::PhoneOutsideApp => "phone".into(),
            BrowserLogin::None => "none".into(),
        }
    }

    #[test]
    fn browser_logins() {
        use BrowserMatch::{InApp, Kind, OpenInApp, PhoneOutsideApp};
        const NO: BrowserMatch = BrowserMatch::None;
        for (matches, via, want) in [
            (&[Kind(0)][..], None, "start a 0"),
            (&[Kind(0), Kind(1)], None, "choose a,b"),
            (&[Kind(0), Kind(1)], Some("b"), "start b 1"),
            (&[Kind(0), Kind(1)], Some("zz"), "choose a,b"),
            (&[Kind(0), InApp(5)], None, "start b 5"),
            (&[Kind(0), InApp(5)], Some("a"), "start b 5"),
            (&[PhoneOutsideApp, Kind(1)], None, "start b 1"),
            (&[PhoneOutsideApp, NO], None, "phone"),
            (&[OpenInApp, NO], None, "open in app"),
            (&[OpenInApp, PhoneOutsideApp], None, "phone"),
            (&[NO, NO], Some("a"), "none"),
            (&[OpenInApp, Kind(3), Kind(4)], None, "choose b,c"),
        ] {
            assert_eq!(
                outcome(&registry(matches), via),
                want,
                "{matches:?} {via:?}"
            );
        }
    }

    #[test]
    fn link_headers_written_for_every_provider() {
        let r = registry(&[BrowserMatch::None, BrowserMatch::None]);
        let session = |provider| {
            Session::new(&crate::session::NewSession {
                openid: "oOpen",
                unionid: None,
                appid: "wxA",
                origin: Origin { provider, kind: 0 },
                nickname: "",
                avatar: "",
                expires_at: 99,
            })
        };
        for provider in [0, 1] {
            let mut h = HeaderMap::new();
            r.insert_identity(&mut h, &session(provider), None, 1);
            assert!(!h.contains_key(&USERID) && !h.contains_key(&PHONE));
            let linked = session(provider).with_link(Some("42"), Some("+8613800000000"));
            r.insert_identity(&mut h, &linked, None, 1);
            assert_eq!(h[&USERID], "42");
            assert_eq!(h[&PHONE], "+8613800000000");
        }
        // A provider no longer configured writes nothing, its link headers included.
        let mut h = HeaderMap::new();
        let gone = session(7).with_link(Some("42"), None);
        r.insert_identity(&mut h, &gone, None, 1);
        assert!(h.is_empty());
    }
}
