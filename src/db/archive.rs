//! `archive`: room history for XEP-0313 (Message Archive Management), per (bridge, user,
//! room).
//!
//! Messages are ordered by an insertion sequence, not by their timestamps (two messages
//! may share a millisecond, and foreign timestamps may go backwards), so pages are stable.
//! Paging follows XEP-0059 (RSM): `after_id` pages forward, `before_id` or `last_page`
//! backward; a page is always returned oldest first.

use super::{Database, DbError, Write, next_counter};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::HashSet;

/// How many stanza-ids [`Database::archive_known_ids`] asks about in one statement.
const KNOWN_IDS_CHUNK: usize = 500;

/// The largest page [`Database::archive_query`] returns, whatever limit is asked.
pub const MAX_ARCHIVE_PAGE: i64 = 1000;

/// A message kept in a room's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The stanza-id (XEP-0359) the gateway gave it; unique in its room.
    pub stanza_id: String,
    /// The nick of whoever sent it.
    pub from_nick: String,
    /// Its text.
    pub body: String,
    /// When it was sent, in unix milliseconds.
    pub at_ms: i64,
    /// Its id on the foreign network, if it has one.
    pub remote_id: Option<String>,
}

/// A MAM query on one room, with its RSM paging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only messages after this stanza-id (RSM `<after/>`).
    pub after_id: Option<String>,
    /// Only messages before this stanza-id (RSM `<before>id</before>`); pages backward.
    pub before_id: Option<String>,
    /// Only messages at or after this time (MAM `start`), unix milliseconds.
    pub start_ms: Option<i64>,
    /// Only messages at or before this time (MAM `end`), unix milliseconds.
    pub end_ms: Option<i64>,
    /// Only messages from this nick (MAM `with`).
    pub with_nick: Option<String>,
    /// At most this many messages (RSM `<max/>`), clamped to `0..=`[`MAX_ARCHIVE_PAGE`].
    pub limit: i64,
    /// The newest page rather than the oldest (RSM empty `<before/>`).
    pub last_page: bool,
}

/// One page of a MAM query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The messages, oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// Whether no more messages match in the paging direction (MAM `complete`): forward,
    /// this page reaches the newest; backward, it reaches the oldest.
    pub complete: bool,
}

/// A value bound to a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
}

impl Database {
    /// Appends `msg` to the archive of `room` of `user` on `bridge`. Appending a
    /// stanza-id already in that room's archive does nothing, so replays are harmless.
    #[tracing::instrument(name = "db.archive.append", skip_all, err)]
    pub async fn archive_append(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        msg: &ArchivedMessage,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_counter(&mut tx, &format!("archive/{bridge}")).await?;
        sqlx::query(
            "INSERT INTO archive \
               (bridge, user_jid, room, seq, stanza_id, from_nick, body, at_ms, remote_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (bridge, user_jid, room, stanza_id) DO NOTHING",
        )
        .bind(bridge)
        .bind(user)
        .bind(room)
        .bind(seq)
        .bind(&msg.stanza_id)
        .bind(&msg.from_nick)
        .bind(&msg.body)
        .bind(msg.at_ms)
        .bind(msg.remote_id.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the archive of `room` of `user` on `bridge`.
    ///
    /// Fails with [`DbError::NotFound`] if `after_id` or `before_id` is not in that
    /// room's archive (XMPP answers `item-not-found`).
    #[tracing::instrument(name = "db.archive.query", skip_all, err)]
    pub async fn archive_query(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        q: &ArchiveQuery,
    ) -> Result<ArchivePage, DbError> {
        self.settle().await;
        let limit = q.limit.clamp(0, MAX_ARCHIVE_PAGE);
        let backward = q.last_page || q.before_id.is_some();

        let mut sql = String::from(
            "SELECT stanza_id, from_nick, body, at_ms, remote_id FROM archive \
             WHERE bridge = $1 AND user_jid = $2 AND room = $3",
        );
        let mut args = vec![
            Arg::Text(bridge.to_owned()),
            Arg::Text(user.to_owned()),
            Arg::Text(room.to_owned()),
        ];
        let mut filter = |condition: &str, arg: Arg| {
            args.push(arg);
            sql.push_str(&format!(" AND {condition} ${}", args.len()));
        };
        if let Some(id) = &q.after_id {
            filter(
                "seq >",
                Arg::Int(self.archive_seq(bridge, user, room, id).await?),
            );
        }
        if let Some(id) = &q.before_id {
            filter(
                "seq <",
                Arg::Int(self.archive_seq(bridge, user, room, id).await?),
            );
        }
        if let Some(start) = q.start_ms {
            filter("at_ms >=", Arg::Int(start));
        }
        if let Some(end) = q.end_ms {
            filter("at_ms <=", Arg::Int(end));
        }
        if let Some(nick) = &q.with_nick {
            filter("from_nick =", Arg::Text(nick.clone()));
        }
        // One more than asked tells whether the page is the last one.
        args.push(Arg::Int(limit + 1));
        sql.push_str(&format!(
            " ORDER BY seq {} LIMIT ${}",
            if backward { "DESC" } else { "ASC" },
            args.len()
        ));

        // Audited: the text is built only from the literals above; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;

        let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) <= limit;
        let mut messages = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(0))
            .map(message_from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        if backward {
            messages.reverse();
        }
        Ok(ArchivePage { messages, complete })
    }

    /// The stanza-ids among `ids` that the archive of `room` of `user` on `bridge`
    /// already holds.
    #[tracing::instrument(name = "db.archive.known_ids", skip_all, err)]
    pub async fn archive_known_ids(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, DbError> {
        self.settle().await;
        let mut known = HashSet::new();
        for chunk in ids.chunks(KNOWN_IDS_CHUNK) {
            let marks: Vec<String> = (4..4 + chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT stanza_id FROM archive \
                 WHERE bridge = $1 AND user_jid = $2 AND room = $3 AND stanza_id IN ({})",
                marks.join(", ")
            );
            // Audited: the text is built only from the literals above; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bridge)
                .bind(user)
                .bind(room);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                known.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(known)
    }

    /// Appends messages brought from another gateway's archive to the archive of `room` of
    /// `user` on `bridge`, in the order given (they page in that order), leaving out those
    /// whose stanza-id the room's archive already holds, so that importing twice adds
    /// nothing. Returns how many were added.
    #[tracing::instrument(name = "db.archive.import", skip_all, err)]
    pub async fn archive_import(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        msgs: &[ArchivedMessage],
    ) -> Result<u64, DbError> {
        let ids: Vec<String> = msgs.iter().map(|m| m.stanza_id.clone()).collect();
        let mut known = self.archive_known_ids(bridge, user, room, &ids).await?;
        let writes: Vec<Write> = msgs
            .iter()
            .filter(|m| known.insert(m.stanza_id.clone()))
            .map(|m| Write::Archive {
                bridge: bridge.to_owned(),
                user: user.to_owned(),
                room: room.to_owned(),
                msg: m.clone(),
            })
            .collect();
        if !writes.is_empty() {
            super::write_behind::write_batch(&self.pool, self.backend, &writes).await?;
        }
        Ok(writes.len() as u64)
    }

    /// The sequence number of `stanza_id` in a room's archive.
    async fn archive_seq(
        &self,
        bridge: &str,
        user: &str,
        room: &str,
        stanza_id: &str,
    ) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT seq FROM archive \
             WHERE bridge = $1 AND user_jid = $2 AND room = $3 AND stanza_id = $4",
        )
        .bind(bridge)
        .bind(user)
        .bind(room)
        .bind(stanza_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(DbError::NotFound(format!(
                "archived message {stanza_id:?} in room {room}"
            ))),
        }
    }
}

fn message_from_row(row: &AnyRow) -> Result<ArchivedMessage, DbError> {
    Ok(ArchivedMessage {
        stanza_id: row.try_get("stanza_id")?,
        from_nick: row.try_get("from_nick")?,
        body: row.try_get("body")?,
        at_ms: row.try_get("at_ms")?,
        remote_id: row.try_get("remote_id")?,
    })
}
