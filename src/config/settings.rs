//! The validated settings the gateway runs on: every value parsed once, at load, into the type
//! it is used as (addresses, durations, enums, sets, byte secrets). Request code reads these
//! fields and never the file's strings; `validate/` is the only producer.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::tls_files::TlsFiles;

/// Validated, parsed configuration used at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `server.listen`.
    pub listen: SocketAddr,
    /// `server.public_url`, parsed.
    pub public: PublicUrl,
    /// `{public origin}{prefix}/callback`, the OAuth redirect URI.
    pub callback_url: String,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// `server.metrics_listen`, parsed: `/metrics` only there.
    pub metrics_listen: Option<SocketAddr>,
    /// `server.tls_cert` + `server.tls_key`, read and checked.
    pub tls: Option<TlsFiles>,
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub wechat: WechatSettings,
    pub session: SessionSettings,
    pub access: AccessSettings,
    /// `[wecom]`; None while `wecom.corp_id` is empty.
    pub wecom: Option<WecomSettings>,
    pub headers: HeadersSettings,
    pub verification: VerificationSettings,
    pub log: LogSettings,
    /// `[link]`: account linking; `None` while `link.url` is empty.
    pub link: Option<LinkSettings>,
    /// The effective file as TOML with every secret replaced, for `wxgate check`.
    pub(super) redacted_toml: Arc<str>,
}

impl Settings {
    /// `server.prefix`, e.g. `/_wxgate`.
    pub fn prefix(&self) -> &str {
        &self.server.prefix
    }
    /// `upstream.timeout_secs`.
    pub fn upstream_timeout(&self) -> Duration {
        self.upstream.timeout
    }
    /// `session.cookie_secret`: the key of the signed login state.
    pub fn cookie_secret(&self) -> &[u8] {
        self.session.cookie_secret.expose()
    }
    /// The effective configuration (file + environment + `_file` secrets, defaults filled in)
    /// as TOML with every secret redacted: what `wxgate check` prints.
    pub fn redacted_toml(&self) -> &str {
        &self.redacted_toml
    }
}

/// The external origin, parsed once.
#[derive(Debug, Clone)]
pub struct PublicUrl {
    pub url: url::Url,
    /// `scheme://host[:port]` without trailing slash.
    pub origin: String,
    pub host: String,
    pub secure: bool,
}

/// Bytes that must not show up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[server]`: connection handling (the listener's own address, URL and TLS are on [`Settings`]).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `server.prefix`: the gateway's own paths, e.g. `/_wxgate`.
    pub prefix: String,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
    /// Worker threads; 0 = one per CPU.
    pub workers: usize,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// `Strict-Transport-Security: max-age=N` with TLS; 0 = off.
    pub hsts_max_age_secs: u64,
}

/// `[upstream]`: where requests go (always plain `http://`).
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `host:port` of `upstream.url`.
    pub authority: http::uri::Authority,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Idle keep-alive connections per worker.
    pub pool_max_idle: usize,
    /// Upstream connections open at once, all workers together.
    pub max_connections: usize,
}

/// `[wechat]`: the API endpoints and the configured apps.
#[derive(Debug, Clone)]
pub struct WechatSettings {
    /// `wechat.api_base` without a trailing slash.
    pub api_base: String,
    /// `wechat.open_base` without a trailing slash.
    pub open_base: String,
    pub timeout: Duration,
    pub website: Option<WechatApp>,
    pub official_account: Option<WechatApp>,
    pub mobile_app: Option<WechatApp>,
    pub mini_program: Option<WechatApp>,
    /// `wechat.official_account.scope` (default `snsapi_userinfo`).
    pub official_scope: OfficialScope,
}

/// One WeChat app's credentials.
#[derive(Clone)]
pub struct WechatApp {
    pub appid: String,
    pub secret: String,
}

impl fmt::Debug for WechatApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatApp")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The OAuth scope of the official-account login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficialScope {
    /// Asks for consent; nickname, avatar and unionid.
    SnsapiUserinfo,
    /// Silent; openid only.
    SnsapiBase,
    /// Silent `snsapi_base` first; `snsapi_userinfo` (one consent screen) only when that gave
    /// no unionid and the access rules need one.
    Auto,
}

impl OfficialScope {
    pub fn as_str(self) -> &'static str {
        match self {
            OfficialScope::SnsapiUserinfo => "snsapi_userinfo",
            OfficialScope::SnsapiBase => "snsapi_base",
            OfficialScope::Auto => "auto",
        }
    }
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "snsapi_userinfo" => Some(OfficialScope::SnsapiUserinfo),
            "snsapi_base" => Some(OfficialScope::SnsapiBase),
            "auto" => Some(OfficialScope::Auto),
            _ => None,
        }
    }
}

/// `[session]`: cookies, lifetimes and where sessions live.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `session.cookie_name`.
    pub cookie_name: String,
    /// `<cookie_name>_login`: the cookie that binds a login to the browser that started it.
    pub login_cookie: String,
    pub cookie_secret: Secret,
    /// `session.cookie_domain`; empty = a host-only cookie.
    pub cookie_domain: String,
    /// Absolute lifetime of a session.
    pub ttl: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// At most this many sessions in the memory store (or in the cache in front of Redis).
    pub max_sessions: u64,
    /// `session.cache_ms` (Redis only): how long a session read from Redis is served from this
    /// process's cache; zero = no cache.
    pub cache: Duration,
    pub store: StoreKind,
    /// `session.snapshot_path` (memory store only): sessions written at graceful shutdown and
    /// read back at start. `None`: off.
    pub snapshot_path: Option<std::path::PathBuf>,
    /// `session.revalidate_secs`: browser sessions re-checked with the provider at most this
    /// often. `None`: off (0).
    pub revalidate: Option<Duration>,
}

/// `session.store`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis(RedisTarget),
}

/// Which Redis (`session.redis_url`, `redis_cluster` or `redis_sentinels`); the URLs may hold a
/// password.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `session.redis_url`: one server.
    Url(String),
    /// `session.redis_cluster`: seed nodes, as `redis://` / `rediss://` URLs.
    Cluster(Vec<String>),
    /// `session.redis_sentinels` (as URLs) and `session.redis_sentinel_master`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |urls: &[String]| -> Vec<Secret> {
            urls.iter().map(|u| Secret::new(u.as_bytes())).collect()
        };
        match self {
            StoreKind::Memory => f.write_str("Memory"),
            StoreKind::Redis(RedisTarget::Url(url)) => f
                .debug_struct("Redis")
                .field("url", &Secret::new(url.as_bytes()))
                .finish(),
            StoreKind::Redis(RedisTarget::Cluster(nodes)) => f
                .debug_struct("RedisCluster")
                .field("nodes", &hidden(nodes))
                .finish(),
            StoreKind::Redis(RedisTarget::Sentinel { sentinels, master }) => f
                .debug_struct("RedisSentinel")
                .field("sentinels", &hidden(sentinels))
                .field("master", master)
                .finish(),
        }
    }
}

/// `[access]`: who may in, which paths are open, where a login may return to.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Path prefixes served without a session.
    pub public_paths: Vec<String>,
    pub allow_unionids: HashSet<String>,
    pub allow_openids: HashSet<String>,
    pub require_unionid: bool,
    /// Hosts (optionally `:port`) besides the public one a login may return to.
    pub redirect_hosts: Vec<String>,
    /// Logins per client IP per minute; 0 = off.
    pub login_rate_per_minute: u32,
    /// `access.allow_wecom_userids`: empty = any member of the corp.
    pub allow_wecom_userids: HashSet<String>,
}

/// `[wecom]`: a WeCom (企业微信) self-built app.
#[derive(Clone)]
pub struct WecomSettings {
    pub corp_id: String,
    pub agent_id: String,
    pub secret: String,
    /// `wecom.api_base` without a trailing slash.
    pub api_base: String,
    /// `wecom.login_base` without a trailing slash.
    pub login_base: String,
    pub allow_non_members: bool,
}

impl fmt::Debug for WecomSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WecomSettings")
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .field("secret", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("allow_non_members", &self.allow_non_members)
            .finish()
    }
}

/// `[headers]`.
#[derive(Debug, Clone)]
pub struct HeadersSettings {
    /// `headers.sign_secret`: when set, identity headers are signed with it.
    pub sign_secret: Option<Secret>,
}

/// `[link]`: the app's account-linking hook, called after every login.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// `link.url`: an absolute `http(s)` URL.
    pub url: url::Url,
    /// `link.secret`: signs the gateway's calls and verifies the app's completions.
    pub secret: Secret,
    /// `link.timeout_ms`: the whole call (connect, request, answer).
    pub timeout: Duration,
}

/// `[verification]`: domain-verification files served at `/NAME`.
#[derive(Debug, Clone, Default)]
pub struct VerificationSettings {
    /// `verification.dir`, when set (an existing directory at load).
    pub dir: Option<PathBuf>,
    /// `verification.files`: name → content (names checked at load).
    pub files: BTreeMap<String, String>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}
