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
    for (line, key) in [
        ("idle_timeout_ms = 0", "server.idle_timeout_ms"),
        (
            "header_read_timeout_ms = 0",
            "server.header_read_timeout_ms",
        ),
        ("metrics_listen = \"nope\"", "server.metrics_listen"),
    ] {
        let e = Config::from_toml(
            &BASE.replace("[wechat.website]", &format!("{line}\n[wechat.website]")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(key), "{line}: {e}");
    }
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

#[test]
fn settings_are_typed() {
    use super::{LogFormat, OfficialScope, StoreKind};
    let s = Config::from_toml(BASE).unwrap();
    assert_eq!(s.session.store, StoreKind::Memory);
    assert_eq!(s.log.format, LogFormat::Text);
    assert_eq!(s.wechat.official_scope, OfficialScope::SnsapiUserinfo);
    assert_eq!(s.session.login_cookie, "_wxgate_login");
    assert_eq!(s.session.ttl, Duration::from_secs(604_800));
    assert_eq!(s.upstream.timeout, Duration::from_secs(60));
    assert_eq!(s.server.shutdown_grace, Duration::from_secs(30));
    assert!(s.headers.sign_secret.is_none());
    assert!(s.verification.dir.is_none());

    let s = Config::from_toml(&format!(
        "{BASE}store = \"redis\"\nredis_url = \"redis://:pw@localhost/0\"\n\
         [wechat.official_account]\nappid = \"wx2\"\nsecret = \"s2\"\nscope = \"snsapi_base\"\n\
         [log]\nformat = \"json\"\n[headers]\nsign_secret = \"k\"\n\
         [access]\nallow_openids = [\"o1\", \"o1\"]\n"
    ))
    .unwrap();
    assert_eq!(
        s.session.store,
        StoreKind::Redis(super::RedisTarget::Url("redis://:pw@localhost/0".into()))
    );
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.wechat.official_scope.as_str(), "snsapi_base");
    assert_eq!(s.headers.sign_secret.as_ref().unwrap().expose(), b"k");
    assert_eq!(s.access.allow_openids.len(), 1);
}

#[test]
fn debug_output_hides_secrets() {
    let s = Config::from_toml(&format!(
        "{BASE}store = \"redis\"\nredis_url = \"redis://:hunter2@localhost/0\"\n"
    ))
    .unwrap();
    let d = format!("{s:?}");
    assert!(!d.contains("0123456789abcdef"), "{d}");
    assert!(!d.contains("hunter2"), "{d}");
    assert!(!d.contains("secret: \"s\""), "{d}");
}

#[test]
fn mismatched_key_names_tls_key() {
    let dir = std::env::temp_dir().join(format!("wxgate-cfg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
    let (cert, key) = (dir.join("a.crt"), dir.join("b.key"));
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    let e = super::TlsFiles::load(&cert, &key).unwrap_err().to_string();
    assert!(
        e.starts_with("server.tls_key: certificate and key do not match"),
        "{e}"
    );
    std::fs::write(&key, a.key_pair.serialize_pem()).unwrap();
    assert!(super::TlsFiles::load(&cert, &key).is_ok());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cluster_and_sentinel_passwords_redacted() {
    for extra in [
        "store = \"redis\"\nredis_cluster = [\"redis://:hunter2@a:7000\", \"redis://:hunter2@b:7001\"]\n",
        "store = \"redis\"\nredis_sentinels = [\"redis://:hunter2@s:26379\"]\nredis_sentinel_master = \"m\"\n",
    ] {
        let s = Config::from_toml(&format!("{BASE}{extra}")).unwrap();
        let out = s.redacted_toml();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains(":redacted@"), "{out}");
        assert!(!format!("{:?}", s.session).contains("hunter2"));
    }
}
