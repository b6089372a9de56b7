//! One XMPP user's IRC side (Biboumi's model): one connection per IRC server, opened on
//! first use (a join, a message, a raw command) and closed a while after the last room on
//! it is left.
//!
//! # Per-server login settings
//!
//! A login's fields apply to every server, unless the `server` field names one server, then
//! only to it: `nick`, `username`, `realname`, `sasl_password`, `nickserv_password`, `tls`
//! (`true`/`false`), `port`, `autojoin` (channels separated by spaces, commas or lines).
//! The login's metadata may also hold per-server settings with the same keys, which win:
//! `{"servers": {"irc.libera.chat": {"nick": "alice", "port": "6697", "tls": "true"}}}`.
//! The settings the user gives through the server JID's "Configure" command or
//! registration (see [`settings`](crate::settings)) win over both.

use crate::address;
use crate::config::{Endpoint, endpoints};
use crate::connection::{Account, ConnectionHandle, Op, Say, ServerSettings};
use crate::connector::Common;
use crate::format::{
    ACTION_OVERHEAD, CONSERVATIVE_PREFIX_BYTES, parse_me, sanitize, split_body, text_budget,
};
use crate::profile::ServerProfile;
use crate::settings::{self, is_true};
use async_trait::async_trait;
use estuary_bridge_api::{
    BridgeError, ChatKey, Client, CommandContext, CommandOutput, ErrorKind, EventSink, FormValues,
    JoinRequest, MessageKind, Outgoing, RemoteChatId, RemoteEvent, RemoteUserId, Result, RoomInfo,
    Sent, SoftwareVersion, User,
};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::info;

/// How long `set_nick` waits for the server to accept or refuse the nick.
const NICK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `set_topic` and `kick` wait for the server to do it or refuse it.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `list_rooms` waits for the server's LIST.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a CTCP VERSION reply is waited for.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server's LIST is reused (a client pages through it in several requests).
const LIST_CACHE: Duration = Duration::from_secs(60);

/// A server's channel list and when it came.
struct Listing {
    server: String,
    at: Instant,
    rooms: Vec<RoomInfo>,
}

/// The live IRC side of one login.
pub struct IrcClient {
    common: Arc<Common>,
    user: User,
    fields: FormValues,
    metadata: serde_json::Value,
    /// The user's settings per server (from the server JID's "Configure"), by lowercase
    /// server name.
    services: Mutex<BTreeMap<String, FormValues>>,
    events: EventSink,
    /// The connections by server, in a vector: a user has one or two, and a hash map would
    /// keep room for several in every user's client.
    connections: Mutex<Vec<(String, ConnectionHandle)>>,
    /// Each server's last LIST and when it came, so that paging through a long list does
    /// not ask the server again for every page. A vector (one server or two), boxed only
    /// while a list is kept: most users never list, and a box keeps the client in a
    /// smaller allocation class than the vector's three words would.
    #[allow(clippy::box_collection)]
    listings: Mutex<Option<Box<Vec<Listing>>>>,
}

impl IrcClient {
    /// A client for `user` with its login fields, metadata and per-server settings;
    /// connects nothing yet.
    pub fn new(
        common: Arc<Common>,
        user: User,
        fields: FormValues,
        metadata: serde_json::Value,
        services: BTreeMap<String, FormValues>,
        events: EventSink,
    ) -> Self {
        Self {
            common,
            user,
            fields,
            metadata,
            services: Mutex::new(
                services
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
            ),
            events,
            connections: Mutex::new(Vec::new()),
            listings: Mutex::new(None),
        }
    }

    /// A login setting for `server`: the server's own settings first, then metadata, then
    /// fields (if they apply).
    fn setting(&self, server: &str, key: &str) -> Option<String> {
        let from_service = self
            .services
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&server.to_ascii_lowercase())
            .and_then(|v| v.get(key).map(str::to_owned));
        if from_service.is_some() {
            return from_service;
        }
        let from_meta = self
            .metadata
            .get("servers")
            .and_then(|s| s.get(server))
            .and_then(|s| s.get(key))
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty());
        if from_meta.is_some() {
            return from_meta;
        }
        let applies = self
            .fields
            .get("server")
            .is_none_or(|s| s.eq_ignore_ascii_case(server));
        applies
            .then(|| self.fields.get(key).map(str::to_owned))
            .flatten()
    }

    /// The settings for a connection to `server`; `nick` is the one asked for at the join.
    pub fn settings_for(&self, server: &str, nick: Option<&str>) -> ServerSettings {
        let config = &self.common.config;
        let overrides = config.server(server);
        let port = self
            .setting(server, "port")
            .and_then(|p| p.parse().ok())
            .or(overrides.port)
            .or(config.default_port);
        let tls = self
            .setting(server, "tls")
            .filter(|t| t != "auto")
            .map(|t| is_true(&t))
            .or(overrides.tls);
        let local = self.user.jid.split('@').next().unwrap_or("estuary");
        let nick = self
            .setting(server, "nick")
            .or_else(|| nick.map(str::to_owned))
            .filter(|n| address::check_nick(n).is_none())
            .unwrap_or_else(|| sanitize_nick(local));
        let safe = |s: String| sanitize(&s).replace(['\n', ' '], "");
        let account = Account {
            sasl_password: self.setting(server, "sasl_password"),
            nickserv_password: self.setting(server, "nickserv_password"),
            autojoin: self
                .setting(server, "autojoin")
                .map(|a| {
                    settings::split_channels(&a)
                        .filter(|c| address::check_channel(c).is_none())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            server_password: self.setting(server, "pass"),
            after_connect: self
                .setting(server, "after_connect_commands")
                .map(|l| {
                    l.split('\n')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        // Biboumi's port lists win over a single port: TLS ports first, then plain ones.
        let list = |var: &str| -> Vec<u16> {
            self.setting(server, var)
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (tls_ports, plain_ports) = (list("tls_ports"), list("ports"));
        let endpoints = if tls_ports.is_empty() && plain_ports.is_empty() {
            endpoints(port, tls, config.default_ports())
        } else {
            let tls = tls_ports
                .into_iter()
                .map(|port| Endpoint { port, tls: true });
            let plain = plain_ports
                .into_iter()
                .map(|port| Endpoint { port, tls: false });
            tls.chain(plain).collect()
        };
        let profile = ServerProfile {
            server: server.to_owned(),
            endpoints,
            verify_certificate: self
                .setting(server, "verify_cert")
                .or_else(|| self.setting(server, "verify_certificate"))
                .filter(|v| v != "default")
                .map(|v| is_true(&v))
                .or(overrides.verify_certificate)
                .unwrap_or(true),
            throttle: {
                let base = overrides.throttle.unwrap_or_default();
                settings::throttle(
                    self.setting(server, "throttle_limit")
                        .or_else(|| self.setting(server, "throttle_lines_per_second"))
                        .as_deref(),
                    self.setting(server, "throttle_burst").as_deref(),
                    base,
                    config.limits.user_throttle_cap(base),
                )
            },
            version: config
                .version
                .clone()
                .unwrap_or_else(|| format!("Estuary {}", env!("CARGO_PKG_VERSION"))),
            idle_disconnect: config.idle_disconnect(),
            outbound: Arc::clone(&self.common.outbound),
            opening: self.common.opening.clone(),
        };
        ServerSettings {
            profile: self.common.profiles.intern(profile),
            username: self
                .setting(server, "username")
                .or(overrides.username)
                .map(safe)
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| nick.clone()),
            realname: self
                .setting(server, "realname")
                .or(overrides.realname)
                .map(|r| sanitize(&r).replace('\n', " "))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| nick.clone()),
            nick,
            account: account.boxed(),
        }
    }

    /// The servers the user has a live connection to, sorted.
    pub fn connected_servers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .connections
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, h)| !h.is_closed())
                    .map(|(s, _)| s.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Quits `server` on the user's behalf with `reason`: its rooms are left (each joined
    /// resource is told, with the reason) and nothing is rejoined. False when there was no
    /// live connection to it.
    pub fn quit_server(&self, server: &str, reason: &str) -> bool {
        let handle = self
            .connections
            .lock()
            .ok()
            .and_then(|mut m| {
                let at = m.iter().position(|(s, _)| s == server)?;
                Some(m.remove(at).1)
            })
            .filter(|h| !h.is_closed());
        match handle {
            Some(h) => h.send(Op::UserQuit(Some(reason.to_owned()))),
            None => false,
        }
    }

    /// When and how the connection to `server` was opened, if it is registered.
    pub fn connected_since(
        &self,
        server: &str,
    ) -> Option<(std::time::SystemTime, crate::config::Endpoint)> {
        let handle = self.existing(server)?;
        if !handle.shared.registered.load(Ordering::SeqCst) {
            return None;
        }
        handle.shared.connected.lock().ok().and_then(|c| *c)
    }

    /// The connection to `server`, opened if there is none (or the old one ended) and the
    /// user is below `servers_per_user`.
    fn connection(&self, server: &str, nick: Option<&str>) -> Result<ConnectionHandle> {
        let mut map = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = map.iter().position(|(s, _)| s == server);
        if let Some(at) = slot
            && !map[at].1.is_closed()
        {
            return Ok(map[at].1.clone());
        }
        let open = map.iter().filter(|(_, h)| !h.is_closed()).count();
        self.common.config.limits.check_servers(open)?;
        info!(user = %self.user.jid, server, "opening IRC connection");
        let handle = ConnectionHandle::spawn(self.settings_for(server, nick), self.events.clone());
        match slot {
            Some(at) => map[at].1 = handle.clone(),
            None => {
                // Ended connections make room first.
                map.retain(|(_, h)| !h.is_closed());
                map.reserve_exact(1);
                map.push((server.to_owned(), handle.clone()));
            }
        }
        Ok(handle)
    }

    /// Channels the user is in or joining, over every live connection.
    fn channels_joined(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(_, h)| !h.is_closed())
            .map(|(_, h)| h.shared.channels.load(Ordering::Relaxed))
            .sum()
    }

    /// A server's channels, sorted by id: the LIST of the last [`LIST_CACHE`], or a new one.
    async fn channels_of(&self, server: &str) -> Result<Vec<RoomInfo>> {
        let cached = self.listing(server);
        if let Some(rooms) = cached {
            return Ok(rooms);
        }
        let handle = self.connection(server, None)?;
        let mut rooms = list_channels(&handle).await?;
        rooms.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        if !rooms.is_empty() {
            let mut listings = self
                .listings
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let kept = listings.get_or_insert_with(Box::default);
            kept.retain(|l| l.server != server);
            kept.push(Listing {
                server: server.to_owned(),
                at: Instant::now(),
                rooms: rooms.clone(),
            });
        }
        Ok(rooms)
    }

    /// The server's list of the last [`LIST_CACHE`], if there is one. Older lists are
    /// dropped here (a big network's list is megabytes, kept by every user who asked).
    fn listing(&self, server: &str) -> Option<Vec<RoomInfo>> {
        let mut listings = self
            .listings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = listings.as_mut()?;
        kept.retain(|l| l.at.elapsed() < LIST_CACHE);
        let found = kept
            .iter()
            .find(|l| l.server == server)
            .map(|l| l.rooms.clone());
        if kept.is_empty() {
            *listings = None;
        }
        found
    }

    fn existing(&self, server: &str) -> Option<ConnectionHandle> {
        let map = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.iter()
            .find(|(s, h)| s == server && !h.is_closed())
            .map(|(_, h)| h.clone())
    }

    fn send_op(handle: &ConnectionHandle, op: Op) -> Result<()> {
        if handle.send(op) {
            Ok(())
        } else {
            Err(BridgeError::new(
                ErrorKind::RemoteUnreachable,
                "The IRC connection has just closed; try again.",
            ))
        }
    }
}

/// A `/mode …` typed in a room (as in Biboumi): the arguments, to run as `MODE #channel
/// …` on the room's channel; `None` for any other text. A `/mode` with more lines after it
/// is refused rather than posted, since it may hold a channel key.
fn mode_command(body: &str) -> Result<Option<&str>> {
    let body = body.trim();
    let Some(head) = body.get(..5).filter(|h| h.eq_ignore_ascii_case("/mode")) else {
        return Ok(None);
    };
    let args = &body[head.len()..];
    if !args.is_empty() && !args.starts_with([' ', '\t']) {
        return Ok(None);
    }
    if args.contains(['\n', '\r']) {
        return Err(BridgeError::not_acceptable(
            "Send /mode alone in its message, on one line (e.g. /mode +k key); nothing was sent.",
        ));
    }
    Ok(Some(args.trim()))
}

/// A CTCP VERSION reply's text as XEP-0092 fields. The reply is free text; the usual
/// shapes are `name:version:environment` (the old CTCP spec) and `name version - os` or
/// `name version` (most clients): the first word is the name, the next one the version,
/// what follows a ` - ` (or the rest) the system.
fn parse_version(text: &str) -> SoftwareVersion {
    let text = sanitize(text);
    let text = text.trim();
    let parts: Vec<&str> = text.splitn(3, ':').collect();
    if let [name, version, os] = parts[..]
        && !name.contains(' ')
        && !name.is_empty()
    {
        let os = os.trim();
        return SoftwareVersion {
            name: name.trim().to_owned(),
            version: version.trim().to_owned(),
            os: (!os.is_empty()).then(|| os.to_owned()),
        };
    }
    let (head, os) = match text.split_once(" - ") {
        Some((head, os)) => (head.trim(), Some(os.trim())),
        None => (text, None),
    };
    let (name, rest) = head.split_once(char::is_whitespace).unwrap_or((head, ""));
    let rest = rest.trim();
    let (version, more) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let os = os
        .or_else(|| Some(more.trim()))
        .filter(|o| !o.is_empty())
        .map(str::to_owned);
    SoftwareVersion {
        name: name.to_owned(),
        version: version.to_owned(),
        os,
    }
}

/// The raw lines of a message to the server JID, one command a line (a leading `/` is
/// dropped), and whether one of them is `QUIT` (with its reason, if any): the lines after a
/// `QUIT` are left out, since the connection ends there.
fn raw_lines(body: &str) -> (Vec<String>, Option<Option<String>>) {
    let mut lines = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.strip_prefix('/').unwrap_or(line);
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        if command.eq_ignore_ascii_case("QUIT") {
            let rest = rest.trim();
            let reason = rest.strip_prefix(':').unwrap_or(rest);
            let reason = (!reason.is_empty()).then(|| reason.to_owned());
            return (lines, Some(reason));
        }
        lines.push(line.to_owned());
    }
    (lines, None)
}

/// The channels a server's LIST answers (empty if it does not answer in [`LIST_TIMEOUT`]);
/// a connection still registering sends the LIST once registered.
async fn list_channels(handle: &ConnectionHandle) -> Result<Vec<RoomInfo>> {
    let (tx, rx) = oneshot::channel();
    IrcClient::send_op(handle, Op::List(tx))?;
    match tokio::time::timeout(LIST_TIMEOUT, rx).await {
        Ok(Ok(list)) => Ok(list),
        Ok(Err(_)) => Err(BridgeError::new(
            ErrorKind::RemoteUnreachable,
            "The IRC connection was lost before the server listed its channels.",
        )),
        Err(_) => Ok(Vec::new()),
    }
}

/// Waits for the server's verdict on an operation; a server that says nothing within
/// [`VERDICT_TIMEOUT`] is taken as agreeing (some say nothing when nothing changes).
async fn await_verdict(verdict: oneshot::Receiver<Result<()>>, what: &str) -> Result<()> {
    match tokio::time::timeout(VERDICT_TIMEOUT, verdict).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(BridgeError::new(
            ErrorKind::RemoteUnreachable,
            format!("The IRC connection was lost before the server answered the {what}."),
        )),
        Err(_) => Ok(()),
    }
}

fn sanitize_nick(local: &str) -> String {
    let nick: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_-[]{}|^\\`".contains(*c))
        .take(30)
        .collect();
    if nick.is_empty() || nick.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        format!("x{nick}")
    } else {
        nick
    }
}

#[async_trait]
impl Client for IrcClient {
    async fn connect(&self) {
        // Connections open on first use; autojoin servers open at once.
        let servers: Vec<String> = match self.metadata.get("servers").and_then(|s| s.as_object()) {
            Some(map) => map
                .iter()
                .filter(|(_, v)| v.get("autojoin").is_some())
                .map(|(k, _)| k.clone())
                .collect(),
            None => Vec::new(),
        };
        let from_fields = self
            .fields
            .get("server")
            .filter(|_| self.fields.get("autojoin").is_some())
            .map(str::to_owned);
        let from_services: Vec<String> = self
            .services
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.get("autojoin").is_some())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for server in servers.into_iter().chain(from_fields).chain(from_services) {
            if let Err(e) = self.connection(&server.to_ascii_lowercase(), None) {
                // Past servers_per_user: say so, for the servers left out.
                let body = format!("Not connecting to {server} for its autojoin: {}", e.text);
                let notice = RemoteEvent::ServiceMessage {
                    service: Some(server.to_ascii_lowercase()),
                    body,
                };
                let _ = self.events.send(notice).await;
            }
        }
    }

    async fn disconnect(&self) {
        let handles: Vec<ConnectionHandle> = self
            .connections
            .lock()
            .map(|mut m| {
                std::mem::take(&mut *m)
                    .into_iter()
                    .map(|(_, h)| h)
                    .collect()
            })
            .unwrap_or_default();
        for h in handles {
            h.send(Op::Quit(Some("Disconnected by the user".into())));
        }
    }

    async fn quit(&self, reason: &str) {
        for server in self.connected_servers() {
            self.quit_server(&server, reason);
        }
    }

    async fn run_command(
        &self,
        ctx: &CommandContext,
        node: &str,
        form: &FormValues,
    ) -> Result<CommandOutput> {
        crate::commands::run_on_client(self, ctx, node, form)
    }

    async fn service_settings_changed(&self, service: &str, settings: Option<FormValues>) {
        let mut map = self
            .services
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let server = service.to_ascii_lowercase();
        match settings {
            Some(values) => map.insert(server.clone(), values),
            None => map.remove(&server),
        };
        drop(map);
        // A live connection takes them at its next reconnect (the current one stays).
        if let Some(handle) = self.existing(&server) {
            let nick = handle.shared.nick.lock().map(|n| n.clone()).ok();
            let settings = self.settings_for(&server, nick.as_deref());
            handle.send(Op::Settings(Box::new(settings)));
        }
    }

    async fn resolve_identifier(&self, typed: &str) -> Result<RemoteUserId> {
        let typed = typed.trim();
        let parsed = match &self.common.config.fixed_server {
            Some(_) => {
                address::parse_local_part(typed, self.common.config.fixed_server.as_deref())?
            }
            None => address::parse_local_part(typed, None)?,
        };
        match parsed.chat_key(address::ID_FOLDING) {
            ChatKey::Direct(id) => Ok(id),
            _ => Err(BridgeError::not_acceptable(
                "Enter an IRC nick and server as nick%irc.server (e.g. alice%irc.libera.chat).",
            )),
        }
    }

    async fn send_message(&self, msg: Outgoing) -> Result<Sent> {
        let limits = &self.common.config.limits;
        limits.check_message(&msg.body)?;
        let (target, server) = match &msg.chat {
            ChatKey::Room(id) => address::parse_room_id(id)?,
            ChatKey::Direct(id) => address::parse_user_id(id)?,
            ChatKey::Service(server) => {
                // Raw IRC commands to the server, one per line, as Biboumi does.
                let (lines, quit) = raw_lines(&sanitize(&msg.body));
                let handle = self.connection(&server.to_ascii_lowercase(), None)?;
                let count = lines.len();
                limits.check_queue(handle.shared.queued.load(Ordering::Relaxed), count)?;
                if count > 0 {
                    Self::send_op(&handle, Op::Raw(lines))?;
                    handle.shared.queued.fetch_add(count, Ordering::Relaxed);
                }
                if let Some(reason) = quit {
                    info!(user = %self.user.jid, %server, "the user quit the server");
                    Self::send_op(&handle, Op::UserQuit(reason))?;
                }
                return Ok(Sent::default());
            }
        };
        let handle = self.connection(server, None)?;
        if matches!(msg.chat, ChatKey::Room(_))
            && let Some(args) = mode_command(&msg.body)?
        {
            // Run, never posted: `/mode +k key` must not show the key to the channel.
            let line = if args.is_empty() {
                format!("MODE {target}")
            } else {
                format!("MODE {target} {}", sanitize(args))
            };
            limits.check_queue(handle.shared.queued.load(Ordering::Relaxed), 1)?;
            Self::send_op(&handle, Op::Raw(vec![line]))?;
            handle.shared.queued.fetch_add(1, Ordering::Relaxed);
            return Ok(Sent {
                id: None,
                will_echo: false,
                ran_as_command: true,
            });
        }
        let (kind, body) = parse_me(&msg.body, msg.kind);
        let nick_len = handle.shared.nick.lock().map(|n| n.len()).unwrap_or(30);
        let prefix = CONSERVATIVE_PREFIX_BYTES.max(nick_len + 2 + 10 + 1 + 64);
        let command = if kind == MessageKind::Notice {
            "NOTICE"
        } else {
            "PRIVMSG"
        };
        let mut budget = text_budget(command, target, prefix);
        if kind == MessageKind::Action {
            budget = budget.saturating_sub(ACTION_OVERHEAD);
        }
        let lines = split_body(body, budget);
        if lines.is_empty() {
            return Err(BridgeError::bad_request("There is no text to send."));
        }
        let count = lines.len();
        limits.check_queue(handle.shared.queued.load(Ordering::Relaxed), count)?;
        let will_echo = handle.shared.echo.load(Ordering::SeqCst)
            && handle.shared.registered.load(Ordering::SeqCst);
        let say = Say {
            target: target.to_owned(),
            kind,
            lines,
            body: sanitize(body),
            origin_id: msg.origin_id,
            report_echo: will_echo,
            gate: msg.gate,
        };
        Self::send_op(&handle, Op::Say(say))?;
        // Counted at once: the session counts them only when it takes the operation.
        handle.shared.queued.fetch_add(count, Ordering::Relaxed);
        Ok(Sent {
            id: None,
            will_echo,
            ran_as_command: false,
        })
    }

    async fn join_room(&self, join: JoinRequest) -> Result<()> {
        let (channel, server) = address::parse_room_id(&join.room)?;
        let nick = Some(join.nick.as_str()).filter(|n| address::check_nick(n).is_none());
        self.common
            .config
            .limits
            .check_channels(self.channels_joined())?;
        let handle = self.connection(server, nick)?;
        Self::send_op(
            &handle,
            Op::Join {
                channel: channel.to_owned(),
                key: join.password,
            },
        )?;
        // Counted at once: the session counts it only when it takes the operation.
        handle.shared.channels.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn leave_room(&self, room: RemoteChatId, reason: Option<String>) -> Result<()> {
        let (channel, server) = address::parse_room_id(&room)?;
        if let Some(handle) = self.existing(server) {
            Self::send_op(
                &handle,
                Op::Part {
                    channel: channel.to_owned(),
                    reason,
                },
            )?;
        }
        Ok(())
    }

    async fn set_topic(&self, room: RemoteChatId, topic: String) -> Result<()> {
        let (channel, server) = address::parse_room_id(&room)?;
        let handle = self.connection(server, None)?;
        let (answer, verdict) = oneshot::channel();
        Self::send_op(
            &handle,
            Op::Topic {
                channel: channel.to_owned(),
                topic,
                answer,
            },
        )?;
        // A refusal (not op on a +t channel …) becomes the error of the subject change.
        await_verdict(verdict, "topic change").await
    }

    async fn set_nick(&self, room: RemoteChatId, nick: String) -> Result<()> {
        let (_, server) = address::parse_room_id(&room)?;
        if let Some(why) = address::check_nick(&nick) {
            return Err(BridgeError::not_acceptable(why));
        }
        let handle = self.connection(server, None)?;
        let (tx, rx) = oneshot::channel();
        Self::send_op(&handle, Op::Nick(nick, tx))?;
        // Wait for the server's verdict, so that a refused nick becomes the MUC error of
        // the nick change; a server that says nothing is taken as agreeing.
        match tokio::time::timeout(NICK_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(BridgeError::new(
                ErrorKind::RemoteUnreachable,
                "The IRC connection was lost before the server answered the nick change.",
            )),
            Err(_) => Ok(()),
        }
    }

    async fn kick(&self, room: RemoteChatId, nick: String, reason: Option<String>) -> Result<()> {
        let (channel, server) = address::parse_room_id(&room)?;
        if let Some(why) = address::check_nick(&nick) {
            return Err(BridgeError::not_acceptable(why));
        }
        let handle = self.connection(server, None)?;
        let (answer, verdict) = oneshot::channel();
        Self::send_op(
            &handle,
            Op::Kick {
                channel: channel.to_owned(),
                nick,
                reason,
                answer,
            },
        )?;
        // A refusal (not op, no such nick …) becomes the error of the muc#admin request.
        await_verdict(verdict, "kick").await
    }

    async fn set_standing(
        &self,
        room: RemoteChatId,
        nick: String,
        change: estuary_bridge_api::StandingChange,
    ) -> Result<()> {
        let (channel, server) = address::parse_room_id(&room)?;
        if let Some(why) = address::check_nick(&nick) {
            return Err(BridgeError::not_acceptable(why));
        }
        let handle = self.connection(server, None)?;
        let (answer, verdict) = oneshot::channel();
        Self::send_op(
            &handle,
            Op::Standing {
                channel: channel.to_owned(),
                nick,
                change,
                answer,
            },
        )?;
        // A refusal (not op, no such nick …) becomes the error of the muc#admin request.
        await_verdict(verdict, "mode change").await
    }

    async fn invite(&self, room: RemoteChatId, user: RemoteUserId) -> Result<()> {
        let (channel, server) = address::parse_room_id(&room)?;
        let (nick, user_server) = address::parse_user_id(&user)?;
        if !user_server.eq_ignore_ascii_case(server) {
            return Err(BridgeError::not_acceptable(format!(
                "{nick} is on {user_server}, {channel} on {server}: invite someone of the same IRC server."
            )));
        }
        let handle = self.connection(server, None)?;
        Self::send_op(
            &handle,
            Op::Invite {
                channel: channel.to_owned(),
                nick: nick.to_owned(),
            },
        )
    }

    fn member_by_nick(&self, room: &RemoteChatId, nick: &str) -> Result<RemoteUserId> {
        let (_, server) = address::parse_room_id(room)?;
        if let Some(why) = address::check_nick(nick) {
            return Err(BridgeError::bad_request(why));
        }
        // The nick as typed, not folded: the INVITE carries it, and servers that confirm
        // with the nick of the request (ngIRCd's 341) then name it as the user wrote it,
        // as Biboumi does ("Nick2 has been invited to #foo"). Only invitations use this id.
        Ok(RemoteUserId::new(format!(
            "{nick}%{}",
            server.to_ascii_lowercase()
        )))
    }

    async fn member_version(&self, room: RemoteChatId, nick: String) -> Result<SoftwareVersion> {
        let (_, server) = address::parse_room_id(&room)?;
        if let Some(why) = address::check_nick(&nick) {
            return Err(BridgeError::bad_request(why));
        }
        let Some(handle) = self.existing(server) else {
            return Err(BridgeError::not_acceptable(format!(
                "You are not connected to {server}: join the room first."
            )));
        };
        let (tx, rx) = oneshot::channel();
        Self::send_op(
            &handle,
            Op::Version {
                nick: nick.clone(),
                answer: tx,
            },
        )?;
        match tokio::time::timeout(VERSION_TIMEOUT, rx).await {
            Ok(Ok(text)) => Ok(parse_version(&text)),
            Ok(Err(_)) => Err(BridgeError::new(
                ErrorKind::RemoteUnreachable,
                format!("The connection to {server} was lost before {nick} answered; try again."),
            )),
            Err(_) => Err(BridgeError::new(
                ErrorKind::RemoteTimeout,
                format!(
                    "{nick} did not answer the CTCP VERSION within {} s (their client may not answer it).",
                    VERSION_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    async fn list_rooms(&self) -> Result<Vec<RoomInfo>> {
        let servers: Vec<String> = match &self.common.config.fixed_server {
            Some(server) => vec![server.clone()],
            None => self.connected_servers(),
        };
        let mut rooms = Vec::new();
        for server in servers {
            rooms.extend(self.channels_of(&server).await?);
        }
        Ok(rooms)
    }

    async fn list_service_rooms(&self, service: &str) -> Result<Vec<RoomInfo>> {
        if let Some(why) = address::check_server(service) {
            return Err(BridgeError::not_acceptable(why));
        }
        self.channels_of(&service.to_ascii_lowercase()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Throttle};
    use estuary_bridge_api::LoginId;
    use serde_json::json;

    fn values(pairs: &[(&str, &str)]) -> FormValues {
        let mut v = FormValues::default();
        for (k, val) in pairs {
            v.set(*k, *val);
        }
        v
    }

    fn client(config: serde_json::Value, services: &[(&str, FormValues)]) -> IrcClient {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        IrcClient::new(
            Arc::new(Common::new(
                crate::config::IrcConfig::from_json(&config).unwrap(),
                Default::default(),
            )),
            User {
                jid: "alice@example.org".into(),
            },
            values(&[("nick", "fieldnick"), ("nickserv_password", "field-pw")]),
            json!({"servers": {"irc.test": {"nick": "metanick"}}}),
            services
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            EventSink::new("alice@example.org", LoginId::new("alice"), tx),
        )
    }

    /// Every user has a client: 176 bytes is one of jemalloc's size classes (the next is
    /// 192); the client was 264 bytes (class 320) before its sink and listings shrank.
    #[test]
    fn a_client_stays_small() {
        let size = std::mem::size_of::<IrcClient>();
        assert!(size <= 176, "a client is {size} bytes");
    }

    fn user_client(common: &Arc<Common>, jid: &str, fields: FormValues) -> IrcClient {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        IrcClient::new(
            Arc::clone(common),
            User { jid: jid.into() },
            fields,
            serde_json::Value::Null,
            BTreeMap::new(),
            EventSink::new(jid, LoginId::new(jid), tx),
        )
    }

    /// Every user's connection to a server keeps the server's profile once for all, unless
    /// the user changed part of it; a user's passwords stay their own.
    #[test]
    fn users_share_a_servers_profile_unless_they_changed_it() {
        let common = Arc::new(Common::new(
            crate::config::IrcConfig::from_json(&json!({})).unwrap(),
            Default::default(),
        ));
        let alice = user_client(&common, "alice@example.org", FormValues::default());
        let bob = user_client(
            &common,
            "bob@example.org",
            values(&[("nick", "bobby"), ("sasl_password", "secret")]),
        );
        let carol = user_client(&common, "carol@example.org", values(&[("port", "7000")]));
        let a = alice.settings_for("irc.test", None);
        let b = bob.settings_for("irc.test", None);
        let c = carol.settings_for("irc.test", None);
        assert!(Arc::ptr_eq(&a.profile, &b.profile));
        assert!(!Arc::ptr_eq(&a.profile, &c.profile));
        assert_eq!(common.profiles.len(), 2);
        assert!(a.account.is_none(), "no password, no autojoin: no box");
        assert_eq!((a.nick.as_str(), b.nick.as_str()), ("alice", "bobby"));
        assert_eq!(b.sasl_password(), Some("secret"));
        assert_eq!(a.sasl_password(), None);
    }

    #[tokio::test]
    async fn the_servers_own_settings_win_and_apply_to_new_connections() {
        let c = client(
            json!({"default_tls_port": 7001, "default_plain_port": 7000,
                   "servers": {"irc.test": {"verify_certificate": true,
                   "throttle": {"lines_per_second": 3.0, "burst": 4}}}}),
            &[(
                "IRC.test",
                values(&[
                    ("nick", "confnick"),
                    ("verify_certificate", "false"),
                    ("throttle_burst", "9"),
                ]),
            )],
        );
        let s = c.settings_for("irc.test", Some("joinnick"));
        assert_eq!(s.nick, "confnick");
        assert!(!s.profile.verify_certificate);
        assert_eq!(
            s.profile.throttle,
            Throttle {
                lines_per_second: 3.0,
                burst: 9
            }
        );
        assert_eq!(s.nickserv_password(), Some("field-pw"));
        assert_eq!(
            s.profile.endpoints,
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
        // Other servers: the login's fields, the config's defaults.
        let other = c.settings_for("irc.other", Some("joinnick"));
        assert_eq!(other.nick, "fieldnick");
        assert!(other.profile.verify_certificate);
        assert!(
            !Arc::ptr_eq(&s.profile, &other.profile),
            "each server has its own profile"
        );

        c.service_settings_changed(
            "irc.test",
            Some(values(&[("tls", "false"), ("nickserv_password", "new-pw")])),
        )
        .await;
        let s = c.settings_for("irc.test", None);
        assert_eq!(s.nick, "metanick", "back to the metadata's nick");
        assert_eq!(s.nickserv_password(), Some("new-pw"));
        assert_eq!(
            s.profile.endpoints,
            [Endpoint {
                port: 7000,
                tls: false
            }]
        );
        c.service_settings_changed("irc.test", None).await;
        assert_eq!(
            c.settings_for("irc.test", None).nickserv_password(),
            Some("field-pw")
        );
    }

    /// The per-user limits: servers, channels, queued lines and message size are refused
    /// with `resource-constraint` past their limit. The "server" is a listener that never
    /// answers, so that joins and lines stay pending.
    #[tokio::test]
    async fn a_user_gets_no_more_than_the_limits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = crate::config::IrcConfig::from_json(&json!({
            "default_port": port,
            "limits": {"servers_per_user": 1, "channels_per_user": 2, "queued_lines": 3,
                "message_bytes": 1000}
        }))
        .unwrap();
        let outbound = estuary_bridge_api::OutboundPolicy::new(&["127.0.0.1"]).unwrap();
        let common = Arc::new(Common::new(config, outbound));
        let alice = user_client(&common, "alice@example.org", FormValues::default());
        let join = |room: &str| JoinRequest {
            room: RemoteChatId::new(room),
            nick: "alice".into(),
            password: None,
        };
        let say = |chat: ChatKey, body: &str| Outgoing {
            chat,
            body: body.into(),
            attachments: Vec::new(),
            kind: MessageKind::Normal,
            origin_id: None,
            reply_to: None,
            gate: Default::default(),
        };
        let room = |r: &str| ChatKey::Room(RemoteChatId::new(r));
        let refused = |r: Result<_>| match r {
            Err(e) if e.kind == ErrorKind::ResourceConstraint => e.text,
            Err(e) => panic!("refused otherwise: {e}"),
            Ok(_) => panic!("not refused"),
        };

        alice.join_room(join("#a%127.0.0.1")).await.unwrap();
        alice.join_room(join("#b%127.0.0.1")).await.unwrap();
        let text = refused(alice.join_room(join("#c%127.0.0.1")).await.map(|_| ()));
        assert!(text.contains("at most 2 IRC channel(s)"), "{text}");

        let bob = ChatKey::Direct(RemoteUserId::new("bob%localhost"));
        let text = refused(alice.send_message(say(bob, "hi")).await.map(|_| ()));
        assert!(text.contains("at most 1 IRC server(s)"), "{text}");

        let long = "a".repeat(1001);
        let text = refused(
            alice
                .send_message(say(room("#a%127.0.0.1"), &long))
                .await
                .map(|_| ()),
        );
        assert!(text.contains("1001 bytes"), "{text}");

        let four = refused(
            alice
                .send_message(say(room("#a%127.0.0.1"), "1\n2\n3\n4"))
                .await
                .map(|_| ()),
        );
        assert!(four.contains("at most 3 may wait"), "{four}");
        alice
            .send_message(say(room("#a%127.0.0.1"), "1\n2"))
            .await
            .unwrap();
        let more = refused(
            alice
                .send_message(say(room("#a%127.0.0.1"), "3\n4"))
                .await
                .map(|_| ()),
        );
        assert!(more.contains("2 line(s) are still waiting"), "{more}");
        alice.disconnect().await;
    }

    #[test]
    fn a_raw_quit_ends_the_lines() {
        let (lines, quit) = raw_lines("/WHOIS bob\nQUIT :bye bye\nPRIVMSG bob :late");
        assert_eq!(lines, ["WHOIS bob"]);
        assert_eq!(quit, Some(Some("bye bye".to_owned())));
        let (lines, quit) = raw_lines("quit");
        assert!(lines.is_empty());
        assert_eq!(quit, Some(None));
        let (lines, quit) = raw_lines("QUITTER x\n  \nPRIVMSG bob :QUIT");
        assert_eq!(lines, ["QUITTER x", "PRIVMSG bob :QUIT"]);
        assert_eq!(quit, None);
    }

    #[test]
    fn a_mode_command_is_read_from_one_line_only() {
        assert_eq!(mode_command("/mode +k SECRET").unwrap(), Some("+k SECRET"));
        assert_eq!(mode_command("  /MODE  +o bob ").unwrap(), Some("+o bob"));
        assert_eq!(mode_command("/mode").unwrap(), Some(""));
        assert_eq!(mode_command("/modes are fun").unwrap(), None);
        assert_eq!(mode_command("set /mode +k x").unwrap(), None);
        assert_eq!(mode_command("/me waves").unwrap(), None);
        assert_eq!(mode_command("/mod").unwrap(), None);
        assert_eq!(mode_command("/modé").unwrap(), None);
        let e = mode_command("/mode +k SECRET\nhello").unwrap_err();
        assert!(e.text.contains("alone"), "{}", e.text);
    }

    #[test]
    fn version_replies_become_name_version_and_os() {
        let v = |t: &str| {
            let v = parse_version(t);
            (v.name, v.version, v.os)
        };
        let s = |x: &str| x.to_owned();
        assert_eq!(
            v("irssi v1.4.5 - running on Linux x86_64"),
            (s("irssi"), s("v1.4.5"), Some(s("running on Linux x86_64")))
        );
        assert_eq!(
            v("HexChat:2.16.1:Linux 6.1"),
            (s("HexChat"), s("2.16.1"), Some(s("Linux 6.1")))
        );
        assert_eq!(v("Estuary 0.1.0"), (s("Estuary"), s("0.1.0"), None));
        assert_eq!(
            v("WeeChat 4.0.0 (Jul 2023) on Debian"),
            (s("WeeChat"), s("4.0.0"), Some(s("(Jul 2023) on Debian")))
        );
        assert_eq!(v("Estuary"), (s("Estuary"), s(""), None));
        assert_eq!(v(""), (s(""), s(""), None));
        assert_eq!(
            v("my client: see https://x"),
            (s("my"), s("client:"), Some(s("see https://x")))
        );
    }
}
