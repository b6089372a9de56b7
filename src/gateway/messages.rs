//! Messages from XMPP users to the network ("handle-local" for messages).

use super::session::Accepted;
use super::session::Session;
use super::{Gateway, Target};
use crate::db::{ArchivedMessage, RoomSend, Ticket, Write};
use crate::xmpp::message::{self as msg, Inbound};
use crate::xmpp::{errors, ns};
use estuary_bridge_api::{
    Attachment, AttachmentLimits, BridgeError, Capabilities, ChatKey, ErrorKind, Outgoing,
    RemoteChatId, RemoteMessageId, SendGate, Source,
};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::muc::user::{Invite, MucUser};
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::{debug, info, warn};

impl Gateway {
    pub(super) async fn handle_message(self: &Arc<Self>, el: Element) {
        self.handle_message_as(el, Delivery::Live, None).await
    }

    /// [`Gateway::handle_message`], for a message received now or one kept by an earlier
    /// run (see [`Delivery`]) in the table of sends in progress (`kept`). Once handled, the
    /// message's row in that table is deleted, unless a room message's echo is still to come
    /// (its echo, or the network's refusal, deletes it then).
    async fn handle_message_as(
        self: &Arc<Self>,
        el: Element,
        delivery: Delivery,
        kept: Option<Row>,
    ) {
        // Only a replayed room message (archived by an earlier run) may need its addresses
        // afterwards: a live message costs no parsing here.
        let addresses = kept
            .as_ref()
            .filter(|r| r.stanza_id.is_some())
            .map(|_| (el.attr("to").map(Jid::new), el.attr("from").map(Jid::new)));
        let mut row = kept;
        self.handle_message_row(el, delivery, &mut row).await;
        // A room message archived by an earlier run that was not sent now: out of the
        // archive with its row.
        if let Some(Row {
            id,
            stanza_id: Some(stanza_id),
        }) = &row
            && let Some((Some(Ok(to)), Some(Ok(from)))) = addresses
            && let Ok(Target::Chat(ChatKey::Room(room))) = self.target(&to)
        {
            let user = from.to_bare().to_string();
            let send = RoomSend {
                bridge: &self.bridge,
                user: &user,
                room: room.as_str(),
                id,
            };
            match self.db.withdraw_room_send(send, stanza_id).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(bridge = %self.bridge, "cannot take a message that was not sent out of the archive: {e}")
                }
            }
        }
        if let Some(row) = row
            && let Err(e) = self.db.delete_send(&row.id).await
        {
            warn!(bridge = %self.bridge, "cannot clear a finished send (it may be sent again at the next start): {e}");
        }
    }

    /// [`Gateway::handle_message_as`] but for the row's deletion; a room message whose echo
    /// is awaited takes `row`.
    async fn handle_message_row(
        self: &Arc<Self>,
        el: Element,
        delivery: Delivery,
        row: &mut Option<Row>,
    ) {
        let message = match Message::try_from(el.clone()) {
            Ok(m) => m,
            Err(e) => {
                if let (Some(from), Some(to)) = (
                    el.attr("from").and_then(|f| Jid::new(f).ok()),
                    el.attr("to").and_then(|t| Jid::new(t).ok()),
                ) {
                    let id = el.attr("id").map(str::to_string);
                    self.bounce(
                        to,
                        from,
                        id,
                        errors::bad_request(format!("malformed message: {e}")),
                    )
                    .await;
                }
                return;
            }
        };
        let (Some(from), Some(to)) = (message.from.clone(), message.to.clone()) else {
            return;
        };
        if message.type_ == MessageType::Error {
            self.bounced(&from, &to).await;
            return;
        }
        let user = from.to_bare();
        let id = message.id.as_ref().map(|i| i.0.clone());
        if !self.allowed(&user) {
            self.bounce(to, from, id, self.not_allowed_error()).await;
            return;
        }
        let inbound = msg::read(&message);
        let target = match self.target(&to) {
            Ok(t) => t,
            Err(e) => {
                self.bounce(to, from, id, errors::from_bridge(&e)).await;
                return;
            }
        };
        let chat = match target {
            // With a fixed server, what is written to the domain goes to that server (raw
            // commands, as to `server@gw`).
            Target::Domain if inbound.body.is_some() && self.caps.domain_service.is_some() => {
                ChatKey::Service(self.caps.domain_service.clone().unwrap_or_default())
            }
            Target::Domain => {
                if inbound.body.is_some() {
                    let mut reply = Message::new_with_type(MessageType::Chat, Some(from.clone()));
                    reply.from = Some(self.jid());
                    reply.bodies.insert(Default::default(), format!(
                        "This is the {} gateway. Register with it from your client's service discovery, then write to contacts as name@{} or join rooms from the room list. Commands are under the gateway's ad-hoc commands.",
                        self.info.name, self.domain
                    ));
                    self.send(reply).await;
                }
                return;
            }
            Target::Chat(chat) => chat,
            Target::Occupant(room, nick) => {
                // A private message to an occupant goes to the person behind the nick.
                let user_id = self.session(user.as_str()).and_then(|s| {
                    s.rooms()
                        .get(&room)
                        .and_then(|r| r.members.get(&nick).and_then(|m| m.user.clone()))
                });
                match user_id {
                    Some(u) => ChatKey::Direct(u),
                    None => {
                        self.bounce(
                            to,
                            from,
                            id,
                            errors::item_not_found(format!("{nick} is not in the room")),
                        )
                        .await;
                        return;
                    }
                }
            }
        };
        let session = match self.session_or_open(user.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                self.bounce(to, from, id, e).await;
                return;
            }
        };
        if let Some(invitation) = self.invitation(&session, &from, &message, &chat) {
            let done = match invitation {
                Ok(invitation) => self.invite(&session, invitation).await,
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                self.bounce(to, from, id, errors::from_bridge(&e)).await;
            }
            return;
        }
        // A 1:1 message is written down until the network answers, so that a restart in
        // the middle of the send (a webhook being retried, say) sends it again.
        // A room message gets its row (with its archive row) when it is accepted, in
        // `forward_message`.
        let durable = inbound.body.is_some()
            && inbound.replace.is_none()
            && matches!(chat, ChatKey::Direct(_) | ChatKey::Service(_));
        if durable && row.is_none() {
            let pending_id = uuid::Uuid::new_v4().to_string();
            match self
                .db
                .push_send(&self.bridge, user.as_str(), &pending_id, &String::from(&el))
                .await
            {
                Ok(()) => {
                    *row = Some(Row {
                        id: pending_id,
                        stanza_id: None,
                    })
                }
                Err(e) => {
                    warn!(bridge = %self.bridge, "cannot record a send in progress (it is still sent): {e}");
                }
            }
        }
        let source = Handling {
            delivery,
            el: &el,
            row,
        };
        if let Err(e) = self
            .forward_message(&session, &from, &to, &chat, message.type_, inbound, source)
            .await
        {
            self.bounce(to, from, id, errors::from_bridge(&e)).await;
        }
    }

    /// A user's resource bounced a message the gateway sent it. From a room (or one of its
    /// occupants) the resource is in, it is taken for gone and removed from the room, as
    /// Biboumi does: the room stops sending to a client that cannot take its messages.
    async fn bounced(self: &Arc<Self>, from: &Jid, to: &Jid) {
        let room = match self.target(to) {
            Ok(Target::Chat(ChatKey::Room(room)) | Target::Occupant(room, _)) => room,
            _ => {
                debug!(bridge = %self.bridge, "a client bounced one of our messages; ignored");
                return;
            }
        };
        let user = from.to_bare();
        let resource = from.to_string();
        let nick = self.session(user.as_str()).and_then(|s| {
            s.rooms()
                .get(&room)
                .filter(|r| r.resources.contains(&resource))
                .map(|r| r.nick.clone())
        });
        let Some(nick) = nick else {
            debug!(bridge = %self.bridge, room = %room, "a client not in the room bounced a message from it; ignored");
            return;
        };
        info!(bridge = %self.bridge, user = %user, resource = %resource, room = %room, "a resource bounced a room message: removed from the room");
        self.leave_room(user.as_str(), &resource, &room, &nick)
            .await;
    }

    /// Sends again what a previous run handed to the bridge without an answer, oldest first.
    pub(super) async fn replay_pending_sends(self: Arc<Self>) {
        let pending = match self.db.list_sends(&self.bridge).await {
            Ok(p) => p,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot read unfinished sends: {e}");
                return;
            }
        };
        if !pending.is_empty() {
            tracing::info!(bridge = %self.bridge, count = pending.len(), "sending again what the last run left unanswered");
        }
        for send in pending {
            let row = Row {
                id: send.id,
                stanza_id: send.stanza_id,
            };
            match send.payload.parse::<Element>() {
                // Deletes the row once done (or leaves it to the echo).
                Ok(el) => Box::pin(self.handle_message_as(el, Delivery::Kept, Some(row))).await,
                Err(e) => {
                    warn!(bridge = %self.bridge, user = %send.user, "dropping an unreadable unfinished send: {e}");
                    if let Err(e) = self.db.delete_send(&row.id).await {
                        warn!(bridge = %self.bridge, "cannot clear a replayed send: {e}");
                    }
                }
            }
        }
    }

    /// An invitation the user sends: XEP-0045 mediated (`<invite to='…'/>` in a message to
    /// the room, whatever its type) or XEP-0249 direct (`<x jabber:x:conference jid='room'/>`
    /// in a message to the contact). `None` when the message carries no invitation.
    ///
    /// A mediated invitation may name a contact on this gateway, a bare nick on the room's
    /// network (as Biboumi takes it), or an XMPP address elsewhere, which gets the
    /// invitation from the room as XEP-0045 §7.8.2 says.
    fn invitation(
        &self,
        session: &Session,
        from: &Jid,
        message: &Message,
        chat: &ChatKey,
    ) -> Option<Result<Invitation, BridgeError>> {
        match chat {
            ChatKey::Room(room) => {
                let invite = message
                    .payloads
                    .iter()
                    .find(|p| p.is("x", ns::MUC_USER))?
                    .get_child("invite", ns::MUC_USER)?;
                let Some(to) = invite.attr("to").filter(|t| !t.is_empty()) else {
                    return Some(Err(BridgeError::bad_request(
                        "the invitation names nobody: put the invitee's address in <invite to='…'/>",
                    )));
                };
                if !to.contains('@') && !to.contains('/') {
                    return Some(
                        session
                            .client
                            .member_by_nick(room, to)
                            .map(|user| Invitation::Network(room.clone(), user)),
                    );
                }
                let Ok(jid) = Jid::new(to) else {
                    return Some(Err(BridgeError::bad_request(format!(
                        "“{to}” is not an address to invite"
                    ))));
                };
                if jid.domain().as_str() != self.domain {
                    let reason = invite
                        .get_child("reason", ns::MUC_USER)
                        .map(|r| r.text())
                        .filter(|r| !r.is_empty());
                    return Some(Ok(Invitation::Forward {
                        room: room.clone(),
                        to: jid,
                        from: from.clone(),
                        reason,
                    }));
                }
                Some(match self.target(&jid) {
                    Ok(Target::Chat(ChatKey::Direct(user))) => {
                        Ok(Invitation::Network(room.clone(), user))
                    }
                    Ok(_) => Err(BridgeError::bad_request(format!(
                        "{to} is not a contact: invite a contact of this gateway (nick%server@{})",
                        self.domain
                    ))),
                    Err(e) => Err(e),
                })
            }
            ChatKey::Direct(user) => {
                let x = message
                    .payloads
                    .iter()
                    .find(|p| p.is("x", ns::CONFERENCE))?;
                let room = Jid::new(x.attr("jid")?)
                    .ok()
                    .filter(|j| j.domain().as_str() == self.domain)
                    .map(|j| self.target(&j));
                match room {
                    Some(Ok(Target::Chat(ChatKey::Room(room)))) => {
                        Some(Ok(Invitation::Network(room, user.clone())))
                    }
                    _ => None,
                }
            }
            ChatKey::Service(_) => None,
        }
    }

    /// Carries out an invitation: an invite on the network, or a XEP-0045 invitation from
    /// the room to an XMPP address elsewhere.
    async fn invite(&self, session: &Session, invitation: Invitation) -> Result<(), BridgeError> {
        match invitation {
            Invitation::Network(room, user) => session.client.invite(room, user).await,
            Invitation::Forward {
                room,
                to,
                from,
                reason,
            } => {
                let Some(room_jid) = self.chat_jid(&ChatKey::Room(room)) else {
                    return Err(BridgeError::internal("the room has no JID"));
                };
                let mut x = MucUser::new();
                x.invite = Some(Invite {
                    from: Some(from),
                    to: None,
                    reason,
                });
                let mut m = Message::new(Some(to));
                m.from = Some(Jid::from(room_jid));
                m.payloads.push(x.into());
                self.send(m).await;
                Ok(())
            }
        }
    }

    /// Sends an error message back to the user.
    pub(super) async fn bounce(&self, from: Jid, to: Jid, id: Option<String>, error: StanzaError) {
        let mut m = Message::new_with_type(MessageType::Error, Some(to));
        m.from = Some(from);
        m.id = id.map(Id);
        m.payloads.push(error.into());
        self.send(m).await;
    }

    /// Looks an XMPP message id up in the message map.
    async fn remote_id(
        &self,
        user: &str,
        chat: &ChatKey,
        xmpp_id: &str,
    ) -> Result<RemoteMessageId, BridgeError> {
        match self
            .db
            .remote_id_for(&self.bridge, user, &chat_key(chat), xmpp_id)
            .await
        {
            Ok(Some(id)) => Ok(RemoteMessageId::new(id)),
            Ok(None) => Err(BridgeError::not_found(format!(
                "the message {xmpp_id} is not known to the gateway (too old, or never bridged)"
            ))),
            Err(e) => Err(BridgeError::internal(format!("the database failed: {e}"))),
        }
    }

    /// Maps an XMPP message id to the network's id (written behind, with others); the
    /// row's ticket is what a stanza showing the message waits for.
    pub(super) async fn remember(
        &self,
        user: &str,
        chat: &ChatKey,
        xmpp_id: &str,
        remote: &RemoteMessageId,
    ) -> Ticket {
        let write = Write::Map {
            bridge: self.bridge.clone(),
            user: user.to_string(),
            chat: chat_key(chat),
            xmpp_id: xmpp_id.to_string(),
            remote_id: remote.to_string(),
        };
        match self.db.write_later(write).await {
            Ok(ticket) => ticket,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot store the message map: {e}");
                Ticket::NONE
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward_message(
        self: &Arc<Self>,
        session: &Arc<Session>,
        from: &Jid,
        to: &Jid,
        chat: &ChatKey,
        type_: MessageType,
        inbound: Inbound,
        source: Handling<'_>,
    ) -> Result<(), BridgeError> {
        let delivery = source.delivery;
        let user = session.user.as_str();
        let caps = &self.caps;
        let _sending = session.send_lock.lock().await;
        let is_room = matches!(chat, ChatKey::Room(_));
        if is_room && type_ != MessageType::Groupchat {
            return Err(BridgeError::bad_request(
                "messages to a room must be of type groupchat",
            ));
        }
        if let ChatKey::Room(room) = chat {
            // A message kept from a stop is sent to a room the user is still in on the
            // network (joined again at the start), though its client has not come back yet.
            let joined = session.rooms().get(room).is_some_and(|r| match delivery {
                Delivery::Live => r.joined && r.resources.contains(&from.to_string()),
                Delivery::Kept => true,
            });
            if !joined {
                return Err(BridgeError::new(
                    ErrorKind::NotAcceptable,
                    "you are not in this room: join it first",
                ));
            }
            if let Some(subject) = &inbound.subject
                && inbound.body.is_none()
            {
                if !caps.set_topic {
                    return Err(BridgeError::unsupported("changing the topic"));
                }
                return session
                    .client
                    .set_topic(room.clone(), subject.clone())
                    .await;
            }
        }
        if let Some(target) = &inbound.retract {
            if !caps.retractions {
                return Err(BridgeError::unsupported("retracting a message"));
            }
            let remote = self.remote_id(user, chat, target).await?;
            return session.client.send_retraction(chat.clone(), remote).await;
        }
        if let Some((target, reactions)) = &inbound.reactions {
            if !caps.reactions {
                return Err(BridgeError::unsupported("reactions"));
            }
            let remote = self.remote_id(user, chat, target).await?;
            return session
                .client
                .send_reaction(chat.clone(), remote, reactions.clone())
                .await;
        }
        let (body, attachments) = attachments_for(caps, &inbound)?;
        if let Some(body) = &body {
            if body.trim().is_empty() && attachments.is_empty() {
                return Ok(());
            }
            if let Some(max) = caps.max_body_bytes
                && body.len() > max.saturating_mul(16)
            {
                return Err(BridgeError::new(
                    ErrorKind::NotAcceptable,
                    format!(
                        "the message is {} bytes; this network takes at most {} per message (the gateway splits up to 16 of them)",
                        body.len(),
                        max
                    ),
                ));
            }
            if let (ChatKey::Room(room), Some(key)) = (chat, inbound.key()) {
                let kept = msg::foreign_stanza_ids(&inbound.stanza_ids, &self.domain);
                if !kept.is_empty()
                    && let Some(r) = session.rooms().get_mut(room)
                {
                    r.keep_ids(key, kept);
                }
            }
            let mut accepted: Option<Accepted> = None;
            let sent = if let Some(target) = &inbound.replace {
                if !caps.edits {
                    return Err(BridgeError::unsupported("correcting a message"));
                }
                let remote = self.remote_id(user, chat, target).await?;
                session
                    .client
                    .send_edit(chat.clone(), remote, body.clone())
                    .await?
            } else {
                let reply_to = match &inbound.reply_to {
                    Some(r) if caps.replies => self.remote_id(user, chat, r).await.ok(),
                    _ => None,
                };
                // A message with files (to a network that takes them) is archived as its
                // echo comes, one row per file (`one_file_each`), as before: not accepted.
                let accepting = match (chat, inbound.key()) {
                    (ChatKey::Room(room), Some(key)) if attachments.is_empty() => {
                        let what = Accept {
                            room,
                            key,
                            body: &msg::body_text(body, inbound.kind),
                        };
                        self.accept(session, what, source.el, source.row).await
                    }
                    _ => None,
                };
                // The bridge holds the message until its rows are committed; the handler
                // goes on at once.
                let gate = match accepting {
                    Some((a, gate)) => {
                        accepted = Some(a);
                        gate
                    }
                    None => SendGate::open(),
                };
                let sending = session
                    .client
                    .send_message(Outgoing {
                        chat: chat.clone(),
                        body: body.clone(),
                        attachments: attachments.clone(),
                        kind: inbound.kind,
                        origin_id: inbound.key().map(str::to_string),
                        reply_to,
                        gate,
                    })
                    .await;
                match sending {
                    Ok(sent) => sent,
                    Err(e) => {
                        if let (ChatKey::Room(room), Some(a)) = (chat, &accepted) {
                            self.withdraw(session, room, &a.stanza_id).await;
                        }
                        return Err(e);
                    }
                }
            };
            if sent.ran_as_command {
                debug!(bridge = %self.bridge, "the message was run as a command; nothing to reflect");
                if let (ChatKey::Room(room), Some(a)) = (chat, &accepted) {
                    self.withdraw(session, room, &a.stanza_id).await;
                }
                if let (ChatKey::Room(room), Some(key)) = (chat, inbound.key())
                    && let Some(r) = session.rooms().get_mut(room)
                {
                    r.take_ids(key);
                }
                return Ok(());
            }
            super::bump(&self.stats.messages_out);
            let mut mapped = Ticket::NONE;
            if let (Some(key), Some(remote)) = (inbound.key(), &sent.id) {
                mapped = self.remember(user, chat, key, remote).await;
            }
            if inbound.wants_receipt
                && !is_room
                && caps.receipts
                && let (Some(remote), Some(id)) = (&sent.id, &inbound.id)
            {
                session.want_receipt(remote.clone(), id.clone());
            }
            if inbound.wants_receipt && !is_room && !caps.receipts {
                // The network has no receipts: acknowledge that the gateway delivered it.
                if let Some(id) = &inbound.id {
                    let mut m = Message::new_with_type(MessageType::Chat, Some(from.clone()));
                    m.from = Some(Jid::from(to.to_bare()));
                    m.payloads.push(msg::receipt(id));
                    self.send_after(m, mapped).await;
                }
            }
            if let ChatKey::Room(room) = chat
                && !sent.will_echo
            {
                let nick = session
                    .rooms()
                    .get(room)
                    .map(|r| r.nick.clone())
                    .unwrap_or_default();
                let echo = estuary_bridge_api::RemoteMessage {
                    chat: chat.clone(),
                    sender: estuary_bridge_api::Sender {
                        user: estuary_bridge_api::RemoteUserId::new(nick.clone()),
                        nick: Some(nick),
                        is_from_me: true,
                    },
                    id: sent.id.clone(),
                    body: body.clone(),
                    attachments,
                    kind: inbound.kind,
                    at: None,
                    reply_to: None,
                    echo_of: inbound.key().map(str::to_string),
                };
                for m in super::remote::one_file_each(echo, &[]) {
                    self.room_message(session, m).await;
                }
            }
            return Ok(());
        }
        if let Some(up_to) = &inbound.displayed
            && caps.read_markers
            && let Ok(remote) = self.remote_id(user, chat, up_to).await
        {
            let _ = session.client.send_read_marker(chat.clone(), remote).await;
        }
        if let Some(state) = inbound.chat_state
            && caps.chat_states
            && !is_room
        {
            // Typing notifications are best effort: a failure is not worth an error.
            let _ = session.client.send_chat_state(chat.clone(), state).await;
        }
        Ok(())
    }

    /// Accepts a room message of the user's for sending: chooses its stanza-id and, where
    /// the room is recorded, queues its archive row and its row in the table of sends in
    /// progress, one row of the write-behind ([`Write::AcceptedSend`]), committed with the
    /// next batch. The handler does not wait for that commit: the returned gate travels
    /// with the message, and the bridge holds the message until the commit is done
    /// ([`estuary_bridge_api::gate`]), so that a crash can no longer leave a message the
    /// network saw but the archive lacks. The message is remembered in the room until its
    /// echo ([`Room::accepted`](super::session::Room)), which is shown with this stanza-id
    /// and not archived again. A kept `row` that was accepted before (a replay after a
    /// crash) is taken as it is: nothing is archived twice, and its gate is open. `None`
    /// (nothing remembered, the echo archives as it comes) for a room not recorded or not
    /// known.
    async fn accept(
        &self,
        session: &Session,
        what: Accept<'_>,
        el: &Element,
        row: &mut Option<Row>,
    ) -> Option<(Accepted, SendGate)> {
        let Accept { room, key, body } = what;
        if !self.room_policy(session, room).record_history {
            return None;
        }
        let nick = session.rooms().get(room).map(|r| r.nick.clone())?;
        let kept = row.take();
        let (accepted, gate) = match kept {
            Some(Row {
                id,
                stanza_id: Some(stanza_id),
            }) => {
                let accepted = Accepted {
                    key: key.to_string(),
                    stanza_id,
                    pending_id: id,
                    archived: true,
                    rows: Ticket::NONE,
                };
                (accepted, SendGate::open())
            }
            kept => {
                // Time-ordered: replays at the next start go in the order accepted.
                let pending_id = kept
                    .map(|r| r.id)
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                let msg = ArchivedMessage {
                    stanza_id: uuid::Uuid::new_v4().to_string(),
                    from_nick: nick,
                    body: body.to_string(),
                    at_ms: unix_ms(SystemTime::now()),
                    remote_id: None,
                };
                let stanza_id = msg.stanza_id.clone();
                let write = Write::AcceptedSend {
                    bridge: self.bridge.clone(),
                    user: session.user.clone(),
                    room: room.as_str().to_string(),
                    msg,
                    id: pending_id.clone(),
                    payload: String::from(el),
                };
                let (archived, rows) = match self.db.write_later(write).await {
                    Ok(ticket) => (true, ticket),
                    Err(e) => {
                        warn!(bridge = %self.bridge, "cannot archive a room message as it is sent (its echo will): {e}");
                        (false, Ticket::NONE)
                    }
                };
                let gate = if archived {
                    SendGate::after(self.db.durable_mark(), rows.0)
                } else {
                    SendGate::open()
                };
                let accepted = Accepted {
                    key: key.to_string(),
                    stanza_id,
                    pending_id,
                    archived,
                    rows,
                };
                (accepted, gate)
            }
        };
        session.rooms().get_mut(room)?.accept(accepted.clone());
        Some((accepted, gate))
    }

    /// Takes back a room message accepted with [`Gateway::accept`] that did not go out:
    /// forgotten in the room, and its archive row and row of sends in progress deleted, so
    /// that the archive never shows it.
    pub(super) async fn withdraw(&self, session: &Session, room: &RemoteChatId, stanza_id: &str) {
        let taken = session.rooms().get_mut(room).and_then(|r| {
            let at = r.accepted.iter().position(|a| a.stanza_id == stanza_id)?;
            Some(r.accepted.remove(at))
        });
        let Some(accepted) = taken else { return };
        self.withdraw_accepted(session, room, &accepted).await;
    }

    /// The database's part of [`Gateway::withdraw`], for a message already taken out of
    /// its room.
    pub(super) async fn withdraw_accepted(
        &self,
        session: &Session,
        room: &RemoteChatId,
        accepted: &Accepted,
    ) {
        let send = RoomSend {
            bridge: &self.bridge,
            user: &session.user,
            room: room.as_str(),
            id: &accepted.pending_id,
        };
        if let Err(e) = self.db.withdraw_room_send(send, &accepted.stanza_id).await {
            warn!(bridge = %self.bridge, "cannot take a message that was not sent out of the archive: {e}");
        }
    }

    /// Appends a room message to the archive (written behind) and returns its stanza id
    /// and the row's ticket.
    pub(super) async fn archive(
        &self,
        user: &str,
        room_key: &str,
        nick: &str,
        body: &str,
        at: SystemTime,
        remote: Option<&RemoteMessageId>,
    ) -> (String, Ticket) {
        let stanza_id = uuid::Uuid::new_v4().to_string();
        let ticket = self
            .archive_as(&stanza_id, user, room_key, nick, body, at, remote)
            .await;
        (stanza_id, ticket)
    }

    /// [`Gateway::archive`] under a stanza-id chosen before; returns the row's ticket.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn archive_as(
        &self,
        stanza_id: &str,
        user: &str,
        room_key: &str,
        nick: &str,
        body: &str,
        at: SystemTime,
        remote: Option<&RemoteMessageId>,
    ) -> Ticket {
        let stanza_id = stanza_id.to_string();
        let at_ms = unix_ms(at);
        let row = ArchivedMessage {
            stanza_id,
            from_nick: nick.to_string(),
            body: body.to_string(),
            at_ms,
            remote_id: remote.map(|r| r.to_string()),
        };
        let write = Write::Archive {
            bridge: self.bridge.clone(),
            user: user.to_string(),
            room: room_key.to_string(),
            msg: row,
        };
        match self.db.write_later(write).await {
            Ok(ticket) => ticket,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot archive a room message: {e}");
                Ticket::NONE
            }
        }
    }
}

/// Unix milliseconds.
fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where a message being handled comes from, and its row in the table of sends in progress.
struct Handling<'a> {
    /// Received now, or kept by an earlier run.
    delivery: Delivery,
    /// The stanza, as received (what a room message's row keeps).
    el: &'a Element,
    /// Its row, if it has one; a room message waiting for its echo takes it.
    row: &'a mut Option<Row>,
}

/// A room message being accepted (see [`Gateway::accept`]).
struct Accept<'a> {
    /// The room.
    room: &'a RemoteChatId,
    /// The message's origin id (or id).
    key: &'a str,
    /// Its text as archived.
    body: &'a str,
}

/// The message-map key of a chat.
/// An invitation the user sends (see [`Gateway::invitation`]).
enum Invitation {
    /// Invite someone on the network into a room.
    Network(
        estuary_bridge_api::RemoteChatId,
        estuary_bridge_api::RemoteUserId,
    ),
    /// Pass a mediated invitation on to an XMPP address elsewhere, from the room.
    Forward {
        room: estuary_bridge_api::RemoteChatId,
        to: Jid,
        from: Jid,
        reason: Option<String>,
    },
}

pub(super) fn chat_key(chat: &ChatKey) -> String {
    match chat {
        ChatKey::Direct(u) => format!("u:{u}"),
        ChatKey::Room(r) => format!("r:{r}"),
        ChatKey::Service(s) => format!("s:{s}"),
    }
}

/// Whether a message from XMPP is handled as it arrives or was kept by an earlier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// Received now.
    Live,
    /// Kept in the table of sends in progress by a stop or a crash, sent by this start: its
    /// room may be joined on the network without the client being back in it yet.
    Kept,
}

/// A message's row in the table of sends in progress, while it is being handled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Row {
    /// The row's id.
    id: String,
    /// The stanza-id it was archived under when accepted (a room message).
    stanza_id: Option<String>,
}

/// The body and attachments to send for a user's message. A network that takes no
/// attachments gets their URLs as text, after the caption (what it had before attachments
/// were understood); one that takes them gets them within its limits, or the message is
/// refused with `not-acceptable` and a text naming the limit.
fn attachments_for(
    caps: &Capabilities,
    inbound: &Inbound,
) -> Result<(Option<String>, Vec<Attachment>), BridgeError> {
    if inbound.attachments.is_empty() {
        return Ok((inbound.body.clone(), Vec::new()));
    }
    let Some(limits) = &caps.attachments else {
        let mut lines: Vec<&str> = inbound.body.iter().map(String::as_str).collect();
        lines.retain(|l| !l.is_empty());
        let caption = inbound.body.clone().unwrap_or_default();
        for a in &inbound.attachments {
            // A URL the caption already holds ("see https://…") is not said twice.
            if let Source::Url(url) = &a.source
                && !caption.contains(url.as_str())
            {
                lines.push(url);
            }
        }
        return Ok((Some(lines.join("\n")), Vec::new()));
    };
    AttachmentLimits::check(Some(limits), &inbound.attachments)
        .map_err(|e| BridgeError::not_acceptable(e.to_string()))?;
    Ok((inbound.body.clone(), inbound.attachments.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oob_message(body: &str, urls: &[&str]) -> Inbound {
        Inbound {
            body: Some(body.to_string()),
            attachments: urls.iter().map(|u| Attachment::from_url(*u)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_network_without_attachments_gets_the_urls_as_text() {
        let caps = Capabilities::default();
        let (body, atts) =
            attachments_for(&caps, &oob_message("", &["https://u.example/a.png"])).unwrap();
        assert_eq!(body.as_deref(), Some("https://u.example/a.png"));
        assert!(atts.is_empty());
        let (body, _) = attachments_for(
            &caps,
            &oob_message(
                "look",
                &["https://u.example/a.png", "https://u.example/b.png"],
            ),
        )
        .unwrap();
        assert_eq!(
            body.as_deref(),
            Some("look\nhttps://u.example/a.png\nhttps://u.example/b.png")
        );
        let (body, _) = attachments_for(
            &caps,
            &oob_message("see https://u.example/a.png", &["https://u.example/a.png"]),
        )
        .unwrap();
        assert_eq!(body.as_deref(), Some("see https://u.example/a.png"));
    }

    #[test]
    fn too_many_or_too_large_is_not_acceptable_with_the_limit() {
        let caps = Capabilities {
            attachments: Some(AttachmentLimits {
                max_per_message: 1,
                max_bytes: Some(100),
            }),
            ..Default::default()
        };
        let e = attachments_for(
            &caps,
            &oob_message("", &["https://u.example/a", "https://u.example/b"]),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAcceptable);
        assert!(e.text.contains("at most 1 per message"), "{}", e.text);
        let mut big = oob_message("", &["https://u.example/a"]);
        big.attachments[0].size = Some(101);
        let e = attachments_for(&caps, &big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotAcceptable);
        assert!(e.text.contains("at most 100 bytes"), "{}", e.text);
        let (body, atts) =
            attachments_for(&caps, &oob_message("", &["https://u.example/a"])).unwrap();
        assert_eq!(body.as_deref(), Some(""));
        assert_eq!(atts.len(), 1);
    }
}
