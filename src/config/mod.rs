//! Configuration: TOML file + `WXGATE_SECTION__KEY` environment overrides (figment),
//! `<key>_file` for every secret, unknown keys rejected, validation at load with
//! messages that name the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub wechat: WechatConfig,
    pub session: SessionConfig,
    pub access: AccessConfig,
    pub headers: HeadersConfig,
    pub verification: VerificationConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_secret_file: Option<PathBuf>,
    pub cookie_domain: String,
    pub ttl_secs: u64,
    pub idle_secs: u64,
    pub store: String,
    pub redis_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url_file: Option<PathBuf>,
    pub max_sessions: u64,
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
            max_sessions: 1_000_000,
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
    /// /miniprogram/login); above it 429 + Retry-After. 0 = off.
    pub login_rate_per_minute: u32,
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
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    pub sign_secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_secret_file: Option<PathBuf>,
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

/// Where the configuration comes from.
pub fn default_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WXGATE_CONFIG") {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let local = PathBuf::from("wxgate.toml");
    local.exists().then_some(local)
}

impl Config {
    /// Load file (if any) + environment, resolve `<key>_file` secrets, validate.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut fig = Figment::new();
        if let Some(path) = path {
            if let Err(e) = std::fs::metadata(path) {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(env_provider());
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))?;
        cfg.into_settings()
    }

    /// Parse a TOML string (tests, `dev`), with the environment ignored.
    pub fn from_toml(s: &str) -> Result<Settings, ConfigError> {
        let cfg: Config = Figment::new()
            .merge(Toml::string(s))
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))?;
        cfg.into_settings()
    }

    pub fn into_settings(mut self) -> Result<Settings, ConfigError> {
        self.resolve_secret_files()?;
        Settings::validate(self)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        for (name, app) in self.wechat.apps_mut() {
            if let Some(app) = app {
                resolve_file(
                    &format!("wechat.{name}.secret"),
                    &mut app.secret,
                    &app.secret_file,
                )?;
            }
        }
        resolve_file(
            "session.cookie_secret",
            &mut self.session.cookie_secret,
            &self.session.cookie_secret_file,
        )?;
        resolve_file(
            "session.redis_url",
            &mut self.session.redis_url,
            &self.session.redis_url_file,
        )?;
        resolve_file(
            "headers.sign_secret",
            &mut self.headers.sign_secret,
            &self.headers.sign_secret_file,
        )?;
        Ok(())
    }

    /// The effective configuration with every secret replaced, for `wxgate check`.
    pub fn redacted(&self) -> Config {
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
        red(&mut c.session.cookie_secret);
        red(&mut c.headers.sign_secret);
        if !c.session.redis_url.is_empty() {
            c.session.redis_url = redact_url_password(&c.session.redis_url);
        }
        c
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn env_provider() -> Env {
    // Only SECTION__KEY variables: WXGATE_CONFIG and friends are not config keys.
    Env::prefixed("WXGATE_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

fn describe_figment(e: figment::Error) -> String {
    // figment reports nested key paths as `server.listen`; keep its words, one line per error.
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let mut kind = e.kind.to_string();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                kind = format!("unknown key `{field}`");
            }
            let origin = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{kind}{origin}")
            } else {
                format!("{key}: {kind}{origin}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn resolve_file(key: &str, value: &mut String, file: &Option<PathBuf>) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    if !value.is_empty() {
        return Err(invalid(
            key,
            format!("set either {key} or {key}_file, not both"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            format!("{key}_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    *value = text.trim().to_string();
    if value.is_empty() {
        return Err(invalid(
            format!("{key}_file"),
            format!("{} is empty", path.display()),
        ));
    }
    Ok(())
}

fn redact_url_password(s: &str) -> String {
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
    pub fn apps_mut(&mut self) -> [(&'static str, &mut Option<AppConfig>); 4] {
        [
            ("website", &mut self.website),
            ("official_account", &mut self.official_account),
            ("mobile_app", &mut self.mobile_app),
            ("mini_program", &mut self.mini_program),
        ]
    }
    pub fn apps(&self) -> [(&'static str, &Option<AppConfig>); 4] {
        [
            ("website", &self.website),
            ("official_account", &self.official_account),
            ("mobile_app", &self.mobile_app),
            ("mini_program", &self.mini_program),
        ]
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

/// Validated, parsed configuration used at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: Config,
    pub listen: SocketAddr,
    pub public: PublicUrl,
    pub upstream: http::uri::Authority,
    pub upstream_scheme: http::uri::Scheme,
    pub trusted_proxies: Vec<IpNet>,
    pub callback_url: String,
    pub official_scope: String,
    pub api_base: String,
    pub open_base: String,
    pub tls: Option<crate::server::tls::TlsFiles>,
    /// `server.metrics_listen`, parsed: `/metrics` only there.
    pub metrics_listen: Option<SocketAddr>,
}

impl Settings {
    pub fn prefix(&self) -> &str {
        &self.raw.server.prefix
    }
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.raw.upstream.timeout_secs)
    }

    fn validate(c: Config) -> Result<Settings, ConfigError> {
        let s = &c.server;
        let listen: SocketAddr = s.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("'{}' is not an address like 0.0.0.0:8443", s.listen),
            )
        })?;

        if s.public_url.is_empty() {
            return Err(invalid(
                "server.public_url",
                "required: the external origin users see, e.g. https://app.example.com",
            ));
        }
        let url = url::Url::parse(&s.public_url).map_err(|e| {
            invalid(
                "server.public_url",
                format!("'{}' is not a URL: {e}", s.public_url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "server.public_url",
                "must start with https:// or http://",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("server.public_url", "has no host"))?
            .to_ascii_lowercase();
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "server.public_url",
                "must be an origin only (scheme, host, optional port), without path or query",
            ));
        }
        let origin = url.origin().ascii_serialization();
        let public = PublicUrl {
            secure: url.scheme() == "https",
            origin,
            host,
            url,
        };

        let p = &s.prefix;
        if !p.starts_with('/')
            || p.ends_with('/')
            || p.len() < 2
            || p.starts_with("//")
            || p.bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b"/-_.~".contains(&b)))
        {
            return Err(invalid(
                "server.prefix",
                format!("'{p}' must look like /_wxgate (starts with /, no trailing /, letters digits - _ . ~)"),
            ));
        }

        let mut trusted = Vec::new();
        for (i, t) in s.trusted_proxies.iter().enumerate() {
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        format!("server.trusted_proxies[{i}]"),
                        format!("'{t}' is not an IP or CIDR"),
                    )
                })?;
            trusted.push(net);
        }
        if s.max_header_bytes < 1024 {
            return Err(invalid("server.max_header_bytes", "must be at least 1024"));
        }
        if s.workers > 1024 {
            return Err(invalid(
                "server.workers",
                "must be at most 1024 (0 = one per CPU)",
            ));
        }
        for (key, v) in [
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            ("server.body_timeout_ms", s.body_timeout_ms),
            ("server.max_connections", s.max_connections as u64),
            (
                "server.max_connections_per_ip",
                s.max_connections_per_ip as u64,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let metrics_listen = if s.metrics_listen.is_empty() {
            None
        } else {
            Some(s.metrics_listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "server.metrics_listen",
                    format!(
                        "'{}' is not an address like 127.0.0.1:9100",
                        s.metrics_listen
                    ),
                )
            })?)
        };
        if s.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "server.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }

        let tls = match (&s.tls_cert, &s.tls_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key",
                    "tls_cert is set but tls_key is not; set both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert",
                    "tls_key is set but tls_cert is not; set both or neither",
                ))
            }
            (Some(cert), Some(key)) => Some(crate::server::tls::TlsFiles::load(cert, key)?),
        };

        let u = &c.upstream;
        let up: http::Uri = u
            .url
            .parse()
            .map_err(|e| invalid("upstream.url", format!("'{}' is not a URL: {e}", u.url)))?;
        let scheme = up.scheme().cloned();
        if scheme.as_ref() != Some(&http::uri::Scheme::HTTP) {
            return Err(invalid(
                "upstream.url",
                format!("'{}' must be an http:// URL (TLS to the upstream is not supported; terminate it at wxgate)", u.url),
            ));
        }
        let authority = up
            .authority()
            .cloned()
            .ok_or_else(|| invalid("upstream.url", "has no host"))?;
        if up.path() != "/" && !up.path().is_empty() {
            return Err(invalid(
                "upstream.url",
                "must not have a path; requests keep their own path",
            ));
        }
        if u.timeout_secs == 0 {
            return Err(invalid("upstream.timeout_secs", "must be at least 1"));
        }
        if u.connect_timeout_ms == 0 {
            return Err(invalid("upstream.connect_timeout_ms", "must be at least 1"));
        }
        if u.max_connections == 0 {
            return Err(invalid("upstream.max_connections", "must be at least 1"));
        }

        let w = &c.wechat;
        for (key, val) in [
            ("wechat.api_base", &w.api_base),
            ("wechat.open_base", &w.open_base),
        ] {
            let parsed = url::Url::parse(val)
                .map_err(|e| invalid(key, format!("'{val}' is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(key, "must be an http(s) URL"));
            }
        }
        if w.timeout_ms == 0 {
            return Err(invalid("wechat.timeout_ms", "must be at least 1"));
        }
        let mut any = false;
        for (name, app) in w.apps() {
            let Some(app) = app else { continue };
            any = true;
            if app.appid.trim().is_empty() {
                return Err(invalid(format!("wechat.{name}.appid"), "is empty"));
            }
            if !app.appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid(
                    format!("wechat.{name}.appid"),
                    "must be letters and digits (wx...)",
                ));
            }
            if app.secret.is_empty() {
                return Err(invalid(
                    format!("wechat.{name}.secret"),
                    "is empty (set secret or secret_file)",
                ));
            }
            if app.scope.is_some() && name != "official_account" {
                return Err(invalid(
                    format!("wechat.{name}.scope"),
                    "only wechat.official_account has a scope",
                ));
            }
        }
        if !any {
            return Err(invalid(
                "wechat",
                "no WeChat app configured: set at least one of [wechat.website], [wechat.official_account], [wechat.mobile_app], [wechat.mini_program]",
            ));
        }
        let official_scope = w
            .official_account
            .as_ref()
            .and_then(|a| a.scope.clone())
            .unwrap_or_else(|| "snsapi_userinfo".into());
        if !matches!(official_scope.as_str(), "snsapi_userinfo" | "snsapi_base") {
            return Err(invalid(
                "wechat.official_account.scope",
                format!("'{official_scope}' must be snsapi_userinfo or snsapi_base"),
            ));
        }

        let se = &c.session;
        if se.cookie_secret.len() < 32 {
            return Err(invalid(
                "session.cookie_secret",
                format!(
                    "must be at least 32 bytes (got {}); generate one with `openssl rand -hex 32`",
                    se.cookie_secret.len()
                ),
            ));
        }
        if se.cookie_name.is_empty()
            || !se
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "session.cookie_name",
                "must be letters, digits, - _ .",
            ));
        }
        if !se.cookie_domain.is_empty()
            && !se
                .cookie_domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(invalid(
                "session.cookie_domain",
                format!("'{}' is not a domain", se.cookie_domain),
            ));
        }
        if se.ttl_secs == 0 {
            return Err(invalid("session.ttl_secs", "must be at least 1"));
        }
        if se.idle_secs == 0 {
            return Err(invalid("session.idle_secs", "must be at least 1"));
        }
        if se.max_sessions == 0 {
            return Err(invalid("session.max_sessions", "must be at least 1"));
        }
        match se.store.as_str() {
            "memory" => {}
            "redis" => {
                if se.redis_url.is_empty() {
                    return Err(invalid(
                        "session.redis_url",
                        "required with store = \"redis\"",
                    ));
                }
                let ru = url::Url::parse(&se.redis_url)
                    .map_err(|_| invalid("session.redis_url", "is not a redis:// URL"))?;
                if !matches!(ru.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                    return Err(invalid("session.redis_url", "must start with redis://"));
                }
            }
            other => {
                return Err(invalid(
                    "session.store",
                    format!("'{other}' must be \"memory\" or \"redis\""),
                ))
            }
        }

        for (i, pp) in c.access.public_paths.iter().enumerate() {
            if !pp.starts_with('/') {
                return Err(invalid(
                    format!("access.public_paths[{i}]"),
                    format!("'{pp}' must start with /"),
                ));
            }
        }
        for (i, h) in c.access.redirect_hosts.iter().enumerate() {
            if h.is_empty()
                || h.contains('/')
                || h.contains('@')
                || h.chars().any(|c| c.is_whitespace())
            {
                return Err(invalid(
                    format!("access.redirect_hosts[{i}]"),
                    format!("'{h}' must be a host name like shop.example.com (optionally :port)"),
                ));
            }
        }

        let v = &c.verification;
        if !v.dir.is_empty() {
            let md = std::fs::metadata(&v.dir)
                .map_err(|e| invalid("verification.dir", format!("cannot read {}: {e}", v.dir)))?;
            if !md.is_dir() {
                return Err(invalid(
                    "verification.dir",
                    format!("{} is not a directory", v.dir),
                ));
            }
        }
        for name in v.files.keys() {
            if !crate::common::paths::is_verification_name(name) {
                return Err(invalid(
                    format!("verification.files.\"{name}\""),
                    "name must match ^[A-Za-z0-9_-]+_verify_[A-Za-z0-9]+\\.txt$",
                ));
            }
        }
        if !matches!(c.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }

        let callback_url = format!("{}{}/callback", public.origin, s.prefix);
        Ok(Settings {
            listen,
            callback_url,
            trusted_proxies: trusted,
            upstream: authority,
            upstream_scheme: http::uri::Scheme::HTTP,
            official_scope,
            api_base: w.api_base.trim_end_matches('/').to_string(),
            open_base: w.open_base.trim_end_matches('/').to_string(),
            public,
            tls,
            metrics_listen,
            raw: c,
        })
    }

    pub fn cookie_secret(&self) -> &[u8] {
        self.raw.session.cookie_secret.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://app.example.com"
[wechat.website]
appid = "wx1"
secret = "s"
[session]
cookie_secret = "0123456789abcdef0123456789abcdef"
"#;

    #[test]
    fn minimal_config_loads() {
        let s = Config::from_toml(BASE).unwrap();
        assert_eq!(s.callback_url, "https://app.example.com/_wxgate/callback");
        assert!(s.public.secure);
        assert_eq!(s.upstream.as_str(), "127.0.0.1:8080");
    }

    #[test]
    fn redaction_hides_secrets() {
        let s = Config::from_toml(BASE).unwrap();
        let out = s.raw.redacted().to_toml();
        assert!(!out.contains("0123456789abcdef"));
        assert!(out.contains("<redacted>"));
    }

    #[test]
    fn short_secret_names_key() {
        let e = Config::from_toml(&BASE.replace("0123456789abcdef0123456789abcdef", "short"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.cookie_secret"), "{e}");
    }

    #[test]
    fn unknown_key_rejected() {
        let e = Config::from_toml(&format!("{BASE}\n[access]\nbogus = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn hardening_keys_have_defaults_and_are_checked() {
        let s = Config::from_toml(BASE).unwrap();
        assert_eq!(s.raw.server.idle_timeout_ms, 60_000);
        assert_eq!(s.raw.server.body_timeout_ms, 30_000);
        assert_eq!(s.raw.server.max_connections, 20_000);
        assert_eq!(s.raw.server.max_connections_per_ip, 512);
        assert_eq!(s.raw.upstream.max_connections, 1024);
        assert_eq!(s.raw.access.login_rate_per_minute, 300);
        assert!(s.metrics_listen.is_none());
        let e = Config::from_toml(
            &BASE.replace("[wechat.website]", "idle_timeout_ms = 0\n[wechat.website]"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.idle_timeout_ms"), "{e}");
        let e = Config::from_toml(&BASE.replace(
            "[wechat.website]",
            "metrics_listen = \"nope\"\n[wechat.website]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.metrics_listen"), "{e}");
        let s = Config::from_toml(&BASE.replace(
            "[wechat.website]",
            "metrics_listen = \"127.0.0.1:0\"\n[wechat.website]",
        ))
        .unwrap();
        assert!(s.metrics_listen.is_some());
    }

    #[test]
    fn redis_password_redacted() {
        assert_eq!(
            redact_url_password("redis://:hunter2@localhost:6379/0"),
            "redis://:redacted@localhost:6379/0"
        );
    }
}
