//! XEP-0050 ad-hoc commands: the user's own login, and the admins' view of the gateway.
//!
//! Every command is one or two steps: executing returns a form (or the result at once),
//! submitting the form completes it.

use super::Gateway;
use super::iq::Request;
use super::service::CONFIGURE_NODE;
use super::session::{describe, lock};
use crate::xmpp::el::a;
use crate::xmpp::forms;
use crate::xmpp::{errors, ns};
use estuary_bridge_api::{CommandAccess, CommandContext, CommandSpec, FormField, FormValues, User};
use std::sync::Arc;
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

/// A command the gateway offers: the core's own, or one the bridge declared.
#[derive(Clone, Debug)]
pub(super) struct Command {
    /// Its node.
    pub node: String,
    /// Its human name.
    pub name: String,
    /// Only for admins.
    pub admin: bool,
    /// The bridge's declaration, for a bridge command.
    bridge: Option<CommandSpec>,
}

const COMMANDS: [CoreCommand; 8] = [
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
];

/// What a command step produced.
enum Step {
    /// A form to fill in.
    Form(Element),
    /// Done, with a note and an optional result form.
    Done(String, Option<Element>),
}

impl Gateway {
    /// The commands this user may see.
    pub(super) fn commands_for(&self, user: &BareJid) -> Vec<Command> {
        let admin = self.is_admin(user);
        self.all_commands()
            .into_iter()
            .filter(|c| admin || !c.admin)
            .collect()
    }

    /// Every command, the core's first; a bridge command may not reuse a core node.
    fn all_commands(&self) -> Vec<Command> {
        let core = COMMANDS.iter().map(|c| Command {
            node: c.node.into(),
            name: c.name.into(),
            admin: c.admin,
            bridge: None,
        });
        let bridge = self
            .connector
            .commands()
            .into_iter()
            .filter(|spec| !COMMANDS.iter().any(|c| c.node == spec.node))
            .map(|spec| Command {
                node: spec.node.clone(),
                name: spec.name.clone(),
                admin: spec.access == CommandAccess::Admin,
                bridge: Some(spec),
            });
        // The domain's own service (IRC's fixed server) is configured on the domain.
        let service = self
            .connector
            .domain_service()
            .filter(|s| !self.service_fields(s).is_empty())
            .map(|s| Command {
                node: CONFIGURE_NODE.into(),
                name: format!("Configure {s}"),
                admin: false,
                bridge: None,
            });
        core.chain(service)
            .chain(bridge.filter(|c| c.node != CONFIGURE_NODE))
            .collect()
    }

    /// A command by node, if this user may run it.
    pub(super) fn command(&self, node: &str, user: &BareJid) -> Option<Command> {
        self.commands_for(user).into_iter().find(|c| c.node == node)
    }

    pub(super) async fn handle_command(
        self: &Arc<Self>,
        req: &Request,
    ) -> Result<Option<Element>, StanzaError> {
        let user = req.user();
        let node = req
            .payload
            .attr("node")
            .ok_or_else(|| errors::bad_request("the command has no node"))?
            .to_string();
        let Some(cmd) = self.command(&node, &user) else {
            if self.all_commands().iter().any(|c| c.node == node) {
                return Err(errors::forbidden(format!(
                    "{node} is for the gateway's admins only"
                )));
            }
            return Err(errors::item_not_found(format!(
                "there is no command {node}; ask the gateway for its command list"
            )));
        };
        if cmd.node == CONFIGURE_NODE
            && cmd.bridge.is_none()
            && let Some(service) = self.connector.domain_service()
        {
            return self.handle_service_command(req, &service).await;
        }
        let (session_id, action) = session_and_action(&req.payload);
        if action == "cancel" {
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
        let step = self.run_command(cmd, &user, submitted).await?;
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

    async fn run_command(
        self: &Arc<Self>,
        cmd: Command,
        user: &BareJid,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        if let Some(spec) = &cmd.bridge {
            return self.bridge_command(spec, user, submitted).await;
        }
        match cmd.node.as_str() {
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

    /// Runs a command the bridge declared: its form first, then the bridge's answer.
    async fn bridge_command(
        self: &Arc<Self>,
        spec: &CommandSpec,
        user: &BareJid,
        submitted: Option<&Element>,
    ) -> Result<Step, StanzaError> {
        let values = match submitted {
            None if !spec.fields.is_empty() => {
                return Ok(Step::Form(forms::form(
                    &spec.name,
                    &spec.instructions,
                    &spec.fields,
                    None,
                )));
            }
            None => FormValues::default(),
            Some(x) => forms::read_submitted(x, &spec.fields)
                .map_err(|e| errors::bad_request(e.to_string()))?,
        };
        let ctx = CommandContext {
            user: User {
                jid: user.to_string(),
            },
            is_admin: self.is_admin(user),
        };
        let out = self
            .connector
            .run_command(&ctx, &spec.node, &values)
            .await
            .map_err(|e| errors::from_bridge(&e))?;
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

/// A command request's session id (a new one when the client starts a session) and its
/// action (`execute` when none is given).
pub(super) fn session_and_action(command: &Element) -> (String, &str) {
    let session_id = command
        .attr("sessionid")
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    (session_id, command.attr("action").unwrap_or("execute"))
}
