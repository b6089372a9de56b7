//! The `[bridges.irc]` config table and the per-server, per-login settings derived from it.
//!
//! ```toml
//! [bridges.irc]
//! domain = "irc.example.org"      # read by the core, ignored here
//! secret = "…"                    # read by the core, ignored here
//! fixed_server = "irc.libera.chat" # optional: addresses drop `%server`
//! default_port = 6697             # optional: unset = TLS on 6697, then plain 6667 (Biboumi)
//! default_tls_port = 6697         # the TLS port of that fallback (tests move it)
//! default_plain_port = 6667       # the plain port of that fallback
//! idle_disconnect_secs = 300      # close a server connection this long after its last room
//! version = "Estuary"             # CTCP VERSION answer (optional)
//! offline = "grace"               # leave | grace | persistent: channels when the user goes offline
//! offline_grace_secs = 300        # with offline = "grace": how long channels stay joined
//!
//! [bridges.irc.limits]           # per user and per connection; every key optional
//! servers_per_user = 10           # IRC servers one user is connected to at once
//! channels_per_user = 100         # channels one user is in, over all servers
//! queued_lines = 256              # lines waiting for flood control, per connection
//! message_bytes = 16384           # the longest message body sent to IRC
//! opening_connections = 32        # connections being opened at once, whole gateway
//! user_lines_per_second = 5.0     # the highest flood-control rate a user may set
//! user_burst = 10                 # the highest burst a user may set
//!
//! [bridges.irc.servers."irc.example.org"]
//! port = 6667
//! tls = false
//! verify_certificate = true
//! throttle = { lines_per_second = 2.0, burst = 5 }
//! realname = "Estuary user"
//! username = "estuary"
//! ```

use estuary_bridge_api::{BridgeError, ErrorKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A config table the bridge cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The table does not have the expected shape.
    #[error("[bridges.irc]: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A value is out of range.
    #[error("[bridges.irc]: {key}: {why}")]
    OutOfRange {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Outgoing flood control: a token bucket per IRC connection.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Lines allowed per second, sustained.
    pub lines_per_second: f64,
    /// Lines that may go at once after a quiet while.
    pub burst: u32,
}

impl Default for Throttle {
    /// About one line every 500 ms with a burst of 5, which public networks accept.
    fn default() -> Self {
        Self {
            lines_per_second: 2.0,
            burst: 5,
        }
    }
}

/// Per-user and per-connection limits, `[bridges.irc.limits]`. A request beyond one is
/// refused with `resource-constraint` and a text naming the limit.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// IRC servers one user may be connected to at once.
    pub servers_per_user: usize,
    /// Channels one user may be in (or joining), over all servers.
    pub channels_per_user: usize,
    /// Lines one connection may hold waiting for flood control.
    pub queued_lines: usize,
    /// The longest message body, in bytes, sent to IRC (split into lines there).
    pub message_bytes: usize,
    /// Connections being opened (resolved, connected, TLS handshake) at once over the
    /// whole gateway; more wait for their turn.
    pub opening_connections: usize,
    /// The highest flood-control rate a user may set in Configure (unless the server's
    /// own, set by the admin, is higher).
    pub user_lines_per_second: f64,
    /// The highest flood-control burst a user may set (likewise).
    pub user_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            servers_per_user: 10,
            channels_per_user: 100,
            queued_lines: 256,
            message_bytes: 16 * 1024,
            opening_connections: 32,
            user_lines_per_second: 5.0,
            user_burst: 10,
        }
    }
}

impl Limits {
    /// Checks that every limit lets something through.
    fn validate(&self) -> Result<(), ConfigError> {
        let out_of_range = |key: &str, why: &str| ConfigError::OutOfRange {
            key: format!("limits.{key}"),
            why: why.into(),
        };
        for (key, value) in [
            ("servers_per_user", self.servers_per_user),
            ("channels_per_user", self.channels_per_user),
            ("queued_lines", self.queued_lines),
            ("opening_connections", self.opening_connections),
            ("user_burst", self.user_burst as usize),
        ] {
            if value == 0 {
                return Err(out_of_range(key, "must be at least 1"));
            }
        }
        if self.message_bytes < 512 {
            return Err(out_of_range(
                "message_bytes",
                "must be at least 512 (one IRC line)",
            ));
        }
        if !(self.user_lines_per_second.is_finite() && self.user_lines_per_second > 0.0) {
            return Err(out_of_range("user_lines_per_second", "must be above 0"));
        }
        Ok(())
    }

    /// Refuses a new server connection when the user has `open` already.
    pub fn check_servers(&self, open: usize) -> Result<(), BridgeError> {
        if open < self.servers_per_user {
            return Ok(());
        }
        Err(BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "This gateway lets each user be connected to at most {} IRC server(s) at once; leave every room on one of them first.",
                self.servers_per_user
            ),
        ))
    }

    /// Refuses a new channel when the user is in (or joining) `joined` already.
    pub fn check_channels(&self, joined: usize) -> Result<(), BridgeError> {
        if joined < self.channels_per_user {
            return Ok(());
        }
        Err(BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "This gateway lets each user be in at most {} IRC channel(s) at once; leave one first.",
                self.channels_per_user
            ),
        ))
    }

    /// Refuses a message body longer than [`Limits::message_bytes`].
    pub fn check_message(&self, body: &str) -> Result<(), BridgeError> {
        if body.len() <= self.message_bytes {
            return Ok(());
        }
        Err(BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "The message is {} bytes; this gateway sends at most {} bytes to IRC in one message. Send it in parts.",
                body.len(),
                self.message_bytes
            ),
        ))
    }

    /// Refuses `adding` lines to a connection that has `queued` waiting for flood control.
    pub fn check_queue(&self, queued: usize, adding: usize) -> Result<(), BridgeError> {
        if queued.saturating_add(adding) <= self.queued_lines {
            return Ok(());
        }
        Err(BridgeError::new(
            ErrorKind::ResourceConstraint,
            format!(
                "{queued} line(s) are still waiting to be sent to this IRC server and this message adds {adding}; at most {} may wait. Send it again in a moment.",
                self.queued_lines
            ),
        ))
    }

    /// The flood control a user may choose at most on a server whose own is `base`: the
    /// user limits, or the server's if the admin set it higher.
    pub fn user_throttle_cap(&self, base: Throttle) -> Throttle {
        Throttle {
            lines_per_second: self.user_lines_per_second.max(base.lines_per_second),
            burst: self.user_burst.max(base.burst),
        }
    }
}

/// Per-server overrides in `[bridges.irc.servers."host"]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The port; unset: the gateway's default.
    pub port: Option<u16>,
    /// Whether to use TLS; unset: TLS on 6697 then plain on 6667 (or per the port).
    pub tls: Option<bool>,
    /// Whether to check the server's certificate (default true).
    pub verify_certificate: Option<bool>,
    /// Flood control for this server.
    pub throttle: Option<Throttle>,
    /// The IRC realname (gecos) for users who set none.
    pub realname: Option<String>,
    /// The IRC username (ident) for users who set none.
    pub username: Option<String>,
}

/// What happens to a user's channels when the user goes offline (`offline = …`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offline {
    /// Part the channels at once, as when leaving the room.
    Leave,
    /// Stay in the channels for `offline_grace_secs`, then part them; a user back within
    /// that time finds them still joined, and what was said meanwhile in the archive (the
    /// default: an XMPP server restart or a phone's short absence loses nothing).
    #[default]
    Grace,
    /// Stay in the channels; what is said meanwhile goes to the room archive (XEP-0313).
    Persistent,
}

/// The bridge's config, read from the `[bridges.irc]` table.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcConfig {
    /// The only IRC server this gateway serves; addresses then drop `%server`.
    pub fixed_server: Option<String>,
    /// The port for servers without an override; unset: 6697 with TLS, then 6667 plain.
    pub default_port: Option<u16>,
    /// The TLS port tried first when no port is set (default 6697).
    pub default_tls_port: Option<u16>,
    /// The plain port tried after the TLS one when no port is set (default 6667).
    pub default_plain_port: Option<u16>,
    /// Seconds a connection stays open after the user's last room on it is left.
    pub idle_disconnect_secs: Option<u64>,
    /// The CTCP VERSION answer.
    pub version: Option<String>,
    /// What happens to the user's channels when the user goes offline.
    #[serde(default)]
    pub offline: Offline,
    /// With `offline = "grace"`: seconds the channels stay joined.
    pub offline_grace_secs: Option<u64>,
    /// Per-server overrides, by server name.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
    /// Per-user and per-connection limits.
    #[serde(default)]
    pub limits: Limits,
}

/// The default for [`IrcConfig::idle_disconnect_secs`].
pub const DEFAULT_IDLE_DISCONNECT_SECS: u64 = 300;
/// The default for [`IrcConfig::offline_grace_secs`].
pub const DEFAULT_OFFLINE_GRACE_SECS: u64 = 300;

/// The keys of `[bridges.irc]` this bridge reads (the fields of [`IrcConfig`]).
pub const KEYS: &[&str] = &[
    "fixed_server",
    "default_port",
    "default_tls_port",
    "default_plain_port",
    "idle_disconnect_secs",
    "version",
    "offline",
    "offline_grace_secs",
    "servers",
    "limits",
];

/// Keys of the table the core reads (it passes some along); the bridge ignores them.
const CORE_KEYS: &[&str] = &["domain", "secret", "enabled", "admins", "allowed_domains"];

/// The table without the core's keys.
fn own_keys(table: &serde_json::Value) -> serde_json::Value {
    let mut table = table.clone();
    if let Some(map) = table.as_object_mut() {
        for key in CORE_KEYS {
            map.remove(*key);
        }
    }
    table
}

impl IrcConfig {
    /// Reads the whole `[bridges.irc]` table (as JSON); keys meant for the core (`domain`,
    /// `secret`, `enabled`, `admins`, `allowed_domains`) are ignored, any other unknown key is an error.
    pub fn from_json(table: &serde_json::Value) -> Result<Self, ConfigError> {
        let mut config: Self = serde_json::from_value(own_keys(table))?;
        config.servers = config
            .servers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        config.fixed_server = config.fixed_server.map(|s| s.to_ascii_lowercase());
        config.validate()?;
        Ok(config)
    }

    /// Everything wrong with the table at once, for `check-config`: each unknown key and
    /// each value of the wrong type, keyed by its path in the table (`limits.queued_lines`,
    /// `servers."irc.example.org".port`); when the keys are right, the first value out of
    /// range. Empty: the table is usable.
    pub fn check(table: &serde_json::Value) -> Vec<ConfigError> {
        let Some(map) = own_keys(table).as_object().cloned() else {
            return vec![ConfigError::OutOfRange {
                key: String::new(),
                why: "must be a table".into(),
            }];
        };
        let mut problems = Vec::new();
        for (key, value) in map {
            if !KEYS.contains(&key.as_str()) {
                problems.push(ConfigError::OutOfRange {
                    key: key.clone(),
                    why: format!(
                        "unknown key: check its spelling (the keys of this table are {} and {})",
                        CORE_KEYS.join(", "),
                        KEYS.join(", ")
                    ),
                });
                continue;
            }
            // One key (and one server) at a time, so that one wrong value does not hide
            // the next.
            if key == "servers"
                && let Some(servers) = value.as_object()
            {
                for (name, server) in servers {
                    problems.extend(check_value::<ServerConfig>(
                        &format!("servers.\"{name}\""),
                        server,
                    ));
                }
                continue;
            }
            let single = serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
            problems.extend(check_value::<IrcConfig>("", &single).map(|e| match e {
                ConfigError::OutOfRange { key: k, why } => ConfigError::OutOfRange {
                    key: match k.trim_start_matches('.') {
                        "" => key.clone(),
                        k => k.to_string(),
                    },
                    why,
                },
                other => other,
            }));
        }
        if problems.is_empty()
            && let Err(e) = Self::from_json(table)
        {
            problems.push(e);
        }
        problems
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(server) = &self.fixed_server
            && let Some(why) = crate::address::check_server(server)
        {
            return Err(ConfigError::OutOfRange {
                key: "fixed_server".into(),
                why,
            });
        }
        if self.offline_grace_secs.is_some() && self.offline != Offline::Grace {
            return Err(ConfigError::OutOfRange {
                key: "offline_grace_secs".into(),
                why: "only used with offline = \"grace\"; set that too, or remove this key".into(),
            });
        }
        if self.offline_grace_secs == Some(0) {
            return Err(ConfigError::OutOfRange {
                key: "offline_grace_secs".into(),
                why: "must be at least 1 (for no grace at all, use offline = \"leave\")".into(),
            });
        }
        for (key, port) in [
            ("default_port", self.default_port),
            ("default_tls_port", self.default_tls_port),
            ("default_plain_port", self.default_plain_port),
        ] {
            if port == Some(0) {
                return Err(ConfigError::OutOfRange {
                    key: key.into(),
                    why: "a port is from 1 to 65535".into(),
                });
            }
        }
        self.limits.validate()?;
        for (name, server) in &self.servers {
            if let Some(t) = server.throttle
                && (!(t.lines_per_second.is_finite() && t.lines_per_second > 0.0) || t.burst == 0)
            {
                return Err(ConfigError::OutOfRange {
                    key: format!("servers.\"{name}\".throttle"),
                    why: "lines_per_second must be above 0 and burst at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// The TLS port and the plain port tried in turn when no port is set.
    pub fn default_ports(&self) -> DefaultPorts {
        DefaultPorts {
            tls: self.default_tls_port.unwrap_or(6697),
            plain: self.default_plain_port.unwrap_or(6667),
        }
    }

    /// How long a connection stays open after its last room is left.
    pub fn idle_disconnect(&self) -> Duration {
        Duration::from_secs(
            self.idle_disconnect_secs
                .unwrap_or(DEFAULT_IDLE_DISCONNECT_SECS),
        )
    }

    /// The offline policy for the core.
    pub fn offline_policy(&self) -> estuary_bridge_api::OfflinePolicy {
        use estuary_bridge_api::OfflinePolicy;
        match self.offline {
            Offline::Leave => OfflinePolicy::Leave,
            Offline::Grace => OfflinePolicy::Grace(Duration::from_secs(
                self.offline_grace_secs
                    .unwrap_or(DEFAULT_OFFLINE_GRACE_SECS),
            )),
            Offline::Persistent => OfflinePolicy::Persistent,
        }
    }

    /// The overrides for `server`, or none.
    pub fn server(&self, server: &str) -> ServerConfig {
        self.servers
            .get(&server.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}

/// Reads `value` as a `T` and reports the error, if any, with its dotted path under `key`.
fn check_value<T: serde::de::DeserializeOwned>(
    key: &str,
    value: &serde_json::Value,
) -> Option<ConfigError> {
    let e = serde_path_to_error::deserialize::<_, T>(value.clone()).err()?;
    let path = e.path().to_string();
    let key = if path.is_empty() || path == "." {
        key.to_string()
    } else {
        format!("{key}.{path}")
    };
    Some(ConfigError::OutOfRange {
        key,
        why: e.into_inner().to_string(),
    })
}

/// One way to reach a server: a port, with or without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

/// The ports of the TLS-then-plain fallback used when no port is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultPorts {
    /// Tried first, with TLS (6697).
    pub tls: u16,
    /// Tried next, plain (6667).
    pub plain: u16,
}

impl Default for DefaultPorts {
    /// 6697 with TLS, 6667 plain.
    fn default() -> Self {
        Self {
            tls: 6697,
            plain: 6667,
        }
    }
}

/// The endpoints to try in order, as Biboumi does: an explicit port with its TLS setting
/// (TLS defaults to on for the TLS port and off otherwise), else TLS on the TLS port then
/// plain on the plain one.
pub fn endpoints(port: Option<u16>, tls: Option<bool>, defaults: DefaultPorts) -> Vec<Endpoint> {
    match (port, tls) {
        (Some(port), Some(tls)) => vec![Endpoint { port, tls }],
        (Some(port), None) => vec![Endpoint {
            port,
            tls: port == defaults.tls,
        }],
        (None, Some(true)) => vec![Endpoint {
            port: defaults.tls,
            tls: true,
        }],
        (None, Some(false)) => vec![Endpoint {
            port: defaults.plain,
            tls: false,
        }],
        (None, None) => vec![
            Endpoint {
                port: defaults.tls,
                tls: true,
            },
            Endpoint {
                port: defaults.plain,
                tls: false,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys_and_messages(problems: &[ConfigError]) -> Vec<(String, String)> {
        problems
            .iter()
            .map(|p| match p {
                ConfigError::OutOfRange { key, why } => (key.clone(), why.clone()),
                other => (String::new(), other.to_string()),
            })
            .collect()
    }

    #[test]
    fn check_reports_every_unknown_key_and_wrong_type_at_once() {
        let problems = IrcConfig::check(&json!({
            "domain": "irc.gw", "secret": "s",
            "fixed_sever": "irc.libera.chat",
            "idle_disconnect_secs": "soon",
            "limits": { "queued_linez": 3 },
            "servers": { "irc.example.org": { "port": "x" } }
        }));
        let found = keys_and_messages(&problems);
        assert_eq!(found.len(), 4, "{found:?}");
        let (key, why) = &found[0];
        assert_eq!(key, "fixed_sever");
        assert!(why.starts_with("unknown key: check its spelling"), "{why}");
        assert!(why.contains("fixed_server"), "{why}");
        assert_eq!(found[1].0, "idle_disconnect_secs");
        assert!(found[1].1.contains("invalid type"), "{}", found[1].1);
        assert_eq!(found[2].0, "limits.queued_linez");
        assert!(
            found[2].1.contains("unknown field `queued_linez`"),
            "{}",
            found[2].1
        );
        assert_eq!(found[3].0, "servers.\"irc.example.org\".port");
        assert!(found[3].1.contains("invalid type"), "{}", found[3].1);
    }

    #[test]
    fn check_passes_a_good_table_and_reports_ranges_when_the_keys_are_right() {
        assert!(
            IrcConfig::check(&json!({"domain": "d", "secret": "s", "offline": "leave"})).is_empty()
        );
        let found = keys_and_messages(&IrcConfig::check(&json!({"offline_grace_secs": 0})));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "offline_grace_secs");
    }

    #[test]
    fn from_json_refuses_an_unknown_key() {
        let err = IrcConfig::from_json(&json!({"fixed_sever": "x"})).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `fixed_sever`"),
            "{err}"
        );
    }

    #[test]
    fn keys_lists_every_field() {
        let msg = serde_json::from_value::<IrcConfig>(json!({"?": 0}))
            .unwrap_err()
            .to_string();
        for key in KEYS {
            assert!(
                msg.contains(&format!("`{key}`")),
                "{key} missing from {msg}"
            );
        }
        assert_eq!(msg.matches('`').count() / 2, KEYS.len() + 1, "{msg}");
    }

    #[test]
    fn reads_the_table_and_ignores_core_keys() {
        let c = IrcConfig::from_json(&json!({
            "domain": "irc.gw", "secret": "s",
            "fixed_server": "IRC.Libera.Chat",
            "idle_disconnect_secs": 10,
            "servers": { "IRC.Example.org": { "port": 6667, "tls": false,
                "throttle": { "lines_per_second": 10.0, "burst": 20 } } }
        }))
        .unwrap();
        assert_eq!(c.fixed_server.as_deref(), Some("irc.libera.chat"));
        assert_eq!(c.idle_disconnect(), Duration::from_secs(10));
        let s = c.server("irc.example.org");
        assert_eq!(s.port, Some(6667));
        assert_eq!(
            s.throttle,
            Some(Throttle {
                lines_per_second: 10.0,
                burst: 20
            })
        );
        assert_eq!(c.server("other").port, None);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(IrcConfig::from_json(&json!({"fixed_server": "a b"})).is_err());
        assert!(IrcConfig::from_json(&json!({"default_port": 70000})).is_err());
        let e = IrcConfig::from_json(&json!({"servers": {"x": {"throttle":
            {"lines_per_second": 0.0, "burst": 1}}}}))
        .unwrap_err();
        assert!(e.to_string().contains("throttle"), "{e}");
        assert!(IrcConfig::from_json(&json!({"servers": {"x": {"prot": 1}}})).is_err());
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let c = IrcConfig::from_json(&json!({})).unwrap();
        assert_eq!(c.limits, Limits::default());
        let c = IrcConfig::from_json(&json!({"limits": {"servers_per_user": 2}})).unwrap();
        assert_eq!(c.limits.servers_per_user, 2);
        assert_eq!(
            c.limits.channels_per_user,
            Limits::default().channels_per_user
        );
        for bad in [
            json!({"limits": {"servers_per_user": 0}}),
            json!({"limits": {"message_bytes": 100}}),
            json!({"limits": {"user_lines_per_second": 0.0}}),
            json!({"limits": {"servers": 3}}),
        ] {
            let e = IrcConfig::from_json(&bad).unwrap_err();
            assert!(
                e.to_string().contains("servers") || e.to_string().contains("limits."),
                "{e}"
            );
        }
    }

    #[test]
    fn limits_refuse_with_resource_constraint_and_name_the_limit() {
        let limits = Limits {
            servers_per_user: 2,
            channels_per_user: 3,
            queued_lines: 10,
            message_bytes: 600,
            ..Limits::default()
        };
        assert!(limits.check_servers(1).is_ok());
        let e = limits.check_servers(2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceConstraint);
        assert!(e.text.contains("at most 2 IRC server(s)"), "{}", e.text);
        assert!(limits.check_channels(2).is_ok());
        let e = limits.check_channels(3).unwrap_err();
        assert!(e.text.contains("at most 3 IRC channel(s)"), "{}", e.text);
        assert!(limits.check_message(&"a".repeat(600)).is_ok());
        let e = limits.check_message(&"a".repeat(601)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceConstraint);
        assert!(
            e.text.contains("601 bytes") && e.text.contains("at most 600"),
            "{}",
            e.text
        );
        assert!(limits.check_queue(6, 4).is_ok());
        let e = limits.check_queue(6, 5).unwrap_err();
        assert!(e.text.contains("at most 10 may wait"), "{}", e.text);
        assert!(limits.check_queue(usize::MAX, 1).is_err());
    }

    #[test]
    fn a_users_throttle_cap_is_the_limit_or_the_servers_own() {
        let limits = Limits::default();
        let cap = limits.user_throttle_cap(Throttle::default());
        assert_eq!((cap.lines_per_second, cap.burst), (5.0, 10));
        let fast = Throttle {
            lines_per_second: 50.0,
            burst: 50,
        };
        assert_eq!(limits.user_throttle_cap(fast), fast);
    }

    #[test]
    fn offline_policy() {
        use estuary_bridge_api::OfflinePolicy;
        let policy = |v| IrcConfig::from_json(&v).map(|c| c.offline_policy());
        // The default keeps channels through an XMPP server restart (issue 12).
        assert_eq!(
            policy(json!({})).unwrap(),
            OfflinePolicy::Grace(Duration::from_secs(DEFAULT_OFFLINE_GRACE_SECS))
        );
        assert_eq!(
            policy(json!({"offline": "leave"})).unwrap(),
            OfflinePolicy::Leave
        );
        assert_eq!(
            policy(json!({"offline": "grace"})).unwrap(),
            OfflinePolicy::Grace(Duration::from_secs(DEFAULT_OFFLINE_GRACE_SECS))
        );
        assert_eq!(
            policy(json!({"offline": "grace", "offline_grace_secs": 30})).unwrap(),
            OfflinePolicy::Grace(Duration::from_secs(30))
        );
        assert_eq!(
            policy(json!({"offline": "persistent"})).unwrap(),
            OfflinePolicy::Persistent
        );
        let e = policy(json!({"offline": "forever"})).unwrap_err();
        assert!(e.to_string().contains("forever"), "{e}");
        // Grace is the default, so the grace period alone is enough…
        assert_eq!(
            policy(json!({"offline_grace_secs": 30})).unwrap(),
            OfflinePolicy::Grace(Duration::from_secs(30))
        );
        // …and is refused beside another policy.
        let e = policy(json!({"offline": "leave", "offline_grace_secs": 30})).unwrap_err();
        assert!(e.to_string().contains("offline = \"grace\""), "{e}");
        assert!(policy(json!({"offline": "grace", "offline_grace_secs": 0})).is_err());
    }

    #[test]
    fn the_fallback_ports_can_move() {
        let c =
            IrcConfig::from_json(&json!({"default_tls_port": 7001, "default_plain_port": 7000}))
                .unwrap();
        let d = c.default_ports();
        assert_eq!(
            endpoints(None, None, d),
            [
                Endpoint {
                    port: 7001,
                    tls: true
                },
                Endpoint {
                    port: 7000,
                    tls: false
                }
            ]
        );
        assert!(endpoints(Some(7001), None, d)[0].tls);
        assert!(IrcConfig::from_json(&json!({"default_tls_port": 0})).is_err());
    }

    #[test]
    fn endpoints_follow_biboumi() {
        assert_eq!(endpoints(None, None, DefaultPorts::default()).len(), 2);
        assert_eq!(
            endpoints(None, None, DefaultPorts::default())[0],
            Endpoint {
                port: 6697,
                tls: true
            }
        );
        assert_eq!(
            endpoints(Some(6667), None, DefaultPorts::default()),
            [Endpoint {
                port: 6667,
                tls: false
            }]
        );
        assert_eq!(
            endpoints(Some(7000), Some(true), DefaultPorts::default()),
            [Endpoint {
                port: 7000,
                tls: true
            }]
        );
    }
}
