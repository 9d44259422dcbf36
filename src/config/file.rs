//! The configuration file as serde reads it: one struct per TOML section with its defaults,
//! unknown keys rejected, and the redacted copy `wxgate check` prints. Nothing here is
//! checked: `load.rs` reads it, `validate/` turns it into [`super::Settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// An optional path: left out, or `""` (an environment variable, once set, cannot be left out),
/// is none.
fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let p: Option<PathBuf> = Option::deserialize(d)?;
    Ok(p.filter(|p| !p.as_os_str().is_empty()))
}

/// Text, or a whole number written without quotes (`agent_id = 1000002`, as WeCom's console
/// shows it).
fn text_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct TextOrInteger;
    impl Visitor<'_> for TextOrInteger {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a whole number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(TextOrInteger)
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub wechat: WechatConfig,
    pub session: SessionConfig,
    pub access: AccessConfig,
    pub wecom: WecomConfig,
    pub headers: HeadersConfig,
    pub verification: VerificationConfig,
    pub log: LogConfig,
    pub link: LinkConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub tls_cert: Option<PathBuf>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub tls_key: Option<PathBuf>,
    pub prefix: String,
    pub trusted_proxies: Vec<String>,
    /// Time allowed for a client to send a complete request head.
    pub header_read_timeout_ms: u64,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Grace period for in-flight requests on SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Worker threads (one event loop and upstream pool each); 0 = one per CPU.
    pub workers: usize,
    /// Close a connection with no request in progress: before its first byte, during a partial
    /// protocol preface, between keep-alive requests, idle HTTP/2.
    pub idle_timeout_ms: u64,
    /// Time allowed to receive a body the gateway reads itself (JSON logins); then 408.
    pub body_timeout_ms: u64,
    /// Connections open at once; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one client IP.
    pub max_connections_per_ip: usize,
    /// When set (e.g. `127.0.0.1:9100`): `/metrics` is served only there, over plain HTTP.
    pub metrics_listen: String,
    /// > 0 with TLS: `Strict-Transport-Security: max-age=N` on every response.
    pub hsts_max_age_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8443".into(),
            public_url: String::new(),
            tls_cert: None,
            tls_key: None,
            prefix: "/_wxgate".into(),
            trusted_proxies: Vec::new(),
            header_read_timeout_ms: 10_000,
            tls_handshake_timeout_ms: 10_000,
            max_header_bytes: 64 * 1024,
            h2_max_concurrent_streams: 256,
            shutdown_grace_secs: 30,
            workers: 0,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 20_000,
            max_connections_per_ip: 512,
            metrics_listen: String::new(),
            hsts_max_age_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: String,
    pub connect_timeout_ms: u64,
    pub timeout_secs: u64,
    /// Idle keep-alive connections kept to the upstream, per worker (closed after 60 s idle).
    pub pool_max_idle: usize,
    /// Upstream connections open at once, all workers together; a request that cannot get one
    /// within `connect_timeout_ms` gets 503.
    pub max_connections: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            connect_timeout_ms: 2000,
            timeout_secs: 60,
            pool_max_idle: 256,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    pub api_base: String,
    pub open_base: String,
    pub timeout_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<AppConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub official_account: Option<AppConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_app: Option<AppConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mini_program: Option<AppConfig>,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            open_base: "https://open.weixin.qq.com".into(),
            timeout_ms: 5000,
            website: None,
            official_account: None,
            mobile_app: None,
            mini_program: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub appid: String,
    pub secret: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub secret_file: Option<PathBuf>,
    /// Official account only: `snsapi_userinfo` (default) or `snsapi_base`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub cookie_secret: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub cookie_secret_file: Option<PathBuf>,
    pub cookie_domain: String,
    pub ttl_secs: u64,
    pub idle_secs: u64,
    pub store: String,
    pub redis_url: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub redis_url_file: Option<PathBuf>,
    /// Seed nodes of a Redis Cluster ("host:port" or redis URLs).
    pub redis_cluster: Vec<String>,
    /// Sentinel addresses ("host:port" or redis URLs), with `redis_sentinel_master`.
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: String,
    /// With Redis: how long a session read from Redis is served from this process's cache.
    pub cache_ms: u64,
    pub max_sessions: u64,
    /// Memory store: where sessions are written at graceful shutdown and read at start; empty =
    /// off.
    pub snapshot_path: String,
    /// > 0: browser sessions are re-checked with WeChat at most this often; 0 = off.
    pub revalidate_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "_wxgate".into(),
            cookie_secret: String::new(),
            cookie_secret_file: None,
            cookie_domain: String::new(),
            ttl_secs: 604_800,
            idle_secs: 86_400,
            store: "memory".into(),
            redis_url: String::new(),
            redis_url_file: None,
            redis_cluster: Vec::new(),
            redis_sentinels: Vec::new(),
            redis_sentinel_master: String::new(),
            cache_ms: 5000,
            max_sessions: 1_000_000,
            snapshot_path: String::new(),
            revalidate_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub public_paths: Vec<String>,
    pub allow_unionids: Vec<String>,
    pub allow_openids: Vec<String>,
    pub require_unionid: bool,
    pub redirect_hosts: Vec<String>,
    /// Logins started or finished per client IP per minute (/login, /callback, /app/login,
    /// /miniprogram/login, /link/complete); above it 429 + Retry-After. 0 = off.
    pub login_rate_per_minute: u32,
    /// WeCom: the userids let in; empty = any member of the corp.
    pub allow_wecom_userids: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            public_paths: Vec::new(),
            allow_unionids: Vec::new(),
            allow_openids: Vec::new(),
            require_unionid: false,
            redirect_hosts: Vec::new(),
            login_rate_per_minute: 300,
            allow_wecom_userids: Vec::new(),
        }
    }
}

/// `[wecom]`: a WeCom (企业微信) self-built app; off while `corp_id` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WecomConfig {
    pub corp_id: String,
    #[serde(deserialize_with = "text_or_integer")]
    pub agent_id: String,
    pub secret: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub secret_file: Option<PathBuf>,
    pub api_base: String,
    pub login_base: String,
    /// People outside the corp (WeCom gives them only an openid) may log in.
    pub allow_non_members: bool,
}

impl Default for WecomConfig {
    fn default() -> Self {
        Self {
            corp_id: String::new(),
            agent_id: String::new(),
            secret: String::new(),
            secret_file: None,
            api_base: "https://qyapi.weixin.qq.com".into(),
            login_base: "https://login.work.weixin.qq.com".into(),
            allow_non_members: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    pub sign_secret: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub sign_secret_file: Option<PathBuf>,
}

/// `[link]`: account linking, off while `url` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    pub url: String,
    pub secret: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_path"
    )]
    pub secret_file: Option<PathBuf>,
    pub timeout_ms: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: String::new(),
            secret_file: None,
            timeout_ms: 3000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    pub dir: String,
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

impl Config {
    /// The effective configuration with every secret replaced, for `wxgate check`.
    pub(super) fn redacted(&self) -> Config {
        const R: &str = "<redacted>";
        let mut c = self.clone();
        let red = |s: &mut String| {
            if !s.is_empty() {
                *s = R.into()
            }
        };
        for (_, app) in c.wechat.apps_mut() {
            if let Some(app) = app {
                red(&mut app.secret);
            }
        }
        red(&mut c.wecom.secret);
        red(&mut c.session.cookie_secret);
        red(&mut c.headers.sign_secret);
        red(&mut c.link.secret);
        if !c.session.redis_url.is_empty() {
            c.session.redis_url = redact_url_password(&c.session.redis_url);
        }
        for n in c
            .session
            .redis_cluster
            .iter_mut()
            .chain(c.session.redis_sentinels.iter_mut())
        {
            if n.contains("://") {
                *n = redact_url_password(n);
            }
        }
        c
    }

    pub(super) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

pub(super) fn redact_url_password(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<redacted>".into(),
    }
}

impl WechatConfig {
    pub(super) fn apps_mut(&mut self) -> [(&'static str, &mut Option<AppConfig>); 4] {
        [
            ("website", &mut self.website),
            ("official_account", &mut self.official_account),
            ("mobile_app", &mut self.mobile_app),
            ("mini_program", &mut self.mini_program),
        ]
    }
    pub(super) fn apps(&self) -> [(&'static str, &Option<AppConfig>); 4] {
        [
            ("website", &self.website),
            ("official_account", &self.official_account),
            ("mobile_app", &self.mobile_app),
            ("mini_program", &self.mini_program),
        ]
    }
}
