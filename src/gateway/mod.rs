//! A gateway: the core's service for one bridge on one component domain.
//!
//! Stanzas from the XMPP server arrive through the [`link`](crate::xmpp::link) and are
//! handled in order per user (one worker task per user); events from the bridge's clients
//! arrive on one queue and are turned into stanzas. Only the gateway touches the link, the
//! database and the message map; the bridge sees typed commands and events only.

mod adhoc;
mod compact;
mod iq;
mod mam;
mod messages;
mod presence;
mod register;
mod remote;
mod service;
pub mod session;
mod workers;

use crate::config::{BridgeSettings, Settings};
use crate::db::Database;
use crate::metrics::Registry;
use crate::xmpp::disco::{self, DiscoInfo};
use crate::xmpp::escape::{escape_local, unescape_local};
use crate::xmpp::link::{self, LinkConfig, LinkError, LinkHandle};
use crate::xmpp::{errors, jid as jidutil};
use estuary_bridge_api::{
    BridgeError, BridgeInfo, Capabilities, ChatKey, Connector, EventRouter, EventSink, FormValues,
    LoginId, RemoteChatId, RemoteEvent, StoredLogin, User,
};
use session::{Session, lock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::StanzaError;
use tracing::{Instrument, info, info_span, warn};
use workers::Workers;

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

/// Adds one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where the answer to an IQ the gateway sent goes: `Ok` for a result, the error's
/// condition for an error.
type IqWaiter =
    tokio::sync::oneshot::Sender<Result<(), tokio_xmpp::parsers::stanza_error::DefinedCondition>>;

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
    events_tx: mpsc::Sender<(String, LoginId, RemoteEvent)>,
    disco: DiscoInfo,
    /// The XEP-0115 `ver` of [`Gateway::disco`], computed once (every presence carries it).
    caps_ver: String,
    stats: Stats,
    started: Instant,
    /// Answers awaited to IQs the gateway sent, by id: `None` for a result, the error
    /// condition for an error.
    iq_waiters: Mutex<HashMap<String, IqWaiter>>,
}

/// Starts the gateway for bridge `name`: connects the component (a refusal is returned),
/// starts the bridge, and brings every stored login back.
pub async fn start(
    name: &str,
    settings: &Settings,
    connector: Arc<dyn Connector>,
    db: Database,
    registry: &Arc<Registry>,
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
    let gateway = Arc::new(Gateway {
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
        events_tx: events_tx.clone(),
        stats: Stats::default(),
        started: Instant::now(),
        iq_waiters: Mutex::new(HashMap::new()),
    });
    tokio::spawn(Arc::clone(&gateway).dispatch_inbound(inbound_rx));
    tokio::spawn(Arc::clone(&gateway).dispatch_events(events_rx));
    registry.add(&gateway);
    // Logins first: a bridge that serves requests (webhooks) knows every stored hook by the
    // time it listens.
    gateway.restore_logins().await;
    let status: Arc<dyn estuary_bridge_api::StatusSource> = registry.clone();
    gateway
        .connector
        .start(EventRouter::new(events_tx).with_status(status))
        .await
        .map_err(|e| StartError::Bridge {
            bridge: name.into(),
            message: e.text,
        })?;
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
            if let Err(e) = self
                .open_session(
                    &login.user,
                    login.login_id.clone().into(),
                    login.fields,
                    login.metadata,
                    login.services,
                )
                .await
            {
                warn!(bridge = %self.bridge, user = %login.user, "cannot restore the login: {}", e.text);
            }
        }
    }

    /// Creates (or replaces) a user's session from login data and connects it.
    async fn open_session(
        self: &Arc<Self>,
        user: &str,
        login: LoginId,
        fields: FormValues,
        metadata: serde_json::Value,
        services: BTreeMap<String, FormValues>,
    ) -> Result<Arc<Session>, BridgeError> {
        let stored = StoredLogin {
            id: login.clone(),
            user: User {
                jid: user.to_string(),
            },
            fields,
            metadata,
            services,
        };
        let sink = EventSink::new(user, login.clone(), self.events_tx.clone());
        let client = self.connector.load_login(&stored, sink).await?;
        let session = Arc::new(Session::new(user.to_string(), login, client));
        let old = lock(&self.sessions).insert(user.to_string(), Arc::clone(&session));
        if let Some(old) = old {
            old.client.disconnect().await;
        }
        let s = Arc::clone(&session);
        let span = info_span!("connect", bridge = %self.bridge, user = %user, login = %s.login);
        tokio::spawn(async move { s.client.connect().await }.instrument(span));
        Ok(session)
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
                    .open_session(user, l.login_id.into(), l.fields, l.metadata, l.services)
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
        self.open_session(user, login, empty, meta, BTreeMap::new())
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

    /// Reads stanzas from the link and hands each to its user's worker.
    async fn dispatch_inbound(self: Arc<Self>, mut rx: mpsc::Receiver<Element>) {
        while let Some(el) = rx.recv().await {
            bump(&self.stats.stanzas_in);
            let from = el
                .attr("from")
                .and_then(|f| Jid::new(f).ok())
                .map(|j| j.to_bare().to_string())
                .unwrap_or_default();
            let gateway = Arc::clone(&self);
            self.workers
                .hand(&from, el, || {
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
        }
    }

    async fn handle_stanza(self: &Arc<Self>, el: Element) {
        match el.name() {
            "iq" => self.handle_iq(el).await,
            "message" => self.handle_message(el).await,
            "presence" => self.handle_presence(el).await,
            other => warn!(bridge = %self.bridge, "ignoring a <{other}/> from the server"),
        }
    }

    /// Reads bridge events and hands each to its user's worker, which turns it into stanzas.
    async fn dispatch_events(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, LoginId, RemoteEvent)>,
    ) {
        while let Some((user, login, event)) = rx.recv().await {
            bump(&self.stats.events_in);
            let gateway = Arc::clone(&self);
            self.event_workers
                .hand(&user, (login, event), || {
                    let (g, user) = (Arc::clone(&gateway), user.clone());
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
                .await;
        }
    }

    /// Stops the bridge's clients and the link; queued stanzas are kept in the database.
    pub async fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for s in sessions {
            s.client.disconnect().await;
        }
        self.connector.stop().await;
        self.drain().await;
        self.link.shutdown().await;
    }

    /// Waits (up to [`DRAIN_LIMIT`]) until the events and stanzas already received are
    /// handled, so that what they produce reaches the link's queue before it is written
    /// down.
    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while Instant::now() < deadline {
            let queued = self.events_tx.max_capacity() - self.events_tx.capacity();
            if queued == 0 && self.event_workers.is_idle() && self.workers.is_idle() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        warn!(bridge = %self.bridge, "stopping with events still being handled");
    }

    /// The link's state, for tests and health checks.
    pub fn link_state(&self) -> crate::xmpp::link::LinkState {
        self.link.state()
    }

    /// Stanzas waiting for the XMPP server (in memory, in the database, or unconfirmed).
    pub fn queued(&self) -> u64 {
        self.link.queued()
    }
}
