//! What a login provider is: the [`LoginProvider`] trait and the values it hands the gateway.

use std::future::Future;
use std::pin::Pin;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::common::error::ProviderFailure;
use crate::common::pages::Text;
use crate::session::{Grant, Origin, Session};

/// Identity headers as a provider writes them (names are the provider's statics).
pub(crate) type IdentityHeaders = Vec<(&'static HeaderName, HeaderValue)>;

/// A boxed future: the provider trait is used as `dyn LoginProvider`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which login a browser gets from a provider, decided from its request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrowserMatch {
    /// This kind of the provider (e.g. WeChat's website QR login for a PC browser). When
    /// several providers offer one, the browser is asked which.
    Kind(u8),
    /// The browser runs inside this provider's own app (e.g. WeCom's, `wxwork`): this kind,
    /// whatever the other providers offer.
    InApp(u8),
    /// The provider has a login for this user, but only inside its own app: show the "open in
    /// the app" page (e.g. a PC browser and only a WeChat official account configured).
    OpenInApp,
    /// A phone browser outside the provider's app: the page that tells the user to open the
    /// link in the app (never a QR code: the phone cannot scan its own screen).
    PhoneOutsideApp,
    /// Inside the app on a phone, and the provider's only login here is a QR code for a
    /// computer's browser (e.g. WeChat with only a website app): the page that tells the user
    /// to open the link on a computer.
    OpenOnComputer,
    /// Nothing for this browser.
    None,
}

/// The gateway's JSON login endpoints (`/app/login`, `/miniprogram/login`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonEndpoint {
    MobileApp,
    MiniProgram,
}

/// What a client posted to a JSON login endpoint, checked for shape by the endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonCredentials<'a> {
    pub(crate) code: &'a str,
    /// `(encryptedData, iv)` of a mini program's user data, when sent.
    pub(crate) user_data: Option<(&'a str, &'a str)>,
}

/// Who logged in, as a provider vouches for it: becomes the session record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) origin: Origin,
    /// The user's id within the app.
    pub(crate) openid: String,
    /// The user's id across the provider's apps, when known.
    pub(crate) unionid: Option<String>,
    /// The app the user logged in to.
    pub(crate) appid: String,
    /// Raw UTF-8, as the provider gave it.
    pub(crate) nickname: String,
    pub(crate) avatar: String,
    /// The provider's grant (OAuth tokens) for revalidating a browser session
    /// (`session.revalidate_secs`); kept in the session record only, never shown.
    pub(crate) grant: Option<Grant>,
}

/// What re-checking a session's grant with its provider found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revalidation {
    /// Still granted; with a renewed grant when the provider had to refresh it.
    Valid(Option<Grant>),
    /// The user revoked the grant (or it can no longer be renewed): the session ends.
    Revoked,
    /// The provider could not say (unreachable, busy, garbage): the session stays.
    Unknown,
}

/// A phone number a provider vouches for (e.g. a mini program's `getPhoneNumber`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PhoneNumber {
    /// As the provider gave it (WeChat: with the country code for numbers outside China).
    pub(crate) phone: String,
    /// Without the country code.
    pub(crate) pure_phone: String,
    /// Digits, without `+`.
    pub(crate) country_code: String,
}

impl PhoneNumber {
    /// E.164: `+<country code><number>`, e.g. `+8613800000000`.
    pub(crate) fn e164(&self) -> String {
        format!("+{}{}", self.country_code, self.pure_phone)
    }
}

/// What a login provider supplies to the gateway.
///
/// Used as `dyn LoginProvider` in the [`Registry`](super::registry::Registry): the async methods return a [`BoxFuture`]
/// (one allocation per login call, which is rare next to the request path), so a provider is
/// one more entry in a list rather than an enum variant and a dispatch arm in every method. The
/// per-request methods, [`LoginProvider::identity`] and [`LoginProvider::signature`], are
/// synchronous.
pub(crate) trait LoginProvider: Send + Sync {
    /// The provider's name (`"wechat"`), for logs.
    fn id(&self) -> &'static str;

    /// The provider's name as users know it (`微信` / `WeChat`): the choice of login page.
    fn label(&self) -> Text<'static>;

    /// The byte the session record stores for this provider ([`Origin::provider`]). Never
    /// reused: records outlive restarts (Redis).
    fn record_id(&self) -> u8;

    /// A kind's name (`"website"`): the `source` label of metrics, logs and `/userinfo`.
    fn kind_name(&self, kind: u8) -> &'static str;

    /// Whether an app of this kind is configured (a login in flight may outlive a
    /// configuration change).
    fn serves(&self, kind: u8) -> bool;

    /// Which of the provider's browser logins fits the browser that sent `headers`.
    fn browser_match(&self, headers: &HeaderMap) -> BrowserMatch;

    /// The URL the browser is sent to for a browser login of `kind`.
    fn authorize_url(&self, kind: u8, callback: &str, state: &str) -> String;

    /// A browser login's authorization code → who logged in.
    fn redeem_code<'a>(
        &'a self,
        kind: u8,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>>;

    /// After a silent browser login of `kind` (no consent screen), the kind of a second round
    /// that asks for consent and can give more (e.g. WeChat's `snsapi_userinfo` after
    /// `snsapi_base` with `scope = "auto"`); None when there is none.
    fn consent_round(&self, _kind: u8) -> Option<u8> {
        None
    }

    /// Re-check a session's grant (`session.revalidate_secs`).
    fn revalidate<'a>(
        &'a self,
        _session: &'a Session,
        _grant: Grant,
    ) -> BoxFuture<'a, Revalidation> {
        Box::pin(async { Revalidation::Unknown })
    }

    /// The kind that serves a JSON login endpoint, when this provider has one configured.
    fn json_kind(&self, endpoint: JsonEndpoint) -> Option<u8>;

    /// A JSON login (mobile app, mini program) → who logged in.
    fn json_login<'a>(
        &'a self,
        kind: u8,
        creds: JsonCredentials<'a>,
    ) -> BoxFuture<'a, Result<Identity, ProviderFailure>>;

    /// The provider's own access rule for its sessions (e.g. WeCom's
    /// `access.allow_wecom_userids`), which then replaces the openid / unionid rules; None:
    /// those apply. Runs on every proxied request.
    fn allows(&self, _session: &Session) -> Option<bool> {
        None
    }

    /// Which field of the account-linking call (`[link]`) carries an identity's `openid`: an
    /// openid, or a WeCom member's `wecom_userid`.
    fn link_id_field(&self, _identity: &Identity) -> &'static str {
        "openid"
    }

    /// Adjust the `/userinfo` JSON of a session of this provider (which starts with the
    /// openid, unionid, appid, source, nickname, avatar and expires_at fields).
    fn describe(&self, _session: &Session, _json: &mut serde_json::Map<String, serde_json::Value>) {
    }

    /// The user's phone number from a client's one-time code, for a session of `kind`; `None`
    /// when that kind of login has no such thing.
    fn phone_number<'a>(
        &'a self,
        _kind: u8,
        _code: &'a str,
    ) -> Option<BoxFuture<'a, Result<PhoneNumber, ProviderFailure>>> {
        None
    }

    /// Who a session of this provider is, as the 403 page, the 403 JSON and audit lines name
    /// them. WeChat's: the openid and unionid; a provider with its own user ids fills those.
    fn who(&self, session: &Session) -> crate::common::audit::Who {
        crate::common::audit::Who {
            openid: session.openid().to_string(),
            unionid: session.unionid().unwrap_or("").to_string(),
            wecom_userid: String::new(),
        }
    }

    /// The identity headers the upstream gets for a session of this provider, without the
    /// signature. They must follow from the session's record and the provider's settings alone:
    /// the registry reuses them for the next request with the same record.
    fn identity(&self, session: &Session, out: &mut IdentityHeaders);

    /// The signature header (`headers.sign_secret`) over the session's identity at `now`
    /// (unix seconds). Runs on every proxied request when signing is on.
    fn signature(
        &self,
        session: &Session,
        secret: &[u8],
        now: u64,
    ) -> Option<(&'static HeaderName, HeaderValue)>;
}
