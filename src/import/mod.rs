//! `estuary import-biboumi`: bringing a Biboumi user's settings and room archive into
//! Estuary's database, once, when Estuary replaces Biboumi.
//!
//! [`biboumi`] reads Biboumi's SQLite file, [`mapping`] turns its rows into Estuary's
//! settings and archive lines, and this module stores them through the same checks as the
//! "Configure" forms (the form's field kinds, then the IRC bridge's
//! [`check_settings`](estuary_bridge_api::Connector::check_settings)) and the same database
//! calls, secrets sealed. Without `apply` nothing is written: the [`Report`] says what
//! would be. Running it again imports nothing twice: settings already stored are kept,
//! archive lines already there (same stanza-id) are left out.

pub mod biboumi;
pub mod in_use;
pub mod mapping;

use crate::db::{ArchivedMessage, Database, DbError};
use crate::xmpp::forms;
use estuary_bridge_api::{Connector, FormValues, LoginId, User};
use futures::TryStreamExt as _;
use mapping::{RowSettings, Skip};
use std::collections::BTreeMap;
use std::fmt;

/// Lines written to the archive per transaction.
const BATCH: usize = 500;

/// Why an import could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The Biboumi database file is not there.
    #[error("{0}: no such file (give the path of Biboumi's db_name file)")]
    NoSource(String),
    /// The file could not be opened or read as SQLite.
    #[error("{path}: cannot be read as a SQLite database: {source}")]
    Source {
        /// The file.
        path: String,
        /// What SQLite said.
        source: sqlx::Error,
    },
    /// The file is a SQLite database, but not Biboumi's.
    #[error("{path} is not a Biboumi database: missing {missing}")]
    NotBiboumi {
        /// The file.
        path: String,
        /// The tables and columns that are missing.
        missing: String,
    },
    /// Reading Biboumi's database failed half-way.
    #[error("reading the Biboumi database: {0}")]
    Read(#[from] sqlx::Error),
    /// Estuary's database failed.
    #[error("Estuary's database: {0}")]
    Database(#[from] DbError),
    /// Estuary's database is open in another process, a running gateway most likely.
    #[error(
        "{0} is open in another process (a running gateway?): stop Estuary first; a running gateway keeps the settings in memory and would not see the imported ones"
    )]
    InUse(String),
}

/// What happened to the rows of one Biboumi table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Rows read.
    pub read: u64,
    /// Rows imported (or, in a dry run, that would be).
    pub imported: u64,
    /// Rows already in Estuary's database, left as they are.
    pub present: u64,
    /// Rows not imported, counted by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Values left out of rows that were imported, counted by reason.
    pub left_out: BTreeMap<String, u64>,
}

impl TableReport {
    fn skip(&mut self, reason: impl fmt::Display) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }

    fn leave_out(&mut self, reason: impl fmt::Display) {
        *self.left_out.entry(reason.to_string()).or_default() += 1;
    }
}

/// What an import did, or would do, table by table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether it was written.
    pub applied: bool,
    /// By Biboumi table name.
    pub tables: BTreeMap<&'static str, TableReport>,
}

impl Report {
    fn table(&mut self, name: &'static str) -> &mut TableReport {
        self.tables.entry(name).or_default()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.applied {
            "imported"
        } else {
            "to import"
        };
        for (name, t) in &self.tables {
            writeln!(
                f,
                "{name}: {} read, {} {verb}, {} already in Estuary, {} skipped",
                t.read,
                t.imported,
                t.present,
                t.skipped.values().sum::<u64>()
            )?;
            for (reason, n) in &t.skipped {
                writeln!(f, "  skipped {n}: {reason}")?;
            }
            for (reason, n) in &t.left_out {
                writeln!(f, "  value left out {n}: {reason}")?;
            }
        }
        if !self.applied {
            writeln!(
                f,
                "Dry run: nothing was written. Run again with --apply to import."
            )?;
        }
        Ok(())
    }
}

/// Imports the opened Biboumi database `bib` into `db`, for the gateway of `bridge` whose
/// connector is `connector` (the IRC bridge's). Writes only when `apply` is set.
#[tracing::instrument(name = "import.biboumi", skip_all, fields(apply), err)]
pub async fn import_biboumi(
    bib: &biboumi::BiboumiDb,
    db: &Database,
    connector: &dyn Connector,
    bridge: &str,
    apply: bool,
) -> Result<Report, ImportError> {
    let mut run = Run {
        db,
        connector,
        bridge,
        apply,
        report: Report {
            applied: apply,
            ..Report::default()
        },
        logins: BTreeMap::new(),
    };
    run.all(bib).await?;
    if apply {
        db.settle().await;
    }
    Ok(run.report)
}

/// One import under way.
struct Run<'a> {
    db: &'a Database,
    connector: &'a dyn Connector,
    bridge: &'a str,
    apply: bool,
    report: Report,
    /// Users known to have a login (or, in a dry run, to get one).
    logins: BTreeMap<String, Option<BTreeMap<String, FormValues>>>,
}

impl Run<'_> {
    async fn all(&mut self, bib: &biboumi::BiboumiDb) -> Result<(), ImportError> {
        for row in bib.global_options().await? {
            let mapped = mapping::global(&row);
            self.settings("globaloptions_", mapped).await?;
        }
        let (servers, orphans) = bib.server_options().await?;
        for row in servers {
            let mapped = mapping::server_settings(&row);
            self.settings("ircserveroptions_", mapped).await?;
        }
        for fk in orphans {
            let t = self.report.table("after_connection_commands_");
            t.read += 1;
            t.skip(Skip::Orphan(fk));
        }
        for row in bib.channel_options().await? {
            let mapped = mapping::channel_settings(&row);
            self.settings("ircchanneloptions_", mapped).await?;
        }
        self.archive(bib).await?;
        let roster = bib.roster_count().await?;
        let t = self.report.table("roster");
        t.read = u64::try_from(roster).unwrap_or(0);
        if roster > 0 {
            t.skipped.insert(
                "presence subscriptions to the gateway and its servers: Estuary accepts them \
                 without keeping a list, and the users' rosters still hold them"
                    .into(),
                t.read,
            );
        }
        Ok(())
    }

    /// The settings the user has stored, by key, or `None` without a login; remembered.
    async fn stored(
        &mut self,
        user: &str,
    ) -> Result<Option<BTreeMap<String, FormValues>>, DbError> {
        if let Some(known) = self.logins.get(user) {
            return Ok(known.clone());
        }
        let stored = self
            .db
            .get_login(self.bridge, user)
            .await?
            .map(|l| l.services);
        self.logins.insert(user.to_owned(), stored.clone());
        Ok(stored)
    }

    /// Makes sure the user has a login, as the "Configure" command does for a user who
    /// never registered.
    async fn ensure_login(&mut self, user: &str) -> Result<(), DbError> {
        if self.stored(user).await?.is_some() {
            return Ok(());
        }
        if self.apply {
            self.db
                .save_login(
                    self.bridge,
                    user,
                    LoginId::new(user).as_str(),
                    &FormValues::default(),
                    &[],
                    &serde_json::Value::Object(Default::default()),
                )
                .await?;
        }
        self.logins.insert(user.to_owned(), Some(BTreeMap::new()));
        Ok(())
    }

    /// Checks one row's settings as a submitted form would be, value by value (a bad value
    /// is dropped and reported, the others kept), then stores them unless the user already
    /// has settings for that entity.
    async fn settings(
        &mut self,
        table: &'static str,
        mapped: Result<RowSettings, Skip>,
    ) -> Result<(), ImportError> {
        self.report.table(table).read += 1;
        let row = match mapped {
            Ok(row) => row,
            Err(skip) => {
                self.report.table(table).skip(skip);
                return Ok(());
            }
        };
        let mut left_out: Vec<String> = row.dropped.iter().map(Skip::to_string).collect();
        let fields = self.connector.settings_fields(&row.target);
        let user = User {
            jid: row.owner.clone(),
        };
        let mut values = FormValues::default();
        for (var, value) in &row.values {
            let mut one = FormValues::default();
            one.set(var.clone(), value.clone());
            match self.check(&user, &row, one, &fields).await {
                Ok(_) => values.set(var.clone(), value.clone()),
                Err(why) => left_out.push(why.to_string()),
            }
        }
        let values = match self.check(&user, &row, values, &fields).await {
            Ok(v) => v,
            Err(why) => {
                self.report.table(table).skip(why);
                return Ok(());
            }
        };
        if values.0.is_empty() {
            self.report
                .table(table)
                .skip("the row has no value Estuary can take");
            return Ok(());
        }
        // The values left out are reported only for rows that are imported.
        for why in left_out {
            self.report.table(table).leave_out(why);
        }
        let key = row.target.settings_key();
        if let Some(stored) = self.stored(&row.owner).await?
            && let Some(existing) = stored.get(&key)
        {
            if *existing == values {
                self.report.table(table).present += 1;
            } else {
                self.report
                    .table(table)
                    .skip("the user already has other settings for this in Estuary (kept)");
            }
            return Ok(());
        }
        if self.connector.capabilities().requires_registration
            && self.stored(&row.owner).await?.is_none()
        {
            self.report
                .table(table)
                .skip("the user has no login on this gateway, which requires registration");
            return Ok(());
        }
        self.ensure_login(&row.owner).await?;
        if self.apply {
            let secrets: Vec<String> = fields
                .iter()
                .filter(|f| f.is_secret())
                .map(|f| f.var.clone())
                .collect();
            self.db
                .save_service_settings(self.bridge, &row.owner, &key, Some(&values), &secrets)
                .await?;
        }
        if let Some(Some(stored)) = self.logins.get_mut(&row.owner) {
            stored.insert(key, values);
        }
        self.report.table(table).imported += 1;
        Ok(())
    }

    /// The form's check and the bridge's, as for a submitted "Configure" form.
    async fn check(
        &self,
        user: &User,
        row: &RowSettings,
        values: FormValues,
        fields: &[estuary_bridge_api::FormField],
    ) -> Result<FormValues, Skip> {
        let refused = |var: &str, why: String| Skip::Refused {
            var: var.to_owned(),
            why,
        };
        let var = if values.0.len() == 1 {
            values.0.keys().next().cloned().unwrap_or_default()
        } else {
            "settings".to_owned()
        };
        if values.0.keys().any(|v| !fields.iter().any(|f| f.var == *v)) {
            return Err(refused(&var, "not a setting of this entity".into()));
        }
        let values = forms::check(values, fields).map_err(|e| refused(&var, e.to_string()))?;
        self.connector
            .check_settings(user, &row.target, values)
            .await
            .map_err(|e| refused(&var, e.text))
    }

    /// The archive, room by room, in batches.
    async fn archive(&mut self, bib: &biboumi::BiboumiDb) -> Result<(), ImportError> {
        const TABLE: &str = "muclogline_";
        let mut lines = bib.log_lines();
        let mut batch: Vec<ArchivedMessage> = Vec::new();
        let mut current: Option<(String, String)> = None;
        while let Some(row) = lines.try_next().await? {
            self.report.table(TABLE).read += 1;
            let line = match mapping::log_line(&row) {
                Ok(line) => line,
                Err(skip) => {
                    self.report.table(TABLE).skip(skip);
                    continue;
                }
            };
            let here = (line.owner, line.room.as_str().to_owned());
            if current.as_ref() != Some(&here) || batch.len() >= BATCH {
                if let Some((owner, room)) = &current {
                    self.flush(owner, room, &mut batch).await?;
                }
                current = Some(here);
            }
            batch.push(line.msg);
        }
        if let Some((owner, room)) = &current {
            self.flush(owner, room, &mut batch).await?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        owner: &str,
        room: &str,
        batch: &mut Vec<ArchivedMessage>,
    ) -> Result<(), ImportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let total = batch.len() as u64;
        let added = if self.apply {
            self.ensure_login(owner).await?;
            self.db
                .archive_import(self.bridge, owner, room, batch)
                .await?
        } else {
            let ids: Vec<String> = batch.iter().map(|m| m.stanza_id.clone()).collect();
            let known = self
                .db
                .archive_known_ids(self.bridge, owner, room, &ids)
                .await?;
            let mut seen = std::collections::HashSet::new();
            ids.iter()
                .filter(|id| !known.contains(*id) && seen.insert(*id))
                .count() as u64
        };
        let t = self.report.table("muclogline_");
        t.imported += added;
        t.present += total - added;
        batch.clear();
        Ok(())
    }
}
