//! A reload (SIGHUP): which keys a newly loaded configuration changes, which of those take
//! effect at once and which need a restart, and the settings the gateway goes on with — the new
//! ones, with every restart-only key kept at its running value.
//!
//! Keys are compared by name on the effective configuration (file + environment + defaults, as
//! `wxgate check` prints it); secrets, redacted there, are compared on their values. Only key
//! names ever leave this file, never values.

use std::collections::BTreeMap;

use super::settings::Settings;

/// Keys that need a restart: what the listener, the workers, the session store, the connection
/// limits and the log were built from at start. Every other key applies to new requests (and,
/// for connection settings, to new connections).
const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.prefix",
    "server.workers",
    "server.metrics_listen",
    "server.max_connections",
    "server.max_connections_per_ip",
    "server.tls_cert",
    "server.tls_key",
    "upstream.max_connections",
    "log.",
];

/// `[session]` keys that do apply on a reload (the rest of `[session]` is the store's).
const SESSION_RELOADABLE: &[&str] = &["session.cookie_name", "session.cookie_domain"];

/// Whether a change to `key` (a dotted file key) needs a restart.
pub fn needs_restart(key: &str) -> bool {
    if let Some(rest) = key.strip_prefix("session.") {
        return !SESSION_RELOADABLE
            .iter()
            .any(|k| k.strip_prefix("session.") == Some(rest));
    }
    RESTART_ONLY.iter().any(|k| {
        if let Some(section) = k.strip_suffix('.') {
            key.strip_prefix(section)
                .is_some_and(|r| r.is_empty() || r.starts_with('.'))
        } else {
            key == *k
        }
    })
}

/// What a newly loaded configuration does to the running one.
#[derive(Debug)]
pub struct Reload {
    /// The settings to run on from now: the new ones, restart-only keys kept as they run.
    pub settings: Settings,
    /// Keys whose change applies now (names only).
    pub applied: Vec<String>,
    /// Keys changed in the file that keep their running value until a restart (names only).
    pub restart: Vec<String>,
}

impl Reload {
    /// `new` against the running settings (`current`) and those the process started with
    /// (`start`: restart-only keys still have those values, whatever reloads came between).
    pub fn plan(start: &Settings, current: &Settings, new: Settings) -> Reload {
        let restart = changed_keys(start, &new)
            .into_iter()
            .filter(|k| needs_restart(k))
            .collect();
        let applied = changed_keys(current, &new)
            .into_iter()
            .filter(|k| !needs_restart(k))
            .collect();
        Reload {
            settings: keep_restart_only(current, new),
            applied,
            restart,
        }
    }
}

/// `new`, with what [`needs_restart`] names taken from `current`.
fn keep_restart_only(current: &Settings, mut new: Settings) -> Settings {
    new.listen = current.listen;
    new.metrics_listen = current.metrics_listen;
    new.tls = current.tls.clone().map(|old| match new.tls.take() {
        // The same files: their fresh contents (the certificate reload reads them too).
        Some(fresh) if fresh.cert_path == old.cert_path && fresh.key_path == old.key_path => fresh,
        _ => old,
    });
    let s = &mut new.server;
    s.prefix = current.server.prefix.clone();
    s.workers = current.server.workers;
    s.max_connections = current.server.max_connections;
    s.max_connections_per_ip = current.server.max_connections_per_ip;
    new.upstream.max_connections = current.upstream.max_connections;
    let mut session = current.session.clone();
    session.cookie_name = std::mem::take(&mut new.session.cookie_name);
    session.login_cookie = std::mem::take(&mut new.session.login_cookie);
    session.cookie_domain = std::mem::take(&mut new.session.cookie_domain);
    new.session = session;
    new.log = current.log.clone();
    new.callback_url = format!("{}{}/callback", new.public.origin, new.server.prefix);
    new
}

/// The dotted file keys whose effective value differs between `a` and `b`, sorted.
pub fn changed_keys(a: &Settings, b: &Settings) -> Vec<String> {
    let (fa, fb) = (flat(a), flat(b));
    let mut keys: Vec<String> = fa
        .iter()
        .filter(|(k, v)| fb.get(*k) != Some(*v))
        .chain(fb.iter().filter(|(k, _)| !fa.contains_key(*k)))
        .map(|(k, _)| k.clone())
        .collect();
    // Redacted in the effective file: compared on their values.
    keys.extend(
        secrets(a)
            .into_iter()
            .zip(secrets(b))
            .filter(|((_, x), (_, y))| x != y)
            .map(|((k, _), _)| k.to_string()),
    );
    keys.sort();
    keys.dedup();
    keys
}

/// Every secret by its key, in a fixed order.
fn secrets(s: &Settings) -> [(&'static str, Option<&[u8]>); 7] {
    let w = &s.wechat;
    fn app(a: &Option<super::WechatApp>) -> Option<&[u8]> {
        a.as_ref().map(|a| a.secret.as_bytes())
    }
    [
        (
            "session.cookie_secret",
            Some(s.session.cookie_secret.expose()),
        ),
        (
            "headers.sign_secret",
            s.headers.sign_secret.as_ref().map(|x| x.expose()),
        ),
        ("wechat.website.secret", app(&w.website)),
        ("wechat.official_account.secret", app(&w.official_account)),
        ("wechat.mobile_app.secret", app(&w.mobile_app)),
        ("wechat.mini_program.secret", app(&w.mini_program)),
        (
            "wecom.secret",
            s.wecom.as_ref().map(|x| x.secret.as_bytes()),
        ),
    ]
}

/// The effective (redacted) file as dotted key → value.
fn flat(s: &Settings) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(t) = toml::from_str::<toml::Table>(s.redacted_toml()) {
        flatten("", &t, &mut out);
    }
    out
}

fn flatten(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            v => {
                out.insert(key, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    use crate::config::test_toml::TEST_TOML as BASE;

    fn load(extra: &str, replace: &[(&str, &str)]) -> Settings {
        let mut t = format!("{BASE}{extra}");
        for (a, b) in replace {
            t = t.replace(a, b);
        }
        Config::from_toml(&t).unwrap()
    }

    #[test]
    fn restart_only_names() {
        for k in [
            "server.listen",
            "server.prefix",
            "server.workers",
            "session.store",
            "session.redis_url",
            "session.snapshot_path",
            "session.cookie_secret",
            "session.ttl_secs",
            "session.some_future_key",
            "log.format",
            "upstream.max_connections",
        ] {
            assert!(needs_restart(k), "{k}");
        }
        for k in [
            "server.public_url",
            "server.listener",
            "logx.a",
            "upstream.url",
            "access.allow_openids",
            "access.public_paths",
            "session.cookie_name",
            "session.cookie_domain",
            "wechat.website.appid",
            "verification.files.MP_verify_x.txt",
            "headers.sign_secret",
        ] {
            assert!(!needs_restart(k), "{k}");
        }
    }

    #[test]
    fn diff_names_keys_and_secrets_never_values() {
        let a = load("", &[]);
        assert!(changed_keys(&a, &load("", &[])).is_empty());
        let b = load(
            "[access]\nallow_openids = [\"o1\"]\n",
            &[
                ("secret-one", "secret-two"),
                ("127.0.0.1:3000", "127.0.0.1:3001"),
            ],
        );
        let keys = changed_keys(&a, &b);
        assert_eq!(
            keys,
            [
                "access.allow_openids",
                "upstream.url",
                "wechat.website.secret"
            ]
        );
        assert!(keys.iter().all(|k| !k.contains("secret-")));
    }

    #[test]
    fn a_changed_wecom_secret_is_named() {
        let wecom = |secret: &str| {
            load(
                &format!("[wecom]\ncorp_id = \"ww01\"\nagent_id = \"1\"\nsecret = \"{secret}\"\n"),
                &[],
            )
        };
        assert!(changed_keys(&wecom("w-one"), &wecom("w-one")).is_empty());
        assert_eq!(
            changed_keys(&wecom("w-one"), &wecom("w-two")),
            ["wecom.secret"]
        );
    }

    #[test]
    fn plan_keeps_restart_only_values() {
        let start = load("", &[]);
        let new = load(
            "[access]\npublic_paths = [\"/pub\"]\n[log]\nformat = \"json\"\n",
            &[
                ("127.0.0.1:8080", "127.0.0.1:8081"),
                ("test-cookie-secret", "other-cookie-secret"),
                ("[session]", "[session]\ncookie_name = \"_gw\""),
                ("[server]", "[server]\nprefix = \"/_gw\""),
            ],
        );
        let r = Reload::plan(&start, &start, new);
        assert_eq!(
            r.restart,
            [
                "log.format",
                "server.listen",
                "server.prefix",
                "session.cookie_secret"
            ]
        );
        assert_eq!(r.applied, ["access.public_paths", "session.cookie_name"]);
        let s = &r.settings;
        assert_eq!(s.listen, start.listen);
        assert_eq!(s.prefix(), "/_wxgate");
        assert_eq!(s.callback_url, "http://gw.example/_wxgate/callback");
        assert_eq!(s.cookie_secret(), start.cookie_secret());
        assert_eq!(s.log.format, start.log.format);
        assert_eq!(s.session.cookie_name, "_gw");
        assert_eq!(s.session.login_cookie, "_gw_login");
        assert_eq!(s.access.public_paths, ["/pub"]);
        // A second reload of the same file: the restart-only keys are still named, nothing
        // new applies.
        let again = load(
            "[access]\npublic_paths = [\"/pub\"]\n[log]\nformat = \"json\"\n",
            &[
                ("127.0.0.1:8080", "127.0.0.1:8081"),
                ("test-cookie-secret", "other-cookie-secret"),
                ("[session]", "[session]\ncookie_name = \"_gw\""),
                ("[server]", "[server]\nprefix = \"/_gw\""),
            ],
        );
        let r2 = Reload::plan(&start, s, again);
        assert_eq!(r2.restart.len(), 4);
        assert!(r2.applied.is_empty(), "{:?}", r2.applied);
    }
}
