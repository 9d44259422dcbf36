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

use http::{HeaderMap, HeaderName, HeaderValue};

use self::client::WecomClient;
use self::error::WecomError;
use self::json::Person;
use crate::common::error::ProviderFailure;
use crate::common::metrics::ApiCalls;
use crate::common::pages::Text;
use crate::config::Settings;
use crate::providers::provider::{
    BoxFuture, BrowserMatch, Identity, IdentityHeaders, JsonCredentials, JsonEndpoint,
    LoginProvider,
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
    /// A WeChat app serves browsers (website or official account): a phone browser then gets
    /// the gateway's "open in WeChat" page, as without WeCom.
    wechat_browsers: bool,
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
            wechat_browsers: settings.wechat.website.is_some()
                || settings.wechat.official_account.is_some(),
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
    /// own login, if any); a PC WeCom's login page (the registry asks which when WeChat has
    /// one too); a phone browser WeCom's login page too, unless WeChat serves browsers (then
    /// the "open in WeChat" page, as without WeCom).
    fn browser_match(&self, headers: &HeaderMap) -> BrowserMatch {
        match user_agent::of_request(headers) {
            BrowserKind::WeCom => BrowserMatch::InApp(IN_APP),
            BrowserKind::WeChat | BrowserKind::WeChatDesktop => BrowserMatch::None,
            BrowserKind::Phone if self.wechat_browsers => BrowserMatch::PhoneOutsideApp,
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

    /// A member's userid is the link call's `wecom_userid` (a non-member's openid its `openid`).
    fn link_id_field(&self, identity: &Identity) -> &'static str {
        if identity.origin.kind & NON_MEMBER == 0 {
            "wecom_userid"
        } else {
            "openid"
        }
    }

    /// A member is named by the WeCom userid (what an administrator of the corp knows them
    /// by); a non-member by the openid WeCom gave.
    fn who(&self, s: &Session) -> crate::common::audit::Who {
        let member = s.origin().kind & NON_MEMBER == 0;
        crate::common::audit::Who {
            openid: if member {
                String::new()
            } else {
                s.openid().to_string()
            },
            unionid: String::new(),
            wecom_userid: if member {
                s.openid().to_string()
            } else {
                String::new()
            },
        }
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

    fn identity(&self, session: &Session, out: &mut IdentityHeaders) {
        let member = session.origin().kind & NON_MEMBER == 0;
        headers::identity(session, member, out);
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
    use crate::session::NewSession;

    fn wecom(allow: &[&str], non_members: bool, wechat_browsers: bool) -> Wecom {
        Wecom {
            client: WecomClient::new(
                "http://127.0.0.1:9",
                "ww01",
                "s",
                std::time::Duration::from_secs(1),
                crate::common::metrics::Metrics::new().api_calls(),
            )
            .unwrap(),
            corp_id: "ww01".into(),
            agent_id: "1000002".into(),
            open_base: "https://open.weixin.qq.com".into(),
            login_base: "https://login.work.weixin.qq.com".into(),
            allow_non_members: non_members,
            allow_userids: allow.iter().map(|s| s.to_string()).collect(),
            wechat_browsers,
        }
    }

    fn ua(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, s.parse().unwrap());
        h
    }

    fn session(id: &str, corp: &str, kind: u8) -> Session {
        Session::new(&NewSession {
            openid: id,
            unionid: None,
            appid: corp,
            origin: Origin {
                provider: RECORD_ID,
                kind,
            },
            nickname: "",
            avatar: "",
            expires_at: 9,
        })
    }

    #[test]
    fn browsers() {
        let in_wecom = ua("Mozilla/5.0 (iPhone) Mobile/15E148 wxwork/4.1.10 MicroMessenger/7.0.1");
        let in_wechat = ua("Mozilla/5.0 (iPhone) Mobile/15E148 MicroMessenger/8.0.47");
        let phone =
            ua("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1");
        for wechat in [false, true] {
            let w = wecom(&[], false, wechat);
            assert_eq!(w.browser_match(&in_wecom), BrowserMatch::InApp(IN_APP));
            assert_eq!(w.browser_match(&in_wechat), BrowserMatch::None);
            assert_eq!(w.browser_match(&HeaderMap::new()), BrowserMatch::Kind(SSO));
        }
        assert_eq!(
            wecom(&[], false, false).browser_match(&phone),
            BrowserMatch::Kind(SSO)
        );
        assert_eq!(
            wecom(&[], false, true).browser_match(&phone),
            BrowserMatch::PhoneOutsideApp
        );
        let w = wecom(&[], false, false);
        assert!(w.serves(IN_APP) && w.serves(SSO) && !w.serves(2));
        assert!(w
            .authorize_url(SSO, "https://a/cb", "S")
            .contains("/wwlogin/sso/login?login_type=CorpApp&"));
        assert!(w
            .authorize_url(IN_APP, "https://a/cb", "S")
            .contains("&agentid=1000002#wechat_redirect"));
        assert_eq!(w.json_kind(JsonEndpoint::MobileApp), None);
    }

    #[test]
    fn access_rules() {
        let open = wecom(&[], false, false);
        assert_eq!(open.allows(&session("zhangsan", "ww01", SSO)), Some(true));
        assert_eq!(
            open.allows(&session("zhangsan", "wwOther", SSO)),
            Some(false)
        );
        let guest = session("oGuest", "ww01", SSO | NON_MEMBER);
        assert_eq!(open.allows(&guest), Some(false), "non-members off");
        assert_eq!(wecom(&[], true, false).allows(&guest), Some(true));
        let listed = wecom(&["lisi"], true, false);
        assert_eq!(listed.allows(&session("lisi", "ww01", IN_APP)), Some(true));
        assert_eq!(
            listed.allows(&session("zhangsan", "ww01", IN_APP)),
            Some(false)
        );
        assert_eq!(
            listed.allows(&guest),
            Some(false),
            "an allow list names members only"
        );
    }

    #[test]
    fn userinfo_fields() {
        let w = wecom(&[], true, false);
        let mut m = serde_json::json!({"openid": "zhangsan", "unionid": null, "appid": "ww01",
            "source": "wecom", "nickname": "", "avatar": "", "expires_at": 9});
        w.describe(
            &session("zhangsan", "ww01", SSO),
            m.as_object_mut().unwrap(),
        );
        assert_eq!(
            m,
            serde_json::json!({"source": "wecom", "expires_at": 9, "wecom_userid": "zhangsan",
                "wecom_corpid": "ww01", "wecom_member": true})
        );
        let mut m = serde_json::json!({"openid": "oGuest", "appid": "ww01"});
        w.describe(
            &session("oGuest", "ww01", SSO | NON_MEMBER),
            m.as_object_mut().unwrap(),
        );
        assert_eq!(
            m,
            serde_json::json!({"openid": "oGuest", "wecom_corpid": "ww01", "wecom_member": false})
        );
    }
}
