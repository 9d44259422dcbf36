//! The WeChat login provider: four app kinds ([`Source`]) behind one [`LoginProvider`].
//!
//! - `website.rs`: PC browsers, QR-code login; `official_account.rs`: browsers inside WeChat;
//!   `mobile_app.rs` and `mini_program.rs`: the JSON logins.
//! - `app.rs`: the app kinds and a configured app; `oauth.rs`: the OAuth code exchange the
//!   website, official account and mobile app share.
//! - `client.rs`: the `/sns/*` API calls; `json.rs`: the lenient reader of WeChat's answers;
//!   `error.rs`: [`WechatError`] and its classes; `crypto.rs`: mini-program user data;
//!   `headers.rs`: the `X-WeChat-*` identity headers.

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
mod stable_token;
mod website;

use http::HeaderMap;

use self::app::App;
pub use self::app::Source;
pub(crate) use self::app::RECORD_ID;
pub use self::client::WechatClient;
pub use self::error::WechatError;
pub use self::json::{sanitize_json, JsSession, OAuthToken, UserInfo};
use self::oauth::oauth_identity;
pub use crate::common::error::ErrorClass;
use crate::common::error::ProviderFailure;
use crate::config::Settings;
use crate::providers::provider::{
    BoxFuture, BrowserMatch, Identity, JsonCredentials, JsonEndpoint, LoginProvider,
};
use crate::session::Session;

/// The WeChat provider as configured: the API client and each app kind that has an app.
pub(crate) struct Wechat {
    client: WechatClient,
    open_base: String,
    /// The official account's OAuth scope (`snsapi_userinfo` or `snsapi_base`).
    official_scope: String,
    website: Option<App>,
    official_account: Option<App>,
    mobile_app: Option<App>,
    mini_program: Option<App>,
    /// The mini program's API token (`cgi-bin/stable_token`), for its phone numbers.
    mini_token: stable_token::StableToken,
}

impl Wechat {
    pub(crate) fn from_settings(settings: &Settings) -> Result<Wechat, WechatError> {
        let w = &settings.wechat;
        Ok(Wechat {
            client: WechatClient::new(&w.api_base, w.timeout)?,
            open_base: w.open_base.clone(),
            official_scope: w.official_scope.as_str().to_string(),
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

    fn record_id(&self) -> u8 {
        RECORD_ID
    }

    fn kind_name(&self, kind: u8) -> &'static str {
        Source::from_u8(kind).map_or("unknown", Source::as_str)
    }

    fn serves(&self, kind: u8) -> bool {
        Source::from_u8(kind).and_then(|s| self.app(s)).is_some()
    }

    /// Inside WeChat the official account, else the website; a PC browser the website, else
    /// (only an official account) the page that says to open the link in WeChat.
    fn browser_match(&self, headers: &HeaderMap) -> BrowserMatch {
        let in_wechat = official_account::is_wechat_browser(headers);
        match (in_wechat, &self.official_account, &self.website) {
            (true, Some(_), _) => BrowserMatch::Kind(Source::OfficialAccount as u8),
            (_, _, Some(_)) => BrowserMatch::Kind(Source::Website as u8),
            (false, Some(_), None) => BrowserMatch::OpenInApp,
            _ => BrowserMatch::None,
        }
    }

    fn authorize_url(&self, kind: u8, callback: &str, state: &str) -> String {
        let source = Source::from_u8(kind).unwrap_or(Source::Website);
        match (source, self.app(source)) {
            (Source::OfficialAccount, Some(app)) => official_account::authorize_url(
                &self.open_base,
                app,
                &self.official_scope,
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
            let source = match Source::from_u8(kind) {
                Some(Source::OfficialAccount) => Source::OfficialAccount,
                _ => Source::Website,
            };
            let app = self.app(source).ok_or_else(not_configured)?;
            Ok(oauth_identity(&self.client, app, code, source).await?)
        })
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

    fn insert_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign_secret: Option<&[u8]>,
        now: u64,
    ) {
        let source = self.kind_name(session.origin().kind);
        headers::insert_identity(headers, session, source, sign_secret, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wechat(website: bool, official: bool) -> Wechat {
        let app = |on: bool| {
            on.then(|| App {
                appid: "wx1".into(),
                secret: "s".into(),
            })
        };
        Wechat {
            client: WechatClient::new("http://127.0.0.1:9", std::time::Duration::from_secs(1))
                .unwrap(),
            open_base: "https://open.weixin.qq.com".into(),
            official_scope: "snsapi_userinfo".into(),
            website: app(website),
            official_account: app(official),
            mobile_app: None,
            mini_program: None,
            mini_token: Default::default(),
        }
    }

    #[test]
    fn browser_match_by_user_agent_and_apps() {
        let pc = HeaderMap::new();
        let mut in_app = HeaderMap::new();
        in_app.insert(
            http::header::USER_AGENT,
            "Mozilla/5.0 MicroMessenger/8.0".parse().unwrap(),
        );
        let website = BrowserMatch::Kind(Source::Website as u8);
        let official = BrowserMatch::Kind(Source::OfficialAccount as u8);
        for (web, oa, headers, want) in [
            (true, true, &in_app, official),
            (true, true, &pc, website),
            (false, true, &in_app, official),
            (false, true, &pc, BrowserMatch::OpenInApp),
            (true, false, &in_app, website),
            (true, false, &pc, website),
            (false, false, &pc, BrowserMatch::None),
            (false, false, &in_app, BrowserMatch::None),
        ] {
            assert_eq!(wechat(web, oa).browser_match(headers), want, "{web} {oa}");
        }
        let w = wechat(true, false);
        assert!(w.serves(Source::Website as u8));
        assert!(!w.serves(Source::OfficialAccount as u8) && !w.serves(9));
        assert_eq!(w.json_kind(JsonEndpoint::MobileApp), None);
    }
}
