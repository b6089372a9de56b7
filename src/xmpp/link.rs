//! The XEP-0114 component link: one per gateway, with reconnection and a queue that loses
//! nothing.
//!
//! The link owns the TCP stream to the XMPP server. Everything the gateway sends goes
//! through [`LinkHandle::send`]; the link writes it when it is up and queues it when it is
//! down: in memory up to `queue_memory_limit` stanzas, then in the database
//! (`pending_outbound`), flushed in order once the link is back. Queued stanzas are also
//! written to the database at shutdown and sent first on the next start.
//!
//! Delivery is confirmed by XEP-0199 pings: the server answers stanzas in order, so the
//! answer to a ping sent after a batch proves the batch was taken. Stanzas written since
//! the last answered ping are kept and sent again if the link drops (a duplicate is better
//! than a loss; clients de-duplicate by id). That confirming ping goes out [`ACK_DELAY`]
//! after the first unconfirmed stanza, or at once after [`ACK_EVERY`] of them, so that
//! under steady traffic the server answers one ping per batch, not one per message. A
//! ping also goes out when the link is idle, and a ping left unanswered for
//! `ping_timeout` marks the link dead.
//!
//! A stanza that shows a message whose database rows are written behind (archive, message
//! map) is handed in with the rows' ticket ([`LinkHandle::send_after`]) and written only
//! once they are committed, or after [`COMMIT_WAIT`] at the latest ([`commit_gate`](crate::xmpp::commit_gate)).

use crate::db::{Database, Ticket};
use crate::xmpp::commit_gate::{COMMIT_WAIT, CommitGate, Gated, Verdict};
use crate::xmpp::el::a;
use crate::xmpp::ns;
use crate::xmpp::unconfirmed::Unconfirmed;
use crate::xmpp::xml_safe;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;

/// How long a written stanza may wait for the ping that confirms it. Everything written
/// and not yet confirmed is written again after a drop (clients drop the copies by id), so
/// this window is what a server restart can duplicate: kept short.
pub const ACK_DELAY: Duration = Duration::from_millis(100);
/// How many unconfirmed stanzas make the link ask for confirmation at once (under load,
/// the other bound on what a drop can duplicate).
pub const ACK_EVERY: usize = 50;
/// Stanzas handed to the link and not yet taken by it. Small: each is an element tree of
/// a few kilobytes in many small allocations, and senders that find the queue full wait
/// (the network connections behind them stop reading). After a burst of joins the
/// allocator's pages hold the users' long-lived state among the holes these left: with
/// 256 here, a third of those pages' room stayed unused (docs/performance.md).
pub const OUTBOUND_CAPACITY: usize = 32;
/// How long a stop waits for the server to confirm what was written.
pub const CONFIRM_AT_STOP: Duration = Duration::from_secs(2);
use tokio_xmpp::xmlstream::{ReadError, StreamHeader, Timeouts, XmlStream, initiate_stream};
use tracing::{debug, error, info, warn};

type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// Why the link could not be established.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The server could not be reached.
    #[error(
        "cannot reach the XMPP server's component port at {addr}: {source} (is the server running, and is [xmpp] host/port its component port?)"
    )]
    Unreachable {
        /// Where we tried.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server refused the component: wrong secret, undeclared domain or already connected.
    #[error(
        "the XMPP server refused component {domain}: {answer}. Check that the server declares this component with the same secret, and that no other instance is connected for it (see the server's log)"
    )]
    Refused {
        /// The component domain.
        domain: String,
        /// What the server said.
        answer: String,
    },
    /// The stream broke during the handshake.
    #[error("the component handshake with {addr} failed: {reason}")]
    Handshake {
        /// Where.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// The link's state, observable by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet or reconnecting.
    Down,
    /// Connected and authenticated.
    Up,
    /// Shut down.
    Closed,
}

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// `host:port` of the component listener.
    pub address: String,
    /// The component domain.
    pub domain: String,
    /// The component secret.
    pub secret: crate::secret::Secret,
    /// The server domain to ping.
    pub ping_to: String,
    /// Idle time before a keep-alive ping.
    pub ping_interval: Duration,
    /// Time a ping may go unanswered.
    pub ping_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// Stanzas kept in memory before spilling to the database.
    pub memory_limit: usize,
    /// The bridge's id, the key of its rows in `pending_outbound`.
    pub bridge: String,
}

enum Command {
    Send(Gated),
    Shutdown(oneshot::Sender<()>),
}

/// The gateway's end of the link.
#[derive(Clone)]
pub struct LinkHandle {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<LinkState>,
    queued: Arc<AtomicU64>,
    unwritable: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    /// Where a stanza sent after the link closed goes: the next start sends it.
    db: Database,
    bridge: String,
    delivered: Arc<AtomicU64>,
}

impl LinkHandle {
    /// Queues a stanza for the server. Never drops it: waits while the link's intake is full.
    ///
    /// Every text and attribute value is made XML-safe first ([`xml_safe`]): whatever a
    /// bridge put in it, the stanza can be written.
    pub async fn send(&self, stanza: impl Into<Element>) {
        self.send_after(stanza, Ticket::NONE).await;
    }

    /// Queues a stanza that shows a message whose rows were queued with
    /// [`Database::write_later`]: the link writes it once the watermark has reached
    /// `after` (at most [`COMMIT_WAIT`] later), and the stanzas sent after it behind it.
    /// Does not wait for the commit itself.
    pub async fn send_after(&self, stanza: impl Into<Element>, after: Ticket) {
        let mut stanza = stanza.into();
        let cleaned = xml_safe::clean_element(&mut stanza);
        if cleaned > 0 {
            debug!(
                strings = cleaned,
                "characters XML forbids were replaced in an outgoing <{}/>",
                stanza.name()
            );
        }
        if let Err(mpsc::error::SendError(Command::Send(stanza))) = self
            .tx
            .send(Command::Send(Gated::after(stanza, after)))
            .await
        {
            // The link has stopped (the gateway is stopping): the next start sends it.
            self.keep_for_next_start(&stanza.el).await;
        }
    }

    /// Writes a stanza that came after the link stopped to the database, where the next
    /// start finds it with the rest of what was not delivered.
    async fn keep_for_next_start(&self, stanza: &Element) {
        let xml = match xml_safe::to_xml(stanza) {
            Ok(xml) => xml,
            Err(e) => {
                self.unwritable.fetch_add(1, Ordering::Relaxed);
                error!(bridge = %self.bridge, "dropping a stanza sent after the link stopped: {e}");
                return;
            }
        };
        match self.db.push_outbound(&self.bridge, &xml).await {
            Ok(()) => {
                debug!(bridge = %self.bridge, "a stanza sent after the link stopped is kept for the next start")
            }
            Err(e) => {
                error!(bridge = %self.bridge, kind = stanza.name(), "a stanza sent after the link stopped is lost: {e}")
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Stanzas not yet confirmed by the server: queued in memory or in the database, or
    /// written and awaiting the answer to a ping.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Stanzas dropped because they could not be written as XML (none should be: every
    /// stanza is cleaned on its way in; this counts what slipped through anyway).
    pub fn unwritable(&self) -> u64 {
        self.unwritable.load(Ordering::Relaxed)
    }

    /// How many stanzas from the server the link has handed to the gateway.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// How many times the link has come up (1 for a link that never dropped).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Stops the link, writing every queued stanza to the database.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Opens one authenticated component stream.
pub async fn connect(cfg: &LinkConfig) -> Result<Stream, LinkError> {
    let tcp = TcpStream::connect(&cfg.address)
        .await
        .map_err(|source| LinkError::Unreachable {
            addr: cfg.address.clone(),
            source,
        })?;
    // Without this every small stanza waits for the peer's delayed ACK (~40 ms).
    let _ = tcp.set_nodelay(true);
    let handshake_err = |reason: String| LinkError::Handshake {
        addr: cfg.address.clone(),
        reason,
    };
    let timeouts = Timeouts {
        read_timeout: cfg.ping_interval,
        response_timeout: cfg.ping_timeout,
    };
    let header = StreamHeader {
        to: Some(cfg.domain.clone().into()),
        ..Default::default()
    };
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts)
        .await
        .map_err(|e| handshake_err(e.to_string()))?;
    let stream_id = pending
        .take_header()
        .id
        .map(|id| id.into_owned())
        .ok_or_else(|| handshake_err("the server sent no stream id".into()))?;
    let mut stream: Stream = pending.skip_features();
    let handshake: Element =
        Handshake::from_stream_id_and_password(stream_id, cfg.secret.expose()).into();
    stream
        .send(&handshake)
        .await
        .map_err(|e| handshake_err(e.to_string()))?;
    loop {
        match stream.next().await {
            Some(Ok(el)) if el.name() == "handshake" => return Ok(stream),
            Some(Ok(el)) if el.name() == "error" => {
                return Err(LinkError::Refused {
                    domain: cfg.domain.clone(),
                    answer: describe_stream_error(&el),
                });
            }
            Some(Ok(el)) => {
                return Err(handshake_err(format!(
                    "unexpected <{}/> before the handshake answer",
                    el.name()
                )));
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(LinkError::Refused {
                    domain: cfg.domain.clone(),
                    answer: "the server closed the stream".into(),
                });
            }
            Some(Err(e)) => return Err(handshake_err(e.to_string())),
        }
    }
}

/// A written stanza back as an element, to be written again after a drop. It was written
/// from an element, so it parses; if it ever did not, it is logged and dropped.
fn revive(xml: &str) -> Option<Element> {
    match xml.parse::<Element>() {
        Ok(el) => Some(el),
        Err(e) => {
            // Not the stanza itself: it may carry what the user wrote.
            error!(
                bytes = xml.len(),
                "cannot send a stanza again, it does not parse back: {e}"
            );
            None
        }
    }
}

/// `<stream:error>` as one line: the condition and the server's text.
fn describe_stream_error(el: &Element) -> String {
    let condition = el
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "undefined-condition".into());
    match el.children().find(|c| c.name() == "text").map(|t| t.text()) {
        Some(text) if !text.is_empty() => format!("<{condition}/> \"{text}\""),
        _ => format!("<{condition}/>"),
    }
}

/// Starts the link: the first connection is made here, so that a refusal at start-up is
/// reported (and the process can exit) instead of retried. An unreachable server is
/// retried in the background with backoff.
pub async fn start(
    cfg: LinkConfig,
    db: Database,
    inbound: mpsc::Sender<Element>,
) -> Result<LinkHandle, LinkError> {
    let first = match connect(&cfg).await {
        Ok(stream) => Some(stream),
        Err(e @ LinkError::Unreachable { .. }) => {
            warn!(domain = %cfg.domain, "{e}; retrying in the background");
            None
        }
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let (state_tx, state_rx) = watch::channel(LinkState::Down);
    let in_db = db.count_outbound(&cfg.bridge).await.unwrap_or(0).max(0) as u64;
    let queued = Arc::new(AtomicU64::new(in_db));
    let unwritable = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let committed = db.committed();
    let link = Link {
        cfg,
        db,
        inbound,
        held: None,
        rx,
        state: state_tx,
        queue: VecDeque::new(),
        spilled: in_db > 0,
        in_db,
        unacked: Unconfirmed::default(),
        ack_seq: 0,
        ack_nonce: rand::rng().random(),
        queued: Arc::clone(&queued),
        unwritable: Arc::clone(&unwritable),
        connections: Arc::clone(&connections),
        replies: Vec::new(),
        delivered: Arc::clone(&delivered),
        taken: 0,
        from_db: VecDeque::new(),
        loaded_upto: i64::MIN,
        committed,
        gate: CommitGate::default(),
        queued_after: Ticket::NONE,
    };
    let (handle_db, bridge) = (link.db.clone(), link.cfg.bridge.clone());
    tokio::spawn(link.run(first));
    Ok(LinkHandle {
        tx,
        state: state_rx,
        queued,
        unwritable,
        connections,
        db: handle_db,
        bridge,
        delivered,
    })
}

struct Link {
    cfg: LinkConfig,
    db: Database,
    inbound: mpsc::Sender<Element>,
    /// A stanza from the server that the gateway had no room for yet; nothing more is read
    /// until it is taken.
    held: Option<Element>,
    rx: mpsc::Receiver<Command>,
    state: watch::Sender<LinkState>,
    /// Stanzas waiting for the link, oldest first (older than any in the database).
    queue: VecDeque<Element>,
    /// Whether `pending_outbound` holds stanzas (newer than `queue`).
    spilled: bool,
    /// Written since the last answered ping, oldest first, as the XML written: kept only to
    /// be sent again after a drop, and text holds far less than an element tree (a burst
    /// of joins keeps thousands here until the server's answer comes).
    unacked: Unconfirmed,
    ack_seq: u64,
    /// A random part of every confirming ping's id, new for each link.
    ack_nonce: u64,
    /// Rows this link has in `pending_outbound`.
    in_db: u64,
    /// The gauge behind [`LinkHandle::queued`].
    queued: Arc<AtomicU64>,
    /// The counter behind [`LinkHandle::unwritable`].
    unwritable: Arc<AtomicU64>,
    /// The counter behind [`LinkHandle::connections`].
    connections: Arc<AtomicU64>,
    /// The link's own answers to stanzas it refused, written before the next ones.
    replies: Vec<Element>,
    /// The counter behind [`LinkHandle::delivered`].
    delivered: Arc<AtomicU64>,
    /// Stanzas taken to be written since the start (written, or dropped as unwritable);
    /// less those unconfirmed at a drop, which are taken again. `taken` less the
    /// unconfirmed is how many the server has confirmed, in order.
    taken: u64,
    /// Batches loaded from `pending_outbound` whose rows are kept until the server
    /// confirms them, oldest first.
    from_db: VecDeque<FromDb>,
    /// The last `pending_outbound` row loaded into memory.
    loaded_upto: i64,
    /// The write-behind's watermark ([`Database::committed`]).
    committed: watch::Receiver<Ticket>,
    /// Whether stanzas wait for their rows (see [`commit_gate`](crate::xmpp::commit_gate)).
    gate: CommitGate,
    /// The highest ticket of the stanzas put in `queue` (which keeps elements only): the
    /// queue's stanzas wait for it when they are taken out.
    queued_after: Ticket,
}

/// A batch of stanzas loaded from the database: the positions (in [`Link::taken`]'s count)
/// it occupies, and its last row.
struct FromDb {
    start: u64,
    end: u64,
    last_seq: i64,
}

/// How a connected session ended.
enum Ended {
    Lost(String),
    Shutdown(oneshot::Sender<()>),
}

impl Link {
    async fn run(mut self, mut first: Option<Stream>) {
        let mut attempt: u32 = 0;
        loop {
            let stream = match first.take() {
                Some(s) => s,
                None => match self.reconnect(&mut attempt).await {
                    Some(s) => s,
                    None => return,
                },
            };
            attempt = 0;
            self.connections.fetch_add(1, Ordering::Relaxed);
            info!(domain = %self.cfg.domain, "component link up");
            let _ = self.state.send(LinkState::Up);
            match self.serve(stream).await {
                Ended::Lost(why) => {
                    let _ = self.state.send(LinkState::Down);
                    warn!(domain = %self.cfg.domain, "component link lost: {why}; reconnecting (queued: {})", self.unacked.len() + self.queue.len());
                    // Written and unconfirmed: taken again, first.
                    self.taken -= self.unacked.len() as u64;
                    for xml in self.unacked.take_all().into_iter().rev() {
                        if let Some(el) = revive(&xml) {
                            self.queue.push_front(el);
                        }
                    }
                }
                Ended::Shutdown(done) => {
                    self.persist_all().await;
                    let _ = self.state.send(LinkState::Closed);
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Waits with capped exponential backoff and jitter, queueing what arrives meanwhile.
    async fn reconnect(&mut self, attempt: &mut u32) -> Option<Stream> {
        // See `serve`.
        let inbound = self.inbound.clone();
        loop {
            let base = Duration::from_millis(250u64.saturating_mul(1 << (*attempt).min(10)));
            let capped = base.min(self.cfg.reconnect_max);
            let jitter = rand::rng().random_range(0.5..1.0);
            let wait = capped.mul_f64(jitter);
            *attempt = attempt.saturating_add(1);
            let deadline = Instant::now() + wait;
            loop {
                tokio::select! {
                    // A stanza read before the drop still reaches the gateway.
                    room = inbound.reserve(), if self.held.is_some() => {
                        if let (Ok(room), Some(el)) = (room, self.held.take()) {
                            room.send(el);
                            self.delivered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    cmd = self.rx.recv() => match cmd {
                        Some(Command::Send(g)) => {
                            self.queued_after = self.queued_after.max(g.after);
                            self.enqueue(g.el).await
                        }
                        Some(Command::Shutdown(done)) => {
                            self.persist_all().await;
                            let _ = self.state.send(LinkState::Closed);
                            let _ = done.send(());
                            return None;
                        }
                        None => { self.persist_all().await; return None; }
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            match connect(&self.cfg).await {
                Ok(s) => return Some(s),
                Err(e) => warn!(domain = %self.cfg.domain, attempt = *attempt, "{e}"),
            }
        }
    }

    /// Queues a stanza that arrived while the link is down; a message is marked as delayed
    /// since now, so that clients show it as late when it is delivered.
    async fn enqueue(&mut self, mut el: Element) {
        crate::xmpp::message::mark_queued(&mut el, std::time::SystemTime::now(), &self.cfg.domain);
        if !self.spilled && self.queue.len() < self.cfg.memory_limit {
            self.queue.push_back(el);
            self.gauge(0);
            return;
        }
        if !self.spilled {
            debug!(domain = %self.cfg.domain, "outbound queue over {} stanzas: spilling to the database", self.cfg.memory_limit);
            let queued: Vec<Element> = self.queue.drain(..).collect();
            for q in queued {
                self.push_db(&q).await;
            }
            self.spilled = true;
        }
        self.push_db(&el).await;
        self.gauge(0);
    }

    /// Publishes how many stanzas wait (`in_flight`: those held outside the link's queues).
    fn gauge(&self, in_flight: usize) {
        let n = self.queue.len() + self.unacked.len() + in_flight;
        self.queued.store(n as u64 + self.in_db, Ordering::Relaxed);
    }

    async fn push_db(&mut self, el: &Element) {
        let Some(xml) = self.serialise(el) else {
            return;
        };
        match self.db.push_outbound(&self.cfg.bridge, &xml).await {
            Ok(()) => self.in_db += 1,
            Err(e) => {
                // The database is the last resort; keep the stanza in memory rather than lose it.
                error!(domain = %self.cfg.domain, "cannot persist a queued stanza ({e}); keeping it in memory");
                self.queue.push_back(el.clone());
            }
        }
    }

    /// The stanza's XML; a stanza that cannot be written is dropped here, logged and
    /// counted, instead of breaking the stream for everything after it.
    fn serialise(&self, el: &Element) -> Option<String> {
        match xml_safe::to_xml(el) {
            Ok(xml) => Some(xml),
            Err(e) => {
                self.unwritable.fetch_add(1, Ordering::Relaxed);
                // Not the stanza itself: it may carry what a user wrote.
                error!(
                    domain = %self.cfg.domain,
                    kind = el.name(),
                    id = el.attr("id").unwrap_or(""),
                    to = el.attr("to").unwrap_or(""),
                    "dropping a stanza that cannot be written as XML: {e}"
                );
                None
            }
        }
    }

    /// Loads the oldest spilled stanzas back into memory.
    async fn reload(&mut self) {
        if !self.spilled || !self.queue.is_empty() {
            return;
        }
        match self
            .db
            .peek_outbound_after(
                &self.cfg.bridge,
                self.loaded_upto,
                self.cfg.memory_limit.max(1) as i64,
            )
            .await
        {
            Ok(rows) if rows.is_empty() => {
                self.spilled = false;
                self.in_db = 0;
            }
            Ok(rows) => {
                let last = rows.last().map(|(seq, _)| *seq).unwrap_or_default();
                self.in_db = self.in_db.saturating_sub(rows.len() as u64);
                // The rows stay in the database until the server confirms these stanzas
                // (`forget_confirmed`): a crash before that sends them again, never loses
                // them. Nothing older is waiting (the queue is empty), so they are the next
                // stanzas taken.
                let start = self.taken + 1;
                let mut loaded = 0u64;
                for (seq, xml) in rows {
                    match xml.parse::<Element>() {
                        Ok(el) => {
                            self.queue.push_back(el);
                            loaded += 1;
                        }
                        Err(e) => {
                            error!(domain = %self.cfg.domain, seq, "dropping an unreadable queued stanza: {e}")
                        }
                    }
                }
                self.loaded_upto = last;
                self.from_db.push_back(FromDb {
                    start,
                    end: self.taken + loaded,
                    last_seq: last,
                });
            }
            Err(e) => error!(domain = %self.cfg.domain, "cannot read queued stanzas: {e}"),
        }
    }

    /// Deletes the database rows of loaded batches that the server has confirmed (a batch
    /// whose stanzas were all taken and none is still unconfirmed).
    async fn forget_confirmed(&mut self) {
        let done = self.taken - self.unacked.len() as u64;
        let mut last = None;
        while let Some(batch) = self.from_db.front()
            && batch.end <= done
        {
            last = Some(batch.last_seq);
            self.from_db.pop_front();
        }
        if let Some(last) = last
            && let Err(e) = self.db.delete_outbound(&self.cfg.bridge, last).await
        {
            // They are sent again at the next start: a duplicate, not a loss.
            error!(domain = %self.cfg.domain, "cannot delete delivered stanzas from the database: {e}");
        }
    }

    /// Writes everything still queued to the database, older first.
    async fn persist_all(&mut self) {
        // What memory holds, in order: the unconfirmed (positions done+1..=taken), then
        // the queue. Those loaded from the database and not yet confirmed are still there
        // (positions `from_db`'s first start to last end): not written twice.
        let done = self.taken - self.unacked.len() as u64;
        let in_db = self
            .from_db
            .front()
            .zip(self.from_db.back())
            .map(|(first, last)| first.start..=last.end);
        let unacked = self.unacked.take_all();
        let queue: Vec<Element> = self.queue.drain(..).collect();
        let in_memory = unacked
            .into_iter()
            .map(Some)
            .chain(queue.iter().map(|el| self.serialise(el)));
        let (mut older, mut newest) = (Vec::new(), Vec::new());
        for (position, xml) in (done + 1..).zip(in_memory) {
            let Some(xml) = xml else { continue };
            match &in_db {
                Some(range) if range.contains(&position) => {}
                Some(range) if position > *range.end() => newest.push(xml),
                _ => older.push(xml),
            }
        }
        self.from_db.clear();
        self.taken = done;
        if older.is_empty() && newest.is_empty() {
            return;
        }
        // Rows already in the database are newer than these: append copies of them after,
        // and delete the originals only once everything is written (a stop in between
        // leaves duplicates, never a loss).
        let (newer, last_original) = if self.spilled || in_db.is_some() {
            let rows = self
                .db
                .peek_outbound(&self.cfg.bridge, i64::MAX)
                .await
                .unwrap_or_default();
            let last = rows.last().map(|(seq, _)| *seq);
            (rows.into_iter().map(|(_, xml)| xml).collect(), last)
        } else {
            (Vec::new(), None)
        };
        let mut kept = 0u64;
        for xml in older.into_iter().chain(newer).chain(newest) {
            match self.db.push_outbound(&self.cfg.bridge, &xml).await {
                Ok(()) => kept += 1,
                Err(e) => {
                    error!(domain = %self.cfg.domain, "a queued stanza is lost at shutdown: {e}")
                }
            }
        }
        if let Some(last) = last_original
            && let Err(e) = self.db.delete_outbound(&self.cfg.bridge, last).await
        {
            error!(domain = %self.cfg.domain, "queued stanzas will be sent twice at the next start: {e}");
        }
        self.spilled = true;
        self.in_db = kept;
        self.gauge(0);
        info!(domain = %self.cfg.domain, "{kept} undelivered stanzas kept in the database for the next start");
    }

    /// Takes the queue's stanzas out to be written; they wait for the highest ticket any
    /// of them came with.
    fn take_queue(&mut self) -> Vec<Gated> {
        let after = self.queued_after;
        self.queue
            .drain(..)
            .map(|el| Gated::after(el, after))
            .collect()
    }

    /// Puts stanzas not yet written back in front of the queue's, in order.
    fn requeue(&mut self, backlog: &mut VecDeque<Gated>) {
        for g in backlog.drain(..).rev() {
            self.queued_after = self.queued_after.max(g.after);
            self.queue.push_front(g.el);
        }
    }

    /// At a stop: writes the stanzas at the head of `backlog` whose rows are committed,
    /// waiting up to [`COMMIT_WAIT`] for the write-behind to reach the last of them (it
    /// keeps running until the database closes, after the links). What is left is kept
    /// for the next start by the caller.
    async fn write_committed_at_stop(
        &mut self,
        stream: &mut Stream,
        backlog: &mut VecDeque<Gated>,
        committed: &mut watch::Receiver<Ticket>,
    ) {
        let Some(last) = backlog.iter().map(|g| g.after).max() else {
            return;
        };
        if !self.gate.ready(last, *committed.borrow()) {
            let _ = tokio::time::timeout(COMMIT_WAIT, committed.wait_for(|c| *c >= last)).await;
        }
        let watermark = *committed.borrow();
        while let Some(next) = backlog.front()
            && self.gate.ready(next.after, watermark)
        {
            let Some(Gated { el, .. }) = backlog.pop_front() else {
                break;
            };
            let Some(xml) = self.serialise(&el) else {
                self.taken += 1;
                continue;
            };
            if stream.feed(&el).await.is_err() {
                backlog.push_front(Gated::now(el));
                return;
            }
            self.taken += 1;
            self.unacked.push(&xml);
        }
        let _ = SinkExt::<&Element>::flush(stream).await;
    }

    fn ping(&mut self) -> (String, Element) {
        debug!(
            unacked = self.unacked.len(),
            queue = self.queue.len(),
            "asking the server to confirm"
        );
        self.ack_seq += 1;
        // Unguessable: only the server's answer to this ping may confirm what was written.
        let id = format!("estuary-ack-{:016x}-{}", self.ack_nonce, self.ack_seq);
        let el = Element::builder("iq", ns::COMPONENT)
            .attr(a("type"), "get")
            .attr(a("id"), id.clone())
            .attr(a("from"), self.cfg.domain.clone())
            .attr(a("to"), self.cfg.ping_to.clone())
            .append(Element::builder("ping", ns::PING).build())
            .build();
        (id, el)
    }

    async fn serve(&mut self, stream: Stream) -> Ended {
        // Send what was written but not confirmed before the drop, then the queue.
        self.taken -= self.unacked.len() as u64;
        let mut backlog: VecDeque<Gated> = self
            .unacked
            .take_all()
            .iter()
            .filter_map(|xml| revive(xml))
            .map(Gated::now)
            .collect();
        backlog.extend(self.take_queue());
        let ended = self.serve_backlog(stream, &mut backlog).await;
        if matches!(ended, Ended::Lost(_)) {
            // Not yet written: first after the reconnection.
            self.requeue(&mut backlog);
        }
        ended
    }

    /// [`Link::serve`] with its queue of stanzas to write, `backlog` (what is left in it
    /// when the link is lost was not written).
    async fn serve_backlog(&mut self, mut stream: Stream, backlog: &mut VecDeque<Gated>) -> Ended {
        let mut in_flight: Option<(String, usize, Instant)> = None;
        let mut last_traffic = Instant::now();
        // When the unconfirmed stanzas are due a confirming ping.
        let mut ack_due: Option<Instant> = None;
        // A handle of our own on the gateway's queue, for waiting on room in it while the
        // other branches of the loop's `select!` use `self`.
        let inbound = self.inbound.clone();
        // Ours too, for waiting on the watermark.
        let mut committed = self.committed.clone();
        loop {
            backlog.extend(self.replies.drain(..).map(Gated::now));
            if !self.from_db.is_empty() {
                self.forget_confirmed().await;
            }
            self.gauge(backlog.len());
            // Flush backlog (and spilled rows) first, in order.
            if backlog.is_empty() && self.spilled {
                self.reload().await;
                backlog.extend(self.take_queue());
            }
            // The head waits for its rows' commit, and everything behind it.
            let wait = match backlog.front() {
                Some(next) => {
                    let watermark = *committed.borrow_and_update();
                    match self.gate.check(next, watermark, Instant::now()) {
                        Verdict::Go => None,
                        Verdict::WaitUntil(deadline) => Some(deadline),
                    }
                }
                None => None,
            };
            if wait.is_none()
                && let Some(Gated { el, .. }) = backlog.pop_front()
            {
                // Written out first, so a stanza the writer would refuse is dropped here
                // and never leaves the stream half-written.
                let Some(xml) = self.serialise(&el) else {
                    self.taken += 1;
                    continue;
                };
                if let Err(e) = stream.feed(&el).await {
                    backlog.push_front(Gated::now(el));
                    self.requeue(backlog);
                    return Ended::Lost(e.to_string());
                }
                self.taken += 1;
                self.unacked.push(&xml);
                drop(el);
                // Written out before a wait for the database, too.
                let next_waits = backlog
                    .front()
                    .is_some_and(|next| !self.gate.ready(next.after, *committed.borrow()));
                if (backlog.is_empty() || next_waits || self.unacked.len().is_multiple_of(64))
                    && let Err(e) = SinkExt::<&Element>::flush(&mut stream).await
                {
                    self.requeue(backlog);
                    return Ended::Lost(e.to_string());
                }
                ack_due.get_or_insert_with(|| Instant::now() + ACK_DELAY);
                if in_flight.is_none() && self.unacked.len() >= ACK_EVERY {
                    let (id, ping) = self.ping();
                    if let Err(e) = stream.send(&ping).await {
                        self.requeue(backlog);
                        return Ended::Lost(e.to_string());
                    }
                    in_flight = Some((id, self.unacked.len(), Instant::now()));
                    ack_due = None;
                }
                // Keep reading while flushing a large backlog so pings get answered.
                if !backlog.is_empty() && self.held.is_none() {
                    if let Ok(item) = tokio::time::timeout(Duration::ZERO, stream.next()).await
                        && let Some(why) = self.on_read(item, &mut in_flight).await
                    {
                        self.requeue(backlog);
                        return Ended::Lost(why);
                    }
                    continue;
                }
            }
            if in_flight.is_none() && !self.unacked.is_empty() {
                ack_due.get_or_insert_with(|| Instant::now() + ACK_DELAY);
            }
            let ping_due = match (&in_flight, ack_due) {
                (Some((_, _, sent)), _) => *sent + self.cfg.ping_timeout,
                (None, Some(due)) => due.min(last_traffic + self.cfg.ping_interval),
                (None, None) => last_traffic + self.cfg.ping_interval,
            };
            tokio::select! {
                item = stream.next(), if self.held.is_none() => {
                    // tokio-xmpp's soft timeout says the server has been silent for
                    // `ping_interval`; it drops the stream `ping_timeout` later unless
                    // something arrives. A ping now makes the server speak in time (it is
                    // not traffic: counting it as such pushed our ping past that deadline).
                    let silent = matches!(item, Some(Err(ReadError::SoftTimeout)));
                    if silent {
                        if in_flight.is_none() {
                            let (id, ping) = self.ping();
                            if let Err(e) = stream.send(&ping).await {
                                return Ended::Lost(e.to_string());
                            }
                            in_flight = Some((id, self.unacked.len(), Instant::now()));
                            ack_due = None;
                        }
                        continue;
                    }
                    last_traffic = Instant::now();
                    if let Some(why) = self.on_read(item, &mut in_flight).await {
                        return Ended::Lost(why);
                    }
                    if in_flight.is_none() && self.unacked.len() >= ACK_EVERY {
                        let (id, ping) = self.ping();
                        if let Err(e) = stream.send(&ping).await {
                            return Ended::Lost(e.to_string());
                        }
                        in_flight = Some((id, self.unacked.len(), Instant::now()));
                        ack_due = None;
                    }
                }
                room = inbound.reserve(), if self.held.is_some() => match room {
                    Ok(room) => {
                        room.send(self.held.take().expect("a held stanza"));
                        self.delivered.fetch_add(1, Ordering::SeqCst);
                        // The server's silence meanwhile was ours: we were not reading.
                        last_traffic = Instant::now();
                        if let Some((_, _, sent)) = &mut in_flight {
                            *sent = last_traffic;
                        }
                    }
                    Err(_) => return Ended::Lost("the gateway stopped".into()),
                },
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Send(g)) => { last_traffic = Instant::now(); backlog.push_back(g) }
                    Some(Command::Shutdown(done)) => {
                        // What waits for the database is written once its rows are
                        // (bounded); the rest is kept with the rest (`persist_all`).
                        self.write_committed_at_stop(&mut stream, backlog, &mut committed).await;
                        self.requeue(backlog);
                        self.confirm_before_stop(&mut stream, &mut in_flight).await;
                        self.read_until_closed(&mut stream).await;
                        let _ = SinkExt::<&Element>::close(&mut stream).await;
                        return Ended::Shutdown(done);
                    }
                    None => return Ended::Lost("the gateway stopped".into()),
                },
                changed = committed.changed(), if wait.is_some() => {
                    if changed.is_err() {
                        self.gate.writer_gone();
                    }
                }
                _ = tokio::time::sleep_until(wait.unwrap_or(ping_due)), if wait.is_some() => {}
                _ = tokio::time::sleep_until(ping_due), if self.held.is_none() => {
                    if let Some((id, _, _)) = &in_flight {
                        return Ended::Lost(format!("no answer to ping {id} within {:?}", self.cfg.ping_timeout));
                    }
                    let (id, ping) = self.ping();
                    if let Err(e) = stream.send(&ping).await {
                        return Ended::Lost(e.to_string());
                    }
                    in_flight = Some((id, self.unacked.len(), Instant::now()));
                    ack_due = None;
                    last_traffic = Instant::now();
                }
            }
        }
    }

    /// At a stop: asks the server to confirm what was written and waits (up to
    /// [`CONFIRM_AT_STOP`]) for the answer, so that the next start does not send it again.
    async fn confirm_before_stop(
        &mut self,
        stream: &mut Stream,
        in_flight: &mut Option<(String, usize, Instant)>,
    ) {
        let deadline = Instant::now() + CONFIRM_AT_STOP;
        while !self.unacked.is_empty() {
            if in_flight.is_none() {
                let (id, ping) = self.ping();
                if stream.send(&ping).await.is_err() {
                    return;
                }
                *in_flight = Some((id, self.unacked.len(), Instant::now()));
            }
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(item) => {
                    if self.on_read(item, in_flight).await.is_some() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// At a stop: closes our side of the stream and hands the gateway what the server sent
    /// before it closed its own (the gateway, stopping, keeps or refuses each). The server
    /// took those stanzas as delivered when it wrote them: left unread, they would be lost
    /// without a word to their senders. What comes after our close the server bounces.
    async fn read_until_closed(&mut self, stream: &mut Stream) {
        let deadline = Instant::now() + CONFIRM_AT_STOP;
        let mut handed = 0usize;
        if let Some(el) = self.held.take() {
            match tokio::time::timeout_at(deadline, self.inbound.send(el)).await {
                Ok(Ok(())) => {
                    self.delivered.fetch_add(1, Ordering::SeqCst);
                    handed += 1;
                }
                _ => {
                    warn!(domain = %self.cfg.domain, "the gateway took no more stanzas at the stop")
                }
            }
        }
        if let Err(e) = stream.shutdown().await {
            debug!(domain = %self.cfg.domain, "closing the stream: {e}");
            return;
        }
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(el))) => {
                    let ours = el.name() == "iq"
                        && el
                            .attr("id")
                            .is_some_and(|id| id.starts_with("estuary-ack-"));
                    if ours {
                        continue;
                    }
                    match tokio::time::timeout_at(deadline, self.inbound.send(el)).await {
                        Ok(Ok(())) => {
                            self.delivered.fetch_add(1, Ordering::SeqCst);
                            handed += 1;
                        }
                        _ => {
                            warn!(domain = %self.cfg.domain, "the gateway took no more stanzas at the stop");
                            return;
                        }
                    }
                }
                Ok(Some(Err(ReadError::SoftTimeout | ReadError::ParseError(_)))) => continue,
                Ok(Some(Err(_)) | None) => break,
                Err(_) => {
                    warn!(domain = %self.cfg.domain, "the server had not closed the stream {CONFIRM_AT_STOP:?} after ours");
                    break;
                }
            }
        }
        if handed > 0 {
            info!(domain = %self.cfg.domain, "{handed} stanzas that arrived during the stop handed to the gateway");
        }
    }

    /// A stanza from the server nested deeper than [`xml_safe::MAX_DEPTH`]: taken apart
    /// without recursion (the gateway's handling would clone, write and drop it level by
    /// level, and a deep enough one exhausts the stack), its sender told `policy-violation`.
    fn refuse_too_deep(&mut self, el: Element) {
        let (name, type_) = (
            el.name().to_owned(),
            el.attr("type").unwrap_or("").to_owned(),
        );
        let (from, to, id) = (
            el.attr("from").map(str::to_owned),
            el.attr("to").map(str::to_owned),
            el.attr("id").map(str::to_owned),
        );
        xml_safe::dismantle(el);
        warn!(domain = %self.cfg.domain, from = from.as_deref().unwrap_or(""), "refused a <{name}/> nested deeper than {} levels", xml_safe::MAX_DEPTH);
        let answerable = matches!(
            (name.as_str(), type_.as_str()),
            ("iq", "get" | "set") | ("message", _) | ("presence", "")
        ) && type_ != "error";
        let (Some(from), Some(to), true) = (from, to, answerable) else {
            return;
        };
        let error = Element::builder("error", ns::COMPONENT)
            .attr(a("type"), "modify")
            .append(Element::builder("policy-violation", ns::STANZAS).build())
            .append(
                Element::builder("text", ns::STANZAS)
                    .append(format!(
                        "The stanza nests deeper than {} levels; the gateway does not take it.",
                        xml_safe::MAX_DEPTH
                    ))
                    .build(),
            )
            .build();
        let mut reply = Element::builder(name, ns::COMPONENT)
            .attr(a("type"), "error")
            .attr(a("from"), to)
            .attr(a("to"), from)
            .append(error)
            .build();
        if let Some(id) = id {
            crate::xmpp::el::set(&mut reply, "id", id);
        }
        self.replies.push(reply);
    }

    /// Handles one read; returns why the link is lost, if it is.
    async fn on_read(
        &mut self,
        item: Option<Result<Element, ReadError>>,
        in_flight: &mut Option<(String, usize, Instant)>,
    ) -> Option<String> {
        match item {
            Some(Ok(el)) if xml_safe::depth(&el, xml_safe::MAX_DEPTH) > xml_safe::MAX_DEPTH => {
                self.refuse_too_deep(el);
                None
            }
            Some(Ok(el)) => {
                if el.name() == "iq" {
                    // The answer must come from the server we pinged (or the server itself,
                    // which may leave `from` out).
                    let from_server = el
                        .attr("from")
                        .is_none_or(|f| f == self.cfg.ping_to || f == self.cfg.domain);
                    if let (Some(id), Some((want, count, _))) = (el.attr("id"), in_flight.as_ref())
                        && id == want
                        && from_server
                        && matches!(el.attr("type"), Some("result") | Some("error"))
                    {
                        let n = self.unacked.confirm(*count);
                        debug!(
                            confirmed = n,
                            unacked = self.unacked.len(),
                            "the server confirmed"
                        );
                        *in_flight = None;
                        return None;
                    }
                    if from_server
                        && el
                            .attr("id")
                            .is_some_and(|id| id.starts_with("estuary-ack-"))
                    {
                        return None; // an answer to an earlier ping; nothing to do
                    }
                }
                if el.name() == "error" && el.ns() == "http://etherx.jabber.org/streams" {
                    return Some(format!(
                        "stream error from the server: {}",
                        describe_stream_error(&el)
                    ));
                }
                // Never waits here: a link waiting for the gateway to take a stanza would
                // stop writing the gateway's own stanzas, which the gateway may be waiting
                // for. A full queue holds the stanza back and stops reading instead.
                match self.inbound.try_send(el) {
                    Ok(()) => {
                        self.delivered.fetch_add(1, Ordering::SeqCst);
                        None
                    }
                    Err(mpsc::error::TrySendError::Full(el)) => {
                        self.held = Some(el);
                        None
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Some("the gateway stopped".into()),
                }
            }
            Some(Err(ReadError::SoftTimeout)) => None,
            Some(Err(ReadError::ParseError(e))) => {
                warn!(domain = %self.cfg.domain, "ignoring an unparsable element from the server: {e}");
                None
            }
            Some(Err(ReadError::StreamFooterReceived)) => {
                Some("the server closed the stream".into())
            }
            Some(Err(ReadError::HardError(e))) => Some(e.to_string()),
            None => Some("the connection closed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unconfirmed stanzas are kept as the XML written and parsed back to be written again
    /// after a drop: the element must come back the same, namespaces and text included.
    #[test]
    fn a_kept_stanza_comes_back_as_it_was() {
        let el: Element = "<message xmlns='jabber:component:accept' from='#a%irc.example.org@irc.gw/bob' \
             to='u@example.org/res' type='groupchat' id='x1'><body>a &lt;b&gt; &amp; ünïcode\nline 2</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='#a%irc.example.org@irc.gw'/></message>"
            .parse()
            .expect("a valid stanza");
        let kept = String::from(&el).into_boxed_str();
        assert_eq!(revive(&kept), Some(el));
        assert_eq!(
            revive("<message"),
            None,
            "unparsable: dropped and logged, no panic"
        );
    }
}
