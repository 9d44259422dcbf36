//! Domain-verification files (`MP_verify_*.txt` and the like), served from
//! `verification.files` or `verification.dir` at `/NAME`, and nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::os::unix::fs::MetadataExt;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::common::paths::is_verification_name;

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
    pub fn new(cfg: &crate::config::VerificationSettings) -> Self {
        Self {
            inline: cfg
                .files
                .iter()
                .map(|(k, v)| (k.clone(), Bytes::from(v.clone().into_bytes())))
                .collect(),
            dir: cfg.dir.clone(),
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
        // Regular files only: no symlinks out of the directory, no devices, no FIFOs.
        let md = tokio::fs::symlink_metadata(&path).await.ok()?;
        if !md.is_file() || md.len() > MAX_FILE {
            return None;
        }
        // What is read must be the file just checked, not a symlink swapped in since: same
        // inode on the opened handle, and never more than the limit.
        let file = tokio::fs::File::open(&path).await.ok()?;
        let opened = file.metadata().await.ok()?;
        if !opened.is_file() || opened.dev() != md.dev() || opened.ino() != md.ino() {
            return None;
        }
        let mut buf = Vec::with_capacity(opened.len().min(MAX_FILE) as usize);
        file.take(MAX_FILE + 1).read_to_end(&mut buf).await.ok()?;
        (buf.len() as u64 <= MAX_FILE).then(|| Bytes::from(buf))
    }
}

/// The largest verification file served (WeChat's are a few dozen bytes).
const MAX_FILE: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(requested_name("/MP_verify_abc.txt;x"), None);
        assert_eq!(requested_name("/MP_verify_abc.txt%3b"), None);
        assert_eq!(requested_name("/;x/MP_verify_abc.txt"), None);
        assert_eq!(requested_name("/MP_verify_abc%2etxt"), None);
        assert_eq!(requested_name("/MP_verify_abc.txt/"), None);
        assert_eq!(requested_name("\\MP_verify_abc.txt"), None);
    }

    #[tokio::test]
    async fn directory_lookup_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("MP_verify_ok1.txt"), b"ok1").unwrap();
        std::fs::write(d.join("outside.txt"), b"TOPSECRET").unwrap();
        std::os::unix::fs::symlink(d.join("outside.txt"), d.join("MP_verify_link1.txt")).unwrap();
        std::fs::write(d.join("MP_verify_big1.txt"), vec![b'x'; 64 * 1024 + 1]).unwrap();
        std::fs::write(d.join("MP_verify_max1.txt"), vec![b'x'; 64 * 1024]).unwrap();
        std::fs::create_dir(d.join("MP_verify_dir1.txt")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(d.join("MP_verify_fifo1.txt"))
            .status()
            .is_ok_and(|s| s.success());
        let v = Verification::new(&crate::config::VerificationSettings {
            dir: Some(d.to_path_buf()),
            files: Default::default(),
        });
        assert_eq!(
            v.lookup("MP_verify_ok1.txt").await.as_deref(),
            Some(&b"ok1"[..])
        );
        assert_eq!(
            v.lookup("MP_verify_max1.txt").await.map(|b| b.len()),
            Some(64 * 1024)
        );
        for name in [
            "MP_verify_link1.txt",
            "MP_verify_big1.txt",
            "MP_verify_dir1.txt",
            "MP_verify_none1.txt",
        ] {
            assert!(v.lookup(name).await.is_none(), "{name}");
        }
        if fifo {
            // Refused before it is opened: opening a FIFO would block.
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                v.lookup("MP_verify_fifo1.txt"),
            )
            .await;
            assert!(matches!(r, Ok(None)), "a FIFO is refused at once");
        }
    }
}
