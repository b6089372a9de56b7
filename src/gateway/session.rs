//! One user's live state on one gateway: the client, its login state, and the rooms joined.

use estuary_bridge_api::{
    Client, FormValues, LoginId, LoginState, RemoteChatId, RemoteMessageId, SmallMap,
};

/// Receipts waited for per user before the oldest are forgotten.
const MAX_PENDING_RECEIPTS: usize = 10_000;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::compact::{Members, StringSet};
use crate::db::Ticket;
use crate::xmpp::muc::JoinIntent;

/// A room as one user sees it.
#[derive(Debug, Default)]
pub struct Room {
    /// The user's nick on the network (may differ from the one asked for).
    pub nick: String,
    /// Whether the network confirmed the join.
    pub joined: bool,
    /// The user's full JIDs that joined the room.
    pub resources: StringSet,
    /// Resources waiting for the network to confirm the join, with the nick they asked for.
    pub pending: Vec<(String, String, JoinIntent)>,
    /// Everyone in the room, by nick (the user included).
    pub members: Members,
    /// The topic.
    pub subject: String,
    /// Who set the topic.
    pub subject_by: Option<String>,
    /// The stanza ids of other entities that the user's messages carried (XEP-0359), by
    /// the message's origin id, to put back on their reflection; the oldest go first past
    /// [`MAX_KEPT_IDS`].
    pub kept_ids: Vec<(String, Vec<(String, String)>)>,
    /// The user's messages handed to the network and waiting for its echo, oldest first:
    /// each was given its stanza-id (and usually archived) when it was accepted, and its
    /// echo is shown with that id instead of being archived again.
    pub accepted: Vec<Accepted>,
}

/// A room message of the user's accepted for sending (see [`Room::accepted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message's origin id (or id), which its echo names.
    pub key: String,
    /// The stanza-id chosen for it.
    pub stanza_id: String,
    /// Its `pending_sends` row, deleted when the echo comes.
    pub pending_id: String,
    /// Whether its archive row is queued (committed once the write-behind's watermark
    /// reaches `rows`); if not, the echo archives it (under the same stanza-id, which the
    /// archive takes once).
    pub archived: bool,
    /// The ticket of its archive row: its echo is shown once that is committed
    /// ([`Ticket::NONE`] for a row committed by an earlier run).
    pub rows: Ticket,
}

/// Accepted messages per room waiting for their echo before the oldest are forgotten (its
/// echo is then archived anew). Above the IRC bridge's queue of lines per connection.
pub const MAX_ACCEPTED: usize = 1024;

/// Messages per room whose stanza ids wait for their reflection.
pub const MAX_KEPT_IDS: usize = 16;

impl Room {
    /// Keeps `ids` for the reflection of the message `key`.
    pub fn keep_ids(&mut self, key: &str, ids: Vec<(String, String)>) {
        if self.kept_ids.len() >= MAX_KEPT_IDS {
            self.kept_ids.remove(0);
        }
        self.kept_ids.push((key.to_string(), ids));
    }

    /// Remembers a message accepted for sending until its echo.
    pub fn accept(&mut self, accepted: Accepted) {
        if self.accepted.len() >= MAX_ACCEPTED {
            let gone = self.accepted.remove(0);
            tracing::warn!(key = %gone.key, "too many messages wait for their echo; the oldest is forgotten");
        }
        self.accepted.push(accepted);
    }

    /// The oldest accepted message named `key`, taken out (its echo came, or it was not
    /// sent).
    pub fn take_accepted(&mut self, key: &str) -> Option<Accepted> {
        let at = self.accepted.iter().position(|a| a.key == key)?;
        Some(self.accepted.remove(at))
    }

    /// The ids kept for the reflection of `key`, once.
    pub fn take_ids(&mut self, key: &str) -> Vec<(String, String)> {
        match self.kept_ids.iter().position(|(k, _)| k == key) {
            Some(at) => self.kept_ids.remove(at).1,
            None => Vec::new(),
        }
    }
}

/// A user's session: one login's client plus XMPP-side state.
pub struct Session {
    /// The user's bare JID.
    pub user: String,
    /// The login.
    pub login: LoginId,
    /// The live client.
    pub client: Box<dyn Client>,
    state: Mutex<LoginState>,
    /// Boxed: a hash map keeps room for several entries, and most users are in one room.
    rooms: Mutex<SmallMap<RemoteChatId, Box<Room>>>,
    resources: Mutex<BTreeSet<String>>,
    /// Held while a message is sent and its ids are written to the message map, so that an
    /// event about it (receipt, echo, correction) never looks the ids up too early.
    pub send_lock: tokio::sync::Mutex<()>,
    /// Receipts the user asked for: the network's message id → the XMPP message id. Boxed
    /// and only while one is awaited: the map's header alone is 48 bytes, in every user's
    /// session, and most clients never ask.
    #[allow(clippy::box_collection)]
    receipts: Mutex<Option<Box<HashMap<RemoteMessageId, String>>>>,
    /// The user's stored settings per entity (by `CommandTarget::settings_key`), for the
    /// room policy; kept in step with the database by the settings commands. Boxed and
    /// only when there are some: most users never configure anything.
    #[allow(clippy::box_collection)]
    settings: Mutex<Option<Box<BTreeMap<String, FormValues>>>>,
}

impl Session {
    /// A new session, connecting.
    pub fn new(user: String, login: LoginId, client: Box<dyn Client>) -> Self {
        Self {
            user,
            login,
            client,
            state: Mutex::new(LoginState::Connecting),
            rooms: Mutex::new(SmallMap::new()),
            resources: Mutex::new(BTreeSet::new()),
            send_lock: tokio::sync::Mutex::new(()),
            receipts: Mutex::new(None),
            settings: Mutex::new(None),
        }
    }

    /// Reads the user's stored settings, per entity, without copying them (every room
    /// message asks for its room's policy).
    pub fn with_settings<R>(&self, read: impl FnOnce(&BTreeMap<String, FormValues>) -> R) -> R {
        static NONE: BTreeMap<String, FormValues> = BTreeMap::new();
        let settings = lock(&self.settings);
        read(settings.as_deref().unwrap_or(&NONE))
    }

    /// Replaces (`Some`) or forgets (`None`) the settings stored under `key`.
    pub fn set_settings(&self, key: &str, values: Option<FormValues>) {
        let mut settings = lock(&self.settings);
        match values {
            Some(v) => {
                settings
                    .get_or_insert_with(Box::default)
                    .insert(key.to_owned(), v);
            }
            None => {
                if let Some(map) = settings.as_mut() {
                    map.remove(key);
                    if map.is_empty() {
                        *settings = None;
                    }
                }
            }
        }
    }

    /// Remembers that the user wants a receipt for a message the network will confirm.
    pub fn want_receipt(&self, remote: RemoteMessageId, xmpp_id: String) {
        let mut receipts = lock(&self.receipts);
        let r = receipts.get_or_insert_with(Box::default);
        if r.len() >= MAX_PENDING_RECEIPTS {
            // Confirmations that never came; forgetting them costs a receipt, nothing else.
            r.clear();
        }
        r.insert(remote, xmpp_id);
    }

    /// The XMPP id to confirm for a delivered message, once.
    pub fn take_receipt(&self, remote: &RemoteMessageId) -> Option<String> {
        let mut receipts = lock(&self.receipts);
        let r = receipts.as_mut()?;
        let xmpp_id = r.remove(remote);
        if r.is_empty() {
            *receipts = None;
        }
        xmpp_id
    }

    /// The login state.
    pub fn state(&self) -> LoginState {
        lock(&self.state).clone()
    }

    /// Sets the login state.
    pub fn set_state(&self, state: LoginState) {
        *lock(&self.state) = state;
    }

    /// The rooms, locked. Never hold across an `.await`.
    pub fn rooms(&self) -> MutexGuard<'_, SmallMap<RemoteChatId, Box<Room>>> {
        lock(&self.rooms)
    }

    /// The `pending_sends` rows of every message accepted in a room and still waiting for
    /// its echo, forgotten in the rooms.
    pub fn drain_accepted(&self) -> Vec<String> {
        self.rooms()
            .values_mut()
            .flat_map(|r| std::mem::take(&mut r.accepted))
            .map(|a| a.pending_id)
            .collect()
    }

    /// The user's resources available to the gateway domain, locked.
    pub fn resources(&self) -> MutexGuard<'_, BTreeSet<String>> {
        lock(&self.resources)
    }
}

/// Locks a mutex, recovering from a panicked holder (state stays usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short human word for a login state.
pub fn describe(state: &LoginState) -> String {
    match state {
        LoginState::Connecting => "connecting".into(),
        LoginState::Connected => "connected".into(),
        LoginState::TransientDisconnect(why) => format!("reconnecting ({why})"),
        LoginState::BadCredentials(why) => format!("credentials refused ({why})"),
        LoginState::LoggedOut(why) => format!("logged out ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use estuary_bridge_api::{BridgeError, Outgoing, RemoteUserId, Sent};

    /// A client that is never asked anything here.
    struct Idle;

    #[async_trait]
    impl Client for Idle {
        async fn connect(&self) {}
        async fn disconnect(&self) {}
        async fn resolve_identifier(
            &self,
            typed: &str,
        ) -> estuary_bridge_api::Result<RemoteUserId> {
            Ok(RemoteUserId::new(typed))
        }
        async fn send_message(&self, _msg: Outgoing) -> estuary_bridge_api::Result<Sent> {
            Err(BridgeError::not_acceptable("not in this test"))
        }
    }

    fn session() -> Session {
        Session::new("u@example.org".into(), LoginId::new("u"), Box::new(Idle))
    }

    #[test]
    fn a_receipt_is_given_once_and_its_map_goes_with_the_last() {
        let s = session();
        s.want_receipt(RemoteMessageId::new("r1"), "x1".into());
        s.want_receipt(RemoteMessageId::new("r2"), "x2".into());
        assert_eq!(
            s.take_receipt(&RemoteMessageId::new("r1")).as_deref(),
            Some("x1")
        );
        assert_eq!(s.take_receipt(&RemoteMessageId::new("r1")), None);
        assert!(lock(&s.receipts).is_some(), "r2 is still awaited");
        assert_eq!(
            s.take_receipt(&RemoteMessageId::new("r2")).as_deref(),
            Some("x2")
        );
        assert!(lock(&s.receipts).is_none(), "nothing awaited, no map");
        assert_eq!(s.take_receipt(&RemoteMessageId::new("r3")), None);
    }

    /// Every user has a session (in an `Arc`, 16 bytes more): keeping it at 240 bytes keeps
    /// it in jemalloc's 256-byte class instead of 320.
    #[test]
    fn a_session_stays_small() {
        let size = std::mem::size_of::<Session>();
        assert!(size <= 240, "a session is {size} bytes");
    }
}
