//! `pending_sends`: user messages handed to a bridge and not yet confirmed by the network.
//!
//! The gateway writes a row before it calls the bridge and deletes it once the bridge has
//! answered (sent, or failed for good and the user was told). Rows left by a crash or a stop
//! in the middle of a send are sent again at the next start, oldest first.
//!
//! A room message is archived when the gateway accepts it, in the same commit as its row,
//! both written behind ([`Write::AcceptedSend`](super::Write::AcceptedSend); the network sees the message only once
//! that commit is done, through the bridge's send gate): the row then holds the stanza-id
//! chosen for it, lives until the network's echo (or its refusal, which takes the archive
//! row back out with [`Database::withdraw_room_send`]), and a replay reuses that stanza-id.

use super::{Database, DbError, now_ms};
use sqlx::Row as _;

/// A send waiting for the network's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    /// The row's id.
    pub id: String,
    /// The user (bare JID).
    pub user: String,
    /// What to send again, as the gateway serialized it.
    pub payload: String,
    /// For a room message archived when it was accepted, the stanza-id it was archived
    /// under.
    pub stanza_id: Option<String>,
}

/// Where a room message accepted for sending is archived.
#[derive(Debug, Clone, Copy)]
pub struct RoomSend<'a> {
    /// The bridge.
    pub bridge: &'a str,
    /// The user (bare JID).
    pub user: &'a str,
    /// The room's key.
    pub room: &'a str,
    /// The `pending_sends` row's id.
    pub id: &'a str,
}

impl Database {
    /// Records a send about to be handed to the bridge.
    #[tracing::instrument(name = "db.pending_sends.push", skip_all, err)]
    pub async fn push_send(
        &self,
        bridge: &str,
        user: &str,
        id: &str,
        payload: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO pending_sends (id, bridge, user_jid, queued_at_ms, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(bridge)
        .bind(user)
        .bind(now_ms())
        .bind(payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a send the network answered.
    #[tracing::instrument(name = "db.pending_sends.delete", skip_all, err)]
    pub async fn delete_send(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM pending_sends WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes back a room message accepted with [`Write::AcceptedSend`](super::Write::AcceptedSend) that did not
    /// go out (the network refused it, or the bridge ran it as a command): its archive row
    /// and its `pending_sends` row, in one commit, so the archive never shows it.
    #[tracing::instrument(name = "db.pending_sends.withdraw_room", skip_all, err)]
    pub async fn withdraw_room_send(
        &self,
        send: RoomSend<'_>,
        stanza_id: &str,
    ) -> Result<(), DbError> {
        // A write-behind row for the same message (see the gateway's echo) is written first.
        self.settle().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM archive WHERE bridge = $1 AND user_jid = $2 AND room = $3 AND stanza_id = $4",
        )
        .bind(send.bridge)
        .bind(send.user)
        .bind(send.room)
        .bind(stanza_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pending_sends WHERE id = $1")
            .bind(send.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every unanswered send of a bridge, oldest first.
    #[tracing::instrument(name = "db.pending_sends.list", skip_all, err)]
    pub async fn list_sends(&self, bridge: &str) -> Result<Vec<PendingSend>, DbError> {
        let rows = sqlx::query(
            "SELECT id, user_jid, payload, stanza_id FROM pending_sends WHERE bridge = $1 ORDER BY queued_at_ms, id",
        )
        .bind(bridge)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingSend {
                    id: row.try_get("id")?,
                    user: row.try_get("user_jid")?,
                    payload: row.try_get("payload")?,
                    stanza_id: row.try_get("stanza_id")?,
                })
            })
            .collect()
    }
}
