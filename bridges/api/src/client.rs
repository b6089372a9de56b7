//! Core → foreign side: the commands a client takes.

use crate::{
    BridgeError, ChatKey, ChatState, CommandContext, CommandOutput, CommandTarget, FormValues,
    MessageKind, RemoteChatId, RemoteMessageId, RemoteUserId, Result, RoomInfo,
};
use async_trait::async_trait;

/// A message the user sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Where to.
    pub chat: ChatKey,
    /// The text (may hold several lines; the bridge splits as its network needs); with
    /// attachments, their caption (empty: none).
    pub body: String,
    /// Files sent with it (XEP-0066 OOB, XEP-0447), within
    /// [`Capabilities::attachments`](crate::Capabilities::attachments).
    pub attachments: Vec<crate::Attachment>,
    /// Normal or action (`/me`).
    pub kind: MessageKind,
    /// The XEP-0359 origin id (or message id) the client gave it.
    pub origin_id: Option<String>,
    /// The message it replies to.
    pub reply_to: Option<RemoteMessageId>,
    /// Opens once the core's rows for this message (its archive row) are durable: a
    /// bridge that sends in order holds the message until then ([`crate::gate`]); open
    /// when there is nothing to wait for.
    pub gate: crate::SendGate,
}

/// What the network said about a sent message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// The network's id for it, if known at once.
    pub id: Option<RemoteMessageId>,
    /// The network will echo it back as a [`RemoteEvent::Message`](crate::RemoteEvent)
    /// with `is_from_me` (IRCv3 echo-message, Matrix sync); the core then reflects the echo
    /// in rooms instead of reflecting at once.
    pub will_echo: bool,
    /// The text was a command the bridge ran (an IRC `/mode` typed in a room), not posted:
    /// the core reflects nothing and keeps no id for it.
    pub ran_as_command: bool,
}

/// What someone's software says it is (XEP-0092), as far as the network tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoftwareVersion {
    /// The software's name.
    pub name: String,
    /// Its version (empty when not told).
    pub version: String,
    /// The operating system, where told.
    pub os: Option<String>,
}

/// A request to join a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    /// The room.
    pub room: RemoteChatId,
    /// The nick asked for (the MUC resource).
    pub nick: String,
    /// The room password, where given.
    pub password: Option<String>,
}

/// One login's live connection to its network.
///
/// Optional abilities default to [`BridgeError::unsupported`] and must agree with
/// [`Capabilities`](crate::Capabilities).
#[async_trait]
pub trait Client: Send + Sync {
    /// Connects. Failures are reported as [`LoginState`](crate::LoginState) events, never returned.
    async fn connect(&self);
    /// Disconnects and stops reconnecting.
    async fn disconnect(&self);
    /// Turns what a user typed ("alice", "+1 555 123") into a contact (XEP-0100).
    async fn resolve_identifier(&self, typed: &str) -> Result<RemoteUserId>;
    /// Sends a message.
    async fn send_message(&self, msg: Outgoing) -> Result<Sent>;

    /// The user changed (`Some`) or removed (`None`) their settings for an entity (see
    /// [`Connector::settings_fields`](crate::Connector::settings_fields)). The default sends
    /// a service's to [`service_settings_changed`](Self::service_settings_changed) and
    /// ignores others.
    async fn settings_changed(&self, target: &CommandTarget, settings: Option<FormValues>) {
        if let CommandTarget::Service(s) = target {
            self.service_settings_changed(s, settings).await;
        }
    }

    /// Runs a bridge command that needs the live connection (see
    /// [`Connector::run_command`](crate::Connector::run_command), which is free to hand
    /// commands on to this). The default knows none.
    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
    ) -> Result<CommandOutput> {
        let _ = (ctx, form);
        Err(BridgeError::not_found(format!("no command {node}")))
    }

    /// Disconnects, telling the network `reason` where it can (an IRC QUIT message). The
    /// default is [`disconnect`](Self::disconnect).
    async fn quit(&self, reason: &str) {
        let _ = reason;
        self.disconnect().await;
    }

    /// The user changed (`Some`) or removed (`None`) their settings for `service` (see
    /// [`Connector::service_fields`](crate::Connector::service_fields)); they apply from
    /// the next connection to it. The default ignores it.
    async fn service_settings_changed(&self, service: &str, settings: Option<FormValues>) {
        let _ = (service, settings);
    }

    /// Corrects an earlier message.
    async fn send_edit(
        &self,
        chat: ChatKey,
        target: RemoteMessageId,
        body: String,
    ) -> Result<Sent> {
        let _ = (chat, target, body);
        Err(BridgeError::unsupported("correcting a message"))
    }
    /// Sets the user's reactions to a message (the full set; empty removes all).
    async fn send_reaction(
        &self,
        chat: ChatKey,
        target: RemoteMessageId,
        reactions: Vec<String>,
    ) -> Result<()> {
        let _ = (chat, target, reactions);
        Err(BridgeError::unsupported("reacting to a message"))
    }
    /// Retracts a message.
    async fn send_retraction(&self, chat: ChatKey, target: RemoteMessageId) -> Result<()> {
        let _ = (chat, target);
        Err(BridgeError::unsupported("retracting a message"))
    }
    /// Sends a typing notification.
    async fn send_chat_state(&self, chat: ChatKey, state: ChatState) -> Result<()> {
        let _ = (chat, state);
        Err(BridgeError::unsupported("typing notifications"))
    }
    /// Marks messages as read up to `up_to`.
    async fn send_read_marker(&self, chat: ChatKey, up_to: RemoteMessageId) -> Result<()> {
        let _ = (chat, up_to);
        Err(BridgeError::unsupported("read markers"))
    }
    /// Joins a room; completion arrives as `RoomJoined` or `RoomJoinFailed`.
    async fn join_room(&self, join: JoinRequest) -> Result<()> {
        let _ = join;
        Err(BridgeError::unsupported("group chats"))
    }
    /// Leaves a room.
    async fn leave_room(&self, room: RemoteChatId, reason: Option<String>) -> Result<()> {
        let _ = (room, reason);
        Err(BridgeError::unsupported("group chats"))
    }
    /// Sets a room's topic.
    async fn set_topic(&self, room: RemoteChatId, topic: String) -> Result<()> {
        let _ = (room, topic);
        Err(BridgeError::unsupported("changing the topic"))
    }
    /// Changes the user's nick in a room; confirmed by a `MemberChanged::Renamed` event.
    async fn set_nick(&self, room: RemoteChatId, nick: String) -> Result<()> {
        let _ = (room, nick);
        Err(BridgeError::unsupported("changing nick"))
    }
    /// Kicks a member.
    async fn kick(&self, room: RemoteChatId, nick: String, reason: Option<String>) -> Result<()> {
        let _ = (room, nick, reason);
        Err(BridgeError::unsupported("kicking"))
    }
    /// Changes a member's role or affiliation (voice, moderator, …), answered once the
    /// network has done it or refused it; a change that would change nothing succeeds.
    async fn set_standing(
        &self,
        room: RemoteChatId,
        nick: String,
        change: crate::StandingChange,
    ) -> Result<()> {
        let _ = (room, nick, change);
        Err(BridgeError::unsupported("changing roles and affiliations"))
    }
    /// Invites someone on the network into a room.
    async fn invite(&self, room: RemoteChatId, user: RemoteUserId) -> Result<()> {
        let _ = (room, user);
        Err(BridgeError::unsupported("invitations"))
    }
    /// The contact that `nick`, typed in `room` without an address (a mediated invitation
    /// to a bare nick, as Biboumi takes it), names: on networks where a nick is unique on
    /// the room's server, like IRC.
    fn member_by_nick(&self, room: &RemoteChatId, nick: &str) -> Result<RemoteUserId> {
        let _ = (room, nick);
        Err(BridgeError::unsupported("naming someone by nick alone"))
    }
    /// The software of the member `nick` of `room` (XEP-0092 on an occupant), asked on the
    /// network; [`ErrorKind::RemoteTimeout`](crate::ErrorKind) when no answer comes.
    async fn member_version(&self, room: RemoteChatId, nick: String) -> Result<SoftwareVersion> {
        let _ = (room, nick);
        Err(BridgeError::unsupported(
            "asking someone's software version",
        ))
    }
    /// Lists rooms the network offers.
    async fn list_rooms(&self) -> Result<Vec<RoomInfo>> {
        Err(BridgeError::unsupported("listing rooms"))
    }
    /// Lists the rooms of one service (an IRC server's channels), for service discovery on
    /// the service's JID.
    async fn list_service_rooms(&self, service: &str) -> Result<Vec<RoomInfo>> {
        let _ = service;
        Err(BridgeError::unsupported("listing rooms"))
    }
    /// The contacts the user has on the network, with display names (roster sync).
    async fn contacts(&self) -> Result<Vec<(RemoteUserId, Option<String>)>> {
        Ok(Vec::new())
    }
}
