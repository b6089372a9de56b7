//! One user's live state on one gateway: the client, its login state, and the rooms joined.

use estuary_bridge_api::{Client, LoginId, LoginState, RemoteChatId, RemoteMessageId, SmallMap};

/// Receipts waited for per user before the oldest are forgotten.
const MAX_PENDING_RECEIPTS: usize = 10_000;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::compact::{Members, StringSet};
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
    /// Receipts the user asked for: the network's message id → the XMPP message id.
    receipts: Mutex<HashMap<RemoteMessageId, String>>,
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
            receipts: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers that the user wants a receipt for a message the network will confirm.
    pub fn want_receipt(&self, remote: RemoteMessageId, xmpp_id: String) {
        let mut r = lock(&self.receipts);
        if r.len() >= MAX_PENDING_RECEIPTS {
            // Confirmations that never came; forgetting them costs a receipt, nothing else.
            r.clear();
        }
        r.insert(remote, xmpp_id);
    }

    /// The XMPP id to confirm for a delivered message, once.
    pub fn take_receipt(&self, remote: &RemoteMessageId) -> Option<String> {
        lock(&self.receipts).remove(remote)
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
