//! The fake network's client: echoes everything back, after a short hop through a task.

use crate::FakeNetwork;
use async_trait::async_trait;
use estuary_bridge_api::{
    Affiliation, Attachment, BridgeError, ChatKey, ChatState, Client, ErrorKind, EventSink,
    JoinRequest, LoginState, LoginStore, Member, MemberChange, MessageKind, Outgoing, RemoteChatId,
    RemoteEvent, RemoteMessage, RemoteMessageId, RemoteUserId, Result, Role, RoomInfo, Sender,
    Sent, Source, StoredLogin,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One user's connection to the fake network.
pub struct FakeClient {
    user: String,
    username: String,
    events: EventSink,
    network: FakeNetwork,
    next_id: AtomicU64,
    /// Rooms joined, with the user's nick in each.
    rooms: Mutex<HashMap<RemoteChatId, String>>,
    /// The id of the peer's echo of each message the user sent, so that the peer mirrors
    /// a correction by correcting its own echo (XEP-0308: only the sender corrects).
    echoes: Mutex<HashMap<RemoteMessageId, RemoteMessageId>>,
    /// The login's state store, driven through the `state` contact ([`crate::state`]).
    store: LoginStore,
}

impl FakeClient {
    pub(crate) fn new(login: &StoredLogin, events: EventSink, network: FakeNetwork) -> Self {
        Self {
            user: login.user.jid.clone(),
            username: login
                .fields
                .get("nick")
                .or(login.fields.get("username"))
                .unwrap_or("me")
                .to_string(),
            events,
            network,
            next_id: AtomicU64::new(1),
            rooms: Mutex::new(HashMap::new()),
            echoes: Mutex::new(HashMap::new()),
            store: login.store.clone(),
        }
    }

    fn mint(&self) -> RemoteMessageId {
        RemoteMessageId::new(format!(
            "fake-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RemoteChatId, String>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, command: String) {
        self.network.record(&self.user, command);
    }

    fn echoes(&self) -> std::sync::MutexGuard<'_, HashMap<RemoteMessageId, RemoteMessageId>> {
        self.echoes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The text the peer answers `body` with: `bot heard: …` in rooms, `bob: …` in a chat.
    fn echo_text(chat: &ChatKey, peer: &Sender, body: &str) -> String {
        match chat {
            ChatKey::Room(_) => format!("bot heard: {body}"),
            _ => format!("{}: {body}", peer.user),
        }
    }

    fn peer(&self, chat: &ChatKey) -> Sender {
        match chat {
            ChatKey::Direct(user) => Sender {
                user: user.clone(),
                nick: None,
                is_from_me: false,
            },
            ChatKey::Room(_) => Sender {
                user: RemoteUserId::new("bot"),
                nick: Some("bot".into()),
                is_from_me: false,
            },
            ChatKey::Service(s) => Sender {
                user: RemoteUserId::new(s.clone()),
                nick: None,
                is_from_me: false,
            },
        }
    }

    /// Emits events from a task, as a real network would, so the caller never waits on itself.
    fn emit(&self, events: Vec<RemoteEvent>) {
        let sink = self.events.clone();
        tokio::spawn(async move {
            for e in events {
                if sink.send(e).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Runs a command sent to the `state` contact and answers from it.
    async fn answer_state(&self, chat: &ChatKey, command: &str) -> Sent {
        let answer = crate::state::run(&self.store, command).await;
        let id = self.mint();
        self.emit(vec![
            RemoteEvent::Delivered {
                chat: chat.clone(),
                id: id.clone(),
            },
            RemoteEvent::Message(RemoteMessage {
                chat: chat.clone(),
                sender: self.peer(chat),
                id: Some(self.mint()),
                body: answer,
                attachments: Vec::new(),
                kind: MessageKind::Normal,
                at: None,
                reply_to: None,
                echo_of: None,
            }),
        ]);
        Sent {
            id: Some(id),
            will_echo: false,
            ran_as_command: false,
        }
    }

    fn check_chat(&self, chat: &ChatKey) -> Result<()> {
        match chat {
            ChatKey::Room(room) if !self.rooms().contains_key(room) => Err(BridgeError::new(
                ErrorKind::NotAcceptable,
                format!("you are not in {room}: join it first"),
            )),
            ChatKey::Service(_) => Err(BridgeError::not_acceptable(
                "the fake network has no services",
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Client for FakeClient {
    async fn connect(&self) {
        self.record("connect".into());
        self.emit(vec![
            RemoteEvent::LoginState(LoginState::Connecting),
            RemoteEvent::LoginState(LoginState::Connected),
        ]);
    }

    async fn disconnect(&self) {
        self.record("disconnect".into());
        self.emit(vec![RemoteEvent::LoginState(LoginState::LoggedOut(
            "disconnected on request".into(),
        ))]);
    }

    async fn resolve_identifier(&self, typed: &str) -> Result<RemoteUserId> {
        let name = typed.trim().to_lowercase();
        if crate::valid_name(&name) {
            Ok(RemoteUserId::new(name))
        } else {
            Err(BridgeError::not_acceptable(format!(
                "{typed:?} is not a fake user name: use letters, digits, '-' and '_'"
            )))
        }
    }

    async fn send_message(&self, msg: Outgoing) -> Result<Sent> {
        self.check_chat(&msg.chat)?;
        self.record(format!("send {} {}", chat_name(&msg.chat), msg.body));
        for a in &msg.attachments {
            self.record(attachment_record(&msg.chat, a));
        }
        if msg.body.len() > 4096 {
            return Err(BridgeError::new(
                ErrorKind::NotAcceptable,
                "message longer than 4096 bytes",
            ));
        }
        if let ChatKey::Direct(contact) = &msg.chat
            && contact.as_str() == crate::state::CONTACT
        {
            return Ok(self.answer_state(&msg.chat, &msg.body).await);
        }
        let id = self.mint();
        let echo_id = self.mint();
        self.echoes().insert(id.clone(), echo_id.clone());
        let echo_body = Self::echo_text(&msg.chat, &self.peer(&msg.chat), &msg.body);
        let mut events = Vec::new();
        let peer = self.peer(&msg.chat);
        match &msg.chat {
            ChatKey::Room(room) => {
                let own_nick = self.rooms().get(room).cloned().unwrap_or_default();
                events.push(RemoteEvent::Message(RemoteMessage {
                    chat: msg.chat.clone(),
                    sender: Sender {
                        user: RemoteUserId::new(self.username.clone()),
                        nick: Some(own_nick),
                        is_from_me: true,
                    },
                    id: Some(id.clone()),
                    body: msg.body.clone(),
                    attachments: msg.attachments.clone(),
                    kind: msg.kind,
                    at: None,
                    reply_to: msg.reply_to.clone(),
                    echo_of: msg.origin_id.clone(),
                }));
                events.push(RemoteEvent::Message(RemoteMessage {
                    chat: msg.chat.clone(),
                    sender: peer,
                    id: Some(echo_id),
                    body: echo_body,
                    attachments: msg.attachments.clone(),
                    kind: MessageKind::Normal,
                    at: None,
                    reply_to: None,
                    echo_of: None,
                }));
            }
            _ => {
                events.push(RemoteEvent::Delivered {
                    chat: msg.chat.clone(),
                    id: id.clone(),
                });
                events.push(RemoteEvent::Message(RemoteMessage {
                    chat: msg.chat.clone(),
                    sender: peer.clone(),
                    id: Some(echo_id),
                    body: echo_body,
                    attachments: msg.attachments.clone(),
                    kind: msg.kind,
                    at: None,
                    reply_to: Some(id.clone()),
                    echo_of: None,
                }));
            }
        }
        self.emit(events);
        Ok(Sent {
            id: Some(id),
            will_echo: matches!(msg.chat, ChatKey::Room(_)),
            ran_as_command: false,
        })
    }

    async fn send_edit(
        &self,
        chat: ChatKey,
        target: RemoteMessageId,
        body: String,
    ) -> Result<Sent> {
        self.check_chat(&chat)?;
        self.record(format!("edit {} {} {}", chat_name(&chat), target, body));
        // The peer corrects its own echo of the corrected message, if it answered it.
        let echo = self.echoes().get(&target).cloned();
        if let Some(echo) = echo {
            let sender = self.peer(&chat);
            let body = Self::echo_text(&chat, &sender, &body);
            self.emit(vec![RemoteEvent::Edit {
                chat,
                sender,
                target: echo,
                body,
            }]);
        }
        Ok(Sent {
            id: Some(self.mint()),
            will_echo: false,
            ran_as_command: false,
        })
    }

    async fn send_reaction(
        &self,
        chat: ChatKey,
        target: RemoteMessageId,
        reactions: Vec<String>,
    ) -> Result<()> {
        self.check_chat(&chat)?;
        self.record(format!(
            "react {} {} {}",
            chat_name(&chat),
            target,
            reactions.join(",")
        ));
        let sender = self.peer(&chat);
        self.emit(vec![RemoteEvent::Reaction {
            chat,
            sender,
            target,
            reactions,
        }]);
        Ok(())
    }

    async fn send_retraction(&self, chat: ChatKey, target: RemoteMessageId) -> Result<()> {
        self.check_chat(&chat)?;
        self.record(format!("retract {} {}", chat_name(&chat), target));
        Ok(())
    }

    async fn send_chat_state(&self, chat: ChatKey, state: ChatState) -> Result<()> {
        self.record(format!("chatstate {} {state:?}", chat_name(&chat)));
        if let ChatKey::Direct(_) = chat {
            let sender = self.peer(&chat);
            self.emit(vec![RemoteEvent::ChatState {
                chat,
                sender,
                state,
            }]);
        }
        Ok(())
    }

    async fn send_read_marker(&self, chat: ChatKey, up_to: RemoteMessageId) -> Result<()> {
        self.record(format!("read {} {}", chat_name(&chat), up_to));
        Ok(())
    }

    async fn join_room(&self, join: JoinRequest) -> Result<()> {
        self.record(format!("join {} as {}", join.room, join.nick));
        let event = match join.room.as_str() {
            "#forbidden" => RemoteEvent::RoomJoinFailed {
                room: join.room.clone(),
                error: BridgeError::new(ErrorKind::Forbidden, "you are banned from #forbidden"),
            },
            "#locked" if join.password.as_deref() != Some("letmein") => {
                RemoteEvent::RoomJoinFailed {
                    room: join.room.clone(),
                    error: BridgeError::new(ErrorKind::NotAuthorized, "#locked needs a password"),
                }
            }
            _ if join.nick == "bot" || join.nick == "carol" => RemoteEvent::RoomJoinFailed {
                room: join.room.clone(),
                error: BridgeError::new(
                    ErrorKind::Conflict,
                    format!("the nick {} is in use", join.nick),
                ),
            },
            _ => {
                self.rooms().insert(join.room.clone(), join.nick.clone());
                RemoteEvent::RoomJoined {
                    room: join.room.clone(),
                    own_nick: join.nick.clone(),
                    members: vec![
                        Member {
                            nick: "bot".into(),
                            user: Some(RemoteUserId::new("bot")),
                            role: Role::Moderator,
                            affiliation: Affiliation::Admin,
                            address: None,
                        },
                        Member {
                            nick: "carol".into(),
                            user: Some(RemoteUserId::new("carol")),
                            role: Role::Participant,
                            affiliation: Affiliation::None,
                            address: None,
                        },
                        Member {
                            nick: join.nick.clone(),
                            user: Some(RemoteUserId::new(self.username.clone())),
                            role: Role::Participant,
                            affiliation: Affiliation::Member,
                            address: None,
                        },
                    ],
                    subject: format!("Welcome to {}", join.room),
                    subject_by: None,
                }
            }
        };
        self.emit(vec![event]);
        Ok(())
    }

    async fn leave_room(&self, room: RemoteChatId, reason: Option<String>) -> Result<()> {
        self.record(format!("leave {room} {}", reason.unwrap_or_default()));
        self.rooms().remove(&room);
        Ok(())
    }

    async fn set_topic(&self, room: RemoteChatId, topic: String) -> Result<()> {
        self.check_chat(&ChatKey::Room(room.clone()))?;
        self.record(format!("topic {room} {topic}"));
        let by = self.rooms().get(&room).cloned();
        self.emit(vec![RemoteEvent::SubjectChanged {
            room,
            subject: topic,
            by,
        }]);
        Ok(())
    }

    async fn set_nick(&self, room: RemoteChatId, nick: String) -> Result<()> {
        self.check_chat(&ChatKey::Room(room.clone()))?;
        if nick == "bot" || nick == "carol" {
            return Err(BridgeError::new(
                ErrorKind::Conflict,
                format!("the nick {nick} is in use"),
            ));
        }
        let old = self
            .rooms()
            .insert(room.clone(), nick.clone())
            .unwrap_or_default();
        self.record(format!("nick {room} {old} -> {nick}"));
        self.emit(vec![RemoteEvent::MemberChanged {
            room,
            change: MemberChange::Renamed { old, new: nick },
        }]);
        Ok(())
    }

    async fn kick(&self, room: RemoteChatId, nick: String, reason: Option<String>) -> Result<()> {
        self.check_chat(&ChatKey::Room(room.clone()))?;
        self.record(format!("kick {room} {nick}"));
        let by = self.rooms().get(&room).cloned();
        self.emit(vec![RemoteEvent::MemberChanged {
            room,
            change: MemberChange::Kicked { nick, by, reason },
        }]);
        Ok(())
    }

    async fn list_rooms(&self) -> Result<Vec<RoomInfo>> {
        Ok(["#lobby", "#rust"]
            .into_iter()
            .map(|r| RoomInfo {
                id: RemoteChatId::new(r),
                name: r.into(),
                members: Some(2),
                topic: Some(format!("Welcome to {r}")),
            })
            .collect())
    }
}

fn chat_name(chat: &ChatKey) -> String {
    match chat {
        ChatKey::Direct(u) => u.to_string(),
        ChatKey::Room(r) => r.to_string(),
        ChatKey::Service(s) => s.clone(),
    }
}

/// How a sent attachment is recorded: `attach <chat> <name> <media type> <size> <url>`, with
/// `-` for what is unknown (content handed over is `<content>`).
fn attachment_record(chat: &ChatKey, a: &Attachment) -> String {
    let url = match &a.source {
        Source::Url(u) => u.as_str(),
        Source::Content(_) => "<content>",
    };
    format!(
        "attach {} {} {} {} {}",
        chat_name(chat),
        a.name,
        a.media_type.as_deref().unwrap_or("-"),
        a.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        url
    )
}
