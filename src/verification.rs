//! Domain-verification files (`MP_verify_*.txt` and the like), served from
//! `verification.files` or `verification.dir` at `/NAME`, and nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

/// `^[A-Za-z0-9_-]+_verify_[A-Za-z0-9]+\.txt$`
pub fn is_verification_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".txt") else {
        return false;
    };
    // The tail after the last `_verify_` must be alphanumeric, so the split is the last one.
    let Some(at) = stem.rfind("_verify_") else {
        return false;
    };
    let (head, tail) = (&stem[..at], &stem[at + "_verify_".len()..]);
    !head.is_empty()
        && !tail.is_empty()
        && head
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && tail.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The file name a request path asks for, if it could be a verification file:
/// exactly `/NAME` with NAME matching the pattern (no encoding, no further segments).
pub fn requested_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    // Cheap rejections first: this runs on every request.
    if !name.ends_with(".txt") || name.contains('/') {
        return None;
    }
    is_verification_name(name).then_some(name)
}

pub struct Verification {
    inline: BTreeMap<String, Bytes>,
    dir: Option<PathBuf>,
}

impl Verification {
    pub fn new(cfg: &crate::config::VerificationConfig) -> Self {
        Self {
            inline: cfg
                .files
                .iter()
                .map(|(k, v)| (k.clone(), Bytes::from(v.clone().into_bytes())))
                .collect(),
            dir: (!cfg.dir.is_empty()).then(|| PathBuf::from(&cfg.dir)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.inline.is_empty() || self.dir.is_some()
    }

    /// The exact bytes of a verification file, if `name` (already validated) is one.
    pub async fn lookup(&self, name: &str) -> Option<Bytes> {
        debug_assert!(is_verification_name(name));
        if let Some(b) = self.inline.get(name) {
            return Some(b.clone());
        }
        let path = self.dir.as_ref()?.join(name);
        // Regular files only: no symlinks out of the directory, no devices.
        let md = tokio::fs::symlink_metadata(&path).await.ok()?;
        if !md.is_file() || md.len() > 64 * 1024 {
            return None;
        }
        tokio::fs::read(&path).await.ok().map(Bytes::from)
    }
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

    #[test]
    fn paths() {
        assert_eq!(
            requested_name("/MP_verify_abc.txt"),
            Some("MP_verify_abc.txt")
        );
        assert_eq!(requested_name("/x/MP_verify_abc.txt"), None);
        assert_eq!(requested_name("/%2e%2e/MP_verify_abc.txt"), None);
        assert_eq!(requested_name("/..%2fMP_verify_abc.txt"), None);
        assert_eq!(requested_name("MP_verify_abc.txt"), None);
        assert_eq!(requested_name("/secret.txt"), None);
    }
}
