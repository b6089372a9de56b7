//! Files from the networks that the gateway keeps on disk: spooled while they are read (so
//! that content of unknown length gets a size, and no file is ever whole in memory), and,
//! in own-server mode, served from the gateway's HTTP server under an unguessable path
//! until they expire (`[media]`, docs/admin.md "Media").
//!
//! Layout under `[media] dir`: `tmp/` holds files being read (emptied at start);
//! `files/<token>` holds a served file and `files/<token>.json` what it is ([`Meta`]). A
//! token is 128 random bits in hex. Expired files are deleted by [`MediaStore::sweep`], at
//! start and then periodically ([`MediaStore::run_sweeper`]); a request for one after its
//! time is answered 404 even before the sweep.

pub mod serve;
pub mod stall;

use crate::config::MediaSettings;
use estuary_bridge_api::attachment::ByteReader;
use serde::{Deserialize, Serialize};
use stall::{STALLED, StallGuard};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

/// The path under the HTTP server where files are served.
pub const ROUTE_PREFIX: &str = "/media";

/// Why a file could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Larger than `[media] max_bytes`.
    #[error("it is larger than the gateway takes ({max} bytes)")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The network paused longer than `stall_secs`.
    #[error("the network stopped sending it")]
    Stalled,
    /// The network's stream failed.
    #[error("reading it from the network failed")]
    Read(#[source] std::io::Error),
    /// The disk failed.
    #[error("the gateway could not store it")]
    Disk(#[source] std::io::Error),
}

/// A file read to the end into `tmp/`; deleted when dropped unless [`MediaStore::keep`]
/// moved it.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    len: u64,
}

impl Spooled {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Opens it for reading (a stream, to PUT it elsewhere).
    pub async fn open(&self) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(&self.path).await
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a served file is (its `.json` beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The file name the network gave.
    pub name: String,
    /// Its media type, where known.
    pub media_type: Option<String>,
    /// Its length in bytes.
    pub size: u64,
    /// When it stops being served (seconds since the Unix epoch).
    pub expires: u64,
}

/// The gateway's files on disk.
#[derive(Debug)]
pub struct MediaStore {
    tmp: PathBuf,
    files: PathBuf,
    max_bytes: u64,
    stall: Duration,
    expire: Duration,
    /// `[http] public_url`, without a trailing `/`, when the HTTP server runs: files are
    /// served only then.
    public_url: Option<String>,
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 128 random bits from the operating system's generator, as 32 hex digits.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` has the form of a token (and so is safe as a file name).
pub fn is_token(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `s` percent-encoded for one URL path segment (unreserved characters kept).
fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MediaStore {
    /// A store with `settings`, serving under `public_url` (`None`: the gateway's HTTP
    /// server does not run or has no public URL, so files are only spooled). Nothing is
    /// created on disk until a file comes; leftovers of an earlier run are removed by the
    /// first [`sweep`](Self::sweep).
    pub fn new(settings: &MediaSettings, public_url: Option<&str>) -> Arc<Self> {
        Arc::new(MediaStore {
            tmp: settings.dir.join("tmp"),
            files: settings.dir.join("files"),
            max_bytes: settings.max_bytes,
            stall: Duration::from_secs(settings.stall_secs.max(1)),
            expire: Duration::from_secs(settings.expire_secs.max(1)),
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        })
    }

    /// Whether files can be served by the gateway's own HTTP server.
    pub fn serves(&self) -> bool {
        self.public_url.is_some()
    }

    /// The largest file taken.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The longest pause allowed while reading a file.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// Reads `reader` to its end into a file in `tmp/`, failing as soon as it passes
    /// `max_bytes` or pauses longer than `stall_secs`; 64 KiB in memory at a time.
    pub async fn spool(&self, reader: ByteReader) -> Result<Spooled, MediaError> {
        create_private_dir(&self.tmp)
            .await
            .map_err(MediaError::Disk)?;
        let mut spooled = Spooled {
            path: self.tmp.join(new_token()),
            len: 0,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spooled.path)
            .await
            .map_err(MediaError::Disk)?;
        let mut reader = StallGuard::new(reader, self.stall);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == STALLED => return Err(MediaError::Stalled),
                Err(e) => return Err(MediaError::Read(e)),
            };
            spooled.len += n as u64;
            if spooled.len > self.max_bytes {
                return Err(MediaError::TooLarge {
                    max: self.max_bytes,
                });
            }
            file.write_all(&buf[..n]).await.map_err(MediaError::Disk)?;
        }
        file.flush().await.map_err(MediaError::Disk)?;
        Ok(spooled)
    }

    /// Moves a spooled file into `files/` under a new token and returns the URL it is
    /// served at until it expires. `None` when the store does not serve.
    pub async fn keep(
        &self,
        mut spooled: Spooled,
        name: &str,
        media_type: Option<&str>,
    ) -> Result<Option<String>, MediaError> {
        let Some(base) = &self.public_url else {
            return Ok(None);
        };
        create_private_dir(&self.files)
            .await
            .map_err(MediaError::Disk)?;
        let token = new_token();
        let meta = Meta {
            name: serve::safe_file_name(name),
            media_type: media_type.map(str::to_string),
            size: spooled.len,
            expires: now_secs() + self.expire.as_secs(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| MediaError::Disk(e.into()))?;
        let data = self.files.join(&token);
        tokio::fs::rename(&spooled.path, &data)
            .await
            .map_err(MediaError::Disk)?;
        spooled.path = PathBuf::new();
        // The description appears last, whole (written aside, then renamed): a file is
        // served only once it is complete.
        let aside = self.tmp.join(format!("{token}.json"));
        let written = async {
            tokio::fs::write(&aside, &json).await?;
            tokio::fs::rename(&aside, self.files.join(format!("{token}.json"))).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&data).await;
            return Err(MediaError::Disk(e));
        }
        Ok(Some(format!(
            "{base}{ROUTE_PREFIX}/{token}/{}",
            path_segment(&meta.name)
        )))
    }

    /// The description and path of the served file `token`, if it exists and has not
    /// expired (an expired one is deleted here).
    pub async fn lookup(&self, token: &str) -> Option<(Meta, PathBuf)> {
        if !is_token(token) {
            return None;
        }
        let json = tokio::fs::read(self.files.join(format!("{token}.json")))
            .await
            .ok()?;
        let meta: Meta = serde_json::from_slice(&json).ok()?;
        if meta.expires <= now_secs() {
            self.remove(token).await;
            return None;
        }
        Some((meta, self.files.join(token)))
    }

    async fn remove(&self, token: &str) {
        let _ = tokio::fs::remove_file(self.files.join(format!("{token}.json"))).await;
        let _ = tokio::fs::remove_file(self.files.join(token)).await;
    }

    /// Deletes expired files, files without a description older than the expiry (a
    /// crash between the two renames), and, with `at_start`, everything in `tmp/` (reads
    /// cut short by a stop). Returns how many files were deleted.
    pub async fn sweep(&self, at_start: bool) -> usize {
        let mut removed = 0;
        if at_start {
            removed += remove_all_in(&self.tmp).await;
        }
        let Ok(mut entries) = tokio::fs::read_dir(&self.files).await else {
            return removed;
        };
        let now = now_secs();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(token) = name.strip_suffix(".json") {
                let expired = match tokio::fs::read(entry.path()).await {
                    Ok(json) => serde_json::from_slice::<Meta>(&json)
                        .map(|m| m.expires <= now)
                        .unwrap_or(true),
                    Err(_) => false,
                };
                if expired {
                    self.remove(token).await;
                    removed += 1;
                }
            } else if !tokio::fs::try_exists(self.files.join(format!("{name}.json")))
                .await
                .unwrap_or(true)
                && older_than(&entry.path(), self.expire).await
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
                removed += 1;
            }
        }
        removed
    }

    /// Sweeps at start, then every quarter of the expiry (between 1 s and 10 min), until
    /// the store is dropped.
    pub fn run_sweeper(self: &Arc<Self>) {
        let every = (self.expire / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut at_start = true;
            loop {
                let Some(s) = store.upgrade() else { return };
                let removed = s.sweep(at_start).await;
                if removed > 0 {
                    info!(
                        removed,
                        at_start, "media: deleted expired and leftover files"
                    );
                } else {
                    debug!("media: nothing to delete");
                }
                drop(s);
                at_start = false;
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// Creates `dir` (and its parents) readable by the gateway's user only.
async fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

/// Removes every file in `dir`; returns how many.
async fn remove_all_in(dir: &Path) -> usize {
    let mut removed = 0;
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(e) => {
                    warn!(path = %entry.path().display(), "media: cannot delete a leftover: {e}")
                }
            }
        }
    }
    removed
}

/// Whether the file at `path` was last written longer than `age` ago.
async fn older_than(path: &Path, age: Duration) -> bool {
    tokio::fs::metadata(path)
        .await
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, max: u64, expire: u64, url: Option<&str>) -> Arc<MediaStore> {
        let settings = MediaSettings {
            dir: dir.to_path_buf(),
            max_bytes: max,
            expire_secs: expire,
            ..MediaSettings::default()
        };
        MediaStore::new(&settings, url)
    }

    fn reader(bytes: &[u8]) -> ByteReader {
        Box::pin(std::io::Cursor::new(bytes.to_vec()))
    }

    #[tokio::test]
    async fn a_kept_file_is_found_by_its_token_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 3600, Some("https://gw.example/"));
        let spooled = s.spool(reader(b"hello")).await.unwrap();
        assert_eq!(spooled.len(), 5);
        let url = s
            .keep(spooled, "a b/ä.txt", Some("text/plain"))
            .await
            .unwrap()
            .unwrap();
        let rest = url.strip_prefix("https://gw.example/media/").unwrap();
        let (token, name) = rest.split_once('/').unwrap();
        assert!(is_token(token), "{token}");
        assert_eq!(name, "a%20b_%C3%A4.txt");
        let (meta, path) = s.lookup(token).await.expect("served");
        assert_eq!(meta.size, 5);
        assert_eq!(std::fs::read(path).unwrap(), b"hello");
        assert!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count() == 0,
            "nothing is left in tmp/"
        );
        assert!(s.lookup("../files").await.is_none());
        assert!(s.lookup(&"0".repeat(32)).await.is_none());
    }

    #[tokio::test]
    async fn too_large_is_refused_while_reading_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 10, 3600, None);
        let e = s.spool(reader(&[1u8; 11])).await.unwrap_err();
        assert!(matches!(e, MediaError::TooLarge { max: 10 }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "it is larger than the gateway takes (10 bytes)"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let ten = s.spool(reader(&[1u8; 10])).await.unwrap();
        assert_eq!(ten.len(), 10);
        assert_eq!(
            s.keep(ten, "x", None).await.unwrap(),
            None,
            "without a public URL nothing is served"
        );
    }

    #[tokio::test]
    async fn the_sweep_deletes_expired_files_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 2, Some("http://127.0.0.1:1"));
        let url = s
            .keep(s.spool(reader(b"x")).await.unwrap(), "x", None)
            .await
            .unwrap()
            .unwrap();
        std::fs::write(dir.path().join("tmp").join("cut-short"), b"partial").unwrap();
        assert_eq!(s.sweep(true).await, 1, "the leftover in tmp/ only");
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(s.sweep(false).await, 1, "the expired file");
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            0
        );
        let token = url.rsplit('/').nth(1).unwrap();
        assert!(s.lookup(token).await.is_none());
    }
}
