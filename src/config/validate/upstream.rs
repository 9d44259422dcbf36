//! `[upstream]`: a plain `http://host:port` without path, and its timeouts and limits.

use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::UpstreamConfig;
use crate::config::settings::UpstreamSettings;

pub(super) fn check(u: &UpstreamConfig) -> Result<UpstreamSettings, ConfigError> {
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
    Ok(UpstreamSettings {
        authority,
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        timeout: Duration::from_secs(u.timeout_secs),
        pool_max_idle: u.pool_max_idle,
        max_connections: u.max_connections,
    })
}
