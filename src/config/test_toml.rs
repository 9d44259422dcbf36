//! A minimal valid configuration for unit tests elsewhere in the crate.

pub(crate) const TEST_TOML: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://gw.example"
[upstream]
url = "http://127.0.0.1:3000"
[wechat.website]
appid = "wx1000000000000001"
secret = "secret-one-000000000000000000000001"
[session]
cookie_secret = "test-cookie-secret-0123456789abcdef"
"#;
