//! A gateway: the core's service for one bridge on one component domain.
//!
//! Stanzas from the XMPP server arrive through the [`link`](crate::xmpp::link) and are
//! handled in order per user (one worker task per user); events from the bridge's clients
//! arrive on one queue and are turned into stanzas. Only the gateway touches the link, the
//! database and the message map; the bridge sees typed commands and events only.

mod adhoc;
mod compact;
mod iq;
mod login_dirs;
mod mam;
mod messages;
mod presence;
pub mod profiles;
mod register;
mod rejoin;
mod remote;
pub mod session;
mod settings;
mod stopping;
mod upload;
mod workers;

use crate::config::{BridgeSettings, Settings};
use crate::db::{Database, Ticket, Write};
use crate::metrics::Registry;
use crate::xmpp::disco::{self, DiscoInfo};
use crate::xmpp::escape::{escape_local, unescape_local};
use crate::xmpp::link::{self, LinkConfig, LinkError, LinkHandle};
use crate::xmpp::{errors, jid as jidutil, muc};
use estuary_bridge_api::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Connector, EventRouter, EventSink, FormValues,
    LoginId, Member, RemoteChatId, RemoteEvent, RoomPolicy, StoredLogin, User,
};
use session::{Session, lock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tracing::{Instrument, info, info_span, warn};
use workers::{EVENT_QUEUE, PRESENCE_QUEUE, PerUser, QUEUE, Workers};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bridge refused its configuration.
    #[error("bridge {bridge}: {message}")]
    Bridge {
        /// Which bridge.
        bridge: String,
        /// What it said.
        message: String,
    },
    /// The XMPP server refused the component.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// What a JID on the component domain names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The gateway domain itself.
    Domain,
    /// A contact, room (bare) or service.
    Chat(ChatKey),
    /// An occupant of a room: `room@gw/nick`.
    Occupant(RemoteChatId, String),
}

/// Counters for the admin `stats` command and `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    /// Stanzas received from the XMPP server.
    pub stanzas_in: AtomicU64,
    /// Stanzas queued for the XMPP server.
    pub stanzas_out: AtomicU64,
    /// Messages sent to the network.
    pub messages_out: AtomicU64,
    /// Events received from the network.
    pub events_in: AtomicU64,
    /// Stanzas answered with `resource-constraint` because their user had too many
    /// waiting (or, for a request that waits on the network, running).
    pub refused: AtomicU64,
    /// Network events dropped because their user had too many waiting (each logged).
    pub events_dropped: AtomicU64,
}

/// Stanzas read from the XMPP server and not yet handed to a worker. Small: a parsed
/// stanza waiting here costs kilobytes in many small allocations, and the XMPP server keeps
/// what the gateway is not ready for (the link stops reading). After a burst of joins,
/// every such short-lived object that sat among the users' long-lived state can leave an
/// allocator page part empty (docs/performance.md).
pub const INBOUND_CAPACITY: usize = 16;

/// Network events not yet handed to a worker. A network connection that finds this full
/// keeps its events itself for a while, then stops reading its socket: nothing is lost.
pub const EVENTS_CAPACITY: usize = 512;

/// How long a stop waits for the events already received to be handled.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a user is told after `dropped` of their network events were dropped.
fn dropped_events_notice(network: &str, dropped: u64) -> String {
    format!(
        "Estuary could not keep up with {network} for you: {dropped} event(s) from it were dropped \
         while {EVENT_QUEUE} were waiting (messages among them are lost; a room's member list \
         may be out of date until you join it again). Tell the gateway's admin if this repeats."
    )
}

/// Adds one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where the answer to an IQ the gateway sent goes: `Ok` for a result, the error's
/// condition for an error.
type IqWaiter = tokio::sync::oneshot::Sender<
    Result<Option<Element>, tokio_xmpp::parsers::stanza_error::DefinedCondition>,
>;

/// What [`Gateway::open_session`] does with a session the user already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    /// Disconnect it and put the new one in its place (a new registration).
    Replace,
    /// Keep it and open nothing (restoring logins, a first stanza).
    Keep,
}

/// The core's service for one bridge.
pub struct Gateway {
    /// The bridge's config name and database key (`irc`).
    pub bridge: String,
    /// The component domain.
    pub domain: String,
    domain_jid: BareJid,
    connector: Arc<dyn Connector>,
    info: BridgeInfo,
    caps: Capabilities,
    db: Database,
    link: LinkHandle,
    settings: BridgeSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    workers: Workers<Element>,
    event_workers: Workers<(LoginId, RemoteEvent)>,
    /// Each user's requests that wait on the network and run outside the user's worker.
    detached: Arc<PerUser>,
    events_tx: mpsc::Sender<(String, LoginId, RemoteEvent)>,
    disco: DiscoInfo,
    /// The XEP-0115 `ver` of [`Gateway::disco`], computed once (every presence carries it).
    caps_ver: String,
    stats: Stats,
    started: Instant,
    /// Answers awaited to IQs the gateway sent, by id: `None` for a result, the error
    /// condition for an error.
    iq_waiters: Mutex<HashMap<String, IqWaiter>>,
    /// The XMPP server's domain (disco#items on it finds the upload service).
    server_domain: String,
    /// What is known of the XEP-0363 upload service (found, or missing since when).
    upload_service: tokio::sync::Mutex<upload::UploadService>,
    /// Where files from the network go (`[media]`), and the gateway's own store of them.
    media: upload::MediaPlan,
    /// Network events dropped per user and not yet told to them ([`Gateway::dispatch_events`]).
    events_untold: Mutex<HashMap<String, u64>>,
    /// Set when the stop begins: stanzas from then on are kept or refused
    /// ([`stopping`]), never handed to a network connection about to close.
    stopping: std::sync::atomic::AtomicBool,
    /// Stanzas from the server whose handling has ended (with what the link handed over,
    /// how a stop knows every stanza received is handled).
    stanzas_handled: AtomicU64,
    /// Multi-step ad-hoc commands between two steps, by session id.
    command_sessions: Mutex<HashMap<String, adhoc::CommandSession>>,
    /// Names and avatars of contacts and rooms, per user ([`profiles`]).
    profiles: profiles::Profiles,
    /// Where the gateway may connect (avatars given as URLs are downloaded within it).
    outbound: estuary_bridge_api::OutboundPolicy,
    /// The parent of this bridge's per-login data directories
    /// (`<data_dir>/logins/<bridge>`, [`login_dirs`]).
    login_dirs: std::path::PathBuf,
}

/// Starts the gateway for bridge `name`: connects the component (a refusal is returned),
/// starts the bridge, and brings every stored login back.
pub async fn start(
    name: &str,
    settings: &Settings,
    connector: Arc<dyn Connector>,
    db: Database,
    registry: &Arc<Registry>,
    media: Arc<crate::media::MediaStore>,
) -> Result<Arc<Gateway>, StartError> {
    let bridge = settings
        .bridges
        .get(name)
        .cloned()
        .ok_or_else(|| StartError::Bridge {
            bridge: name.into(),
            message: "no such bridge in the configuration".into(),
        })?;
    let domain_jid = jidutil::domain_jid(&bridge.domain).map_err(|e| StartError::Bridge {
        bridge: name.into(),
        message: format!("domain {}: {e}", bridge.domain),
    })?;
    let (inbound_tx, inbound_rx) = mpsc::channel::<Element>(INBOUND_CAPACITY);
    let cfg = LinkConfig {
        address: settings.xmpp.address(),
        domain: bridge.domain.clone(),
        secret: bridge.secret.clone(),
        ping_to: settings
            .xmpp
            .server_domain
            .clone()
            .unwrap_or_else(|| jidutil::parent_domain(&bridge.domain)),
        ping_interval: settings.xmpp.ping_interval(),
        ping_timeout: settings.xmpp.ping_timeout(),
        reconnect_max: std::time::Duration::from_secs(settings.xmpp.reconnect_max_secs.max(1)),
        memory_limit: settings.xmpp.queue_memory_limit,
        bridge: name.to_string(),
    };
    let link = link::start(cfg, db.clone(), inbound_tx).await?;
    let (events_tx, events_rx) = mpsc::channel(EVENTS_CAPACITY);
    let info = connector.info();
    let caps = connector.capabilities();
    let disco = disco::gateway(&info, &caps);
    let server_domain = settings
        .xmpp
        .server_domain
        .clone()
        .unwrap_or_else(|| jidutil::parent_domain(&bridge.domain));
    let outbound = settings.outbound.policy().map_err(|e| StartError::Bridge {
        bridge: name.into(),
        message: format!("[outbound] allow: {e}"),
    })?;
    let gateway = Arc::new(Gateway {
        login_dirs: login_dirs::root(&settings.database.data_dir, name),
        bridge: name.to_string(),
        domain: bridge.domain.clone(),
        domain_jid,
        caps_ver: disco.caps_ver(),
        disco,
        connector,
        info,
        caps,
        db,
        link,
        settings: bridge,
        sessions: Mutex::new(HashMap::new()),
        workers: Workers::new(),
        event_workers: Workers::new(),
        detached: PerUser::new(workers::DETACHED),
        events_tx: events_tx.clone(),
        stats: Stats::default(),
        started: Instant::now(),
        iq_waiters: Mutex::new(HashMap::new()),
        server_domain,
        upload_service: tokio::sync::Mutex::new(upload::UploadService::configured(
            settings.media.upload_service.as_deref(),
        )),
        media: upload::MediaPlan::new(&settings.media, media),
        events_untold: Mutex::new(HashMap::new()),
        command_sessions: Mutex::new(HashMap::new()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        stanzas_handled: AtomicU64::new(0),
        profiles: profiles::Profiles::default(),
        outbound,
    });
    gateway.load_profiles().await;
    tokio::spawn(Arc::clone(&gateway).dispatch_events(events_rx));
    registry.add(&gateway);
    // Logins first: a bridge that serves requests (webhooks) knows every stored hook by the
    // time it listens.
    gateway.restore_logins().await;
    gateway
        .connector
        .start(EventRouter::new(events_tx))
        .await
        .map_err(|e| StartError::Bridge {
            bridge: name.into(),
            message: e.text,
        })?;
    // Stanzas are handled only now, once the stored logins are back and the bridge runs:
    // a join that arrived right after the handshake waits in the inbound queue instead of
    // opening a session that the restore would then replace (and disconnect).
    tokio::spawn(Arc::clone(&gateway).dispatch_inbound(inbound_rx));
    tokio::spawn(Arc::clone(&gateway).replay_pending_sends());
    info!(bridge = %name, domain = %gateway.domain, "gateway started");
    Ok(gateway)
}

impl Gateway {
    /// Brings every stored login back (after a restart).
    async fn restore_logins(self: &Arc<Self>) {
        let logins = match self.db.list_logins(&self.bridge).await {
            Ok(l) => l,
            Err(e) => {
                warn!(bridge = %self.bridge, "cannot list stored logins: {e}");
                return;
            }
        };
        for login in logins {
            match self
                .open_session(
                    &login.user,
                    login.login_id.clone().into(),
                    login.fields,
                    login.metadata,
                    login.services,
                    Existing::Keep,
                )
                .await
            {
                Ok(session) => self.rejoin_stored_rooms(&session).await,
                Err(e) => {
                    warn!(bridge = %self.bridge, user = %login.user, "cannot restore the login: {}", e.text)
                }
            }
        }
    }

    /// Creates a user's session from login data and connects it. A session the user
    /// already has is replaced (and disconnected) or kept, as `existing` says.
    async fn open_session(
        self: &Arc<Self>,
        user: &str,
        login: LoginId,
        fields: FormValues,
        metadata: serde_json::Value,
        services: BTreeMap<String, FormValues>,
        existing: Existing,
    ) -> Result<Arc<Session>, BridgeError> {
        if existing == Existing::Keep
            && let Some(live) = self.session(user)
        {
            return Ok(live);
        }
        let store = self.login_store(user).await?;
        let stored = StoredLogin {
            id: login.clone(),
            user: User {
                jid: user.to_string(),
            },
            fields,
            metadata,
            services,
            store,
        };
        let sink = EventSink::new(user, login.clone(), self.events_tx.clone());
        let client = self.connector.load_login(&stored, sink).await?;
        let session = Arc::new(Session::new(user.to_string(), login, client));
        for (key, values) in stored.services {
            session.set_settings(&key, Some(values));
        }
        let old = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(user) {
                // Made while the login loaded: the live session stays, the new client
                // (never connected) is dropped.
                Some(live) if existing == Existing::Keep => return Ok(Arc::clone(live)),
                _ => sessions.insert(user.to_string(), Arc::clone(&session)),
            }
        };
        if let Some(old) = old {
            old.client.disconnect().await;
        }
        let s = Arc::clone(&session);
        let span = info_span!("connect", bridge = %self.bridge, user = %user, login = %s.login);
        tokio::spawn(async move { s.client.connect().await }.instrument(span));
        Ok(session)
    }

    /// How `room` behaves for the session's user, from their stored settings.
    pub(super) fn room_policy(&self, session: &Session, room: &RemoteChatId) -> RoomPolicy {
        session.with_settings(|settings| self.connector.room_policy(room, settings))
    }

    /// The user's session, if any.
    pub fn session(&self, user: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(user).cloned()
    }

    /// The user's session, created on first use where the bridge needs no registration.
    async fn session_or_open(self: &Arc<Self>, user: &str) -> Result<Arc<Session>, StanzaError> {
        // Every way in (a message, a join, disco#items on a server JID, a command) ends
        // here: a user the gateway does not serve opens nothing, not even a connection.
        if !crate::xmpp::jid::bare_jid(user).is_ok_and(|jid| self.allowed(&jid)) {
            return Err(self.not_allowed_error());
        }
        if let Some(s) = self.session(user) {
            return Ok(s);
        }
        if self.caps.requires_registration {
            return Err(errors::registration_required(format!(
                "You have no login on {}: register first (in Gajim: Accounts → Discover Services → {} → Register; in Conversations: the gateway's contact details → Register)",
                self.info.name, self.domain
            )));
        }
        // A login stored earlier (its client was stopped) comes back as it was.
        match self.db.get_login(&self.bridge, user).await {
            Ok(Some(l)) => {
                return self
                    .open_session(
                        user,
                        l.login_id.into(),
                        l.fields,
                        l.metadata,
                        l.services,
                        Existing::Keep,
                    )
                    .await
                    .map_err(|e| errors::from_bridge(&e));
            }
            Ok(None) => {}
            Err(e) => warn!(bridge = %self.bridge, user, "cannot read the stored login: {e}"),
        }
        let login = LoginId::new(user);
        let empty = FormValues::default();
        let meta = serde_json::Value::Object(Default::default());
        if let Err(e) = self
            .db
            .save_automatic_login(&self.bridge, user, login.as_str())
            .await
        {
            warn!(bridge = %self.bridge, user, "cannot store the automatic login: {e}");
        }
        self.open_session(user, login, empty, meta, BTreeMap::new(), Existing::Keep)
            .await
            .map_err(|e| errors::from_bridge(&e))
    }

    /// Whether this user may use the gateway (`allowed_domains`).
    fn allowed(&self, user: &BareJid) -> bool {
        self.settings.allowed_domains.is_empty()
            || self
                .settings
                .allowed_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(user.domain().as_str()))
    }

    fn not_allowed_error(&self) -> StanzaError {
        errors::forbidden(format!(
            "{} serves only users of {}",
            self.domain,
            self.settings.allowed_domains.join(", ")
        ))
    }

    /// Whether this user is a configured admin.
    fn is_admin(&self, user: &BareJid) -> bool {
        self.settings
            .admins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(user.as_str()))
    }

    /// Queues a stanza for the XMPP server.
    async fn send(&self, stanza: impl Into<Element>) {
        bump(&self.stats.stanzas_out);
        self.link.send(stanza).await;
    }

    /// Queues a stanza that shows a message whose rows (archive, message map) were queued
    /// with `after`: the link writes it once they are committed, so that a crash never
    /// loses the rows of a message someone was shown (see `xmpp::commit_gate`).
    async fn send_after(&self, stanza: impl Into<Element>, after: Ticket) {
        bump(&self.stats.stanzas_out);
        self.link.send_after(stanza, after).await;
    }

    /// What a JID on our domain names.
    fn target(&self, to: &Jid) -> Result<Target, BridgeError> {
        let Some(node) = to.node() else {
            return Ok(Target::Domain);
        };
        let local = unescape_local(node.as_str());
        let key = self.connector.parse_local_part(&local)?;
        match (key, to.resource()) {
            (ChatKey::Room(room), Some(nick)) => {
                Ok(Target::Occupant(room, nick.as_str().to_string()))
            }
            (key, _) => Ok(Target::Chat(key)),
        }
    }

    /// The JID of a chat on our domain.
    fn chat_jid(&self, chat: &ChatKey) -> Option<BareJid> {
        let local = match chat {
            ChatKey::Direct(u) => self.connector.contact_local_part(u),
            ChatKey::Room(r) => self.connector.room_local_part(r),
            // With a fixed server, the domain itself speaks for it.
            ChatKey::Service(s)
                if self
                    .caps
                    .domain_service
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(s)) =>
            {
                return Some(self.domain_jid.clone());
            }
            ChatKey::Service(s) => s.clone(),
        };
        match BareJid::new(&format!("{}@{}", escape_local(&local), self.domain)) {
            Ok(j) => Some(j),
            Err(e) => {
                warn!(bridge = %self.bridge, "no JID for {chat:?}: {e}");
                None
            }
        }
    }

    /// `room@gw/nick`.
    fn occupant_jid(&self, room: &RemoteChatId, nick: &str) -> Option<Jid> {
        let bare = self.chat_jid(&ChatKey::Room(room.clone()))?;
        Jid::new(&format!("{bare}/{nick}")).ok()
    }

    /// A room member's real JID, as a non-anonymous room shows it: the member's contact
    /// JID, with where they connect from as the resource when the network says
    /// (`nick%server@gw/~user@host`, as Biboumi shows IRC users).
    fn member_jid(&self, m: &Member) -> Option<String> {
        let bare = self.chat_jid(&ChatKey::Direct(m.user.clone()?))?;
        if let Some(address) = &m.address
            && let Ok(full) = Jid::new(&format!("{bare}/{address}"))
        {
            return Some(full.to_string());
        }
        Some(bare.to_string())
    }

    /// The gateway's own JID.
    fn jid(&self) -> Jid {
        Jid::from(self.domain_jid.clone())
    }

    /// The gateway's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The number of live clients.
    pub fn client_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Reads stanzas from the link and hands each to its user's worker; a stanza whose
    /// user has too many waiting is answered at once ([`Gateway::refuse`]).
    async fn dispatch_inbound(self: Arc<Self>, mut rx: mpsc::Receiver<Element>) {
        while let Some(el) = rx.recv().await {
            bump(&self.stats.stanzas_in);
            let from = el
                .attr("from")
                .and_then(|f| Jid::new(f).ok())
                .map(|j| j.to_bare().to_string())
                .unwrap_or_default();
            let limit = if el.name() == "presence" {
                PRESENCE_QUEUE
            } else {
                QUEUE
            };
            let gateway = Arc::clone(&self);
            let handed = self
                .workers
                .hand(&from, el, limit, || {
                    let (g, user) = (Arc::clone(&gateway), from.clone());
                    tokio::spawn(async move {
                        let g2 = Arc::clone(&g);
                        g.workers
                            .run(&user, |el: Element| {
                                let span = info_span!("stanza", bridge = %g2.bridge, user = %user, kind = %el.name(), id = el.attr("id").unwrap_or(""));
                                let g3 = Arc::clone(&g2);
                                async move { g3.handle_stanza(el).instrument(span).await }
                            })
                            .await
                    });
                })
                .await;
            if let Err(el) = handed {
                self.refuse(&from, el).await;
            }
        }
    }

    /// Answers a stanza that its user's worker had no room for with `resource-constraint`
    /// (type `wait`); errors and results are not answered. An answer to an IQ the gateway
    /// sent is taken at once instead: it waits on nothing, and its asker waits for it.
    async fn refuse(self: &Arc<Self>, user: &str, el: Element) {
        if el.name() == "iq" && matches!(el.attr("type"), Some("result" | "error")) {
            self.handle_iq(el).await;
            return;
        }
        bump(&self.stats.refused);
        let kind = el.name().to_owned();
        let id = el.attr("id").unwrap_or("").to_owned();
        match refusal(&el, &self.jid(), busy_error()) {
            Some(answer) => {
                warn!(bridge = %self.bridge, user, kind, id, "refused a stanza: its user has too many waiting");
                self.send(answer).await;
            }
            None => {
                warn!(bridge = %self.bridge, user, kind, id, "dropped a stanza that cannot be answered (an error, or no sender): its user has too many waiting");
            }
        }
    }

    async fn handle_stanza(self: &Arc<Self>, el: Element) {
        /// Counts the stanza as handled however its handling ends (a panic included).
        struct Handled<'a>(&'a AtomicU64);
        impl Drop for Handled<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _handled = Handled(&self.stanzas_handled);
        if self.stopping.load(Ordering::SeqCst) {
            return self.handle_during_stop(el).await;
        }
        // Enough of the stanza to answer it if its handler panics (a bug): the sender is
        // told instead of waiting for an answer that never comes.
        let answerable = match (el.name(), el.attr("type").unwrap_or("")) {
            ("iq", "get" | "set") => true,
            ("message", t) => t != "error",
            _ => false,
        };
        let header = answerable.then(|| {
            (
                el.name() == "iq",
                el.attr("from").and_then(|f| Jid::new(f).ok()),
                el.attr("to").and_then(|t| Jid::new(t).ok()),
                el.attr("id").map(str::to_owned),
            )
        });
        let handled = std::panic::AssertUnwindSafe(async {
            match el.name() {
                "iq" => self.handle_iq(el).await,
                "message" => self.handle_message(el).await,
                "presence" => self.handle_presence(el).await,
                other => warn!(bridge = %self.bridge, "ignoring a <{other}/> from the server"),
            }
        });
        if futures::FutureExt::catch_unwind(handled).await.is_err() {
            tracing::error!(bridge = %self.bridge, "a stanza's handler panicked (a bug: please report it with this log)");
            if let Some((is_iq, Some(from), Some(to), id)) = header {
                let error = errors::internal(
                    "The gateway failed on this request (a bug, logged for its admin); try again or tell them.",
                );
                if is_iq {
                    self.send(tokio_xmpp::parsers::iq::Iq::Error {
                        from: Some(to),
                        to: Some(from),
                        id: id.unwrap_or_default(),
                        payload: None,
                        error,
                    })
                    .await;
                } else {
                    self.bounce(to, from, id, error).await;
                }
            }
        }
    }

    /// Reads bridge events and hands each to its user's worker, which turns it into stanzas.
    async fn dispatch_events(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, LoginId, RemoteEvent)>,
    ) {
        while let Some((user, login, event)) = rx.recv().await {
            bump(&self.stats.events_in);
            let handed = self.hand_event(&user, login.clone(), event).await;
            // Events cannot be refused: one beyond the user's large bound is counted and
            // logged, so that a stuck user never holds the others' events up; the user is
            // told how many were lost as soon as their queue takes one again.
            if let Err((login, event)) = handed {
                bump(&self.stats.events_dropped);
                warn!(
                    bridge = %self.bridge,
                    user,
                    login = %login,
                    event = event_kind(&event),
                    "dropped a network event: its user has {EVENT_QUEUE} waiting"
                );
                let first = {
                    let mut untold = lock(&self.events_untold);
                    let count = untold.entry(user.clone()).or_default();
                    *count += 1;
                    *count == 1
                };
                if first {
                    tokio::spawn(Arc::clone(&self).tell_dropped(user, login));
                }
            }
        }
    }

    /// Tells `user` how many of their network events were dropped, as soon as their queue
    /// takes one again (the notice goes in order, after what was kept).
    async fn tell_dropped(self: Arc<Self>, user: String, login: LoginId) {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let Some(dropped) = lock(&self.events_untold).remove(&user) else {
                return;
            };
            let notice = RemoteEvent::ServiceMessage {
                service: None,
                body: dropped_events_notice(&self.info.name, dropped),
            };
            if self.hand_event(&user, login.clone(), notice).await.is_ok() {
                info!(bridge = %self.bridge, user, dropped, "told the user of dropped network events");
                return;
            }
            // Still full: count these with any dropped meanwhile, and try again.
            *lock(&self.events_untold).entry(user.clone()).or_default() += dropped;
        }
    }

    /// Hands one network event to its user's worker (started if idle); `Err` gives it back
    /// when the user has [`EVENT_QUEUE`] waiting.
    async fn hand_event(
        self: &Arc<Self>,
        user: &str,
        login: LoginId,
        event: RemoteEvent,
    ) -> Result<(), (LoginId, RemoteEvent)> {
        let gateway = Arc::clone(self);
        self.event_workers
            .hand(user, (login, event), EVENT_QUEUE, || {
                let (g, user) = (Arc::clone(&gateway), user.to_owned());
                tokio::spawn(async move {
                    let g2 = Arc::clone(&g);
                    g.event_workers
                        .run(&user, |(login, event): (LoginId, RemoteEvent)| {
                            let span = info_span!("remote_event", bridge = %g2.bridge, user = %user, login = %login);
                            let (g3, user) = (Arc::clone(&g2), user.clone());
                            async move { g3.handle_remote(&user, &login, event).instrument(span).await }
                        })
                        .await
                });
            })
            .await
    }

    /// Stops the bridge's clients and the link; queued stanzas are kept in the database.
    ///
    /// In this order: stop taking stanzas (those arriving now are kept for the next start or
    /// refused, see [`stopping`]) and let the ones being handled finish; tell the clients
    /// they are out of their rooms; close the network connections; hand what they said last
    /// to XMPP; close the component stream, reading what the server sent until it closes
    /// its side; write what the link could not deliver to the database.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.drain_stanzas().await;
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for s in &sessions {
            self.leave_rooms_for_shutdown(s).await;
        }
        for s in sessions {
            s.client.disconnect().await;
        }
        self.connector.stop().await;
        self.drain().await;
        // The networks wrote every line they had before closing (what they refused was
        // reported): messages still waiting for an echo went out, so they are not sent
        // again at the next start.
        let sent: Vec<String> = lock(&self.sessions)
            .values()
            .flat_map(|s| s.drain_accepted())
            .collect();
        for id in sent {
            if let Err(e) = self.db.write_later(Write::SendDone { id }).await {
                warn!(bridge = %self.bridge, "cannot clear a finished send at the stop (it may be sent again at the next start): {e}");
            }
        }
        self.link.shutdown().await;
        // What the server sent before it closed the stream, now handled (kept or refused;
        // refusals go to the database with what the link could not deliver).
        self.drain_stanzas().await;
    }

    /// Tells each of the user's resources in a room that it is out of it because the
    /// gateway stops (unavailable self-presence, status 110 and 332), so that no client
    /// believes itself still in a room whose messages no longer come; clients join again
    /// once the gateway is back (XEP-0410 self-ping, or the user's own rejoin).
    async fn leave_rooms_for_shutdown(&self, session: &Session) {
        let joined: Vec<(RemoteChatId, String, Vec<String>)> = session
            .rooms()
            .iter()
            .map(|(id, room)| {
                (
                    id.clone(),
                    room.nick.clone(),
                    room.resources.iter().cloned().collect(),
                )
            })
            .collect();
        let codes = [muc::SELF_PRESENCE, muc::SYSTEM_SHUTDOWN];
        for (room, nick, resources) in joined {
            let Some(from) = self.occupant_jid(&room, &nick) else {
                continue;
            };
            for resource in resources {
                let Ok(to) = Jid::new(&resource) else {
                    continue;
                };
                self.send(muc::occupant_presence(&muc::Occupant {
                    from: Some(from.clone()),
                    to: Some(to),
                    codes: &codes,
                    unavailable: true,
                    reason: Some("The gateway is restarting; join the room again in a moment."),
                    ..Default::default()
                }))
                .await;
            }
        }
    }

    /// Waits (up to [`DRAIN_LIMIT`]) until every stanza the link had handed over when this
    /// was called is handled. Not a moving target: under steady traffic stanzas keep
    /// coming during a stop (each handled at once by [`stopping`]), and waiting for none
    /// to be left held a stop for the whole limit.
    async fn drain_stanzas(&self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let target = self.link.delivered();
        while Instant::now() < deadline {
            // Handed over by the link, taken by the dispatcher, handled: all counted.
            // A stanza refused at the door (its user had too many waiting) is done too.
            let received = self.stats.stanzas_in.load(Ordering::SeqCst);
            let handled = self.stanzas_handled.load(Ordering::SeqCst)
                + self.stats.refused.load(Ordering::SeqCst);
            if handled >= target && received >= target {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        warn!(bridge = %self.bridge, "stopping with stanzas from XMPP still being handled");
    }

    /// Waits (up to [`DRAIN_LIMIT`]) until the events and stanzas already received are
    /// handled, so that what they produce reaches the link's queue before it is written
    /// down.
    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while Instant::now() < deadline {
            let queued = self.events_tx.max_capacity() - self.events_tx.capacity();
            // Stanzas from XMPP are drained before (`drain_stanzas`); those still coming
            // during a stop are handled at once and would keep this waiting for nothing.
            if queued == 0 && self.event_workers.is_idle() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        warn!(bridge = %self.bridge, "stopping with events still being handled");
    }

    /// The bridge's HTTP routes, fed into this gateway's event queue, for the core's HTTP
    /// server ([`crate::http`]); `None` when the bridge serves none.
    pub fn http_routes(&self) -> Option<axum::Router> {
        self.connector
            .http_routes(EventRouter::new(self.events_tx.clone()))
    }

    /// Puts the bridge's own metrics in `registry`, for `/metrics`
    /// ([`Connector::register_metrics`]).
    pub fn register_bridge_metrics(
        &self,
        registry: &mut estuary_bridge_api::prometheus_client::registry::Registry,
    ) {
        self.connector.register_metrics(registry);
    }

    /// The link's state, for tests and health checks.
    pub fn link_state(&self) -> crate::xmpp::link::LinkState {
        self.link.state()
    }

    /// How many times the component link has come up since the start (1: it never dropped).
    pub fn link_connections(&self) -> u64 {
        self.link.connections()
    }

    /// Stanzas dropped because they could not be written as XML (see
    /// [`crate::xmpp::xml_safe`]); anything but 0 is a bug worth reporting.
    pub fn unwritable_stanzas(&self) -> u64 {
        self.link.unwritable()
    }

    /// Stanzas waiting for the XMPP server (in memory, in the database, or unconfirmed).
    pub fn queued(&self) -> u64 {
        self.link.queued()
    }
}

/// The error for a stanza whose user has too many waiting (or running).
fn busy_error() -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::ResourceConstraint,
        "en",
        "You have too many requests in progress; wait for their answers and try again.",
    )
}

/// The error answer to `stanza` (from its `to`, or `gateway` when it has none, back to its
/// sender, with its id), or `None` when it must not be answered: an error or a result, or a
/// stanza without a valid sender (or, for an IQ, without an id).
fn refusal(stanza: &Element, gateway: &Jid, error: StanzaError) -> Option<Element> {
    let sender = Jid::new(stanza.attr("from")?).ok()?;
    let me = stanza
        .attr("to")
        .and_then(|t| Jid::new(t).ok())
        .unwrap_or_else(|| gateway.clone());
    let id = stanza.attr("id").map(str::to_owned);
    let type_ = stanza.attr("type");
    match stanza.name() {
        "iq" if matches!(type_, Some("get" | "set")) => Some(
            Iq::Error {
                from: Some(me),
                to: Some(sender),
                id: id?,
                payload: None,
                error,
            }
            .into(),
        ),
        "message" if type_ != Some("error") => {
            let mut m = Message::new_with_type(MessageType::Error, Some(sender));
            m.from = Some(me);
            m.id = id.map(Id);
            m.payloads.push(error.into());
            Some(m.into())
        }
        "presence" if type_ != Some("error") => {
            let mut p = Presence::new(PresenceType::Error)
                .with_from(me)
                .with_to(sender);
            p.id = id;
            p.payloads.push(error.into());
            Some(p.into())
        }
        _ => None,
    }
}

/// The name of an event's kind, for log lines (never its content).
fn event_kind(event: &RemoteEvent) -> &'static str {
    match event {
        RemoteEvent::Message(_) => "message",
        RemoteEvent::Edit { .. } => "edit",
        RemoteEvent::Reaction { .. } => "reaction",
        RemoteEvent::Retraction { .. } => "retraction",
        RemoteEvent::ChatState { .. } => "chat state",
        RemoteEvent::ReadUpTo { .. } => "read marker",
        RemoteEvent::Delivered { .. } => "delivery receipt",
        RemoteEvent::NotSent { .. } => "message not sent",
        RemoteEvent::Presence { .. } => "presence",
        RemoteEvent::ContactAdded { .. } => "contact added",
        RemoteEvent::UserInfoChanged { .. } => "user info",
        RemoteEvent::RoomInfoChanged { .. } => "room info",
        RemoteEvent::RoomJoined { .. } => "room joined",
        RemoteEvent::RoomJoinFailed { .. } => "room join failed",
        RemoteEvent::MemberChanged { .. } => "member changed",
        RemoteEvent::SubjectChanged { .. } => "subject",
        RemoteEvent::RoomNotice { .. } => "room notice",
        RemoteEvent::RoomLeft { .. } => "room left",
        RemoteEvent::Invited { .. } => "invitation",
        RemoteEvent::ServiceMessage { .. } => "service message",
        RemoteEvent::ServiceState { .. } => "service state",
        RemoteEvent::LoginState(_) => "login state",
        RemoteEvent::SaveMetadata(_) => "metadata",
        RemoteEvent::PostToXmppRoom { .. } => "post to an XMPP room",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("valid XML")
    }

    fn gateway() -> Jid {
        Jid::new("irc.example").expect("a JID")
    }

    fn refused(xml: &str) -> Option<String> {
        refusal(&parse(xml), &gateway(), busy_error()).map(|e| String::from(&e))
    }

    /// The answer's name, type, from, to and id, and its error's condition and type.
    fn shape(xml: &str) -> (String, String, String, String, String, String, String) {
        let answer = parse(xml);
        let attr = |e: &Element, n: &str| e.attr(n).unwrap_or("").to_owned();
        let error = answer
            .get_child("error", "jabber:component:accept")
            .or_else(|| answer.get_child("error", "jabber:client"))
            .expect("an <error/>");
        let condition = error
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_default();
        (
            answer.name().to_owned(),
            attr(&answer, "type"),
            attr(&answer, "from"),
            attr(&answer, "to"),
            attr(&answer, "id"),
            condition,
            attr(error, "type"),
        )
    }

    #[test]
    fn requests_and_messages_are_refused_with_resource_constraint_wait() {
        let iq = refused("<iq xmlns='jabber:component:accept' type='get' id='q1' from='a@x/r' to='s@irc.example'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
            .expect("a get is answered");
        assert_eq!(
            shape(&iq),
            (
                "iq".into(),
                "error".into(),
                "s@irc.example".into(),
                "a@x/r".into(),
                "q1".into(),
                "resource-constraint".into(),
                "wait".into()
            )
        );
        assert!(iq.contains("too many requests in progress"), "{iq}");
        let message = refused("<message xmlns='jabber:component:accept' type='groupchat' id='m1' from='a@x/r' to='#c%s@irc.example'><body>hi</body></message>")
            .expect("a message is answered");
        let (name, type_, from, to, id, condition, error_type) = shape(&message);
        assert_eq!(
            (name.as_str(), type_.as_str(), id.as_str()),
            ("message", "error", "m1")
        );
        assert_eq!((from.as_str(), to.as_str()), ("#c%s@irc.example", "a@x/r"));
        assert_eq!(
            (condition.as_str(), error_type.as_str()),
            ("resource-constraint", "wait")
        );
        assert!(
            !message.contains("<body"),
            "the body is not sent back: {message}"
        );
    }

    #[test]
    fn presences_of_every_kind_are_answered_with_an_error_presence() {
        for kind in ["", " type='unavailable'", " type='subscribe'"] {
            let xml = format!(
                "<presence xmlns='jabber:component:accept'{kind} id='p1' from='a@x/r' to='#c%s@irc.example/nick'/>"
            );
            let answer = refused(&xml).expect("a presence is answered");
            let (name, type_, from, _, id, condition, _) = shape(&answer);
            assert_eq!(
                (
                    name.as_str(),
                    type_.as_str(),
                    id.as_str(),
                    condition.as_str()
                ),
                ("presence", "error", "p1", "resource-constraint"),
                "{kind}"
            );
            assert_eq!(from, "#c%s@irc.example/nick");
        }
    }

    #[test]
    fn errors_results_and_stanzas_without_a_sender_are_not_answered() {
        for xml in [
            "<iq xmlns='jabber:component:accept' type='result' id='q1' from='a@x/r' to='irc.example'/>",
            "<iq xmlns='jabber:component:accept' type='error' id='q1' from='a@x/r' to='irc.example'/>",
            "<iq xmlns='jabber:component:accept' type='get' from='a@x/r' to='irc.example'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<message xmlns='jabber:component:accept' type='error' id='m1' from='a@x/r' to='irc.example'/>",
            "<presence xmlns='jabber:component:accept' type='error' from='a@x/r' to='irc.example'/>",
            "<message xmlns='jabber:component:accept' id='m2' to='irc.example'><body>hi</body></message>",
            "<message xmlns='jabber:component:accept' id='m3' from='not a jid@@' to='irc.example'/>",
        ] {
            assert_eq!(refused(xml), None, "{xml}");
        }
    }

    #[test]
    fn a_stanza_without_a_recipient_is_answered_from_the_gateway() {
        let answer = refused("<message xmlns='jabber:component:accept' id='m1' from='a@x/r'><body>hi</body></message>")
            .expect("answered");
        assert_eq!(shape(&answer).2, "irc.example");
    }
}
