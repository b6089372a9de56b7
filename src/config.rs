//! Settings: defaults, then the TOML file, then the environment (`ESTUARY__SECTION__KEY`).
//!
//! One struct per section, each with `validate()`. `check-config` reports problems with the
//! line of the key in the file where it can be found.

mod archive;
use crate::secret::Secret;
pub use archive::{ArchiveSettings, MAX_PRUNE_BATCH};
use estuary_bridge_api::OutboundPolicy;
use estuary_bridge_api::outbound::{AllowEntry, AllowEntryError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything wrong with a configuration, each with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read or parsed.
    #[error("{0}")]
    Load(String),
    /// The values were read but some are wrong.
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted (`bridges.irc.secret`).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
    /// The line in the file, where found.
    pub line: Option<usize>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The XMPP server's component listener.
    #[serde(default)]
    pub xmpp: XmppSettings,
    /// The puppet-account database.
    #[serde(default)]
    pub database: DatabaseSettings,
    /// How much room history is kept.
    #[serde(default)]
    pub archive: ArchiveSettings,
    /// Where bridges may connect beyond public addresses.
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// The gateway's HTTP server; `None` (no `[http]`): off, unless an older webhook
    /// table still names its own listener ([`Settings::http_server`]).
    #[serde(default)]
    pub http: Option<HttpSettings>,
    /// Where files from the networks go: the XMPP server's upload service or the
    /// gateway's own HTTP server.
    #[serde(default)]
    pub media: MediaSettings,
    /// One table per enabled bridge.
    #[serde(default)]
    pub bridges: BTreeMap<String, BridgeSettings>,
    /// The raw bridge tables, handed to each bridge's own config reader.
    #[serde(skip)]
    pub bridge_tables: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Settings {
    /// The raw bridge tables hold secrets: only their names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("xmpp", &self.xmpp)
            .field("database", &self.database)
            .field("archive", &self.archive)
            .field("outbound", &self.outbound)
            .field("http", &self.http)
            .field("media", &self.media)
            .field("bridges", &self.bridges)
            .field(
                "bridge_tables",
                &self.bridge_tables.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `[xmpp]`: where the XMPP server listens for components.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppSettings {
    /// Host of the component port.
    pub host: String,
    /// The component port (XEP-0114).
    pub port: u16,
    /// The server's own domain, pinged to notice a dead link; default: the bridge
    /// domain without its first label (`irc.example.org` → `example.org`).
    pub server_domain: Option<String>,
    /// Seconds between keep-alive pings.
    pub ping_interval_secs: u64,
    /// Seconds without an answer to a ping before the link is taken as dead.
    pub ping_timeout_secs: u64,
    /// Longest wait between reconnection attempts, in seconds.
    pub reconnect_max_secs: u64,
    /// Stanzas kept in memory while the link is down before they spill to the database.
    pub queue_memory_limit: usize,
}

impl Default for XmppSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5347,
            server_domain: None,
            ping_interval_secs: 30,
            ping_timeout_secs: 30,
            reconnect_max_secs: 60,
            queue_memory_limit: 1000,
        }
    }
}

impl XmppSettings {
    /// `host:port` of the component listener.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
    /// The keep-alive interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs.max(1))
    }
    /// How long a ping may go unanswered.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_secs(self.ping_timeout_secs.max(1))
    }

    fn validate(&self, problems: &mut Vec<Problem>) {
        if self.host.trim().is_empty() {
            problems.push(problem(
                "xmpp.host",
                "must name the XMPP server's host, e.g. \"127.0.0.1\"",
            ));
        }
        if self.port == 0 {
            problems.push(problem(
                "xmpp.port",
                "must be the server's component port, e.g. 5347",
            ));
        }
        if self.queue_memory_limit == 0 {
            problems.push(problem("xmpp.queue_memory_limit", "must be at least 1"));
        }
    }
}

/// `[database]`: where logins, rooms and archives live.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://estuary.db` (default, created on first start) or `postgres://user@host/db`.
    pub url: String,
    /// The key that seals secrets at rest (32 bytes, base64). Overrides `seal_key_file`.
    pub seal_key: Option<Secret>,
    /// Where the seal key is kept when `seal_key` is not given; created on first start.
    pub seal_key_file: PathBuf,
    /// Where the gateway keeps files of its own (default `data`, relative to the working
    /// directory): each login's private data directory is
    /// `<data_dir>/logins/<bridge>/<opaque id>`, mode 0700, removed at unregistration.
    pub data_dir: PathBuf,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://estuary.db".into(),
            seal_key: None,
            seal_key_file: PathBuf::from("estuary.key"),
            data_dir: PathBuf::from("data"),
        }
    }
}

impl DatabaseSettings {
    fn validate(&self, problems: &mut Vec<Problem>) {
        if !(self.url.starts_with("sqlite:")
            || self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://"))
        {
            problems.push(problem(
                "database.url",
                "must start with sqlite: (e.g. \"sqlite://estuary.db\") or postgres:// (e.g. \"postgres://estuary@localhost/estuary\")",
            ));
        }
    }
}

/// `[outbound]`: where bridges may connect (IRC servers, hook URLs) beyond the public
/// internet. Loopback, private, link-local, multicast and similar addresses are refused
/// unless an entry of `allow` names them (see [`estuary_bridge_api::outbound`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Addresses (`127.0.0.1`), networks (`10.0.0.0/8`) and host names (`irc.internal`),
    /// each optionally with `:port`, that bridges may connect to although they are not
    /// public.
    pub allow: Vec<String>,
}

impl OutboundSettings {
    /// The policy bridges apply; an entry that cannot be read is an error.
    pub fn policy(&self) -> Result<OutboundPolicy, AllowEntryError> {
        OutboundPolicy::new(&self.allow)
    }

    fn validate(&self, problems: &mut Vec<Problem>) {
        for entry in &self.allow {
            if let Err(e) = entry.parse::<AllowEntry>() {
                problems.push(problem("outbound.allow", &e.to_string()));
            }
        }
    }
}

/// `[http]`: the gateway's one HTTP server (`/healthz`, `/metrics`, and the bridges'
/// routes, e.g. the webhook bridge's hooks). See `docs/admin.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Addresses to listen on, each `IP:port` (`"127.0.0.1:8080"` or a list of them).
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<String>,
    /// A PEM certificate chain: serve HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// The URL under which clients reach this server from outside (behind a proxy), for
    /// links the gateway hands out (files it serves itself, `[media]`); default: none.
    pub public_url: Option<String>,
    /// The largest request body on any route, in bytes (default 1 MiB); a route may be
    /// stricter (the webhook bridge's `max_body_bytes`).
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers, or stay idle between
    /// requests, before its connection is closed (default 10).
    pub header_timeout_secs: u64,
    /// The longest pause, in seconds, while a request body is being read (default 10).
    pub body_timeout_secs: u64,
    /// The longest time, in seconds, a client may read nothing of an answer before its
    /// connection is closed (default 30; a download of a served file that stalls).
    pub send_timeout_secs: u64,
    /// Connections open at once (default 256); more are answered 503 (plain HTTP) or
    /// closed (TLS).
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:8080".into()],
            tls_cert: None,
            tls_key: None,
            public_url: None,
            max_body_bytes: 1024 * 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 10,
            send_timeout_secs: 30,
            max_connections: 256,
        }
    }
}

/// A string or a list of strings, as a list (`listen = "…"` and `listen = ["…", "…"]`; the
/// environment gives a string, comma-separated for several).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

impl HttpSettings {
    fn validate(&self, problems: &mut Vec<Problem>) {
        if self.listen.is_empty() {
            problems.push(problem(
                "http.listen",
                "must name at least one address, e.g. \"127.0.0.1:8080\"",
            ));
        }
        for addr in &self.listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                problems.push(problem(
                    "http.listen",
                    &format!("{addr:?} is not an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                problems.push(problem("http.tls_key", "is required when tls_cert is set"))
            }
            (None, Some(_)) => {
                problems.push(problem("http.tls_cert", "is required when tls_key is set"))
            }
            _ => {}
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            problems.push(problem(
                "http.public_url",
                "must be an http:// or https:// URL, e.g. \"https://gateway.example.org\"",
            ));
        }
        for (key, value) in [
            ("http.max_body_bytes", self.max_body_bytes as u64),
            ("http.header_timeout_secs", self.header_timeout_secs),
            ("http.body_timeout_secs", self.body_timeout_secs),
            ("http.send_timeout_secs", self.send_timeout_secs),
            ("http.max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(problem(key, "must be at least 1"));
            }
        }
    }
}

/// `[media]` `mode`: where a file that a network hands over as bytes is put so that the
/// user's client can fetch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// The upload service when the XMPP server has one, else the gateway's own server when
    /// `[http] public_url` is set, else a line of text naming the file.
    Auto,
    /// Only the XMPP server's upload service (XEP-0363).
    Upload,
    /// Only the gateway's own HTTP server, under `[http] public_url`.
    Gateway,
}

/// `[media]`: files from the networks (see `docs/admin.md`, "Media").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Upload service, own server, or both in that order (default `auto`).
    pub mode: MediaMode,
    /// The upload service's JID; default: found by disco on the server's domain.
    pub upload_service: Option<String>,
    /// Where the gateway keeps files it serves itself and spools files of unknown length
    /// (default `media`, relative to the working directory).
    pub dir: PathBuf,
    /// The largest file taken from a network, in bytes (default 100 MiB).
    pub max_bytes: u64,
    /// How long the gateway serves a file it stores, in seconds (default 7 days); then
    /// it is deleted.
    pub expire_secs: u64,
    /// The longest pause, in seconds, while a file's bytes are read from the network or
    /// sent to the upload service (default 30).
    pub stall_secs: u64,
    /// The longest time one file may take to reach the upload service, in seconds
    /// (default 300).
    pub transfer_timeout_secs: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            mode: MediaMode::Auto,
            upload_service: None,
            dir: PathBuf::from("media"),
            max_bytes: 100 * 1024 * 1024,
            expire_secs: 7 * 24 * 3600,
            stall_secs: 30,
            transfer_timeout_secs: 300,
        }
    }
}

impl MediaSettings {
    fn validate(&self, http: Option<&HttpSettings>, problems: &mut Vec<Problem>) {
        for (key, value) in [
            ("media.max_bytes", self.max_bytes),
            ("media.expire_secs", self.expire_secs),
            ("media.stall_secs", self.stall_secs),
            ("media.transfer_timeout_secs", self.transfer_timeout_secs),
        ] {
            if value == 0 {
                problems.push(problem(key, "must be at least 1"));
            }
        }
        if self.mode == MediaMode::Gateway && http.and_then(|h| h.public_url.as_ref()).is_none() {
            problems.push(problem(
                "media.mode",
                "\"gateway\" serves files from the gateway's own HTTP server: add an [http] section with public_url = \"https://gateway.example.org\" (the address clients reach it at)",
            ));
        }
        if let Some(jid) = &self.upload_service
            && tokio_xmpp::jid::Jid::new(jid).is_err()
        {
            problems.push(problem(
                "media.upload_service",
                "must be a JID, e.g. \"upload.example.org\"",
            ));
        }
    }
}

/// The keys of `[bridges.<name>]` the core reads; the bridge checks the rest.
const BRIDGE_CORE_KEYS: [&str; 5] = ["domain", "secret", "enabled", "admins", "allowed_domains"];

/// `[bridges.<name>]`: the keys every bridge has; the rest is the bridge's own.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeSettings {
    /// The component domain declared in the XMPP server, e.g. `irc.example.org`.
    #[serde(default)]
    pub domain: String,
    /// The component secret declared in the XMPP server.
    #[serde(default)]
    pub secret: Secret,
    /// Whether this bridge is served (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Bare JIDs allowed to use admin commands.
    #[serde(default)]
    pub admins: Vec<String>,
    /// XMPP domains whose users may register; empty: everyone.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

fn yes() -> bool {
    true
}

impl BridgeSettings {
    fn validate(&self, name: &str, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("bridges.{name}.{k}");
        if self.domain.trim().is_empty() {
            problems.push(problem(&key("domain"), "is missing: give the component domain declared in the XMPP server, e.g. \"irc.example.org\""));
        } else if crate::xmpp::jid::domain_jid(&self.domain).is_err() {
            problems.push(problem(&key("domain"), "is not a valid XMPP domain"));
        }
        if self.secret.is_empty() {
            problems.push(problem(&key("secret"), "is missing: give the component_secret (Prosody) or password (ejabberd) declared for this domain"));
        }
        for admin in &self.admins {
            if crate::xmpp::jid::bare_jid(admin).is_err() {
                problems.push(problem(
                    &key("admins"),
                    &format!("{admin:?} is not a bare JID like \"admin@example.org\""),
                ));
            }
        }
    }
}

fn problem(key: &str, message: &str) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        line: None,
    }
}

/// The bridges this build can serve.
pub fn known_bridges() -> Vec<&'static str> {
    crate::bridges::available()
}

impl Settings {
    /// Reads defaults, then `path`, then `ESTUARY__…` environment variables, and validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Load(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string(), true)
    }

    /// Reads settings from TOML text (plus the environment if `with_env`) and validates.
    pub fn from_toml(text: &str, origin: &str, with_env: bool) -> Result<Settings, ConfigError> {
        // Parse once with the toml crate first: its errors carry line and column.
        let file = match text.parse::<toml::Table>() {
            Ok(file) => file,
            Err(e) => return Err(ConfigError::Load(format!("{origin}: {e}"))),
        };
        // Unknown keys and wrong types in the file, all of them, before anything is read.
        let mut problems = key_problems(&file);
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        if with_env {
            builder = builder.add_source(
                config::Environment::with_prefix("ESTUARY")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(format!("{origin}: {e}")))?;
        let mut settings: Settings = match raw.clone().try_deserialize() {
            Ok(settings) => settings,
            // The file's own problems say where they are; the reader's error does not. The
            // bridges' own keys are checked too, so that everything is reported at once.
            Err(_) if !problems.is_empty() => {
                problems.extend(bridge_key_problems(&raw));
                return Err(invalid(text, problems));
            }
            Err(e) => return Err(ConfigError::Load(format!("{origin}: {e}"))),
        };
        for name in settings.bridges.keys() {
            let table: serde_json::Value = raw
                .get(&format!("bridges.{name}"))
                .map_err(|e| ConfigError::Load(format!("{origin}: bridges.{name}: {e}")))?;
            settings.bridge_tables.insert(name.clone(), table);
        }
        for p in settings.problems() {
            if !problems.iter().any(|q| q.key == p.key) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(invalid(text, problems))
        }
    }

    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.xmpp.validate(&mut problems);
        self.database.validate(&mut problems);
        self.archive.validate(&mut problems);
        self.outbound.validate(&mut problems);
        if let Some(http) = &self.http {
            http.validate(&mut problems);
        }
        self.media
            .validate(self.http_server().as_ref(), &mut problems);
        // A bad entry is reported above; the bridges are checked with the rest.
        let policy = self.outbound.policy().unwrap_or_default();
        let known = known_bridges();
        if self.bridges.values().all(|b| !b.enabled) {
            problems.push(problem(
                "bridges",
                &format!("no bridge is enabled: add a [bridges.<name>] table (available in this build: {})", known.join(", ")),
            ));
        }
        let mut domains = BTreeMap::new();
        for (name, bridge) in &self.bridges {
            if !known.contains(&name.as_str()) {
                problems.push(problem(
                    &format!("bridges.{name}"),
                    &format!(
                        "unknown bridge (available in this build: {})",
                        known.join(", ")
                    ),
                ));
                continue;
            }
            bridge.validate(name, &mut problems);
            if let Some(table) = self.bridge_tables.get(name) {
                for (key, message) in crate::bridges::check(name, table, &policy) {
                    problems.push(problem(&key, &message));
                }
                if self.http.is_some() && bridge.enabled {
                    for (key, message) in crate::bridges::listener_keys_moved(name, table) {
                        problems.push(problem(&key, &message));
                    }
                }
            }
            if let Some(other) = domains.insert(bridge.domain.clone(), name.clone())
                && !bridge.domain.is_empty()
            {
                problems.push(problem(
                        &format!("bridges.{name}.domain"),
                        &format!("{} is already used by bridges.{other}: each bridge needs its own component domain", bridge.domain),
                    ));
            }
        }
        problems
    }

    /// The HTTP server to run: `[http]` when given; without it, the listener an older
    /// `[bridges.webhook]` table describes (its `listen`, default `127.0.0.1:8080`, its
    /// TLS and limits), so that a config written before `[http]` existed keeps serving
    /// its hooks where it did ([`Settings::notices`] says how to move); otherwise none.
    pub fn http_server(&self) -> Option<HttpSettings> {
        if let Some(http) = &self.http {
            return Some(http.clone());
        }
        self.enabled_bridges()
            .find_map(|(name, _)| crate::bridges::legacy_http(name, self.bridge_tables.get(name)?))
    }

    /// Advice that is not an error: settings that still work but have a better place now.
    /// `check-config` prints them and the gateway logs them at start.
    pub fn notices(&self) -> Vec<String> {
        if self.http.is_some() {
            return Vec::new();
        }
        self.enabled_bridges()
            .filter_map(|(name, _)| {
                let table = self.bridge_tables.get(name)?;
                crate::bridges::legacy_http(name, table)?;
                let moved = crate::bridges::listener_keys_moved(name, table);
                let how = if moved.is_empty() {
                    "add an [http] section (`listen = \"127.0.0.1:8080\"` keeps the same address)".to_string()
                } else {
                    let keys: Vec<String> = moved
                        .iter()
                        .map(|(key, _)| format!("`{key}`"))
                        .collect();
                    format!(
                        "add an [http] section and move {} into it (same names, without the `bridges.{name}.` prefix)",
                        keys.join(", ")
                    )
                };
                Some(format!(
                    "bridges.{name}: there is no [http] section, so the gateway's HTTP server listens where this bridge's table says, as before; {how} (see docs/admin.md, \"HTTP server\")"
                ))
            })
            .collect()
    }

    /// The enabled bridges, by name.
    pub fn enabled_bridges(&self) -> impl Iterator<Item = (&String, &BridgeSettings)> {
        self.bridges.iter().filter(|(_, b)| b.enabled)
    }
}

/// The problems, each given the line of its key in `text`.
fn invalid(text: &str, mut problems: Vec<Problem>) -> ConfigError {
    for p in &mut problems {
        p.line = line_of_key(text, &p.key);
    }
    // In the order of the file; problems without a line last.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    ConfigError::Invalid(problems)
}

/// What the bridges find wrong with their tables, read from `raw` when the whole settings
/// could not be.
fn bridge_key_problems(raw: &config::Config) -> Vec<Problem> {
    let policy = raw
        .get::<OutboundSettings>("outbound")
        .ok()
        .and_then(|o| o.policy().ok())
        .unwrap_or_default();
    let Ok(bridges) = raw.get::<BTreeMap<String, serde_json::Value>>("bridges") else {
        return Vec::new();
    };
    let known = known_bridges();
    bridges
        .iter()
        .filter(|(name, _)| known.contains(&name.as_str()))
        .flat_map(|(name, table)| crate::bridges::check(name, table, &policy))
        .map(|(key, message)| problem(&key, &message))
        .collect()
}

/// The sections of the file.
const SECTIONS: [&str; 7] = [
    "xmpp", "database", "archive", "outbound", "http", "media", "bridges",
];

/// Unknown keys and values of the wrong type in the core's part of the file: the sections,
/// their keys, and the keys every bridge table has (the bridges check their own keys).
/// Each key is checked on its own, so that every problem is reported, not only the first.
fn key_problems(file: &toml::Table) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (section, value) in file {
        match section.as_str() {
            "xmpp" => check_keys::<XmppSettings>("xmpp", value, None, &mut problems),
            "database" => check_keys::<DatabaseSettings>("database", value, None, &mut problems),
            "archive" => check_keys::<ArchiveSettings>("archive", value, None, &mut problems),
            "outbound" => check_keys::<OutboundSettings>("outbound", value, None, &mut problems),
            "http" => check_keys::<HttpSettings>("http", value, None, &mut problems),
            "media" => check_keys::<MediaSettings>("media", value, None, &mut problems),
            "bridges" => match value.as_table() {
                Some(bridges) => {
                    for (name, table) in bridges {
                        check_keys::<BridgeSettings>(
                            &format!("bridges.{name}"),
                            table,
                            Some(&BRIDGE_CORE_KEYS),
                            &mut problems,
                        );
                    }
                }
                None => problems.push(problem(
                    "bridges",
                    "must be tables, one per bridge: [bridges.<name>]",
                )),
            },
            other => problems.push(problem(
                other,
                &format!(
                    "unknown section: check its spelling (the sections are {}); its settings are not used",
                    SECTIONS.join(", ")
                ),
            )),
        }
    }
    problems
}

/// Reads each key of the table at `key` on its own as a `T`, reporting the keys `T` does not
/// know and the values it cannot read. With `only`, just those keys are checked (the rest of
/// the table belongs to someone else).
fn check_keys<T: serde::de::DeserializeOwned>(
    key: &str,
    value: &toml::Value,
    only: Option<&[&str]>,
    problems: &mut Vec<Problem>,
) {
    let Some(table) = value.as_table() else {
        problems.push(problem(
            key,
            &format!("must be a table: write it as [{key}] with its keys below"),
        ));
        return;
    };
    for (name, value) in table {
        if only.is_some_and(|only| !only.contains(&name.as_str())) {
            continue;
        }
        let mut single = toml::Table::new();
        single.insert(name.clone(), value.clone());
        if let Err(e) = toml::Value::Table(single).try_into::<T>() {
            let message = e.message().trim().to_string();
            let message = if message.starts_with("unknown field") {
                format!("{message}: check its spelling")
            } else {
                message
            };
            problems.push(problem(&format!("{key}.{name}"), &message));
        }
    }
}

/// One step of a dotted key: a table key or an array index.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Splits a dotted key as problems name them (`bridges.irc.servers."irc.example.org".port`,
/// `bridges.webhook.hooks[0].token`) into its steps.
fn steps(dotted: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = dotted.chars().peekable();
    let push = |current: &mut String, steps: &mut Vec<Step>| {
        if !current.is_empty() {
            steps.push(Step::Key(std::mem::take(current)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => push(&mut current, &mut steps),
            '[' if !quoted => {
                push(&mut current, &mut steps);
                let mut index = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    index.push(d);
                }
                if let Ok(i) = index.trim().parse() {
                    steps.push(Step::Index(i));
                }
            }
            c => current.push(c),
        }
    }
    push(&mut current, &mut steps);
    steps
}

/// Finds the line (1-based) where a dotted key is written in TOML text: the `key =` line,
/// or the `[table]` header for a table; for a key that is not in the text, the line of the
/// nearest table around it that is.
pub fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let document = DeTable::parse(text).ok()?;
    let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut table = document.get_ref();
    let mut value: Option<&DeValue> = None;
    let mut line = None;
    for step in steps(dotted) {
        let found = match (step, value) {
            (Step::Key(k), None | Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(t)) = value {
                    table = t;
                }
                table
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k)
                    .map(|(key, v)| (key.span().start, v))
            }
            (Step::Index(i), Some(DeValue::Array(items))) => {
                items.get(i).map(|v| (v.span().start, v))
            }
            _ => None,
        };
        let Some((offset, v)) = found else { break };
        line = Some(line_at(offset));
        value = Some(v.get_ref());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[xmpp]
host = "127.0.0.1"
port = 5347

[bridges.fake]
domain = "fake.localhost"
secret = "s3cret"
admins = ["admin@localhost"]
"#;

    #[test]
    fn good_config_loads_with_defaults() {
        let s = Settings::from_toml(GOOD, "test", false).expect("valid config");
        assert_eq!(s.database.url, "sqlite://estuary.db");
        assert_eq!(s.bridges["fake"].domain, "fake.localhost");
        assert_eq!(s.xmpp.address(), "127.0.0.1:5347");
        assert!(s.bridge_tables["fake"].get("domain").is_some());
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../config/estuary.example.toml");
        let s = Settings::from_toml(text, "config/estuary.example.toml", false)
            .expect("the example runs as is");
        let enabled: Vec<&String> = s.enabled_bridges().map(|(n, _)| n).collect();
        assert_eq!(enabled, ["fake"]);
    }

    #[cfg(feature = "irc")]
    #[test]
    fn the_example_irc_table_is_valid() {
        let text = include_str!("../config/estuary.example.toml");
        let s = Settings::from_toml(text, "config/estuary.example.toml", false)
            .expect("the example runs as is");
        let irc = estuary_bridge_irc::IrcConfig::from_json(&s.bridge_tables["irc"])
            .expect("the example's [bridges.irc] is valid for the IRC bridge");
        assert_eq!(irc.offline, estuary_bridge_irc::config::Offline::Grace);
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = Settings::from_toml(GOOD, "test", false).expect("valid config");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }

    #[test]
    fn problems_name_key_and_line() {
        let text = "[bridges.fake]\ndomain = \"fake.localhost\"\nsecret = \"\"\n";
        let err = Settings::from_toml(text, "test", false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3: bridges.fake.secret"), "{msg}");
    }

    #[test]
    fn unknown_bridge_is_reported() {
        let text = "[bridges.carrier-pigeon]\ndomain = \"p.localhost\"\nsecret = \"x\"\n";
        let msg = Settings::from_toml(text, "test", false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 1: bridges.carrier-pigeon: unknown bridge"),
            "{msg}"
        );
    }

    #[test]
    fn toml_syntax_error_has_line() {
        let msg = Settings::from_toml("[xmpp]\nport = = 3\n", "cfg.toml", false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn outbound_allow_entries_are_read_and_checked() {
        let s = Settings::from_toml(GOOD, "t", false).expect("valid config");
        assert_eq!(s.outbound.policy().unwrap(), OutboundPolicy::default());
        let text = format!("[outbound]\nallow = [\"127.0.0.1\", \"irc.internal:6667\"]\n{GOOD}");
        let s = Settings::from_toml(&text, "t", false).expect("valid config");
        assert_eq!(s.outbound.policy().unwrap().allowed().len(), 2);
        let text = format!("[outbound]\nallow = [\"10.0.0.0/33\"]\n{GOOD}");
        let msg = Settings::from_toml(&text, "t", false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 2: outbound.allow: \"10.0.0.0/33\" is not an allow entry"),
            "{msg}"
        );
    }

    /// Every problem of a config, as (line, key, message).
    fn problems_of(text: &str) -> Vec<(Option<usize>, String, String)> {
        match Settings::from_toml(text, "t", false) {
            Err(ConfigError::Invalid(problems)) => problems
                .into_iter()
                .map(|p| (p.line, p.key, p.message))
                .collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[cfg(feature = "irc")]
    #[test]
    fn unknown_keys_and_wrong_types_are_all_reported_with_the_line_of_the_key() {
        let text = r#"[xmpp]
host = "127.0.0.1"

[databse]
url = "postgres://estuary@db/estuary"

[bridges.irc]
domian = "irc.localhost"
secret = 42
fixed_sever = "irc.libera.chat"

[bridges.irc.limits]
queued_linez = 3
"#;
        let found = problems_of(text);
        let at = |key: &str| {
            found
                .iter()
                .find(|(_, k, _)| k == key)
                .unwrap_or_else(|| panic!("no problem for {key} in {found:?}"))
        };
        let (line, _, message) = at("databse");
        assert_eq!(*line, Some(4));
        assert!(
            message.starts_with("unknown section: check its spelling"),
            "{message}"
        );
        let (line, _, message) = at("bridges.irc.secret");
        assert_eq!(*line, Some(9));
        assert!(
            message.contains("invalid type: integer `42`, expected a string"),
            "{message}"
        );
        let (line, _, message) = at("bridges.irc.domian");
        assert_eq!(*line, Some(8));
        assert!(
            message.starts_with("unknown key: check its spelling"),
            "{message}"
        );
        let (line, _, message) = at("bridges.irc.fixed_sever");
        assert_eq!(*line, Some(10));
        assert!(message.contains("fixed_server"), "{message}");
        let (line, _, message) = at("bridges.irc.limits.queued_linez");
        assert_eq!(*line, Some(13));
        assert!(
            message.contains("unknown field `queued_linez`"),
            "{message}"
        );
        assert_eq!(found.len(), 5, "{found:?}");
        let lines: Vec<Option<usize>> = found.iter().map(|(l, _, _)| *l).collect();
        assert_eq!(
            lines,
            [4, 8, 9, 10, 13].map(Some),
            "in the order of the file"
        );
    }

    #[test]
    fn a_misspelt_database_section_never_falls_back_to_sqlite() {
        let text = format!("{GOOD}[databse]\nurl = \"postgres://estuary@db/estuary\"\n");
        let found = problems_of(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Some(10));
        assert_eq!(found[0].1, "databse");
    }

    #[test]
    fn core_keys_of_every_section_are_checked() {
        let text = format!(
            "[xmpp]\nhostt = \"x\"\nport = \"many\"\n[database]\nurll = \"x\"\n[outbound]\nallow = \"x\"\n{}",
            GOOD.replace("[xmpp]", "[xmpp2]")
        );
        let mut found = problems_of(&text);
        found.sort();
        let keys: Vec<(Option<usize>, &str)> =
            found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Some(2), "xmpp.hostt"),
                (Some(3), "xmpp.port"),
                (Some(5), "database.urll"),
                (Some(7), "outbound.allow"),
                (Some(9), "xmpp2"),
            ],
            "{found:?}"
        );
        assert!(found[0].2.contains("unknown field `hostt`"), "{found:?}");
        assert!(found[0].2.ends_with("check its spelling"), "{found:?}");
    }

    #[test]
    fn line_of_key_follows_quoted_names_and_array_indices() {
        let text = "[bridges.irc.servers.\"irc.example.org\"]\nport = 1\n\n[[bridges.webhook.hooks]]\nname = \"a\"\n[[bridges.webhook.hooks]]\nname = \"b\"\ntoken = 3\n";
        assert_eq!(
            line_of_key(text, "bridges.irc.servers.\"irc.example.org\".port"),
            Some(2)
        );
        assert_eq!(line_of_key(text, "bridges.webhook.hooks[1].token"), Some(8));
        assert_eq!(line_of_key(text, "bridges.webhook.hooks[1].nope"), Some(6));
        assert_eq!(line_of_key(text, "xmpp.port"), None);
    }

    #[test]
    fn bad_database_url_is_reported() {
        let text = format!("{GOOD}\n[database]\nurl = \"mysql://x\"\n");
        let msg = Settings::from_toml(&text, "t", false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("database.url"), "{msg}");
    }

    #[test]
    fn without_http_there_is_no_server() {
        let s = Settings::from_toml(GOOD, "test", false).expect("valid config");
        assert!(s.http.is_none());
        assert!(s.http_server().is_none());
        assert!(s.notices().is_empty());
    }

    #[test]
    fn http_takes_one_address_or_several_and_has_defaults() {
        let one = format!("{GOOD}\n[http]\nlisten = \"127.0.0.1:9000\"\n");
        let s = Settings::from_toml(&one, "test", false).expect("valid config");
        let http = s.http_server().expect("[http] given");
        assert_eq!(http.listen, ["127.0.0.1:9000"]);
        assert_eq!(http.max_body_bytes, 1024 * 1024);
        assert_eq!(http.header_timeout_secs, 10);
        assert_eq!(http.max_connections, 256);
        let many = format!("{GOOD}\n[http]\nlisten = [\"127.0.0.1:9000\", \"[::1]:9000\"]\n");
        let s = Settings::from_toml(&many, "test", false).expect("valid config");
        assert_eq!(s.http.unwrap().listen, ["127.0.0.1:9000", "[::1]:9000"]);
        let empty = format!("{GOOD}\n[http]\n");
        let s = Settings::from_toml(&empty, "test", false).expect("valid config");
        assert_eq!(s.http.unwrap().listen, ["127.0.0.1:8080"]);
    }

    #[test]
    fn media_defaults_and_mistakes() {
        let s = Settings::from_toml(GOOD, "t", false).unwrap();
        assert_eq!(s.media.mode, MediaMode::Auto);
        assert_eq!(s.media.max_bytes, 100 * 1024 * 1024);
        assert_eq!(s.media.expire_secs, 7 * 24 * 3600);
        assert_eq!(s.media.dir, PathBuf::from("media"));
        // Own-server mode needs a public URL to hand out.
        let text = format!(
            "{GOOD}\n[media]\nmode = \"gateway\"\nmax_bytes = 0\nupload_service = \"a@@b\"\n"
        );
        let problems = problems_of(&text);
        let keys: Vec<&str> = problems.iter().map(|(_, k, _)| k.as_str()).collect();
        for key in ["media.mode", "media.max_bytes", "media.upload_service"] {
            assert!(keys.contains(&key), "{key}: {problems:?}");
        }
        let fine = format!(
            "{GOOD}\n[http]\npublic_url = \"https://gw.example.org\"\n[media]\nmode = \"gateway\"\nexpire_secs = 60\n"
        );
        let s = Settings::from_toml(&fine, "t", false).expect("own-server mode with a public URL");
        assert_eq!(s.media.mode, MediaMode::Gateway);
        assert_eq!(s.media.expire_secs, 60);
        let typo = problems_of(&format!("{GOOD}\n[media]\nmode = \"s3\"\nexpiry = 5\n"));
        let keys: Vec<&str> = typo.iter().map(|(_, k, _)| k.as_str()).collect();
        assert!(
            keys.contains(&"media.mode") && keys.contains(&"media.expiry"),
            "{typo:?}"
        );
    }

    #[test]
    fn bad_http_values_are_all_reported_with_their_lines() {
        let text = format!(
            "{GOOD}\n[http]\nlisten = \"localhost:80\"\ntls_cert = \"c.pem\"\npublic_url = \"gateway.example.org\"\nmax_connections = 0\nlisten_backlog = 5\n"
        );
        let problems = problems_of(&text);
        let keys: Vec<&str> = problems.iter().map(|(_, k, _)| k.as_str()).collect();
        assert!(keys.contains(&"http.listen_backlog"), "{problems:?}");
        // An unknown key stops the section from being read: the rest is checked once it is gone.
        let text = text.replace("listen_backlog = 5\n", "");
        let problems = problems_of(&text);
        for key in [
            "http.listen",
            "http.tls_key",
            "http.public_url",
            "http.max_connections",
        ] {
            let found = problems.iter().find(|(_, k, _)| k == key);
            let (line, _, _) = found.unwrap_or_else(|| panic!("{key} in {problems:?}"));
            assert!(line.is_some(), "{key} has a line: {problems:?}");
        }
        let listen = problems
            .iter()
            .find(|(_, k, _)| k == "http.listen")
            .unwrap();
        assert!(listen.2.contains("\"localhost:80\""), "{listen:?}");
    }

    #[cfg(feature = "webhook")]
    const OLD_WEBHOOK: &str = r#"
[bridges.webhook]
domain = "hooks.localhost"
secret = "s3cret"
listen = "127.0.0.1:8181"
max_connections = 7
max_body_bytes = 4096
"#;

    #[cfg(feature = "webhook")]
    #[test]
    fn an_older_webhook_table_still_describes_the_server_and_gets_a_notice() {
        let s = Settings::from_toml(OLD_WEBHOOK, "test", false).expect("an older config loads");
        let http = s.http_server().expect("the webhook's listener");
        assert_eq!(http.listen, ["127.0.0.1:8181"]);
        assert_eq!(http.max_connections, 7);
        assert_eq!(http.max_body_bytes, 4096);
        let notices = s.notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0].contains("`bridges.webhook.listen`")
                && notices[0].contains("`bridges.webhook.max_connections`")
                && notices[0].contains("[http]"),
            "{notices:?}"
        );
        // A webhook table without `listen` served on the old default address, and still does.
        let bare = "[bridges.webhook]\ndomain = \"hooks.localhost\"\nsecret = \"s3cret\"\n";
        let s = Settings::from_toml(bare, "test", false).expect("valid config");
        assert_eq!(s.http_server().unwrap().listen, ["127.0.0.1:8080"]);
        assert!(
            s.notices()[0].contains("listen = \"127.0.0.1:8080\""),
            "{:?}",
            s.notices()
        );
        // Disabled, it serves nothing.
        let off = format!(
            "{bare}enabled = false\n[bridges.fake]\ndomain = \"f.localhost\"\nsecret = \"x\"\n"
        );
        let s = Settings::from_toml(&off, "test", false).expect("valid config");
        assert!(s.http_server().is_none());
    }

    #[cfg(feature = "webhook")]
    #[test]
    fn with_http_the_webhook_listener_keys_are_problems_that_say_where_they_go() {
        let text = format!("[http]\nlisten = \"127.0.0.1:9000\"\n{OLD_WEBHOOK}");
        let problems = problems_of(&text);
        let keys: Vec<&str> = problems.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["bridges.webhook.listen", "bridges.webhook.max_connections"],
            "{problems:?}"
        );
        for (line, _, message) in &problems {
            assert!(line.is_some());
            assert!(message.contains("in [http]"), "{message}");
        }
        // Without them the same config is fine, and the server is [http]'s.
        let fixed = text
            .replace("listen = \"127.0.0.1:8181\"\n", "")
            .replace("max_connections = 7\n", "");
        let s = Settings::from_toml(&fixed, "test", false).expect("valid once moved");
        assert_eq!(s.http_server().unwrap().listen, ["127.0.0.1:9000"]);
        assert!(s.notices().is_empty());
    }
}
