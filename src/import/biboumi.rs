//! Reading Biboumi's SQLite database (its `db_name` file), read-only.
//!
//! The tables are Biboumi 9's (`src/database/database.hpp` in Biboumi): `muclogline_`,
//! `globaloptions_`, `ircserveroptions_`, `ircchanneloptions_`, `roster`,
//! `after_connection_commands_`. Columns added by later Biboumi versions may be missing
//! from an older file: they read as NULL. Every value is read as its bytes
//! (`CAST(… AS BLOB)`), so that whatever a row holds reaches [`mapping`](super::mapping)
//! to be judged there.

use super::ImportError;
use super::mapping::{Cell, ChannelRow, GlobalRow, LogRow, ServerRow};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Row as _};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The tables an import needs, each with the columns it cannot do without.
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "muclogline_",
        &[
            "id_",
            "owner_",
            "ircchanname_",
            "ircservername_",
            "date_",
            "body_",
            "nick_",
        ],
    ),
    ("globaloptions_", &["owner_"]),
    ("ircserveroptions_", &["id_", "owner_", "server_"]),
    ("ircchanneloptions_", &["owner_", "server_", "channel_"]),
];

/// An open Biboumi database.
pub struct BiboumiDb {
    pool: SqlitePool,
    /// The columns of each table present.
    columns: BTreeMap<String, Vec<String>>,
    /// The query of the archive, in room and date order.
    log_sql: String,
}

impl BiboumiDb {
    /// Opens the file read-only and checks that it is Biboumi's: the tables and columns
    /// an import reads are there.
    #[tracing::instrument(name = "import.biboumi.open", skip_all, err)]
    pub async fn open(path: &Path) -> Result<BiboumiDb, ImportError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ImportError::NoSource(shown));
        }
        // The archive is read as one statement streamed for the whole import: not a slow
        // statement to warn about.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| ImportError::Source {
                path: shown.clone(),
                source,
            })?;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await
                .map_err(|source| ImportError::Source {
                    path: shown.clone(),
                    source,
                })?;
        let mut columns = BTreeMap::new();
        for table in &tables {
            let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(&pool)
                .await
                .map_err(|source| ImportError::Source {
                    path: shown.clone(),
                    source,
                })?;
            columns.insert(table.clone(), names);
        }
        let mut missing = Vec::new();
        for (table, needed) in REQUIRED {
            match columns.get(*table) {
                None => missing.push(format!("table {table}")),
                Some(have) => missing.extend(
                    needed
                        .iter()
                        .filter(|c| !have.iter().any(|h| h == *c))
                        .map(|c| format!("column {table}.{c}")),
                ),
            }
        }
        if !missing.is_empty() {
            return Err(ImportError::NotBiboumi {
                path: shown,
                missing: missing.join(", "),
            });
        }
        let mut db = BiboumiDb {
            pool,
            columns,
            log_sql: String::new(),
        };
        db.log_sql = format!(
            "{} ORDER BY owner_, ircservername_, ircchanname_, date_, id_",
            db.select(
                "muclogline_",
                &[
                    "uuid_",
                    "owner_",
                    "ircchanname_",
                    "ircservername_",
                    "date_",
                    "body_",
                    "nick_"
                ]
            )
        );
        Ok(db)
    }

    /// `SELECT id_, <each column as bytes, or NULL where the table lacks it> FROM table`.
    /// Only the literals of this module are given to it.
    fn select(&self, table: &str, wanted: &[&str]) -> String {
        let have = self.columns.get(table);
        let has = |c: &str| have.is_some_and(|h| h.iter().any(|x| x == c));
        let id = if has("id_") { "id_" } else { "0" };
        let mut list = vec![id.to_owned()];
        for c in wanted {
            list.push(if has(c) {
                format!("CAST({c} AS BLOB)")
            } else {
                "NULL".to_owned()
            });
        }
        format!("SELECT {} FROM {table}", list.join(", "))
    }

    async fn rows(&self, sql: String) -> Result<Vec<SqliteRow>, ImportError> {
        // Audited: built by `select` from this module's literals only.
        Ok(sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every `globaloptions_` row, in id order.
    pub async fn global_options(&self) -> Result<Vec<GlobalRow>, ImportError> {
        let sql = self.select(
            "globaloptions_",
            &[
                "owner_",
                "maxhistorylength_",
                "recordhistory_",
                "persistent_",
            ],
        ) + " ORDER BY 1";
        let rows = self.rows(sql).await?;
        rows.iter()
            .map(|r| {
                Ok(GlobalRow {
                    owner: cell(r, 1)?,
                    max_history_length: cell(r, 2)?,
                    record_history: cell(r, 3)?,
                    persistent: cell(r, 4)?,
                })
            })
            .collect()
    }

    /// Every `ircserveroptions_` row with its after-connection commands, in id order, and
    /// the commands whose server row is missing (their `fk_`).
    pub async fn server_options(&self) -> Result<(Vec<ServerRow>, Vec<i64>), ImportError> {
        let mut commands: HashMap<i64, Vec<Cell>> = HashMap::new();
        if self.columns.contains_key("after_connection_commands_") {
            let sql = self.select(
                "after_connection_commands_",
                &["fk_", "afterconnectioncommand_"],
            ) + " ORDER BY 1";
            for r in self.rows(sql).await? {
                let fk = super::mapping::int(&cell(&r, 1)?, "fk_").ok().flatten();
                commands
                    .entry(fk.unwrap_or(-1))
                    .or_default()
                    .push(cell(&r, 2)?);
            }
        }
        let sql = self.select(
            "ircserveroptions_",
            &[
                "owner_",
                "server_",
                "pass_",
                "tlsports_",
                "ports_",
                "username_",
                "realname_",
                "verifycert_",
                "trustedfingerprint_",
                "encodingout_",
                "encodingin_",
                "maxhistorylength_",
                "address_",
                "nick_",
                "saslpassword_",
                "throttlelimit_",
            ],
        ) + " ORDER BY 1";
        let mut out = Vec::new();
        for r in self.rows(sql).await? {
            let id: i64 = r.try_get(0)?;
            out.push(ServerRow {
                id,
                owner: cell(&r, 1)?,
                server: cell(&r, 2)?,
                pass: cell(&r, 3)?,
                tls_ports: cell(&r, 4)?,
                ports: cell(&r, 5)?,
                username: cell(&r, 6)?,
                realname: cell(&r, 7)?,
                verify_cert: cell(&r, 8)?,
                trusted_fingerprint: cell(&r, 9)?,
                encoding_out: cell(&r, 10)?,
                encoding_in: cell(&r, 11)?,
                max_history_length: cell(&r, 12)?,
                address: cell(&r, 13)?,
                nick: cell(&r, 14)?,
                sasl_password: cell(&r, 15)?,
                throttle_limit: cell(&r, 16)?,
                after_connection_commands: commands.remove(&id).unwrap_or_default(),
            });
        }
        let mut orphans: Vec<i64> = commands
            .into_iter()
            .flat_map(|(fk, list)| std::iter::repeat_n(fk, list.len()))
            .collect();
        orphans.sort_unstable();
        Ok((out, orphans))
    }

    /// Every `ircchanneloptions_` row, in id order.
    pub async fn channel_options(&self) -> Result<Vec<ChannelRow>, ImportError> {
        let sql = self.select(
            "ircchanneloptions_",
            &[
                "owner_",
                "server_",
                "channel_",
                "encodingout_",
                "encodingin_",
                "maxhistorylength_",
                "persistent_",
                "recordhistory_",
            ],
        ) + " ORDER BY 1";
        let rows = self.rows(sql).await?;
        rows.iter()
            .map(|r| {
                Ok(ChannelRow {
                    owner: cell(r, 1)?,
                    server: cell(r, 2)?,
                    channel: cell(r, 3)?,
                    encoding_out: cell(r, 4)?,
                    encoding_in: cell(r, 5)?,
                    max_history_length: cell(r, 6)?,
                    persistent: cell(r, 7)?,
                    record_history: cell(r, 8)?,
                })
            })
            .collect()
    }

    /// How many rows `roster` has (0 when the table is absent).
    pub async fn roster_count(&self) -> Result<i64, ImportError> {
        if !self.columns.contains_key("roster") {
            return Ok(0);
        }
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM roster")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The archive, one room after the other (by owner, server and channel), each in date
    /// order (Biboumi's id between lines of the same second).
    pub fn log_lines(&self) -> BoxStream<'_, Result<LogRow, ImportError>> {
        // Audited: built by `select` from this module's literals only.
        sqlx::query(AssertSqlSafe(self.log_sql.as_str()))
            .fetch(&self.pool)
            .map_err(ImportError::from)
            .and_then(|r| async move {
                Ok(LogRow {
                    id: r.try_get(0)?,
                    uuid: cell(&r, 1)?,
                    owner: cell(&r, 2)?,
                    channel: cell(&r, 3)?,
                    server: cell(&r, 4)?,
                    date: cell(&r, 5)?,
                    body: cell(&r, 6)?,
                    nick: cell(&r, 7)?,
                })
            })
            .boxed()
    }

    /// Closes the file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn cell(row: &SqliteRow, i: usize) -> Result<Cell, sqlx::Error> {
    row.try_get::<Option<Vec<u8>>, _>(i)
}
