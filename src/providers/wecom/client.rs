//! WeCom's server API (`qyapi.weixin.qq.com`, or the mock): one corp access token for every
//! call (`cgi-bin/gettoken`), cached until shortly before it expires and renewed by one caller
//! while the others wait for it; a call answered 40014 / 42001 (token invalid / expired)
//! renews it and is retried once. Errors and logs never carry the secret, a code or a token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::WecomError;
use super::json::{errcode_of, parse_token, parse_userinfo, Person};
use crate::common::capped_body::{read_capped, CappedError};
use crate::common::metrics::ApiCalls;

/// Largest answer accepted (real ones are well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;
/// Renew this long before the token expires (at most half its life).
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// A failed renewal answers the logins of the next second too: WeCom down (or refusing the
/// gateway's IP) is asked once per second, not once per login.
const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// The corp access token and when to renew it.
#[derive(Clone)]
struct Token {
    value: Arc<str>,
    renew_at: Instant,
}

pub(super) struct WecomClient {
    http: reqwest::Client,
    api_base: String,
    corp_id: String,
    secret: String,
    token: Mutex<Option<Token>>,
    /// Held by the one caller renewing the token; the last renewal's failure and when.
    renewing: tokio::sync::Mutex<Option<(Instant, WecomError)>>,
    /// Latency and errcodes by endpoint (`wxgate_wechat_api_*`).
    metrics: ApiCalls,
}

fn map_reqwest(e: reqwest::Error) -> WecomError {
    // Never formatted: its text holds the URL with the secret or token.
    if e.is_timeout() {
        WecomError::Timeout
    } else {
        WecomError::Unreachable
    }
}

impl WecomClient {
    pub(super) fn new(
        api_base: &str,
        corp_id: &str,
        secret: &str,
        timeout: Duration,
        metrics: ApiCalls,
    ) -> Result<WecomClient, WecomError> {
        let parsed = url::Url::parse(api_base).map_err(|_| WecomError::Unreachable)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| WecomError::Unreachable)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")));
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        if loopback {
            builder = builder.no_proxy();
        }
        Ok(WecomClient {
            http: builder.build().map_err(|_| WecomError::Unreachable)?,
            api_base: api_base.trim_end_matches('/').to_string(),
            corp_id: corp_id.to_string(),
            secret: secret.to_string(),
            token: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(None),
            metrics,
        })
    }

    /// `cgi-bin/auth/getuserinfo`: who a login code belongs to.
    pub(super) async fn user_of_code(&self, code: &str) -> Result<Person, WecomError> {
        let token = self.token().await?;
        match self.getuserinfo(&token, code).await {
            Err(WecomError::Api(40014 | 42001)) => {
                // The token died before its time (revoked, or renewed elsewhere): renew it
                // once, whoever asks first, and retry once.
                self.forget(&token);
                let token = self.token().await?;
                self.getuserinfo(&token, code).await
            }
            other => other,
        }
    }

    async fn getuserinfo(&self, token: &str, code: &str) -> Result<Person, WecomError> {
        let params = [("access_token", token), ("code", code)];
        let body = self.get("cgi-bin/auth/getuserinfo", &params).await?;
        parse_userinfo(&body)
    }

    fn cached(&self) -> Option<Arc<str>> {
        let guard = self.token.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.value.clone())
    }

    /// The cached token, else a new one: one `gettoken` at a time, the other callers take the
    /// token it brings (or its failure, for [`FAILURE_HOLD`]).
    async fn token(&self) -> Result<Arc<str>, WecomError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let mut renewing = self.renewing.lock().await;
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        if let Some((at, e)) = renewing.as_ref() {
            if at.elapsed() < FAILURE_HOLD {
                return Err(e.clone());
            }
        }
        let params = [
            ("corpid", self.corp_id.as_str()),
            ("corpsecret", self.secret.as_str()),
        ];
        let renewed = match self.get("cgi-bin/gettoken", &params).await {
            Ok(body) => parse_token(&body),
            Err(e) => Err(e),
        };
        *renewing = renewed.as_ref().err().map(|e| (Instant::now(), e.clone()));
        let (value, expires_in) = renewed?;
        // WeCom's tokens live two hours; more than a day is taken as a day (an absurd answer
        // cannot overflow the clock).
        let life = Duration::from_secs(expires_in.min(86_400));
        let renew_at = Instant::now() + life.saturating_sub(RENEW_BEFORE.min(life / 2));
        let value: Arc<str> = Arc::from(value);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(Token {
            value: value.clone(),
            renew_at,
        });
        tracing::debug!(expires_in, "WeCom access token renewed");
        Ok(value)
    }

    /// Drop the cached token when it is still `stale` (not when a caller already renewed it).
    fn forget(&self, stale: &str) {
        let mut guard = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|t| &*t.value == stale) {
            *guard = None;
        }
    }

    /// One GET of `endpoint` (`cgi-bin/...`); the body. The URL (secret, token, code) never leaves this function.
    async fn get(
        &self,
        endpoint: &'static str,
        params: &[(&str, &str)],
    ) -> Result<Vec<u8>, WecomError> {
        let mut url = url::Url::parse(&format!("{}/{}", self.api_base, endpoint))
            .map_err(|_| WecomError::Unreachable)?;
        url.query_pairs_mut().extend_pairs(params.iter().copied());
        let started = Instant::now();
        let result = self.fetch(url).await;
        let errcode = result.as_deref().ok().and_then(errcode_of);
        self.metrics.observe(endpoint, started.elapsed(), errcode);
        match &result {
            Ok(_) => tracing::debug!(endpoint, "WeCom API call answered"),
            Err(e) => tracing::debug!(endpoint, error = e.kind_name(), "WeCom API call failed"),
        }
        result
    }

    async fn fetch(&self, url: url::Url) -> Result<Vec<u8>, WecomError> {
        let mut resp = self.http.get(url).send().await.map_err(map_reqwest)?;
        if !resp.status().is_success() {
            return Err(WecomError::Status(resp.status().as_u16()));
        }
        read_capped(&mut resp, MAX_BODY).await.map_err(|e| match e {
            CappedError::TooLarge => WecomError::Garbage,
            CappedError::Read(e) => map_reqwest(e),
        })
    }
}
