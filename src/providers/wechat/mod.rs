//! The WeChat login provider: four app kinds ([`Source`]) behind one [`LoginProvider`].
//!
//! - `website.rs`: PC browsers, QR-code login; `official_account.rs`: browsers inside WeChat;
//!   `mobile_app.rs` and `mini_program.rs`: the JSON logins.
//! - `app.rs`: the app kinds and a configured app; `oauth.rs`: the OAuth code exchange the
//!   website, official account and mobile app share.
//! - `client.rs`: the `/sns/*` API calls; `json.rs`: the lenient reader of WeChat's answers;
//!   `error.rs`: [`WechatError`] and its classes; `crypto.rs`: mini-program user data;
//!   `headers.rs`: the `X-WeChat-*` identity headers; `user_agent.rs`: which browser a login
//!   comes from; `revalidate.rs`: re-checking a session's grant (`sns/auth`, refresh).

mod app;
pub(crate) mod client;
pub mod crypto;
pub(crate) mod error;
pub mod headers;
pub(crate) mod json;
mod mini_program;
mod mobile_app;
mod oauth;
mod official_account;
mod phone;
mod revalidate;
mod stable_token;
pub(crate) mod user_agent;
mod website;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use self::app::Source;
pub(crate) use self::app::RECORD_ID;
use self::app::{split_kind, App, CONSENT_ROUND};
pub use self::client::WechatClient;
pub use self::error::WechatError;
pub use self::json::{sanitize_json, JsSession, OAuthToken, UserInfo};
use self::oauth::oauth_identity;
use self::user_agent::BrowserKind;
pub use crate::common::error::ErrorClass;
use crate::common::error::ProviderFailure;
use crate::config::{OfficialScope, Settings};
use crate::providers::provider::{
    BoxFuture, BrowserMatch, Identity, IdentityHeaders, JsonCredentials, JsonEndpoint,
    LoginProvider, Revalidation,
};
use crate::session::{Grant, Session};

/// The WeChat provider as configured: the API client and each app kind that has an app.
pub(crate) struct Wechat {
    client: WechatClient,
    open_base: String,
    /// The official account's OAuth scope (`snsapi_userinfo`, `snsapi_base` or `auto`).
    official_scope: OfficialScope,
    website: Option<App>,
    official_account: Option<App>,
    mobile_app: Option<App>,
    mini_program: Option<App>,
    /// The mini program's API token (`cgi-bin/stable_token`), for its phone numbers.
    mini_token: stable_token::StableToken,
}

impl Wechat {
    pub(crate) fn from_settings(
        settings: &Settings,
        calls: &crate::common::metrics::ApiCalls,
    ) -> Result<Wechat, WechatError> {
        let w = &settings.wechat;
        Ok(Wechat {
            client: WechatClient::new(&w.api_base, w.timeout, calls.clone())?,
            open_base: w.open_base.clone(),
            official_scope: w.official_scope,
            website: App::from_config(&w.website),
            official_account: App::from_config(&w.official_account),
            mobile_app: App::from_config(&w.mobile_app),
            mini_program: App::from_config(&w.mini_program),
            mini_token: Default::default(),
        })
    }

    fn app(&self, source: Source) -> Option<&App> {
        match source {
            Source::Website => self.website.as_ref(),
            Source::OfficialAccount => self.official_account.as_ref(),
            Source::MobileApp => self.mobile_app.as_ref(),
            Source::MiniProgram => self.mini_program.as_ref(),
        }
    }
}

/// A kind whose app is not configured: callers check [`LoginProvider::serves`] first, so
/// this is only a guard.
fn not_configured() -> ProviderFailure {
    WechatError::Unreachable.into()
}

impl LoginProvider for Wechat {
    fn id(&self) -> &'static str {
        "wechat"
    }

    fn label(&self) -> crate::common::pages::Text<'static> {
        crate::common::pages::Text {
            zh: "微信",
            en: "WeChat",
        }
    }

    fn record_id(&self) -> u8 {
        RECORD_ID
    }

    fn kind_name(&self, kind: u8) -> &'static str {
        split_kind(kind).0.map_or("unknown", Source::as_str)
    }

    fn serves(&self, kind: u8) -> bool {
        split_kind(kind).0.and_then(|s| self.app(s)).is_some()
    }

    /// Inside WeChat (or WeCom) the official account. Without one, WeChat on a phone the page
    /// that says to open the link on a computer (the website's login is a QR code to scan, and
    /// the phone cannot scan its own screen); WeChat on a computer, and WeCom, the website. A phone
    /// browser outside WeChat the page that says to open the link in WeChat; a PC browser the
    /// website, else (only an official account) the "open in WeChat" page with a QR code.
    fn browser_match(&self, headers: &HeaderMap) -> BrowserMatch {
        let kind = user_agent::of_request(headers);
        let any_browser_app = self.official_account.is_some() || self.website.is_some();
        match (kind, &self.official_account, &self.website) {
            (k, Some(_), _) if k.in_app() => BrowserMatch::Kind(Source::OfficialAccount as u8),
            (BrowserKind::WeChat, None, Some(_)) => BrowserMatch::OpenOnComputer,
            (BrowserKind::Phone, _, _) if any_browser_app => BrowserMatch::PhoneOutsideApp,
            (_, _, Some(_)) => BrowserMatch::Kind(Source::Website as u8),
            (BrowserKind::Pc, Some(_), None) => BrowserMatch::OpenInApp,
            _ => BrowserMatch::None,
        }
    }

    fn authorize_url(&self, kind: u8, callback: &str, state: &str) -> String {
        let (source, consent) = split_kind(kind);
        let source = source.unwrap_or(Source::Website);
        match (source, self.app(source)) {
            (Source::OfficialAccount, Some(app)) => official_account::authorize_url(
                &self.open_base,
                app,
                official_account::round_scope(self.official_scope, consent),
                callback,
                state,
            ),
            (_, Some(app)) => website::authorize_url(&self.open_base, app, callback, state),
            (_, None) => String::new(),
        }
    }

    fn redeem_code<'a>(
        &'a self,
        kind: u8,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
        Box::pin(async move {
            let source = match split_kind(kind).0 {
                Some(Source::OfficialAccount) => Source::OfficialAccount,
                _ => Source::Website,
            };
            let app = self.app(source).ok_or_else(not_configured)?;
            Ok(oauth_identity(&self.client, app, code, source).await?)
        })
    }

    /// `scope = "auto"`: after the silent `snsapi_base` round, the `snsapi_userinfo` round.
    fn consent_round(&self, kind: u8) -> Option<u8> {
        let official = Source::OfficialAccount as u8;
        (kind == official && self.official_scope == OfficialScope::Auto)
            .then_some(official | CONSENT_ROUND)
    }

    fn revalidate<'a>(&'a self, session: &'a Session, grant: Grant) -> BoxFuture<'a, Revalidation> {
        Box::pin(revalidate::revalidate(&self.client, session, grant))
    }

    fn json_kind(&self, endpoint: JsonEndpoint) -> Option<u8> {
        let source = match endpoint {
            JsonEndpoint::MobileApp => Source::MobileApp,
            JsonEndpoint::MiniProgram => Source::MiniProgram,
        };
        self.app(source).map(|_| source as u8)
    }

    fn json_login<'a>(
        &'a self,
        kind: u8,
        creds: JsonCredentials<'a>,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
        Box::pin(async move {
            let source = Source::from_u8(kind).ok_or_else(not_configured)?;
            let app = self.app(source).ok_or_else(not_configured)?;
            match source {
                Source::MiniProgram => mini_program::login(&self.client, app, creds).await,
                _ => mobile_app::login(&self.client, app, creds.code).await,
            }
        })
    }

    fn phone_number<'a>(
        &'a self,
        kind: u8,
        code: &'a str,
    ) -> Option<BoxFuture<'a, Result<crate::providers::PhoneNumber, ProviderFailure>>> {
        let app = (Source::from_u8(kind)? == Source::MiniProgram)
            .then_some(self.mini_program.as_ref())??;
        Some(Box::pin(phone::phone_number(
            &self.client,
            app,
            &self.mini_token,
            code,
        )))
    }

    fn identity(&self, session: &Session, out: &mut IdentityHeaders) {
        let source = self.kind_name(session.origin().kind);
        headers::identity(session, source, out);
    }

    fn signature(
        &self,
        session: &Session,
        secret: &[u8],
        now: u64,
    ) -> Option<(&'static HeaderName, HeaderValue)> {
        headers::signature_header(session, secret, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wechat(website: bool, official: bool) -> Wechat {
        wechat_with(website, official, OfficialScope::SnsapiUserinfo)
    }

    fn wechat_with(website: bool, official: bool, scope: OfficialScope) -> Wechat {
        let app = |on: bool| {
            on.then(|| App {
                appid: "wx1".into(),
                secret: "s".into(),
            })
        };
        Wechat {
            client: WechatClient::new(
                "http://127.0.0.1:9",
                std::time::Duration::from_secs(1),
                crate::common::metrics::ApiCalls::default(),
            )
            .unwrap(),
            open_base: "https://open.weixin.qq.com".into(),
            official_scope: scope,
            website: app(website),
            official_account: app(official),
            mobile_app: None,
            mini_program: None,
            mini_token: Default::default(),
        }
    }

    #[test]
    fn browser_match_by_user_agent_and_apps() {
        let ua = |s: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::USER_AGENT, HeaderValue::from_static(s));
            h
        };
        let pc = HeaderMap::new();
        let in_app = ua("Mozilla/5.0 MicroMessenger/8.0");
        let desktop =
            ua("Mozilla/5.0 (Windows NT 10.0) MicroMessenger/7.0.20 WindowsWechat(0x63090a13)");
        let website = BrowserMatch::Kind(Source::Website as u8);
        let official = BrowserMatch::Kind(Source::OfficialAccount as u8);
        for (web, oa, headers, want) in [
            (true, true, &in_app, official),
            (true, true, &pc, website),
            (false, true, &in_app, official),
            (false, true, &pc, BrowserMatch::OpenInApp),
            (true, false, &in_app, BrowserMatch::OpenOnComputer),
            (true, false, &desktop, website),
            (true, true, &desktop, official),
            (false, true, &desktop, official),
            (true, false, &pc, website),
            (false, false, &pc, BrowserMatch::None),
            (false, false, &in_app, BrowserMatch::None),
        ] {
            assert_eq!(wechat(web, oa).browser_match(headers), want, "{web} {oa}");
        }
        let phone =
            ua("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1");
        for (web, oa, want) in [
            (true, true, BrowserMatch::PhoneOutsideApp),
            (false, true, BrowserMatch::PhoneOutsideApp),
            (true, false, BrowserMatch::PhoneOutsideApp),
            (false, false, BrowserMatch::None),
        ] {
            assert_eq!(wechat(web, oa).browser_match(&phone), want, "{web} {oa}");
        }
        let w = wechat(true, false);
        assert!(w.serves(Source::Website as u8));
        assert!(!w.serves(Source::OfficialAccount as u8) && !w.serves(9));
        assert_eq!(w.json_kind(JsonEndpoint::MobileApp), None);
    }

    #[test]
    fn auto_scope_rounds() {
        let cb = "https://app.example.com/_wxgate/callback";
        let official = Source::OfficialAccount as u8;
        let w = wechat_with(false, true, OfficialScope::Auto);
        let first = w.authorize_url(official, cb, "S1");
        assert!(first.contains("&scope=snsapi_base&state=S1&"), "{first}");
        let consent = w.consent_round(official).expect("auto has a consent round");
        let second = w.authorize_url(consent, cb, "S2");
        assert!(
            second.contains("&scope=snsapi_userinfo&state=S2&"),
            "{second}"
        );
        // At most one consent screen: the consent round has no further round.
        assert_eq!(w.consent_round(consent), None);
        assert_eq!(w.kind_name(consent), "official_account");
        assert!(w.serves(consent));
        assert_eq!(w.consent_round(Source::Website as u8), None);
        for scope in [OfficialScope::SnsapiUserinfo, OfficialScope::SnsapiBase] {
            assert_eq!(
                wechat_with(false, true, scope).consent_round(official),
                None
            );
        }
    }
}
