//! Validation, one file per section of the configuration file, in the order errors are
//! reported: each section's `check` names the key at fault and returns that section parsed.

mod access;
mod link;
mod placeholders;
mod server;
mod session;
mod upstream;
pub(super) mod verification;
mod wechat;
mod wecom;

use std::sync::Arc;

use super::error::{invalid, ConfigError};
use super::file::Config;
use super::settings::{HeadersSettings, LogFormat, LogSettings, Secret, Settings};

/// The whole file, checked section by section, as [`Settings`].
pub(super) fn settings(c: Config) -> Result<Settings, ConfigError> {
    placeholders::check(&c)?;
    let server = server::check(&c.server)?;
    let upstream = upstream::check(&c.upstream)?;
    let wecom = wecom::check(&c.wecom)?;
    let wechat = wechat::check(&c.wechat, wecom.is_some())?;
    let session = session::check(&c.session)?;
    let access = access::check(&c.access)?;
    let verification = verification::check(&c.verification)?;
    let link = link::check(&c.link)?;
    let format = match c.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        _ => return Err(invalid("log.format", "must be \"text\" or \"json\"")),
    };
    let headers = HeadersSettings {
        sign_secret: (!c.headers.sign_secret.is_empty())
            .then(|| Secret::new(c.headers.sign_secret.as_bytes())),
    };
    let callback_url = format!(
        "{}{}/callback",
        server.public.origin, server.settings.prefix
    );
    Ok(Settings {
        listen: server.listen,
        public: server.public,
        callback_url,
        trusted_proxies: server.trusted_proxies,
        metrics_listen: server.metrics_listen,
        tls: server.tls,
        server: server.settings,
        upstream,
        wechat,
        session,
        access,
        wecom,
        headers,
        verification,
        log: LogSettings { format },
        link,
        redacted_toml: Arc::from(c.redacted().to_toml()),
    })
}
