//! One IRC connection: one login on one server, as a task that connects, registers
//! (CAP, SASL), sends queued lines through the flood-control bucket, reconnects with capped
//! backoff and rejoins its channels. Incoming lines are turned into events by [`remote`].
//!
//! [`remote`]: crate::remote

use crate::address::CaseMapping;
use crate::live::Live;
use crate::profile::ServerProfile;
use crate::progress;
use crate::remote::Session;
use crate::transport::{Transport, TransportError, WRITE_TIMEOUT};
use estuary_bridge_api::{
    BridgeError, ErrorKind, EventSink, LoginState, MessageKind, OutboundError, RemoteEvent,
    RoomInfo, SinkClosed,
};
use irc_proto::{CapSubCommand, Command, Message};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The first wait before reconnecting after a connection that was up is lost: at random
/// between this and [`FIRST_BACKOFF_MAX`], so that a server that restarts is tried again
/// soon (what is said in a channel while no connection of ours is in it is lost for good)
/// and the connections of many users to it do not all come back at the same instant.
pub const FIRST_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest first wait (see [`FIRST_BACKOFF_MIN`]).
pub const FIRST_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// The wait after the first failed attempt, and after the second; then it doubles up to
/// [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a connection must stay registered for the backoff to start again from
/// [`FIRST_BACKOFF_MIN`]: a server that takes us and drops us at once (a ban, a
/// connection limit) is tried less and less often, not every half second.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a TCP/TLS connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a connection needs to reach and log in to one server: the server's profile,
/// shared with every other user's connection to it, and what is the user's own.
#[derive(Clone)]
pub struct ServerSettings {
    /// The server and how to reach it (shared, see [`Profiles`](crate::profile::Profiles)).
    pub profile: Arc<ServerProfile>,
    /// The nick to register with.
    pub nick: String,
    /// The username (ident).
    pub username: String,
    /// The realname (gecos).
    pub realname: String,
    /// Passwords and channels to join on every connect; `None` when the user set none
    /// (most users), so that they take no room.
    pub account: Option<Box<Account>>,
}

/// The user's account on a server, beyond the nick: what registration or "Configure" set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// The SASL PLAIN password (account = nick), if any.
    pub sasl_password: Option<String>,
    /// The NickServ password, if any.
    pub nickserv_password: Option<String>,
    /// Channels to join on every connect.
    pub autojoin: Vec<String>,
    /// The server password, sent as `PASS` before registering.
    pub server_password: Option<String>,
    /// Raw IRC lines sent after the server welcomes the user (001), in order.
    pub after_connect: Vec<String>,
}

impl Account {
    /// `None` when nothing is set, so that settings keep no empty box.
    pub fn boxed(self) -> Option<Box<Self>> {
        (self != Self::default()).then(|| Box::new(self))
    }
}

impl ServerSettings {
    /// The server's host name.
    pub fn server(&self) -> &str {
        &self.profile.server
    }

    /// The server password (`PASS`), if any.
    pub fn server_password(&self) -> Option<&str> {
        self.account.as_ref()?.server_password.as_deref()
    }

    /// The raw lines sent after 001.
    pub fn after_connect(&self) -> &[String] {
        self.account
            .as_ref()
            .map_or(&[][..], |a| a.after_connect.as_slice())
    }

    /// The SASL PLAIN password, if any.
    pub fn sasl_password(&self) -> Option<&str> {
        self.account.as_ref()?.sasl_password.as_deref()
    }

    /// The NickServ password, if any.
    pub fn nickserv_password(&self) -> Option<&str> {
        self.account.as_ref()?.nickserv_password.as_deref()
    }

    /// Channels to join on every connect.
    pub fn autojoin(&self) -> &[String] {
        self.account.as_ref().map_or(&[], |a| &a.autojoin)
    }
}

impl std::fmt::Debug for ServerSettings {
    /// Passwords are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("server", &self.profile.server)
            .field("endpoints", &self.profile.endpoints)
            .field("nick", &self.nick)
            .field("sasl", &self.sasl_password().is_some())
            .field("nickserv", &self.nickserv_password().is_some())
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
    /// The first line waits for it ([`estuary_bridge_api::gate`]): the core's archive row
    /// of the message is durable before the channel sees it.
    pub gate: estuary_bridge_api::SendGate,
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
    /// Change a member's prefix modes (muc#admin voice, moderator, affiliation); the
    /// answer says whether the server did (`MODE` seen) or refused it (482, 441, 401).
    Standing {
        /// The channel.
        channel: String,
        /// Who.
        nick: String,
        /// What they should become.
        change: estuary_bridge_api::StandingChange,
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
    /// Ask `nick`'s client its version (CTCP VERSION); the answer gets the text of the
    /// reply, and is dropped when the connection is lost.
    Version {
        /// Who.
        nick: String,
        /// The reply's text.
        answer: oneshot::Sender<String>,
    },
    /// List channels.
    List(oneshot::Sender<Vec<RoomInfo>>),
    /// Use these settings from the next (re)connection on (the user configured the
    /// server).
    Settings(Box<ServerSettings>),
    /// Quit and stop.
    Quit(Option<String>),
    /// The user quit on purpose (a raw `QUIT` to the server JID): leave every room (the
    /// user is told, as for a part), quit with the user's reason and stop; nothing is
    /// rejoined.
    UserQuit(Option<String>),
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
    /// Channels joined or being joined (for the per-user limit): set by the session, and
    /// raised by the client as it asks for a join the session has not seen yet.
    pub channels: AtomicUsize,
    /// Lines waiting for flood control (for the per-connection limit), likewise.
    pub queued: AtomicUsize,
    /// When the current connection opened, and through which endpoint (for
    /// `get-irc-connection-info`); `None` while not connected.
    pub connected: Mutex<Option<(std::time::SystemTime, crate::config::Endpoint)>>,
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
        let span = info_span!("irc", user = %events.user(), server = %settings.server());
        let kept = Kept::new(Session::new(settings, Arc::clone(&shared)));
        tokio::spawn(run(kept, events, rx, shared.clone()).instrument(span));
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

/// Why a connection's live part ([`Live`]) ended.
pub enum End {
    /// The user quit (or the client went away), with the reason to give: say goodbye and
    /// stop.
    Quit(Option<String>),
    /// Idle: no channel for a while: say goodbye and stop.
    Idle,
    /// Lost: reconnect.
    Lost(String),
    /// The outbound policy allows none of the server's addresses: give up at once (trying
    /// again would be refused again).
    Refused(String),
    /// No turn to open a connection came in time (`limits.opening_connections`): give up
    /// if the server was never reached, else try again later.
    Busy(String),
}

/// Connects to the first endpoint that answers. [`End::Refused`] when the outbound policy
/// refused every endpoint (no connection was attempted), else [`End::Lost`] with the last
/// failure.
async fn connect(
    settings: &ServerSettings,
    events: &EventSink,
) -> Result<(Transport, crate::config::Endpoint), End> {
    let mut why = String::from("no endpoint to try");
    let mut all_refused = true;
    let profile = &settings.profile;
    // Held until the connection is open (or every endpoint failed).
    let _turn = profile.opening.turn().await.map_err(End::Busy)?;
    for endpoint in &profile.endpoints {
        debug!(port = endpoint.port, tls = endpoint.tls, "connecting");
        tell_progress(
            events,
            settings,
            progress::attempt(&profile.server, *endpoint),
        )
        .await;
        let attempt = Transport::connect(
            &profile.server,
            *endpoint,
            profile.verify_certificate,
            &profile.outbound,
        );
        let failure = match timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(transport)) => {
                tell_progress(events, settings, progress::connected(*endpoint)).await;
                return Ok((transport, *endpoint));
            }
            Ok(Err(TransportError::Outbound(e @ OutboundError::NotAllowed { .. }))) => {
                why = e.to_string();
                why.clone()
            }
            Ok(Err(e)) => {
                all_refused = false;
                why = format!("port {} ({}): {e}", endpoint.port, tls_word(endpoint.tls));
                e.to_string()
            }
            Err(_) => {
                all_refused = false;
                why = format!("port {}: timed out", endpoint.port);
                format!("timed out after {} s", CONNECT_TIMEOUT.as_secs())
            }
        };
        info!(%why, "connection attempt failed");
        tell_progress(events, settings, progress::failed(&failure)).await;
    }
    if all_refused && !profile.endpoints.is_empty() {
        Err(End::Refused(why))
    } else {
        Err(End::Lost(why))
    }
}

/// Tells the user, from the server's JID, how the connection goes (Biboumi's
/// "Connecting to host:port (encrypted)" lines): a failure to deliver it is the core's
/// queue closing, which the connection task notices on its own.
async fn tell_progress(events: &EventSink, settings: &ServerSettings, body: String) {
    let service = Some(settings.server().to_owned());
    let _ = send_event(events, RemoteEvent::ServiceMessage { service, body }).await;
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
/// the session lives in a box of its own, the live connection is a state machine of its
/// own ([`Live`]) and everything else it does (connecting, saying goodbye, telling the
/// user about a loss, waiting to reconnect) is boxed for as long as it lasts.
/// What a connection task keeps from one connection to the next, in one box: the task
/// then holds a pointer to it, and the box fills the allocator's size class that the
/// session alone would leave partly empty.
struct Kept {
    session: Session,
    /// Events the core had no room for yet, oldest first; kept across a lost connection
    /// and delivered before the news of the loss.
    pending: VecDeque<RemoteEvent>,
    /// Reconnections that failed in a row since the last registered connection: the wait
    /// before the next one is [`backoff_after`] them (a count, not a `Duration`: this box is
    /// kept by every user, and eight bytes less keep it in a smaller allocation class).
    failures: u8,
    /// Whether any connection ever registered: a server never reached is given up at once.
    ever_registered: bool,
}

impl Kept {
    fn new(session: Session) -> Box<Self> {
        Box::new(Self {
            session,
            pending: VecDeque::new(),
            failures: 0,
            ever_registered: false,
        })
    }
}

// Clippy would have this an `async fn`, which is what this avoids (see the comment inside).
#[allow(clippy::manual_async_fn)]
fn run(
    mut kept: Box<Kept>,
    events: EventSink,
    mut rx: ops::UnboundedReceiver<Box<Op>>,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    // An `async` block, not an `async fn`: its captures are its state, where an
    // `async fn` keeps its arguments and their rebound copies side by side.
    async move {
        let _ = send_event(&events, RemoteEvent::LoginState(LoginState::Connecting)).await;
        loop {
            let end = 'attempt: {
                let mut transport = match Box::pin(connect(kept.session.settings(), &events)).await
                {
                    Ok((transport, endpoint)) => {
                        if let Ok(mut c) = shared.connected.lock() {
                            *c = Some((std::time::SystemTime::now(), endpoint));
                        }
                        transport
                    }
                    Err(end) => break 'attempt end,
                };
                let hello = registration_lines(kept.session.settings());
                let Kept {
                    session, pending, ..
                } = &mut *kept;
                let end =
                    Live::new(&mut transport, &events, &mut rx, session, pending, hello).await;
                Box::pin(close(transport, &end, &events, session, pending)).await;
                let (registered, stable) =
                    (session.was_registered(), session.was_stable(STABLE_AFTER));
                if registered {
                    kept.ever_registered = true;
                    // The server's JID goes offline for users subscribed to it.
                    let offline = RemoteEvent::ServiceState {
                        service: kept.session.settings().server().to_owned(),
                        online: false,
                    };
                    let _ = send_event(&events, offline).await;
                }
                if stable {
                    kept.failures = 0;
                }
                end
            };
            shared.registered.store(false, Ordering::SeqCst);
            shared.echo.store(false, Ordering::SeqCst);
            if let Ok(mut c) = shared.connected.lock() {
                *c = None;
            }
            match end {
                End::Quit(_) | End::Idle => {
                    info!("connection closed");
                    return;
                }
                End::Refused(why) => {
                    let kind = ErrorKind::Forbidden;
                    Box::pin(give_up(why, kind, &events, &mut rx, &mut kept.session)).await;
                    return;
                }
                End::Lost(why) if !kept.ever_registered => {
                    let kind = ErrorKind::RemoteUnreachable;
                    Box::pin(give_up(why, kind, &events, &mut rx, &mut kept.session)).await;
                    return;
                }
                End::Busy(why) if !kept.ever_registered => {
                    let kind = ErrorKind::ResourceConstraint;
                    Box::pin(give_up(why, kind, &events, &mut rx, &mut kept.session)).await;
                    return;
                }
                End::Lost(why) | End::Busy(why) => {
                    let backoff = backoff_after(kept.failures, jitter());
                    let again = reconnect_wait(why, backoff, &events, &mut rx, &mut kept.session);
                    if !Box::pin(again).await {
                        return;
                    }
                }
            }
            kept.failures = kept.failures.saturating_add(1);
        }
    }
}

/// The wait before reconnecting after `failures` attempts in a row since the last stable
/// connection: the first at random between [`FIRST_BACKOFF_MIN`] and [`FIRST_BACKOFF_MAX`]
/// (`jitter` picks where), then [`MIN_BACKOFF`] twice, then doubling, at most
/// [`MAX_BACKOFF`]: 0.1–0.5 s, 1, 1, 2, 4 … 60 s. Against a server that restarts in 2 s,
/// the third attempt (at about 2.3 s) finds it back; the 1-then-2 s of before found it
/// at 3 s.
pub fn backoff_after(failures: u8, jitter: u64) -> Duration {
    if failures == 0 {
        let spread = FIRST_BACKOFF_MAX.saturating_sub(FIRST_BACKOFF_MIN);
        let millis = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        return FIRST_BACKOFF_MIN + Duration::from_millis(jitter % millis.max(1));
    }
    let doublings = u32::from(failures).saturating_sub(2);
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// A random number for [`backoff_after`]: std's hasher keys are random per process and
/// per `RandomState`, so hashing nothing with a fresh one is enough for a spread.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// After a connection's live part: says goodbye to the server when the connection ends on
/// our side, then hands the user what the server said before the end.
async fn close(
    mut transport: Transport,
    end: &End,
    events: &EventSink,
    session: &mut Session,
    pending: &mut VecDeque<RemoteEvent>,
) {
    match end {
        End::Quit(reason) => {
            flush_at_quit(&mut transport, session).await;
            quit(&mut transport, reason.clone()).await
        }
        End::Idle => quit(&mut transport, Some("Idle".into())).await,
        End::Lost(_) | End::Refused(_) | End::Busy(_) => {}
    }
    drop(transport);
    for event in pending.drain(..).chain(session.take_events()) {
        if events.send(event).await.is_err() {
            break;
        }
    }
    *pending = VecDeque::new();
}

/// The server was never reached (or may not be): every pending join fails with `kind`,
/// queued lines are dropped, and the user is told why.
async fn give_up(
    why: String,
    kind: ErrorKind,
    events: &EventSink,
    rx: &mut ops::UnboundedReceiver<Box<Op>>,
    session: &mut Session,
) {
    warn!(%why, "server unreachable; giving up");
    let text = format!(
        "Could not connect to {}: {why}",
        session.settings().server()
    );
    rx.close();
    while let Ok(op) = rx.try_recv() {
        session.queue_op(*op);
    }
    for event in session.give_up(kind, &text) {
        let _ = events.send(event).await;
    }
}

/// The connection was lost: tells the user, then waits `backoff`, still taking operations
/// (they are queued, not lost). False when the client quit meanwhile.
async fn reconnect_wait(
    why: String,
    backoff: Duration,
    events: &EventSink,
    rx: &mut ops::UnboundedReceiver<Box<Op>>,
    session: &mut Session,
) -> bool {
    warn!(%why, ?backoff, "connection lost; reconnecting");
    let server = session.settings().server().to_owned();
    let text = format!("Connection to {server} lost: {why}");
    let lost = RemoteEvent::LoginState(LoginState::TransientDisconnect(text.clone()));
    let _ = events.send(lost).await;
    let notice = RemoteEvent::ServiceMessage {
        service: Some(server),
        body: format!(
            "{text}. Reconnecting in {} s.",
            backoff.as_secs_f32().round()
        ),
    };
    let _ = events.send(notice).await;
    session.connection_lost();
    // Lines given up with the connection: their senders are told now.
    for event in session.take_events() {
        let _ = events.send(event).await;
    }
    let deadline = Instant::now() + backoff;
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return true,
            op = rx.next() => match op {
                None => return false,
                Some(op) => match *op {
                    Op::Quit(_) => return false,
                    Op::UserQuit(_) => {
                        for event in session.leave_all(None) {
                            let _ = events.send(event).await;
                        }
                        return false;
                    }
                    op => session.queue_op(op),
                },
            },
        }
    }
}

/// The lines that open a registration: CAP LS first, so that the server waits for CAP END,
/// then NICK and USER.
fn registration_lines(settings: &ServerSettings) -> String {
    let mut out = String::new();
    // The server password (PASS) comes before anything else.
    if let Some(pass) = settings.server_password() {
        push_line(
            &mut out,
            &Message::from(Command::PASS(crate::remote::one_line(pass))),
        );
    }
    let hello = [
        Command::CAP(None, CapSubCommand::LS, Some("302".into()), None),
        Command::NICK(settings.nick.clone()),
        Command::USER(
            settings.username.clone(),
            "0".into(),
            settings.realname.clone(),
        ),
    ];
    for cmd in hello {
        push_line(&mut out, &Message::from(cmd));
    }
    out
}

/// Appends `msg` to `out` as a wire line (CRLF-terminated).
pub fn push_line(out: &mut String, msg: &Message) {
    let _ = write!(out, "{msg}");
}

/// The most queued lines a quit still writes (a stop, a disconnect): what the user sent
/// and flood control held back goes out before the QUIT instead of vanishing with the
/// connection (the server's own flood limit may still apply). The user is told of any
/// beyond.
pub const FLUSH_AT_QUIT: usize = 64;

/// Writes the user's lines still queued, before the QUIT (see [`FLUSH_AT_QUIT`]).
async fn flush_at_quit(transport: &mut Transport, session: &mut Session) {
    let mut text = String::new();
    for line in session.lines_at_quit(FLUSH_AT_QUIT) {
        push_line(&mut text, &line);
    }
    if text.is_empty() {
        return;
    }
    match timeout(WRITE_TIMEOUT, transport.write(text.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("the lines queued at the quit could not be written: {e}"),
        Err(_) => warn!("the lines queued at the quit could not be written in time"),
    }
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
            profile: Arc::new(ServerProfile {
                server: "irc.example.org".into(),
                endpoints: vec![],
                verify_certificate: true,
                throttle: crate::config::Throttle::default(),
                version: "v".into(),
                idle_disconnect: Duration::from_secs(1),
                outbound: Arc::default(),
                opening: Default::default(),
            }),
            nick: "n".into(),
            username: "u".into(),
            realname: "r".into(),
            account: None,
        }
    }

    /// Every XMPP user has a connection task per IRC server, so its size is memory per
    /// user: rare waits are boxed and the session lives apart. The task was 2.6 KiB before
    /// that (docs/performance.md); this fails if an unboxed wait makes it grow back.
    ///
    /// tokio allocates the task in a cell aligned to 128 bytes: its header (32), scheduler
    /// and id (16), the stage's tag (8), our span (40) and its trailer (48) around the
    /// future. A future of 368 bytes or less makes a 512-byte cell; one byte more, 640.
    #[test]
    fn a_connection_task_stays_small() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let events = EventSink::new("u@example.org", LoginId::new("l"), tx);
        let (_ops, ops_rx) = ops::unbounded();
        let shared = Arc::new(Shared::default());
        let kept = Kept::new(Session::new(settings(), Arc::clone(&shared)));
        let task = run(kept, events, ops_rx, shared);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 368, "the connection task is {size} bytes");
        // The box every connection keeps (session, pending events, backoff) fits
        // jemalloc's 320-byte class; the next class up is 384 (docs/performance.md).
        let kept = std::mem::size_of::<Kept>();
        assert!(kept <= 320, "a connection's kept state is {kept} bytes");
    }

    /// With every turn to open a connection taken, a connection waits, then gives up as
    /// busy (which the user hears as `resource-constraint`) without connecting.
    #[tokio::test]
    async fn no_turn_to_open_is_busy() {
        let opening = crate::profile::Opening::new(1, Duration::from_millis(50));
        let mut settings = settings();
        let mut profile = (*settings.profile).clone();
        profile.opening = opening.clone();
        settings.profile = Arc::new(profile);
        let taken = opening.turn().await.expect("a free turn");
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let events = EventSink::new("u@example.org", LoginId::new("l"), tx);
        match connect(&settings, &events).await {
            Err(End::Busy(why)) => assert!(why.contains("busy opening"), "{why}"),
            Err(End::Lost(why) | End::Refused(why)) => panic!("not busy: {why}"),
            Err(_) => panic!("not busy"),
            Ok(_) => panic!("connected"),
        }
        assert!(rx.try_recv().is_err(), "no progress told while busy");
        drop(taken);
        match connect(&settings, &events).await {
            Err(End::Lost(why)) => assert_eq!(why, "no endpoint to try"),
            _ => panic!("with a free turn, the endpoints are tried"),
        }
    }

    #[test]
    fn the_backoff_starts_short_then_doubles_up_to_its_cap() {
        let waits: Vec<u64> = (1..11).map(|n| backoff_after(n, 7).as_secs()).collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_after(u8::MAX, 7), MAX_BACKOFF);
        for jitter in [0, 1, 399, 400, 12_345, u64::MAX] {
            let first = backoff_after(0, jitter);
            assert!(
                (FIRST_BACKOFF_MIN..FIRST_BACKOFF_MAX).contains(&first),
                "{first:?}"
            );
        }
        assert_ne!(
            (0..8)
                .map(|_| backoff_after(0, jitter()))
                .collect::<Vec<_>>(),
            vec![backoff_after(0, jitter()); 8],
            "the first wait is spread"
        );
    }

    #[test]
    fn registration_starts_with_cap_ls() {
        let lines = registration_lines(&settings());
        assert_eq!(lines, "CAP LS 302\r\nNICK n\r\nUSER u 0 * r\r\n");
    }
}
