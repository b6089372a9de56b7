//! Foreign side → core: what a client reports.

use crate::{
    BridgeError, ChatKey, ChatState, LoginId, Member, MessageKind, RemoteChatId, RemoteMessageId,
    RemoteUserId, Show,
};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Who sent something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// The foreign identity.
    pub user: RemoteUserId,
    /// The sender's name in a room (the MUC nick); `None` in 1:1 chats.
    pub nick: Option<String>,
    /// The user's own message, sent from elsewhere (or echoed by the network).
    pub is_from_me: bool,
}

/// A message from the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMessage {
    /// Where it was said.
    pub chat: ChatKey,
    /// Who said it.
    pub sender: Sender,
    /// The network's id for it, where it has one.
    pub id: Option<RemoteMessageId>,
    /// Plain text, with XEP-0393 styling where the network had formatting; with
    /// attachments, their caption (empty: none).
    pub body: String,
    /// Files sent with it; the core shows each as body = URL + XEP-0066 OOB, uploading
    /// [`Content`](crate::Content) to the XMPP server's XEP-0363 service first.
    pub attachments: Vec<crate::Attachment>,
    /// Normal, action or notice.
    pub kind: MessageKind,
    /// When it was sent, where the network says (history, server-time).
    pub at: Option<SystemTime>,
    /// The message it replies to.
    pub reply_to: Option<RemoteMessageId>,
    /// For the user's own echoed message: the XMPP origin id the core gave in
    /// [`Outgoing::origin_id`](crate::Outgoing::origin_id), so the core can reflect it
    /// with the id the client expects.
    pub echo_of: Option<String>,
}

/// A change among a room's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Someone joined (or their role changed: same nick, new role).
    Joined(Member),
    /// Someone left, with a reason.
    Left {
        /// Their nick.
        nick: String,
        /// Why, where given.
        reason: Option<String>,
    },
    /// Someone changed nick.
    Renamed {
        /// Old nick.
        old: String,
        /// New nick.
        new: String,
    },
    /// Someone was kicked.
    Kicked {
        /// Their nick.
        nick: String,
        /// Who kicked.
        by: Option<String>,
        /// Why.
        reason: Option<String>,
    },
}

/// The state of a login's connection to its network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginState {
    /// Connecting.
    Connecting,
    /// Connected and usable.
    Connected,
    /// Lost the connection; the client is reconnecting on its own. The text says why.
    TransientDisconnect(String),
    /// The network refused the credentials; the user must fix them.
    BadCredentials(String),
    /// Logged out for good (by the user or the network).
    LoggedOut(String),
}

/// The top-level key of a login's metadata ([`RemoteEvent::SaveMetadata`]) whose object
/// holds secrets: the core seals each value under it at rest (bound to the bridge, the
/// user and the value's key) and hands them back opened in `StoredLogin::metadata`.
pub const SEALED_METADATA_KEY: &str = "sealed";

/// Everything a client reports to the core.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteEvent {
    /// A message arrived (or the user's own was echoed).
    Message(RemoteMessage),
    /// A message was corrected.
    Edit {
        /// Where.
        chat: ChatKey,
        /// Who.
        sender: Sender,
        /// The corrected message.
        target: RemoteMessageId,
        /// The new text.
        body: String,
    },
    /// The sender's reactions to a message are now exactly these.
    Reaction {
        /// Where.
        chat: ChatKey,
        /// Who.
        sender: Sender,
        /// The message reacted to.
        target: RemoteMessageId,
        /// The full set of the sender's reactions (empty: all removed).
        reactions: Vec<String>,
    },
    /// A message was retracted.
    Retraction {
        /// Where.
        chat: ChatKey,
        /// Who.
        sender: Sender,
        /// The retracted message.
        target: RemoteMessageId,
    },
    /// Typing notification.
    ChatState {
        /// Where.
        chat: ChatKey,
        /// Who.
        sender: Sender,
        /// The state.
        state: ChatState,
    },
    /// The other side read up to a message.
    ReadUpTo {
        /// Where.
        chat: ChatKey,
        /// Who.
        sender: Sender,
        /// The last message read.
        up_to: RemoteMessageId,
    },
    /// The network confirmed delivery of a message the user sent.
    Delivered {
        /// Where.
        chat: ChatKey,
        /// The delivered message.
        id: RemoteMessageId,
    },
    /// A contact's availability changed.
    Presence {
        /// Who.
        user: RemoteUserId,
        /// Availability.
        show: Show,
        /// Status text.
        status: Option<String>,
    },
    /// A contact became known (new 1:1 partner, roster sync): the core asks to subscribe.
    ContactAdded {
        /// Who.
        user: RemoteUserId,
        /// Display name.
        name: Option<String>,
    },
    /// A contact's (or a room member's) display name or avatar changed, or is first known.
    /// The core keeps the avatar once per picture and shows both to XMPP clients: the name
    /// in the contact's vCard, the avatar as vcard-temp (XEP-0054), in its presences
    /// (XEP-0153) and as XEP-0084 PEP items, also for the user as a room occupant.
    UserInfoChanged {
        /// Who.
        user: RemoteUserId,
        /// The display name; `None` leaves it as it was.
        name: Option<String>,
        /// The avatar.
        avatar: crate::AvatarUpdate,
    },
    /// A room's name or avatar changed, or is first known: shown in its disco#info (the
    /// avatar's hash per XEP-0486) and its vcard-temp.
    RoomInfoChanged {
        /// The room.
        room: RemoteChatId,
        /// The room's name; `None` leaves it as it was.
        name: Option<String>,
        /// The avatar.
        avatar: crate::AvatarUpdate,
    },
    /// A join the core asked for has completed: the user is in the room.
    RoomJoined {
        /// The room.
        room: RemoteChatId,
        /// The nick the network gave the user (may differ from the one asked for).
        own_nick: String,
        /// Everyone in the room, the user included.
        members: Vec<Member>,
        /// The topic (empty string: none set).
        subject: String,
        /// The nick of who set the topic, where the network says (the subject is then shown
        /// as said by that occupant, as MUC services do).
        subject_by: Option<String>,
    },
    /// A message the user sent, whose send had been accepted, did not reach the network
    /// after all (the connection dropped with it in flight and it could not be sent again,
    /// or the network refused it): the core answers the XMPP sender with an error carrying
    /// the message's id, as it would have for a refused send.
    NotSent {
        /// Where it was to go.
        chat: ChatKey,
        /// The XMPP id of the message, as given in
        /// [`Outgoing::origin_id`](crate::Outgoing::origin_id).
        origin_id: String,
        /// Why.
        error: BridgeError,
    },
    /// A join failed.
    RoomJoinFailed {
        /// The room.
        room: RemoteChatId,
        /// Why.
        error: BridgeError,
    },
    /// A room's membership changed.
    MemberChanged {
        /// The room.
        room: RemoteChatId,
        /// What changed.
        change: MemberChange,
    },
    /// A room's topic changed.
    SubjectChanged {
        /// The room.
        room: RemoteChatId,
        /// The new topic.
        subject: String,
        /// Who set it.
        by: Option<String>,
    },
    /// A line about the room from the room itself (IRC: a mode change), shown to every
    /// joined resource as a groupchat message from the room's JID; not archived.
    RoomNotice {
        /// The room.
        room: RemoteChatId,
        /// The text.
        body: String,
    },
    /// The user is no longer in the room (kicked, parted from elsewhere, network gone).
    RoomLeft {
        /// The room.
        room: RemoteChatId,
        /// Why.
        reason: Option<String>,
    },
    /// Someone on the network invites the user into a room (shown as a XEP-0249 direct
    /// invitation).
    Invited {
        /// The room.
        room: RemoteChatId,
        /// Who invites, where known.
        by: Option<RemoteUserId>,
        /// Why, where given.
        reason: Option<String>,
    },
    /// A message from the network itself (MOTD, server notice), shown from the service.
    ServiceMessage {
        /// The service endpoint, as in [`ChatKey::Service`]; `None` for the gateway domain.
        service: Option<String>,
        /// The text.
        body: String,
    },
    /// A service endpoint's connection came up (`online`) or ended (IRC: the connection
    /// to one server, registered or closed). The core tells a user subscribed to the
    /// service's JID with an available or unavailable presence from it.
    ServiceState {
        /// The service endpoint, as in [`ChatKey::Service`].
        service: String,
        /// Whether it is connected now.
        online: bool,
    },
    /// The login's connection state changed.
    LoginState(LoginState),
    /// Replace the bridge metadata stored with this login (created if the user has none):
    /// the only way a bridge keeps state of its own across restarts. The next
    /// [`load_login`](crate::Connector::load_login) gets it back in `StoredLogin::metadata`.
    /// Secrets go in the top-level object [`SEALED_METADATA_KEY`]: the core seals each of
    /// its values at rest and hands them back opened; the rest is stored in clear.
    SaveMetadata(serde_json::Value),
    /// Post into a MUC room on some XMPP server (not a foreign room): the core joins the
    /// room as `from@domain/nick` if it has not yet, then sends the body as groupchat.
    /// Used by bridges that notify (webhooks); `from` is the contact that posts.
    PostToXmppRoom {
        /// The contact that posts (its local part on the component domain is derived from it).
        from: RemoteUserId,
        /// The room's bare JID, e.g. `dev@conference.example.org`.
        room: String,
        /// The nick to join with.
        nick: String,
        /// The text, with XEP-0393 styling.
        body: String,
    },
}

/// The core's end went away; the client should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the gateway core is no longer listening")]
pub struct SinkClosed;

/// Where a client pushes its events: a bounded queue into the core, tagged with the login.
///
/// Clones share one allocation (the user, the login and the queue's handle): a client and
/// each of its connection tasks hold a sink, for every user of the gateway.
#[derive(Clone, Debug)]
pub struct EventSink {
    inner: std::sync::Arc<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    login: LoginId,
    user: String,
    tx: mpsc::Sender<(String, LoginId, RemoteEvent)>,
}

impl EventSink {
    /// A sink that tags every event with the user's bare JID and the login.
    pub fn new(
        user: impl Into<String>,
        login: LoginId,
        tx: mpsc::Sender<(String, LoginId, RemoteEvent)>,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(SinkInner {
                login,
                user: user.into(),
                tx,
            }),
        }
    }

    fn tagged(&self, event: RemoteEvent) -> (String, LoginId, RemoteEvent) {
        (self.inner.user.clone(), self.inner.login.clone(), event)
    }

    /// Pushes an event, waiting while the core's queue is full (back-pressure, no loss).
    pub async fn send(&self, event: RemoteEvent) -> Result<(), SinkClosed> {
        self.inner
            .tx
            .send(self.tagged(event))
            .await
            .map_err(|_| SinkClosed)
    }

    /// Pushes an event if the core's queue has room now; gives it back when it has not
    /// (wait with [`EventSink::reserve`], then try again), so that a bridge task can go on
    /// with other work (writing to its socket) while the core catches up.
    pub fn try_send(&self, event: RemoteEvent) -> Result<(), TrySend> {
        match self.inner.tx.try_send(self.tagged(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full((_, _, event))) => {
                Err(TrySend::Full(Box::new(event)))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TrySend::Closed),
        }
    }

    /// Waits until the core's queue has room for one event and holds that room: the
    /// event sent with the returned [`EventSlot`] cannot be refused. Cancel-safe (for
    /// `select!`): dropping the future or the slot gives the room back.
    pub async fn reserve(&self) -> Result<EventSlot<'_>, SinkClosed> {
        let permit = self.inner.tx.reserve().await.map_err(|_| SinkClosed)?;
        Ok(EventSlot { sink: self, permit })
    }

    /// The user (bare JID) this sink reports for.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The login this sink reports for.
    pub fn login(&self) -> &LoginId {
        &self.inner.login
    }
}

/// Room for one event in the core's queue, from [`EventSink::reserve`].
pub struct EventSlot<'a> {
    sink: &'a EventSink,
    permit: mpsc::Permit<'a, (String, LoginId, RemoteEvent)>,
}

impl EventSlot<'_> {
    /// Sends the event into the room held.
    pub fn send(self, event: RemoteEvent) {
        self.permit.send(self.sink.tagged(event));
    }
}

/// Why [`EventSink::try_send`] gave an event back.
#[derive(Debug)]
pub enum TrySend {
    /// The core's queue is full: the event, to send again later.
    Full(Box<RemoteEvent>),
    /// The core has stopped.
    Closed,
}

/// Makes [`EventSink`]s for any user: for bridges whose events are not tied to a login the
/// user registered (a webhook that notifies configured JIDs).
#[derive(Clone, Debug)]
pub struct EventRouter {
    tx: mpsc::Sender<(String, LoginId, RemoteEvent)>,
}

impl EventRouter {
    /// A router feeding the core's queue.
    pub fn new(tx: mpsc::Sender<(String, LoginId, RemoteEvent)>) -> Self {
        Self { tx }
    }

    /// A sink whose events are addressed to `user` (a bare JID) under `login`.
    pub fn sink_for(&self, user: &str, login: LoginId) -> EventSink {
        EventSink::new(user, login, self.tx.clone())
    }
}
