//! Presences from XMPP users: the gateway's own presence, contact subscriptions, and MUC
//! joins, nick changes and leaves.

use super::iq::Request;
use super::session::{Room, Session, describe};
use super::{Gateway, Target};
use crate::xmpp::muc::{self, Occupant};
use crate::xmpp::{disco, errors, ns};
use estuary_bridge_api::{
    Affiliation, ChatKey, JoinRequest, LoginState, OfflinePolicy, RemoteChatId, Role,
    StandingChange,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a resource that left its last room has to answer a ping before it counts as
/// gone offline (grace and persistent policies only).
const OFFLINE_PING_WAIT: Duration = Duration::from_secs(5);
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Show, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::{debug, info, warn};

impl Gateway {
    pub(super) async fn handle_presence(self: &Arc<Self>, el: Element) {
        let presence = match Presence::try_from(el) {
            Ok(p) => p,
            Err(e) => {
                debug!("malformed presence ignored: {e}");
                return;
            }
        };
        let (Some(from), Some(to)) = (presence.from.clone(), presence.to.clone()) else {
            return;
        };
        let user = from.to_bare();
        let target = match self.target(&to) {
            Ok(t) => t,
            Err(e) => {
                if presence.type_ == PresenceType::None && to.resource().is_some() {
                    self.send(muc::error_presence(to, from, errors::from_bridge(&e)))
                        .await;
                }
                return;
            }
        };
        if !self.allowed(&user) {
            if matches!(presence.type_, PresenceType::None | PresenceType::Subscribe) {
                let mut p = Presence::new(PresenceType::Error)
                    .with_from(to)
                    .with_to(from);
                p.payloads.push(self.not_allowed_error().into());
                self.send(p).await;
            }
            return;
        }
        match target {
            Target::Domain => self.domain_presence(&presence, from).await,
            Target::Chat(ChatKey::Room(room)) => match presence.type_ {
                // A presence to the bare room JID: nothing to join (no nick).
                PresenceType::None => {
                    let err = errors::bad_request("join with a nick: room@gateway/nick");
                    self.send(muc::error_presence(to, from, err)).await;
                }
                // Leaving by the bare room JID (as Biboumi takes it): the resource leaves
                // under the nick it has there.
                PresenceType::Unavailable => {
                    let own = self.session(user.as_str()).and_then(|s| {
                        s.rooms()
                            .get(&room)
                            .filter(|r| r.resources.contains(&from.to_string()))
                            .map(|r| r.nick.clone())
                    });
                    if let Some(nick) = own {
                        self.leave_room(user.as_str(), &from.to_string(), &room, &nick)
                            .await;
                    }
                }
                _ => {}
            },
            Target::Chat(chat) => self.contact_presence(&presence, from, to, chat).await,
            Target::Occupant(room, nick) => {
                self.room_presence(&presence, from, to, room, nick).await
            }
        }
    }

    /// The gateway's presence for a user: reflects the login state, carries caps.
    pub(super) fn gateway_presence(&self, to: Jid, state: Option<&LoginState>) -> Presence {
        let mut p = match state {
            None => {
                let mut p = Presence::available();
                p.set_status(
                    "en",
                    if self.caps.requires_registration {
                        "Not registered"
                    } else {
                        "Ready"
                    },
                );
                p
            }
            Some(LoginState::Connected) => Presence::available(),
            Some(LoginState::Connecting) | Some(LoginState::TransientDisconnect(_)) => {
                Presence::available().with_show(Show::Xa)
            }
            Some(LoginState::BadCredentials(_)) => Presence::available().with_show(Show::Dnd),
            Some(LoginState::LoggedOut(_)) => Presence::unavailable(),
        };
        if let Some(s) = state
            && *s != LoginState::Connected
        {
            p.set_status("en", describe(s));
        }
        p.from = Some(self.jid());
        p.to = Some(to);
        p.payloads.push(disco::caps_element(&self.caps_ver));
        p
    }

    async fn domain_presence(self: &Arc<Self>, presence: &Presence, from: Jid) {
        let user = from.to_bare();
        match presence.type_ {
            PresenceType::None => {
                let registered = self
                    .db
                    .get_login(&self.bridge, user.as_str())
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                let session = match self.session(user.as_str()) {
                    Some(s) => Some(s),
                    None if registered || !self.caps.requires_registration => {
                        self.session_or_open(user.as_str()).await.ok()
                    }
                    None => None,
                };
                let state = session.as_ref().map(|s| {
                    s.resources().insert(from.to_string());
                    s.state()
                });
                self.send(self.gateway_presence(from, state.as_ref())).await;
            }
            PresenceType::Unavailable => {
                if let Some(s) = self.session(user.as_str()) {
                    s.resources().remove(&from.to_string());
                }
            }
            PresenceType::Probe => {
                let state = self.session(user.as_str()).map(|s| s.state());
                self.send(self.gateway_presence(Jid::from(user), state.as_ref()))
                    .await;
            }
            PresenceType::Subscribe => {
                let to = Jid::from(user.clone());
                self.send(answer(
                    Presence::subscribed()
                        .with_from(self.jid())
                        .with_to(to.clone()),
                    presence,
                ))
                .await;
                let state = self.session(user.as_str()).map(|s| s.state());
                self.send(self.gateway_presence(to.clone(), state.as_ref()))
                    .await;
                self.send(mutual(PresenceType::Subscribe, self.jid(), to))
                    .await;
            }
            PresenceType::Unsubscribe => {
                let to = Jid::from(user);
                // The user will not see the gateway's presence any more: it goes offline
                // for them first, as Biboumi does.
                let mut gone = Presence::unavailable();
                gone.from = Some(self.jid());
                gone.to = Some(to.clone());
                self.send(gone).await;
                self.send(answer(
                    Presence::new(PresenceType::Unsubscribed)
                        .with_from(self.jid())
                        .with_to(to.clone()),
                    presence,
                ))
                .await;
                self.send(mutual(PresenceType::Unsubscribe, self.jid(), to))
                    .await;
            }
            _ => {}
        }
    }

    async fn contact_presence(&self, presence: &Presence, from: Jid, to: Jid, chat: ChatKey) {
        let user = from.to_bare();
        let contact = Jid::from(to.to_bare());
        match presence.type_ {
            PresenceType::Subscribe => {
                self.send(answer(
                    Presence::subscribed()
                        .with_from(contact.clone())
                        .with_to(Jid::from(user.clone())),
                    presence,
                ))
                .await;
                if let ChatKey::Service(service) = &chat {
                    // Remembered, so that the server's JID shows its connection as its
                    // presence ([`RemoteEvent::ServiceState`](estuary_bridge_api::RemoteEvent)).
                    let id = service_contact_id(service);
                    if let Err(e) = self
                        .db
                        .upsert_contact(&self.bridge, user.as_str(), &id, None)
                        .await
                    {
                        warn!(bridge = %self.bridge, "cannot remember the subscription: {e}");
                    }
                    self.send(mutual(
                        PresenceType::Subscribe,
                        contact.clone(),
                        Jid::from(user.clone()),
                    ))
                    .await;
                }
                if let ChatKey::Direct(id) = &chat
                    && let Err(e) = self
                        .db
                        .upsert_contact(&self.bridge, user.as_str(), id.as_str(), None)
                        .await
                {
                    warn!(bridge = %self.bridge, "cannot remember the contact: {e}");
                }
            }
            PresenceType::Unsubscribe => {
                if let ChatKey::Service(service) = &chat
                    && let Err(e) = self
                        .db
                        .delete_contact(&self.bridge, user.as_str(), &service_contact_id(service))
                        .await
                {
                    warn!(bridge = %self.bridge, "cannot forget the subscription: {e}");
                }
                self.send(answer(
                    Presence::new(PresenceType::Unsubscribed)
                        .with_from(contact)
                        .with_to(Jid::from(user)),
                    presence,
                ))
                .await;
            }
            PresenceType::Probe => {
                // Presence of foreign people arrives as events; nothing known yet means nothing to say.
            }
            _ => {}
        }
    }

    async fn room_presence(
        self: &Arc<Self>,
        presence: &Presence,
        from: Jid,
        to: Jid,
        room: RemoteChatId,
        nick: String,
    ) {
        if !self.caps.groups {
            self.send(muc::error_presence(
                to,
                from,
                errors::not_implemented(format!("{} has no group chats", self.info.name)),
            ))
            .await;
            return;
        }
        let user = from.to_bare();
        let resource = from.to_string();
        match presence.type_ {
            PresenceType::Unavailable => {
                self.leave_room(user.as_str(), &resource, &room, &nick)
                    .await
            }
            PresenceType::Error => {
                self.leave_room(user.as_str(), &resource, &room, &nick)
                    .await
            }
            PresenceType::None => {
                let session = match self.session_or_open(user.as_str()).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.send(muc::error_presence(to, from, e)).await;
                        return;
                    }
                };
                let intent = muc::read_join(&presence.payloads);
                enum Next {
                    AlreadyIn,
                    ChangeNick(String),
                    ResourceJoins,
                    AskNetwork,
                    Wait,
                }
                let next = {
                    let mut rooms = session.rooms();
                    let r = rooms.get_or_default(room.clone());
                    if r.joined && r.resources.contains(&resource) {
                        if r.nick != nick && !intent.is_join {
                            Next::ChangeNick(r.nick.clone())
                        } else {
                            Next::AlreadyIn
                        }
                    } else if r.joined {
                        r.resources.insert(resource.clone());
                        Next::ResourceJoins
                    } else {
                        let first = r.pending.is_empty();
                        r.pending
                            .push((resource.clone(), nick.clone(), intent.clone()));
                        if first { Next::AskNetwork } else { Next::Wait }
                    }
                };
                match next {
                    Next::AlreadyIn => {
                        // A client that lost track of its join: send the room state again.
                        let existing = session
                            .rooms()
                            .get(&room)
                            .map(|r| r.resources.contains(&resource))
                            .unwrap_or(false);
                        if existing && intent.is_join {
                            self.send_room_state(
                                &session,
                                &room,
                                &resource,
                                intent.max_stanzas,
                                intent.since.as_deref(),
                                false,
                            )
                            .await;
                        }
                    }
                    Next::ChangeNick(_old) => {
                        if !self.caps.nick_changes {
                            self.send(muc::error_presence(
                                to,
                                from,
                                errors::not_implemented("this network does not allow nick changes"),
                            ))
                            .await;
                        } else if let Err(e) =
                            session.client.set_nick(room.clone(), nick.clone()).await
                        {
                            self.send(muc::error_presence(to, from, errors::from_bridge(&e)))
                                .await;
                        }
                    }
                    Next::ResourceJoins => {
                        self.send_room_state(
                            &session,
                            &room,
                            &resource,
                            intent.max_stanzas,
                            intent.since.as_deref(),
                            false,
                        )
                        .await;
                    }
                    Next::AskNetwork => {
                        info!(bridge = %self.bridge, user = %user, room = %room, "joining");
                        let join = JoinRequest {
                            room: room.clone(),
                            nick: nick.clone(),
                            password: intent.password.clone(),
                        };
                        if let Err(e) = session.client.join_room(join).await {
                            session.rooms().remove(&room);
                            self.send(muc::error_presence(to, from, errors::from_bridge(&e)))
                                .await;
                        }
                    }
                    Next::Wait => {}
                }
            }
            _ => {}
        }
    }

    /// `resource` leaves `room` (as `nick`): its unavailable self-presence, and the channel
    /// is parted (or kept, under grace and persistent) when it was the last resource.
    pub(super) async fn leave_room(
        self: &Arc<Self>,
        user: &str,
        resource: &str,
        room: &RemoteChatId,
        nick: &str,
    ) {
        let Some(session) = self.session(user) else {
            return;
        };
        let stays_possible = self.caps.offline != OfflinePolicy::Leave;
        // A persistent room (the user's setting) stays joined on the network when its
        // last resource leaves, whether the user left or went offline.
        let persistent = self.room_policy(&session, room).persistent;
        let (last, keep, own_nick, standing) = {
            let mut rooms = session.rooms();
            let Some(r) = rooms.get_mut(room) else { return };
            r.resources.remove(resource);
            r.pending.retain(|(res, _, _)| res != resource);
            let last = r.resources.is_empty() && r.pending.is_empty();
            // Under a grace or persistent policy a joined room stays (with no resource)
            // until it is known whether the user left it or went offline.
            let keep = last && (stays_possible || persistent) && r.joined;
            let own = r.nick.clone();
            // A persistent room stays joined on the network: the user keeps their place
            // there, and the unavailable presence says which (as Biboumi's does).
            let standing = (keep && persistent)
                .then(|| r.members.get(&own).map(|m| (m.role, m.affiliation)))
                .flatten();
            if last && !keep {
                rooms.remove(room);
            }
            (last, keep, own, standing)
        };
        let own_nick = if own_nick.is_empty() {
            nick.to_string()
        } else {
            own_nick
        };
        if let (Some(from), Ok(to)) = (self.occupant_jid(room, &own_nick), Jid::new(resource)) {
            let codes = [muc::SELF_PRESENCE];
            self.send(muc::occupant_presence(&Occupant {
                from: Some(from),
                to: Some(to),
                codes: &codes,
                unavailable: true,
                role: standing.map(|s| s.0),
                affiliation: standing.map(|s| s.1),
                ..Default::default()
            }))
            .await;
        }
        if keep && persistent {
            info!(bridge = %self.bridge, user, room = %room, "last resource left a persistent room; staying in it");
        } else if keep {
            // The answer to the ping arrives on this user's stanza worker: wait elsewhere.
            let gateway = Arc::clone(self);
            let (room, resource) = (room.clone(), resource.to_owned());
            tokio::spawn(async move {
                gateway.offline_or_left(session, room, resource).await;
            });
        } else if last {
            self.part_room(&session, room).await;
        }
    }

    /// The last resource left a room under a grace or persistent policy: a resource still
    /// online left on purpose (the room is left at once); one gone offline keeps the room
    /// for the grace period, or for good.
    async fn offline_or_left(
        self: Arc<Self>,
        session: Arc<Session>,
        room: RemoteChatId,
        resource: String,
    ) {
        let online = match Jid::new(&resource) {
            Ok(jid) => self.resource_online(&jid, OFFLINE_PING_WAIT).await,
            Err(_) => false,
        };
        let wait = match self.caps.offline {
            _ if online => Duration::ZERO,
            OfflinePolicy::Leave => Duration::ZERO,
            OfflinePolicy::Grace(grace) => grace,
            OfflinePolicy::Persistent => {
                info!(bridge = %self.bridge, user = %session.user, room = %room, "user offline; staying in the room");
                return;
            }
        };
        if !wait.is_zero() {
            info!(bridge = %self.bridge, user = %session.user, room = %room, ?wait, "user offline; staying in the room for the grace period");
            tokio::time::sleep(wait).await;
        }
        // Leave unless a resource came back meanwhile.
        self.leave_if_unused(&session, &room).await;
    }

    /// Leaves a room on the network and forgets it.
    pub(super) async fn part_room(&self, session: &Session, room: &RemoteChatId) {
        let user = session.user.as_str();
        info!(bridge = %self.bridge, user, room = %room, "leaving");
        if let Err(e) = session.client.leave_room(room.clone(), None).await {
            warn!(bridge = %self.bridge, user, room = %room, "leaving failed: {}", e.text);
        }
        if let Err(e) = self.db.delete_room(&self.bridge, user, room.as_str()).await {
            warn!(bridge = %self.bridge, "cannot forget the room: {e}");
        }
    }

    /// Sends a resource the room as it is: occupants, self-presence, history, subject.
    pub(super) async fn send_room_state(
        &self,
        session: &Arc<Session>,
        room: &RemoteChatId,
        resource: &str,
        max_stanzas: Option<usize>,
        since: Option<&str>,
        nick_assigned: bool,
    ) {
        let Ok(to) = Jid::new(resource) else { return };
        // The history is read before the self-presence goes out: a client may send to the
        // room as soon as it has that, and a message of its own archived meanwhile must not
        // come back in the history as well (it is reflected live).
        let history = self.load_history(session, room, max_stanzas, since).await;
        let (members, own_nick, subject, subject_by) = {
            let rooms = session.rooms();
            let Some(r) = rooms.get(room) else { return };
            (
                r.members.iter().cloned().collect::<Vec<_>>(),
                r.nick.clone(),
                r.subject.clone(),
                r.subject_by.clone(),
            )
        };
        for m in members.iter().filter(|m| m.nick != own_nick) {
            let Some(from) = self.occupant_jid(room, &m.nick) else {
                continue;
            };
            let real = self.member_jid(m);
            let avatar = m
                .user
                .as_ref()
                .and_then(|u| self.contact_avatar(&session.user, u));
            self.send(muc::occupant_presence(&Occupant {
                from: Some(from),
                to: Some(to.clone()),
                role: Some(m.role),
                affiliation: Some(m.affiliation),
                jid: real.as_deref(),
                avatar: avatar.as_deref(),
                ..Default::default()
            }))
            .await;
        }
        let me = members.iter().find(|m| m.nick == own_nick);
        // The user's own IRC identity when the network gave it (as the others see them),
        // else the user's own JID.
        let own_jid = me
            .filter(|m| m.address.is_some())
            .and_then(|m| self.member_jid(m));
        if let Some(from) = self.occupant_jid(room, &own_nick) {
            let mut codes = vec![muc::NON_ANONYMOUS, muc::SELF_PRESENCE];
            if nick_assigned {
                codes.push(muc::NICK_ASSIGNED);
            }
            self.send(muc::occupant_presence(&Occupant {
                from: Some(from),
                to: Some(to.clone()),
                role: Some(
                    me.map(|m| m.role)
                        .unwrap_or(estuary_bridge_api::Role::Participant),
                ),
                affiliation: Some(
                    me.map(|m| m.affiliation)
                        .unwrap_or(estuary_bridge_api::Affiliation::None),
                ),
                jid: Some(own_jid.as_deref().unwrap_or(resource)),
                codes: &codes,
                ..Default::default()
            }))
            .await;
        }
        self.send_history(room, &to, history).await;
        let subject_from = subject_by
            .and_then(|n| self.occupant_jid(room, &n))
            .or_else(|| self.chat_jid(&ChatKey::Room(room.clone())).map(Jid::from));
        if let Some(from) = subject_from {
            self.send(muc::subject_message(from, to, &subject)).await;
        }
    }

    /// Reads the join's history from the archive (by default as many of the last messages
    /// as the user's room policy says, 20 unless set); none when the archive cannot be read.
    async fn load_history(
        &self,
        session: &Arc<Session>,
        room: &RemoteChatId,
        max: Option<usize>,
        since: Option<&str>,
    ) -> Vec<crate::db::ArchivedMessage> {
        let default = self.room_policy(session, room).history_length;
        let limit = max.unwrap_or(default).min(100);
        if limit == 0 {
            return Vec::new();
        }
        let q = crate::db::ArchiveQuery {
            start_ms: since
                .and_then(crate::xmpp::message::parse_rfc3339)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64),
            limit: limit as i64,
            last_page: true,
            ..Default::default()
        };
        match self
            .db
            .archive_query(&self.bridge, &session.user, room.as_str(), &q)
            .await
        {
            Ok(page) => page.messages,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot read the room archive: {e}");
                Vec::new()
            }
        }
    }

    /// Sends a join's history (read with [`Gateway::load_history`]) to `to`.
    async fn send_history(
        &self,
        room: &RemoteChatId,
        to: &Jid,
        history: Vec<crate::db::ArchivedMessage>,
    ) {
        let Some(room_jid) = self.chat_jid(&ChatKey::Room(room.clone())) else {
            return;
        };
        for m in history {
            let Some(from) = self.occupant_jid(room, &m.from_nick) else {
                continue;
            };
            let mut msg = Message::new_with_type(MessageType::Groupchat, Some(to.clone()));
            msg.from = Some(from);
            msg.bodies.insert(Default::default(), m.body.clone());
            let at =
                SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(m.at_ms.max(0) as u64);
            msg.payloads
                .push(crate::xmpp::message::delay(at, room_jid.as_str()));
            msg.payloads.push(crate::xmpp::message::stanza_id(
                &m.stanza_id,
                room_jid.as_str(),
            ));
            self.send(msg).await;
        }
    }

    /// XEP-0045 §8–§9 through muc#admin: a kick (`<item nick='…' role='none'>`), or a
    /// role or affiliation change (`role='participant'` grants voice, `'visitor'` revokes
    /// it, `'moderator'` …; `affiliation='member'`, `'admin'` …), carried out on the network.
    pub(super) async fn handle_muc_admin(
        self: &Arc<Self>,
        req: &Request,
        room: &RemoteChatId,
    ) -> Result<Option<Element>, StanzaError> {
        let item = req
            .payload
            .get_child("item", ns::MUC_ADMIN)
            .ok_or_else(|| errors::bad_request("muc#admin needs an <item/>"))?;
        let nick = item
            .attr("nick")
            .ok_or_else(|| errors::bad_request("the <item/> needs a nick"))?;
        let change = match (item.attr("role"), item.attr("affiliation")) {
            (Some("none"), _) => None,
            (_, Some(affiliation)) => {
                Some(StandingChange::Affiliation(parse_affiliation(affiliation)?))
            }
            (Some(role), None) => Some(StandingChange::Role(parse_role(role)?)),
            (None, None) => {
                return Err(errors::bad_request(
                    "the <item/> needs a role or an affiliation",
                ));
            }
        };
        let session = self
            .session(req.user().as_str())
            .ok_or_else(|| errors::not_acceptable("join the room first"))?;
        let done = match change {
            Some(change) => {
                session
                    .client
                    .set_standing(room.clone(), nick.to_string(), change)
                    .await
            }
            None => {
                if !self.caps.kicks {
                    return Err(errors::not_implemented(format!(
                        "{} does not allow kicking",
                        self.info.name
                    )));
                }
                let reason = item.get_child("reason", ns::MUC_ADMIN).map(|r| r.text());
                session
                    .client
                    .kick(room.clone(), nick.to_string(), reason)
                    .await
            }
        };
        done.map_err(|e| errors::from_bridge(&e))?;
        Ok(None)
    }
}

/// A muc#admin `role` other than `none` (which is a kick).
fn parse_role(role: &str) -> Result<Role, StanzaError> {
    match role {
        "moderator" => Ok(Role::Moderator),
        "participant" => Ok(Role::Participant),
        "visitor" => Ok(Role::Visitor),
        other => Err(errors::bad_request(format!("unknown role '{other}'"))),
    }
}

/// A muc#admin `affiliation`; `outcast` (a ban) is not done.
fn parse_affiliation(affiliation: &str) -> Result<Affiliation, StanzaError> {
    match affiliation {
        "owner" => Ok(Affiliation::Owner),
        "admin" => Ok(Affiliation::Admin),
        "member" => Ok(Affiliation::Member),
        "none" => Ok(Affiliation::None),
        "outcast" => Err(errors::not_implemented(
            "banning (affiliation 'outcast') is not supported here",
        )),
        other => Err(errors::bad_request(format!(
            "unknown affiliation '{other}'"
        ))),
    }
}

/// Records a network-confirmed join in the room state; returns the resources to greet.
pub(super) fn confirm_join(
    room: &mut Room,
    own_nick: &str,
) -> Vec<(String, bool, Option<usize>, Option<String>)> {
    room.joined = true;
    room.nick = own_nick.to_string();
    // Taken, not drained: the emptied vector keeps no room while the user stays joined.
    std::mem::take(&mut room.pending)
        .into_iter()
        .map(|(res, asked, intent)| {
            room.resources.insert(res.clone());
            (res, asked != own_nick, intent.max_stanzas, intent.since)
        })
        .collect()
}

/// The `contacts` row that records a user's subscription to a service's JID (an IRC
/// server's): `service:` and the service, which no bridge's contact id can be (IRC
/// nicks, Matrix ids, addresses and numbers hold no `:` after a plain word like this).
pub(super) fn service_contact_id(service: &str) -> String {
    format!("service:{service}")
}

/// The gateway's own subscription request (or its withdrawal) to the user, after the
/// user's: subscriptions to the gateway and to a server's JID are mutual (`both`), as with
/// Biboumi, so that the user's server tells the gateway when the user comes and goes.
fn mutual(type_: PresenceType, from: Jid, to: Jid) -> Presence {
    Presence::new(type_).with_from(from).with_to(to)
}

/// A presence answering `request` (a subscription request): it carries the request's id,
/// as RFC 6121 expects of a reply and clients use to match it.
fn answer(mut p: Presence, request: &Presence) -> Presence {
    p.id.clone_from(&request.id);
    p
}
