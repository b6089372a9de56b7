//! One IRC connection: one login on one server, as a task that connects, registers
//! (CAP, SASL), sends queued lines through the flood-control bucket, reconnects with capped
//! backoff and rejoins its channels. Incoming lines are turned into events by [`remote`].
//!
//! [`remote`]: crate::remote

use crate::address::CaseMapping;
use crate::config::{Endpoint, Throttle};
use crate::remote::{Flow, Session};
use crate::throttle::TokenBucket;
use crate::transport::{Transport, TransportError};
use estuary_bridge_api::{
    BridgeError, EventSink, EventSlot, LoginState, MessageKind, RemoteEvent, RoomInfo, SinkClosed,
    TrySend,
};
use irc_proto::{CapSubCommand, Command, Message};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// The operations queue of a connection: futures' channel allocates per message and keeps
// nothing while empty, where tokio's keeps a 32-slot block and cache-padded state (about
// 800 bytes) for every idle connection.
use futures::StreamExt;
use futures::channel::mpsc as ops;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{Instrument, debug, info, info_span, warn};

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a TCP/TLS connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Silence from the server after which the connection sends a PING.
const PING_AFTER: Duration = Duration::from_secs(60);
/// How long the server has to say anything after that PING before the connection is
/// taken as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Events the connection holds while the core is busy before it stops reading the server
/// (it still writes: what the user sends keeps going out).
const MAX_PENDING_EVENTS: usize = 256;

/// Everything a connection needs to reach and log in to one server.
#[derive(Clone)]
pub struct ServerSettings {
    /// The server's host name.
    pub server: String,
    /// The endpoints to try, in order.
    pub endpoints: Vec<Endpoint>,
    /// Whether to check the certificate.
    pub verify_certificate: bool,
    /// Flood control.
    pub throttle: Throttle,
    /// The nick to register with.
    pub nick: String,
    /// The username (ident).
    pub username: String,
    /// The realname (gecos).
    pub realname: String,
    /// The SASL PLAIN password (account = nick), if any.
    pub sasl_password: Option<String>,
    /// The NickServ password, if any.
    pub nickserv_password: Option<String>,
    /// Channels to join on every connect.
    pub autojoin: Vec<String>,
    /// The CTCP VERSION answer.
    pub version: String,
    /// The user's bare JID, for logs.
    pub user: String,
    /// How long to stay connected with no channel joined.
    pub idle_disconnect: Duration,
}

impl std::fmt::Debug for ServerSettings {
    /// Passwords are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("server", &self.server)
            .field("endpoints", &self.endpoints)
            .field("nick", &self.nick)
            .field("sasl", &self.sasl_password.is_some())
            .field("nickserv", &self.nickserv_password.is_some())
            .finish_non_exhaustive()
    }
}

/// A message the user sends, already split into lines.
#[derive(Debug)]
pub struct Say {
    /// Channel or nick.
    pub target: String,
    /// Normal, action or notice.
    pub kind: MessageKind,
    /// The IRC texts, in order.
    pub lines: Vec<String>,
    /// The whole (sanitized) body, to reflect the echo as one message.
    pub body: String,
    /// The XMPP origin id, for the echo.
    pub origin_id: Option<String>,
    /// Whether the echo is reported (`Sent.will_echo` was true) or swallowed.
    pub report_echo: bool,
}

/// A command from the client to the connection task.
#[derive(Debug)]
pub enum Op {
    /// Join a channel (with a key).
    Join {
        /// The channel.
        channel: String,
        /// Its key (`+k`).
        key: Option<String>,
    },
    /// Part a channel.
    Part {
        /// The channel.
        channel: String,
        /// Why.
        reason: Option<String>,
    },
    /// Send text.
    Say(Say),
    /// Send raw lines, each already free of CR/LF/NUL.
    Raw(Vec<String>),
    /// Set a topic; the answer says whether the server took it (`TOPIC` seen) or refused
    /// it (482, 442, 403).
    Topic {
        /// The channel.
        channel: String,
        /// The topic.
        topic: String,
        /// The server's verdict.
        answer: oneshot::Sender<Result<(), BridgeError>>,
    },
    /// Kick someone; the answer says whether the server did (`KICK` seen) or refused it
    /// (482, 441, 442, 401).
    Kick {
        /// The channel.
        channel: String,
        /// Who.
        nick: String,
        /// Why.
        reason: Option<String>,
        /// The server's verdict.
        answer: oneshot::Sender<Result<(), BridgeError>>,
    },
    /// Change nick; the answer says whether the server took it (`NICK` seen) or refused
    /// it (433/432).
    Nick(String, oneshot::Sender<Result<(), BridgeError>>),
    /// Invite someone into a channel.
    Invite {
        /// The channel.
        channel: String,
        /// Who.
        nick: String,
    },
    /// List channels.
    List(oneshot::Sender<Vec<RoomInfo>>),
    /// Use these settings from the next (re)connection on (the user configured the
    /// server).
    Settings(Box<ServerSettings>),
    /// Quit and stop.
    Quit(Option<String>),
}

/// State shared between the connection task and the client.
#[derive(Debug, Default)]
pub struct Shared {
    /// Whether the server acknowledged `echo-message` on the current connection.
    pub echo: AtomicBool,
    /// Whether the connection is registered (001 seen).
    pub registered: AtomicBool,
    /// The nick in use.
    pub nick: Mutex<String>,
    /// The server's CASEMAPPING.
    pub casemapping: Mutex<CaseMapping>,
}

/// The client's handle on a connection task.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    tx: ops::UnboundedSender<Box<Op>>,
    /// Shared state.
    pub shared: Arc<Shared>,
}

impl ConnectionHandle {
    /// Starts a connection task.
    pub fn spawn(settings: ServerSettings, events: EventSink) -> Self {
        let (tx, rx) = ops::unbounded();
        let shared = Arc::new(Shared {
            nick: Mutex::new(settings.nick.clone()),
            ..Shared::default()
        });
        let span = info_span!("irc", user = %settings.user, server = %settings.server);
        let session = Box::new(Session::new(settings, Arc::clone(&shared)));
        tokio::spawn(run(session, events, rx, shared.clone()).instrument(span));
        Self { tx, shared }
    }

    /// Hands an operation to the task; false when the task has ended.
    pub fn send(&self, op: Op) -> bool {
        self.tx.unbounded_send(Box::new(op)).is_ok()
    }

    /// Whether the task has ended (quit or idle).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Why a session ended.
enum End {
    /// The user quit (or the client went away): stop.
    Quit,
    /// Idle: no channel for a while: stop.
    Idle,
    /// Lost: reconnect.
    Lost(String),
}

async fn connect(settings: &ServerSettings) -> Result<Transport, String> {
    let mut why = String::from("no endpoint to try");
    for endpoint in &settings.endpoints {
        debug!(port = endpoint.port, tls = endpoint.tls, "connecting");
        let attempt = Transport::connect(&settings.server, *endpoint, settings.verify_certificate);
        match timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(transport)) => return Ok(transport),
            Ok(Err(e)) => {
                why = format!("port {} ({}): {e}", endpoint.port, tls_word(endpoint.tls));
            }
            Err(_) => why = format!("port {}: timed out", endpoint.port),
        }
        info!(%why, "connection attempt failed");
    }
    Err(why)
}

fn tls_word(tls: bool) -> &'static str {
    if tls { "TLS" } else { "plain" }
}

/// Sends an event, waiting while the core's queue is full. Boxed: the wait (and the event)
/// then take room only while it lasts, not in every connection task's state.
fn send_event(
    events: &EventSink,
    event: RemoteEvent,
) -> Pin<Box<dyn Future<Output = Result<(), SinkClosed>> + Send + '_>> {
    Box::pin(events.send(event))
}

/// The connection task. What it holds while it waits is what an idle IRC user costs, so
/// the session lives in a box of its own and rare waits (connecting, quitting, sending an
/// event while the core is behind) are boxed for as long as they last.
async fn run(
    mut session: Box<Session>,
    events: EventSink,
    mut rx: ops::UnboundedReceiver<Box<Op>>,
    shared: Arc<Shared>,
) {
    // Events the core had no room for yet, oldest first; kept across a lost connection
    // and delivered before the news of the loss.
    let mut pending: VecDeque<RemoteEvent> = VecDeque::new();
    let mut backoff = MIN_BACKOFF;
    // Whether any connection ever registered: a server never reached is given up at once.
    let mut ever_registered = false;
    let _ = send_event(&events, RemoteEvent::LoginState(LoginState::Connecting)).await;
    loop {
        // Boxed: connecting (TLS handshake included) needs more room than a live
        // connection, and the task should not keep that room while it is connected.
        let end = match Box::pin(connect(session.settings())).await {
            Ok(transport) => {
                let end =
                    run_session(transport, &events, &mut rx, &mut session, &mut pending).await;
                // What the server said before the end reaches the user before anything else.
                for event in pending.drain(..).chain(session.take_events()) {
                    if send_event(&events, event).await.is_err() {
                        break;
                    }
                }
                pending = VecDeque::new();
                if session.was_registered() {
                    backoff = MIN_BACKOFF;
                    ever_registered = true;
                }
                end
            }
            Err(why) => End::Lost(why),
        };
        shared.registered.store(false, Ordering::SeqCst);
        shared.echo.store(false, Ordering::SeqCst);
        let why = match end {
            End::Quit | End::Idle => {
                info!("connection closed");
                return;
            }
            End::Lost(why) if !ever_registered => {
                warn!(%why, "server unreachable; giving up");
                let text = format!("Could not connect to {}: {why}", session.settings().server);
                rx.close();
                while let Ok(op) = rx.try_recv() {
                    session.queue_op(*op);
                }
                for event in session.give_up(&text) {
                    let _ = send_event(&events, event).await;
                }
                return;
            }
            End::Lost(why) => why,
        };
        warn!(%why, ?backoff, "connection lost; reconnecting");
        let server = session.settings().server.clone();
        let text = format!("Connection to {server} lost: {why}");
        let lost = RemoteEvent::LoginState(LoginState::TransientDisconnect(text.clone()));
        let _ = send_event(&events, lost).await;
        let notice = RemoteEvent::ServiceMessage {
            service: Some(server),
            body: format!(
                "{text}. Reconnecting in {} s.",
                backoff.as_secs_f32().round()
            ),
        };
        let _ = send_event(&events, notice).await;
        session.connection_lost();
        // Wait, still taking operations (they are queued, not lost).
        let deadline = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => break,
                op = rx.next() => match op {
                    None => return,
                    Some(op) => match *op {
                        Op::Quit(_) => return,
                        op => session.queue_op(op),
                    },
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn run_session(
    mut transport: Transport,
    events: &EventSink,
    rx: &mut ops::UnboundedReceiver<Box<Op>>,
    session: &mut Session,
    pending: &mut VecDeque<RemoteEvent>,
) -> End {
    let settings = session.settings();
    let (throttle, idle_disconnect) = (settings.throttle, settings.idle_disconnect);
    let out = registration_lines(settings);
    if let Err(e) = transport.write(out.as_bytes()).await {
        return End::Lost(e.to_string());
    }
    session.start_session();
    let mut bucket = TokenBucket::new(throttle);
    let mut next_token: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    loop {
        // Lines out: urgent ones (registration, PONG) first, then what the bucket allows,
        // all in one write.
        let mut out = String::new();
        while let Some(msg) = session.pop_urgent() {
            push_line(&mut out, &msg);
        }
        while session.can_flush() {
            match bucket.try_take(Instant::now()) {
                Ok(()) => {
                    if let Some(msg) = session.pop_line() {
                        push_line(&mut out, &msg);
                    }
                    next_token = None;
                }
                Err(wait) => {
                    next_token = Some(Instant::now() + wait);
                    break;
                }
            }
        }
        if !out.is_empty()
            && let Err(e) = transport.write(out.as_bytes()).await
        {
            return End::Lost(e.to_string());
        }
        session.release_idle_buffers();
        // Events in: as many as the core takes now; the rest wait without blocking writes.
        pending.extend(session.take_events());
        while let Some(event) = pending.pop_front() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(TrySend::Full(event)) => {
                    pending.push_front(*event);
                    break;
                }
                Err(TrySend::Closed) => {
                    Box::pin(quit(&mut transport, None)).await;
                    return End::Quit;
                }
            }
        }
        if pending.is_empty() && pending.capacity() > 0 {
            // Released once drained: an idle connection keeps no event buffer.
            *pending = VecDeque::new();
        }
        if session.is_idle() {
            idle_since.get_or_insert_with(Instant::now);
        } else {
            idle_since = None;
        }
        let idle_deadline = idle_since.map(|t| t + idle_disconnect);
        let ping_deadline = match ping_sent {
            Some(at) => at + PING_TIMEOUT,
            None => last_heard + PING_AFTER,
        };
        let reading = pending.len() < MAX_PENDING_EVENTS;
        if !reading {
            // Not listening: the silence is ours, not the server's.
            last_heard = Instant::now();
            if ping_sent.is_some() {
                ping_sent = Some(last_heard);
            }
        }
        // One timer for every deadline: a waiting connection holds one, not three.
        let wake_at = [idle_deadline, next_token, reading.then_some(ping_deadline)]
            .into_iter()
            .flatten()
            .min();
        let wake = if pending.is_empty() {
            wait(&mut transport, rx, wake_at, reading).await
        } else {
            // The core is behind: also wait for room for the next event. Boxed, so that
            // the room for this wait is not kept by every idle connection.
            Box::pin(wait_with_events(
                &mut transport,
                rx,
                events,
                wake_at,
                reading,
            ))
            .await
        };
        match wake {
            Wake::Read(Ok(())) => {
                last_heard = Instant::now();
                ping_sent = None;
                while let Some(msg) = transport.next_line() {
                    if let Flow::Stop(why) = session.handle_message(msg) {
                        return End::Lost(why);
                    }
                }
            }
            Wake::Read(Err(e)) => return End::Lost(e.to_string()),
            Wake::Slot(Ok(slot)) => {
                if let Some(event) = pending.pop_front() {
                    slot.send(event);
                }
            }
            Wake::Slot(Err(_)) | Wake::Op(None) => {
                Box::pin(quit(&mut transport, None)).await;
                return End::Quit;
            }
            Wake::Op(Some(op)) => match *op {
                Op::Quit(reason) => {
                    Box::pin(quit(&mut transport, reason)).await;
                    return End::Quit;
                }
                op => {
                    // Any use keeps the connection (private chats have no channel).
                    idle_since = None;
                    session.queue_op(op);
                }
            },
            Wake::Timer => {
                let now = Instant::now();
                if next_token.is_some_and(|at| at <= now) {
                    next_token = None;
                }
                if idle_deadline.is_some_and(|at| at <= now) {
                    if session.is_idle() {
                        Box::pin(quit(&mut transport, Some("Idle".into()))).await;
                        return End::Idle;
                    }
                    idle_since = None;
                }
                if reading && ping_deadline <= now {
                    if ping_sent.is_some() {
                        let silent = PING_AFTER + PING_TIMEOUT;
                        return End::Lost(format!(
                            "the server did not answer for {} s",
                            silent.as_secs()
                        ));
                    }
                    let mut line = String::new();
                    let server = session.settings().server.clone();
                    push_line(&mut line, &Message::from(Command::PING(server, None)));
                    if let Err(e) = transport.write(line.as_bytes()).await {
                        return End::Lost(e.to_string());
                    }
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }
}

/// What ended a connection's wait.
enum Wake<'e> {
    /// The server sent something (or the socket failed).
    Read(Result<(), TransportError>),
    /// The core has room for the next pending event (or has stopped).
    Slot(Result<EventSlot<'e>, SinkClosed>),
    /// An operation from the client (`None`: the client is gone).
    Op(Option<Box<Op>>),
    /// The earliest deadline passed.
    Timer,
}

/// Waits for the server, the client or the deadline, whichever comes first.
async fn wait<'e>(
    transport: &mut Transport,
    rx: &mut ops::UnboundedReceiver<Box<Op>>,
    wake_at: Option<Instant>,
    reading: bool,
) -> Wake<'e> {
    tokio::select! {
        read = std::future::poll_fn(|cx| transport.poll_read(cx)), if reading => Wake::Read(read),
        op = rx.next() => Wake::Op(op),
        _ = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => Wake::Timer,
    }
}

/// [`wait`], and also for room in the core's queue.
async fn wait_with_events<'e>(
    transport: &mut Transport,
    rx: &mut ops::UnboundedReceiver<Box<Op>>,
    events: &'e EventSink,
    wake_at: Option<Instant>,
    reading: bool,
) -> Wake<'e> {
    tokio::select! {
        read = std::future::poll_fn(|cx| transport.poll_read(cx)), if reading => Wake::Read(read),
        slot = events.reserve() => Wake::Slot(slot),
        op = rx.next() => Wake::Op(op),
        _ = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => Wake::Timer,
    }
}

/// The lines that open a registration: CAP LS first, so that the server waits for CAP END,
/// then NICK and USER.
fn registration_lines(settings: &ServerSettings) -> String {
    let hello = [
        Command::CAP(None, CapSubCommand::LS, Some("302".into()), None),
        Command::NICK(settings.nick.clone()),
        Command::USER(
            settings.username.clone(),
            "0".into(),
            settings.realname.clone(),
        ),
    ];
    let mut out = String::new();
    for cmd in hello {
        push_line(&mut out, &Message::from(cmd));
    }
    out
}

/// Appends `msg` to `out` as a wire line (CRLF-terminated).
fn push_line(out: &mut String, msg: &Message) {
    let _ = write!(out, "{msg}");
}

/// Sends QUIT, gives it a moment to leave, and closes the socket.
async fn quit(transport: &mut Transport, reason: Option<String>) {
    let mut line = String::new();
    push_line(&mut line, &Message::from(Command::QUIT(reason)));
    if transport.write(line.as_bytes()).await.is_ok() {
        sleep(Duration::from_millis(100)).await;
    }
    transport.shutdown().await;
}

/// A line ready for the wire, built from its parts (so that no argument can add a line).
pub fn message(command: Command) -> Message {
    Message::from(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_bridge_api::LoginId;

    fn settings() -> ServerSettings {
        ServerSettings {
            server: "irc.example.org".into(),
            endpoints: vec![],
            verify_certificate: true,
            throttle: Throttle::default(),
            nick: "n".into(),
            username: "u".into(),
            realname: "r".into(),
            sasl_password: None,
            nickserv_password: None,
            autojoin: vec![],
            version: "v".into(),
            user: "u@example.org".into(),
            idle_disconnect: Duration::from_secs(1),
        }
    }

    /// Every XMPP user has a connection task per IRC server, so its size is memory per
    /// user: rare waits are boxed and the session lives apart. The task was 2.6 KiB before
    /// that (docs/performance.md); this fails if an unboxed wait makes it grow back.
    #[test]
    fn a_connection_task_stays_small() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let events = EventSink::new("u@example.org", LoginId::new("l"), tx);
        let (_ops, ops_rx) = ops::unbounded();
        let shared = Arc::new(Shared::default());
        let session = Box::new(Session::new(settings(), Arc::clone(&shared)));
        let task = run(session, events, ops_rx, shared);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1400, "the connection task is {size} bytes");
    }

    #[test]
    fn registration_starts_with_cap_ls() {
        let lines = registration_lines(&settings());
        assert_eq!(lines, "CAP LS 302\r\nNICK n\r\nUSER u 0 * r\r\n");
    }
}
