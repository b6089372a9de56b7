//! XEP-0050 ad-hoc commands on every entity of the gateway: the domain (the user's own
//! login, Biboumi's `ping`, `hello` and `disconnect-user`, the admins' view of the
//! gateway), services and rooms (their "Configure" settings), and whatever the bridge
//! declares for each kind of entity.
//!
//! A command is one step or more: executing returns a form (or the result at once), each
//! submitted form is checked against that step's fields, and a bridge may answer with a
//! further form. The values of earlier steps are kept, per session id, until the command
//! completes or is cancelled (at most [`MAX_SESSIONS`], each for [`SESSION_LIFETIME`]).

use super::Gateway;
use super::iq::Request;
use super::session::{Session, describe, lock};
use super::settings::{CONFIGURE_NAME, CONFIGURE_NODE};
use crate::xmpp::el::a;
use crate::xmpp::forms;
use crate::xmpp::muc::{self, Occupant};
use crate::xmpp::{errors, ns};
use estuary_bridge_api::{
    CommandAccess, CommandContext, CommandScope, CommandSpec, CommandTarget, FieldKind, FormField,
    FormValues, User,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::stanza_error::StanzaError;

/// A command of the core.
#[derive(Clone, Copy, Debug)]
struct CoreCommand {
    node: &'static str,
    name: &'static str,
    admin: bool,
}

/// How long a multi-step command waits for its next step.
pub(super) const SESSION_LIFETIME: Duration = Duration::from_secs(600);
/// The most multi-step commands in progress on one gateway; past it the oldest goes.
pub(super) const MAX_SESSIONS: usize = 1000;

/// A command the gateway offers on an entity: the core's own, a settings form, or one the
/// bridge declared.
#[derive(Clone, Debug)]
pub(super) struct Command {
    /// Its node.
    pub node: String,
    /// Its human name.
    pub name: String,
    /// Only for admins.
    pub admin: bool,
    kind: Kind,
}

/// What runs a command.
#[derive(Clone, Debug)]
enum Kind {
    /// The core (the domain's own commands).
    Core,
    /// The settings of this entity.
    Settings(CommandTarget),
    /// The bridge, on this entity.
    Bridge(CommandSpec, CommandTarget),
}

/// A multi-step command between two steps.
#[derive(Debug)]
pub(super) struct CommandSession {
    user: BareJid,
    node: String,
    /// The fields of the form the next submission answers.
    fields: Vec<FormField>,
    /// The values of the earlier steps.
    state: FormValues,
    started: Instant,
}

const COMMANDS: [CoreCommand; 11] = [
    CoreCommand {
        node: "login",
        name: "Show or change my login",
        admin: false,
    },
    CoreCommand {
        node: "status",
        name: "My connection and rooms",
        admin: false,
    },
    CoreCommand {
        node: "reconnect",
        name: "Reconnect to the network",
        admin: false,
    },
    CoreCommand {
        node: "disconnect",
        name: "Disconnect from the network",
        admin: false,
    },
    CoreCommand {
        node: "admin-users",
        name: "Admin: list users and their logins",
        admin: true,
    },
    CoreCommand {
        node: "admin-disconnect",
        name: "Admin: disconnect a user",
        admin: true,
    },
    CoreCommand {
        node: "admin-announce",
        name: "Admin: announce a message to every user",
        admin: true,
    },
    CoreCommand {
        node: "admin-stats",
        name: "Admin: gateway statistics",
        admin: true,
    },
    // Biboumi's, under its nodes.
    CoreCommand {
        node: "ping",
        name: "Do a ping",
        admin: false,
    },
    CoreCommand {
        node: "hello",
        name: "Receive a custom greeting",
        admin: false,
    },
    CoreCommand {
        node: "disconnect-user",
        name: "Disconnect selected users from the gateway",
        admin: true,
    },
];

/// The quit message `disconnect-user` offers (Biboumi's).
const DISCONNECT_USER_MESSAGE: &str = "Disconnected by admin";

/// What a command step produced.
enum Step {
    /// A form to fill in.
    Form(Element),
    /// Done, with a note and an optional result form.
    Done(String, Option<Element>),
}

impl Gateway {
    /// The commands this user may see on an entity.
    pub(super) fn commands_for(&self, on: &CommandTarget, user: &BareJid) -> Vec<Command> {
        let admin = self.is_admin(user);
        self.all_commands(on)
            .into_iter()
            .filter(|c| admin || !c.admin)
            .collect()
    }

    /// Every command on an entity: on the domain the core's first, then the settings, then
    /// the bridge's (a bridge command may not reuse a node already taken).
    fn all_commands(&self, on: &CommandTarget) -> Vec<Command> {
        let mut out: Vec<Command> = Vec::new();
        let settings = |node: &str, target: CommandTarget| {
            let fields = self.settings_fields(&target);
            (!fields.is_empty()).then(|| Command {
                node: node.into(),
                name: match &target {
                    CommandTarget::Gateway => "Configure some global default settings".into(),
                    CommandTarget::Service(s) => format!("{CONFIGURE_NAME} {s}"),
                    CommandTarget::Room(r) => format!("{CONFIGURE_NAME} {r}"),
                },
                admin: false,
                kind: Kind::Settings(target),
            })
        };
        let bridge = |scope: CommandScope, target: CommandTarget| {
            self.connector
                .commands()
                .into_iter()
                .filter(move |spec| spec.scope == scope)
                .map(move |spec| Command {
                    node: spec.node.clone(),
                    name: spec.name.clone(),
                    admin: spec.access == CommandAccess::Admin,
                    kind: Kind::Bridge(spec, target.clone()),
                })
        };
        match on {
            CommandTarget::Gateway => {
                out.extend(COMMANDS.iter().map(|c| Command {
                    node: c.node.into(),
                    name: c.name.into(),
                    admin: c.admin,
                    kind: Kind::Core,
                }));
                // The domain's own service (IRC's fixed server) is configured on the
                // domain; the gateway-wide settings then have a node of their own.
                match self.connector.domain_service() {
                    Some(s) => {
                        let service = CommandTarget::Service(s);
                        out.extend(settings(CONFIGURE_NODE, service.clone()));
                        out.extend(settings("server-configure", service.clone()));
                        out.extend(settings("global-configure", CommandTarget::Gateway));
                        out.extend(bridge(CommandScope::Gateway, CommandTarget::Gateway));
                        out.extend(bridge(CommandScope::Service, service));
                    }
                    None => {
                        out.extend(settings(CONFIGURE_NODE, CommandTarget::Gateway));
                        out.extend(bridge(CommandScope::Gateway, CommandTarget::Gateway));
                    }
                }
            }
            CommandTarget::Service(_) => {
                out.extend(settings(CONFIGURE_NODE, on.clone()));
                out.extend(bridge(CommandScope::Service, on.clone()));
            }
            CommandTarget::Room(_) => {
                out.extend(settings(CONFIGURE_NODE, on.clone()));
                out.extend(bridge(CommandScope::Room, on.clone()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.node.clone()));
        out
    }

    /// A command by node on an entity, if this user may run it.
    pub(super) fn command(
        &self,
        on: &CommandTarget,
        node: &str,
        user: &BareJid,
    ) -> Option<Command> {
        self.commands_for(on, user)
            .into_iter()
            .find(|c| c.node == node)
    }

    /// The `<item/>`s of an entity's command list (disco#items on the commands node).
    pub(super) fn command_items(
        &self,
        on: &CommandTarget,
        jid: &str,
        user: &BareJid,
    ) -> Vec<Element> {
        self.commands_for(on, user)
            .into_iter()
            .map(|cmd| {
                Element::builder("item", ns::DISCO_ITEMS)
                    .attr(a("jid"), jid)
                    .attr(a("node"), cmd.node)
                    .attr(a("name"), cmd.name)
                    .build()
            })
            .collect()
    }

    /// An ad-hoc command sent to an entity.
    pub(super) async fn handle_command(
        self: &Arc<Self>,
        req: &Request,
        on: &CommandTarget,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        let node = req
            .payload
            .attr("node")
            .ok_or_else(|| errors::bad_request("the command has no node"))?
            .to_string();
        let Some(cmd) = self.command(on, &node, &user) else {
            if self.all_commands(on).iter().any(|c| c.node == node) {
                return Err(errors::forbidden(format!(
                    "{node} is for the gateway's admins only"
                )));
            }
            return Err(errors::item_not_found(format!(
                "there is no command {node} here; ask for the command list"
            )));
        };
        let (session_id, action) = session_and_action(&req.payload);
        if action == "cancel" {
            self.end_session(&session_id, &user);
            return Ok(Some(command_el(&node, &session_id, "canceled", None, None)));
        }
        if !matches!(action, "execute" | "complete" | "next") {
            return Err(errors::bad_request(format!(
                "the action {action} is not offered here"
            )));
        }
        if !self.allowed(&user) {
            return Err(self.not_allowed_error());
        }
        let submitted = req.payload.get_child("x", ns::DATA_FORMS);
        let step = match &cmd.kind {
            Kind::Settings(target) => {
                return self
                    .settings_command(&user, target, &node, &session_id, submitted)
                    .await
                    .map(Some);
            }
            Kind::Bridge(spec, target) => {
                self.bridge_command(spec, target, &user, &session_id, submitted)
                    .await?
            }
            Kind::Core => self.run_command(cmd, &user, submitted).await?,
        };
        Ok(Some(match step {
            Step::Form(form) => command_el(&node, &session_id, "executing", Some(form), None),
            Step::Done(note, form) => {
                // The table's rows in the note too: some clients (Profanity) show only the
                // note of a completed command.
                let note = match form.as_ref().and_then(forms::table_text) {
                    Some(text) => format!("{note}\n{text}"),
                    None => note,
                };
                command_el(&node, &session_id, "completed", form, Some(&note))
            }
        }))
    }

    /// Keeps a multi-step command's state until its next step; the oldest sessions go
    /// when there are too many.
    fn keep_session(&self, id: &str, session: CommandSession) {
        let mut sessions = lock(&self.command_sessions);
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(id.to_owned(), session);
    }

    /// Takes a command's state at its next step, if it is this user's and this command's.
    fn take_session(&self, id: &str, user: &BareJid, node: &str) -> Option<CommandSession> {
        let mut sessions = lock(&self.command_sessions);
        let ours = sessions
            .get(id)
            .is_some_and(|s| s.user == *user && s.node == node);
        ours.then(|| sessions.remove(id))
            .flatten()
            .filter(|s| s.started.elapsed() < SESSION_LIFETIME)
    }

    fn end_session(&self, id: &str, user: &BareJid) {
        let mut sessions = lock(&self.command_sessions);
        if sessions.get(id).is_some_and(|s| s.user == *user) {
            sessions.remove(id);
        }
    }

    async fn run_command(
        self: &Arc<Self>,
        cmd: Command,
        user: &BareJid,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        match cmd.node.as_str() {
            "ping" => Ok(Step::Done("Pong".into(), None)),
            "hello" => {
                let fields = vec![FormField::text("name", "Your name").required()];
                let Some(x) = submitted else {
                    return Ok(Step::Form(forms::form(
                        "Configure your name.",
                        "Please provide your name.",
                        &fields,
                        None,
                    )));
                };
                let v = forms::read_submitted(x, &fields)
                    .map_err(|e| errors::bad_request(e.to_string()))?;
                Ok(Step::Done(
                    format!("Hello {}!", v.get("name").unwrap_or_default()),
                    None,
                ))
            }
            "disconnect-user" => self.cmd_disconnect_users(submitted).await,
            "login" => self.cmd_login(user, submitted).await,
            "status" => {
                let Some(s) = self.session(user.as_str()) else {
                    return Ok(Step::Done(
                        format!("You have no login on {}.", self.domain),
                        None,
                    ));
                };
                let rooms: Vec<String> = s
                    .rooms()
                    .iter()
                    .filter(|(_, r)| r.joined)
                    .map(|(id, r)| format!("{id} as {}", r.nick))
                    .collect();
                let rooms = if rooms.is_empty() {
                    "none".to_string()
                } else {
                    rooms.join(", ")
                };
                Ok(Step::Done(
                    format!(
                        "Login {}: {}. Rooms: {rooms}.",
                        s.login,
                        describe(&s.state())
                    ),
                    None,
                ))
            }
            "reconnect" => {
                let s = self.session_or_open(user.as_str()).await?;
                s.client.disconnect().await;
                s.client.connect().await;
                Ok(Step::Done(
                    "Reconnecting; the gateway's presence shows when it is done.".into(),
                    None,
                ))
            }
            "disconnect" => match self.session(user.as_str()) {
                Some(s) => {
                    s.client.disconnect().await;
                    Ok(Step::Done(
                        "Disconnected. Run \"Reconnect\" or go online again to reconnect.".into(),
                        None,
                    ))
                }
                None => Ok(Step::Done("You were not connected.".into(), None)),
            },
            "admin-users" => {
                let logins = self
                    .db
                    .list_logins(&self.bridge)
                    .await
                    .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
                let rows: Vec<Vec<String>> = logins
                    .iter()
                    .map(|l| {
                        let state = self
                            .session(&l.user)
                            .map(|s| describe(&s.state()))
                            .unwrap_or_else(|| "no client".into());
                        vec![l.user.clone(), l.login_id.clone(), state]
                    })
                    .collect();
                let table = forms::result_table(
                    "Users",
                    &[("jid", "User"), ("login", "Login"), ("state", "State")],
                    &rows,
                );
                Ok(Step::Done(format!("{} users.", rows.len()), Some(table)))
            }
            "admin-disconnect" => {
                let fields = vec![FormField::text("jid", "The user's bare JID").required()];
                let Some(x) = submitted else {
                    return Ok(Step::Form(forms::form(
                        "Disconnect a user",
                        "Whose client should be disconnected?",
                        &fields,
                        None,
                    )));
                };
                let v = forms::read_submitted(x, &fields)
                    .map_err(|e| errors::bad_request(e.to_string()))?;
                let target = v.get("jid").unwrap_or_default().to_string();
                let session = lock(&self.sessions).remove(&target);
                match session {
                    Some(s) => {
                        s.client.disconnect().await;
                        Ok(Step::Done(
                            format!("{target} was disconnected; their login is kept."),
                            None,
                        ))
                    }
                    None => Err(errors::item_not_found(format!(
                        "{target} has no client on this gateway"
                    ))),
                }
            }
            "admin-announce" => {
                let fields = vec![FormField {
                    kind: estuary_bridge_api::FieldKind::Multiline,
                    ..FormField::text("text", "Announcement").required()
                }];
                let Some(x) = submitted else {
                    return Ok(Step::Form(forms::form(
                        "Announce",
                        "Sent as a message from the gateway to every user with a login.",
                        &fields,
                        None,
                    )));
                };
                let v = forms::read_submitted(x, &fields)
                    .map_err(|e| errors::bad_request(e.to_string()))?;
                let text = v.get("text").unwrap_or_default().to_string();
                let users = self
                    .db
                    .list_logins(&self.bridge)
                    .await
                    .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
                for l in &users {
                    if let Ok(to) = Jid::new(&l.user) {
                        let mut m = Message::new_with_type(MessageType::Headline, Some(to));
                        m.from = Some(self.jid());
                        m.bodies.insert(Default::default(), text.clone());
                        self.send(m).await;
                    }
                }
                Ok(Step::Done(
                    format!("Announced to {} users.", users.len()),
                    None,
                ))
            }
            "admin-stats" => {
                let (sessions, rooms) = {
                    let sessions = lock(&self.sessions);
                    let rooms: usize = sessions
                        .values()
                        .map(|s| s.rooms().values().filter(|r| r.joined).count())
                        .sum();
                    (sessions.len(), rooms)
                };
                let queued = self.queued();
                let st = &self.stats;
                let get = |c: &std::sync::atomic::AtomicU64| {
                    c.load(std::sync::atomic::Ordering::Relaxed).to_string()
                };
                let rows = vec![
                    vec![
                        "uptime (s)".to_string(),
                        self.started.elapsed().as_secs().to_string(),
                    ],
                    vec!["clients".into(), sessions.to_string()],
                    vec!["rooms joined".into(), rooms.to_string()],
                    vec!["stanzas in".into(), get(&st.stanzas_in)],
                    vec!["stanzas out".into(), get(&st.stanzas_out)],
                    vec!["messages to the network".into(), get(&st.messages_out)],
                    vec!["events from the network".into(), get(&st.events_in)],
                    vec![
                        "stanzas waiting for the XMPP server".into(),
                        queued.to_string(),
                    ],
                    vec!["component link".into(), format!("{:?}", self.link_state())],
                ];
                let table = forms::result_table(
                    "Statistics",
                    &[("name", "Name"), ("value", "Value")],
                    &rows,
                );
                Ok(Step::Done("Statistics.".into(), Some(table)))
            }
            other => Err(errors::item_not_found(format!("no command {other}"))),
        }
    }

    /// Biboumi's `disconnect-user`: the admin picks users with a client and a quit
    /// message; each leaves their rooms (unavailable self-presences with the message) and
    /// their client quits. Their logins are kept.
    async fn cmd_disconnect_users(
        self: &Arc<Self>,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        let mut users: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        users.sort();
        let fields = vec![
            FormField {
                kind: FieldKind::MultiChoice(
                    users.iter().map(|u| (u.clone(), u.clone())).collect(),
                ),
                ..FormField::text("jids", "The JIDs to disconnect").required()
            },
            FormField::text("quit-message", "Quit message").default_value(DISCONNECT_USER_MESSAGE),
        ];
        let Some(x) = submitted else {
            return Ok(Step::Form(forms::form(
                "Disconnect a user from the gateway",
                "Choose a user JID and a quit message",
                &fields,
                None,
            )));
        };
        let v = forms::read_submitted(x, &fields)
            .map_err(|e| e.to_stanza_error("nobody was disconnected"))?;
        let message = v
            .get("quit-message")
            .unwrap_or(DISCONNECT_USER_MESSAGE)
            .to_string();
        let mut done = 0;
        for jid in v.get("jids").unwrap_or_default().split('\n') {
            let Some(session) = lock(&self.sessions).remove(jid) else {
                continue;
            };
            self.leave_every_room(&session, &message).await;
            session.client.quit(&message).await;
            done += 1;
        }
        Ok(Step::Done(
            match done {
                0 => "No user were disconnected.".into(),
                1 => "1 user has been disconnected.".into(),
                n => format!("{n} users have been disconnected."),
            },
            None,
        ))
    }

    /// Every resource of a session still in a room gets its unavailable self-presence, with
    /// `reason` as status.
    async fn leave_every_room(&self, session: &Session, reason: &str) {
        let rooms: Vec<_> = {
            let mut rooms = session.rooms();
            let taken: Vec<_> = rooms
                .iter()
                .map(|(id, r)| (id.clone(), r.nick.clone(), r.resources.clone()))
                .collect();
            rooms.clear();
            taken
        };
        let codes = [muc::SELF_PRESENCE];
        for (room, nick, resources) in rooms {
            for res in resources.iter() {
                if let (Some(from), Ok(to)) = (self.occupant_jid(&room, &nick), Jid::new(res)) {
                    let mut p = muc::occupant_presence(&Occupant {
                        from: Some(from),
                        to: Some(to),
                        codes: &codes,
                        unavailable: true,
                        reason: Some(reason),
                        ..Default::default()
                    });
                    p.set_status("en", reason.to_owned());
                    self.send(p).await;
                }
            }
            let _ = self
                .db
                .delete_room(&self.bridge, &session.user, room.as_str())
                .await;
        }
    }

    /// Runs a command the bridge declared, step by step: its form first (if it declares
    /// one), then the bridge's answer, which may be a further form.
    async fn bridge_command(
        self: &Arc<Self>,
        spec: &CommandSpec,
        target: &CommandTarget,
        user: &BareJid,
        session_id: &str,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        let earlier = self.take_session(session_id, user, &spec.node);
        let (fields, state) = match earlier {
            Some(s) => (s.fields, s.state),
            None => (spec.fields.clone(), FormValues::default()),
        };
        let values = match submitted {
            None if !fields.is_empty() => {
                self.keep_session(
                    session_id,
                    CommandSession {
                        user: user.clone(),
                        node: spec.node.clone(),
                        fields: fields.clone(),
                        state,
                        started: Instant::now(),
                    },
                );
                return Ok(Step::Form(forms::form(
                    &spec.name,
                    &spec.instructions,
                    &fields,
                    None,
                )));
            }
            None => FormValues::default(),
            Some(x) => forms::read_submitted(x, &fields)
                .map_err(|e| e.to_stanza_error("fill in the form again"))?,
        };
        let ctx = CommandContext {
            user: User {
                jid: user.to_string(),
            },
            is_admin: self.is_admin(user),
            target: target.clone(),
            state: state.clone(),
            rooms: Vec::new(),
        };
        let session = self.session(user.as_str());
        let mut ctx = ctx;
        if let Some(s) = &session {
            ctx.rooms = s
                .rooms()
                .iter()
                .filter(|(_, r)| r.joined)
                .map(|(id, r)| (id.clone(), r.resources.iter().cloned().collect()))
                .collect();
        }
        let client = session.as_ref().map(|s| s.client.as_ref());
        let out = self
            .connector
            .run_command(&ctx, &spec.node, &values, client)
            .await
            .map_err(|e| errors::from_bridge(&e))?;
        if let Some(next) = out.next {
            let mut state = state;
            for (k, v) in values.0 {
                state.set(k, v);
            }
            let form = forms::form(
                &next.title,
                &next.instructions,
                &next.fields,
                Some(&next.values),
            );
            self.keep_session(
                session_id,
                CommandSession {
                    user: user.clone(),
                    node: spec.node.clone(),
                    fields: next.fields,
                    state,
                    started: Instant::now(),
                },
            );
            return Ok(Step::Form(form));
        }
        let table = (!out.columns.is_empty()).then(|| {
            let columns: Vec<(&str, &str)> = out
                .columns
                .iter()
                .map(|(v, l)| (v.as_str(), l.as_str()))
                .collect();
            forms::result_table(&spec.name, &columns, &out.rows)
        });
        Ok(Step::Done(out.note, table))
    }

    async fn cmd_login(
        self: &Arc<Self>,
        user: &BareJid,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        let fields = self.connector.registration_fields();
        let existing = self
            .db
            .get_login(&self.bridge, user.as_str())
            .await
            .map_err(|e| errors::internal(format!("the database failed: {e}")))?;
        let Some(x) = submitted else {
            if fields.is_empty() {
                let note = match &existing {
                    Some(l) => format!(
                        "Your login is {}; this network has nothing to configure.",
                        l.login_id
                    ),
                    None => "This network has nothing to configure.".into(),
                };
                return Ok(Step::Done(note, None));
            }
            let instructions = match &existing {
                Some(l) => format!(
                    "Your login is {}. Change what you want; leave secrets empty to keep them.",
                    l.login_id
                ),
                None => "You have no login yet: fill this in to create one.".into(),
            };
            return Ok(Step::Form(forms::form(
                "My login",
                &instructions,
                &fields,
                existing.as_ref().map(|l| &l.fields),
            )));
        };
        let values: FormValues = {
            let mut relaxed = fields.clone();
            if existing.is_some() {
                for f in relaxed.iter_mut().filter(|f| f.is_secret()) {
                    f.required = false;
                }
            }
            forms::read_submitted(x, &relaxed).map_err(|e| errors::bad_request(e.to_string()))?
        };
        let id = self.apply_login(user, values, existing.as_ref()).await?;
        Ok(Step::Done(
            format!("Saved. Your login is now {id}; reconnecting with it."),
            None,
        ))
    }
}

/// A `<command/>` answer with its status, form and note.
pub(super) fn command_el(
    node: &str,
    session_id: &str,
    status: &str,
    form: Option<Element>,
    note: Option<&str>,
) -> Element {
    let mut el = Element::builder("command", ns::COMMANDS)
        .attr(a("node"), node)
        .attr(a("sessionid"), session_id)
        .attr(a("status"), status)
        .build();
    if status == "executing" {
        el.append_child(
            Element::builder("actions", ns::COMMANDS)
                .attr(a("execute"), "complete")
                .append(Element::builder("complete", ns::COMMANDS).build())
                .build(),
        );
    }
    if let Some(note) = note {
        el.append_child(
            Element::builder("note", ns::COMMANDS)
                .attr(a("type"), "info")
                .append(note)
                .build(),
        );
    }
    if let Some(f) = form {
        el.append_child(f);
    }
    el
}

/// The `<command/>` an error answer carries (XEP-0050 §4.6): the request's node and
/// session id, when the request was a command.
pub(super) fn command_echo(payload: &Element) -> Option<Element> {
    if !payload.is("command", ns::COMMANDS) {
        return None;
    }
    let mut el = Element::builder("command", ns::COMMANDS).build();
    for attr in ["node", "sessionid"] {
        if let Some(v) = payload.attr(attr) {
            crate::xmpp::el::set(&mut el, attr, v);
        }
    }
    Some(el)
}

/// A command request's session id (a new one when the client starts a session) and its
/// action (`execute` when none is given).
pub(super) fn session_and_action(command: &Element) -> (String, &str) {
    let session_id = command
        .attr("sessionid")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    (session_id, command.attr("action").unwrap_or("execute"))
}
