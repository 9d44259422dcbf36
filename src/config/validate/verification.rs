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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_verification_name("MP_verify_abc123.txt"));
        assert!(is_verification_name("WW_verify_Xy9.txt"));
        assert!(is_verification_name("a-b_c_verify_x_verify_9.txt"));
        assert!(!is_verification_name("MP_verify_.txt"));
        assert!(!is_verification_name("_verify_abc.txt"));
        assert!(!is_verification_name("MP_verify_ab-c.txt"));
        assert!(!is_verification_name("MP_verify_abc.txt.bak"));
        assert!(!is_verification_name("MP_verify_abc.TXT"));
        assert!(!is_verification_name("../MP_verify_abc.txt"));
        assert!(!is_verification_name("MP_verify_a%2e.txt"));
    }
}
