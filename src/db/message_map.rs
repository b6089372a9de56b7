//! `message_map`: XMPP message ids (origin-id / stanza-id) and foreign message ids, both
//! ways, per (bridge, user, chat), so corrections, retractions, reactions, replies and
//! receipts can be translated.

use super::{Database, DbError, now_ms};
use sqlx::Row as _;

impl Database {
    /// Links `xmpp_id` and `remote_id` in `chat` of `user` on `bridge`. Mapping an XMPP id
    /// again replaces its foreign id.
    #[tracing::instrument(name = "db.message_map.insert", skip_all, err)]
    pub async fn map_message(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        xmpp_id: &str,
        remote_id: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO message_map (bridge, user_jid, chat, xmpp_id, remote_id, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (bridge, user_jid, chat, xmpp_id) DO UPDATE SET \
               remote_id = excluded.remote_id, at_ms = excluded.at_ms",
        )
        .bind(bridge)
        .bind(user)
        .bind(chat)
        .bind(xmpp_id)
        .bind(remote_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The foreign id of the XMPP message `xmpp_id` in `chat`, if mapped.
    #[tracing::instrument(name = "db.message_map.remote_id", skip_all, err)]
    pub async fn remote_id_for(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        xmpp_id: &str,
    ) -> Result<Option<String>, DbError> {
        self.settle().await;
        let row = sqlx::query(
            "SELECT remote_id FROM message_map \
             WHERE bridge = $1 AND user_jid = $2 AND chat = $3 AND xmpp_id = $4",
        )
        .bind(bridge)
        .bind(user)
        .bind(chat)
        .bind(xmpp_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    /// The XMPP id of the foreign message `remote_id` in `chat`, if mapped. When several
    /// XMPP ids map to it, the most recently mapped wins.
    #[tracing::instrument(name = "db.message_map.xmpp_id", skip_all, err)]
    pub async fn xmpp_id_for(
        &self,
        bridge: &str,
        user: &str,
        chat: &str,
        remote_id: &str,
    ) -> Result<Option<String>, DbError> {
        self.settle().await;
        let row = sqlx::query(
            "SELECT xmpp_id FROM message_map \
             WHERE bridge = $1 AND user_jid = $2 AND chat = $3 AND remote_id = $4 \
             ORDER BY at_ms DESC, xmpp_id DESC LIMIT 1",
        )
        .bind(bridge)
        .bind(user)
        .bind(chat)
        .bind(remote_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }
}
