//! Events from the network to XMPP users ("handle-remote").

use super::Gateway;
use super::compact::Members;
use super::messages::chat_key;
use super::presence::confirm_join;
use super::session::Session;
use crate::db::{Ticket, Write};
use crate::xmpp::attachment;
use crate::xmpp::message as msg;
use crate::xmpp::muc::{self, Occupant};
use crate::xmpp::{errors, ns};
use estuary_bridge_api::{
    Attachment, ChatKey, LoginId, LoginState, Member, MemberChange, MessageKind, RemoteChatId,
    RemoteEvent, RemoteMessage, RemoteMessageId, RemoteUserId, Sender, Show, Source,
};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Show as XmppShow, Type as PresenceType};
use tracing::{debug, info, warn};

impl Gateway {
    pub(super) async fn handle_remote(
        self: &Arc<Self>,
        user: &str,
        login: &LoginId,
        event: RemoteEvent,
    ) {
        let Ok(user_jid) = Jid::new(user) else {
            warn!(bridge = %self.bridge, "event for an invalid user JID {user:?} dropped");
            return;
        };
        let session = self.session(user);
        match event {
            RemoteEvent::Message(m) => {
                let (m, why) = self.upload_contents(m).await;
                for m in one_file_each(m, &why) {
                    match (&m.chat, &session) {
                        (ChatKey::Room(_), Some(s)) => self.room_message(s, m).await,
                        (ChatKey::Room(room), None) => {
                            debug!(room = %room, "room message for a user without a session dropped")
                        }
                        _ => self.direct_message(user, &user_jid, m).await,
                    }
                }
            }
            RemoteEvent::Edit {
                chat,
                sender,
                target,
                body,
            } => {
                let Some(xmpp_id) = self.xmpp_id(user, &chat, &target).await else {
                    return;
                };
                let payloads = vec![msg::replace(&xmpp_id)];
                self.deliver(
                    session.as_ref(),
                    &user_jid,
                    &chat,
                    &sender,
                    Some(body),
                    payloads,
                )
                .await;
            }
            RemoteEvent::Reaction {
                chat,
                sender,
                target,
                reactions,
            } => {
                let Some(xmpp_id) = self.xmpp_id(user, &chat, &target).await else {
                    return;
                };
                let payloads = vec![msg::reactions(&xmpp_id, &reactions), msg::store_hint()];
                self.deliver(session.as_ref(), &user_jid, &chat, &sender, None, payloads)
                    .await;
            }
            RemoteEvent::Retraction {
                chat,
                sender,
                target,
            } => {
                let Some(xmpp_id) = self.xmpp_id(user, &chat, &target).await else {
                    return;
                };
                let payloads = vec![msg::retract(&xmpp_id), msg::store_hint()];
                let fallback =
                    "This message was retracted, but your client does not show retractions."
                        .to_string();
                self.deliver(
                    session.as_ref(),
                    &user_jid,
                    &chat,
                    &sender,
                    Some(fallback),
                    payloads,
                )
                .await;
            }
            RemoteEvent::ChatState {
                chat,
                sender,
                state,
            } => {
                if let ChatKey::Direct(_) = chat {
                    self.deliver(
                        session.as_ref(),
                        &user_jid,
                        &chat,
                        &sender,
                        None,
                        vec![msg::chat_state_element(state)],
                    )
                    .await;
                }
            }
            RemoteEvent::ReadUpTo {
                chat,
                sender,
                up_to,
            } => {
                let Some(xmpp_id) = self.xmpp_id(user, &chat, &up_to).await else {
                    return;
                };
                self.deliver(
                    session.as_ref(),
                    &user_jid,
                    &chat,
                    &sender,
                    None,
                    vec![msg::displayed(&xmpp_id)],
                )
                .await;
            }
            RemoteEvent::NotSent {
                chat,
                origin_id,
                error,
            } => {
                let Some(from) = self.chat_jid(&chat) else {
                    return;
                };
                info!(bridge = %self.bridge, user, kind = ?error.kind, "a message accepted earlier was not sent; the sender is told");
                // Accepted (and archived) as it was handed to the network: out of the archive.
                if let (ChatKey::Room(room), Some(s)) = (&chat, &session) {
                    let accepted = s
                        .rooms()
                        .get_mut(room)
                        .and_then(|r| r.take_accepted(&origin_id));
                    if let Some(a) = accepted {
                        self.withdraw_accepted(s, room, &a).await;
                    }
                }
                // To full JIDs (a server drops an error message sent to a bare JID): in a
                // room each joined resource (the sender's is among them), elsewhere each
                // resource available to the gateway.
                let full: Vec<String> = match (&chat, &session) {
                    (ChatKey::Room(room), Some(s)) => s
                        .rooms()
                        .get(room)
                        .map(|r| r.resources.iter().map(|res| res.to_string()).collect())
                        .unwrap_or_default(),
                    (_, Some(s)) => s.resources().iter().cloned().collect(),
                    (_, None) => Vec::new(),
                };
                let to: Vec<Jid> = full.iter().filter_map(|res| Jid::new(res).ok()).collect();
                debug!(bridge = %self.bridge, user, ?to, "message-not-sent errors");
                if to.is_empty() {
                    // No resource known: a chat message from the gateway says it instead.
                    let mut m = Message::new_with_type(
                        MessageType::Chat,
                        Some(Jid::from(user_jid.to_bare())),
                    );
                    m.from = Some(self.jid());
                    m.bodies.insert(
                        Default::default(),
                        format!(
                            "Your message {origin_id} to {from} was not sent: {}",
                            error.text
                        ),
                    );
                    self.send(m).await;
                    return;
                }
                for to in to {
                    let error = errors::from_bridge(&error);
                    self.bounce(Jid::from(from.clone()), to, Some(origin_id.clone()), error)
                        .await;
                }
            }
            RemoteEvent::Delivered { chat, id } => {
                if let Some(s) = &session {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(2), s.send_lock.lock())
                            .await;
                }
                // XEP-0184 answers with the message's own id, kept when the receipt was asked for.
                let Some(xmpp_id) = session.as_ref().and_then(|s| s.take_receipt(&id)) else {
                    return;
                };
                let Some(from) = self.chat_jid(&chat) else {
                    return;
                };
                let mut m =
                    Message::new_with_type(MessageType::Chat, Some(Jid::from(user_jid.to_bare())));
                m.from = Some(Jid::from(from));
                m.payloads.push(msg::receipt(&xmpp_id));
                self.send(m).await;
            }
            RemoteEvent::Presence {
                user: contact,
                show,
                status,
            } => {
                self.profiles
                    .set_presence(user, contact.as_str(), show, status.clone());
                if let Some(p) = self.presence_of_contact(user, &user_jid, &contact, show, status) {
                    self.send(p).await;
                }
            }
            RemoteEvent::ContactAdded {
                user: contact,
                name,
            } => {
                self.contact_known(user, &user_jid, &contact, name.as_deref())
                    .await
            }
            RemoteEvent::UserInfoChanged {
                user: contact,
                name,
                avatar,
            } => {
                self.profile_changed(user, &user_jid, ChatKey::Direct(contact), name, avatar)
                    .await
            }
            RemoteEvent::RoomInfoChanged { room, name, avatar } => {
                self.profile_changed(user, &user_jid, ChatKey::Room(room), name, avatar)
                    .await
            }
            RemoteEvent::RoomJoined {
                room,
                own_nick,
                members,
                subject,
                subject_by,
            } => {
                let Some(s) = session else { return };
                self.room_joined(&s, room, own_nick, members, subject, subject_by)
                    .await;
            }
            RemoteEvent::RoomJoinFailed { room, error } => {
                let Some(s) = session else { return };
                let pending = s
                    .rooms()
                    .remove(&room)
                    .map(|r| r.pending)
                    .unwrap_or_default();
                info!(bridge = %self.bridge, user, room = %room, "join refused: {}", error.text);
                for (res, nick, _) in pending {
                    if let (Some(from), Ok(to)) = (self.occupant_jid(&room, &nick), Jid::new(&res))
                    {
                        self.send(muc::error_presence(from, to, errors::from_bridge(&error)))
                            .await;
                    }
                }
            }
            RemoteEvent::MemberChanged { room, change } => {
                let Some(s) = session else { return };
                self.member_changed(&s, &room, change).await;
            }
            RemoteEvent::SubjectChanged { room, subject, by } => {
                let Some(s) = session else { return };
                let resources = {
                    let mut rooms = s.rooms();
                    let Some(r) = rooms.get_mut(&room) else {
                        return;
                    };
                    r.subject = subject.clone();
                    r.subject_by = by.clone();
                    r.resources.clone()
                };
                let from = by
                    .and_then(|n| self.occupant_jid(&room, &n))
                    .or_else(|| self.chat_jid(&ChatKey::Room(room.clone())).map(Jid::from));
                let Some(from) = from else { return };
                for res in resources {
                    if let Ok(to) = Jid::new(&res) {
                        self.send(muc::subject_message(from.clone(), to, &subject))
                            .await;
                    }
                }
            }
            RemoteEvent::RoomNotice { room, body } => {
                let Some(s) = session else { return };
                let resources = match s.rooms().get(&room) {
                    Some(r) if r.joined => r.resources.clone(),
                    _ => return,
                };
                let Some(from) = self.chat_jid(&ChatKey::Room(room.clone())) else {
                    return;
                };
                for res in resources {
                    let Ok(to) = Jid::new(&res) else { continue };
                    let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
                    m.from = Some(Jid::from(from.clone()));
                    m.bodies.insert(Default::default(), body.clone());
                    self.send(m).await;
                }
            }
            RemoteEvent::RoomLeft { room, reason } => {
                let Some(s) = session else { return };
                let Some(r) = s.rooms().remove(&room) else {
                    return;
                };
                let codes = [muc::SELF_PRESENCE, muc::SERVICE_ERROR];
                for res in r.resources {
                    if let (Some(from), Ok(to)) =
                        (self.occupant_jid(&room, &r.nick), Jid::new(&res))
                    {
                        let mut p = muc::occupant_presence(&Occupant {
                            from: Some(from),
                            to: Some(to),
                            codes: &codes,
                            unavailable: true,
                            reason: reason.as_deref(),
                            ..Default::default()
                        });
                        if let Some(reason) = &reason {
                            p.set_status("en", reason.clone());
                        }
                        self.send(p).await;
                    }
                }
                let _ = self.db.delete_room(&self.bridge, user, room.as_str()).await;
            }
            RemoteEvent::Invited { room, by, reason } => {
                self.invited(&user_jid, &room, by.as_ref(), reason.as_deref())
                    .await
            }
            RemoteEvent::ServiceMessage { service, body } => {
                let from = match service {
                    Some(s) => self.chat_jid(&ChatKey::Service(s)).map(Jid::from),
                    None => Some(self.jid()),
                };
                let Some(from) = from else { return };
                let mut m =
                    Message::new_with_type(MessageType::Chat, Some(Jid::from(user_jid.to_bare())));
                m.from = Some(from);
                m.bodies.insert(Default::default(), body);
                self.send(m).await;
            }
            RemoteEvent::ServiceState { service, online } => {
                self.service_state(&user_jid, user, service, online).await
            }
            RemoteEvent::LoginState(state) => {
                let Some(s) = session else { return };
                s.set_state(state.clone());
                info!(bridge = %self.bridge, user, state = %super::session::describe(&state), "login state");
                self.send(self.gateway_presence(Jid::from(user_jid.to_bare()), Some(&state)))
                    .await;
                if let LoginState::BadCredentials(why) = &state {
                    let mut m = Message::new_with_type(
                        MessageType::Chat,
                        Some(Jid::from(user_jid.to_bare())),
                    );
                    m.from = Some(self.jid());
                    m.bodies.insert(Default::default(), format!("{} refused your login: {why}. Register again with the right credentials (or run the \"Show or change my login\" command).", self.info.name));
                    self.send(m).await;
                }
            }
            RemoteEvent::SaveMetadata(metadata) => self.save_metadata(user, login, &metadata).await,
            RemoteEvent::PostToXmppRoom {
                from,
                room,
                nick,
                body,
            } => self.post_to_xmpp_room(&from, &room, &nick, &body).await,
        }
    }

    /// Stores a login's bridge metadata, creating the login row if the user had none.
    async fn save_metadata(&self, user: &str, login: &LoginId, metadata: &serde_json::Value) {
        let result = match self.db.get_login(&self.bridge, user).await {
            Ok(Some(_)) => {
                self.db
                    .set_login_metadata(&self.bridge, user, metadata)
                    .await
            }
            Ok(None) => {
                self.db
                    .save_login(
                        &self.bridge,
                        user,
                        login.as_str(),
                        &Default::default(),
                        &[],
                        metadata,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(bridge = %self.bridge, user, "cannot store the bridge's metadata: {e}");
        }
    }

    async fn xmpp_id(
        &self,
        user: &str,
        chat: &ChatKey,
        remote: &RemoteMessageId,
    ) -> Option<String> {
        if let Some(s) = self.session(user) {
            // Wait for a send in progress to record its ids (bounded: never a deadlock).
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), s.send_lock.lock()).await;
        }
        match self
            .db
            .xmpp_id_for(&self.bridge, user, &chat_key(chat), remote.as_str())
            .await
        {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                debug!(remote = %remote, "event about a message the gateway never saw; dropped");
                None
            }
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot read the message map: {e}");
                None
            }
        }
    }

    /// A contact's presence to the user, with caps and (XEP-0153) its avatar hash; `None`
    /// when the contact has no JID here.
    pub(super) fn presence_of_contact(
        &self,
        user: &str,
        user_jid: &Jid,
        contact: &RemoteUserId,
        show: Show,
        status: Option<String>,
    ) -> Option<Presence> {
        let from = self.chat_jid(&ChatKey::Direct(contact.clone()))?;
        let mut p = match show {
            Show::Offline => Presence::unavailable(),
            Show::Available => Presence::available(),
            Show::Away => Presence::available().with_show(XmppShow::Away),
            Show::ExtendedAway => Presence::available().with_show(XmppShow::Xa),
            Show::DoNotDisturb => Presence::available().with_show(XmppShow::Dnd),
        };
        if let Some(s) = status {
            p.set_status("en", s);
        }
        if show != Show::Offline {
            p.payloads.push(
                crate::xmpp::disco::contact(&self.info, &self.caps, contact.as_str())
                    .caps_element(),
            );
            p.payloads
                .extend(self.profiles.presence_update(user, contact.as_str()));
        }
        p.from = Some(Jid::from(from));
        p.to = Some(Jid::from(user_jid.to_bare()));
        Some(p)
    }

    async fn contact_known(
        &self,
        user: &str,
        user_jid: &Jid,
        contact: &RemoteUserId,
        name: Option<&str>,
    ) {
        match self
            .db
            .upsert_contact(&self.bridge, user, contact.as_str(), name)
            .await
        {
            Ok(true) => {
                let Some(from) = self.chat_jid(&ChatKey::Direct(contact.clone())) else {
                    return;
                };
                // XEP-0172: the name the network gave, here or in an earlier profile event.
                let name = name.map(str::to_owned).or_else(|| {
                    self.profiles
                        .get(user, crate::db::ProfileKind::Contact, contact.as_str())
                        .and_then(|p| p.name)
                });
                let mut p = Presence::subscribe()
                    .with_from(Jid::from(from))
                    .with_to(Jid::from(user_jid.to_bare()));
                if let Some(n) = name {
                    p.payloads.push(tokio_xmpp::parsers::nick::Nick(n).into());
                }
                self.send(p).await;
            }
            Ok(false) => {}
            Err(e) => warn!(bridge = %self.bridge, "cannot remember the contact: {e}"),
        }
    }

    /// A 1:1 message (or a service's) to the user.
    async fn direct_message(&self, user: &str, user_jid: &Jid, m: RemoteMessage) {
        if m.sender.is_from_me {
            // Sent from elsewhere; without XEP-0356 carbons there is nowhere true to show it.
            return;
        }
        if let ChatKey::Direct(contact) = &m.chat {
            self.contact_known(user, user_jid, contact, None).await;
        }
        let Some(from) = self.chat_jid(&m.chat) else {
            return;
        };
        let id = uuid::Uuid::new_v4().to_string();
        // A notice from a network without rooms (a notifier) is a headline; elsewhere a chat.
        let type_ = if m.kind == MessageKind::Notice && !self.caps.groups {
            MessageType::Headline
        } else {
            MessageType::Chat
        };
        let mut out = Message::new_with_type(type_, Some(Jid::from(user_jid.to_bare())));
        out.from = Some(Jid::from(from));
        out.id = Some(Id(id.clone()));
        out.bodies
            .insert(Default::default(), msg::body_text(&m.body, m.kind));
        out.payloads.extend(oob_of(&m));
        out.payloads.push(msg::origin_id(&id));
        out.payloads.push(msg::markable());
        // Live messages carry no delay, only history and late ones.
        if let Some(delay) = msg::delay_if_late(m.at, SystemTime::now(), &self.domain) {
            out.payloads.push(delay);
        }
        if let Some(reply) = &m.reply_to
            && let Some(x) = self.xmpp_id(user, &m.chat, reply).await
        {
            out.payloads.push(msg::reply(&x));
        }
        let mut rows = Ticket::NONE;
        if let Some(remote) = &m.id {
            rows = self.remember(user, &m.chat, &id, remote).await;
        }
        self.send_after(out, rows).await;
    }

    /// A room message (or the user's own, reflected) to every joined resource, archived.
    pub(super) async fn room_message(&self, session: &Arc<Session>, m: RemoteMessage) {
        let ChatKey::Room(room) = &m.chat else { return };
        let (resources, nick) = {
            let rooms = session.rooms();
            let Some(r) = rooms.get(room).filter(|r| r.joined) else {
                debug!(room = %room, "message for a room not joined; dropped");
                return;
            };
            let nick = m.sender.nick.clone().unwrap_or_else(|| {
                if m.sender.is_from_me {
                    r.nick.clone()
                } else {
                    m.sender.user.to_string()
                }
            });
            (r.resources.clone(), nick)
        };
        let (Some(from), Some(room_jid)) = (self.occupant_jid(room, &nick), self.chat_jid(&m.chat))
        else {
            return;
        };
        let now = SystemTime::now();
        let at = m.at.unwrap_or(now);
        let body = msg::body_text(&m.body, m.kind);
        // The echo of the user's own message, accepted earlier: shown with the stanza-id
        // chosen then, and archived then (unless its row could not be queued; the archive
        // takes that stanza-id once).
        let accepted = match (&m.echo_of, m.sender.is_from_me) {
            (Some(origin), true) => session
                .rooms()
                .get_mut(room)
                .and_then(|r| r.take_accepted(origin)),
            _ => None,
        };
        let record = self.room_policy(session, room).record_history;
        // A room the user chose not to record gets ids but no archive rows.
        let (stanza_id, mut rows) = if let Some(a) = accepted {
            let done = Write::SendDone {
                id: a.pending_id.clone(),
            };
            if let Err(e) = self.db.write_later(done).await {
                warn!(bridge = %self.bridge, "cannot clear a finished send (it may be sent again at the next start): {e}");
            }
            let rows = if a.archived {
                // Shown once the accept's rows are committed (long since, for a line the
                // network's echo answers: the bridge sent it only then).
                a.rows
            } else if !record {
                Ticket::NONE
            } else {
                self.archive_as(
                    &a.stanza_id,
                    &session.user,
                    room.as_str(),
                    &nick,
                    &body,
                    at,
                    m.id.as_ref(),
                )
                .await
            };
            (a.stanza_id, rows)
        } else if record {
            self.archive(
                &session.user,
                room.as_str(),
                &nick,
                &body,
                at,
                m.id.as_ref(),
            )
            .await
        } else {
            (uuid::Uuid::new_v4().to_string(), Ticket::NONE)
        };
        if let Some(remote) = &m.id {
            rows = rows.max(
                self.remember(&session.user, &m.chat, &stanza_id, remote)
                    .await,
            );
            if let Some(origin) = &m.echo_of {
                rows = rows.max(self.remember(&session.user, &m.chat, origin, remote).await);
            }
        }
        let reply = match &m.reply_to {
            Some(r) => self.xmpp_id(&session.user, &m.chat, r).await,
            None => None,
        };
        let kept = match &m.echo_of {
            Some(origin) => session
                .rooms()
                .get_mut(room)
                .map(|r| r.take_ids(origin))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for res in resources {
            let Ok(to) = Jid::new(&res) else { continue };
            let mut out = Message::new_with_type(MessageType::Groupchat, Some(to));
            out.from = Some(from.clone());
            out.id = Some(Id(m.echo_of.clone().unwrap_or_else(|| stanza_id.clone())));
            out.bodies.insert(Default::default(), body.clone());
            out.payloads.extend(oob_of(&m));
            out.payloads
                .push(msg::stanza_id(&stanza_id, room_jid.as_str()));
            if let Some(origin) = &m.echo_of {
                out.payloads.push(msg::origin_id(origin));
            }
            for (id, by) in &kept {
                out.payloads.push(msg::stanza_id(id, by));
            }
            if let Some(delay) = msg::delay_if_late(m.at, now, room_jid.as_str()) {
                out.payloads.push(delay);
            }
            if let Some(x) = &reply {
                out.payloads.push(msg::reply(x));
            }
            self.send_after(out, rows).await;
        }
    }

    /// A payload message (correction, reaction, …) from a contact or a room occupant.
    async fn deliver(
        &self,
        session: Option<&Arc<Session>>,
        user_jid: &Jid,
        chat: &ChatKey,
        sender: &Sender,
        body: Option<String>,
        payloads: Vec<Element>,
    ) {
        match chat {
            ChatKey::Room(room) => {
                let Some(s) = session else { return };
                let resources = s
                    .rooms()
                    .get(room)
                    .map(|r| r.resources.clone())
                    .unwrap_or_default();
                let nick = sender
                    .nick
                    .clone()
                    .unwrap_or_else(|| sender.user.to_string());
                let Some(from) = self.occupant_jid(room, &nick) else {
                    return;
                };
                for res in resources {
                    let Ok(to) = Jid::new(&res) else { continue };
                    let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
                    m.from = Some(from.clone());
                    m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
                    if let Some(b) = &body {
                        m.bodies.insert(Default::default(), b.clone());
                    }
                    m.payloads.extend(payloads.iter().cloned());
                    self.send(m).await;
                }
            }
            _ => {
                let Some(from) = self.chat_jid(chat) else {
                    return;
                };
                let mut m =
                    Message::new_with_type(MessageType::Chat, Some(Jid::from(user_jid.to_bare())));
                m.from = Some(Jid::from(from));
                m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
                if let Some(b) = body {
                    m.bodies.insert(Default::default(), b);
                }
                m.payloads.extend(payloads);
                self.send(m).await;
            }
        }
    }

    async fn room_joined(
        &self,
        s: &Arc<Session>,
        room: RemoteChatId,
        own_nick: String,
        members: Vec<Member>,
        subject: String,
        subject_by: Option<String>,
    ) {
        let (greet, changes, resources) = {
            let mut rooms = s.rooms();
            let r = rooms.get_or_default(room.clone());
            let fresh: Members = members.into_iter().collect();
            // Joined again while already in (the network reconnected and rejoined): the
            // resources already in see who left and who came or changed meanwhile.
            let changes = if r.joined {
                occupant_changes(&r.members, &fresh, &own_nick)
            } else {
                Vec::new()
            };
            r.members = fresh;
            r.subject = subject;
            r.subject_by = subject_by;
            let resources = r.resources.clone();
            (confirm_join(r, &own_nick), changes, resources)
        };
        if !changes.is_empty() {
            let greeted: Vec<&String> = greet.iter().map(|g| &g.0).collect();
            let targets: Vec<Jid> = resources
                .iter()
                .filter(|r| !greeted.contains(r))
                .filter_map(|r| Jid::new(r).ok())
                .collect();
            for (nick, member) in &changes {
                let Some(from) = self.occupant_jid(&room, nick) else {
                    continue;
                };
                let real = member.as_ref().and_then(|m| self.member_jid(m));
                let avatar = member
                    .as_ref()
                    .and_then(|m| m.user.as_ref())
                    .and_then(|u| self.contact_avatar(&s.user, u));
                for to in &targets {
                    self.send(muc::occupant_presence(&Occupant {
                        from: Some(from.clone()),
                        to: Some(to.clone()),
                        role: member.as_ref().map(|m| m.role),
                        affiliation: member.as_ref().map(|m| m.affiliation),
                        jid: real.as_deref(),
                        unavailable: member.is_none(),
                        avatar: avatar.as_deref(),
                        ..Default::default()
                    }))
                    .await;
                }
            }
        }
        if let Err(e) = self
            .db
            .save_room(&self.bridge, &s.user, room.as_str(), &own_nick)
            .await
        {
            warn!(bridge = %self.bridge, "cannot remember the room: {e}");
        }
        for (res, nick_changed, max, since) in greet {
            self.send_room_state(s, &room, &res, max, since.as_deref(), nick_changed)
                .await;
        }
    }

    async fn member_changed(&self, s: &Arc<Session>, room: &RemoteChatId, change: MemberChange) {
        let (resources, own) = match s.rooms().get(room) {
            Some(r) if r.joined => (r.resources.clone(), r.nick.clone()),
            _ => return,
        };
        let targets: Vec<Jid> = resources.iter().filter_map(|r| Jid::new(r).ok()).collect();
        match change {
            MemberChange::Joined(m) => {
                s.rooms().get_mut(room).map(|r| r.members.insert(m.clone()));
                let Some(from) = self.occupant_jid(room, &m.nick) else {
                    return;
                };
                let real = self.member_jid(&m);
                let avatar = m
                    .user
                    .as_ref()
                    .and_then(|u| self.contact_avatar(&s.user, u));
                let self_codes = [muc::SELF_PRESENCE];
                for to in targets {
                    let is_self = m.nick == own;
                    self.send(muc::occupant_presence(&Occupant {
                        from: Some(from.clone()),
                        to: Some(to.clone()),
                        role: Some(m.role),
                        affiliation: Some(m.affiliation),
                        jid: if is_self && m.address.is_none() {
                            Some(to.to_string())
                        } else {
                            real.clone()
                        }
                        .as_deref(),
                        codes: if is_self { &self_codes } else { &[] },
                        avatar: avatar.as_deref(),
                        ..Default::default()
                    }))
                    .await;
                }
            }
            MemberChange::Left { nick, reason } => {
                s.rooms().get_mut(room).map(|r| r.members.remove(&nick));
                let Some(from) = self.occupant_jid(room, &nick) else {
                    return;
                };
                for to in targets {
                    let mut p = muc::occupant_presence(&Occupant {
                        from: Some(from.clone()),
                        to: Some(to),
                        unavailable: true,
                        ..Default::default()
                    });
                    if let Some(r) = &reason {
                        p.set_status("en", r.clone());
                    }
                    self.send(p).await;
                }
            }
            MemberChange::Renamed { old, new } => {
                let is_self = old == own;
                let member = {
                    let mut rooms = s.rooms();
                    let Some(r) = rooms.get_mut(room) else { return };
                    let mut m = r
                        .members
                        .remove(&old)
                        .unwrap_or_else(|| Member::participant(new.clone()));
                    m.nick = new.clone();
                    r.members.insert(m.clone());
                    if is_self {
                        r.nick = new.clone();
                    }
                    m
                };
                let (Some(old_jid), Some(new_jid)) =
                    (self.occupant_jid(room, &old), self.occupant_jid(room, &new))
                else {
                    return;
                };
                let leave_codes: Vec<u16> = if is_self {
                    vec![muc::NICK_CHANGED, muc::SELF_PRESENCE]
                } else {
                    vec![muc::NICK_CHANGED]
                };
                let join_codes: Vec<u16> = if is_self {
                    vec![muc::SELF_PRESENCE]
                } else {
                    vec![]
                };
                for to in targets {
                    self.send(muc::occupant_presence(&Occupant {
                        from: Some(old_jid.clone()),
                        to: Some(to.clone()),
                        role: Some(member.role),
                        affiliation: Some(member.affiliation),
                        new_nick: Some(&new),
                        codes: &leave_codes,
                        unavailable: true,
                        ..Default::default()
                    }))
                    .await;
                    self.send(muc::occupant_presence(&Occupant {
                        from: Some(new_jid.clone()),
                        to: Some(to),
                        role: Some(member.role),
                        affiliation: Some(member.affiliation),
                        codes: &join_codes,
                        ..Default::default()
                    }))
                    .await;
                }
            }
            MemberChange::Kicked { nick, by, reason } => {
                let is_self = nick == own;
                {
                    let mut rooms = s.rooms();
                    if is_self {
                        rooms.remove(room);
                    } else if let Some(r) = rooms.get_mut(room) {
                        r.members.remove(&nick);
                    }
                }
                let Some(from) = self.occupant_jid(room, &nick) else {
                    return;
                };
                let codes: Vec<u16> = if is_self {
                    vec![muc::KICKED, muc::SELF_PRESENCE]
                } else {
                    vec![muc::KICKED]
                };
                for to in targets {
                    self.send(muc::occupant_presence(&Occupant {
                        from: Some(from.clone()),
                        to: Some(to),
                        codes: &codes,
                        unavailable: true,
                        reason: reason.as_deref(),
                        actor: by.as_deref(),
                        ..Default::default()
                    }))
                    .await;
                }
                if is_self {
                    let _ = self
                        .db
                        .delete_room(&self.bridge, &s.user, room.as_str())
                        .await;
                }
            }
        }
    }

    /// A service's connection came up or ended: a user subscribed to the service's JID
    /// gets its presence (available or unavailable), as Biboumi shows an IRC server in
    /// the roster. Nothing for users not subscribed, or where the service's JID is the
    /// gateway's own (a fixed server: the gateway's presence says it).
    async fn service_state(&self, user_jid: &Jid, user: &str, service: String, online: bool) {
        let id = super::presence::service_contact_id(&service);
        match self.db.has_contact(&self.bridge, user, &id).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot read the subscription: {e}");
                return;
            }
        }
        let Some(from) = self.chat_jid(&ChatKey::Service(service)).map(Jid::from) else {
            return;
        };
        if from == self.jid() {
            return;
        }
        let mut p = if online {
            Presence::available()
        } else {
            Presence::unavailable()
        };
        p.from = Some(from);
        p.to = Some(Jid::from(user_jid.to_bare()));
        self.send(p).await;
    }

    /// A XEP-0249 direct invitation into a foreign room, from the inviter's contact JID
    /// (the gateway's when unknown), with a body for clients that do not show invitations.
    async fn invited(
        &self,
        user_jid: &Jid,
        room: &RemoteChatId,
        by: Option<&RemoteUserId>,
        reason: Option<&str>,
    ) {
        let Some(room_jid) = self.chat_jid(&ChatKey::Room(room.clone())) else {
            return;
        };
        let from = by
            .and_then(|u| self.chat_jid(&ChatKey::Direct(u.clone())))
            .map(Jid::from)
            .unwrap_or_else(|| self.jid());
        let mut x = Element::builder("x", ns::CONFERENCE)
            .attr(crate::xmpp::el::a("jid"), room_jid.to_string())
            .build();
        if let Some(r) = reason {
            crate::xmpp::el::set(&mut x, "reason", r);
        }
        let who = by
            .map(|u| u.to_string())
            .unwrap_or_else(|| "Someone".into());
        let mut m = Message::new(Some(Jid::from(user_jid.to_bare())));
        m.from = Some(from);
        m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
        m.bodies.insert(
            Default::default(),
            format!("{who} invites you to {room_jid}"),
        );
        m.payloads.push(x);
        self.send(m).await;
    }

    /// Joins a MUC on an XMPP server as `from@gw/nick` (a presence update if already in) and posts.
    async fn post_to_xmpp_room(&self, from: &RemoteUserId, room: &str, nick: &str, body: &str) {
        let contact = self.chat_jid(&ChatKey::Direct(from.clone()));
        let (Ok(occupant), Some(Ok(sender))) = (
            Jid::new(&format!("{room}/{nick}")),
            contact.map(|c| Jid::new(&format!("{c}/{nick}"))),
        ) else {
            warn!(bridge = %self.bridge, room, nick, "cannot post: the room or nick is not a valid JID");
            return;
        };
        let mut p = Presence::new(PresenceType::None)
            .with_from(sender.clone())
            .with_to(occupant);
        p.payloads.push(
            Element::builder("x", ns::MUC)
                .append(
                    Element::builder("history", ns::MUC)
                        .attr(crate::xmpp::el::a("maxstanzas"), "0")
                        .build(),
                )
                .build(),
        );
        self.send(p).await;
        let Ok(room_jid) = Jid::new(room) else { return };
        let mut m = Message::new_with_type(MessageType::Groupchat, Some(room_jid));
        m.from = Some(sender);
        m.id = Some(Id(uuid::Uuid::new_v4().to_string()));
        m.bodies.insert(Default::default(), body.to_string());
        self.send(m).await;
    }
}

/// What changed among a room's occupants between two full lists (the user's own nick left
/// out): `(nick, None)` for someone gone, `(nick, Some(member))` for someone new or whose
/// role or affiliation changed.
/// A network message as the XMPP messages that show it: the caption (when there is one)
/// and then one message per attachment, whose body is the file's URL and which carries
/// XEP-0066 OOB for it, the only form clients show inline. The network's id goes with the
/// first, so corrections and replies find the caption (or the only file).
///
/// Content still handed over as bytes here could not be placed (see
/// [`Gateway::upload_contents`]): such a file is shown as a line of text saying so, with its
/// name, its size and `why[i]` (the i-th attachment's reason, where given), rather than
/// silently dropped.
pub(super) fn one_file_each(m: RemoteMessage, why: &[Option<String>]) -> Vec<RemoteMessage> {
    if m.attachments.is_empty() {
        return vec![m];
    }
    let mut out = Vec::new();
    let files = m.attachments.clone();
    let mut first = true;
    let mut next = |body: String, attachments: Vec<Attachment>, out: &mut Vec<RemoteMessage>| {
        let mut one = RemoteMessage {
            body,
            attachments,
            ..m.clone()
        };
        if !std::mem::take(&mut first) {
            one.id = None;
            one.echo_of = None;
            one.reply_to = None;
        }
        out.push(one);
    };
    if !m.body.trim().is_empty() {
        next(m.body.clone(), Vec::new(), &mut out);
    }
    for (i, a) in files.into_iter().enumerate() {
        match &a.source {
            Source::Url(url) => next(url.clone(), vec![a], &mut out),
            Source::Content(_) => {
                let size = a
                    .known_size()
                    .map(|s| format!(", {s} bytes"))
                    .unwrap_or_default();
                let reason = why
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "the gateway could not upload it".into());
                let text = format!("[file {}{size} not shown: {reason}]", a.name);
                next(text, Vec::new(), &mut out)
            }
        }
    }
    out
}

/// The XEP-0066 element of a message made by [`one_file_each`] for one file.
fn oob_of(m: &RemoteMessage) -> Option<Element> {
    match m.attachments.as_slice() {
        [a] => match &a.source {
            Source::Url(url) if *url == m.body => Some(attachment::oob(url)),
            _ => None,
        },
        _ => None,
    }
}

fn occupant_changes(old: &Members, new: &Members, own_nick: &str) -> Vec<(String, Option<Member>)> {
    let gone = old
        .iter()
        .filter(|m| m.nick != own_nick && !new.contains(&m.nick))
        .map(|m| (m.nick.clone(), None));
    let changed = new
        .iter()
        .filter(|m| m.nick != own_nick)
        .filter(|m| {
            old.get(&m.nick)
                .is_none_or(|o| o.role != m.role || o.affiliation != m.affiliation)
        })
        .map(|m| (m.nick.clone(), Some(m.clone())));
    gone.chain(changed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_bridge_api::{Affiliation, Content, Role};

    fn said(body: &str, attachments: Vec<Attachment>) -> RemoteMessage {
        RemoteMessage {
            chat: ChatKey::Direct(RemoteUserId::new("alice")),
            sender: Sender {
                user: RemoteUserId::new("alice"),
                nick: None,
                is_from_me: false,
            },
            id: Some(RemoteMessageId::new("r1")),
            body: body.into(),
            attachments,
            kind: MessageKind::Normal,
            at: None,
            reply_to: None,
            echo_of: None,
        }
    }

    #[test]
    fn a_caption_and_two_files_are_three_messages_with_oob_on_the_files() {
        let a = Attachment::from_url("https://u.example/a.png");
        let b = Attachment::from_url("https://u.example/b.png");
        let out = one_file_each(said("look", vec![a, b]), &[]);
        let bodies: Vec<_> = out.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["look", "https://u.example/a.png", "https://u.example/b.png"]
        );
        assert_eq!(out[0].id, Some(RemoteMessageId::new("r1")));
        assert_eq!(out[1].id, None, "the network's id goes with the first only");
        assert!(oob_of(&out[0]).is_none());
        let x = oob_of(&out[2]).expect("a file message carries OOB");
        assert_eq!(
            x.get_child("url", attachment::OOB).unwrap().text(),
            "https://u.example/b.png"
        );
    }

    #[test]
    fn content_without_an_upload_service_is_said_not_dropped() {
        let c = Attachment {
            name: "report.pdf".into(),
            media_type: Some("application/pdf".into()),
            size: None,
            source: Source::Content(Content::from_bytes(vec![0u8; 12])),
        };
        let out = one_file_each(said("", vec![c.clone(), c]), &[None, Some("why".into())]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].id, Some(RemoteMessageId::new("r1")));
        assert_eq!(
            out[0].body,
            "[file report.pdf, 12 bytes not shown: the gateway could not upload it]"
        );
        assert_eq!(out[1].body, "[file report.pdf, 12 bytes not shown: why]");
        assert!(oob_of(&out[0]).is_none());
    }

    #[test]
    fn a_message_without_files_is_unchanged() {
        let m = said("hi", vec![]);
        assert_eq!(one_file_each(m.clone(), &[]), vec![m]);
    }

    fn member(nick: &str, role: Role) -> Member {
        let mut m = Member::participant(nick);
        m.role = role;
        if role == Role::Moderator {
            m.affiliation = Affiliation::Admin;
        }
        m
    }

    #[test]
    fn occupant_changes_after_a_rejoin() {
        let old = [
            member("me", Role::Participant),
            member("stays", Role::Participant),
            member("gone", Role::Participant),
            member("opped", Role::Participant),
        ]
        .into_iter()
        .collect();
        let new = [
            member("me", Role::Moderator),
            member("stays", Role::Participant),
            member("opped", Role::Moderator),
            member("new", Role::Participant),
        ]
        .into_iter()
        .collect();
        let changes = occupant_changes(&old, &new, "me");
        let summary: Vec<(&str, Option<Role>)> = changes
            .iter()
            .map(|(n, m)| (n.as_str(), m.as_ref().map(|m| m.role)))
            .collect();
        assert_eq!(
            summary,
            [
                ("gone", None),
                ("new", Some(Role::Participant)),
                ("opped", Some(Role::Moderator)),
            ]
        );
    }
}
