//! `rooms`: the rooms a user is in, with the nick used there, to rejoin after a restart.

use super::{Database, DbError, now_ms};
use sqlx::Row as _;

/// A room a user is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRow {
    /// The room's id on the foreign network, as the bridge minted it.
    pub room_id: String,
    /// The user's nick in it.
    pub nick: String,
}

impl Database {
    /// Records that `user` is in `room_id` on `bridge` as `nick` (replacing the nick if
    /// the room is already recorded).
    #[tracing::instrument(name = "db.rooms.save", skip_all, err)]
    pub async fn save_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
        nick: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO rooms (bridge, user_jid, room_id, nick, joined_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bridge, user_jid, room_id) DO UPDATE SET nick = excluded.nick",
        )
        .bind(bridge)
        .bind(user)
        .bind(room_id)
        .bind(nick)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `user` left `room_id` on `bridge`. Leaving a room not recorded is
    /// not an error.
    #[tracing::instrument(name = "db.rooms.delete", skip_all, err)]
    pub async fn delete_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM rooms WHERE bridge = $1 AND user_jid = $2 AND room_id = $3")
            .bind(bridge)
            .bind(user)
            .bind(room_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The rooms `user` is in on `bridge`, in id order.
    #[tracing::instrument(name = "db.rooms.list", skip_all, err)]
    pub async fn list_rooms(&self, bridge: &str, user: &str) -> Result<Vec<RoomRow>, DbError> {
        let rows = sqlx::query(
            "SELECT room_id, nick FROM rooms \
             WHERE bridge = $1 AND user_jid = $2 ORDER BY room_id",
        )
        .bind(bridge)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomRow {
                    room_id: row.try_get("room_id")?,
                    nick: row.try_get("nick")?,
                })
            })
            .collect()
    }
}
