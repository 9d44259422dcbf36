//! Configuration: TOML file + `WXGATE_SECTION__KEY` environment overrides (figment),
//! `<key>_file` for every secret, unknown keys rejected, validation at load with
//! messages that name the key.
//!
//! - `file.rs`: the serde structs that mirror the file, their defaults, loading, redaction.
//! - `validate/`: one `check` per section, turning the file into typed settings.
//! - `settings.rs`: [`Settings`], what the gateway runs on (durations, enums, sets, secrets).
//! - `tls_files.rs`: the certificate chain and key, read and checked at load.
//!
//! Config names nothing above it: no server, pipeline, endpoint, proxy, session or provider.

mod file;
mod settings;
mod tls_files;
mod validate;

pub use file::{
    default_path, AccessConfig, AppConfig, Config, HeadersConfig, LogConfig, ServerConfig,
    SessionConfig, UpstreamConfig, VerificationConfig, WechatConfig,
};
pub use settings::{
    AccessSettings, HeadersSettings, LogFormat, LogSettings, OfficialScope, PublicUrl, Secret,
    ServerSettings, SessionSettings, Settings, StoreKind, UpstreamSettings, VerificationSettings,
    WechatApp, WechatSettings,
};
pub use tls_files::TlsFiles;
pub use validate::verification::is_verification_name;

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
