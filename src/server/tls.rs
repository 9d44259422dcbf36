//! TLS: loading the PEM chain and key, the rustls server config (ALPN h2 + http/1.1),
//! and the self-signed certificate `wxgate dev` generates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// A certificate chain and its key, read and parsed at config load.
pub struct TlsFiles {
    pub cert_path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsFiles {
    fn clone(&self) -> Self {
        Self {
            cert_path: self.cert_path.clone(),
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_path", &self.cert_path)
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

fn bad(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}

impl TlsFiles {
    pub fn load(cert: &Path, key: &Path) -> Result<TlsFiles, ConfigError> {
        let cert_pem = std::fs::read(cert).map_err(|e| {
            bad(
                "server.tls_cert",
                format!("cannot read {}: {e}", cert.display()),
            )
        })?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                bad(
                    "server.tls_cert",
                    format!("{} is not PEM: {e}", cert.display()),
                )
            })?;
        if certs.is_empty() {
            return Err(bad(
                "server.tls_cert",
                format!("{} holds no CERTIFICATE block", cert.display()),
            ));
        }
        let key_pem = std::fs::read(key).map_err(|e| {
            bad(
                "server.tls_key",
                format!("cannot read {}: {e}", key.display()),
            )
        })?;
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| {
                bad(
                    "server.tls_key",
                    format!("{} is not PEM: {e}", key.display()),
                )
            })?
            .ok_or_else(|| {
                bad(
                    "server.tls_key",
                    format!("{} holds no private key", key.display()),
                )
            })?;
        let files = TlsFiles {
            cert_path: cert.to_path_buf(),
            certs,
            key: key_der,
        };
        // Fail at load, not at the first handshake, when key and certificate do not fit.
        files
            .server_config()
            .map_err(|e| bad("server.tls_key", e))?;
        Ok(files)
    }

    /// rustls server config with the ring provider and ALPN `h2, http/1.1`.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Write a self-signed certificate for `names` to `dir/server.crt` + `dir/server.key`
/// unless both already exist. Returns the two paths.
pub fn ensure_self_signed(dir: &Path, names: &[&str]) -> std::io::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)?;
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(std::io::Error::other)?;
    write_private(&key, ck.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert, ck.cert.pem())?;
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trip() {
        let dir = std::env::temp_dir().join(format!("wxgate-tls-{}", std::process::id()));
        let (c, k) = ensure_self_signed(&dir, &["localhost", "127.0.0.1"]).unwrap();
        let files = TlsFiles::load(&c, &k).unwrap();
        let cfg = files.server_config().unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_cert_names_key() {
        let e = TlsFiles::load(Path::new("/nonexistent.crt"), Path::new("/nonexistent.key"))
            .unwrap_err();
        assert!(e.to_string().contains("server.tls_cert"));
    }
}
