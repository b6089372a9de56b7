//! `rooms`: the rooms a user is in, with the nick used there, to rejoin after a restart.
//!
//! Joins and parts are written behind (see [`write_behind`](super::write_behind)), in the
//! order they happened; [`Database::list_rooms`] sees every one queued before it.

use super::{Database, DbError, Write};
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
    /// the room is already recorded). Written behind: waits only while the queue is full.
    pub async fn save_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
        nick: &str,
    ) -> Result<(), DbError> {
        self.write_later(Write::Room {
            bridge: bridge.to_owned(),
            user: user.to_owned(),
            room: room_id.to_owned(),
            nick: nick.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Forgets that `user` is in `room_id` on `bridge` (nothing if it was not recorded).
    /// Written behind, after every earlier join.
    pub async fn delete_room(
        &self,
        bridge: &str,
        user: &str,
        room_id: &str,
    ) -> Result<(), DbError> {
        self.write_later(Write::RoomLeft {
            bridge: bridge.to_owned(),
            user: user.to_owned(),
            room: room_id.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// The rooms `user` is in on `bridge`, in id order.
    #[tracing::instrument(name = "db.rooms.list", skip_all, err)]
    pub async fn list_rooms(&self, bridge: &str, user: &str) -> Result<Vec<RoomRow>, DbError> {
        self.settle().await;
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
