//! WeChat server-side API client (`/sns/*` on `api.weixin.qq.com`, or the mock). Errors never
//! carry the secret, the code, tokens, session keys or the request URL, and nothing here logs
//! them: only the endpoint path and the errcode are logged.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::WechatError;
use super::json::{
    parse_check, parse_jscode2session, parse_oauth_token, parse_userinfo, JsSession, OAuthToken,
    UserInfo,
};
use crate::common::capped_body::{read_capped, CappedError};
use crate::common::metrics::ApiCalls;

/// Largest response body accepted from WeChat (real answers are well under 4 KiB).
const MAX_BODY: usize = 256 * 1024;

/// Client for WeChat's `/sns/*` APIs. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    api_base: Arc<str>,
    /// Latency and errcodes by endpoint (`wxgate_wechat_api_seconds`, `wxgate_wechat_errors_total`).
    calls: ApiCalls,
}

impl fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatClient")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl WechatClient {
    /// `api_base` without a trailing slash, e.g. `https://api.weixin.qq.com` or
    /// `http://127.0.0.1:PORT` (the mock). `timeout` bounds each whole call (connect, request,
    /// body). Fails with [`WechatError::Unreachable`] when `api_base` is not an http(s) URL or the
    /// HTTP client cannot be built.
    pub fn new(
        api_base: &str,
        timeout: Duration,
        calls: ApiCalls,
    ) -> Result<WechatClient, WechatError> {
        let api_base = api_base.trim().trim_end_matches('/');
        let parsed = url::Url::parse(api_base).map_err(|_| WechatError::Unreachable)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(WechatError::Unreachable);
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| WechatError::Unreachable)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            // A 3xx is an answer like any other non-2xx: `Status`.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")));
        if is_loopback_host(&parsed) {
            // The mock on localhost: never send that through an environment-configured proxy.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|_| WechatError::Unreachable)?;
        Ok(WechatClient {
            http,
            api_base: Arc::from(api_base),
            calls,
        })
    }

    /// The configured API base (no trailing slash).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `GET /sns/oauth2/access_token`: exchange a website / official-account / mobile-app code.
    pub async fn exchange_code(
        &self,
        appid: &str,
        secret: &str,
        code: &str,
    ) -> Result<OAuthToken, WechatError> {
        let params = [
            ("appid", appid),
            ("secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
        ];
        self.call(
            "/sns/oauth2/access_token",
            &params,
            &[secret, code],
            parse_oauth_token,
        )
        .await
    }

    /// `GET /sns/oauth2/refresh_token`.
    pub async fn refresh_token(
        &self,
        appid: &str,
        refresh_token: &str,
    ) -> Result<OAuthToken, WechatError> {
        let params = [
            ("appid", appid),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.call(
            "/sns/oauth2/refresh_token",
            &params,
            &[refresh_token],
            parse_oauth_token,
        )
        .await
    }

    /// `GET /sns/userinfo` (lang=zh_CN).
    pub async fn userinfo(
        &self,
        access_token: &str,
        openid: &str,
    ) -> Result<UserInfo, WechatError> {
        let params = [
            ("access_token", access_token),
            ("openid", openid),
            ("lang", "zh_CN"),
        ];
        self.call("/sns/userinfo", &params, &[access_token], parse_userinfo)
            .await
    }

    /// `GET /sns/jscode2session`: exchange a mini-program `wx.login()` code.
    pub async fn jscode2session(
        &self,
        appid: &str,
        secret: &str,
        js_code: &str,
    ) -> Result<JsSession, WechatError> {
        let params = [
            ("appid", appid),
            ("secret", secret),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ];
        self.call(
            "/sns/jscode2session",
            &params,
            &[secret, js_code],
            parse_jscode2session,
        )
        .await
    }

    /// `GET /sns/auth`: Ok when the access token is valid for that openid.
    pub async fn check_token(&self, access_token: &str, openid: &str) -> Result<(), WechatError> {
        let params = [("access_token", access_token), ("openid", openid)];
        self.call("/sns/auth", &params, &[access_token], parse_check)
            .await
    }

    /// Performs the GET and returns the raw body. The URL (which holds secrets) never leaves this
    /// function, and reqwest errors are mapped without being formatted.
    async fn call<T>(
        &self,
        endpoint: &'static str,
        params: &[(&str, &str)],
        sensitive: &[&str],
        parse: fn(&[u8], &[&str]) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let mut url = url::Url::parse(&format!("{}{}", self.api_base, endpoint))
            .map_err(|_| WechatError::Unreachable)?;
        url.query_pairs_mut().extend_pairs(params.iter().copied());

        let started = std::time::Instant::now();
        let result = self
            .fetch(url)
            .await
            .and_then(|body| parse(&body, sensitive));
        self.settle(endpoint, started, result)
    }

    /// Count the call (`wxgate_wechat_api_seconds`, `wxgate_wechat_errors_total`) and log its
    /// outcome at debug, never with its URL or body.
    fn settle<T>(
        &self,
        endpoint: &'static str,
        started: std::time::Instant,
        result: Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let errcode = match &result {
            Err(WechatError::Api { code, .. }) => Some(*code),
            _ => None,
        };
        let label = endpoint.strip_prefix('/').unwrap_or(endpoint);
        self.calls.observe(label, started.elapsed(), errcode);
        match &result {
            Ok(_) => tracing::debug!(endpoint, "WeChat API call succeeded"),
            Err(WechatError::Api { code, .. }) => {
                tracing::debug!(endpoint, errcode = *code, "WeChat API error")
            }
            Err(e) => tracing::debug!(endpoint, error = e.kind_name(), "WeChat API call failed"),
        }
        result
    }

    /// `POST endpoint?query` with a JSON body (`cgi-bin/stable_token`, `wxa/business/*`),
    /// answered, counted and logged like [`Self::call`]'s GETs.
    pub(crate) async fn post_json<T>(
        &self,
        endpoint: &'static str,
        query: &[(&str, &str)],
        body: &serde_json::Value,
        sensitive: &[&str],
        parse: fn(&[u8], &[&str]) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let mut url = url::Url::parse(&format!("{}{}", self.api_base, endpoint))
            .map_err(|_| WechatError::Unreachable)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().copied());
        }
        let req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let started = std::time::Instant::now();
        let result = self.read(req).await.and_then(|b| parse(&b, sensitive));
        self.settle(endpoint, started, result)
    }

    async fn fetch(&self, url: url::Url) -> Result<Vec<u8>, WechatError> {
        self.read(self.http.get(url)).await
    }

    async fn read(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, WechatError> {
        let mut resp = req.send().await.map_err(map_reqwest)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(WechatError::Status(status.as_u16()));
        }
        read_capped(&mut resp, MAX_BODY).await.map_err(|e| match e {
            CappedError::TooLarge => WechatError::Garbage,
            CappedError::Read(e) => map_reqwest(e),
        })
    }
}

/// Maps a reqwest error to a variant. Never formats it: its text holds the URL with the secret.
fn map_reqwest(e: reqwest::Error) -> WechatError {
    if e.is_timeout() {
        WechatError::Timeout
    } else {
        WechatError::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_api_base() {
        assert!(WechatClient::new(
            "https://api.weixin.qq.com",
            Duration::from_secs(5),
            ApiCalls::default()
        )
        .is_ok());
        let c = WechatClient::new(
            "http://127.0.0.1:9/",
            Duration::from_secs(5),
            ApiCalls::default(),
        )
        .unwrap();
        assert_eq!(c.api_base(), "http://127.0.0.1:9");
        assert_eq!(
            WechatClient::new("not a url", Duration::from_secs(5), ApiCalls::default())
                .unwrap_err(),
            WechatError::Unreachable
        );
        assert_eq!(
            WechatClient::new("ftp://x", Duration::from_secs(5), ApiCalls::default()).unwrap_err(),
            WechatError::Unreachable
        );
    }
}
