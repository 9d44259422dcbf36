//! `[verification]`: the directory exists, every inline file has a verification-file name.

use std::path::PathBuf;

use crate::config::error::{invalid, ConfigError};
use crate::config::file::VerificationConfig;
use crate::config::settings::VerificationSettings;

use crate::common::paths::is_verification_name;

pub(super) fn check(v: &VerificationConfig) -> Result<VerificationSettings, ConfigError> {
    if !v.dir.is_empty() {
        let md = std::fs::metadata(&v.dir)
            .map_err(|e| invalid("verification.dir", format!("cannot read {}: {e}", v.dir)))?;
        if !md.is_dir() {
            return Err(invalid(
                "verification.dir",
                format!("{} is not a directory", v.dir),
            ));
        }
    }
    for name in v.files.keys() {
        if !is_verification_name(name) {
            return Err(invalid(
                format!("verification.files.\"{name}\""),
                "name must match ^[A-Za-z0-9_-]+_verify_[A-Za-z0-9]+\\.txt$",
            ));
        }
    }
    Ok(VerificationSettings {
        dir: (!v.dir.is_empty()).then(|| PathBuf::from(&v.dir)),
        files: v.files.clone(),
    })
}
