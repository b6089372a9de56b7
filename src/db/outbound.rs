//! `pending_outbound`: stanzas accepted but not yet delivered to the XMPP server, per
//! bridge, in strict FIFO order, so a restart or a dropped component link loses nothing.
//!
//! The gateway pushes a stanza, peeks the oldest ones when the link is up, sends them, and
//! deletes up to the last sequence number the server took.

use super::{Database, DbError, next_counter, now_ms};
use sqlx::Row as _;

impl Database {
    /// Queues `stanza` (serialized XML) for `bridge`, after every stanza queued before.
    #[tracing::instrument(name = "db.pending_outbound.push", skip_all, err)]
    pub async fn push_outbound(&self, bridge: &str, stanza: &str) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_counter(&mut tx, &format!("outbound/{bridge}")).await?;
        sqlx::query(
            "INSERT INTO pending_outbound (bridge, seq, stanza, queued_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(bridge)
        .bind(seq)
        .bind(stanza)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` queued stanzas of `bridge`, oldest first, with their sequence
    /// numbers. They stay queued until [`Database::delete_outbound`].
    #[tracing::instrument(name = "db.pending_outbound.peek", skip_all, err)]
    pub async fn peek_outbound(
        &self,
        bridge: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, stanza FROM pending_outbound WHERE bridge = $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(bridge)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("stanza")?)))
            .collect()
    }

    /// Like [`Database::peek_outbound`], only the stanzas queued after `after_seq`.
    #[tracing::instrument(name = "db.pending_outbound.peek_after", skip_all, err)]
    pub async fn peek_outbound_after(
        &self,
        bridge: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, stanza FROM pending_outbound WHERE bridge = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(bridge)
        .bind(after_seq)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("stanza")?)))
            .collect()
    }

    /// Removes the queued stanzas of `bridge` up to and including `up_to_seq`.
    #[tracing::instrument(name = "db.pending_outbound.delete", skip_all, err)]
    pub async fn delete_outbound(&self, bridge: &str, up_to_seq: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM pending_outbound WHERE bridge = $1 AND seq <= $2")
            .bind(bridge)
            .bind(up_to_seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many stanzas of `bridge` are queued.
    #[tracing::instrument(name = "db.pending_outbound.count", skip_all, err)]
    pub async fn count_outbound(&self, bridge: &str) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM pending_outbound WHERE bridge = $1")
            .bind(bridge)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}
