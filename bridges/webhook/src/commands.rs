//! Managing hooks at run time: the bridge's ad-hoc commands (XEP-0050, rendered by the core)
//! and how the hooks they add are stored.
//!
//! | node | who | does |
//! | --- | --- | --- |
//! | `hook-add` | any user | adds a hook that delivers to the user's own bare JID |
//! | `hook-remove` | any user | removes a hook the user added |
//! | `hook-list` | any user | the hooks the user added or receives |
//! | `admin-hook-add` | admins | adds (or, with `replace`, replaces) a hook with any recipients and rooms |
//! | `admin-hook-remove` | admins | removes any hook added by command |
//! | `admin-hook-list` | admins | every hook, with who added it |
//!
//! Hooks from `[[bridges.webhook.hooks]]` are read-only here: no command removes or replaces
//! them, and a command hook cannot take their name.
//!
//! **Storage.** A hook added by command belongs to the user who ran the command (its
//! *owner*, [`HookOrigin::Command`]). After every change the bridge sends
//! [`RemoteEvent::SaveMetadata`] with `{"hooks": [<hook table>, …], "sealed": {"tokens":
//! {<name>: <token>, …}}}` — every hook the owner added, each in the shape of a config hook
//! table without its token, and the tokens by hook name under
//! [`SEALED_METADATA_KEY`], which the core seals at rest — on the owner's login (the core
//! creates the login if the owner has none). At start-up the core hands that metadata back,
//! opened, to [`Connector::load_login`](estuary_bridge_api::Connector::load_login), and
//! [`HookCommands::load`] registers the hooks again.
//!
//! Rows stored before tokens were sealed hold each token in its hook table: both shapes are
//! read, and such a row is stored again at once, sealed. Commands never show a token back,
//! except a generated one, once, in the answer to the command that made it.

use crate::config::{HookConfig, MessageType, PayloadFormat, WebhookConfig};
use crate::hooks::{Hook, HookOrigin, HookSet};
use estuary_bridge_api::{
    BridgeError, CommandAccess, CommandContext, CommandOutput, CommandScope, CommandSpec,
    ErrorKind, EventRouter, EventSink, FieldKind, FormField, FormValues, LoginId, OutboundPolicy,
    RemoteEvent, SEALED_METADATA_KEY, StoredLogin,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// `hook-add`: a user adds a hook for themselves.
pub const ADD: &str = "hook-add";
/// `hook-remove`: a user removes a hook they added.
pub const REMOVE: &str = "hook-remove";
/// `hook-list`: a user lists their hooks.
pub const LIST: &str = "hook-list";
/// `admin-hook-add`: an admin adds any hook.
pub const ADMIN_ADD: &str = "admin-hook-add";
/// `admin-hook-remove`: an admin removes any hook added by command.
pub const ADMIN_REMOVE: &str = "admin-hook-remove";
/// `admin-hook-list`: an admin lists every hook.
pub const ADMIN_LIST: &str = "admin-hook-list";

/// Random bytes in a generated token (hex-encoded: 48 characters).
const TOKEN_BYTES: usize = 24;

/// Whose hooks a command acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The user's own (recipient forced to the user).
    Own,
    /// Any hook (admins).
    Any,
}

/// What a command node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add a hook.
    Add(Scope),
    /// Remove a hook.
    Remove(Scope),
    /// List hooks.
    List(Scope),
}

impl Action {
    /// The action of a node, if it is one of this module's.
    pub fn of(node: &str) -> Option<Self> {
        Some(match node {
            ADD => Self::Add(Scope::Own),
            REMOVE => Self::Remove(Scope::Own),
            LIST => Self::List(Scope::Own),
            ADMIN_ADD => Self::Add(Scope::Any),
            ADMIN_REMOVE => Self::Remove(Scope::Any),
            ADMIN_LIST => Self::List(Scope::Any),
            _ => return None,
        })
    }
}

/// The login id under which a user's hooks are stored when the user has no login yet
/// (the same id registration mints): `webhook:<bare JID>`.
pub fn user_login(jid: &str) -> LoginId {
    LoginId::new(format!("webhook:{jid}"))
}

fn choice(var: &str, label: &str, options: &[(&str, &str)], default: &str) -> FormField {
    FormField {
        kind: FieldKind::Choice(
            options
                .iter()
                .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
                .collect(),
        ),
        ..FormField::text(var, label).default_value(default)
    }
}

fn multiline(var: &str, label: &str) -> FormField {
    FormField {
        kind: FieldKind::Multiline,
        ..FormField::text(var, label)
    }
}

/// The fields common to both add forms.
fn common_fields() -> (FormField, FormField, FormField, FormField) {
    let name = FormField::text("name", "Name").required().describe(
        "The contact's local part and the URL's last segment: 1 to 64 of a-z, 0-9, `.`, `_`, `-`.",
    );
    let token = FormField::secret("token", "Token").describe(
        "The secret senders authenticate with (bearer token or HMAC key). Leave empty to get \
         a generated one, shown once.",
    );
    // Templates are config-only: a template is code the gateway runs.
    let format = choice(
        "format",
        "Format",
        &[
            ("auto", "Detect the sender"),
            ("text", "Plain text or {\"text\": …}"),
            ("github", "GitHub"),
            ("forgejo", "Forgejo / Gitea"),
            ("gitlab", "GitLab"),
            ("alertmanager", "Alertmanager"),
        ],
        "auto",
    );
    let message_type = choice(
        "message_type",
        "Message type",
        &[
            ("chat", "Chat messages"),
            ("headline", "Headline notifications"),
        ],
        "chat",
    );
    (name, token, format, message_type)
}

/// The commands offered with this config: the user's three unless `user_hook_limit` is 0,
/// and the admins' three.
pub fn specs(config: &WebhookConfig) -> Vec<CommandSpec> {
    let (name, token, format, message_type) = common_fields();
    let url = FormField::text("url", "Outgoing URL")
        .describe("Where your messages to the hook are POSTed (http or https); optional.");
    let mut specs = Vec::new();
    if config.user_hook_limit > 0 {
        let mut fields = vec![
            name.clone(),
            token.clone(),
            format.clone(),
            message_type.clone(),
        ];
        if config.user_hook_urls {
            fields.push(url.clone());
        }
        specs.extend([
            CommandSpec {
                node: ADD.into(),
                name: "Add a webhook for me".into(),
                access: CommandAccess::User,
                scope: CommandScope::Gateway,
                instructions: format!(
                    "The hook sends you what is POSTed to {}/<name>, as the contact \
                     <name>@{}. You may have {} hooks.",
                    config.path_prefix,
                    config.domain.as_deref().unwrap_or("this gateway"),
                    config.user_hook_limit
                ),
                fields,
            },
            CommandSpec {
                node: REMOVE.into(),
                name: "Remove one of my webhooks".into(),
                access: CommandAccess::User,
                scope: CommandScope::Gateway,
                instructions: "The hook stops at once; its URL answers 404.".into(),
                fields: vec![FormField::text("name", "Name").required()],
            },
            CommandSpec {
                node: LIST.into(),
                name: "My webhooks".into(),
                access: CommandAccess::User,
                scope: CommandScope::Gateway,
                instructions: String::new(),
                fields: Vec::new(),
            },
        ]);
    }
    specs.extend([
        CommandSpec {
            node: ADMIN_ADD.into(),
            name: "Admin: add a webhook".into(),
            access: CommandAccess::Admin,
            scope: CommandScope::Gateway,
            instructions: "A hook needs recipients, rooms or an outgoing URL. Hooks from the \
                           configuration file cannot be replaced."
                .into(),
            fields: vec![
                name,
                token,
                multiline("to", "Recipients").describe("Bare JIDs, one per line."),
                multiline("rooms", "Rooms").describe("MUC room JIDs, one per line."),
                FormField::text("nick", "Nick in rooms").describe("Default: the hook's name."),
                format,
                message_type,
                url,
                multiline("senders", "Who may send to the URL")
                    .describe("Bare JIDs, domains or *, one per line. Default: the recipients."),
                FormField::boolean("replace", "Replace a hook added by command").default_value("0"),
            ],
        },
        CommandSpec {
            node: ADMIN_REMOVE.into(),
            name: "Admin: remove a webhook".into(),
            access: CommandAccess::Admin,
            scope: CommandScope::Gateway,
            instructions: "Any hook added by command; hooks from the configuration file are \
                           removed there."
                .into(),
            fields: vec![FormField::text("name", "Name").required()],
        },
        CommandSpec {
            node: ADMIN_LIST.into(),
            name: "Admin: list webhooks".into(),
            access: CommandAccess::Admin,
            scope: CommandScope::Gateway,
            instructions: String::new(),
            fields: Vec::new(),
        },
    ]);
    specs
}

/// A hook read from an add form, with its token if it was generated.
#[derive(Debug)]
pub struct NewHook {
    /// The hook.
    pub hook: HookConfig,
    /// The generated token, to show once; `None` when the form gave one.
    pub generated_token: Option<String>,
}

/// Splits a list field: one entry per line, commas and spaces also separate.
fn list(form: &FormValues, var: &str) -> Vec<String> {
    form.get(var)
        .unwrap_or_default()
        .split(|c: char| c == '\n' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads an add form into a checked hook. `Scope::Own` forces the recipient to `user` and
/// takes no rooms; `token` makes a token when the form has none.
pub fn hook_from_form(
    form: &FormValues,
    user: &str,
    scope: Scope,
    config: &WebhookConfig,
    token: impl FnOnce() -> Result<String, BridgeError>,
) -> Result<NewHook, BridgeError> {
    let name = form.get("name").unwrap_or_default().trim().to_lowercase();
    if let Some(why) = config.reserved_name(&name) {
        return Err(BridgeError::not_acceptable(why));
    }
    let (token, generated_token) = match form.get("token") {
        Some(t) => (t.to_owned(), None),
        None => {
            let t = token()?;
            (t.clone(), Some(t))
        }
    };
    let mut hook = HookConfig::new(name.clone(), token);
    match scope {
        Scope::Own => {
            hook.to = vec![user.to_owned()];
            if form.get("url").is_some() && !config.user_hook_urls {
                return Err(BridgeError::new(
                    ErrorKind::Forbidden,
                    "only the gateway's admins may give a hook an outgoing URL here",
                ));
            }
        }
        Scope::Any => {
            hook.to = list(form, "to");
            hook.rooms = list(form, "rooms");
            hook.senders = list(form, "senders");
            if let Some(nick) = form.get("nick") {
                hook.nick = nick.trim().to_owned();
            }
        }
    }
    hook.url = form.get("url").map(|u| u.trim().to_owned());
    if let Some(f) = form.get("format") {
        hook.format = match PayloadFormat::parse(f) {
            Some(PayloadFormat::Template) | None => {
                return Err(BridgeError::not_acceptable(format!(
                    "`{f}` is not a format a command can set (templates are set in the \
                     configuration file)"
                )));
            }
            Some(f) => f,
        };
    }
    hook.message_type = match form.get("message_type") {
        None | Some("chat") => MessageType::Chat,
        Some("headline") => MessageType::Headline,
        Some(other) => {
            return Err(BridgeError::not_acceptable(format!(
                "`{other}` is not a message type: chat or headline"
            )));
        }
    };
    hook.validate("hook").map_err(|e| {
        let field = e.key.strip_prefix("hook.").unwrap_or("the hook");
        BridgeError::not_acceptable(format!("{field}: {}", e.reason))
    })?;
    Ok(NewHook {
        hook,
        generated_token,
    })
}

/// The key under [`SEALED_METADATA_KEY`] that holds the tokens by hook name.
const TOKENS_KEY: &str = "tokens";

/// The metadata that stores these hooks: `{"hooks": [<hook table without token>, …],
/// "sealed": {"tokens": {<name>: <token>, …}}}`; the core seals what is under `sealed`.
pub fn metadata_for(hooks: &[Arc<Hook>]) -> Value {
    let mut tokens = serde_json::Map::new();
    let tables: Vec<Value> = hooks
        .iter()
        .map(|h| {
            let mut table = h.config.to_json();
            if let Some(t) = table.as_object_mut()
                && let Some(token) = t.remove("token")
            {
                tokens.insert(h.config.name.clone(), token);
            }
            table
        })
        .collect();
    json!({ "hooks": tables, SEALED_METADATA_KEY: { TOKENS_KEY: tokens } })
}

/// The hooks stored in a login's metadata, and what could not be read (each error names
/// the entry, never a token). Metadata without `hooks` holds none. A hook's token is read
/// from the sealed tokens or, in rows stored before tokens were sealed, from its table.
pub fn hooks_from_metadata(metadata: &Value) -> (Vec<HookConfig>, Vec<String>) {
    let Some(entries) = metadata.get("hooks") else {
        return (Vec::new(), Vec::new());
    };
    let Some(entries) = entries.as_array() else {
        return (Vec::new(), vec!["hooks: is not a list".to_owned()]);
    };
    let sealed_tokens = metadata
        .get(SEALED_METADATA_KEY)
        .and_then(|s| s.get(TOKENS_KEY))
        .and_then(Value::as_object);
    let mut hooks = Vec::new();
    let mut errors = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let mut entry = entry.clone();
        let name = entry.get("name").and_then(Value::as_str).map(str::to_owned);
        if let (Some(table), Some(name), Some(tokens)) =
            (entry.as_object_mut(), name, sealed_tokens)
            && !table.contains_key("token")
            && let Some(token) = tokens.get(&name)
        {
            table.insert("token".into(), token.clone());
        }
        match HookConfig::from_json(&entry, &format!("hooks[{i}]")) {
            Ok(h) => hooks.push(h),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (hooks, errors)
}

/// Whether a login's metadata holds a hook token in clear (stored before tokens were
/// sealed): it should be stored again.
pub fn has_clear_tokens(metadata: &Value) -> bool {
    metadata
        .get("hooks")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| e.get("token").is_some()))
}

/// One table row per hook: no token, ever.
fn rows(hooks: &[Arc<Hook>], prefix: &str) -> Vec<Vec<String>> {
    let join = |v: &[String]| {
        if v.is_empty() {
            "—".to_owned()
        } else {
            v.join(", ")
        }
    };
    hooks
        .iter()
        .map(|h| {
            let c = &h.config;
            vec![
                c.name.clone(),
                format!("{prefix}/{}", c.name),
                join(&c.to),
                join(&c.rooms),
                c.format.as_str().to_owned(),
                c.message_type.as_str().to_owned(),
                c.url.clone().unwrap_or_else(|| "—".into()),
                match &h.origin {
                    HookOrigin::Config => "configuration file".to_owned(),
                    HookOrigin::Command { owner } => owner.clone(),
                },
            ]
        })
        .collect()
}

fn columns() -> Vec<(String, String)> {
    [
        ("name", "Name"),
        ("path", "Path"),
        ("to", "Recipients"),
        ("rooms", "Rooms"),
        ("format", "Format"),
        ("type", "Type"),
        ("url", "Outgoing URL"),
        ("source", "Added by"),
    ]
    .iter()
    .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
    .collect()
}

/// A fresh random token: 24 bytes from the operating system, hex-encoded.
pub fn generate_token() -> Result<String, BridgeError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| BridgeError::internal(format!("cannot generate a token: {e}")))?;
    Ok(hex::encode(bytes))
}

/// The commands' state: the live hooks, the core's queue for storing them, and a lock that
/// keeps each owner's stored list in step with the live set.
#[derive(Debug)]
pub struct HookCommands {
    hooks: Arc<HookSet>,
    config: WebhookConfig,
    outbound: OutboundPolicy,
    router: Mutex<Option<EventRouter>>,
    store_lock: Arc<tokio::sync::Mutex<()>>,
}

impl HookCommands {
    /// Commands over `hooks`, for this config; a hook URL whose address `outbound`
    /// refuses is refused when added.
    pub fn new(hooks: Arc<HookSet>, config: WebhookConfig, outbound: OutboundPolicy) -> Self {
        Self {
            hooks,
            config,
            outbound,
            router: Mutex::new(None),
            store_lock: Arc::default(),
        }
    }

    /// Gives the core's queue, once the gateway is up; commands need it to store hooks.
    pub fn set_router(&self, router: EventRouter) {
        *self.router.lock().unwrap_or_else(|p| p.into_inner()) = Some(router);
    }

    fn sink_for(&self, owner: &str) -> Result<EventSink, BridgeError> {
        self.router
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.sink_for(owner, user_login(owner)))
            .ok_or_else(|| {
                BridgeError::new(
                    ErrorKind::ServiceUnavailable,
                    "the webhook bridge is not started yet; try again in a moment",
                )
            })
    }

    /// Runs one of the commands of [`specs`].
    pub async fn run(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
    ) -> Result<CommandOutput, BridgeError> {
        let action =
            Action::of(node).ok_or_else(|| BridgeError::not_found(format!("no command {node}")))?;
        let user = ctx.user.jid.as_str();
        let admin_only = matches!(
            action,
            Action::Add(Scope::Any) | Action::Remove(Scope::Any) | Action::List(Scope::Any)
        );
        if admin_only && !ctx.is_admin {
            return Err(BridgeError::new(
                ErrorKind::Forbidden,
                format!("{node} is for the gateway's admins only"),
            ));
        }
        if !admin_only && self.config.user_hook_limit == 0 {
            return Err(BridgeError::new(
                ErrorKind::Forbidden,
                "users may not manage their own hooks on this gateway",
            ));
        }
        match action {
            Action::Add(scope) => self.add(ctx, scope, form).await,
            Action::Remove(scope) => self.remove(user, scope, form).await,
            Action::List(scope) => Ok(self.list(user, scope)),
        }
    }

    async fn add(
        &self,
        ctx: &CommandContext,
        scope: Scope,
        form: &FormValues,
    ) -> Result<CommandOutput, BridgeError> {
        let user = ctx.user.jid.as_str();
        let new = hook_from_form(form, user, scope, &self.config, generate_token)?;
        if let Some(url) = &new.hook.url
            && let Some(refused) = crate::outgoing::refused_address(url, &self.outbound)
        {
            return Err(refused.into());
        }
        let name = new.hook.name.clone();
        let sink = self.sink_for(user)?;
        let replace = scope == Scope::Any && form.get_bool("replace").unwrap_or(false);
        let origin = HookOrigin::Command {
            owner: user.to_owned(),
        };
        let _guard = self.store_lock.lock().await;
        if scope == Scope::Own
            && !ctx.is_admin
            && self.hooks.owned_by(user).len() >= self.config.user_hook_limit as usize
        {
            return Err(BridgeError::new(
                ErrorKind::ResourceConstraint,
                format!(
                    "you have {} hooks already, the most allowed here: remove one first",
                    self.config.user_hook_limit
                ),
            ));
        }
        let previous = match self.hooks.get(&name) {
            None => None,
            Some(h) if h.origin == HookOrigin::Config => {
                return Err(BridgeError::new(
                    ErrorKind::Conflict,
                    format!(
                        "`{name}` is a hook of the configuration file; commands cannot replace it"
                    ),
                ));
            }
            Some(_) if !replace => {
                let hint = if scope == Scope::Any {
                    " (tick \"replace\" to replace it)"
                } else {
                    ""
                };
                return Err(BridgeError::new(
                    ErrorKind::Conflict,
                    format!("there is already a hook named `{name}`; choose another name{hint}"),
                ));
            }
            Some(h) => Some(h),
        };
        self.hooks.insert(new.hook, origin);
        let stored = self.store_locked(user, &sink).await;
        // Ownership moved: the previous owner's stored list must lose the hook.
        let previous_owner = previous
            .as_ref()
            .and_then(|p| p.origin.owner())
            .filter(|o| *o != user);
        let stored = match (stored, previous_owner) {
            (Ok(()), Some(owner)) => {
                let owner_sink = self.sink_for(owner)?;
                self.store_locked(owner, &owner_sink).await
            }
            (other, _) => other,
        };
        if let Err(e) = stored {
            match previous {
                Some(p) => self.hooks.insert(p.config.clone(), p.origin.clone()),
                None => self.hooks.remove(&name),
            };
            return Err(e);
        }
        tracing::info!(hook = %name, by = %user, replaced = previous.is_some(), "webhook added by command");
        let jid = match &self.config.domain {
            Some(d) => format!("{name}@{d}"),
            None => name.clone(),
        };
        let mut note = format!(
            "Hook `{name}` {}: POST to {}/{name} on the webhook listener; it speaks as {jid}.",
            if previous.is_some() {
                "replaced"
            } else {
                "added"
            },
            self.config.path_prefix
        );
        match new.generated_token {
            Some(t) => note.push_str(&format!(
                " Its token, shown only this once: {t} (send it as `Authorization: Bearer …` \
                 or use it as the HMAC secret)."
            )),
            None => note.push_str(" It uses the token you gave."),
        }
        Ok(CommandOutput::note(note))
    }

    /// Stores every hook `owner` added, replacing what was stored; the caller holds the
    /// store lock.
    async fn store_locked(&self, owner: &str, sink: &EventSink) -> Result<(), BridgeError> {
        send_metadata(&self.hooks, owner, sink).await
    }

    async fn remove(
        &self,
        user: &str,
        scope: Scope,
        form: &FormValues,
    ) -> Result<CommandOutput, BridgeError> {
        let name = form.get("name").unwrap_or_default().trim().to_lowercase();
        let _guard = self.store_lock.lock().await;
        let hook = self
            .hooks
            .get(&name)
            .ok_or_else(|| BridgeError::not_found(format!("there is no hook named `{name}`")))?;
        let owner = match (&hook.origin, scope) {
            (HookOrigin::Config, _) => {
                return Err(BridgeError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "`{name}` is declared in the configuration file: remove it there and \
                         restart the gateway"
                    ),
                ));
            }
            (HookOrigin::Command { owner }, Scope::Own) if owner != user => {
                return Err(BridgeError::new(
                    ErrorKind::Forbidden,
                    format!("`{name}` was not added by you; you can only remove your own hooks"),
                ));
            }
            (HookOrigin::Command { owner }, _) => owner.clone(),
        };
        let sink = self.sink_for(&owner)?;
        self.hooks.remove(&name);
        if let Err(e) = self.store_locked(&owner, &sink).await {
            self.hooks.insert(hook.config.clone(), hook.origin.clone());
            return Err(e);
        }
        tracing::info!(hook = %name, by = %user, owner = %owner, "webhook removed by command");
        Ok(CommandOutput::note(format!("Hook `{name}` removed.")))
    }

    fn list(&self, user: &str, scope: Scope) -> CommandOutput {
        let hooks: Vec<Arc<Hook>> = self
            .hooks
            .all()
            .into_iter()
            .filter(|h| {
                scope == Scope::Any
                    || h.origin.owner() == Some(user)
                    || h.config.to.iter().any(|t| t.eq_ignore_ascii_case(user))
            })
            .collect();
        let note = match (hooks.len(), scope) {
            (0, Scope::Own) => "You have no hooks.".to_owned(),
            (0, Scope::Any) => "There are no hooks.".to_owned(),
            (n, _) => format!("{n} hooks (tokens are never shown)."),
        };
        CommandOutput {
            note,
            columns: columns(),
            rows: rows(&hooks, &self.config.path_prefix),
            next: None,
        }
    }

    /// Registers the hooks stored in a login's metadata (at start-up, and whenever the core
    /// loads the login again). A stored hook whose name is taken by a config hook or by
    /// another user's hook is skipped with a warning. If the metadata lacks hooks the owner
    /// added (the login was saved again without them), they are stored again.
    pub async fn load(&self, login: &StoredLogin, events: &EventSink) {
        let owner = login.user.jid.as_str();
        let (stored, errors) = hooks_from_metadata(&login.metadata);
        for e in errors {
            tracing::warn!(user = %owner, error = %e, "a stored webhook cannot be read; skipped");
        }
        let mut names = BTreeSet::new();
        let origin = HookOrigin::Command {
            owner: owner.to_owned(),
        };
        for hook in stored {
            let name = hook.name.clone();
            if let Some(why) = self.config.reserved_name(&name) {
                tracing::warn!(user = %owner, hook = %name, "a stored webhook is skipped: {why}");
                continue;
            }
            match self.hooks.insert_new(hook, origin.clone()) {
                Ok(()) => {
                    names.insert(name);
                }
                Err(existing) if existing.origin == origin => {
                    names.insert(name);
                }
                Err(existing) => {
                    let holder = existing
                        .origin
                        .owner()
                        .map_or_else(|| "the configuration file".to_owned(), str::to_owned);
                    tracing::warn!(user = %owner, hook = %name, holder = %holder,
                        "a stored webhook is skipped: its name is taken");
                }
            }
        }
        let missing = self
            .hooks
            .owned_by(owner)
            .iter()
            .any(|h| !names.contains(&h.config.name));
        let clear = has_clear_tokens(&login.metadata);
        if clear {
            tracing::info!(user = %owner, "webhook tokens stored in clear: storing them sealed");
        }
        if missing || clear {
            let (hooks, lock, owner, sink) = (
                self.hooks.clone(),
                self.store_lock.clone(),
                owner.to_owned(),
                events.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = store(&hooks, &lock, &owner, &sink).await {
                    tracing::warn!(user = %owner, "cannot store the user's webhooks again: {}", e.text);
                }
            });
        }
    }

    /// The metadata registration should keep for `user`: their hooks, so that registering
    /// again does not drop them.
    pub fn metadata(&self, user: &str) -> Value {
        metadata_for(&self.hooks.owned_by(user))
    }
}

async fn store(
    hooks: &HookSet,
    lock: &tokio::sync::Mutex<()>,
    owner: &str,
    sink: &EventSink,
) -> Result<(), BridgeError> {
    let _guard = lock.lock().await;
    send_metadata(hooks, owner, sink).await
}

async fn send_metadata(hooks: &HookSet, owner: &str, sink: &EventSink) -> Result<(), BridgeError> {
    let metadata = metadata_for(&hooks.owned_by(owner));
    sink.send(RemoteEvent::SaveMetadata(metadata))
        .await
        .map_err(|e| BridgeError::new(ErrorKind::ServiceUnavailable, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_bridge_api::{CommandTarget, User};
    use tokio::sync::mpsc;

    type Queue = mpsc::Receiver<(String, LoginId, RemoteEvent)>;

    fn config(extra: Value) -> WebhookConfig {
        let mut table = json!({
            "domain": "hooks.localhost",
            "hooks": [{"name": "ci", "token": "config-token", "to": ["alice@localhost"]}]
        });
        for (k, v) in extra.as_object().unwrap() {
            table[k] = v.clone();
        }
        WebhookConfig::from_json(&table).unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> FormValues {
        let mut f = FormValues::default();
        for (k, v) in pairs {
            f.set(*k, *v);
        }
        f
    }

    fn ctx(jid: &str, is_admin: bool) -> CommandContext {
        CommandContext {
            user: User { jid: jid.into() },
            is_admin,
            target: CommandTarget::Gateway,
            state: FormValues::default(),
            rooms: Vec::new(),
        }
    }

    fn started(config: WebhookConfig) -> (HookCommands, Queue) {
        let hooks = Arc::new(HookSet::new(config.hooks.iter().cloned()));
        let commands = HookCommands::new(hooks, config, OutboundPolicy::default());
        let (tx, rx) = mpsc::channel(16);
        commands.set_router(EventRouter::new(tx));
        (commands, rx)
    }

    /// The next event, which must be a SaveMetadata: (user, login, stored hook names).
    fn saved(rx: &mut Queue) -> (String, String, Vec<String>) {
        let (user, login, event) = rx.try_recv().expect("a SaveMetadata event");
        let RemoteEvent::SaveMetadata(meta) = event else {
            panic!("expected SaveMetadata, got {event:?}");
        };
        let (hooks, errors) = hooks_from_metadata(&meta);
        assert!(errors.is_empty(), "{errors:?}");
        (
            user,
            login.to_string(),
            hooks.into_iter().map(|h| h.name).collect(),
        )
    }

    fn kind(r: Result<CommandOutput, BridgeError>) -> ErrorKind {
        r.expect_err("the command should fail").kind
    }

    #[test]
    fn user_commands_follow_the_config() {
        let nodes = |c: &WebhookConfig| -> Vec<String> {
            specs(c).into_iter().map(|s| s.node).collect::<Vec<_>>()
        };
        assert_eq!(
            nodes(&config(json!({}))),
            [ADD, REMOVE, LIST, ADMIN_ADD, ADMIN_REMOVE, ADMIN_LIST]
        );
        assert_eq!(
            nodes(&config(json!({"user_hook_limit": 0}))),
            [ADMIN_ADD, ADMIN_REMOVE, ADMIN_LIST]
        );
        let user_add = |c: &WebhookConfig| {
            specs(c)
                .into_iter()
                .find(|s| s.node == ADD)
                .unwrap()
                .fields
                .into_iter()
                .map(|f| f.var)
                .collect::<Vec<_>>()
        };
        assert!(!user_add(&config(json!({}))).contains(&"url".to_owned()));
        assert!(user_add(&config(json!({"user_hook_urls": true}))).contains(&"url".to_owned()));
        let admin = specs(&config(json!({})));
        let admin_add = admin.iter().find(|s| s.node == ADMIN_ADD).unwrap();
        assert_eq!(admin_add.access, CommandAccess::Admin);
        assert!(
            admin_add
                .fields
                .iter()
                .any(|f| f.var == "token" && f.is_secret())
        );
    }

    #[test]
    fn a_user_form_delivers_to_the_user_only() {
        let c = config(json!({}));
        let new = hook_from_form(
            &form(&[("name", "Deploys"), ("message_type", "headline")]),
            "bob@localhost",
            Scope::Own,
            &c,
            || Ok("generated".into()),
        )
        .unwrap();
        assert_eq!(new.hook.name, "deploys");
        assert_eq!(new.hook.to, ["bob@localhost"]);
        assert!(new.hook.rooms.is_empty());
        assert_eq!(new.hook.message_type, MessageType::Headline);
        assert_eq!(new.generated_token.as_deref(), Some("generated"));
        assert_eq!(new.hook.token.expose(), b"generated");
        // A given token is kept and not echoed.
        let given = hook_from_form(
            &form(&[("name", "x"), ("token", "mine")]),
            "bob@localhost",
            Scope::Own,
            &c,
            || panic!("no token should be generated"),
        )
        .unwrap();
        assert_eq!(given.generated_token, None);
        assert_eq!(given.hook.token.expose(), b"mine");
    }

    #[test]
    fn bad_forms_are_refused_with_the_field() {
        let c = config(json!({}));
        let refuse = |pairs: &[(&str, &str)], scope| {
            hook_from_form(&form(pairs), "bob@localhost", scope, &c, || Ok("t".into()))
                .expect_err("the form should be refused")
        };
        let e = refuse(&[("name", "no way")], Scope::Own);
        assert!(e.text.starts_with("name: "), "{}", e.text);
        let e = refuse(&[("name", "x"), ("url", "http://10.0.0.1/")], Scope::Own);
        assert_eq!(e.kind, ErrorKind::Forbidden);
        let e = refuse(&[("name", "x"), ("format", "template")], Scope::Own);
        assert!(e.text.contains("templates"), "{}", e.text);
        let e = refuse(&[("name", "x"), ("to", "a@x/resource")], Scope::Any);
        assert!(e.text.starts_with("to[0]: "), "{}", e.text);
        let e = refuse(&[("name", "x")], Scope::Any);
        assert!(e.text.contains("would do nothing"), "{}", e.text);
        let rooted = config(json!({"path_prefix": ""}));
        let e = hook_from_form(
            &form(&[("name", "metrics")]),
            "bob@localhost",
            Scope::Own,
            &rooted,
            || Ok("t".into()),
        )
        .unwrap_err();
        assert!(e.text.contains("reserved"), "{}", e.text);
    }

    #[test]
    fn an_admin_form_takes_lists_one_per_line_or_comma() {
        let new = hook_from_form(
            &form(&[
                ("name", "ops"),
                ("to", "a@x\nb@y, c@z"),
                ("rooms", "dev@conference.x"),
                ("nick", "Ops bot"),
                ("url", "https://example.org/in"),
                ("senders", "x"),
            ]),
            "admin@localhost",
            Scope::Any,
            &config(json!({})),
            || Ok("t".into()),
        )
        .unwrap();
        assert_eq!(new.hook.to, ["a@x", "b@y", "c@z"]);
        assert_eq!(new.hook.rooms, ["dev@conference.x"]);
        assert_eq!(new.hook.nick, "Ops bot");
        assert_eq!(new.hook.url.as_deref(), Some("https://example.org/in"));
        assert_eq!(new.hook.senders, ["x"]);
    }

    #[test]
    fn metadata_round_trips_and_bad_entries_are_named() {
        let mut h = HookConfig::new("ops", "tok");
        h.to = vec!["a@x".into()];
        h.rooms = vec!["r@conference.x".into()];
        h.nick = "Ops".into();
        h.format = PayloadFormat::Gitlab;
        h.message_type = MessageType::Headline;
        h.url = Some("https://example.org/".into());
        h.senders = vec!["x".into()];
        let meta = metadata_for(&[Arc::new(Hook::new(h, HookOrigin::Config))]);
        // The token is only under "sealed", which the core seals.
        assert_eq!(meta["sealed"]["tokens"]["ops"], "tok");
        assert!(meta["hooks"][0].get("token").is_none(), "{meta}");
        assert!(!meta["hooks"].to_string().contains("tok"));
        assert!(!has_clear_tokens(&meta));
        let (back, errors) = hooks_from_metadata(&meta);
        assert!(errors.is_empty());
        let b = &back[0];
        assert_eq!(b.token.expose(), b"tok");
        assert_eq!((b.to.clone(), b.rooms.clone()), (h_to(), h_rooms()));
        assert_eq!(b.nick, "Ops");
        assert_eq!(b.format, PayloadFormat::Gitlab);
        assert_eq!(b.message_type, MessageType::Headline);
        assert_eq!(b.url.as_deref(), Some("https://example.org/"));
        assert_eq!(b.senders, ["x"]);

        let (none, errors) = hooks_from_metadata(&json!({}));
        assert!(none.is_empty() && errors.is_empty());
        let (good, errors) = hooks_from_metadata(&json!({"hooks": [
            {"name": "ok", "token": "t", "to": ["a@x"]},
            {"name": "BAD", "token": "hidden-token", "to": ["a@x"]}
        ]}));
        assert_eq!(good.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("hooks[1].name"), "{errors:?}");
        assert!(!errors[0].contains("hidden-token"));
    }

    fn h_to() -> Vec<String> {
        vec!["a@x".into()]
    }
    fn h_rooms() -> Vec<String> {
        vec!["r@conference.x".into()]
    }

    #[test]
    fn generated_tokens_are_long_and_different() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_user_adds_lists_and_removes_their_own_hooks() {
        let (cmds, mut rx) = started(config(json!({"user_hook_limit": 2})));
        let bob = ctx("bob@localhost", false);
        let out = cmds
            .run(&bob, ADD, &form(&[("name", "mine")]))
            .await
            .unwrap();
        assert!(out.note.contains("shown only this once"), "{}", out.note);
        assert_eq!(
            saved(&mut rx),
            (
                "bob@localhost".into(),
                "webhook:bob@localhost".into(),
                vec!["mine".into()]
            )
        );
        let token = out
            .note
            .split("once: ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(
            cmds.hooks.get("mine").unwrap().config.token.expose(),
            token.as_bytes()
        );

        // Names that exist are taken, whoever holds them.
        assert_eq!(
            kind(cmds.run(&bob, ADD, &form(&[("name", "ci")])).await),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(cmds.run(&bob, ADD, &form(&[("name", "mine")])).await),
            ErrorKind::Conflict
        );
        cmds.run(
            &bob,
            ADD,
            &form(&[("name", "two"), ("token", "secret-two")]),
        )
        .await
        .unwrap();
        saved(&mut rx);
        assert_eq!(
            kind(cmds.run(&bob, ADD, &form(&[("name", "three")])).await),
            ErrorKind::ResourceConstraint
        );

        // The list shows bob's hooks and the hooks that reach him, never a token.
        let list = cmds.run(&bob, LIST, &form(&[])).await.unwrap();
        let names: Vec<&str> = list.rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, ["mine", "two"]);
        let shown = format!("{list:?}");
        assert!(!shown.contains("secret-two") && !shown.contains(token));
        let alice_list = cmds
            .run(&ctx("alice@localhost", false), LIST, &form(&[]))
            .await
            .unwrap();
        assert_eq!(alice_list.rows.len(), 1);
        assert_eq!(alice_list.rows[0][7], "configuration file");

        // Bob cannot remove the config's hook nor anyone else's.
        let e = cmds
            .run(&bob, REMOVE, &form(&[("name", "ci")]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(e.text.contains("configuration file"), "{}", e.text);
        cmds.run(
            &ctx("carol@localhost", false),
            ADD,
            &form(&[("name", "carols")]),
        )
        .await
        .unwrap();
        saved(&mut rx);
        assert_eq!(
            kind(cmds.run(&bob, REMOVE, &form(&[("name", "carols")])).await),
            ErrorKind::Forbidden
        );
        cmds.run(&bob, REMOVE, &form(&[("name", "mine")]))
            .await
            .unwrap();
        assert_eq!(saved(&mut rx).2, ["two"]);
        assert!(cmds.hooks.get("mine").is_none());
        assert_eq!(
            kind(cmds.run(&bob, REMOVE, &form(&[("name", "mine")])).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(cmds.run(&bob, ADMIN_LIST, &form(&[])).await),
            ErrorKind::Forbidden
        );
    }

    #[tokio::test]
    async fn an_admin_manages_any_command_hook_but_not_the_config() {
        let (cmds, mut rx) = started(config(json!({})));
        let admin = ctx("admin@localhost", true);
        let bob = ctx("bob@localhost", false);
        cmds.run(&bob, ADD, &form(&[("name", "bobs")]))
            .await
            .unwrap();
        saved(&mut rx);
        cmds.run(
            &admin,
            ADMIN_ADD,
            &form(&[
                ("name", "ops"),
                ("token", "t"),
                ("rooms", "dev@conference.x"),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(saved(&mut rx).0, "admin@localhost");
        let all = cmds.run(&admin, ADMIN_LIST, &form(&[])).await.unwrap();
        assert_eq!(all.rows.len(), 3);

        let e = cmds
            .run(&admin, ADMIN_REMOVE, &form(&[("name", "ci")]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(e.text.contains("configuration file"));
        let e = cmds
            .run(
                &admin,
                ADMIN_ADD,
                &form(&[("name", "ci"), ("to", "a@x"), ("replace", "1")]),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(
            kind(
                cmds.run(&admin, ADMIN_ADD, &form(&[("name", "bobs"), ("to", "a@x")]))
                    .await
            ),
            ErrorKind::Conflict
        );

        // Replacing bob's hook moves it to the admin: both stored lists change.
        cmds.run(
            &admin,
            ADMIN_ADD,
            &form(&[("name", "bobs"), ("to", "a@x"), ("replace", "1")]),
        )
        .await
        .unwrap();
        let mut both = [saved(&mut rx), saved(&mut rx)];
        both.sort();
        assert_eq!(both[0].0, "admin@localhost");
        assert_eq!(both[0].2, ["bobs", "ops"]);
        assert_eq!((both[1].0.as_str(), both[1].2.len()), ("bob@localhost", 0));

        cmds.run(&admin, ADMIN_REMOVE, &form(&[("name", "bobs")]))
            .await
            .unwrap();
        assert_eq!(saved(&mut rx).2, ["ops"]);
    }

    #[tokio::test]
    async fn commands_before_start_fail_and_change_nothing() {
        let c = config(json!({}));
        let cmds = HookCommands::new(
            Arc::new(HookSet::new(c.hooks.clone())),
            c,
            OutboundPolicy::default(),
        );
        let e = cmds
            .run(&ctx("bob@localhost", false), ADD, &form(&[("name", "x")]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServiceUnavailable);
        assert!(cmds.hooks.get("x").is_none());
    }

    #[tokio::test]
    async fn stored_hooks_come_back_and_lost_ones_are_stored_again() {
        let (cmds, mut rx) = started(config(json!({})));
        let (tx, _keep) = mpsc::channel(4);
        let sink = EventSink::new("bob@localhost", user_login("bob@localhost"), tx);
        let login = |metadata| StoredLogin {
            id: user_login("bob@localhost"),
            user: User {
                jid: "bob@localhost".into(),
            },
            fields: FormValues::default(),
            metadata,
            services: Default::default(),
            store: estuary_bridge_api::LoginStore::in_memory(),
        };
        cmds.load(
            &login(json!({
                "hooks": [
                    {"name": "mine", "to": ["bob@localhost"]},
                    {"name": "ci", "to": ["bob@localhost"]}
                ],
                "sealed": {"tokens": {"mine": "t", "ci": "t"}}
            })),
            &sink,
        )
        .await;
        let mine = cmds.hooks.get("mine").expect("the stored hook is back");
        assert_eq!(
            mine.origin,
            HookOrigin::Command {
                owner: "bob@localhost".into()
            }
        );
        assert_eq!(
            cmds.hooks.get("ci").unwrap().origin,
            HookOrigin::Config,
            "the config's hook wins"
        );
        assert!(rx.try_recv().is_err(), "nothing to store again");
        assert_eq!(cmds.metadata("bob@localhost")["hooks"][0]["name"], "mine");

        // The login was saved again without its hooks (registered anew): they are re-stored.
        let (tx2, mut rx2) = mpsc::channel(4);
        let sink2 = EventSink::new("bob@localhost", LoginId::new("bob@localhost"), tx2);
        cmds.load(&login(json!({})), &sink2).await;
        let (user, login_id, event) =
            tokio::time::timeout(std::time::Duration::from_secs(1), rx2.recv())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            (user.as_str(), login_id.as_str()),
            ("bob@localhost", "bob@localhost")
        );
        let RemoteEvent::SaveMetadata(meta) = event else {
            panic!("{event:?}")
        };
        assert_eq!(hooks_from_metadata(&meta).0[0].name, "mine");
    }

    #[test]
    fn rows_with_tokens_in_clear_are_read_and_flagged() {
        let legacy = json!({"hooks": [
            {"name": "old", "token": "clear-token", "to": ["a@x"]},
            {"name": "new", "to": ["a@x"]}
        ], "sealed": {"tokens": {"new": "sealed-token", "old": "ignored"}}});
        assert!(has_clear_tokens(&legacy));
        let (hooks, errors) = hooks_from_metadata(&legacy);
        assert!(errors.is_empty(), "{errors:?}");
        // The table's own token wins (it is the older, clear shape).
        assert_eq!(hooks[0].token.expose(), b"clear-token");
        assert_eq!(hooks[1].token.expose(), b"sealed-token");
        // A hook whose token is nowhere is an error naming the field, not a panic.
        let (none, errors) = hooks_from_metadata(&json!({"hooks": [{"name": "x", "to": ["a@x"]}]}));
        assert!(none.is_empty());
        assert_eq!(errors, ["hooks[0].token: is required"]);
    }

    #[tokio::test]
    async fn hooks_stored_in_clear_are_stored_again_sealed() {
        let (cmds, _rx) = started(config(json!({})));
        let (tx, mut stored) = mpsc::channel(4);
        let sink = EventSink::new("bob@localhost", user_login("bob@localhost"), tx);
        let login = StoredLogin {
            id: user_login("bob@localhost"),
            user: User {
                jid: "bob@localhost".into(),
            },
            fields: FormValues::default(),
            metadata: json!({"hooks": [
                {"name": "mine", "token": "clear-token", "to": ["bob@localhost"]}
            ]}),
            services: Default::default(),
            store: estuary_bridge_api::LoginStore::in_memory(),
        };
        cmds.load(&login, &sink).await;
        assert_eq!(
            cmds.hooks.get("mine").unwrap().config.token.expose(),
            b"clear-token"
        );
        let (_, _, event) = tokio::time::timeout(std::time::Duration::from_secs(1), stored.recv())
            .await
            .expect("stored again within a second")
            .unwrap();
        let RemoteEvent::SaveMetadata(meta) = event else {
            panic!("{event:?}")
        };
        assert!(!has_clear_tokens(&meta));
        assert!(!meta["hooks"].to_string().contains("clear-token"), "{meta}");
        assert_eq!(meta["sealed"]["tokens"]["mine"], "clear-token");
    }

    #[test]
    fn debug_never_shows_a_token() {
        let c = config(json!({}));
        let cmds = HookCommands::new(
            Arc::new(HookSet::new(c.hooks.clone())),
            c,
            OutboundPolicy::default(),
        );
        let shown = format!("{cmds:?}");
        assert!(
            shown.contains("ci") && !shown.contains("config-token"),
            "{shown}"
        );
    }
}
