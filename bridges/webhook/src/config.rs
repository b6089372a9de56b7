//! The `[bridges.webhook]` config table, read from the JSON the core converts it to.
//!
//! Every key is documented in `docs/bridges/webhook.md`. Numbers and booleans are also
//! accepted as strings, because environment overrides (`ESTUARY__BRIDGES__WEBHOOK__…`) arrive
//! as strings. A wrong value is reported as a [`ConfigError`] naming the full key
//! (`bridges.webhook.hooks[0].token`) and why it is wrong.

use crate::format::template::HookTemplate;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Hook names that would hide the gateway server's own endpoints when `path_prefix` is empty.
const RESERVED: &[&str] = &["healthz", "metrics"];

/// The prefix of every key this module reports.
const ROOT: &str = "bridges.webhook";

/// Keys of the table that belong to the core, not to this bridge.
const CORE_KEYS: &[&str] = &["domain", "secret"];

/// A wrong key in the webhook table: which one and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The full key, e.g. `bridges.webhook.hooks[1].format`.
    pub key: String,
    /// What is wrong with it and what is expected.
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A hook's secret token. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
    /// The token's bytes, for comparisons and HMAC keys only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
    /// The token as text, for storing it in the login metadata only.
    pub(crate) fn expose_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// How a hook's messages are typed in XMPP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageType {
    /// `type="chat"`: an ordinary one-to-one message ([`MessageKind::Normal`](estuary_bridge_api::MessageKind::Normal)).
    #[default]
    Chat,
    /// `type="headline"`: a notification ([`MessageKind::Notice`](estuary_bridge_api::MessageKind::Notice)).
    Headline,
}

/// How a hook's incoming payloads are turned into text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Detect the sender from headers and payload shape; see [`crate::format`](mod@crate::format).
    #[default]
    Auto,
    /// A plain text body or `{"text"|"body"|"message": …}` only.
    Text,
    /// Gitea / Forgejo events.
    Forgejo,
    /// GitHub events.
    Github,
    /// GitLab events.
    Gitlab,
    /// Prometheus Alertmanager alert groups.
    Alertmanager,
    /// The hook's `template` only.
    Template,
}

impl PayloadFormat {
    /// Reads a `format` value (`gitea` is an alias of `forgejo`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "text" => Self::Text,
            "forgejo" | "gitea" => Self::Forgejo,
            "github" => Self::Github,
            "gitlab" => Self::Gitlab,
            "alertmanager" => Self::Alertmanager,
            "template" => Self::Template,
            _ => return None,
        })
    }

    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::Forgejo => "forgejo",
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Alertmanager => "alertmanager",
            Self::Template => "template",
        }
    }
}

impl MessageType {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Headline => "headline",
        }
    }
}

/// Serving HTTPS: a PEM certificate chain and its PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tls_cert`: the certificate chain, PEM.
    pub cert: PathBuf,
    /// `tls_key`: the private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Outgoing delivery: timeouts and retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingConfig {
    /// `outgoing_timeout_secs`: how long one attempt may take (default 10 s).
    pub timeout: Duration,
    /// `outgoing_attempts`: attempts in all, the first included (default 3, at most 10).
    pub attempts: u32,
    /// `outgoing_backoff_ms`: the wait before the second attempt, doubled each time
    /// (default 500 ms).
    pub backoff: Duration,
}

impl Default for OutgoingConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// One `[[bridges.webhook.hooks]]` entry.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// `name`: the contact's local part and the last path segment (`[a-z0-9._-]`, ≤ 64).
    pub name: String,
    /// `token`: the shared secret for bearer auth and HMAC signatures.
    pub token: Token,
    /// `to`: bare JIDs that receive the hook's messages.
    pub to: Vec<String>,
    /// `rooms`: MUC room JIDs the hook posts into.
    pub rooms: Vec<String>,
    /// `nick`: the nick used in rooms (default: the hook's name).
    pub nick: String,
    /// `message_type`: `chat` (default) or `headline`.
    pub message_type: MessageType,
    /// `format`: how payloads become text (default `auto`).
    pub format: PayloadFormat,
    /// `template`: a minijinja template, compiled at load time.
    pub template: Option<HookTemplate>,
    /// `url`: where messages users send to the hook are POSTed (http or https).
    pub url: Option<String>,
    /// `rate_limit_per_minute`: accepted requests per minute (default 60; 0 = no limit).
    pub rate_limit_per_minute: u32,
    /// `senders`: who may send to `url`: bare JIDs, domains (`example.org`) or `*`
    /// (default: the JIDs in `to`).
    pub senders: Vec<String>,
}

impl HookConfig {
    /// A hook with defaults and the given name and token, delivering to nobody yet.
    pub fn new(name: impl Into<String>, token: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            nick: name.clone(),
            name,
            token: Token::new(token),
            to: Vec::new(),
            rooms: Vec::new(),
            message_type: MessageType::Chat,
            format: PayloadFormat::Auto,
            template: None,
            url: None,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT,
            senders: Vec::new(),
        }
    }

    /// Whether `user` (a bare JID) may send messages to this hook's `url`.
    pub fn allows_sender(&self, user: &str) -> bool {
        let user = user.to_lowercase();
        let domain = user.rsplit_once('@').map_or(user.as_str(), |(_, d)| d);
        let allowed = if self.senders.is_empty() {
            &self.to
        } else {
            &self.senders
        };
        allowed.iter().any(|entry| {
            let entry = entry.to_lowercase();
            entry == "*" || entry == user || (!entry.contains('@') && entry == domain)
        })
    }

    /// Reads one hook table (the shape of a `[[bridges.webhook.hooks]]` entry, as JSON) and
    /// checks it; errors name `key` and the field, e.g. `{key}.token`.
    pub fn from_json(entry: &Value, key: &str) -> Result<Self, ConfigError> {
        parse_hook(entry, key)
    }

    /// The hook as a table that [`HookConfig::from_json`] reads back, **token included**:
    /// only for storing the hook (in the login metadata), never for showing or logging.
    pub fn to_json(&self) -> Value {
        let mut t = Map::new();
        t.insert("name".into(), Value::from(self.name.clone()));
        t.insert("token".into(), Value::from(self.token.expose_str()));
        t.insert("to".into(), Value::from(self.to.clone()));
        t.insert("rooms".into(), Value::from(self.rooms.clone()));
        t.insert("nick".into(), Value::from(self.nick.clone()));
        t.insert(
            "message_type".into(),
            Value::from(self.message_type.as_str()),
        );
        t.insert("format".into(), Value::from(self.format.as_str()));
        if let Some(template) = &self.template {
            t.insert("template".into(), Value::from(template.source()));
        }
        if let Some(url) = &self.url {
            t.insert("url".into(), Value::from(url.clone()));
        }
        t.insert(
            "rate_limit_per_minute".into(),
            Value::from(self.rate_limit_per_minute),
        );
        t.insert("senders".into(), Value::from(self.senders.clone()));
        Value::Object(t)
    }

    /// Checks the hook on its own; `key` is its config path, e.g. `bridges.webhook.hooks[0]`.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        validate_name(&self.name).map_err(|r| ConfigError::new(format!("{key}.name"), r))?;
        if self.token.expose().is_empty() {
            return Err(ConfigError::new(
                format!("{key}.token"),
                "must not be empty: every hook needs a secret token",
            ));
        }
        for (i, jid) in self.to.iter().enumerate() {
            validate_jid(jid, false).map_err(|r| ConfigError::new(format!("{key}.to[{i}]"), r))?;
        }
        for (i, jid) in self.rooms.iter().enumerate() {
            validate_jid(jid, true)
                .map_err(|r| ConfigError::new(format!("{key}.rooms[{i}]"), r))?;
        }
        if self.nick.trim().is_empty() || self.nick.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{key}.nick"),
                "must be a non-empty room nick without control characters",
            ));
        }
        if self.format == PayloadFormat::Template && self.template.is_none() {
            return Err(ConfigError::new(
                format!("{key}.template"),
                "is required when format = \"template\"",
            ));
        }
        if let Some(url) = &self.url {
            validate_url(url).map_err(|r| ConfigError::new(format!("{key}.url"), r))?;
        }
        if self.to.is_empty() && self.rooms.is_empty() && self.url.is_none() {
            return Err(ConfigError::new(
                key.to_owned(),
                "the hook has no `to`, no `rooms` and no `url`: it would do nothing",
            ));
        }
        Ok(())
    }
}

/// The default `rate_limit_per_minute`.
pub const DEFAULT_RATE_LIMIT: u32 = 60;
/// The default `max_body_bytes` (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// The default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default `path_prefix`.
pub const DEFAULT_PREFIX: &str = "/hooks";
/// The default `user_hook_limit`.
pub const DEFAULT_USER_HOOK_LIMIT: u32 = 10;

/// The whole `[bridges.webhook]` table.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `domain`: the component domain (only used to fill the outgoing `to` field).
    pub domain: Option<String>,
    /// `listen`: where this bridge's own listener was, before the gateway had one HTTP
    /// server (default `127.0.0.1:8080`). The bridge does not listen: the core reads it
    /// (with `tls`, `header_timeout_secs` and `max_connections`) for a config without
    /// `[http]`, and tells the admin to move it.
    pub listen: SocketAddr,
    /// `path_prefix`: where hooks live (default `/hooks`; `""` puts them at the root).
    pub path_prefix: String,
    /// `max_body_bytes`: the largest accepted request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// `tls_cert` + `tls_key`: HTTPS, as for `listen` (read by the core without `[http]`).
    pub tls: Option<TlsConfig>,
    /// `outgoing_*`: outgoing delivery settings.
    pub outgoing: OutgoingConfig,
    /// `user_hook_limit`: how many hooks a user may add for themselves by command
    /// (default 10; 0 turns the user commands off; admins have no limit).
    pub user_hook_limit: u32,
    /// `user_hook_urls`: whether users (not admins) may give their hooks an outgoing URL
    /// (default false: the gateway would POST wherever a user says, its own network included).
    pub user_hook_urls: bool,
    /// `hooks`: the hooks.
    pub hooks: Vec<HookConfig>,
    /// `header_timeout_secs`, `body_timeout_secs`, `max_connections`,
    /// `auth_failures_per_minute`: limits against abuse. The bridge applies the body
    /// timeout and the failed-authentication limit; the header timeout and the connection
    /// limit are the core's server's (read from here only without `[http]`).
    pub limits: ListenerLimits,
}

impl WebhookConfig {
    /// Why `name` cannot be a hook's name here (besides the name rules), if it cannot.
    pub fn reserved_name(&self, name: &str) -> Option<&'static str> {
        (self.path_prefix.is_empty() && RESERVED.contains(&name))
            .then_some("`healthz` and `metrics` are reserved when path_prefix is empty")
    }
}

impl WebhookConfig {
    /// Reads the table the core passes (the TOML table converted to JSON).
    pub fn from_json(table: &Value) -> Result<Self, ConfigError> {
        let t = Table::new(table, ROOT)?;
        let domain = t.string("domain")?;
        let listen = match t.string("listen")? {
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::new(format!("{ROOT}.listen"), "bad built-in default"))?,
            Some(s) => s.parse().map_err(|_| {
                ConfigError::new(
                    format!("{ROOT}.listen"),
                    format!("`{s}` is not an IP address and port, e.g. \"127.0.0.1:8080\""),
                )
            })?,
        };
        let path_prefix = normalise_prefix(
            &t.string("path_prefix")?
                .unwrap_or_else(|| DEFAULT_PREFIX.into()),
        )
        .map_err(|r| ConfigError::new(format!("{ROOT}.path_prefix"), r))?;
        let max_body_bytes = match t.uint("max_body_bytes")? {
            None => DEFAULT_MAX_BODY,
            Some(0) => {
                return Err(ConfigError::new(
                    format!("{ROOT}.max_body_bytes"),
                    "must be at least 1",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let tls = match (t.string("tls_cert")?, t.string("tls_key")?) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.into(),
                key: key.into(),
            }),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    format!("{ROOT}.tls_key"),
                    "is required when tls_cert is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{ROOT}.tls_cert"),
                    "is required when tls_key is set",
                ));
            }
        };
        let defaults = OutgoingConfig::default();
        let outgoing = OutgoingConfig {
            timeout: match t.uint("outgoing_timeout_secs")? {
                None => defaults.timeout,
                Some(0) => {
                    return Err(ConfigError::new(
                        format!("{ROOT}.outgoing_timeout_secs"),
                        "must be at least 1",
                    ));
                }
                Some(n) => Duration::from_secs(n),
            },
            attempts: match t.uint("outgoing_attempts")? {
                None => defaults.attempts,
                Some(n @ 1..=10) => n as u32,
                Some(_) => {
                    return Err(ConfigError::new(
                        format!("{ROOT}.outgoing_attempts"),
                        "must be between 1 and 10",
                    ));
                }
            },
            backoff: match t.uint("outgoing_backoff_ms")? {
                None => defaults.backoff,
                Some(n) if n <= 60_000 => Duration::from_millis(n),
                Some(_) => {
                    return Err(ConfigError::new(
                        format!("{ROOT}.outgoing_backoff_ms"),
                        "must be at most 60000",
                    ));
                }
            },
        };
        let mut hooks = Vec::new();
        let mut names = BTreeSet::new();
        for (i, entry) in t.array("hooks")?.iter().enumerate() {
            let key = format!("{ROOT}.hooks[{i}]");
            let hook = parse_hook(entry, &key)?;
            if !names.insert(hook.name.clone()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("`{}` is used by an earlier hook", hook.name),
                ));
            }
            if path_prefix.is_empty() && RESERVED.contains(&hook.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "`healthz` and `metrics` are reserved when path_prefix is empty",
                ));
            }
            hooks.push(hook);
        }
        let user_hook_limit = match t.uint("user_hook_limit")? {
            None => DEFAULT_USER_HOOK_LIMIT,
            Some(n) => u32::try_from(n)
                .map_err(|_| ConfigError::new(format!("{ROOT}.user_hook_limit"), "is too large"))?,
        };
        let user_hook_urls = t.boolean("user_hook_urls")?.unwrap_or(false);
        let limits = ListenerLimits::from_table(&t)?;
        t.reject_unknown()?;
        Ok(Self {
            domain,
            user_hook_limit,
            user_hook_urls,
            listen,
            path_prefix,
            max_body_bytes,
            tls,
            outgoing,
            hooks,
            limits,
        })
    }
}

/// The default `header_timeout_secs`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `body_timeout_secs`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The default `auth_failures_per_minute`.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// The HTTP listener's limits against slow, numerous or guessing clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// `header_timeout_secs`: how long a connection may take to send a request's headers,
    /// counted from when the server starts waiting for them; this also closes a keep-alive
    /// connection that stays idle that long (default 10 s).
    pub header_timeout: Duration,
    /// `body_timeout_secs`: how long a request may take to send its body (default 30 s).
    pub body_timeout: Duration,
    /// `max_connections`: open connections at most; more are answered 503 and closed
    /// (default 256).
    pub max_connections: usize,
    /// `auth_failures_per_minute`: failed authentications allowed per client address (IPv6:
    /// per /64) and minute before its requests are answered 429 unchecked (default 10;
    /// 0 = no limit).
    pub auth_failures_per_minute: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
        }
    }
}

impl ListenerLimits {
    fn from_table(t: &Table<'_>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let positive = |key: &'static str| -> Result<Option<u64>, ConfigError> {
            match t.uint(key)? {
                Some(0) => Err(ConfigError::new(
                    format!("{ROOT}.{key}"),
                    "must be at least 1",
                )),
                other => Ok(other),
            }
        };
        Ok(Self {
            header_timeout: positive("header_timeout_secs")?
                .map_or(defaults.header_timeout, Duration::from_secs),
            body_timeout: positive("body_timeout_secs")?
                .map_or(defaults.body_timeout, Duration::from_secs),
            max_connections: positive("max_connections")?.map_or(defaults.max_connections, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            auth_failures_per_minute: match t.uint("auth_failures_per_minute")? {
                None => defaults.auth_failures_per_minute,
                Some(n) => u32::try_from(n).map_err(|_| {
                    ConfigError::new(
                        format!("{ROOT}.auth_failures_per_minute"),
                        "is too large (0 means no limit)",
                    )
                })?,
            },
        })
    }
}

fn parse_hook(entry: &Value, key: &str) -> Result<HookConfig, ConfigError> {
    let t = Table::new(entry, key)?;
    let name = t
        .string("name")?
        .ok_or_else(|| ConfigError::new(format!("{key}.name"), "is required"))?;
    let token = t
        .string("token")?
        .ok_or_else(|| ConfigError::new(format!("{key}.token"), "is required"))?;
    let mut hook = HookConfig::new(name.clone(), token);
    hook.to = t.string_list("to")?;
    hook.rooms = t.string_list("rooms")?;
    hook.nick = t.string("nick")?.unwrap_or(name);
    hook.message_type = match t.string("message_type")?.as_deref() {
        None | Some("chat") => MessageType::Chat,
        Some("headline") => MessageType::Headline,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{key}.message_type"),
                format!("`{other}` is not one of \"chat\", \"headline\""),
            ));
        }
    };
    hook.format = match t.string("format")? {
        None => PayloadFormat::Auto,
        Some(s) => PayloadFormat::parse(&s).ok_or_else(|| {
            ConfigError::new(
                format!("{key}.format"),
                format!(
                    "`{s}` is not one of \"auto\", \"text\", \"forgejo\", \"gitea\", \"github\", \
                     \"gitlab\", \"alertmanager\", \"template\""
                ),
            )
        })?,
    };
    if let Some(source) = t.string("template")? {
        hook.template = Some(
            HookTemplate::compile(&source)
                .map_err(|e| ConfigError::new(format!("{key}.template"), e.to_string()))?,
        );
    }
    hook.url = t.string("url")?;
    if let Some(n) = t.uint("rate_limit_per_minute")? {
        hook.rate_limit_per_minute = u32::try_from(n).map_err(|_| {
            ConfigError::new(
                format!("{key}.rate_limit_per_minute"),
                "is too large (0 means no limit)",
            )
        })?;
    }
    hook.senders = t.string_list("senders")?;
    t.reject_unknown()?;
    hook.validate(key)?;
    Ok(hook)
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        return Err(format!(
            "`{name}` is not a valid hook name: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`, \
             not starting with `.` (it becomes a JID local part and a URL path segment)"
        ));
    }
    Ok(())
}

fn validate_jid(jid: &str, room: bool) -> Result<(), String> {
    let bad = jid.is_empty()
        || jid.len() > 3071
        || jid.contains('/')
        || jid.chars().any(|c| c.is_whitespace() || c.is_control())
        || jid.starts_with('@')
        || jid.ends_with('@');
    if bad {
        return Err(format!("`{jid}` is not a bare JID"));
    }
    if room && !jid.contains('@') {
        return Err(format!(
            "`{jid}` is not a room JID: expected room@conference.example.org"
        ));
    }
    Ok(())
}

fn validate_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(()),
        _ => Err(format!(
            "`{url}` must be an http:// or https:// URL with a host"
        )),
    }
}

fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let ok = trimmed.starts_with('/')
        && !trimmed.contains(['{', '}', '*', '?', '#', ' '])
        && !trimmed.contains("//");
    if !ok {
        return Err(format!(
            "`{prefix}` is not a path: expected something like \"/hooks\""
        ));
    }
    Ok(trimmed.to_owned())
}

/// A JSON object read key by key, remembering which keys were read.
struct Table<'a> {
    map: &'a Map<String, Value>,
    path: String,
    seen: std::cell::RefCell<BTreeSet<&'static str>>,
}

impl<'a> Table<'a> {
    fn new(value: &'a Value, path: &str) -> Result<Self, ConfigError> {
        let map = value
            .as_object()
            .ok_or_else(|| ConfigError::new(path, "must be a table"))?;
        Ok(Self {
            map,
            path: path.to_owned(),
            seen: Default::default(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn get(&self, key: &'static str) -> Option<&'a Value> {
        self.seen.borrow_mut().insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ConfigError::new(
                self.key(key),
                format!("must be a string, not {}", kind(other)),
            )),
        }
    }

    fn uint(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ConfigError::new(self.key(key), format!("`{n}` is not a whole number ≥ 0"))
            }),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                ConfigError::new(self.key(key), format!("`{s}` is not a whole number ≥ 0"))
            }),
            Some(other) => Err(ConfigError::new(
                self.key(key),
                format!("must be a whole number, not {}", kind(other)),
            )),
        }
    }

    fn boolean(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ConfigError::new(
                    self.key(key),
                    format!("`{s}` is not true or false"),
                )),
            },
            Some(other) => Err(ConfigError::new(
                self.key(key),
                format!("must be true or false, not {}", kind(other)),
            )),
        }
    }

    /// A list of strings; a single string (or a comma-separated one, from the
    /// environment) is taken as a list.
    fn string_list(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(ConfigError::new(
                        format!("{}[{i}]", self.key(key)),
                        format!("must be a string, not {}", kind(other)),
                    )),
                })
                .collect(),
            Some(other) => Err(ConfigError::new(
                self.key(key),
                format!("must be a list of strings, not {}", kind(other)),
            )),
        }
    }

    fn array(&self, key: &'static str) -> Result<&'a [Value], ConfigError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(ConfigError::new(
                self.key(key),
                format!(
                    "must be a list of tables ([[{}]]), not {}",
                    self.key(key),
                    kind(other)
                ),
            )),
        }
    }

    /// Fails on the first key that was never read (a typo, most likely); the core's own
    /// keys are allowed at the top level.
    fn reject_unknown(&self) -> Result<(), ConfigError> {
        let seen = self.seen.borrow();
        let top = self.path == ROOT;
        match self.map.keys().find(|k| {
            let core = top && CORE_KEYS.contains(&k.as_str());
            !(core || seen.contains(k.as_str()))
        }) {
            None => Ok(()),
            Some(unknown) => Err(ConfigError::new(
                self.key(unknown),
                "is not a known key (see docs/bridges/webhook.md)",
            )),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> ConfigError {
        WebhookConfig::from_json(&v).expect_err("config should be refused")
    }

    #[test]
    fn the_issue_example_loads_with_defaults() {
        let c = WebhookConfig::from_json(&json!({
            "domain": "hooks.localhost", "secret": "x", "listen": "127.0.0.1:8080",
            "hooks": [{"name": "ci", "token": "s3cret", "to": ["alice@localhost"]}]
        }))
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.path_prefix, "/hooks");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY);
        assert_eq!(c.domain.as_deref(), Some("hooks.localhost"));
        let h = &c.hooks[0];
        assert_eq!((h.name.as_str(), h.nick.as_str()), ("ci", "ci"));
        assert_eq!(h.rate_limit_per_minute, 60);
        assert_eq!(h.format, PayloadFormat::Auto);
        assert_eq!(format!("{:?}", h.token), "Token(<redacted>)");
    }

    #[test]
    fn environment_strings_are_accepted() {
        let c = WebhookConfig::from_json(&json!({
            "max_body_bytes": "2048", "path_prefix": "/in/",
            "hooks": [{"name": "ci", "token": "t", "to": "a@x, b@y", "rate_limit_per_minute": "5"}]
        }))
        .unwrap();
        assert_eq!(c.max_body_bytes, 2048);
        assert_eq!(c.path_prefix, "/in");
        assert_eq!(c.hooks[0].to, ["a@x", "b@y"]);
        assert_eq!(c.hooks[0].rate_limit_per_minute, 5);
    }

    #[test]
    fn errors_name_the_key() {
        let e = err(json!({"listen": "localhost"}));
        assert_eq!(e.key, "bridges.webhook.listen");
        let e = err(json!({"hooks": [{"name": "ci", "token": "", "to": ["a@b"]}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].token");
        let e = err(json!({"hooks": [{"name": "CI!", "token": "t", "to": ["a@b"]}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].name");
        let e =
            err(json!({"hooks": [{"name": "ci", "token": "t", "to": ["a@b"], "format": "xml"}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].format");
        assert!(e.reason.contains("`xml`"), "{e}");
        let e = err(json!({"hooks": [{"name": "ci", "token": "t", "to": ["a@b"], "tokne": "t"}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].tokne");
        let e = err(
            json!({"hooks": [{"name": "ci", "token": "t", "format": "template", "to": ["a@b"]}]}),
        );
        assert_eq!(e.key, "bridges.webhook.hooks[0].template");
        let e = err(
            json!({"hooks": [{"name": "ci", "token": "t", "template": "{{ x", "to": ["a@b"]}]}),
        );
        assert_eq!(e.key, "bridges.webhook.hooks[0].template");
        let e = err(json!({"hooks": [{"name": "ci", "token": "t", "rooms": ["dev"]}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].rooms[0]");
        let e = err(json!({"hooks": [{"name": "ci", "token": "t", "url": "ftp://x/"}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0].url");
        let e = err(json!({"hooks": [{"name": "ci", "token": "t"}]}));
        assert_eq!(e.key, "bridges.webhook.hooks[0]");
        let e = err(json!({"hooks": [
            {"name": "ci", "token": "t", "to": ["a@b"]},
            {"name": "ci", "token": "u", "to": ["a@b"]}
        ]}));
        assert_eq!(e.key, "bridges.webhook.hooks[1].name");
        let e = err(json!({"tls_cert": "/c.pem"}));
        assert_eq!(e.key, "bridges.webhook.tls_key");
        let e = err(json!({"max_body_bytes": -1}));
        assert_eq!(e.key, "bridges.webhook.max_body_bytes");
        let e = err(json!({"lsiten": "x"}));
        assert_eq!(
            e.to_string(),
            "bridges.webhook.lsiten: is not a known key (see docs/bridges/webhook.md)"
        );
    }

    #[test]
    fn listener_limits_have_defaults_and_are_checked() {
        let c = WebhookConfig::from_json(&json!({})).unwrap();
        assert_eq!(c.limits, ListenerLimits::default());
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        let c = WebhookConfig::from_json(&json!({
            "header_timeout_secs": 2, "body_timeout_secs": "3", "max_connections": 4,
            "auth_failures_per_minute": 0
        }))
        .unwrap();
        assert_eq!(
            c.limits,
            ListenerLimits {
                header_timeout: Duration::from_secs(2),
                body_timeout: Duration::from_secs(3),
                max_connections: 4,
                auth_failures_per_minute: 0,
            }
        );
        for key in [
            "header_timeout_secs",
            "body_timeout_secs",
            "max_connections",
        ] {
            let e = err(json!({ key: 0 }));
            assert_eq!(e.key, format!("bridges.webhook.{key}"));
            assert_eq!(e.reason, "must be at least 1");
        }
    }

    #[test]
    fn senders_default_to_recipients() {
        let mut h = HookConfig::new("ci", "t");
        h.to = vec!["alice@example.org".into()];
        assert!(h.allows_sender("Alice@example.org"));
        assert!(!h.allows_sender("bob@example.org"));
        h.senders = vec!["example.org".into()];
        assert!(h.allows_sender("bob@example.org"));
        assert!(!h.allows_sender("bob@example.com"));
        h.senders = vec!["*".into()];
        assert!(h.allows_sender("anyone@anywhere"));
    }
}
