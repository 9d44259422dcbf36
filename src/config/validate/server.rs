//! `[server]`: listen address, public URL, prefix, proxies, connection limits and timeouts, TLS.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::ServerConfig;
use crate::config::settings::{PublicUrl, ServerSettings};
use crate::config::tls_files::TlsFiles;

/// The `[server]` values [`crate::config::Settings`] holds at its top level, and the rest.
pub(super) struct Server {
    pub listen: SocketAddr,
    pub public: PublicUrl,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics_listen: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub settings: ServerSettings,
}

pub(super) fn check(s: &ServerConfig) -> Result<Server, ConfigError> {
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

    let mut trusted_proxies = Vec::new();
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
        trusted_proxies.push(net);
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
        ("server.header_read_timeout_ms", s.header_read_timeout_ms),
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
        (Some(cert), Some(key)) => Some(TlsFiles::load(cert, key)?),
    };
    Ok(Server {
        listen,
        public,
        trusted_proxies,
        metrics_listen,
        tls,
        settings: ServerSettings {
            prefix: s.prefix.clone(),
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(s.tls_handshake_timeout_ms),
            max_header_bytes: s.max_header_bytes,
            h2_max_concurrent_streams: s.h2_max_concurrent_streams,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            workers: s.workers,
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            body_timeout: Duration::from_millis(s.body_timeout_ms),
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            hsts_max_age_secs: s.hsts_max_age_secs,
        },
    })
}
