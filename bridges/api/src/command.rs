//! Ad-hoc commands a bridge offers besides the core's own (XEP-0050, written by the core).

use crate::{FormField, FormValues, RemoteChatId, User};

/// Who may run a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandAccess {
    /// Any user allowed on the gateway.
    User,
    /// Only the gateway's configured admins.
    Admin,
}

/// The kind of entity a command is offered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandScope {
    /// The gateway's domain (`irc.gw`).
    Gateway,
    /// A service's JID (an IRC server, `irc.example.net@irc.gw`); with a fixed service, the
    /// domain itself.
    Service,
    /// A room's JID (`#chan%irc.example.net@irc.gw`).
    Room,
}

/// The entity a command or a settings form is addressed to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CommandTarget {
    /// The gateway's domain.
    Gateway,
    /// A service (an IRC server), by name.
    Service(String),
    /// A room.
    Room(RemoteChatId),
}

impl CommandTarget {
    /// The kind of entity this is.
    pub fn scope(&self) -> CommandScope {
        match self {
            Self::Gateway => CommandScope::Gateway,
            Self::Service(_) => CommandScope::Service,
            Self::Room(_) => CommandScope::Room,
        }
    }

    /// The key under which a user's settings for this entity are stored in
    /// [`StoredLogin::services`](crate::StoredLogin::services): a service by its name (as
    /// before rooms and the gateway had settings), the gateway as `@gateway`, a room as
    /// `@room/` and its id. Names starting with `@` are not service names.
    pub fn settings_key(&self) -> String {
        match self {
            Self::Gateway => "@gateway".into(),
            Self::Service(s) => s.clone(),
            Self::Room(r) => format!("@room/{}", r.as_str()),
        }
    }
}

/// A command a bridge offers, on its gateway domain, on services or on rooms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's node, stable across versions (`add-hook`).
    pub node: String,
    /// Its human name (`Add a webhook`).
    pub name: String,
    /// Who may run it.
    pub access: CommandAccess,
    /// Which entities offer it.
    pub scope: CommandScope,
    /// Shown above the form.
    pub instructions: String,
    /// The form to fill in; empty runs the command at once (the bridge may still answer
    /// with a form of its own, [`CommandOutput::next`]).
    pub fields: Vec<FormField>,
}

/// Who runs a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    /// The user.
    pub user: User,
    /// Whether the user is one of the gateway's admins.
    pub is_admin: bool,
    /// The entity the command was sent to.
    pub target: CommandTarget,
    /// The values submitted at the earlier steps of this command (empty at the first).
    pub state: FormValues,
    /// The rooms the user is in, as the core sees them, each with the XMPP resources
    /// joined to it (for a command that reports on the user's connection).
    pub rooms: Vec<(RemoteChatId, Vec<String>)>,
}

/// A further form a command asks for before it completes (XEP-0050 multi-step).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandForm {
    /// The form's title.
    pub title: String,
    /// Shown above the fields.
    pub instructions: String,
    /// The fields; the core checks the submission against them.
    pub fields: Vec<FormField>,
    /// Values shown filled in.
    pub values: FormValues,
}

/// What a command produced: a note, and optionally a table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// A sentence for the user.
    pub note: String,
    /// Table columns as `(name, label)`; empty for no table.
    pub columns: Vec<(String, String)>,
    /// Table rows, one value per column.
    pub rows: Vec<Vec<String>>,
    /// A further form: the command is not complete, and its submission comes back to
    /// `run_command` with this step's values in [`CommandContext::state`].
    pub next: Option<CommandForm>,
}

impl CommandOutput {
    /// Just a note.
    pub fn note(text: impl Into<String>) -> Self {
        Self {
            note: text.into(),
            ..Self::default()
        }
    }

    /// A further step: the form to fill in next.
    pub fn form(form: CommandForm) -> Self {
        Self {
            next: Some(form),
            ..Self::default()
        }
    }
}

/// How a room behaves for one user, from their settings (see
/// [`Connector::room_policy`](crate::Connector::room_policy)). The core applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomPolicy {
    /// Stay in the room on the network when the user's last resource leaves it.
    pub persistent: bool,
    /// Archive the room's messages (MAM and join history).
    pub record_history: bool,
    /// How many archived messages a join replays when the client asks for no limit.
    pub history_length: usize,
}

impl Default for RoomPolicy {
    /// Not persistent, recorded, 20 messages of join history.
    fn default() -> Self {
        Self {
            persistent: false,
            record_history: true,
            history_length: 20,
        }
    }
}
