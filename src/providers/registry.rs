//! The login providers configured on this gateway, built once at start from the settings.

use http::header::HeaderName;
use http::HeaderMap;

use super::identity_cache;
use super::provider::{BrowserMatch, IdentityHeaders, JsonEndpoint, LoginProvider};
use crate::common::error::ProviderFailure;
use crate::common::metrics::ApiCalls;
use crate::config::Settings;
use crate::session::{Origin, Session};

/// Account linking: the app's own user id, and the phone a mini program shared.
static USERID: HeaderName = HeaderName::from_static("x-wechat-userid");
static PHONE: HeaderName = HeaderName::from_static("x-wechat-phone");

/// `X-WeChat-UserId` / `X-WeChat-Phone` when the session carries them (any provider).
fn link(session: &Session, out: &mut IdentityHeaders) {
    let [user_id, phone] = session.link_headers();
    out.extend(user_id.map(|v| (&USERID, v)));
    out.extend(phone.map(|v| (&PHONE, v)));
}

/// Every configured login provider, in the order browsers are matched.
pub(crate) struct Registry {
    providers: Vec<Box<dyn LoginProvider>>,
    /// This registry's identity headers in the per-thread cache (see `identity_cache`).
    generation: u64,
}

/// A browser's login, as [`Registry::browser_login`] chose it.
pub(crate) enum BrowserLogin<'a> {
    Start(&'a dyn LoginProvider, Origin),
    /// Several providers have a login for this browser: the user picks one (by its id).
    Choose(Vec<&'a dyn LoginProvider>),
    OpenInApp,
    /// A phone browser outside the app that could log the user in.
    PhoneOutsideApp,
    /// Inside the app on a phone, and only a computer's QR login could log the user in.
    OpenOnComputer,
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
        Ok(Registry {
            providers,
            generation: identity_cache::next_generation(),
        })
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
        let mut computer = false;
        let mut starts: Vec<(&dyn LoginProvider, u8)> = Vec::new();
        for p in &self.providers {
            match p.browser_match(headers) {
                BrowserMatch::InApp(kind) => return start(p.as_ref(), kind),
                BrowserMatch::Kind(kind) => starts.push((p.as_ref(), kind)),
                BrowserMatch::OpenInApp => open_in_app = true,
                BrowserMatch::PhoneOutsideApp => phone = true,
                BrowserMatch::OpenOnComputer => computer = true,
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
            [] if computer => BrowserLogin::OpenOnComputer,
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
    /// account-linking headers, which are the same for every provider; then, with
    /// `sign_secret`, the provider's signature (the clock is read for it only). The unsigned ones
    /// come from the per-thread cache when the same record came by before.
    pub(crate) fn insert_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign_secret: Option<&[u8]>,
    ) {
        let sign = sign_secret.map(|k| (k, crate::common::http_util::unix_now()));
        self.insert_identity_at(headers, session, sign);
    }

    /// [`Registry::insert_identity`] with `sign`: the secret and the time (unix seconds).
    fn insert_identity_at(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign: Option<(&[u8], u64)>,
    ) {
        let Some(p) = self.get(session.origin()) else {
            return;
        };
        identity_cache::for_each(
            self.generation,
            session,
            |grantless, out| {
                p.identity(grantless, out);
                link(grantless, out);
            },
            |name, value| {
                headers.insert(name, value.clone());
            },
        );
        if let Some((name, value)) = sign.and_then(|(k, now)| p.signature(session, k, now)) {
            headers.insert(name, value);
        }
    }

    /// No providers (unit tests of the rules that consult the registry).
    #[cfg(test)]
    pub(crate) fn empty() -> Registry {
        Registry {
            providers: Vec::new(),
            generation: identity_cache::next_generation(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pages::Text;
    use crate::providers::provider::{BoxFuture, Identity, JsonCredentials};
    use http::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A provider that answers every browser the same. Its identity is the openid, its
    /// signature the time; it counts how often it built the identity.
    struct Stub(&'static str, u8, BrowserMatch, Arc<AtomicUsize>);

    static STUB_ID: HeaderName = HeaderName::from_static("x-stub-id");
    static STUB_SIGNATURE: HeaderName = HeaderName::from_static("x-stub-signature");

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
        fn identity(&self, session: &Session, out: &mut IdentityHeaders) {
            self.3.fetch_add(1, Ordering::Relaxed);
            out.extend(session.openid_header().map(|v| (&STUB_ID, v)));
        }
        fn signature(
            &self,
            _: &Session,
            _: &[u8],
            now: u64,
        ) -> Option<(&'static HeaderName, HeaderValue)> {
            Some((&STUB_SIGNATURE, now.into()))
        }
    }

    fn registry(matches: &[BrowserMatch]) -> Registry {
        let ids = ["a", "b", "c"];
        Registry {
            providers: matches
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    Box::new(Stub(ids[i], i as u8, *m, Arc::default())) as Box<dyn LoginProvider>
                })
                .collect(),
            generation: identity_cache::next_generation(),
        }
    }

    /// A session of `openid` made by provider `provider`, no unionid, nickname or avatar.
    fn stub_session(openid: &str, provider: u8) -> Session {
        Session::new(&crate::session::NewSession {
            openid,
            unionid: None,
            appid: "wxA",
            origin: Origin { provider, kind: 0 },
            nickname: "",
            avatar: "",
            expires_at: 99,
        })
    }

    /// A registry of one stub provider (record id 0) that counts its builds in `built`.
    fn counting(built: &Arc<AtomicUsize>) -> Registry {
        let stub = Stub("a", 0, BrowserMatch::None, built.clone());
        Registry {
            providers: vec![Box::new(stub)],
            generation: identity_cache::next_generation(),
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
            BrowserLogin::OpenOnComputer => "computer".into(),
            BrowserLogin::None => "none".into(),
        }
    }

    #[test]
    fn browser_logins() {
        use BrowserMatch::{InApp, Kind, OpenInApp, OpenOnComputer, PhoneOutsideApp};
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
            (&[OpenOnComputer, NO], None, "computer"),
            (&[OpenOnComputer, Kind(1)], None, "start b 1"),
            (&[OpenOnComputer, InApp(5)], None, "start b 5"),
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
        let session = |provider| stub_session("oOpen", provider);
        for provider in [0, 1] {
            let mut h = HeaderMap::new();
            r.insert_identity(&mut h, &session(provider), None);
            assert!(!h.contains_key(&USERID) && !h.contains_key(&PHONE));
            let linked = session(provider).with_link(Some("42"), Some("+8613800000000"));
            r.insert_identity(&mut h, &linked, None);
            assert_eq!(h[&USERID], "42");
            assert_eq!(h[&PHONE], "+8613800000000");
        }
        // A provider no longer configured writes nothing, its link headers included.
        let mut h = HeaderMap::new();
        let gone = session(7).with_link(Some("42"), None);
        r.insert_identity(&mut h, &gone, None);
        assert!(h.is_empty());
    }

    #[test]
    fn identity_built_once_per_record_and_registry_signature_every_time() {
        let session = stub_session("oOpen", 0);
        let built = Arc::new(AtomicUsize::new(0));
        let r = counting(&built);
        let mut seen = Vec::new();
        for now in [1, 2, 3] {
            let mut h = HeaderMap::new();
            // A clone, as the session store hands it out: the same record.
            r.insert_identity_at(&mut h, &session.clone(), Some((b"k", now)));
            seen.push((h[&STUB_ID].clone(), h[&STUB_SIGNATURE].clone()));
        }
        assert_eq!(built.load(Ordering::Relaxed), 1);
        assert!(seen.iter().all(|(id, _)| id == "oOpen"));
        let signatures: Vec<_> = seen.iter().map(|(_, s)| s.to_str().unwrap()).collect();
        assert_eq!(signatures, ["1", "2", "3"]);
        // Without the secret, no signature; the identity is still the cached one.
        let mut h = HeaderMap::new();
        r.insert_identity(&mut h, &session, None);
        assert!(!h.contains_key(&STUB_SIGNATURE) && h[&STUB_ID] == "oOpen");
        assert_eq!(built.load(Ordering::Relaxed), 1);
        // Another record of the same user (linked since): its own headers.
        let linked = session.with_link(Some("42"), None);
        let mut h = HeaderMap::new();
        r.insert_identity(&mut h, &linked, None);
        assert_eq!(h[&USERID], "42");
        assert_eq!(built.load(Ordering::Relaxed), 2);
        // A new registry (a reload) builds its own, for the same record.
        let again = Arc::new(AtomicUsize::new(0));
        let mut h = HeaderMap::new();
        counting(&again).insert_identity(&mut h, &session, None);
        assert_eq!(again.load(Ordering::Relaxed), 1);
        assert_eq!(h[&STUB_ID], "oOpen");
    }

    #[test]
    fn cached_headers_keep_no_part_of_a_record_with_its_grant() {
        let session = stub_session("oGranted", 0).with_grant(Some(&crate::session::Grant {
            access_token: "AT_SECRET".into(),
            refresh_token: "RT_SECRET".into(),
            access_expires_at: 1_900_000_000,
            granted_at: 1_800_000_000,
        }));
        let r = counting(&Arc::default());
        let mut h = HeaderMap::new();
        r.insert_identity(&mut h, &session, None);
        assert_eq!(h[&STUB_ID], "oGranted");
        // The value is a slice of the cache's own copy (the record up to its grant), not of
        // the record handed in: the cache does not keep that buffer, tokens and all, alive.
        let record = session.as_bytes().as_ptr_range();
        assert!(!record.contains(&h[&STUB_ID].as_bytes().as_ptr()));
    }
}
