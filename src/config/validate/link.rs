//! `[link]`: account linking. Off while `url` is empty; with a `url`, the `secret` that signs
//! the calls and verifies the completions is required and long enough to be a key.

use std::time::Duration;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::LinkConfig;
use crate::config::settings::{LinkSettings, Secret};

/// Shortest `link.secret` accepted (bytes): an HMAC-SHA256 key with 256 bits in it.
pub(crate) const MIN_SECRET: usize = 32;
/// Longest `link.timeout_ms`: a login waits for the app at most this long.
const MAX_TIMEOUT_MS: u64 = 60_000;

pub(super) fn check(l: &LinkConfig) -> Result<Option<LinkSettings>, ConfigError> {
    let url = l.url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let parsed = url::Url::parse(url).map_err(|e| {
        invalid(
            "link.url",
            format!(
                "'{url}' is not an absolute URL ({e}); e.g. http://127.0.0.1:8080/auth/wechat-link"
            ),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid(
            "link.url",
            format!("'{url}' must be an http:// or https:// URL with a host"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "link.url",
            "must not carry credentials; the calls are signed with link.secret",
        ));
    }
    if l.secret.is_empty() {
        return Err(invalid(
            "link.secret",
            "required when link.url is set (it signs the calls to the app and verifies its completions)",
        ));
    }
    if l.secret.starts_with("replace-") {
        return Err(invalid(
            "link.secret",
            "still holds the example file's placeholder; set a random secret",
        ));
    }
    if l.secret.len() < MIN_SECRET {
        return Err(invalid(
            "link.secret",
            format!("must be at least {MIN_SECRET} bytes (e.g. `openssl rand -hex 32`)"),
        ));
    }
    if l.timeout_ms == 0 || l.timeout_ms > MAX_TIMEOUT_MS {
        return Err(invalid(
            "link.timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    Ok(Some(LinkSettings {
        url: parsed,
        secret: Secret::new(l.secret.as_bytes()),
        timeout: Duration::from_millis(l.timeout_ms),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, secret: &str, timeout_ms: u64) -> LinkConfig {
        LinkConfig {
            url: url.into(),
            secret: secret.into(),
            secret_file: None,
            timeout_ms,
        }
    }

    const S: &str = "0123456789abcdef0123456789abcdef";

    fn err(c: LinkConfig) -> String {
        check(&c).unwrap_err().to_string()
    }

    #[test]
    fn off_while_url_is_empty() {
        assert!(check(&cfg("", "", 3000)).unwrap().is_none());
        assert!(check(&LinkConfig::default()).unwrap().is_none());
    }

    #[test]
    fn checked_when_on() {
        let l = check(&cfg("http://127.0.0.1:8080/link", S, 3000))
            .unwrap()
            .unwrap();
        assert_eq!(l.url.as_str(), "http://127.0.0.1:8080/link");
        assert_eq!(l.timeout, Duration::from_secs(3));
        assert!(err(cfg("/link", S, 3000)).starts_with("link.url:"));
        assert!(err(cfg("ftp://x/link", S, 3000)).starts_with("link.url:"));
        assert!(err(cfg("http://u:p@x/link", S, 3000)).starts_with("link.url:"));
        assert!(err(cfg("http://x/link", "", 3000)).starts_with("link.secret: required"));
        assert!(err(cfg("http://x/link", "short", 3000)).contains("at least 32 bytes"));
        assert!(err(cfg("http://x/link", &format!("replace-{S}"), 3000)).contains("placeholder"));
        assert!(err(cfg("http://x/link", S, 0)).starts_with("link.timeout_ms:"));
        assert!(err(cfg("http://x/link", S, 60_001)).starts_with("link.timeout_ms:"));
    }
}
