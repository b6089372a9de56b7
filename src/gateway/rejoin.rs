//! Rooms the users were in before a restart, joined again on the network at start.
//!
//! Under the `grace` and `persistent` offline policies a user's rooms outlive their XMPP
//! clients; they must outlive the gateway's own restart too. The rooms table keeps each
//! user's rooms and nicks; at start every restored login joins them again on the network
//! (with no XMPP resource in them yet), so that what is said meanwhile reaches the archive,
//! and a client that joins again (after the 332 of the stop, or later) finds the room joined
//! and gets what it missed as history. Under `grace`, a room no client came back to within
//! the grace period is left, as it would have been without the restart.

use super::Gateway;
use super::session::{Room, Session};
use estuary_bridge_api::{JoinRequest, OfflinePolicy, RemoteChatId};
use std::sync::Arc;
use tracing::{info, warn};

impl Gateway {
    /// Joins `session`'s stored rooms again (see the module's doc); nothing under the
    /// `leave` policy, whose rooms end with the user's clients.
    pub(super) async fn rejoin_stored_rooms(self: &Arc<Self>, session: &Arc<Session>) {
        if self.caps.offline == OfflinePolicy::Leave {
            return;
        }
        let rows = match self.db.list_rooms(&self.bridge, &session.user).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(bridge = %self.bridge, user = %session.user, "cannot read the rooms to join again: {e}");
                return;
            }
        };
        for row in rows {
            let room = RemoteChatId::new(row.room_id);
            {
                let mut rooms = session.rooms();
                if rooms.contains_key(&room) {
                    continue;
                }
                rooms.insert(
                    room.clone(),
                    Box::new(Room {
                        nick: row.nick.clone(),
                        ..Room::default()
                    }),
                );
            }
            info!(bridge = %self.bridge, user = %session.user, room = %room, "joining again the room the user was in before the restart");
            let join = JoinRequest {
                room: room.clone(),
                nick: row.nick,
                password: None,
            };
            if let Err(e) = session.client.join_room(join).await {
                warn!(bridge = %self.bridge, user = %session.user, room = %room, "cannot join the room again: {}", e.text);
                session.rooms().remove(&room);
                continue;
            }
            if let OfflinePolicy::Grace(grace) = self.caps.offline {
                let (gateway, session) = (Arc::clone(self), Arc::clone(session));
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    gateway.leave_if_unused(&session, &room).await;
                });
            }
        }
    }

    /// Leaves `room` unless a client of the user is in it (or joining it) by now (the end
    /// of a grace period, after a client went offline or after a restart).
    pub(super) async fn leave_if_unused(&self, session: &Session, room: &RemoteChatId) {
        let unused = {
            let mut rooms = session.rooms();
            let unused = rooms
                .get(room)
                .is_some_and(|r| r.resources.is_empty() && r.pending.is_empty());
            if unused {
                rooms.remove(room);
            }
            unused
        };
        if unused {
            info!(bridge = %self.bridge, user = %session.user, room = %room, "no client came back to the room within the grace period; leaving");
            self.part_room(session, room).await;
        }
    }
}
