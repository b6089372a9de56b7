//! Sealing secrets at rest with ChaCha20-Poly1305.
//!
//! A sealed value is text: `v1:` followed by the standard base64 of a random 12-byte nonce
//! and the ciphertext with its 16-byte tag. The version prefix leaves room for a later
//! algorithm or key rotation. Each value may be bound to a context (associated data, e.g.
//! which login field it is), so a sealed value copied into another row does not open.
//!
//! The key is 32 random bytes, kept as base64 text in a file created with mode 0600 or
//! given by the configuration. Losing it makes every sealed value unreadable: logins must
//! then be registered again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The prefix of values sealed with the current format.
const V1_PREFIX: &str = "v1:";
/// Length of a key, in bytes.
const KEY_LEN: usize = 32;
/// Length of a nonce, in bytes.
const NONCE_LEN: usize = 12;
/// Length of the authentication tag, in bytes.
const TAG_LEN: usize = 16;

/// Why a key could not be had or a value could not be opened. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key text is not base64 of exactly 32 bytes.
    #[error(
        "the seal key is not valid: expected base64 of 32 bytes ({0}); \
         generate one with `head -c 32 /dev/urandom | base64`"
    )]
    BadKey(&'static str),
    /// The key file could not be read or created.
    #[error("cannot use the seal key file {path}: {source} (check the path and its permissions)")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a valid key.
    #[error(
        "the seal key file {path} does not hold a valid key: {reason} (restore it from backup)"
    )]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value does not start with a known format version.
    #[error("the sealed value has an unknown format (expected a \"v1:\" prefix)")]
    UnknownFormat,
    /// The value has the right prefix but is not well formed.
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// Decryption failed: the key is not the one that sealed the value, or the value (or
    /// its context) was altered. The two cannot be told apart, by design.
    #[error("cannot unseal: wrong seal key, or the stored value was altered")]
    Decrypt,
    /// The opened value is not UTF-8 text.
    #[error("the unsealed value is not UTF-8 text")]
    NotText,
}

/// The key that seals secrets at rest: 32 bytes for ChaCha20-Poly1305.
///
/// Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SealKey {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealKey {
        SealKey {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        }
    }

    /// A fresh random key.
    pub fn generate() -> SealKey {
        SealKey::from_bytes(random_key_bytes())
    }

    /// A key from base64 text (standard alphabet, padded), surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<SealKey, SealError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| SealError::BadKey("not base64"))?;
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| SealError::BadKey("wrong length"))?;
        Ok(SealKey::from_bytes(bytes))
    }

    /// Reads the key from `path`, or creates that file with a new random key (mode 0600
    /// on Unix) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<SealKey, SealError> {
        let key_file_error = |source| SealError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::from_key_file_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_file_error(e)),
        }
        let bytes = random_key_bytes();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                let text = format!("{}\n", BASE64.encode(bytes));
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(key_file_error)?;
                tracing::info!(path = %path.display(), "created a new seal key file");
                Ok(SealKey::from_bytes(bytes))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(key_file_error)?;
                Self::from_key_file_text(path, &text)
            }
            Err(e) => Err(key_file_error(e)),
        }
    }

    fn from_key_file_text(path: &Path, text: &str) -> Result<SealKey, SealError> {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the seal key file is readable by others; run `chmod 600` on it"
                );
            }
        }
        SealKey::from_base64(text).map_err(|e| SealError::BadKeyFile {
            path: path.to_owned(),
            reason: match e {
                SealError::BadKey(reason) => reason,
                _ => "unreadable",
            },
        })
    }

    /// Seals `plaintext` with no context.
    pub fn seal(&self, plaintext: &str) -> String {
        self.seal_with(plaintext, b"")
    }

    /// Opens a value sealed by [`SealKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        self.open_with(sealed, b"")
    }

    /// Seals `plaintext`, bound to `context`: it will only open with the same context.
    pub fn seal_with(&self, plaintext: &str, context: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context,
        };
        // ChaCha20-Poly1305 refuses only messages of about 256 GiB, far beyond any text
        // this is given, so this cannot fail in practice.
        #[allow(clippy::expect_used)]
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("ChaCha20-Poly1305 message length limit exceeded");
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        format!("{V1_PREFIX}{}", BASE64.encode(raw))
    }

    /// Opens a value sealed by [`SealKey::seal_with`] with the same `context`.
    pub fn open_with(&self, sealed: &str, context: &[u8]) -> Result<String, SealError> {
        let encoded = sealed
            .strip_prefix(V1_PREFIX)
            .ok_or(SealError::UnknownFormat)?;
        let raw = BASE64
            .decode(encoded)
            .map_err(|_| SealError::Malformed("not base64"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed("too short"));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context,
        };
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SealError::NotText)
    }
}

fn random_key_bytes() -> [u8; KEY_LEN] {
    let mut bytes = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = SealKey::generate();
        let sealed = key.seal("hunter2 ünïcödé");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), "hunter2 ünïcödé");
        // A fresh nonce per value: the same plaintext never seals the same way twice.
        assert_ne!(key.seal("same"), key.seal("same"));
        assert_eq!(key.open(&key.seal("")).unwrap(), "");
    }

    #[test]
    fn context_is_bound() {
        let key = SealKey::generate();
        let sealed = key.seal_with("secret", b"irc/alice@example.org/password");
        assert_eq!(
            key.open_with(&sealed, b"irc/alice@example.org/password")
                .unwrap(),
            "secret"
        );
        let err = key
            .open_with(&sealed, b"irc/mallory@example.org/password")
            .unwrap_err();
        assert!(matches!(err, SealError::Decrypt));
    }

    #[test]
    fn wrong_key_is_a_typed_error() {
        let sealed = SealKey::generate().seal("secret");
        let err = SealKey::generate().open(&sealed).unwrap_err();
        assert!(matches!(err, SealError::Decrypt));
        assert_eq!(
            err.to_string(),
            "cannot unseal: wrong seal key, or the stored value was altered"
        );
    }

    #[test]
    fn tampered_text_is_a_typed_error() {
        let key = SealKey::generate();
        let sealed = key.seal("secret");

        // Flip one bit of the ciphertext.
        let mut raw = BASE64.decode(&sealed[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let flipped = format!("v1:{}", BASE64.encode(raw));
        assert!(matches!(key.open(&flipped), Err(SealError::Decrypt)));

        assert!(matches!(key.open("v2:AAAA"), Err(SealError::UnknownFormat)));
        assert!(matches!(key.open("secret"), Err(SealError::UnknownFormat)));
        assert!(matches!(
            key.open("v1:!!!not base64"),
            Err(SealError::Malformed("not base64"))
        ));
        assert!(matches!(
            key.open("v1:AAAA"),
            Err(SealError::Malformed("too short"))
        ));
    }

    #[test]
    fn key_from_base64() {
        let text = BASE64.encode([7u8; 32]);
        let key = SealKey::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(key.open(&key.seal("x")).unwrap(), "x");
        assert!(matches!(
            SealKey::from_base64("not base64!"),
            Err(SealError::BadKey("not base64"))
        ));
        assert!(matches!(
            SealKey::from_base64(&BASE64.encode([7u8; 16])),
            Err(SealError::BadKey("wrong length"))
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = SealKey::from_bytes([42u8; 32]);
        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
    }

    #[test]
    fn key_file_created_private_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("estuary.key");
        let key = SealKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SealKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&key.seal("kept")).unwrap(), "kept");
    }

    #[test]
    fn bad_key_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("estuary.key");
        std::fs::write(&path, "short").unwrap();
        let err = SealKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SealError::BadKeyFile { .. }));
        // Unreadable path (a directory).
        let err = SealKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, SealError::KeyFile { .. }));
    }
}
