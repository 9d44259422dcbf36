//! Configuration: TOML file + `WXGATE_SECTION__KEY` environment overrides (figment),
//! `<key>_file` for every secret, unknown keys rejected, validation at load with
//! messages that name the key.
//!
//! - `file.rs`: the serde structs that mirror the file, their defaults, redaction.
//! - `load.rs`: file + environment + `<key>_file` secrets, then validation.
//! - `error.rs`: [`ConfigError`], naming the key at fault.
//! - `validate/`: one `check` per section, turning the file into typed settings.
//! - `settings.rs`: [`Settings`], what the gateway runs on (durations, enums, sets, secrets).
//! - `tls_files.rs`: the certificate chain and key, read and checked at load.
//! - `reload.rs`: what a reloaded configuration changes, and which keys need a restart.
//!
//! Config names nothing above it: no server, pipeline, endpoint, proxy, session or provider.

mod error;
mod file;
mod load;
mod reload;
mod settings;
mod tls_files;
mod validate;

pub use error::ConfigError;
pub use file::LinkConfig;
pub use file::{
    AccessConfig, AppConfig, Config, HeadersConfig, LogConfig, ServerConfig, SessionConfig,
    UpstreamConfig, VerificationConfig, WechatConfig, WecomConfig,
};
pub use load::{default_path, not_found_hint};
pub(crate) use reload::Reload;
pub use settings::LinkSettings;
pub use settings::{
    AccessSettings, HeadersSettings, LogFormat, LogSettings, OfficialScope, PublicUrl, RedisTarget,
    Secret, ServerSettings, SessionSettings, Settings, StoreKind, UpstreamSettings,
    VerificationSettings, WechatApp, WechatSettings, WecomSettings,
};
pub use tls_files::TlsFiles;

#[cfg(test)]
pub(crate) mod test_toml;
#[cfg(test)]
mod tests;
