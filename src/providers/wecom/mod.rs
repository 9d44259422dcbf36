//! The WeCom (企业微信) login provider: employees of one corp log in to an internal tool with
//! their WeCom account, and the upstream learns their WeCom `userid`.
//!
//! - Inside the WeCom app (`wxwork` in the User-Agent): `connect/oauth2/authorize` with
//!   `agentid`, silent; on PCs and phone browsers: WeCom's `wwlogin/sso/login` page
//!   (`urls.rs`). The choice between WeChat and WeCom, when both serve the browser, is the
//!   registry's.
//! - The callback: `client.rs` (the corp access token, `auth/getuserinfo`), `json.rs` (WeCom's
//!   answers), `error.rs` (WeCom's errors; 60020 names the console setting to fix).
//! - Sessions: the record's openid field holds the userid (a non-member's openid), its appid
//!   the corp id; the kind byte says which login and whether a member. `headers.rs`: the
//!   `X-WeCom-*` headers.

mod client;
mod error;
mod headers;
mod json;
mod urls;

use std::collections::HashSet;

use http::HeaderMap;

use self::client::WecomClient;
use self::error::WecomError;
use self::json::Person;
use crate::common::error::ProviderFailure;
use crate::common::metrics::ApiCalls;
use crate::common::pages::Text;
use crate::config::Settings;
use crate::providers::provider::{
    BoxFuture, BrowserMatch, Identity, JsonCredentials, JsonEndpoint, LoginProvider,
};
use crate::providers::wechat::user_agent::{self, BrowserKind};
use crate::session::{Origin, Session};

/// WeCom's byte in the session record ([`Origin::provider`]). Never reused.
pub(crate) const RECORD_ID: u8 = 1;
/// Kind: the login inside the WeCom app.
const IN_APP: u8 = 0;
/// Kind: WeCom's login page (PC and phone browsers).
const SSO: u8 = 1;
/// Flag on a session's kind: someone outside the corp (`wecom.allow_non_members`).
const NON_MEMBER: u8 = 0x40;

pub(crate) struct Wecom {
    client: WecomClient,
    corp_id: String,
    agent_id: String,
    open_base: String,
    login_base: String,
    allow_non_members: bool,
    /// `access.allow_wecom_userids`; empty = any member.
    allow_userids: HashSet<String>,
}

impl Wecom {
    /// The provider, when `[wecom]` is configured.
    pub(crate) fn from_settings(
        settings: &Settings,
        metrics: &ApiCalls,
    ) -> Result<Option<Wecom>, WecomError> {
        let Some(w) = &settings.wecom else {
            return Ok(None);
        };
        Ok(Some(Wecom {
            client: WecomClient::new(
                &w.api_base,
                &w.corp_id,
                &w.secret,
                settings.wechat.timeout,
                metrics.clone(),
            )?,
            corp_id: w.corp_id.clone(),
            agent_id: w.agent_id.clone(),
            open_base: settings.wechat.open_base.clone(),
            login_base: w.login_base.clone(),
            allow_non_members: w.allow_non_members,
            allow_userids: settings.access.allow_wecom_userids.clone(),
        }))
    }

    /// [`Wecom::from_settings`] for the registry's list.
    pub(crate) fn boxed(
        settings: &Settings,
        metrics: &ApiCalls,
    ) -> Result<Option<Box<dyn LoginProvider>>, WecomError> {
        Ok(Self::from_settings(settings, metrics)?.map(|w| Box::new(w) as Box<dyn LoginProvider>))
    }

    async fn redeem(&self, kind: u8, code: &str) -> Result<Identity, WecomError> {
        let (id, kind) = match self.client.user_of_code(code).await? {
            Person::Member(userid) => (userid, kind),
            Person::NonMember(openid) if self.allow_non_members => (openid, kind | NON_MEMBER),
            Person::NonMember(_) => return Err(WecomError::NotMember),
        };
        Ok(Identity {
            origin: Origin {
                provider: RECORD_ID,
                kind,
            },
            openid: id,
            unionid: None,
            appid: self.corp_id.clone(),
            nickname: String::new(),
            avatar: String::new(),
            grant: None,
        })
    }
}

impl LoginProvider for Wecom {
    fn id(&self) -> &'static str {
        "wecom"
    }

    fn label(&self) -> Text<'static> {
        Text {
            zh: "企业微信",
            en: "WeCom",
        }
    }

    fn record_id(&self) -> u8 {
        RECORD_ID
    }

    fn kind_name(&self, _kind: u8) -> &'static str {
        "wecom"
    }

    fn serves(&self, kind: u8) -> bool {
        kind == IN_APP || kind == SSO
    }

    /// Inside WeCom its own login, whatever else is configured; inside WeChat nothing (WeChat's
    /// own login, if any); any other browser WeCom's login page.
    fn browser_match(&self, headers: &HeaderMap) -> BrowserMatch {
        match user_agent::of_request(headers) {
            BrowserKind::WeCom => BrowserMatch::InApp(IN_APP),
            BrowserKind::WeChat => BrowserMatch::None,
            BrowserKind::Phone | BrowserKind::Pc => BrowserMatch::Kind(SSO),
        }
    }

    fn authorize_url(&self, kind: u8, callback: &str, state: &str) -> String {
        let (corp, agent) = (self.corp_id.as_str(), self.agent_id.as_str());
        if kind == IN_APP {
            urls::in_app(&self.open_base, corp, agent, callback, state)
        } else {
            urls::sso(&self.login_base, corp, agent, callback, state)
        }
    }

    fn redeem_code<'a>(
        &'a self,
        kind: u8,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
        Box::pin(async move { Ok(self.redeem(kind, code).await?) })
    }

    fn json_kind(&self, _endpoint: JsonEndpoint) -> Option<u8> {
        None
    }

    fn json_login<'a>(
        &'a self,
        _kind: u8,
        _creds: JsonCredentials<'a>,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>> {
        // Never called: `json_kind` names no kind.
        Box::pin(async { Err(WecomError::Unreachable.into()) })
    }

    /// `access.allow_wecom_userids` (empty: any member); a non-member only while
    /// `wecom.allow_non_members` is on and no allow list is set; never a session of another corp.
    fn allows(&self, s: &Session) -> Option<bool> {
        let ok = s.appid() == self.corp_id
            && if s.origin().kind & NON_MEMBER != 0 {
                self.allow_non_members && self.allow_userids.is_empty()
            } else {
                self.allow_userids.is_empty() || self.allow_userids.contains(s.openid())
            };
        Some(ok)
    }

    /// `wecom_userid` and `wecom_corpid` in place of the WeChat ids (a non-member keeps the
    /// openid WeCom gave).
    fn describe(&self, s: &Session, json: &mut serde_json::Map<String, serde_json::Value>) {
        let member = s.origin().kind & NON_MEMBER == 0;
        json.remove("unionid");
        json.remove("appid");
        json.remove("nickname");
        json.remove("avatar");
        if member {
            json.remove("openid");
            json.insert("wecom_userid".into(), s.openid().into());
        }
        json.insert("wecom_corpid".into(), s.appid().into());
        json.insert("wecom_member".into(), member.into());
    }

    fn insert_identity(
        &self,
        headers: &mut HeaderMap,
        session: &Session,
        sign_secret: Option<&[u8]>,
        now: u64,
    ) {
        let member = session.origin().kind & NON_MEMBER == 0;
        headers::insert_identity(headers, session, member, sign_secret, now);
    }
}
