//! `server.tls_cert` + `server.tls_key`: the PEM certificate chain and private key, read and
//! checked at load (so `wxgate check` names the key at fault). Data only: the server builds
//! its rustls configuration from it (`server::tls`).

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{invalid, ConfigError};

/// A certificate chain and its key, read and parsed at config load.
pub struct TlsFiles {
    pub cert_path: PathBuf,
    /// Where the key was read from (the server re-reads both files on reload).
    pub key_path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsFiles {
    fn clone(&self) -> Self {
        Self {
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// Why a TLS file cannot be read; a missing one says where certificates come from (a copied
/// example config points at `certs/server.crt`, which nobody has yet).
fn read_error(path: &Path, e: &std::io::Error) -> String {
    let mut m = format!("cannot read {}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::NotFound {
        m.push_str(
            "; point server.tls_cert / server.tls_key at your certificate chain and key \
             (certbot: /etc/letsencrypt/live/DOMAIN/fullchain.pem and privkey.pem), or remove both \
             to serve plain HTTP behind a TLS-terminating proxy; `wxgate dev` writes a \
             self-signed pair into certs/ for a local trial",
        );
    }
    m
}

impl TlsFiles {
    /// Read both files; errors name `server.tls_cert` or `server.tls_key`.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsFiles, ConfigError> {
        let cert_pem =
            std::fs::read(cert).map_err(|e| invalid("server.tls_cert", read_error(cert, &e)))?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                invalid(
                    "server.tls_cert",
                    format!("{} is not PEM: {e}", cert.display()),
                )
            })?;
        if certs.is_empty() {
            return Err(invalid(
                "server.tls_cert",
                format!("{} holds no CERTIFICATE block", cert.display()),
            ));
        }
        let key_pem =
            std::fs::read(key).map_err(|e| invalid("server.tls_key", read_error(key, &e)))?;
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| {
                invalid(
                    "server.tls_key",
                    format!("{} is not PEM: {e}", key.display()),
                )
            })?
            .ok_or_else(|| {
                invalid(
                    "server.tls_key",
                    format!("{} holds no private key", key.display()),
                )
            })?;
        let files = TlsFiles {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            certs,
            key: key_der,
        };
        // Fail at load, not at the first handshake, when key and certificate do not fit: the
        // same check rustls makes when the server installs them.
        files.check_pair().map_err(|e| {
            invalid(
                "server.tls_key",
                format!("certificate and key do not match or are unusable: {e}"),
            )
        })?;
        Ok(files)
    }

    fn check_pair(&self) -> Result<(), rustls::Error> {
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(self.certs.clone(), self.key.clone_key(), &provider)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cert_names_key() {
        let e = TlsFiles::load(Path::new("/nonexistent.crt"), Path::new("/nonexistent.key"))
            .unwrap_err();
        let e = e.to_string();
        assert!(e.contains("server.tls_cert"), "{e}");
        // Says where a certificate comes from, not only that it is missing.
        assert!(
            e.contains("fullchain.pem") && e.contains("wxgate dev"),
            "{e}"
        );
    }

    #[test]
    fn other_read_errors_have_no_hint() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let m = read_error(Path::new("/k.pem"), &e);
        assert!(m.starts_with("cannot read /k.pem: "), "{m}");
        assert!(!m.contains("certbot"), "{m}");
    }
}
