//! An in-memory bridge for Estuary's tests and demos. Nothing leaves the process.
//!
//! The fake network behaves like a small, friendly chat service:
//!
//! * Every contact (`alice@fake.gw`, any local part without `#`) echoes what you send it,
//!   as `alice: <your text>`, then confirms delivery. When you correct a message, the
//!   contact (or `bot` in a room) corrects its own answer to it (only a message's sender may
//!   correct it); reactions, retractions, typing notifications and read markers are echoed
//!   back as they are.
//! * Every room (`#lobby@fake.gw`, local parts starting with `#`) has two members besides you:
//!   `bot` (moderator) and `carol`. Your messages are echoed as yours, and `bot` answers
//!   `bot heard: <text>`. `#locked` needs the password `letmein`; `#forbidden` refuses
//!   everyone.
//! * Messages may carry up to [`MAX_ATTACHMENTS`] attachments of at most
//!   [`MAX_ATTACHMENT_BYTES`] each; each is recorded as `attach <chat> <name> <type> <size>
//!   <url>` after the `send` line, and the echoes carry the same attachments back.
//! * Registration asks for a username and a password; the password `wrong` is refused.
//! * Tests drive the network through [`FakeNetwork`]: inject any event for any user and read
//!   back every command the gateway sent; give contacts and rooms names and avatars
//!   ([`FakeNetwork::set_contact_profile`], [`FakeNetwork::set_room_profile`]).

mod client;
mod state;

use async_trait::async_trait;
use estuary_bridge_api::{
    AttachmentLimits, AvatarUpdate, BridgeError, BridgeInfo, Capabilities, ChatKey, Client,
    CommandAccess, CommandContext, CommandOutput, CommandScope, CommandSpec, Connector, ErrorKind,
    EventRouter, EventSink, FormField, FormValues, LoginId, MessageKind, Registered, RemoteChatId,
    RemoteEvent, RemoteMessage, RemoteUserId, Result, Sender, StoredLogin, User,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use client::FakeClient;

/// How many attachments the fake network takes in one message.
pub const MAX_ATTACHMENTS: usize = 4;
/// The largest attachment the fake network takes, in bytes (1 MiB).
pub const MAX_ATTACHMENT_BYTES: u64 = 1 << 20;

/// What a fake client was asked to do, recorded for tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// The user (bare JID) whose client it was.
    pub user: String,
    /// A short description, e.g. `send #lobby hello`.
    pub command: String,
}

/// The shared state of the fake network: sinks by user, recorded commands.
#[derive(Clone, Default)]
pub struct FakeNetwork {
    inner: Arc<Mutex<NetworkState>>,
}

#[derive(Default)]
struct NetworkState {
    sinks: HashMap<String, EventSink>,
    recorded: Vec<Recorded>,
    router: Option<EventRouter>,
    login_delay: Option<std::time::Duration>,
}

impl FakeNetwork {
    fn lock(&self) -> std::sync::MutexGuard<'_, NetworkState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, user: &str, command: String) {
        self.lock().recorded.push(Recorded {
            user: user.into(),
            command,
        });
    }

    pub(crate) fn register_sink(&self, user: &str, sink: EventSink) {
        self.lock().sinks.insert(user.into(), sink);
    }

    /// Makes every later login load take `delay` (a slow network at start-up); each load
    /// is then recorded as `load` when it begins.
    pub fn delay_logins(&self, delay: std::time::Duration) {
        self.lock().login_delay = Some(delay);
    }

    fn login_delay(&self) -> Option<std::time::Duration> {
        self.lock().login_delay
    }

    /// Every command the gateway sent so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// Gives `contact` (a fake user name) a display name and/or an avatar as `user`'s
    /// network reports it (a profile change: `name: None` keeps the name,
    /// [`AvatarUpdate::Unchanged`] the avatar). Call again to change them.
    pub async fn set_contact_profile(
        &self,
        user: &str,
        contact: &str,
        name: Option<&str>,
        avatar: AvatarUpdate,
    ) -> Result<()> {
        self.inject(
            user,
            RemoteEvent::UserInfoChanged {
                user: RemoteUserId::new(contact),
                name: name.map(str::to_owned),
                avatar,
            },
        )
        .await
    }

    /// Gives `room` (`#name`) a name and/or an avatar as `user`'s network reports it.
    pub async fn set_room_profile(
        &self,
        user: &str,
        room: &str,
        name: Option<&str>,
        avatar: AvatarUpdate,
    ) -> Result<()> {
        self.inject(
            user,
            RemoteEvent::RoomInfoChanged {
                room: RemoteChatId::new(room),
                name: name.map(str::to_owned),
                avatar,
            },
        )
        .await
    }

    /// Pushes an event to a user as if the network sent it. Uses the user's client if one
    /// is live, else the process-wide router (as a notifying bridge would).
    pub async fn inject(&self, user: &str, event: RemoteEvent) -> Result<()> {
        let sink = {
            let state = self.lock();
            state.sinks.get(user).cloned().or_else(|| {
                state
                    .router
                    .as_ref()
                    .map(|r| r.sink_for(user, LoginId::new(user)))
            })
        };
        let sink =
            sink.ok_or_else(|| BridgeError::not_found(format!("{user} has no fake client")))?;
        sink.send(event)
            .await
            .map_err(|e| BridgeError::internal(e.to_string()))
    }
}

/// The fake bridge's connector.
#[derive(Clone, Default)]
pub struct FakeConnector {
    network: FakeNetwork,
}

impl FakeConnector {
    /// A connector with a fresh network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `[bridges.fake]` (it has no keys of its own beyond the common ones).
    pub fn from_config(_table: &serde_json::Value) -> Result<Self> {
        Ok(Self::new())
    }

    /// The network behind this connector, for tests.
    pub fn network(&self) -> FakeNetwork {
        self.network.clone()
    }
}

#[async_trait]
impl Connector for FakeConnector {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "fake".into(),
            name: "Fake network".into(),
            disco_type: "fake".into(),
            prompt: "Enter the contact's name (letters and digits)".into(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            groups: true,
            requires_registration: true,
            edits: true,
            reactions: true,
            retractions: true,
            replies: true,
            chat_states: true,
            read_markers: true,
            receipts: true,
            nick_changes: true,
            set_topic: true,
            kicks: true,
            room_list: true,
            max_body_bytes: Some(4096),
            attachments: Some(AttachmentLimits {
                max_per_message: MAX_ATTACHMENTS,
                max_bytes: Some(MAX_ATTACHMENT_BYTES),
            }),
            ..Capabilities::default()
        }
    }

    fn registration_fields(&self) -> Vec<FormField> {
        vec![
            FormField::text("username", "Username on the fake network").required(),
            FormField::secret("password", "Password").required(),
            FormField::text("nick", "Nick in rooms").describe("Defaults to the username"),
        ]
    }

    async fn register(&self, user: &User, form: &FormValues) -> Result<Registered> {
        let username = form
            .get("username")
            .ok_or_else(|| BridgeError::bad_request("the username is required"))?;
        if !valid_name(username) {
            return Err(BridgeError::not_acceptable(
                "a username may hold only letters, digits, '-' and '_'",
            ));
        }
        match form.get("password") {
            None => return Err(BridgeError::bad_request("the password is required")),
            Some("wrong") => {
                return Err(BridgeError::new(
                    ErrorKind::NotAuthorized,
                    "the fake network refused this password; try another one",
                ));
            }
            Some(_) => {}
        }
        self.network
            .record(&user.jid, format!("register {username}"));
        Ok(Registered {
            id: LoginId::new(username),
            metadata: serde_json::json!({ "registered_by": user.jid }),
        })
    }

    async fn load_login(&self, login: &StoredLogin, events: EventSink) -> Result<Box<dyn Client>> {
        if let Some(delay) = self.network.login_delay() {
            self.network.record(&login.user.jid, "load".into());
            tokio::time::sleep(delay).await;
        }
        self.network.register_sink(&login.user.jid, events.clone());
        Ok(Box::new(FakeClient::new(
            login,
            events,
            self.network.clone(),
        )))
    }

    fn contact_local_part(&self, id: &RemoteUserId) -> String {
        id.as_str().to_string()
    }

    fn room_local_part(&self, id: &RemoteChatId) -> String {
        id.as_str().to_string()
    }

    fn parse_local_part(&self, local: &str) -> Result<ChatKey> {
        if let Some(name) = local.strip_prefix('#') {
            if valid_name(name) {
                return Ok(ChatKey::Room(RemoteChatId::new(local.to_lowercase())));
            }
        } else if valid_name(local) {
            return Ok(ChatKey::Direct(RemoteUserId::new(local.to_lowercase())));
        }
        Err(BridgeError::not_acceptable(format!(
            "{local:?} is not a fake address: use a name like \"alice\" for a contact or \"#lobby\" for a room"
        )))
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec {
            node: "say".into(),
            name: "Make a contact say something".into(),
            access: CommandAccess::User,
            scope: CommandScope::Gateway,
            instructions: "The contact sends you the text, as if from the network.".into(),
            fields: vec![
                FormField::text("contact", "Contact").required(),
                FormField::text("text", "Text").required(),
            ],
        }]
    }

    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
        _client: Option<&dyn Client>,
    ) -> Result<CommandOutput> {
        if node != "say" {
            return Err(BridgeError::not_found(format!("no command {node}")));
        }
        let contact = form.get("contact").unwrap_or_default().to_lowercase();
        if !valid_name(&contact) {
            return Err(BridgeError::not_acceptable(format!(
                "{contact:?} is not a fake user name: use letters, digits, '-' and '_'"
            )));
        }
        let text = form.get("text").unwrap_or_default().to_string();
        let user = RemoteUserId::new(contact.clone());
        self.network
            .inject(
                &ctx.user.jid,
                RemoteEvent::Message(RemoteMessage {
                    chat: ChatKey::Direct(user.clone()),
                    sender: Sender {
                        user,
                        nick: None,
                        is_from_me: false,
                    },
                    id: None,
                    body: text,
                    attachments: Vec::new(),
                    kind: MessageKind::Normal,
                    at: None,
                    reply_to: None,
                    echo_of: None,
                }),
            )
            .await?;
        Ok(CommandOutput::note(format!("{contact} said it.")))
    }

    async fn start(&self, events: EventRouter) -> Result<()> {
        self.network.lock().router = Some(events);
        Ok(())
    }
}

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let c = FakeConnector::new();
        assert_eq!(
            c.parse_local_part("Alice").unwrap(),
            ChatKey::Direct(RemoteUserId::new("alice"))
        );
        assert_eq!(
            c.parse_local_part("#Lobby").unwrap(),
            ChatKey::Room(RemoteChatId::new("#lobby"))
        );
        assert_eq!(
            c.parse_local_part("a b").unwrap_err().kind,
            ErrorKind::NotAcceptable
        );
        assert_eq!(
            c.parse_local_part("#").unwrap_err().kind,
            ErrorKind::NotAcceptable
        );
    }

    #[tokio::test]
    async fn registration_checks_the_password() {
        let c = FakeConnector::new();
        let user = User {
            jid: "u@localhost".into(),
        };
        let mut form = FormValues::default();
        form.set("username", "u1");
        form.set("password", "wrong");
        assert_eq!(
            c.register(&user, &form).await.unwrap_err().kind,
            ErrorKind::NotAuthorized
        );
        form.set("password", "right");
        assert_eq!(
            c.register(&user, &form).await.unwrap().id,
            LoginId::new("u1")
        );
    }
}
