//! Loading and validation, through the public entry points.

use std::time::Duration;

use super::file::redact_url_password;
use super::Config;

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
    assert_eq!(s.upstream.authority.as_str(), "127.0.0.1:8080");
}

#[test]
fn redaction_hides_secrets() {
    let s = Config::from_toml(BASE).unwrap();
    let out = s.redacted_toml();
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
    assert_eq!(s.server.idle_timeout, Duration::from_millis(60_000));
    assert_eq!(s.server.body_timeout, Duration::from_millis(30_000));
    assert_eq!(s.server.max_connections, 20_000);
    assert_eq!(s.server.max_connections_per_ip, 512);
    assert_eq!(s.upstream.max_connections, 1024);
    assert_eq!(s.access.login_rate_per_minute, 300);
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
