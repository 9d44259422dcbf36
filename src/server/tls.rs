//! TLS: the rustls server config built from the loaded certificate files (ALPN h2 + http/1.1),
//! and the self-signed certificate `wxgate dev` generates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate files, loaded and checked by config (re-exported for the examples).
pub use crate::config::TlsFiles;

use super::cert_reload::CertReloader;

fn builder(
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth())
}

fn with_alpn(mut cfg: rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// rustls server config for `files` with the ring provider and ALPN `h2, http/1.1`; the
/// certificate is fixed (the examples use this; the server uses [`reloadable_config`]).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let cfg = builder()?
        .with_single_cert(files.certs.clone(), files.key.clone_key())
        .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))?;
    Ok(with_alpn(cfg))
}

/// Like [`server_config`], with the certificate taken from `certs` at each handshake, so a
/// reload reaches new connections without a restart.
pub fn reloadable_config(certs: Arc<CertReloader>) -> Result<Arc<rustls::ServerConfig>, String> {
    Ok(with_alpn(builder()?.with_cert_resolver(certs)))
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
        let cfg = server_config(&files).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
        std::fs::remove_dir_all(dir).ok();
    }
}
