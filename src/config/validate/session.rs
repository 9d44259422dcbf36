//! `[session]`: cookie name, secret and domain, lifetimes, and the store.

use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::SessionConfig;
use crate::config::settings::{RedisTarget, Secret, SessionSettings, StoreKind};

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
    for (key, secs) in [
        ("session.ttl_secs", se.ttl_secs),
        ("session.idle_secs", se.idle_secs),
    ] {
        if !(1..=MAX_LIFETIME_SECS).contains(&secs) {
            return Err(invalid(
                key,
                format!("must be from 1 to {MAX_LIFETIME_SECS} (10 years), not {secs}"),
            ));
        }
    }
    if se.max_sessions == 0 {
        return Err(invalid("session.max_sessions", "must be at least 1"));
    }
    let store = match se.store.as_str() {
        "memory" => StoreKind::Memory,
        "redis" => StoreKind::Redis(redis_target(se)?),
        other => {
            return Err(invalid(
                "session.store",
                format!("'{other}' must be \"memory\" or \"redis\""),
            ))
        }
    };
    if se.cache_ms > MAX_CACHE_MS {
        return Err(invalid(
            "session.cache_ms",
            format!(
                "{} is over the limit of {MAX_CACHE_MS} (one minute)",
                se.cache_ms
            ),
        ));
    }
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
        // The idle clock in Redis restarts only when a read misses the cache: a session in use
        // must miss well within the idle timeout.
        cache: Duration::from_millis(se.cache_ms).min(Duration::from_secs(se.idle_secs) / 2),
        store,
        snapshot_path,
        revalidate: super::wechat::check_revalidate(se.revalidate_secs)?,
    })
}

/// Longest `session.ttl_secs` and `session.idle_secs`: 10 years. (The session cache refuses
/// more than 1 000, and a record's expiry is a 32-bit Unix time.)
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 86_400;

/// Longest `session.cache_ms` (a cached session outlives a Redis outage by at most this).
const MAX_CACHE_MS: u64 = 60_000;

/// With `store = "redis"`: exactly one of `redis_url`, `redis_cluster`, `redis_sentinels`.
fn redis_target(se: &SessionConfig) -> Result<RedisTarget, ConfigError> {
    let given = [
        (!se.redis_url.is_empty(), "redis_url"),
        (!se.redis_cluster.is_empty(), "redis_cluster"),
        (!se.redis_sentinels.is_empty(), "redis_sentinels"),
    ];
    let set: Vec<&str> = given.iter().filter(|g| g.0).map(|g| g.1).collect();
    if set.len() > 1 {
        return Err(invalid(
            "session.store",
            format!(
                "with store = \"redis\", set exactly one of redis_url, redis_cluster or \
                 redis_sentinels (got {})",
                set.join(" and ")
            ),
        ));
    }
    if !se.redis_sentinel_master.is_empty() && se.redis_sentinels.is_empty() {
        return Err(invalid(
            "session.redis_sentinel_master",
            "only with session.redis_sentinels (the Sentinel addresses)",
        ));
    }
    match set.first() {
        None => Err(invalid(
            "session.redis_url",
            "with store = \"redis\", one of session.redis_url (one server), \
             session.redis_cluster (Cluster seed nodes) or session.redis_sentinels is required",
        )),
        Some(&"redis_url") => {
            let ru = url::Url::parse(&se.redis_url)
                .map_err(|_| invalid("session.redis_url", "is not a redis:// URL"))?;
            if !matches!(ru.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                return Err(invalid("session.redis_url", "must start with redis://"));
            }
            Ok(RedisTarget::Url(se.redis_url.clone()))
        }
        Some(&"redis_cluster") => Ok(RedisTarget::Cluster(node_urls(
            "session.redis_cluster",
            &se.redis_cluster,
        )?)),
        _ => {
            let sentinels = node_urls("session.redis_sentinels", &se.redis_sentinels)?;
            let m = &se.redis_sentinel_master;
            if m.is_empty() {
                return Err(invalid(
                    "session.redis_sentinel_master",
                    "required with session.redis_sentinels: the master name the sentinels \
                     monitor (`sentinel monitor <name> ...`)",
                ));
            }
            if m.len() > 256 || !m.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "session.redis_sentinel_master",
                    "must be a name without spaces or control characters",
                ));
            }
            Ok(RedisTarget::Sentinel {
                sentinels,
                master: m.clone(),
            })
        }
    }
}

/// Cluster seed nodes or sentinels as URLs, all plain or all TLS.
fn node_urls(key: &str, nodes: &[String]) -> Result<Vec<String>, ConfigError> {
    let urls = nodes
        .iter()
        .map(|n| node_url(n).map_err(|why| invalid(key, format!("'{}': {why}", redacted(n)))))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if tls != 0 && tls != urls.len() {
        return Err(invalid(
            key,
            "mixes redis:// and rediss:// (all or none use TLS)",
        ));
    }
    Ok(urls)
}

/// A node address as the file gives it, for an error message (no password).
fn redacted(n: &str) -> String {
    if n.contains("://") {
        crate::config::file::redact_url_password(n)
    } else {
        n.to_string()
    }
}

/// One node: `host:port` (a plain `redis://` URL then) or a `redis://` / `rediss://` URL with
/// a host and a port.
pub(crate) fn node_url(n: &str) -> Result<String, &'static str> {
    let url = if n.contains("://") {
        n.to_string()
    } else {
        format!("redis://{n}")
    };
    let u = url::Url::parse(&url).map_err(|_| "is not host:port or a redis:// URL")?;
    if !matches!(u.scheme(), "redis" | "rediss") {
        return Err("must be host:port or a redis:// / rediss:// URL");
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if u.port().is_none() {
        return Err("has no port");
    }
    if !matches!(u.path(), "" | "/" | "/0") || u.query().is_some() || u.fragment().is_some() {
        return Err("must be only host:port (a Cluster or Sentinel has no database number)");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::{check, node_url, MAX_LIFETIME_SECS};
    use crate::config::file::SessionConfig;
    use crate::config::settings::{RedisTarget, StoreKind};

    fn redis(f: impl FnOnce(&mut SessionConfig)) -> Result<StoreKind, String> {
        let mut c = SessionConfig {
            cookie_secret: "x".repeat(32),
            store: "redis".into(),
            ..SessionConfig::default()
        };
        f(&mut c);
        check(&c).map(|s| s.store).map_err(|e| e.to_string())
    }

    #[test]
    fn exactly_one_redis_deployment() {
        let none = redis(|_| {}).unwrap_err();
        assert!(
            none.contains("session.redis_url") && none.contains("redis_cluster"),
            "{none}"
        );
        let two = redis(|c| {
            c.redis_url = "redis://h:1".into();
            c.redis_cluster = vec!["h:2".into()];
        })
        .unwrap_err();
        assert!(
            two.contains("exactly one") && two.contains("redis_url and redis_cluster"),
            "{two}"
        );
        assert_eq!(
            redis(|c| c.redis_cluster = vec!["a:7000".into(), "redis://:pw@b:7001".into()])
                .unwrap(),
            StoreKind::Redis(RedisTarget::Cluster(vec![
                "redis://a:7000".into(),
                "redis://:pw@b:7001".into()
            ]))
        );
        let mixed = redis(|c| c.redis_cluster = vec!["a:1".into(), "rediss://b:2".into()]);
        assert!(mixed.unwrap_err().contains("mixes"));
        let bad = redis(|c| c.redis_cluster = vec!["redis://:secret@b".into()]).unwrap_err();
        assert!(bad.contains("no port") && !bad.contains("secret"), "{bad}");
    }

    #[test]
    fn sentinel_needs_its_master_name() {
        let e = redis(|c| c.redis_sentinels = vec!["s:26379".into()]).unwrap_err();
        assert!(
            e.contains("session.redis_sentinel_master") && e.contains("required"),
            "{e}"
        );
        let e = redis(|c| {
            c.redis_url = "redis://h:1".into();
            c.redis_sentinel_master = "m".into();
        })
        .unwrap_err();
        assert!(e.contains("only with session.redis_sentinels"), "{e}");
        let e = redis(|c| {
            c.redis_sentinels = vec!["s:1".into()];
            c.redis_sentinel_master = "my master".into();
        })
        .unwrap_err();
        assert!(e.contains("redis_sentinel_master"), "{e}");
        assert_eq!(
            redis(|c| {
                c.redis_sentinels = vec!["s1:26379".into(), "s2:26379".into()];
                c.redis_sentinel_master = "mymaster".into();
            })
            .unwrap(),
            StoreKind::Redis(RedisTarget::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                master: "mymaster".into()
            })
        );
    }

    #[test]
    fn lifetimes_are_bounded() {
        let cache = |f: &dyn Fn(&mut SessionConfig)| {
            let mut c = SessionConfig {
                cookie_secret: "x".repeat(32),
                ..SessionConfig::default()
            };
            f(&mut c);
            check(&c).map(|s| s.cache)
        };
        for key in ["ttl_secs", "idle_secs"] {
            for (v, ok) in [
                (0, false),
                (1, true),
                (MAX_LIFETIME_SECS, true),
                (MAX_LIFETIME_SECS + 1, false),
                (u64::MAX, false),
            ] {
                let r = cache(&|c| match key {
                    "ttl_secs" => c.ttl_secs = v,
                    _ => c.idle_secs = v,
                });
                assert_eq!(r.is_ok(), ok, "{key} = {v}");
                if !ok {
                    assert!(r.unwrap_err().to_string().contains(key), "{key}");
                }
            }
        }
    }

    #[test]
    fn cache_ms_is_capped() {
        let cache = |f: &dyn Fn(&mut SessionConfig)| {
            let mut c = SessionConfig {
                cookie_secret: "x".repeat(32),
                store: "redis".into(),
                redis_url: "redis://h:1".into(),
                ..SessionConfig::default()
            };
            f(&mut c);
            check(&c).map(|s| s.cache)
        };
        assert_eq!(cache(&|_| {}).unwrap(), std::time::Duration::from_secs(5));
        assert_eq!(
            cache(&|c| c.cache_ms = 0).unwrap(),
            std::time::Duration::ZERO
        );
        // At most half the idle timeout: the idle clock restarts on cache misses.
        assert_eq!(
            cache(&|c| c.idle_secs = 4).unwrap(),
            std::time::Duration::from_secs(2)
        );
        assert!(cache(&|c| c.cache_ms = 60_001).is_err());
    }

    #[test]
    fn node_addresses() {
        assert_eq!(node_url("10.0.0.1:6379").unwrap(), "redis://10.0.0.1:6379");
        assert_eq!(
            node_url("redis-0.redis:7000").unwrap(),
            "redis://redis-0.redis:7000"
        );
        assert_eq!(node_url("[::1]:26379").unwrap(), "redis://[::1]:26379");
        assert_eq!(
            node_url("rediss://:pw@r.example:6380").unwrap(),
            "rediss://:pw@r.example:6380"
        );
        for bad in [
            "",
            "host",
            ":6379",
            "host:",
            "host:99999",
            "http://h:1",
            "redis://h",
            "redis://h:1/3",
            "h:1?x=1",
            "h 1:2",
        ] {
            assert!(node_url(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn node_url_never_panics_and_keeps_host_port(s in "\\PC{0,40}", port in 1u16..) {
            let _ = node_url(&s);
            let host = s.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect::<String>();
            if !host.is_empty() {
                let u = node_url(&format!("{host}:{port}")).unwrap();
                proptest::prop_assert_eq!(u, format!("redis://{host}:{port}"));
            }
        }
    }
}
