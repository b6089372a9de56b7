//! The puppet-account database: users, logins, contacts, rooms, the message map, the room
//! archive (MAM), the queue of stanzas not yet delivered, and the names and avatars of
//! contacts and rooms.
//!
//! One schema serves every bridge: each row is keyed by `bridge` (e.g. `"irc"`) and `user`
//! (a bare JID); bridge-specific data lives in the logins' JSON metadata. The same portable
//! migration set (`migrations/`) runs on SQLite and PostgreSQL through sqlx's `Any`
//! driver, and is applied by [`Database::connect`].
//!
//! Login fields a bridge flags as secret are sealed with a [`SealKey`] before they are
//! stored (see [`seal`]), and so is every value of the bridges' per-login state store
//! ([`DbStore`]).

mod archive;
mod contacts;
mod error;
mod login_state;
mod logins;
mod message_map;
mod outbound;
mod pending_sends;
mod profiles;
mod retention;
mod rooms;
pub mod seal;
mod users;
mod write_behind;

pub use archive::{ArchivePage, ArchiveQuery, ArchivedMessage, MAX_ARCHIVE_PAGE};
pub use contacts::ContactRow;
pub use error::{DbError, redact_url};
pub use login_state::DbStore;
pub use logins::LoginRow;
pub use pending_sends::{PendingSend, RoomSend};
pub use profiles::{AvatarMeta, ProfileKind, ProfileRow, StoredAvatar};
pub use retention::{Pruned, RetentionPolicy, RoomArchive};
pub use rooms::RoomRow;
pub use seal::{SealError, SealKey};
pub use write_behind::{Ticket, Write};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row as _};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The schema, embedded from `migrations/` at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The URL used when the configuration names no database: SQLite in the working directory.
pub const DEFAULT_URL: &str = "sqlite://estuary.db";

/// Which database engine is behind a [`Database`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a file (or memory) in this process.
    Sqlite,
    /// PostgreSQL, a server shared by several deployments or hosts.
    Postgres,
}

/// A handle on the puppet-account database. Cloning is cheap: clones share one pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    key: Arc<SealKey>,
    backend: Backend,
    behind: Arc<write_behind::WriteBehind>,
}

/// SQLite's page cache per connection: 64 KiB (a negative size is in KiB).
const SQLITE_CACHE_SIZE: &str = "PRAGMA cache_size = -64";

impl Database {
    /// Opens the database at `url`, creating a SQLite file on first start, and brings the
    /// schema up to date.
    ///
    /// `url` is `sqlite://PATH` (or `sqlite::memory:`) or `postgres://USER@HOST/DB`; a
    /// caller with no configured URL passes [`DEFAULT_URL`].
    #[tracing::instrument(name = "db.connect", skip_all, err)]
    pub async fn connect(url: &str, key: SealKey) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let redacted = redact_url(url);
        let connect_error = |source| DbError::Connect {
            url: redacted.clone(),
            source,
        };

        let (backend, url) = if url.starts_with("sqlite:") {
            if let Some(path) = sqlite_file(url) {
                private_file(&path).map_err(|source| DbError::Permissions {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            (Backend::Sqlite, sqlite_url_with_create(url))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(DbError::UnsupportedUrl { url: redacted });
        };
        let options = AnyConnectOptions::from_str(&url).map_err(connect_error)?;

        let in_memory =
            backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if in_memory {
            // An in-memory database lives and dies with its one connection (the `Any`
            // driver gives each new connection a fresh one): keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if backend == Backend::Sqlite {
            // One connection: SQLite takes one writer at a time anyway, and a transaction
            // that reads and then writes (saving a login) fails at once with "database is
            // locked" when another connection committed in between, which no busy timeout
            // can wait out. Seen with a thousand users joining at once. The pool's queue
            // orders the statements instead; each is short.
            pool_options = pool_options.max_connections(1);
        }
        if backend == Backend::Sqlite {
            // Under WAL, NORMAL syncs at checkpoints instead of at every commit: a commit
            // survives a crash of the process (what the queues and the archive need); only a
            // power loss can take back the last commits. FULL cost an fsync per message.
            //
            // A small page cache: SQLite's default (2 MB per connection) grows with the
            // number of users until it is full, resident in the gateway; the file's pages
            // stay in the system's cache anyway, outside the process.
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(SQLITE_CACHE_SIZE).execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(connect_error)?;

        if backend == Backend::Sqlite && !in_memory {
            // Write-ahead logging lets readers proceed while the gateway writes; the mode
            // is stored in the file, so this only changes something on first start.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        tracing::info!(url = %redacted, ?backend, "database ready");
        Ok(Database {
            behind: Arc::new(write_behind::WriteBehind::start(pool.clone(), backend)),
            pool,
            key: Arc::new(key),
            backend,
        })
    }

    /// Which engine this database runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for maintenance and tests. Prefer the typed methods.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The key that seals login secrets.
    pub fn seal_key(&self) -> &SealKey {
        &self.key
    }

    /// Queues a row for the archive or the message map, written with others in one
    /// transaction shortly after; readers of those tables wait for it. Waits only while
    /// the queue is full. The [`Ticket`] says when the row is written: once
    /// [`Database::committed`] has reached it. A stanza that shows the row's message to
    /// someone is handed to the link with it (`LinkHandle::send_after`), so that nothing is
    /// shown whose row a crash could still lose.
    pub async fn write_later(&self, write: Write) -> Result<Ticket, DbError> {
        self.behind.push(write).await
    }

    /// The write-behind's watermark: every row queued with [`Database::write_later`] whose
    /// ticket is at most this one is written (or was refused, and that was logged).
    pub fn committed(&self) -> tokio::sync::watch::Receiver<Ticket> {
        self.behind.committed()
    }

    /// The same watermark as a plain number, for the bridges' send gates
    /// ([`estuary_bridge_api::gate`]): a message's gate opens once it reaches the ticket of
    /// the message's rows.
    pub fn durable_mark(&self) -> estuary_bridge_api::DurableMark {
        self.behind.durable_mark()
    }

    /// Waits until every row queued with [`Database::write_later`] before this call is
    /// written (or failed and logged).
    pub async fn settle(&self) {
        self.behind.settle().await;
    }

    /// Writes what is queued, then closes every connection; later calls fail.
    pub async fn close(&self) {
        self.settle().await;
        self.pool.close().await;
    }
}

/// The file of a SQLite URL (`sqlite://PATH`, `sqlite:PATH`, with or without `?options`);
/// `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

/// Makes the database file readable by its owner only: created so when absent (SQLite
/// gives its `-wal` and `-shm` files the same mode), tightened with a warning when another
/// user could read it. It holds the logins, the message archive and sealed secrets.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the database file was readable by other users (mode {:o}); made it 0600",
                    mode & 0o777
                );
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Adds `mode=rwc` to a SQLite URL that names no mode, so the file is created on first
/// start.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// The time now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Takes the next value of the named counter, inside `tx`.
///
/// The counter row stays locked until `tx` ends, so values are committed in the order
/// they were taken: rows ordered by them are in a strict, gap-tolerant order. This should
/// be the transaction's first statement, so that SQLite takes its write lock up front.
pub(crate) async fn next_counter(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 \
         RETURNING value",
    )
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file() {
        assert_eq!(
            sqlite_url_with_create("sqlite://estuary.db"),
            "sqlite://estuary.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite:///var/lib/estuary/db.sqlite?cache=shared"),
            "sqlite:///var/lib/estuary/db.sqlite?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://estuary.db?mode=ro"),
            "sqlite://estuary.db?mode=ro"
        );
        assert_eq!(sqlite_url_with_create("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn the_file_of_a_sqlite_url() {
        let file = |u| sqlite_file(u).map(|p| p.display().to_string());
        assert_eq!(file("sqlite://estuary.db").as_deref(), Some("estuary.db"));
        assert_eq!(
            file("sqlite:///var/lib/estuary/db.sqlite?cache=shared").as_deref(),
            Some("/var/lib/estuary/db.sqlite")
        );
        assert_eq!(file("sqlite:relative.db").as_deref(), Some("relative.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
    }

    /// The database holds logins and the archive: no other user may read it, whether the
    /// gateway creates it or finds it readable.
    #[tokio::test]
    async fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .expect("the file exists")
                .permissions()
                .mode()
                & 0o777
        };
        let fresh = dir.path().join("fresh.db");
        let url = format!("sqlite://{}", fresh.display());
        let db = Database::connect(&url, SealKey::generate())
            .await
            .expect("opens");
        assert_eq!(mode(&fresh), 0o600);
        drop(db);
        let loose = dir.path().join("loose.db");
        std::fs::write(&loose, b"").expect("written");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let url = format!("sqlite://{}", loose.display());
        let _db = Database::connect(&url, SealKey::generate())
            .await
            .expect("opens");
        assert_eq!(mode(&loose), 0o600, "tightened");
    }

    #[tokio::test]
    async fn in_memory_database_works() {
        let db = Database::connect("sqlite::memory:", SealKey::generate())
            .await
            .unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        db.upsert_user("alice@example.org").await.unwrap();
        assert_eq!(db.list_users().await.unwrap(), vec!["alice@example.org"]);
    }

    #[tokio::test]
    async fn unsupported_url_is_refused() {
        let err = Database::connect("mysql://u:pw@host/db", SealKey::generate())
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::UnsupportedUrl { .. }));
        assert!(!err.to_string().contains("pw"));
    }
}
