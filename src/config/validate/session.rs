//! `[session]`: cookie name, secret and domain, lifetimes, and the store.

use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::SessionConfig;
use crate::config::settings::{Secret, SessionSettings, StoreKind};

pub(super) fn check(se: &SessionConfig) -> Result<SessionSettings, ConfigError> {
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
    let store = match se.store.as_str() {
        "memory" => StoreKind::Memory,
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
            StoreKind::Redis {
                url: se.redis_url.clone(),
            }
        }
        other => {
            return Err(invalid(
                "session.store",
                format!("'{other}' must be \"memory\" or \"redis\""),
            ))
        }
    };
    let snapshot_path = match se.snapshot_path.as_str() {
        "" => None,
        p => {
            if store != StoreKind::Memory {
                return Err(invalid(
                    "session.snapshot_path",
                    "only with store = \"memory\" (Redis keeps sessions across restarts itself)",
                ));
            }
            let path = std::path::PathBuf::from(p);
            if path.file_name().is_none() || p.ends_with('/') {
                return Err(invalid(
                    "session.snapshot_path",
                    format!("'{p}' is not a file path"),
                ));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            if !dir.is_dir() {
                return Err(invalid(
                    "session.snapshot_path",
                    format!("directory '{}' does not exist", dir.display()),
                ));
            }
            if path.is_dir() {
                return Err(invalid(
                    "session.snapshot_path",
                    format!("'{p}' is a directory"),
                ));
            }
            Some(path)
        }
    };
    Ok(SessionSettings {
        cookie_name: se.cookie_name.clone(),
        login_cookie: format!("{}_login", se.cookie_name),
        cookie_secret: Secret::new(se.cookie_secret.as_bytes()),
        cookie_domain: se.cookie_domain.clone(),
        ttl: Duration::from_secs(se.ttl_secs),
        idle: Duration::from_secs(se.idle_secs),
        max_sessions: se.max_sessions,
        store,
        snapshot_path,
        revalidate: super::wechat::check_revalidate(se.revalidate_secs)?,
    })
}
