//! Per-login state: a sealed key-value store and a private data directory.
//!
//! This is the one place a bridge keeps state of its own across restarts (sync tokens,
//! IMAP UIDs, session tokens): the core stores each value sealed at rest, in the gateway's
//! database, keyed by bridge, user and key, and deletes them all when the user
//! unregisters. A network SDK that insists on a store of its own (matrix-sdk's) gets
//! [`LoginStore::data_dir`], a directory of mode 0700 under the gateway's data directory,
//! named by an opaque id (not the user's address), also removed at unregistration.
//!
//! The API crate knows no database: the core implements [`StoreBackend`]. Writes are
//! awaited: [`LoginStore::put`] returns once the value is committed, never before.

use async_trait::async_trait;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 200;
/// The largest value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// How long one operation may take before it fails with [`StoreError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is empty.
    #[error("a login state key may not be empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("a login state key may have at most {max} bytes, this one has {len}")]
    KeyTooLong {
        /// The key's length, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than [`MAX_VALUE_LEN`].
    #[error("a login state value may have at most {max} bytes, this one has {len}")]
    ValueTooLarge {
        /// The value's length, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The backend (the database) failed; the text says why, for logs.
    #[error("the login state store is unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer in time.
    #[error("the login state store did not answer within {0:?}")]
    Timeout(Duration),
    /// The data directory could not be created or made private.
    #[error("cannot prepare the login's data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl From<StoreError> for crate::BridgeError {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::EmptyKey | StoreError::KeyTooLong { .. } => crate::ErrorKind::BadRequest,
            StoreError::ValueTooLarge { .. } => crate::ErrorKind::ResourceConstraint,
            StoreError::Timeout(_) => crate::ErrorKind::ServiceUnavailable,
            StoreError::Unavailable(_) | StoreError::DataDir { .. } => crate::ErrorKind::Internal,
        };
        crate::BridgeError::new(kind, e.to_string())
    }
}

/// Where a [`LoginStore`] keeps its values: the core's database (sealed), or memory in
/// tests. Keys and values reach it already checked against the limits.
#[async_trait]
pub trait StoreBackend: Send + Sync + 'static {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing any; returns once it is committed.
    async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key` (nothing happens if it is absent); returns once it is committed.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// One login's state, handed to the bridge in
/// [`StoredLogin::store`](crate::StoredLogin::store). Cloning is cheap (clones share the
/// backend).
#[derive(Clone)]
pub struct LoginStore {
    backend: Arc<dyn StoreBackend>,
    dir: PathBuf,
    timeout: Duration,
    dir_ready: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for LoginStore {
    /// Shows the directory only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PartialEq for LoginStore {
    /// Two handles are equal when they are the same store (one backend, one directory).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend) && self.dir == other.dir
    }
}

impl LoginStore {
    /// A store on `backend`, its data directory at `dir` (created on first use of
    /// [`data_dir`](Self::data_dir)), each operation bounded by [`DEFAULT_TIMEOUT`].
    pub fn new(backend: Arc<dyn StoreBackend>, dir: PathBuf) -> Self {
        Self {
            backend,
            dir,
            timeout: DEFAULT_TIMEOUT,
            dir_ready: Arc::new(OnceLock::new()),
        }
    }

    /// The same store with another bound on each operation.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A store in memory, lost with the process, its data directory a fresh path under
    /// the system's temporary directory: for bridges' own tests.
    pub fn in_memory() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "estuary-login-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self::new(Arc::new(MemoryBackend::default()), dir)
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        self.bounded(self.backend.get(key)).await
    }

    /// Stores `value` under `key`, replacing any. Returns once the value is committed:
    /// after `Ok`, a crash or restart does not lose it.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(StoreError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        self.bounded(self.backend.put(key, value)).await
    }

    /// Removes `key`; removing an absent key is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.bounded(self.backend.delete(key)).await
    }

    /// The login's private data directory, created (with its parents) with mode 0700 on
    /// first call, and made 0700 if it was looser. The core removes it, with everything in
    /// it, when the user unregisters.
    pub fn data_dir(&self) -> Result<&Path, StoreError> {
        if self.dir_ready.get().is_none() {
            private_dir(&self.dir).map_err(|source| StoreError::DataDir {
                path: self.dir.clone(),
                source,
            })?;
            let _ = self.dir_ready.set(());
        }
        Ok(&self.dir)
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)))
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// Creates `dir` with mode 0700 (parents as the umask says), or tightens it to 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // The umask may have taken bits away, never added: set exactly 0700 either way.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A [`StoreBackend`] in memory.
#[derive(Default)]
struct MemoryBackend {
    values: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl StoreBackend for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.values().get(key).cloned())
    }
    async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.values().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.values().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let store = LoginStore::in_memory();
        assert_eq!(store.get("sync").await.unwrap(), None);
        store.put("sync", b"s72_1").await.unwrap();
        assert_eq!(
            store.get("sync").await.unwrap().as_deref(),
            Some(&b"s72_1"[..])
        );
        store.put("sync", &[0, 255, 10]).await.unwrap();
        assert_eq!(store.get("sync").await.unwrap(), Some(vec![0, 255, 10]));
        store.delete("sync").await.unwrap();
        store.delete("sync").await.unwrap();
        assert_eq!(store.get("sync").await.unwrap(), None);
    }

    #[tokio::test]
    async fn limits_give_typed_errors() {
        let store = LoginStore::in_memory();
        assert!(matches!(
            store.put("", b"x").await,
            Err(StoreError::EmptyKey)
        ));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(
            store.get(&long).await,
            Err(StoreError::KeyTooLong { len, max: MAX_KEY_LEN }) if len == MAX_KEY_LEN + 1
        ));
        store.put(&"k".repeat(MAX_KEY_LEN), b"x").await.unwrap();
        store.put("big", &vec![1; MAX_VALUE_LEN]).await.unwrap();
        let err = store
            .put("big", &vec![2; MAX_VALUE_LEN + 1])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err}");
        assert_eq!(
            crate::BridgeError::from(err).kind,
            crate::ErrorKind::ResourceConstraint
        );
        assert_eq!(
            store.get("big").await.unwrap().map(|v| v[0]),
            Some(1),
            "a refused put changes nothing"
        );
    }

    /// A backend that never answers (a database that hangs).
    struct Stuck;

    #[async_trait]
    impl StoreBackend for Stuck {
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            std::future::pending().await
        }
        async fn put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_backend_that_hangs_gives_a_timeout() {
        let store = LoginStore::new(Arc::new(Stuck), std::env::temp_dir().join("unused"))
            .with_timeout(Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert!(matches!(
            store.put("k", b"v").await,
            Err(StoreError::Timeout(_))
        ));
        assert!(matches!(store.get("k").await, Err(StoreError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn the_data_dir_is_created_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let store = LoginStore::in_memory();
        let dir = store.data_dir().unwrap().to_owned();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A fresh handle on the same directory tightens it again.
        let again = LoginStore::new(Arc::new(MemoryBackend::default()), dir.clone());
        again.data_dir().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
