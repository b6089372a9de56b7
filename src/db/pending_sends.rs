//! `pending_sends`: user messages handed to a bridge and not yet confirmed by the network.
//!
//! The gateway writes a row before it calls the bridge and deletes it once the bridge has
//! answered (sent, or failed for good and the user was told). Rows left by a crash or a stop
//! in the middle of a send are sent again at the next start, oldest first.
//!
//! A room message is archived when the gateway accepts it, in the same commit as its row
//! ([`Database::accept_room_send`]): the row then holds the stanza-id chosen for it, lives
//! until the network's echo (or its refusal, which takes the archive row back out with
//! [`Database::withdraw_room_send`]), and a replay reuses that stanza-id.

use super::archive::ArchivedMessage;
use super::{Database, DbError, next_counter, now_ms};
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

    /// Records a room message about to be handed to the bridge and archives it, in one
    /// commit: the `pending_sends` row (with `msg`'s stanza-id) and the archive row. The row
    /// may exist already (a send kept by a stop, replayed): it is given the stanza-id. An
    /// archive row with the same stanza-id is left as it is.
    #[tracing::instrument(name = "db.pending_sends.accept_room", skip_all, err)]
    pub async fn accept_room_send(
        &self,
        send: RoomSend<'_>,
        payload: &str,
        msg: &ArchivedMessage,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let seq = next_counter(&mut tx, &format!("archive/{}", send.bridge)).await?;
        sqlx::query(
            "INSERT INTO archive \
               (bridge, user_jid, room, seq, stanza_id, from_nick, body, at_ms, remote_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (bridge, user_jid, room, stanza_id) DO NOTHING",
        )
        .bind(send.bridge)
        .bind(send.user)
        .bind(send.room)
        .bind(seq)
        .bind(&msg.stanza_id)
        .bind(&msg.from_nick)
        .bind(&msg.body)
        .bind(msg.at_ms)
        .bind(msg.remote_id.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO pending_sends (id, bridge, user_jid, queued_at_ms, payload, stanza_id) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET stanza_id = excluded.stanza_id",
        )
        .bind(send.id)
        .bind(send.bridge)
        .bind(send.user)
        .bind(now_ms())
        .bind(payload)
        .bind(&msg.stanza_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes back a room message accepted with [`Database::accept_room_send`] that did not
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
