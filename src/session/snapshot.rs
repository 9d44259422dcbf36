//! The memory store's snapshot (`session.snapshot_path`): every live session written on graceful
//! shutdown and read back at start, so a restart logs nobody out.
//!
//! The file: `MAGIC` (7 bytes) + version (1) + nonce (12) + AEAD ciphertext and tag
//! (AES-256-GCM; the 8 header bytes are the associated data). The plaintext is a run of
//! entries: session id (16 bytes), record length (u32 LE), record bytes. The key is
//! HMAC-SHA256(cookie_secret, [`KEY_LABEL`]): a file written under another secret does not open.
//! Written to a temporary file (mode 0600) in the same directory, then renamed over the path.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::{Session, SessionId};

const MAGIC: &[u8; 7] = b"WXGSNAP";
const VERSION: u8 = 1;
const HEADER: usize = MAGIC.len() + 1;
const TAG: usize = 16;
/// The derivation label: the key is HMAC-SHA256(cookie_secret, this).
pub const KEY_LABEL: &[u8] = b"wxgate/session-snapshot/v1";

/// The snapshot's 32-byte key. `Debug` never shows it.
#[derive(Clone)]
pub struct SnapshotKey([u8; 32]);

impl SnapshotKey {
    /// HMAC-SHA256(`cookie_secret`, [`KEY_LABEL`]).
    pub fn derive(cookie_secret: &[u8]) -> Self {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, cookie_secret);
        let tag = ring::hmac::sign(&k, KEY_LABEL);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SnapshotKey(out)
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always accepted by AES-256-GCM.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotKey(..)")
    }
}

/// Where the memory store keeps its snapshot and the key it is sealed with.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub key: SnapshotKey,
}

/// Why a snapshot was not read. Names no session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("too short to be a snapshot (truncated?)")]
    TooShort,
    #[error("not a wxgate session snapshot")]
    NotASnapshot,
    #[error("snapshot format version {0} is not read by this version (expected {VERSION})")]
    Version(u8),
    #[error("does not decrypt: written under another session.cookie_secret, or corrupt")]
    Decrypt,
    #[error("malformed contents")]
    Malformed,
}

/// Seal `entries` into a snapshot.
pub fn encode<'a>(
    entries: impl IntoIterator<Item = (&'a SessionId, &'a Session)>,
    key: &SnapshotKey,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system random source works");
    out.extend_from_slice(&nonce);
    let body = out.len();
    for (id, s) in entries {
        let rec = s.as_bytes();
        let Ok(len) = u32::try_from(rec.len()) else {
            continue;
        };
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(rec);
    }
    let (head, plain) = out.split_at_mut(body);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head[..HEADER]),
            plain,
        )
        .expect("a snapshot under 64 GiB");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Open a snapshot: every entry in it (expired ones too: the caller skips them), or why not.
pub fn decode(bytes: &[u8], key: &SnapshotKey) -> Result<Vec<(SessionId, Session)>, SnapshotError> {
    if bytes.len() < HEADER {
        return Err(if MAGIC.starts_with(bytes) {
            SnapshotError::TooShort
        } else {
            SnapshotError::NotASnapshot
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(SnapshotError::Version(bytes[MAGIC.len()]));
    }
    if bytes.len() < HEADER + NONCE_LEN + TAG {
        return Err(SnapshotError::TooShort);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[HEADER..HEADER + NONCE_LEN]);
    let mut sealed = bytes[HEADER + NONCE_LEN..].to_vec();
    let plain = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&bytes[..HEADER]),
            &mut sealed,
        )
        .map_err(|_| SnapshotError::Decrypt)?;
    let plain = Bytes::copy_from_slice(plain);
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < plain.len() {
        if plain.len() - at < 20 {
            return Err(SnapshotError::Malformed);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&plain[at..at + 16]);
        let len = u32::from_le_bytes(plain[at + 16..at + 20].try_into().unwrap_or_default());
        at += 20;
        let len = usize::try_from(len).map_err(|_| SnapshotError::Malformed)?;
        if plain.len() - at < len {
            return Err(SnapshotError::Malformed);
        }
        let s = Session::from_bytes(plain.slice(at..at + len)).ok_or(SnapshotError::Malformed)?;
        at += len;
        out.push((SessionId(id), s));
    }
    Ok(out)
}

/// Write `bytes` to `path` atomically: a temporary file (mode 0600) in the same directory, synced,
/// then renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut suffix = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut suffix);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Read the snapshot at `path` and remove it (a snapshot is used once: kept, a crash-restart
/// would bring back sessions logged out since). `Ok(None)`: there is none.
pub fn take_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => {
            std::fs::remove_file(path)?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{NewSession, Origin};

    fn session(openid: &str, expires_at: u64) -> Session {
        Session::new(&NewSession {
            openid,
            unionid: Some("u-1"),
            appid: "wxappid",
            origin: Origin {
                provider: 0,
                kind: 1,
            },
            nickname: "昵称",
            avatar: "https://a.example/x.png",
            expires_at,
        })
    }

    fn key(s: &str) -> SnapshotKey {
        SnapshotKey::derive(s.as_bytes())
    }

    #[test]
    fn round_trip_and_no_clear_text() {
        let k = key("0123456789abcdef0123456789abcdef");
        let entries: Vec<(SessionId, Session)> = (0..50)
            .map(|i| {
                (
                    SessionId::random(),
                    session(&format!("openid-{i}"), 2_000_000_000),
                )
            })
            .collect();
        let bytes = encode(entries.iter().map(|(i, s)| (i, s)), &k);
        let back = decode(&bytes, &k).unwrap();
        assert_eq!(back.len(), 50);
        for ((a, sa), (b, sb)) in entries.iter().zip(&back) {
            assert_eq!(a, b);
            assert_eq!(sa.as_bytes(), sb.as_bytes());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("openid-1"));
        assert!(!bytes.windows(16).any(|w| w == entries[0].0 .0));
        // Empty is fine too.
        assert!(decode(&encode([], &k), &k).unwrap().is_empty());
    }

    #[test]
    fn foreign_truncated_and_old_files_are_refused() {
        let k = key("0123456789abcdef0123456789abcdef");
        let id = SessionId::random();
        let s = session("o", 2_000_000_000);
        let bytes = encode([(&id, &s)], &k);
        let other = key("another-secret-another-secret-xx");
        assert_eq!(decode(&bytes, &other).unwrap_err(), SnapshotError::Decrypt);
        for cut in [0, 3, HEADER, HEADER + 5, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &k).is_err(), "cut at {cut}");
        }
        let mut old = bytes.clone();
        old[MAGIC.len()] = 0;
        assert_eq!(decode(&old, &k).unwrap_err(), SnapshotError::Version(0));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&flipped, &k).unwrap_err(), SnapshotError::Decrypt);
        assert_eq!(
            decode(b"{\"json\": true}", &k).unwrap_err(),
            SnapshotError::NotASnapshot
        );
        assert!(!format!("{k:?}").contains(&hex::encode(k.0)));
    }

    #[test]
    fn file_is_private_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.snapshot");
        write_file(&p, b"abc").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        write_file(&p, b"def").unwrap();
        assert_eq!(take_file(&p).unwrap().as_deref(), Some(&b"def"[..]));
        assert!(!p.exists());
        assert_eq!(take_file(&p).unwrap(), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let k = key("0123456789abcdef0123456789abcdef");
            let _ = decode(&bytes, &k);
            let mut framed = b"WXGSNAP\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed, &k);
        }

        #[test]
        fn round_trips(openids in proptest::collection::vec("[a-zA-Z0-9_-]{0,40}", 0..20), exp in 0u64..u32::MAX as u64) {
            let k = key("proptest-secret-proptest-secret-");
            let entries: Vec<(SessionId, Session)> =
                openids.iter().map(|o| (SessionId::random(), session(o, exp))).collect();
            let back = decode(&encode(entries.iter().map(|(i, s)| (i, s)), &k), &k).unwrap();
            proptest::prop_assert_eq!(back.len(), entries.len());
            for ((a, sa), (b, sb)) in entries.iter().zip(&back) {
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(sa.as_bytes(), sb.as_bytes());
            }
        }
    }
}
