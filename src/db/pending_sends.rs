//! `pending_sends`: user messages handed to a bridge and not yet confirmed by the network.
//!
//! The gateway writes a row before it calls the bridge and deletes it once the bridge has
//! answered (sent, or failed for good and the user was told). Rows left by a crash or a stop
//! in the middle of a send are sent again at the next start, oldest first.

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

    /// Every unanswered send of a bridge, oldest first.
    #[tracing::instrument(name = "db.pending_sends.list", skip_all, err)]
    pub async fn list_sends(&self, bridge: &str) -> Result<Vec<PendingSend>, DbError> {
        let rows = sqlx::query(
            "SELECT id, user_jid, payload FROM pending_sends WHERE bridge = $1 ORDER BY queued_at_ms, id",
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
                })
            })
            .collect()
    }
}
