//! `retention`: how much of the room archive (MAM) is kept, and the bounded deletions that
//! enforce it (driven in the background by [`crate::retention`]).
//!
//! Each call deletes at most one batch of rows in one short statement, so that the
//! database (SQLite has one writer, and the gateway's SQLite pool one connection) is never
//! held for long: the pruner calls again until nothing is left to remove.

use super::{Database, DbError};
use sqlx::Row as _;

/// How much of each room's archive to keep. `None` everywhere keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Messages whose time (`at_ms`) is this many milliseconds or more before now are
    /// removed; message-map rows mapped that long ago too.
    pub max_age_ms: Option<i64>,
    /// At most this many of the newest messages are kept per (bridge, user, room).
    pub max_per_room: Option<u64>,
}

impl RetentionPolicy {
    /// Whether this policy removes nothing.
    pub fn keeps_everything(&self) -> bool {
        self.max_age_ms.is_none() && self.max_per_room.is_none()
    }
}

/// What one pruning step removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Archive rows removed because they were too old.
    pub by_age: u64,
    /// Archive rows removed because their room had more than its count.
    pub by_count: u64,
    /// Message-map rows removed (too old).
    pub map_rows: u64,
}

impl Pruned {
    /// Archive rows removed, for either reason.
    pub fn archive_rows(&self) -> u64 {
        self.by_age + self.by_count
    }

    /// Adds `other` to this tally.
    pub fn add(&mut self, other: Pruned) {
        self.by_age += other.by_age;
        self.by_count += other.by_count;
        self.map_rows += other.map_rows;
    }
}

/// One room's archive, as a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomArchive {
    /// The bridge.
    pub bridge: String,
    /// The user's bare JID.
    pub user: String,
    /// The room's key.
    pub room: String,
}

fn batch_arg(batch: u64) -> i64 {
    i64::try_from(batch.max(1)).unwrap_or(i64::MAX)
}

impl Database {
    /// Deletes at most `batch` archive rows whose time is before `before_ms` (unix
    /// milliseconds), on every bridge, through the `archive_by_time` index. Returns how
    /// many were removed: fewer than `batch` means none is left.
    #[tracing::instrument(name = "db.retention.archive_by_age", skip_all, err)]
    pub async fn prune_archive_older_than(
        &self,
        before_ms: i64,
        batch: u64,
    ) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM archive WHERE (bridge, user_jid, room, seq) IN \
               (SELECT bridge, user_jid, room, seq FROM archive WHERE at_ms < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(batch_arg(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes at most `batch` message-map rows mapped before `before_ms`, on every
    /// bridge, through the `message_map_by_time` index. Returns how many were removed.
    #[tracing::instrument(name = "db.retention.map_by_age", skip_all, err)]
    pub async fn prune_message_map_older_than(
        &self,
        before_ms: i64,
        batch: u64,
    ) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM message_map WHERE (bridge, user_jid, chat, xmpp_id) IN \
               (SELECT bridge, user_jid, chat, xmpp_id FROM message_map \
                WHERE at_ms < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(batch_arg(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The rooms whose archive holds more than `max` messages (a read: it does not take
    /// SQLite's write lock).
    #[tracing::instrument(name = "db.retention.rooms_over", skip_all, err)]
    pub async fn archive_rooms_over(&self, max: u64) -> Result<Vec<RoomArchive>, DbError> {
        let rows = sqlx::query(
            "SELECT bridge, user_jid, room FROM archive \
             GROUP BY bridge, user_jid, room HAVING COUNT(*) > $1",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomArchive {
                    bridge: row.try_get(0)?,
                    user: row.try_get(1)?,
                    room: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Deletes at most `batch` of the oldest messages of `room` beyond its newest `keep`,
    /// through the archive's primary key. Returns how many were removed.
    #[tracing::instrument(name = "db.retention.archive_by_count", skip_all, err)]
    pub async fn prune_archive_room_to(
        &self,
        room: &RoomArchive,
        keep: u64,
        batch: u64,
    ) -> Result<u64, DbError> {
        // The newest seq beyond the kept ones, if the room has more than `keep`.
        let cutoff = sqlx::query(
            "SELECT seq FROM archive WHERE bridge = $1 AND user_jid = $2 AND room = $3 \
             ORDER BY seq DESC LIMIT 1 OFFSET $4",
        )
        .bind(&room.bridge)
        .bind(&room.user)
        .bind(&room.room)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let cutoff: i64 = cutoff.try_get(0)?;
        let done = sqlx::query(
            "DELETE FROM archive WHERE bridge = $1 AND user_jid = $2 AND room = $3 \
             AND seq IN (SELECT seq FROM archive \
               WHERE bridge = $1 AND user_jid = $2 AND room = $3 AND seq <= $4 \
               ORDER BY seq LIMIT $5)",
        )
        .bind(&room.bridge)
        .bind(&room.user)
        .bind(&room.room)
        .bind(cutoff)
        .bind(batch_arg(batch))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
