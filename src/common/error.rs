//! Every domain error of the request path, and the one place that turns them into a
//! status code and a page (browsers) or JSON (API clients).
//!
//! The rule: this file names no layer above `common`. An error of such a layer (the proxy, the
//! session store, the login state) implements [`ErrorAnswer`] next to its own type, saying its
//! status, code and words; it becomes a [`GatewayError`] with `?` and is rendered here like any
//! other. The mapping (`status`, `code`, `into_response`) has no side effect: whoever turns an
//! error into a response calls [`GatewayError::log`] once, first.

use http::{Response, StatusCode};
use serde_json::json;

use crate::common::audit::Who;
use crate::common::http_util::{self, Body};
use crate::common::pages::{self, Page, Text};

/// How an error of a layer above `common` is answered: said by the layer, next to its error
/// type, and rendered by [`GatewayError::into_response`]. `Display` must be safe to log.
pub trait ErrorAnswer: std::error::Error + Send + Sync + 'static {
    fn status(&self) -> StatusCode;
    /// Short machine-readable code for JSON answers.
    fn code(&self) -> &'static str;
    /// Title and message of the error page; the English message is the JSON `message`.
    fn texts(&self) -> (Text<'static>, Text<'static>);
    /// Whether a "sign in again" link belongs on the page.
    fn offers_retry(&self) -> bool {
        false
    }
    /// Log the failure at the level it deserves (called once, by whoever answers it).
    fn log(&self) {}
}

/// What the gateway does about a login provider's failure: the one mapping below turns the
/// class into a status. Each provider sorts its own errors into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The code / token is unusable: start the login again (400).
    Relogin,
    /// The provider is busy or rate limiting: retry later (503).
    Busy,
    /// Not authorized / user blocked (403).
    Forbidden,
    /// Everything else: configuration errors, unreachable, timeout, 5xx, garbage (502).
    Upstream,
    /// The client's own input to the provider is bad, e.g. user data that does not decrypt
    /// (400, no "sign in again").
    InvalidInput,
    /// The provider vouched only for a virtual, placeholder identity (WeChat's snapshot page,
    /// `is_snapshotuser`): no session; the user completes the login in the provider's app and
    /// signs in again (401, with "sign in again").
    VirtualIdentity,
}

/// A login provider's error, as the error mapping sees it. `Display` must be safe to log: no
/// secret, code, token or key.
pub trait ProviderError: std::error::Error + Send + Sync + 'static {
    fn class(&self) -> ErrorClass;
    /// The short machine-readable code of JSON answers (`invalid_code`, ...).
    fn code(&self) -> &'static str;
    /// Title and message of the error page; the English message is the JSON `message`.
    fn texts(&self) -> (Text<'static>, Text<'static>);
    /// The JSON `message`, when it differs from the page's.
    fn json_message(&self) -> Option<&'static str> {
        None
    }
    /// Log the failure at the level it deserves (called once, when it is answered).
    fn log(&self);
    /// The `outcome` label of the logins counter for this failure; None: not counted.
    fn outcome(&self) -> Option<&'static str> {
        None
    }
}

/// Any provider's error, boxed.
pub struct ProviderFailure(Box<dyn ProviderError>);

impl ProviderFailure {
    pub fn class(&self) -> ErrorClass {
        self.0.class()
    }

    pub fn outcome(&self) -> Option<&'static str> {
        self.0.outcome()
    }
}

impl<E: ProviderError> From<E> for ProviderFailure {
    fn from(e: E) -> Self {
        ProviderFailure(Box::new(e))
    }
}

impl std::fmt::Debug for ProviderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ProviderFailure {}

/// Login-flow failures that are not a provider's or the store's.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the callback carries no state")]
    MissingState,
    #[error("this login was already completed or never started here")]
    StateUsed,
    #[error("the user did not authorize the login")]
    Refused,
    #[error("the WeChat app this browser needs is not configured")]
    AppNotConfigured,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the authorization code is malformed")]
    BadCode,
}

/// Why the access rules refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Not on `access.allow_unionids` / `access.allow_openids`.
    NotAllowed,
    /// `access.require_unionid`, and the provider gave no unionid (a WeChat app not bound to an
    /// Open Platform account): the operator's setup, not the user's doing.
    UnionidRequired,
}

impl RefusalReason {
    /// The `reason` of the 403 JSON and of audit lines.
    pub fn code(self) -> &'static str {
        match self {
            RefusalReason::NotAllowed => "not_allowed",
            RefusalReason::UnionidRequired => "unionid_required",
        }
    }
}

/// A session the access rules refuse: why, who (shown so the user can tell an administrator),
/// and the "switch account" link (logout, then a new login).
#[derive(Debug)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub who: Who,
    pub switch_url: String,
}

/// The identifiers of a refused user, for the 403 page (escaped; selectable to copy).
fn identifiers_html(who: &Who) -> String {
    let rows: String = who
        .shown()
        .iter()
        .map(|(label, value)| {
            format!(
                "<dt>{}</dt><dd><code>{}</code></dd>",
                pages::escape(label),
                pages::escape(value)
            )
        })
        .collect();
    format!("<dl class=\"ids\">{rows}</dl>")
}

/// Bad input to the JSON login endpoints (mobile app, mini program).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0} login is not configured on this gateway")]
    NotConfigured(&'static str),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Provider(#[from] ProviderFailure),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Path(#[from] crate::common::paths::PathError),
    /// An error of a layer above `common` (proxy, session store, login state).
    #[error("{0}")]
    Layer(Box<dyn ErrorAnswer>),
    /// Refused by the access rules (403).
    #[error("refused by the access rules: {}", .0.reason.code())]
    Forbidden(Box<Refusal>),
    /// `access.login_rate_per_minute` exceeded; retry after this many seconds.
    #[error("too many login attempts from this address")]
    RateLimited(u64),
}

impl<E: ErrorAnswer> From<E> for GatewayError {
    fn from(e: E) -> Self {
        GatewayError::Layer(Box::new(e))
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            Layer(e) => e.status(),
            Provider(e) => match e.class() {
                ErrorClass::Relogin | ErrorClass::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorClass::Busy => StatusCode::SERVICE_UNAVAILABLE,
                ErrorClass::Forbidden => StatusCode::FORBIDDEN,
                ErrorClass::Upstream => StatusCode::BAD_GATEWAY,
                ErrorClass::VirtualIdentity => StatusCode::UNAUTHORIZED,
            },
            Login(LoginError::Refused) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            Login(LoginError::AppNotConfigured) | Login(LoginError::NotFound) => {
                StatusCode::NOT_FOUND
            }
            Login(LoginError::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
            Login(_) => StatusCode::BAD_REQUEST,
            Api(ApiError::UnsupportedMediaType) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Api(ApiError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Api(ApiError::NotConfigured(_)) => StatusCode::NOT_FOUND,
            Api(ApiError::BadRequest(_)) => StatusCode::BAD_REQUEST,
            Path(_) => StatusCode::BAD_REQUEST,
            Api(ApiError::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Short machine-readable code for JSON answers.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            Layer(e) => e.code(),
            Provider(e) => e.0.code(),
            Login(LoginError::Refused) => "access_denied",
            Forbidden(_) => "forbidden",
            Login(LoginError::NotFound) => "not_found",
            Login(LoginError::BadCode) => "invalid_code",
            Login(LoginError::MethodNotAllowed) => "method_not_allowed",
            Login(_) => "invalid_login",
            Api(ApiError::UnsupportedMediaType) => "unsupported_media_type",
            Api(ApiError::TooLarge(_)) => "body_too_large",
            Api(ApiError::NotConfigured(_)) => "not_configured",
            Api(ApiError::BadRequest(_)) => "invalid_request",
            Path(_) => "bad_path",
            Api(ApiError::BodyTimeout) => "request_timeout",
            RateLimited(_) => "rate_limited",
        }
    }

    fn texts(&self) -> (Text<'static>, Text<'static>) {
        use GatewayError::*;
        let t = |zh, en| Text { zh, en };
        match self {
            Layer(e) => e.texts(),
            Provider(e) => e.0.texts(),
            Login(LoginError::MissingState) => (
                t("无效的登录请求", "Invalid login request"),
                t("登录参数无效，请重新登录。", "The login parameters are invalid. Please sign in again."),
            ),
            Login(LoginError::BadCode) => (
                t("无效的登录请求", "Invalid login request"),
                t("微信授权码无效，请重新登录。", "The WeChat authorization code is invalid. Please sign in again."),
            ),
            Login(LoginError::StateUsed) => (
                t("登录链接已使用", "Login link already used"),
                t("此登录链接已使用过，请重新登录。", "This login link was already used. Please sign in again."),
            ),
            Login(LoginError::Refused) => (
                t("您取消了授权", "Authorization declined"),
                t("您没有同意微信授权，因此无法登录。", "You did not authorize the WeChat login, so you are not signed in."),
            ),
            Forbidden(r) => match r.reason {
                RefusalReason::NotAllowed => (
                    t("无访问权限", "Access denied"),
                    t("您登录的账号没有访问本站的权限。如需开通，请把下面的标识发给网站管理员；也可以换个账号登录。",
                      "The account you signed in with is not allowed to access this site. To ask for access, send the identifiers below to the site's administrator, or sign in with another account."),
                ),
                RefusalReason::UnionidRequired => (
                    t("本站暂时无法登录", "Sign-in is not available yet"),
                    t("本站要求微信 UnionID，但网站使用的微信应用尚未绑定微信开放平台账号，微信因此不提供 UnionID。这是网站的配置问题，不是您的账号问题，请把下面的标识发给网站管理员。",
                      "This site requires a WeChat UnionID, but its WeChat app is not bound to a WeChat Open Platform account, so WeChat gives none. This is the site's setup, not your account: please send the identifiers below to the site's administrator."),
                ),
            },
            Login(LoginError::AppNotConfigured) => (
                t("无法在此浏览器登录", "Login not available here"),
                t("本站未配置适用于此浏览器的微信登录方式。", "This site has no WeChat login configured for this kind of browser."),
            ),
            Login(LoginError::NotFound) => (t("页面不存在", "Not found"), t("没有这个地址。", "There is nothing at this address.")),
            Login(LoginError::MethodNotAllowed) => (
                t("不支持的请求方法", "Method not allowed"),
                t("此地址不支持该请求方法。", "This address does not accept that method."),
            ),
            Api(_) => (t("请求无效", "Bad request"), t("请求无效。", "The request is invalid.")),
            Path(_) => (
                t("无效的地址", "Bad address"),
                t("地址中含有“.”或“..”路径段（可能经过编码或带有“;”参数）或编码的空字符，已被拒绝。", "The address has a `.` or `..` path segment (possibly encoded, or followed by `;`) or an encoded NUL byte; it is refused."),
            ),
            RateLimited(_) => (
                t("请求过于频繁", "Too many requests"),
                t("登录尝试过于频繁，请稍后再试。", "Too many login attempts from this address. Please wait a moment and try again."),
            ),
        }
    }

    /// Whether a "sign in again" link belongs on the page.
    fn offers_retry(&self) -> bool {
        matches!(
            self,
            GatewayError::Provider(e) if e.class() != ErrorClass::InvalidInput
        ) || matches!(
            self,
            GatewayError::Login(
                LoginError::StateUsed
                    | LoginError::Refused
                    | LoginError::MissingState
                    | LoginError::BadCode
            )
        ) || matches!(self, GatewayError::Layer(e) if e.offers_retry())
    }

    /// Log this error at the level it deserves: once, by whoever answers it, before
    /// [`GatewayError::into_response`].
    pub fn log(&self) {
        match self {
            GatewayError::Provider(e) => e.0.log(),
            GatewayError::Layer(e) => e.log(),
            GatewayError::Forbidden(r) => tracing::info!(
                reason = r.reason.code(),
                openid = %r.who.openid,
                unionid = %r.who.unionid,
                wecom_userid = %r.who.wecom_userid,
                "refused by the access rules"
            ),
            GatewayError::Login(LoginError::NotFound | LoginError::MethodNotAllowed) => {}
            // A login that failed on the client's side (no state, used state, declined, bad
            // code): the reason, never the code or state themselves.
            GatewayError::Login(e) => {
                tracing::info!(reason = self.code(), error = %e, "login failed")
            }
            _ => {}
        }
    }

    /// The response for this error (no side effect). `retry` is the login URL to offer on pages.
    pub fn into_response(self, json: bool, retry: &str) -> Response<Body> {
        let status = self.status();
        if json {
            let message = match &self {
                // These carry specific, safe words about the client's own input.
                GatewayError::Api(e) => e.to_string(),
                GatewayError::Path(e) => e.to_string(),
                GatewayError::Provider(e) => {
                    e.0.json_message()
                        .unwrap_or_else(|| e.0.texts().1.en)
                        .to_string()
                }
                other => other.texts().1.en.to_string(),
            };
            let mut body = json!({"error": self.code(), "message": message});
            if let GatewayError::Forbidden(r) = &self {
                body["reason"] = r.reason.code().into();
                for (key, value) in [
                    ("openid", &r.who.openid),
                    ("unionid", &r.who.unionid),
                    ("wecom_userid", &r.who.wecom_userid),
                ] {
                    if !value.is_empty() {
                        body[key] = value.as_str().into();
                    }
                }
            }
            return self.with_headers(http_util::json(status, &body));
        }
        let (title, message) = self.texts();
        let t = |zh, en| Text { zh, en };
        let (action, extra_html) = match &self {
            GatewayError::Forbidden(r) => (
                Some((r.switch_url.as_str(), t("换个账号", "Switch account"))),
                Some(identifiers_html(&r.who)),
            ),
            _ if self.offers_retry() => (Some((retry, t("重新登录", "Sign in again"))), None),
            // The application is down or slow: the same address again (a reload).
            _ if matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ) =>
            {
                (Some(("", t("重试", "Try again"))), None)
            }
            _ => (None, None),
        };
        self.with_headers(pages::render(Page {
            status,
            title,
            message,
            action,
            extra_html,
        }))
    }

    /// Headers some answers need, page or JSON alike.
    fn with_headers(&self, mut r: Response<Body>) -> Response<Body> {
        match self {
            GatewayError::RateLimited(secs) => {
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(*secs));
            }
            // The rest of the body may never come: this connection is done.
            GatewayError::Api(ApiError::BodyTimeout) => {
                r.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            _ => {}
        }
        r
    }
}
