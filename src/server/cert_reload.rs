//! Certificate reload without a restart: a rustls certificate resolver whose certificate is
//! swapped atomically. Each handshake takes the certificate current at that moment, so new
//! connections get a reloaded certificate and open connections keep the one they started with.
//!
//! Reloads come from [`CertReloader::reload`] (SIGHUP, through `Running::reload_tls`) and from
//! [`CertReloader::watch`], which polls the two files' mtime and length (certbot renewals). A new
//! pair is read and checked by `config::TlsFiles::load` (readable, PEM, key matching the
//! certificate); an invalid one is one ERROR line and the old certificate stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::shutdown::stopped;
use crate::config::TlsFiles;

/// How often the certificate files are checked for changes, unless the server is told otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// What the poll compares: each file's modification time and length (`None`: cannot stat).
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The server's certificate, swappable while connections are open.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp when they were last read (by a reload or the poll).
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(files.certs.clone(), files.key.clone_key(), &provider)
        .map(Arc::new)
        .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl CertReloader {
    /// Start with the certificate config already loaded and checked.
    pub fn new(files: &TlsFiles) -> Result<Arc<Self>, String> {
        let reloader = Self {
            cert_path: files.cert_path.clone(),
            key_path: files.key_path.clone(),
            current: RwLock::new(certified_key(files)?),
            seen: Mutex::new([None, None]),
        };
        // What was loaded at start; a change from here on is a renewal.
        *reloader.seen.lock().unwrap_or_else(|p| p.into_inner()) = reloader.stamp();
        Ok(Arc::new(reloader))
    }

    fn stamp(&self) -> Stamp {
        [file_stamp(&self.cert_path), file_stamp(&self.key_path)]
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-read both files; on success new connections get the new certificate. On failure the
    /// old certificate stays, one ERROR line names the file and the reason, and it is returned.
    pub fn reload(&self) -> Result<(), String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped before reading: a write racing the read shows up as a change at the next poll.
        *seen = self.stamp();
        self.load()
    }

    fn load(&self) -> Result<(), String> {
        let result = TlsFiles::load(&self.cert_path, &self.key_path)
            .map_err(|e| e.to_string())
            .and_then(|files| certified_key(&files));
        match result {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
                tracing::info!(
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "TLS certificate reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "TLS reload failed; keeping the current certificate"
                );
                Err(e)
            }
        }
    }

    /// Reload when either file's mtime or length changed since it was last read. An invalid
    /// pair is reported once per change, not at every poll.
    pub fn reload_if_changed(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.stamp();
        if now == *seen {
            return;
        }
        *seen = now;
        let _ = self.load();
    }

    /// Poll the files every `interval` until shutdown is asked for.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            // Reading files blocks; keep it off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn copy(from: &(PathBuf, PathBuf), to: &(PathBuf, PathBuf)) {
        std::fs::copy(&from.0, &to.0).unwrap();
        std::fs::copy(&from.1, &to.1).unwrap();
    }

    #[test]
    fn reload_swaps_and_invalid_keeps_old() {
        let dir = tempfile_dir("swap");
        let live = pair(&dir, "a.test");
        let b = pair(&dir, "b.test");
        let r = CertReloader::new(&TlsFiles::load(&live.0, &live.1).unwrap()).unwrap();
        let a_cert = r.current().cert[0].clone();
        copy(&b, &live);
        r.reload().unwrap();
        let b_cert = r.current().cert[0].clone();
        assert_ne!(a_cert, b_cert);
        std::fs::write(&live.1, "not a key").unwrap();
        let e = r.reload().unwrap_err();
        assert!(e.contains("server.tls_key"), "{e}");
        assert_eq!(r.current().cert[0], b_cert);
        // The key of another certificate: parses, does not match.
        let c = pair(&dir, "c.test");
        std::fs::copy(&c.1, &live.1).unwrap();
        assert!(r.reload().unwrap_err().contains("do not match"));
        assert_eq!(r.current().cert[0], b_cert);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn poll_reloads_only_on_change() {
        let dir = tempfile_dir("poll");
        let live = pair(&dir, "a.test");
        let b = pair(&dir, "bb.test");
        let r = CertReloader::new(&TlsFiles::load(&live.0, &live.1).unwrap()).unwrap();
        let a_cert = r.current().cert[0].clone();
        r.reload_if_changed();
        assert_eq!(r.current().cert[0], a_cert);
        copy(&b, &live);
        r.reload_if_changed();
        assert_ne!(r.current().cert[0], a_cert);
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wxgate-reload-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
