//! Ad-hoc commands a bridge offers besides the core's own (XEP-0050, written by the core).

use crate::{FormField, User};

/// Who may run a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandAccess {
    /// Any user allowed on the gateway.
    User,
    /// Only the gateway's configured admins.
    Admin,
}

/// A command a bridge offers on its gateway domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's node, stable across versions (`add-hook`).
    pub node: String,
    /// Its human name (`Add a webhook`).
    pub name: String,
    /// Who may run it.
    pub access: CommandAccess,
    /// Shown above the form.
    pub instructions: String,
    /// The form to fill in; empty runs the command at once.
    pub fields: Vec<FormField>,
}

/// Who runs a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    /// The user.
    pub user: User,
    /// Whether the user is one of the gateway's admins.
    pub is_admin: bool,
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
}

impl CommandOutput {
    /// Just a note.
    pub fn note(text: impl Into<String>) -> Self {
        Self {
            note: text.into(),
            ..Self::default()
        }
    }
}

/// The gateway's own state, for bridges that expose it (a `/metrics` page).
pub trait StatusSource: Send + Sync {
    /// Every gateway's metrics in the Prometheus text format.
    fn prometheus(&self) -> String;
}
