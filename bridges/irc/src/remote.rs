//! The state of one IRC session and the translation of what the server says into
//! [`RemoteEvent`]s (handle-remote), plus the queue of lines to send (handle-local).
//!
//! It does no I/O: the connection task feeds it messages and operations and drains its
//! lines and events, so it can be driven by tests line by line.

use crate::address::{CaseMapping, ID_FOLDING, is_channel_name, room_id, user_id};
use crate::connection::{Op, ServerSettings, Shared};
use crate::format::{ctcp_action, ctcp_reply, irc_to_styled, parse_ctcp, sanitize};
use crate::gates::Gates;
use crate::inflight::{InFlight, Written};
use crate::prefixes::Prefixes;
use crate::replies::{self, Gathering, Kind};
use estuary_bridge_api::{
    Affiliation, BridgeError, ChatKey, ErrorKind, LoginState, Member, MemberChange, MessageKind,
    RemoteChatId, RemoteEvent, RemoteMessage, RemoteMessageId, RemoteUserId, Role, RoomInfo,
    SendGate, Sender, SmallMap,
};
use irc_proto::{ChannelMode, Command, Message, Mode, Prefix, Response};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Whether the session goes on.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The server said goodbye (`ERROR`): reconnect.
    Stop(String),
}

/// What a server, broken or hostile, can make one connection keep or do. Past each, the
/// rest is dropped (and the user told where it matters); nothing grows without bound.
pub mod caps {
    /// MOTD lines shown; the rest is counted and said to be left out.
    pub const MOTD_LINES: usize = 200;
    /// Channels kept from one LIST (a big network has some tens of thousands).
    pub const LIST_ENTRIES: usize = 50_000;
    /// Capabilities kept from one CAP LS, over all its lines.
    pub const CAP_LS_ENTRIES: usize = 100;
    /// Members kept per channel, from NAMES and JOINs.
    pub const NAMES_PER_CHANNEL: usize = 10_000;
    /// Channels a server may join us to without our asking, per connection; past it,
    /// the gateway parts them at once.
    pub const FORCED_JOINS: u16 = 20;
}

/// The IRCv3 capabilities requested when offered.
const WANTED_CAPS: [&str; 6] = [
    "server-time",
    "message-tags",
    "echo-message",
    "multi-prefix",
    "away-notify",
    "account-notify",
];

#[derive(Debug, PartialEq, Eq)]
enum ChanState {
    /// JOIN sent (or to be sent); waiting for the end of NAMES.
    Joining,
    /// In the channel; the core knows.
    Joined,
}

#[derive(Debug)]
struct Chan {
    name: String,
    key: Option<String>,
    state: ChanState,
    /// Members by folded nick: (nick as shown, prefix modes).
    members: SmallMap<String, (String, String)>,
    topic: String,
    /// The nick of who set the topic (`TOPIC`'s source, or `RPL_TOPICWHOTIME` at a join).
    topic_by: Option<Box<str>>,
    /// `+m`: members without voice or better are visitors.
    moderated: bool,
    /// The rooms the user joined this channel as: one per spelling (`#a[x]` and `#A{x}` are
    /// one channel under `rfc1459`, and each spelling's room gets the channel's events, so
    /// the room JID the user joined is the one they see). Sorted, each once; a vector, as
    /// there is nearly always one.
    rooms: Vec<RemoteChatId>,
    /// When the channel was first wanted on this session (a counter), so that channels
    /// asked for before the server welcomed us are joined, and answered, in that order.
    asked: u32,
    /// Our own `user@host` as our JOIN to this channel showed it (kept here rather than in
    /// the session, which every user has per server: see `a_connection_task_stays_small`).
    own_address: Option<Box<str>>,
}

/// A line to send; the first line of a user's message carries its echo expectation.
struct Line {
    msg: Message,
    echo: Option<PendingEcho>,
    /// The XMPP id of the user's message this line is part of (every line of it), to tell
    /// the sender if it is lost.
    origin: Option<String>,
    /// Whether it was written once already and is queued again after a drop.
    resent: bool,
    /// What the line waits for before it is written (the first line of a user's message:
    /// its archive row in the core); open for every other line.
    gate: SendGate,
}

impl Line {
    /// A line that is not part of a user's message.
    fn plain(msg: Message) -> Self {
        Self {
            msg,
            echo: None,
            origin: None,
            resent: false,
            gate: SendGate::open(),
        }
    }
}

#[derive(Debug)]
struct PendingEcho {
    target: String,
    remaining: usize,
    body: String,
    kind: MessageKind,
    origin_id: Option<String>,
    report: bool,
    last_id: Option<String>,
}

/// What a channel operation sent for the user waits for from the server.
#[derive(Debug, PartialEq, Eq)]
enum Awaited {
    /// `TOPIC` on the channel, from us.
    Topic,
    /// `KICK` of this (folded) nick on the channel, by us.
    Kick(String),
    /// `MODE` on the channel by us, naming this (folded) nick.
    Mode(String),
}

/// A topic change or kick sent and not yet answered: the server's `TOPIC`/`KICK` accepts
/// it, a refusal numeric (482, 442, 441, 403, 401) refuses it with the server's text.
#[derive(Debug)]
struct PendingOp {
    /// The folded channel.
    channel: String,
    awaited: Awaited,
    answer: oneshot::Sender<Result<(), BridgeError>>,
}

/// One IRC session's state.
pub struct Session {
    settings: ServerSettings,
    shared: Arc<Shared>,
    /// By folded name; boxed, so that the map's vector stays small.
    channels: SmallMap<String, Box<Chan>>,
    queue: VecDeque<Line>,
    urgent: VecDeque<Message>,
    events: Vec<RemoteEvent>,
    echoes: VecDeque<PendingEcho>,
    registered: bool,
    /// When registration completed on the current connection, in [`clock_secs`]; 0 while
    /// it has not (four bytes, not an `Instant`: every user keeps a session per server).
    registered_at: u32,
    cap_done: bool,
    sasl_pending: bool,
    /// Prefix modes, highest first: (mode, prefix char).
    prefixes: Prefixes,
    /// Nicks tried at registration since the last success (saturating).
    nick_tries: u16,
    /// Channels the server joined us to without our asking, on this connection.
    forced_joins: u16,
    /// What is needed now and then only; `None` while all of it is empty.
    rare: Option<Box<Rare>>,
}

/// The counter behind [`Chan::asked`]: process-wide, so that sessions carry no field for it
/// (only the order within one session matters).
static CHANNELS_ASKED: AtomicU32 = AtomicU32::new(0);

/// CTCP VERSION requests waiting per connection before the oldest is given up.
const MAX_VERSION_REQUESTS: usize = 16;

/// The parts of a session that are empty nearly all the time (during registration, a
/// listing, an answer awaited), in a box that exists only while one of them is not: every
/// user has a session per server, and these headers alone were a fifth of it.
#[derive(Default)]
struct Rare {
    /// Channels we sent PART for and whose PART we have not seen back (folded).
    parting: HashSet<String>,
    /// The capabilities the server offered so far (`CAP LS`, possibly in several lines).
    cap_ls: Vec<String>,
    /// The MOTD so far.
    motd: String,
    /// MOTD lines seen so far, kept or not.
    motd_lines: usize,
    /// Who waits for the channel list, oldest first.
    lists: VecDeque<oneshot::Sender<Vec<RoomInfo>>>,
    /// The channel list so far.
    listing: Vec<RoomInfo>,
    /// Channels of the current list left out past [`caps::LIST_ENTRIES`].
    listing_dropped: usize,
    /// Nick changes sent and not yet answered, oldest first.
    pending_nicks: VecDeque<(String, oneshot::Sender<Result<(), BridgeError>>)>,
    /// Topic changes and kicks sent and not yet answered, oldest first.
    pending_ops: VecDeque<PendingOp>,
    /// CTCP VERSION requests sent and not yet answered: (folded nick, who waits).
    versions: Vec<(String, oneshot::Sender<String>)>,
    /// A WHOIS or LUSERS answer being gathered into one message.
    gathering: Option<Gathering>,
    /// The lines written and not yet confirmed by the server (see [`crate::inflight`]).
    in_flight: InFlight,
    /// The XMPP id of the last message whose sender was told it was not sent: one error
    /// per message, not one per line.
    told: Option<String>,
    /// The send gates of the user's lines (see [`crate::gates`]), once one waited.
    gates: Option<Box<Gates>>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.gates.as_ref().is_none_or(|g| g.is_idle())
            && self.parting.is_empty()
            && self.cap_ls.is_empty()
            && self.motd.is_empty()
            && self.motd_lines == 0
            && self.lists.is_empty()
            && self.listing.is_empty()
            && self.listing_dropped == 0
            && self.pending_nicks.is_empty()
            && self.pending_ops.is_empty()
            && self.versions.is_empty()
            && self.gathering.is_none()
            && self.in_flight.is_empty()
    }
}

impl Session {
    /// A session with nothing joined.
    pub fn new(settings: ServerSettings, shared: Arc<Shared>) -> Self {
        let mut session = Self {
            settings,
            shared,
            channels: SmallMap::new(),
            queue: VecDeque::new(),
            urgent: VecDeque::new(),
            events: Vec::new(),
            echoes: VecDeque::new(),
            registered: false,
            registered_at: 0,
            cap_done: false,
            sasl_pending: false,
            prefixes: Prefixes::default(),
            nick_tries: 0,
            forced_joins: 0,
            rare: None,
        };
        for channel in session.settings.autojoin().to_vec() {
            session.want_channel(&channel, None);
        }
        session.publish_counts();
        session
    }

    /// The room id for a channel spelled `name` (see [`ID_FOLDING`]).
    fn room_for(&self, name: &str) -> RemoteChatId {
        room_id(name, self.settings.server(), ID_FOLDING)
    }

    /// The user id for `nick` (see [`ID_FOLDING`]).
    fn user_for(&self, nick: &str) -> RemoteUserId {
        user_id(nick, self.settings.server(), ID_FOLDING)
    }

    /// The rooms a channel's events go to: every spelling the user joined it as, or the
    /// channel's own name when it is not joined.
    fn rooms_of(&self, chan: &str) -> Vec<RemoteChatId> {
        match self.channels.get(&self.fold(chan)) {
            Some(c) if !c.rooms.is_empty() => c.rooms.to_vec(),
            _ => vec![self.room_for(chan)],
        }
    }

    fn casemapping(&self) -> CaseMapping {
        self.shared
            .casemapping
            .lock()
            .map(|c| *c)
            .unwrap_or_default()
    }

    fn fold(&self, name: &str) -> String {
        self.casemapping().fold(name)
    }

    fn own_nick(&self) -> String {
        self.shared
            .nick
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    fn is_me(&self, nick: &str) -> bool {
        self.fold(nick) == self.fold(&self.own_nick())
    }

    fn emit(&mut self, event: RemoteEvent) {
        self.events.push(event);
    }

    fn service(&mut self, body: String) {
        let service = Some(self.settings.server().to_owned());
        self.emit(RemoteEvent::ServiceMessage { service, body });
    }

    /// Events to hand to the core, in order. A LUSERS answer is complete with what the
    /// server sent in one go (not every server ends it with 266).
    pub fn take_events(&mut self) -> Vec<RemoteEvent> {
        if self.rare_if_any().is_some_and(|r| {
            r.gathering
                .as_ref()
                .is_some_and(|g| g.kind() == Kind::Lusers)
        }) {
            self.flush_gathering();
        }
        std::mem::take(&mut self.events)
    }

    /// At a quit: the user's lines still waiting for flood control, at most `max` of them,
    /// to write before the QUIT; the rest are dropped and the user is told how many.
    pub fn lines_at_quit(&mut self, max: usize) -> Vec<Message> {
        let mut lines = Vec::new();
        while lines.len() < max && self.can_flush() {
            match self.pop_line() {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        let unsent = self
            .queue
            .iter()
            .filter(|l| matches!(l.msg.command, Command::PRIVMSG(..) | Command::NOTICE(..)))
            .count();
        self.queue.clear();
        self.publish_counts();
        if unsent > 0 {
            self.service(format!(
                "The connection to {} was closed before {unsent} of your line(s) could be sent; send them again once you are back.",
                self.settings.server()
            ));
        }
        lines
    }

    /// Whether the current connection registered and stayed registered at least `stable`
    /// (to the second): only then does the reconnection backoff start again from its
    /// shortest wait.
    pub fn was_stable(&self, stable: Duration) -> bool {
        let up = clock_secs().saturating_sub(self.registered_at);
        self.registered_at != 0 && u64::from(up) >= stable.as_secs()
    }

    /// Whether registration ever completed on the current connection.
    pub fn was_registered(&self) -> bool {
        self.registered_at != 0
    }

    /// Whether no channel is joined or wanted (the idle timer runs).
    pub fn is_idle(&self) -> bool {
        self.registered && self.channels.is_empty() && self.queue.is_empty()
    }

    /// A new connection starts: forget the per-connection state, keep channels to rejoin.
    pub fn start_session(&mut self) {
        self.registered = false;
        self.registered_at = 0;
        if let Some(rare) = self.rare_if_any() {
            rare.cap_ls.clear();
            rare.motd.clear();
            rare.motd_lines = 0;
        }
        self.forced_joins = 0;
        self.cap_done = false;
        self.sasl_pending = false;
        self.prefixes = Prefixes::default();
        self.nick_tries = 0;
        self.urgent.clear();
        if let Ok(mut nick) = self.shared.nick.lock() {
            nick.clone_from(&self.settings.nick);
        }
    }

    /// The connection dropped: channels go back to "joining" (rejoined on reconnect),
    /// pending echoes and listings are given up.
    pub fn connection_lost(&mut self) {
        self.registered = false;
        for chan in self.channels.values_mut() {
            chan.state = ChanState::Joining;
            chan.members.clear();
        }
        // Echoes still awaited stay: the lines they count are written again below or are
        // still queued, and each echoes once on the next connection (cleared at its
        // registration if it has no echo-message).
        self.requeue_unconfirmed();
        if let Some(rare) = self.rare_if_any() {
            rare.parting.clear();
            rare.pending_nicks.clear();
            rare.versions.clear();
            // Dropping the answers tells the waiting client that the connection was lost.
            rare.pending_ops.clear();
            for tx in rare.lists.drain(..) {
                let _ = tx.send(std::mem::take(&mut rare.listing));
            }
        }
        // Lines to channels are rebuilt on rejoin; user messages stay queued.
        self.queue.retain(|l| {
            !matches!(
                l.msg.command,
                Command::JOIN(..) | Command::NAMES(..) | Command::LIST(..)
            )
        });
        self.publish_counts();
    }

    /// The user quit the server: every channel is forgotten and each of its rooms is left
    /// (with `reason`), so that nothing is rejoined; returns the events to hand over.
    pub fn leave_all(&mut self, reason: Option<String>) -> Vec<RemoteEvent> {
        let mut events = std::mem::take(&mut self.events);
        for chan in std::mem::take(&mut self.channels).into_values() {
            for room in chan.rooms {
                events.push(RemoteEvent::RoomLeft {
                    room,
                    reason: reason.clone(),
                });
            }
        }
        self.publish_counts();
        events
    }

    /// The server could not be reached at all, or the outbound policy refused it: every
    /// pending join fails with `kind` (`RemoteUnreachable`, `Forbidden`), and the user is
    /// told that queued messages were not sent.
    pub fn give_up(&mut self, kind: ErrorKind, why: &str) -> Vec<RemoteEvent> {
        let mut events = std::mem::take(&mut self.events);
        for chan in std::mem::take(&mut self.channels).into_values() {
            for room in chan.rooms {
                events.push(RemoteEvent::RoomJoinFailed {
                    room,
                    error: BridgeError::new(kind, why),
                });
            }
        }
        let unsent = self.queue.len();
        self.queue.clear();
        self.publish_counts();
        // Nothing is reconnecting: this server is given up (the user was told why, above
        // and below), and the login stays usable for every other server. "Reconnecting"
        // here left the gateway's presence and status saying so for good.
        events.push(RemoteEvent::LoginState(LoginState::Connected));
        events.push(RemoteEvent::ServiceMessage {
            service: Some(self.settings.server().to_owned()),
            body: if unsent > 0 {
                format!("{why}. {unsent} line(s) were not sent.")
            } else {
                why.to_owned()
            },
        });
        events
    }

    /// Whether a throttled line may go now: registered, something queued, and room among
    /// the unconfirmed lines ([`crate::inflight::MAX_UNCONFIRMED`]).
    pub fn can_flush(&self) -> bool {
        self.registered
            && !self.queue.is_empty()
            && !self.rare.as_ref().is_some_and(|r| r.in_flight.is_full())
    }

    /// Whether the next throttled line may go as far as its send gate goes (see
    /// [`crate::gates`]): open, nothing gated, or its wait ran out. If not, the connection
    /// waits for [`Session::poll_gate`] or [`Session::gate_deadline`].
    pub fn gate_open(&mut self, now: Instant) -> bool {
        let head = self
            .queue
            .front()
            .map(|l| &l.gate)
            .filter(|g| g.is_gated() && !g.is_open());
        match head {
            Some(gate) => {
                let rare = self.rare.get_or_insert_with(Box::default);
                rare.gates.get_or_insert_with(Box::default).check(gate, now)
            }
            None => {
                if let Some(g) = self.rare.as_mut().and_then(|r| r.gates.as_mut()) {
                    g.clear();
                }
                true
            }
        }
    }

    /// `Ready` once the core has committed more while the next line waited for its send
    /// gate: time to look again.
    pub fn poll_gate(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.rare.as_mut().and_then(|r| r.gates.as_mut()) {
            Some(g) => g.poll(cx),
            None => std::task::Poll::Pending,
        }
    }

    /// When the next line stops waiting for its send gate at the latest.
    pub fn gate_deadline(&self) -> Option<Instant> {
        self.rare.as_ref()?.gates.as_ref()?.deadline()
    }

    /// The next throttled line. A user's line goes among the unconfirmed ones; a line
    /// written again after a drop to a channel the user has left meanwhile is not written
    /// (its sender is told) and the next one is taken.
    pub fn pop_line(&mut self) -> Option<Message> {
        loop {
            let line = self.queue.pop_front()?;
            self.shared
                .queued
                .store(self.queue.len(), Ordering::Relaxed);
            if let Some(echo) = line.echo
                && self.shared.echo.load(Ordering::SeqCst)
            {
                self.echoes.push_back(echo);
            }
            let Some(target) = text_target(&line.msg).map(|t| self.fold(t)) else {
                return Some(line.msg);
            };
            if line.resent && is_channel_name(&target) && !self.channels.contains_key(&target) {
                let why = "You left the channel before this message could be sent again after the connection to the IRC server dropped.";
                self.not_sent(
                    &target,
                    line.origin,
                    ErrorKind::NotAcceptable,
                    why.to_owned(),
                );
                continue;
            }
            self.rare().in_flight.written(Written {
                msg: line.msg.clone(),
                target,
                origin: line.origin,
                resent: line.resent,
                at: Instant::now(),
            });
            return Some(line.msg);
        }
    }

    /// A PING that makes the server confirm the user's lines written so far, when some
    /// are unconfirmed, no mark is out, and the connection has no `echo-message` (whose
    /// echoes confirm lines without it). Written right after them.
    pub fn take_mark(&mut self) -> Option<Message> {
        if !self.registered || self.shared.echo.load(Ordering::SeqCst) {
            return None;
        }
        let token = self.rare_if_any()?.in_flight.take_mark()?;
        Some(Message::from(Command::PING(token, None)))
    }

    /// When the unconfirmed lines, full, may stop waiting for the server's proof.
    pub fn confirm_deadline(&self) -> Option<Instant> {
        self.rare.as_ref()?.in_flight.deadline()
    }

    /// The unconfirmed lines waited [`crate::inflight::CONFIRM_TIMEOUT`] with no proof
    /// while full: the oldest count as delivered, so that writing goes on.
    pub fn expire_unconfirmed(&mut self, now: Instant) {
        let server = self.settings.server().to_owned();
        if let Some(rare) = self.rare_if_any() {
            let gone = rare.in_flight.expire(now);
            if gone > 0 {
                warn!(%server, lines = gone, "the server confirmed none of our lines in time; counting the oldest as delivered");
            }
        }
    }

    /// The connection dropped: the lines the server never confirmed go first once
    /// reconnected (after the rejoins, which are put before them at registration), in
    /// order; those already written twice are given up and their senders told.
    fn requeue_unconfirmed(&mut self) {
        let Some(rare) = self.rare_if_any() else {
            return;
        };
        let (again, given_up) = rare.in_flight.lost();
        if !again.is_empty() || !given_up.is_empty() {
            info!(
                again = again.len(),
                given_up = given_up.len(),
                "lines the server had not confirmed when the connection dropped"
            );
        }
        for line in given_up {
            let why = format!(
                "The connection to {} dropped twice while this message was being sent; it may not have arrived.",
                self.settings.server()
            );
            self.not_sent(&line.target, line.origin, ErrorKind::RemoteUnreachable, why);
        }
        for line in again.into_iter().rev() {
            self.queue.push_front(Line {
                msg: line.msg,
                echo: None,
                origin: line.origin,
                resent: true,
                // Written once already: its gate was open then.
                gate: SendGate::open(),
            });
        }
    }

    /// The server refused a line to `target` (404, 401, 403): if one of the user's lines
    /// to it is unconfirmed, the oldest is the one refused, and its sender is told; true
    /// when so (no other notice needed).
    fn refuse_line(&mut self, target: &str, kind: ErrorKind, text: &str) -> bool {
        let folded = self.fold(target);
        let Some(line) = self
            .rare_if_any()
            .and_then(|r| r.in_flight.refused(&folded))
        else {
            return false;
        };
        if line.origin.is_none() {
            return false;
        }
        let why = refusal(kind, target, text).text;
        self.not_sent(&folded, line.origin, kind, why);
        true
    }

    /// One line of the user's message to `target` (folded) was not sent: the echo it
    /// would have given is no longer awaited, and its sender gets an error (once per
    /// message).
    fn not_sent(&mut self, target: &str, origin: Option<String>, kind: ErrorKind, why: String) {
        if let Some(pos) = self
            .echoes
            .iter()
            .position(|e| e.target == target && e.origin_id == origin)
            && let Some(echo) = self.echoes.get_mut(pos)
        {
            echo.remaining = echo.remaining.saturating_sub(1);
            if echo.remaining == 0 {
                self.echoes.remove(pos);
            }
        }
        let Some(origin_id) = origin else {
            return;
        };
        let rare = self.rare();
        if rare.told.as_deref() == Some(origin_id.as_str()) {
            return;
        }
        rare.told = Some(origin_id.clone());
        let chat = if is_channel_name(target) {
            ChatKey::Room(
                self.rooms_of(target)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| self.room_for(target)),
            )
        } else {
            ChatKey::Direct(self.user_for(target))
        };
        self.emit(RemoteEvent::NotSent {
            chat,
            origin_id,
            error: BridgeError::new(kind, why),
        });
    }

    /// The next line that bypasses flood control (registration, SASL).
    pub fn pop_urgent(&mut self) -> Option<Message> {
        self.urgent.pop_front()
    }

    fn push(&mut self, command: Command) {
        self.queue.push_back(Line::plain(Message::from(command)));
    }

    /// Wants `channel` joined, as the room of that spelling.
    fn want_channel(&mut self, channel: &str, key: Option<String>) {
        let folded = self.fold(channel);
        let room = self.room_for(channel);
        let asked = CHANNELS_ASKED.fetch_add(1, Ordering::Relaxed);
        let rooms = &mut self
            .channels
            .get_or_insert_with(folded, || {
                Box::new(Chan {
                    asked,
                    own_address: None,
                    name: channel.to_owned(),
                    key,
                    state: ChanState::Joining,
                    members: SmallMap::new(),
                    topic: String::new(),
                    topic_by: None,
                    moderated: false,
                    rooms: Vec::new(),
                })
            })
            .rooms;
        if let Err(at) = rooms.binary_search(&room) {
            rooms.reserve_exact(1);
            rooms.insert(at, room);
        }
    }

    fn room_joined_event(&self, chan: &Chan, room: RemoteChatId) -> RemoteEvent {
        // Sorted by folded nick, so that occupants are announced in a stable order.
        let mut folded: Vec<&String> = chan.members.keys().collect();
        folded.sort_unstable();
        RemoteEvent::RoomJoined {
            room,
            own_nick: self.own_nick(),
            members: folded
                .into_iter()
                .filter_map(|f| chan.members.get(f))
                .map(|(nick, modes)| {
                    let mut m = self.member(nick, modes, chan.moderated);
                    if self.is_me(nick) {
                        m.address = chan.own_address.as_deref().map(str::to_owned);
                    }
                    m
                })
                .collect(),
            subject: chan.topic.clone(),
            subject_by: chan.topic_by.as_deref().map(str::to_owned),
        }
    }

    fn member(&self, nick: &str, modes: &str, moderated: bool) -> Member {
        let (mut role, affiliation) = self.role_of(modes);
        if moderated && role == Role::Participant && affiliation == Affiliation::None {
            role = Role::Visitor;
        }
        Member {
            nick: nick.to_owned(),
            user: Some(self.user_for(nick)),
            role,
            affiliation,
            address: None,
        }
    }

    /// Role and affiliation from the highest prefix mode held.
    fn role_of(&self, modes: &str) -> (Role, Affiliation) {
        let best = self.prefixes.modes().find(|m| modes.contains(*m));
        match best {
            Some('q') => (Role::Moderator, Affiliation::Owner),
            Some('a' | 'o') => (Role::Moderator, Affiliation::Admin),
            Some('h') => (Role::Moderator, Affiliation::Member),
            Some('v') => (Role::Participant, Affiliation::Member),
            _ => (Role::Participant, Affiliation::None),
        }
    }

    /// Tells the client how many channels and queued lines this session has (for the
    /// per-user limits).
    fn publish_counts(&self) {
        let channels = self.channels.len();
        self.shared.channels.store(channels, Ordering::Relaxed);
        self.shared
            .queued
            .store(self.queue.len(), Ordering::Relaxed);
    }

    /// Takes an operation from the client.
    pub fn queue_op(&mut self, op: Op) {
        self.apply_op(op);
        self.publish_counts();
    }

    fn apply_op(&mut self, op: Op) {
        match op {
            Op::Join { channel, key } => {
                let folded = self.fold(&channel);
                if self.channels.contains_key(&folded) {
                    // Already in (or joining), maybe under another spelling: this one's room
                    // gets the channel too; once joined, the core hears so at once.
                    let room = self.room_for(&channel);
                    self.want_channel(&channel, None);
                    if let Some(chan) = self.channels.get(&folded)
                        && chan.state == ChanState::Joined
                    {
                        let event = self.room_joined_event(chan, room);
                        self.emit(event);
                    }
                    return;
                }
                self.want_channel(&channel, key.clone());
                if self.registered {
                    self.push(join_command(&channel, key.as_deref()));
                }
            }
            Op::Part { channel, reason } => {
                let folded = self.fold(&channel);
                let room = self.room_for(&channel);
                // The channel is parted when no spelling of it is left in use.
                let still_used = self.channels.get_mut(&folded).is_some_and(|c| {
                    c.rooms.retain(|r| r != &room);
                    !c.rooms.is_empty()
                });
                if !still_used && self.channels.remove(&folded).is_some() {
                    self.rare().parting.insert(folded);
                    if self.registered {
                        self.push(Command::PART(channel, reason.map(|r| one_line(&r))));
                    }
                }
            }
            Op::Say(say) => {
                let count = say.lines.len();
                let origin = say.origin_id.clone();
                let mut echo = Some(PendingEcho {
                    target: self.fold(&say.target),
                    remaining: count,
                    body: say.body,
                    kind: say.kind,
                    origin_id: say.origin_id,
                    report: say.report_echo,
                    last_id: None,
                });
                let mut gate = Some(say.gate);
                for text in say.lines {
                    let command = match say.kind {
                        MessageKind::Action => {
                            Command::PRIVMSG(say.target.clone(), ctcp_action(&text))
                        }
                        MessageKind::Notice => Command::NOTICE(say.target.clone(), text),
                        MessageKind::Normal => Command::PRIVMSG(say.target.clone(), text),
                    };
                    self.queue.push_back(Line {
                        msg: Message::from(command),
                        echo: echo.take(),
                        origin: origin.clone(),
                        resent: false,
                        gate: gate.take().unwrap_or_default(),
                    });
                }
            }
            Op::Raw(lines) => {
                for line in lines {
                    match line.parse::<Message>() {
                        Ok(msg) => self.queue.push_back(Line::plain(msg)),
                        Err(e) => self.service(format!("Could not send “{line}”: {e}")),
                    }
                }
            }
            Op::Topic {
                channel,
                topic,
                answer,
            } => {
                let op = PendingOp {
                    channel: self.fold(&channel),
                    awaited: Awaited::Topic,
                    answer,
                };
                self.rare().pending_ops.push_back(op);
                self.push(Command::TOPIC(channel, Some(one_line(&topic))))
            }
            Op::Kick {
                channel,
                nick,
                reason,
                answer,
            } => {
                let op = PendingOp {
                    channel: self.fold(&channel),
                    awaited: Awaited::Kick(self.fold(&nick)),
                    answer,
                };
                self.rare().pending_ops.push_back(op);
                self.push(Command::KICK(channel, nick, reason.map(|r| one_line(&r))))
            }
            Op::Standing {
                channel,
                nick,
                change,
                answer,
            } => self.change_standing(channel, nick, change, answer),
            Op::Nick(nick, answer) => {
                self.rare().pending_nicks.push_back((nick.clone(), answer));
                self.push(Command::NICK(nick));
            }
            Op::Invite { channel, nick } => self.push(Command::INVITE(nick, channel)),
            Op::Version { nick, answer } => {
                let folded = self.fold(&nick);
                let versions = &mut self.rare().versions;
                // Answers that never came are given up past a handful.
                if versions.len() >= MAX_VERSION_REQUESTS {
                    versions.remove(0);
                }
                versions.push((folded, answer));
                self.push(Command::PRIVMSG(nick, "\u{1}VERSION\u{1}".to_owned()));
            }
            Op::List(tx) => {
                // Before registration the LIST waits in the queue like any line.
                self.rare().lists.push_back(tx);
                self.push(Command::LIST(None, None));
            }
            Op::Settings(settings) => self.settings = *settings,
            Op::Quit(_) | Op::UserQuit(_) => {}
        }
    }

    /// Plans a member's new prefix modes ([`crate::standing`]) from what the channel knows
    /// they hold, and sends the `MODE`; answered at once when the member is not there, or
    /// when there is nothing to change and we may change modes there, else by the server's
    /// `MODE` or refusal (a change to nothing by a non-op is sent anyway, for the 482).
    fn change_standing(
        &mut self,
        channel: String,
        nick: String,
        change: estuary_bridge_api::StandingChange,
        answer: oneshot::Sender<Result<(), BridgeError>>,
    ) {
        let folded_chan = self.fold(&channel);
        let folded_nick = self.fold(&nick);
        let own = self.fold(&self.own_nick());
        let (held, mine) = match self.channels.get(&folded_chan) {
            Some(chan) if chan.state == ChanState::Joined => {
                let modes = |nick: &str| chan.members.get(nick).map(|(_, m)| m.clone());
                (modes(&folded_nick), modes(&own).unwrap_or_default())
            }
            _ => {
                let _ = answer.send(Err(BridgeError::not_acceptable(format!(
                    "You are not in {channel}: join it first."
                ))));
                return;
            }
        };
        let Some(held) = held else {
            let _ = answer.send(Err(BridgeError::new(
                ErrorKind::NotFound,
                format!("{nick} is not in {channel}."),
            )));
            return;
        };
        match crate::standing::plan(change, &held, &self.prefixes) {
            Err(e) => {
                let _ = answer.send(Err(e));
            }
            Ok(None) if crate::standing::may_change_modes(&mine, &self.prefixes) => {
                let _ = answer.send(Ok(()));
            }
            Ok(planned) => {
                let modes =
                    planned.unwrap_or_else(|| crate::standing::reassert(change, &self.prefixes));
                let mut args = vec![channel];
                args.extend(modes.args(&nick));
                self.rare().pending_ops.push_back(PendingOp {
                    channel: folded_chan,
                    awaited: Awaited::Mode(folded_nick),
                    answer,
                });
                self.push(Command::Raw("MODE".to_owned(), args));
            }
        }
    }

    /// The rarely used parts, made when first needed.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The rarely used state only if it exists: reading, taking and clearing need no box
    /// (a PART or a TOPIC seen would otherwise make one, for nothing).
    fn rare_if_any(&mut self) -> Option<&mut Rare> {
        self.rare.as_deref_mut()
    }

    /// Frees the queues' buffers once they are empty: an idle connection, the usual state
    /// of a puppet, keeps none.
    pub fn release_idle_buffers(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        if self.urgent.is_empty() && self.urgent.capacity() > 0 {
            self.urgent = VecDeque::new();
        }
        if self.echoes.is_empty() && self.echoes.capacity() > 0 {
            self.echoes = VecDeque::new();
        }
    }

    /// The settings the next connection uses.
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The nick was refused at registration (in use or invalid): try with `_` appended.
    pub fn nick_in_use(&mut self) {
        if self.registered {
            match self.rare_if_any().and_then(|r| r.pending_nicks.pop_front()) {
                Some((nick, answer)) => {
                    let _ = answer.send(Err(BridgeError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{nick}: Nickname is already in use (or not valid) on {}.",
                            self.settings.server()
                        ),
                    )));
                }
                None => self.service("That nick is already in use.".into()),
            }
            return;
        }
        self.nick_tries = self.nick_tries.saturating_add(1);
        // nick_, nick__, nick___, then a plain generated nick (the asked one may be invalid).
        let nick = if self.nick_tries <= 3 {
            format!(
                "{}{}",
                self.settings.nick,
                "_".repeat(usize::from(self.nick_tries))
            )
        } else {
            format!("estuary{}", u32::from(self.nick_tries) * 7919 % 100_000)
        };
        if let Ok(mut n) = self.shared.nick.lock() {
            nick.clone_into(&mut n);
        }
        self.urgent.push_back(Message::from(Command::NICK(nick)));
    }

    /// Handles one message from the server.
    pub fn handle_message(&mut self, msg: Message) -> Flow {
        let flow = self.handle(msg);
        self.publish_counts();
        flow
    }

    fn handle(&mut self, msg: Message) -> Flow {
        if self.gather(&msg.command) {
            return Flow::Continue;
        }
        let source = msg.source_nickname().map(str::to_owned);
        let from_server = matches!(msg.prefix, None | Some(Prefix::ServerName(_)));
        let at = tag(&msg, "time").and_then(parse_server_time);
        let msgid = tag(&msg, "msgid").map(str::to_owned);
        match msg.command {
            Command::Response(resp, args) => {
                let origin = match &msg.prefix {
                    Some(Prefix::ServerName(name)) => Some(name.as_str()),
                    _ => None,
                };
                self.handle_numeric(resp, args, origin)
            }
            Command::CAP(..) => {
                let line = String::from(&msg.command);
                self.handle_cap(&params(&line));
            }
            Command::AUTHENTICATE(ref data) if data == "+" => self.send_sasl_credentials(),
            Command::JOIN(ref chan, _, _) => {
                if let Some(nick) = source {
                    self.on_join(chan, &nick, address_of(msg.prefix.as_ref()));
                }
            }
            Command::PART(ref chan, ref reason) => {
                if let Some(nick) = source {
                    self.on_part(chan, &nick, reason.as_deref().map(irc_to_styled));
                }
            }
            Command::QUIT(ref reason) => {
                if let Some(nick) = source {
                    self.on_quit(&nick, reason.as_deref().map(irc_to_styled));
                }
            }
            Command::NICK(ref new) => {
                if let Some(old) = source {
                    self.on_nick(&old, new);
                }
            }
            Command::KICK(ref chan, ref nick, ref reason) => {
                if source.as_deref().is_some_and(|s| self.is_me(s)) {
                    let awaited = Awaited::Kick(self.fold(nick));
                    self.answer_pending(chan, |a| *a == awaited, Ok(()));
                }
                self.on_kick(chan, nick, source, reason.as_deref().map(irc_to_styled));
            }
            Command::ChannelMODE(ref chan, ref modes) => {
                if source.as_deref().is_some_and(|s| self.is_me(s)) {
                    let named: Vec<String> = modes
                        .iter()
                        .filter_map(|m| match m {
                            Mode::Plus(_, Some(arg)) | Mode::Minus(_, Some(arg)) => {
                                Some(self.fold(arg))
                            }
                            _ => None,
                        })
                        .collect();
                    self.answer_pending(
                        chan,
                        |a| matches!(a, Awaited::Mode(n) if named.contains(n)),
                        Ok(()),
                    );
                }
                let by = source
                    .as_deref()
                    .unwrap_or(self.settings.server())
                    .to_owned();
                self.on_mode(chan, modes, Some(&by))
            }
            Command::TOPIC(ref chan, Some(ref topic)) => {
                if source.as_deref().is_some_and(|s| self.is_me(s)) {
                    self.answer_pending(chan, |a| *a == Awaited::Topic, Ok(()));
                }
                let folded = self.fold(chan);
                let subject = irc_to_styled(topic);
                if let Some(c) = self.channels.get_mut(&folded) {
                    c.topic.clone_from(&subject);
                    c.topic_by = source.as_deref().map(Box::from);
                    for room in self.rooms_of(chan) {
                        self.emit(RemoteEvent::SubjectChanged {
                            room,
                            subject: subject.clone(),
                            by: source.clone(),
                        });
                    }
                }
            }
            Command::PRIVMSG(ref target, ref text) => {
                self.on_text(target, text, source, from_server, false, at, msgid);
            }
            Command::NOTICE(ref target, ref text) => {
                self.on_text(target, text, source, from_server, true, at, msgid);
            }
            Command::INVITE(ref nick, ref chan) => {
                if self.is_me(nick) && is_channel_name(chan) {
                    let room = self.room_for(chan);
                    let by = source.map(|s| self.user_for(&s));
                    self.emit(RemoteEvent::Invited {
                        room,
                        by,
                        reason: None,
                    });
                } else {
                    // invite-notify: someone else was invited.
                    let who = source.unwrap_or_else(|| "Someone".into());
                    self.service(format!("{who} invites {nick} to {chan}."));
                }
            }
            Command::PING(ref token, _) => {
                let pong = Command::PONG(token.clone(), None);
                self.urgent.push_back(Message::from(pong));
            }
            Command::PONG(ref first, ref second) => {
                if let Some(rare) = self.rare_if_any() {
                    for token in [Some(first.as_str()), second.as_deref()]
                        .into_iter()
                        .flatten()
                    {
                        rare.in_flight.on_pong(token);
                    }
                }
            }
            Command::ERROR(ref text) => return Flow::Stop(text.clone()),
            _ => {}
        }
        Flow::Continue
    }

    /// Gathers the numerics of a WHOIS or LUSERS answer into one message for the server's
    /// JID ([`replies`]); true if `command` was one of them.
    fn gather(&mut self, command: &Command) -> bool {
        let numeric = match command {
            Command::Response(resp, args) => Some((*resp as u16, args)),
            Command::Raw(code, args) if code.len() == 3 => {
                code.parse::<u16>().ok().map(|code| (code, args))
            }
            _ => None,
        };
        let open = self
            .rare_if_any()
            .and_then(|r| r.gathering.as_ref().map(Gathering::kind));
        let kind = numeric.and_then(|(code, _)| replies::kind_of(code));
        // A LUSERS answer ends at the first line that is not part of it.
        if open == Some(Kind::Lusers) && kind != Some(Kind::Lusers) {
            self.flush_gathering();
        }
        let (Some((code, args)), Some(kind)) = (numeric, kind) else {
            return false;
        };
        // 301 also answers a message to someone away: part of a WHOIS only during one.
        if code == 301 && open != Some(Kind::Whois) {
            return false;
        }
        if open.is_some_and(|o| o != kind) {
            self.flush_gathering();
        }
        let done = self
            .rare()
            .gathering
            .get_or_insert_with(|| Gathering::new(kind))
            .add(code, args);
        if done {
            self.flush_gathering();
        }
        true
    }

    /// Sends the answer gathered so far, if any, to the server's JID.
    fn flush_gathering(&mut self) {
        let gathered = self.rare_if_any().and_then(|r| r.gathering.take());
        if let Some(text) = gathered.and_then(Gathering::into_text) {
            self.service(irc_to_styled(&text));
        }
    }

    fn handle_cap(&mut self, p: &[String]) {
        // CAP <target> <sub> [*] :<caps>
        let sub = p.get(2).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let more = p.len() > 4 && p.get(3).is_some_and(|s| s == "*");
        let cap_list = p.last().cloned().unwrap_or_default();
        match sub.as_str() {
            "LS" => {
                let kept = &mut self.rare().cap_ls;
                let room = caps::CAP_LS_ENTRIES.saturating_sub(kept.len());
                kept.extend(cap_list.split_whitespace().take(room).map(|c| c.to_owned()));
                if more {
                    return;
                }
                let has_sasl_password = self.settings.sasl_password().is_some();
                let offered: HashSet<&str> = self
                    .rare()
                    .cap_ls
                    .iter()
                    .map(|c| c.split('=').next().unwrap_or(c))
                    .collect();
                let mut req: Vec<&str> = WANTED_CAPS
                    .iter()
                    .copied()
                    .filter(|c| offered.contains(c))
                    .collect();
                if has_sasl_password && offered.contains("sasl") {
                    req.push("sasl");
                }
                if req.is_empty() {
                    self.cap_end();
                } else {
                    self.urgent
                        .push_back(cap_line(&format!("REQ :{}", req.join(" "))));
                }
            }
            "ACK" => {
                let acked: Vec<&str> = cap_list.split_whitespace().collect();
                if acked.contains(&"echo-message") {
                    self.shared.echo.store(true, Ordering::SeqCst);
                }
                if acked.contains(&"sasl") && self.settings.sasl_password().is_some() {
                    self.sasl_pending = true;
                    self.urgent
                        .push_back(Message::from(Command::AUTHENTICATE("PLAIN".into())));
                } else if !self.sasl_pending {
                    self.cap_end();
                }
            }
            "NAK" if !self.sasl_pending => self.cap_end(),
            _ => {}
        }
    }

    fn cap_end(&mut self) {
        if !self.cap_done {
            self.cap_done = true;
            self.urgent.push_back(cap_line("END"));
        }
        // Not needed again on this connection.
        if let Some(rare) = self.rare_if_any() {
            rare.cap_ls = Vec::new();
        }
    }

    fn send_sasl_credentials(&mut self) {
        let Some(password) = self.settings.sasl_password().map(str::to_owned) else {
            self.urgent
                .push_back(Message::from(Command::AUTHENTICATE("*".into())));
            return;
        };
        let account = &self.settings.nick;
        let blob = base64(format!("{account}\0{account}\0{password}").as_bytes());
        // AUTHENTICATE takes at most 400 bytes per line; a final exact 400 needs a "+".
        let chunks: Vec<&str> = blob
            .as_bytes()
            .chunks(400)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        for chunk in &chunks {
            self.urgent
                .push_back(Message::from(Command::AUTHENTICATE((*chunk).to_owned())));
        }
        if blob.len().is_multiple_of(400) {
            self.urgent
                .push_back(Message::from(Command::AUTHENTICATE("+".into())));
        }
    }

    /// `origin` is the server that sent it (the prefix), named before the text of a reply
    /// shown as is (`irc.example.net: …`, as Biboumi shows them).
    fn handle_numeric(&mut self, resp: Response, args: Vec<String>, origin: Option<&str>) {
        let text = args.last().cloned().unwrap_or_default();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        match resp {
            Response::RPL_WELCOME => {
                self.registered = true;
                self.registered_at = clock_secs();
                self.cap_done = true;
                if let (Some(nick), Ok(mut n)) = (args.first(), self.shared.nick.lock()) {
                    n.clone_from(nick);
                }
                self.shared.registered.store(true, Ordering::SeqCst);
                self.emit(RemoteEvent::LoginState(LoginState::Connected));
                self.emit(RemoteEvent::ServiceState {
                    service: self.settings.server().to_owned(),
                    online: true,
                });
                if let Some(pw) = self.settings.nickserv_password().map(str::to_owned) {
                    self.urgent.push_back(Message::from(Command::PRIVMSG(
                        "NickServ".into(),
                        format!("IDENTIFY {}", one_line(&pw)),
                    )));
                }
                // The user's after-connect commands (Biboumi's), as raw lines, in order;
                // one that does not parse as IRC is skipped with a word to the user.
                for raw in self.settings.after_connect().to_vec() {
                    match one_line(&raw).trim().parse::<Message>() {
                        Ok(msg) => self.urgent.push_back(msg),
                        Err(e) => self.emit(RemoteEvent::ServiceMessage {
                            service: Some(self.settings.server().to_owned()),
                            body: format!("The after-connect command “{raw}” is not an IRC line ({e}); it was not sent."),
                        }),
                    }
                }
                // (Re)join every channel, JOINs first in the queue.
                // In the order the user asked for them (Biboumi answers joins in that order).
                let mut chans: Vec<&Chan> = self.channels.values().map(|c| &**c).collect();
                chans.sort_by_key(|c| c.asked);
                let joins: Vec<Command> = chans
                    .into_iter()
                    .map(|c| join_command(&c.name, c.key.as_deref()))
                    .collect();
                for cmd in joins.into_iter().rev() {
                    self.queue.push_front(Line::plain(Message::from(cmd)));
                }
                if !self.shared.echo.load(Ordering::SeqCst) {
                    // No echo-message on this connection: echoes awaited from the last
                    // one will not come.
                    self.echoes.clear();
                }
            }
            Response::RPL_ISUPPORT => {
                for token in &args[1.min(args.len())..] {
                    if let Some(v) = token.strip_prefix("CASEMAPPING=") {
                        if let Ok(mut cm) = self.shared.casemapping.lock() {
                            *cm = CaseMapping::from_isupport(v);
                        }
                    } else if let Some(p) = token.strip_prefix("PREFIX=").and_then(Prefixes::parse)
                    {
                        self.prefixes = p;
                    }
                }
            }
            Response::RPL_YOURHOST
            | Response::RPL_CREATED
            | Response::RPL_MYINFO
            | Response::RPL_NOTOPIC
            | Response::RPL_LISTSTART => {}
            Response::RPL_MOTDSTART | Response::RPL_MOTD => {
                let rare = self.rare();
                rare.motd_lines = rare.motd_lines.saturating_add(1);
                if rare.motd_lines <= caps::MOTD_LINES {
                    rare.motd.push_str(&irc_to_styled(&text));
                    rare.motd.push('\n');
                }
            }
            Response::RPL_ENDOFMOTD | Response::ERR_NOMOTD => {
                let rare = self.rare();
                let mut motd = std::mem::take(&mut rare.motd);
                let left_out =
                    std::mem::take(&mut rare.motd_lines).saturating_sub(caps::MOTD_LINES);
                if left_out > 0 {
                    motd.push_str(&format!(
                        "({left_out} more line(s) of the message of the day left out)"
                    ));
                }
                if !motd.trim().is_empty() {
                    self.service(motd.trim_end().to_owned());
                }
            }
            Response::RPL_CHANNELMODEIS => {
                // MODE #chan answered: +m makes the unvoiced visitors.
                let chan = arg(1);
                let moderated = args
                    .get(2)
                    .is_some_and(|m| m.starts_with('+') && m.contains('m'));
                let modes = vec![if moderated {
                    Mode::Plus(ChannelMode::Moderated, None)
                } else {
                    Mode::Minus(ChannelMode::Moderated, None)
                }];
                let folded = self.fold(&chan);
                let parting = self
                    .rare_if_any()
                    .is_some_and(|r| r.parting.contains(&folded));
                if self.channels.contains_key(&folded) {
                    self.on_mode(&chan, &modes, None);
                } else if parting {
                    // The answer to the join's own MODE query for a channel left before it
                    // came (a quick leave): not the user's question, so not told.
                    debug!(channel = %chan, "modes of a channel being parted");
                } else {
                    let rest: Vec<&str> = args.iter().skip(2).map(String::as_str).collect();
                    self.service(format!("{chan}: {}", rest.join(" ")));
                }
            }
            Response::RPL_TOPIC => {
                let folded = self.fold(&arg(1));
                if let Some(c) = self.channels.get_mut(&folded) {
                    c.topic = irc_to_styled(&text);
                }
            }
            Response::RPL_TOPICWHOTIME => {
                // `<me> <channel> <nick>[!user@host] <time>`
                let folded = self.fold(&arg(1));
                let setter = arg(2);
                let nick = setter.split('!').next().unwrap_or_default();
                if let Some(c) = self.channels.get_mut(&folded)
                    && !nick.is_empty()
                {
                    c.topic_by = Some(Box::from(nick));
                }
            }
            Response::RPL_NAMREPLY => {
                let folded = self.fold(&arg(2));
                let prefixes = self.prefixes;
                let cm = self.casemapping();
                if let Some(c) = self.channels.get_mut(&folded) {
                    for entry in text.split_whitespace() {
                        let (nick, modes) = prefixes.split(entry);
                        let folded_nick = cm.fold(&nick);
                        if c.members.len() < caps::NAMES_PER_CHANNEL
                            || c.members.contains_key(&folded_nick)
                        {
                            c.members.insert(folded_nick, (nick, modes));
                        }
                    }
                }
            }
            Response::RPL_ENDOFNAMES => {
                let folded = self.fold(&arg(1));
                let events: Vec<RemoteEvent> = match self.channels.get_mut(&folded) {
                    Some(c) if c.state == ChanState::Joining => {
                        c.state = ChanState::Joined;
                        self.channels
                            .get(&folded)
                            .map(|c| {
                                c.rooms
                                    .iter()
                                    .map(|room| self.room_joined_event(c, room.clone()))
                                    .collect()
                            })
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                self.events.extend(events);
            }
            Response::RPL_LIST => {
                if self.rare().listing.len() >= caps::LIST_ENTRIES {
                    let rare = self.rare();
                    rare.listing_dropped = rare.listing_dropped.saturating_add(1);
                    return;
                }
                let room = RoomInfo {
                    id: self.room_for(&arg(1)),
                    name: arg(1),
                    members: arg(2).parse().ok(),
                    topic: Some(irc_to_styled(&text)).filter(|t| !t.is_empty()),
                };
                self.rare().listing.push(room);
            }
            Response::RPL_LISTEND => {
                let rooms = std::mem::take(&mut self.rare().listing);
                let dropped = std::mem::take(&mut self.rare().listing_dropped);
                if dropped > 0 {
                    warn!(kept = rooms.len(), dropped, "channel list cut");
                    self.service(format!(
                        "The channel list was cut at {} channels ({dropped} more left out).",
                        rooms.len()
                    ));
                }
                if let Some(tx) = self.rare().lists.pop_front() {
                    let _ = tx.send(rooms);
                }
            }
            Response::RPL_SASLSUCCESS => {
                self.sasl_pending = false;
                self.cap_end();
            }
            Response::ERR_SASLFAIL | Response::ERR_SASLTOOLONG | Response::ERR_NICKLOCKED => {
                self.sasl_pending = false;
                self.emit(RemoteEvent::LoginState(LoginState::BadCredentials(
                    format!("{}: SASL login failed: {text}", self.settings.server()),
                )));
                self.cap_end();
            }
            Response::RPL_LOGGEDIN | Response::RPL_LOGGEDOUT => self.service(text),
            Response::RPL_AWAY => {
                let away = replies::line(301, &args).unwrap_or_default();
                self.service(irc_to_styled(&away));
            }
            Response::ERR_CHANNELISFULL
            | Response::ERR_INVITEONLYCHAN
            | Response::ERR_BANNEDFROMCHAN
            | Response::ERR_BADCHANNELKEY
            | Response::ERR_NOSUCHCHANNEL
            | Response::ERR_TOOMANYCHANNELS
            | Response::ERR_BADCHANMASK => {
                let chan = arg(1);
                let folded = self.fold(&chan);
                let joining = self
                    .channels
                    .get(&folded)
                    .is_some_and(|c| c.state == ChanState::Joining);
                if joining {
                    let rooms = self.rooms_of(&chan);
                    self.channels.remove(&folded);
                    let error = BridgeError::new(join_error_kind(resp), format!("{chan}: {text}"));
                    for room in rooms {
                        self.emit(RemoteEvent::RoomJoinFailed {
                            room,
                            error: error.clone(),
                        });
                    }
                } else if !(resp == Response::ERR_NOSUCHCHANNEL
                    && (self.refuse_pending(&chan, None, &text)
                        || self.refuse_line(&chan, ErrorKind::NotFound, &text)))
                {
                    self.service(format!("{chan}: {text}"));
                }
            }
            // Our INVITE went through (`341 me nick #chan`).
            Response::RPL_INVITING if args.len() >= 3 => {
                self.service(format!("{} has been invited to {}", arg(1), arg(2)));
            }
            Response::ERR_NICKNAMEINUSE | Response::ERR_ERRONEOUSNICKNAME => self.nick_in_use(),
            Response::ERR_CHANOPRIVSNEEDED | Response::ERR_NOTONCHANNEL
                if self.refuse_pending(&arg(1), None, &text) => {}
            Response::ERR_USERNOTINCHANNEL
                if self.refuse_pending(&arg(2), Some(&arg(1)), &text) => {}
            Response::ERR_NOSUCHNICK if self.refuse_kick_of(&arg(1), &text) => {}
            Response::ERR_NOSUCHNICK if self.refuse_line(&arg(1), ErrorKind::NotFound, &text) => {}
            Response::ERR_CANNOTSENDTOCHAN
                if self.refuse_line(&arg(1), ErrorKind::Forbidden, &text) => {}
            _ => {
                // Anything else with text goes to the server's JID, as Biboumi does: after
                // the name of the server that answered.
                let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
                if !rest.is_empty() {
                    let text = irc_to_styled(&rest.join(" "));
                    self.service(match origin {
                        Some(server) => format!("{server}: {text}"),
                        None => text,
                    });
                }
            }
        }
    }

    /// Answers the oldest pending operation on `chan` that `matches`; true if there was one.
    fn answer_pending(
        &mut self,
        chan: &str,
        matches: impl Fn(&Awaited) -> bool,
        answer: Result<(), BridgeError>,
    ) -> bool {
        let folded = self.fold(chan);
        self.forget_abandoned_ops();
        let Some(ops) = self.rare_if_any().map(|r| &mut r.pending_ops) else {
            return false;
        };
        let Some(i) = ops
            .iter()
            .position(|p| p.channel == folded && matches(&p.awaited))
        else {
            return false;
        };
        if let Some(op) = ops.remove(i) {
            let _ = op.answer.send(answer);
        }
        true
    }

    /// A refusal numeric about `chan` (and `nick`, for 441): refuses the oldest pending
    /// operation it can be about, with the server's text. False when none was waiting (the
    /// numeric then goes to the server's JID as usual).
    fn refuse_pending(&mut self, chan: &str, nick: Option<&str>, text: &str) -> bool {
        let nick = nick.map(|n| self.fold(n));
        let kind = if nick.is_some() {
            ErrorKind::NotFound
        } else {
            ErrorKind::Forbidden
        };
        let error = refusal(kind, chan, text);
        self.answer_pending(
            chan,
            |a| match (&nick, a) {
                (Some(n), Awaited::Kick(k) | Awaited::Mode(k)) => n == k,
                (Some(_), Awaited::Topic) => false,
                (None, _) => true,
            },
            Err(error),
        )
    }

    /// Drops the operations nobody waits for any more (the client gave up after its
    /// timeout: some servers answer nothing when nothing changes), so that a later refusal
    /// is not taken as the answer to one of them.
    fn forget_abandoned_ops(&mut self) {
        if let Some(rare) = self.rare_if_any() {
            rare.pending_ops.retain(|p| !p.answer.is_closed());
        }
    }

    /// 401 (no such nick) for a nick we asked to kick: refuses that kick.
    fn refuse_kick_of(&mut self, nick: &str, text: &str) -> bool {
        self.forget_abandoned_ops();
        let folded = self.fold(nick);
        let Some(ops) = self.rare_if_any().map(|r| &mut r.pending_ops) else {
            return false;
        };
        let Some(i) = ops.iter().position(
            |p| matches!(&p.awaited, Awaited::Kick(k) | Awaited::Mode(k) if *k == folded),
        ) else {
            return false;
        };
        if let Some(op) = ops.remove(i) {
            let _ = op
                .answer
                .send(Err(refusal(ErrorKind::NotFound, nick, text)));
        }
        true
    }

    fn on_join(&mut self, chan: &str, nick: &str, address: Option<String>) {
        let folded = self.fold(chan);
        if self.is_me(nick) {
            // Also covers joins the server forced on us (shown as the server spells them),
            // up to a cap: past it, the channel is parted at once.
            if !self.channels.contains_key(&folded) {
                if self.forced_joins >= caps::FORCED_JOINS {
                    if self.forced_joins == caps::FORCED_JOINS {
                        self.service(format!(
                            "The server joined you to more than {} channels you did not ask for; leaving the others ({chan} first).",
                            caps::FORCED_JOINS
                        ));
                    }
                    self.forced_joins = self.forced_joins.saturating_add(1);
                    self.push(Command::PART(chan.to_owned(), None));
                    return;
                }
                self.forced_joins += 1;
                self.want_channel(chan, None);
            }
            if let Some(c) = self.channels.get_mut(&folded) {
                c.name = chan.to_owned();
                c.own_address = address.map(String::into_boxed_str);
            }
            // The channel's modes (324) say whether it is moderated.
            self.push(Command::Raw("MODE".into(), vec![chan.to_owned()]));
            return;
        }
        let nick_folded = self.fold(nick);
        let Some(c) = self.channels.get_mut(&folded) else {
            return;
        };
        if c.members.len() >= caps::NAMES_PER_CHANNEL && !c.members.contains_key(&nick_folded) {
            return;
        }
        c.members
            .insert(nick_folded, (nick.to_owned(), String::new()));
        if c.state == ChanState::Joined {
            let moderated = c.moderated;
            let mut member = self.member(nick, "", moderated);
            member.address = address;
            for room in self.rooms_of(chan) {
                self.emit(RemoteEvent::MemberChanged {
                    room,
                    change: MemberChange::Joined(member.clone()),
                });
            }
        }
    }

    fn on_part(&mut self, chan: &str, nick: &str, reason: Option<String>) {
        let folded = self.fold(chan);
        let rooms = self.rooms_of(chan);
        if self.is_me(nick) {
            if self
                .rare_if_any()
                .is_some_and(|r| r.parting.remove(&folded))
            {
                return;
            }
            if self.channels.remove(&folded).is_some() {
                for room in rooms {
                    self.emit(RemoteEvent::RoomLeft {
                        room,
                        reason: reason.clone(),
                    });
                }
            }
            return;
        }
        let change = MemberChange::Left {
            nick: nick.to_owned(),
            reason,
        };
        self.member_gone(&folded, rooms, nick, change);
    }

    fn on_quit(&mut self, nick: &str, reason: Option<String>) {
        let nick_folded = self.fold(nick);
        let mut events = Vec::new();
        for c in self.channels.values_mut() {
            if c.members.remove(&nick_folded).is_some() && c.state == ChanState::Joined {
                events.extend(c.rooms.iter().map(|room| RemoteEvent::MemberChanged {
                    room: room.clone(),
                    change: MemberChange::Left {
                        nick: nick.to_owned(),
                        reason: reason.clone(),
                    },
                }));
            }
        }
        self.events.extend(events);
    }

    fn on_nick(&mut self, old: &str, new: &str) {
        let me = self.is_me(old);
        if me && let Ok(mut n) = self.shared.nick.lock() {
            new.clone_into(&mut n);
        }
        if me {
            // The oldest nick change asked for is answered (a forced one answers nothing).
            let cm = self.casemapping();
            if let Some(nicks) = self.rare_if_any().map(|r| &mut r.pending_nicks)
                && let Some(i) = nicks.iter().position(|(n, _)| cm.fold(n) == cm.fold(new))
                && let Some((_, answer)) = nicks.remove(i)
            {
                let _ = answer.send(Ok(()));
            }
        }
        let cm = self.casemapping();
        let (old_f, new_f) = (cm.fold(old), cm.fold(new));
        let mut events = Vec::new();
        for c in self.channels.values_mut() {
            if let Some((_, modes)) = c.members.remove(&old_f) {
                c.members.insert(new_f.clone(), (new.to_owned(), modes));
                if c.state == ChanState::Joined {
                    events.extend(c.rooms.iter().map(|room| RemoteEvent::MemberChanged {
                        room: room.clone(),
                        change: MemberChange::Renamed {
                            old: old.to_owned(),
                            new: new.to_owned(),
                        },
                    }));
                }
            }
        }
        self.events.extend(events);
    }

    /// A CTCP VERSION reply from `nick`: to whoever asked, oldest first.
    fn version_reply(&mut self, nick: &str, text: &str) {
        let folded = self.fold(nick);
        let Some(rare) = self.rare_if_any() else {
            return;
        };
        if let Some(at) = rare.versions.iter().position(|(n, _)| *n == folded) {
            let (_, answer) = rare.versions.remove(at);
            let _ = answer.send(text.to_owned());
        }
    }

    fn on_kick(&mut self, chan: &str, nick: &str, by: Option<String>, reason: Option<String>) {
        let folded = self.fold(chan);
        let rooms = self.rooms_of(chan);
        if self.is_me(nick) {
            // In the room as far as the core knows: a kick of our own nick, which the core
            // shows with 307 and 110. Still joining: the join simply ended.
            let joined = self
                .channels
                .get(&folded)
                .is_some_and(|c| c.state == ChanState::Joined);
            if joined {
                self.channels.remove(&folded);
                for room in rooms {
                    self.emit(RemoteEvent::MemberChanged {
                        room,
                        change: MemberChange::Kicked {
                            nick: nick.to_owned(),
                            by: by.clone(),
                            reason: reason.clone(),
                        },
                    });
                }
            } else if self.channels.remove(&folded).is_some() {
                let reason = Some(match (by, reason) {
                    (Some(by), Some(r)) => format!("Kicked by {by}: {r}"),
                    (Some(by), None) => format!("Kicked by {by}"),
                    (None, Some(r)) => format!("Kicked: {r}"),
                    (None, None) => "Kicked".to_owned(),
                });
                for room in rooms {
                    self.emit(RemoteEvent::RoomLeft {
                        room,
                        reason: reason.clone(),
                    });
                }
            }
            return;
        }
        let change = MemberChange::Kicked {
            nick: nick.to_owned(),
            by,
            reason,
        };
        self.member_gone(&folded, rooms, nick, change);
    }

    /// Removes `nick` from a channel's members and, once the channel is joined, reports
    /// how they went (part or kick).
    fn member_gone(
        &mut self,
        folded: &str,
        rooms: Vec<RemoteChatId>,
        nick: &str,
        change: MemberChange,
    ) {
        let nick_folded = self.fold(nick);
        if let Some(c) = self.channels.get_mut(folded)
            && c.members.remove(&nick_folded).is_some()
            && c.state == ChanState::Joined
        {
            for room in rooms {
                self.emit(RemoteEvent::MemberChanged {
                    room,
                    change: change.clone(),
                });
            }
        }
    }

    /// A channel's modes changed (`by` someone: told in the room) or were read (`None`).
    fn on_mode(&mut self, chan: &str, modes: &[Mode<ChannelMode>], by: Option<&str>) {
        let folded = self.fold(chan);
        let cm = self.casemapping();
        let mut changed = Vec::new();
        let Some(c) = self.channels.get_mut(&folded) else {
            return;
        };
        // Every change is told in the room, as Biboumi does: "Mode #chan [+v bob] by alice".
        if let Some(by) = by
            && c.state == ChanState::Joined
            && !modes.is_empty()
        {
            let body = format!("Mode {chan} [{}] by {by}", mode_text(modes));
            for room in c.rooms.clone() {
                self.events.push(RemoteEvent::RoomNotice {
                    room,
                    body: irc_to_styled(&body),
                });
            }
        }
        for mode in modes {
            let (plus, m, arg) = match mode {
                Mode::Plus(m, arg) => (true, m, arg),
                Mode::Minus(m, arg) => (false, m, arg),
                Mode::NoPrefix(_) => continue,
            };
            if *m == ChannelMode::Moderated {
                if c.moderated != plus {
                    c.moderated = plus;
                    // Everyone without a prefix mode changes role (in a stable order).
                    let mut plain: Vec<(String, String)> = c
                        .members
                        .values()
                        .filter(|(_, held)| held.is_empty())
                        .cloned()
                        .collect();
                    plain.sort_unstable();
                    changed.extend(plain);
                }
                continue;
            }
            let letter = match m {
                ChannelMode::Founder => 'q',
                ChannelMode::Admin => 'a',
                ChannelMode::Oper => 'o',
                ChannelMode::Halfop => 'h',
                ChannelMode::Voice => 'v',
                _ => continue,
            };
            let Some(nick) = arg else { continue };
            if let Some((shown, held)) = c.members.get_mut(&cm.fold(nick)) {
                if plus && !held.contains(letter) {
                    held.push(letter);
                } else if !plus {
                    held.retain(|x| x != letter);
                }
                // One presence per member and MODE line, with where they end up
                // (`+v-o bob bob` is one change, as Biboumi tells it).
                match changed.iter_mut().find(|(n, _)| n == shown) {
                    Some(entry) => entry.1.clone_from(held),
                    None => changed.push((shown.clone(), held.clone())),
                }
            }
        }
        if c.state != ChanState::Joined {
            return;
        }
        let moderated = c.moderated;
        let rooms = self.rooms_of(chan);
        for (nick, held) in changed {
            let member = self.member(&nick, &held, moderated);
            for room in &rooms {
                self.emit(RemoteEvent::MemberChanged {
                    room: room.clone(),
                    change: MemberChange::Joined(member.clone()),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_text(
        &mut self,
        target: &str,
        text: &str,
        source: Option<String>,
        from_server: bool,
        notice: bool,
        at: Option<SystemTime>,
        msgid: Option<String>,
    ) {
        let (Some(nick), false) = (source, from_server) else {
            // Server notices (also before registration) come from the server's JID.
            self.service(irc_to_styled(text));
            return;
        };
        if self.is_me(&nick) {
            // Our own line, echoed: it and every line before it reached the server.
            let folded = self.fold(target);
            if let Some(rare) = self.rare_if_any() {
                rare.in_flight.on_echo(&folded);
            }
        }
        let mut kind = if notice {
            MessageKind::Notice
        } else {
            MessageKind::Normal
        };
        let mut body = text;
        if let Some(ctcp) = parse_ctcp(text) {
            if ctcp.command.eq_ignore_ascii_case("ACTION") {
                kind = MessageKind::Action;
                body = ctcp.args;
            } else {
                if notice && ctcp.command.eq_ignore_ascii_case("VERSION") {
                    self.version_reply(&nick, ctcp.args);
                }
                if !notice && !self.is_me(&nick) {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    if let Some(reply) = ctcp_reply(&ctcp, &self.settings.profile.version, now) {
                        self.push(Command::NOTICE(nick.clone(), reply));
                    }
                }
                debug!(command = ctcp.command, "CTCP");
                return;
            }
        }
        let is_from_me = self.is_me(&nick);
        // A private notice that starts with "[#chan]" (ChanServ's greetings, say) is shown
        // in that channel's room when we are in it, as Biboumi does.
        let bracketed = (notice && !is_channel_name(target))
            .then(|| bracketed_channel(body))
            .flatten()
            .filter(|c| self.channels.contains_key(&self.fold(c)));
        let target = bracketed.unwrap_or(target);
        let channel = is_channel_name(target);
        if is_from_me && bracketed.is_none() && self.take_echo(target, msgid.clone()) {
            return;
        }
        let chats: Vec<ChatKey> = if channel {
            self.rooms_of(target)
                .into_iter()
                .map(ChatKey::Room)
                .collect()
        } else if is_from_me {
            // Our own private message, echoed: the chat is the target's.
            vec![ChatKey::Direct(self.user_for(target))]
        } else if self.is_me(target) {
            vec![ChatKey::Direct(self.user_for(&nick))]
        } else {
            // A message to a mask or to someone else ($*, opers): from the server.
            self.service(format!("{nick}: {}", irc_to_styled(body)));
            return;
        };
        let sender = Sender {
            user: self.user_for(&nick),
            nick: channel.then(|| nick.clone()),
            is_from_me,
        };
        let body = if notice && channel {
            // Marked in the room, where it would otherwise look like any message.
            format!("[notice] {}", irc_to_styled(body))
        } else {
            irc_to_styled(body)
        };
        for chat in chats {
            self.emit(RemoteEvent::Message(RemoteMessage {
                chat,
                sender: sender.clone(),
                id: msgid.clone().map(RemoteMessageId::new),
                body: body.clone(),
                attachments: Vec::new(),
                kind,
                at,
                reply_to: None,
                echo_of: None,
            }));
        }
    }

    /// An echo of our own line: counts it against the pending message; true when it was
    /// one of ours (and is reported once, whole, after its last line).
    fn take_echo(&mut self, target: &str, msgid: Option<String>) -> bool {
        let folded = self.fold(target);
        let Some(pos) = self.echoes.iter().position(|e| e.target == folded) else {
            return false;
        };
        let Some(echo) = self.echoes.get_mut(pos) else {
            return false;
        };
        echo.remaining = echo.remaining.saturating_sub(1);
        if msgid.is_some() {
            echo.last_id = msgid;
        }
        if echo.remaining > 0 {
            return true;
        }
        let Some(echo) = self.echoes.remove(pos) else {
            return true;
        };
        if !echo.report {
            return true;
        }
        let nick = self.own_nick();
        let channel = is_channel_name(target);
        let chats: Vec<ChatKey> = if channel {
            self.rooms_of(target)
                .into_iter()
                .map(ChatKey::Room)
                .collect()
        } else {
            vec![ChatKey::Direct(self.user_for(target))]
        };
        let sender = Sender {
            user: self.user_for(&nick),
            nick: channel.then_some(nick),
            is_from_me: true,
        };
        for chat in chats {
            self.emit(RemoteEvent::Message(RemoteMessage {
                chat,
                sender: sender.clone(),
                id: echo.last_id.clone().map(RemoteMessageId::new),
                body: echo.body.clone(),
                attachments: Vec::new(),
                kind: echo.kind,
                at: None,
                reply_to: None,
                echo_of: echo.origin_id.clone(),
            }));
        }
        true
    }
}

/// The error for a refused topic change or kick: the server's own text, after what it is
/// about (`#chan: You're not a channel operator`).
fn refusal(kind: ErrorKind, about: &str, text: &str) -> BridgeError {
    let text = irc_to_styled(text);
    let text = if text.trim().is_empty() {
        "The IRC server refused it.".to_owned()
    } else {
        text
    };
    BridgeError::new(kind, format!("{about}: {text}"))
}

/// Whole seconds since the first call in this process, plus one (so that 0 can mean
/// "never"): a clock that fits four bytes.
fn clock_secs() -> u32 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u32::try_from(start.elapsed().as_secs())
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

/// The target of a line that carries text (PRIVMSG, NOTICE): the lines kept until the
/// server confirms them.
fn text_target(msg: &Message) -> Option<&str> {
    match &msg.command {
        Command::PRIVMSG(target, _) | Command::NOTICE(target, _) => Some(target),
        _ => None,
    }
}

fn join_error_kind(resp: Response) -> ErrorKind {
    match resp {
        Response::ERR_BADCHANNELKEY => ErrorKind::NotAuthorized,
        Response::ERR_BANNEDFROMCHAN | Response::ERR_INVITEONLYCHAN => ErrorKind::Forbidden,
        Response::ERR_CHANNELISFULL => ErrorKind::ServiceUnavailable,
        Response::ERR_NOSUCHCHANNEL | Response::ERR_BADCHANMASK => ErrorKind::NotFound,
        Response::ERR_TOOMANYCHANNELS => ErrorKind::ResourceConstraint,
        _ => ErrorKind::Forbidden,
    }
}

fn join_command(channel: &str, key: Option<&str>) -> Command {
    Command::JOIN(channel.to_owned(), key.map(one_line), None)
}

/// Text made safe for one IRC argument: sanitized, line breaks as spaces.
pub(crate) fn one_line(text: &str) -> String {
    sanitize(text).replace('\n', " ")
}

fn cap_line(rest: &str) -> Message {
    match format!("CAP {rest}").parse::<Message>() {
        Ok(m) => m,
        Err(e) => {
            warn!(%e, "bad CAP line");
            Message::from(Command::Raw("CAP".into(), vec!["END".into()]))
        }
    }
}

/// Splits a serialized command into its parameters (the last may follow `:`).
/// The channel a text starts with in brackets (`[#chan] welcome`), if any.
fn bracketed_channel(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('[')?;
    let (name, _) = inner.split_once(']')?;
    (is_channel_name(name) && !name.contains(' ')).then_some(name)
}

/// Channel mode changes as the server wrote them: `+o-v alice bob`.
fn mode_text(modes: &[Mode<ChannelMode>]) -> String {
    let mut letters = String::new();
    let mut args = Vec::new();
    let mut sign = None;
    for mode in modes {
        let (plus, m, arg) = match mode {
            Mode::Plus(m, arg) => (Some(true), m, arg),
            Mode::Minus(m, arg) => (Some(false), m, arg),
            Mode::NoPrefix(m) => (None, m, &None),
        };
        if plus.is_some() && plus != sign {
            letters.push(if plus == Some(true) { '+' } else { '-' });
            sign = plus;
        }
        letters.push_str(&m.to_string());
        if let Some(a) = arg {
            args.push(a.as_str());
        }
    }
    std::iter::once(letters.as_str())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `user@host` from a `nick!user@host` prefix, when the server gave either part.
fn address_of(prefix: Option<&Prefix>) -> Option<String> {
    match prefix {
        Some(Prefix::Nickname(_, user, host)) if !user.is_empty() || !host.is_empty() => {
            Some(format!("{user}@{host}"))
        }
        _ => None,
    }
}

fn params(line: &str) -> Vec<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (head, trailing) = match line.split_once(" :") {
        Some((h, t)) => (h, Some(t)),
        None => (line, None),
    };
    let mut out: Vec<String> = head.split_whitespace().map(str::to_owned).collect();
    if let Some(t) = trailing {
        out.push(t.to_owned());
    }
    out
}

fn tag<'m>(msg: &'m Message, name: &str) -> Option<&'m str> {
    msg.tags
        .as_ref()?
        .iter()
        .find(|t| t.0 == name)
        .and_then(|t| t.1.as_deref())
}

/// Reads an IRCv3 `server-time` tag (`2026-11-21T23:40:16.123Z`).
pub fn parse_server_time(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !value.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| value.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = value.get(19..value.len() - 1).unwrap_or("");
    let millis = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let f3: String = f.chars().chain("000".chars()).take(3).collect();
            f3.parse::<u64>().ok()?
        }
        None if frac.is_empty() => 0,
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Standard base64 with padding (for SASL PLAIN).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"a\0a\0pw"), "YQBhAHB3");
    }

    #[test]
    fn server_time() {
        assert_eq!(
            parse_server_time("1970-01-01T00:00:01.500Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
        assert_eq!(
            parse_server_time("2026-11-21T23:40:16Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_304_416))
        );
        assert_eq!(parse_server_time("garbage"), None);
        assert_eq!(parse_server_time("2026-13-21T23:40:16Z"), None);
        assert_eq!(parse_server_time("2026-11-21T23:40:16.xZ"), None);
    }

    #[test]
    fn cap_params() {
        assert_eq!(
            params("CAP * LS * :a b c"),
            ["CAP", "*", "LS", "*", "a b c"]
        );
        assert_eq!(
            params("CAP * ACK :echo-message"),
            ["CAP", "*", "ACK", "echo-message"]
        );
    }

    use crate::config::{Throttle, endpoints};
    use crate::connection::Account;
    use crate::profile::ServerProfile;
    use estuary_bridge_api::{ChatKey, RemoteChatId};

    fn session() -> Session {
        let settings = ServerSettings {
            profile: Arc::new(ServerProfile {
                server: "irc.test".into(),
                endpoints: endpoints(Some(6667), Some(false), Default::default()),
                verify_certificate: true,
                throttle: Throttle::default(),
                version: "Estuary test".into(),
                idle_disconnect: Duration::from_secs(1),
                outbound: Arc::default(),
                opening: Default::default(),
            }),
            nick: "alice".into(),
            username: "alice".into(),
            realname: "Alice".into(),
            account: Account {
                sasl_password: Some("pw".into()),
                ..Account::default()
            }
            .boxed(),
        };
        let shared = Arc::new(Shared {
            nick: std::sync::Mutex::new("alice".into()),
            ..Shared::default()
        });
        let mut s = Session::new(settings, shared);
        s.start_session();
        s
    }

    fn feed(s: &mut Session, lines: &[&str]) -> Vec<RemoteEvent> {
        for line in lines {
            let msg = line.parse::<Message>().expect(line);
            let _ = s.handle_message(msg);
        }
        s.take_events()
    }

    fn wire(s: &mut Session) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = s.pop_urgent() {
            out.push(m.to_string().trim_end().to_owned());
        }
        while let Some(m) = s.pop_line() {
            out.push(m.to_string().trim_end().to_owned());
        }
        out
    }

    /// The user asks to join `channel` (no key).
    fn ask_join(s: &mut Session, channel: &str) {
        s.queue_op(Op::Join {
            channel: channel.into(),
            key: None,
        });
    }

    fn registered(s: &mut Session) {
        feed(
            s,
            &[
                ":irc.test CAP * LS :server-time echo-message sasl multi-prefix",
                ":irc.test CAP * ACK :server-time echo-message sasl multi-prefix",
                "AUTHENTICATE +",
                ":irc.test 903 alice :SASL authentication successful",
                ":irc.test 001 alice :Welcome",
                ":irc.test 005 alice CASEMAPPING=ascii PREFIX=(qaohv)~&@%+ :are supported",
            ],
        );
    }

    /// Channel mode changes are told in the room as Biboumi tells them, by whoever made
    /// them; replies the server sends with no special handling name the server first.
    #[test]
    fn mode_changes_and_plain_replies_read_as_in_biboumi() {
        let mut s = session();
        ask_join(&mut s, "#a");
        registered(&mut s);
        let _ = wire(&mut s);
        feed(
            &mut s,
            &[
                ":alice!al@h JOIN #a",
                ":irc.test 353 alice = #a :alice bob carol",
                ":irc.test 366 alice #a :End of /NAMES list.",
            ],
        );
        let notices = |events: &[RemoteEvent]| -> Vec<String> {
            events
                .iter()
                .filter_map(|e| match e {
                    RemoteEvent::RoomNotice { body, .. } => Some(body.clone()),
                    _ => None,
                })
                .collect()
        };
        let events = feed(&mut s, &[":alice!al@h MODE #a +k SECRET"]);
        assert_eq!(notices(&events), ["Mode #a [+k SECRET] by alice"]);
        let events = feed(&mut s, &[":bob!b@h MODE #a +o-v carol alice"]);
        assert_eq!(notices(&events), ["Mode #a [+o-v carol alice] by bob"]);
        let events = feed(&mut s, &[":irc.test MODE #a +m"]);
        assert_eq!(notices(&events), ["Mode #a [+m] by irc.test"]);

        // (WHOIS and LUSERS answers are gathered into one message instead: see replies.rs.)
        let events = feed(&mut s, &[":irc.test 371 alice :InspIRCd is free software"]);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body == "irc.test: InspIRCd is free software"),
            "{events:?}"
        );
        let events = feed(&mut s, &[":irc.test 341 alice Bob #a"]);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body == "Bob has been invited to #a"),
            "{events:?}"
        );
    }

    /// Channels asked for before the welcome are joined in the order asked, not in the
    /// order of their names (Biboumi's clients get the join answers in that order).
    #[test]
    fn joins_asked_before_the_welcome_go_out_in_the_order_asked() {
        let mut s = session();
        for chan in ["#foo", "#bar", "#baz"] {
            ask_join(&mut s, chan);
        }
        registered(&mut s);
        let joins: Vec<String> = wire(&mut s)
            .into_iter()
            .filter(|l| l.starts_with("JOIN"))
            .collect();
        assert_eq!(joins, ["JOIN #foo", "JOIN #bar", "JOIN #baz"]);
    }

    /// A member who joins carries the JOIN prefix's `user@host`; so does the user in the
    /// room's member list once the server showed our own JOIN; NAMES gives no address.
    #[test]
    fn members_carry_the_address_from_the_join_prefix() {
        let mut s = session();
        ask_join(&mut s, "#a");
        registered(&mut s);
        let _ = wire(&mut s);
        let events = feed(
            &mut s,
            &[
                ":alice!~al@host.example JOIN #a",
                ":irc.test 353 alice = #a :alice @carol",
                ":irc.test 366 alice #a :End of /NAMES list.",
                ":bob!bob@127.0.0.1 JOIN #a",
                ":dave JOIN #a",
            ],
        );
        let joined = events.iter().find_map(|e| match e {
            RemoteEvent::RoomJoined { members, .. } => Some(members.clone()),
            _ => None,
        });
        let members = joined.expect("the room is joined");
        let address = |nick: &str| {
            members
                .iter()
                .find(|m| m.nick == nick)
                .and_then(|m| m.address.clone())
        };
        assert_eq!(address("alice").as_deref(), Some("~al@host.example"));
        assert_eq!(address("carol"), None);
        let arrivals: Vec<(String, Option<String>)> = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::MemberChanged {
                    change: MemberChange::Joined(m),
                    ..
                } => Some((m.nick.clone(), m.address.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            arrivals,
            [
                ("bob".to_owned(), Some("bob@127.0.0.1".to_owned())),
                ("dave".to_owned(), None)
            ]
        );
    }

    /// Every user has a session per server: what registration, listings and awaited
    /// answers need is kept only while they last.
    #[test]
    fn an_idle_session_keeps_no_rarely_used_state() {
        let mut s = session();
        registered(&mut s);
        feed(
            &mut s,
            &[
                ":irc.test 375 alice :- irc.test Message of the day -",
                ":irc.test 372 alice :- hello",
            ],
        );
        assert!(s.rare.is_some(), "the MOTD is being collected");
        let events = feed(&mut s, &[":irc.test 376 alice :End of /MOTD command."]);
        assert!(!events.is_empty(), "the MOTD is delivered");
        wire(&mut s);
        s.release_idle_buffers();
        assert!(
            s.rare.is_none(),
            "nothing rare is kept once registered and idle"
        );
    }

    /// Other people's parts, topics, kicks and nick changes only look at the rarely used
    /// state: they must not make its box.
    #[test]
    fn channel_traffic_makes_no_rarely_used_state() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#c");
        feed(&mut s, &[":alice!a@h JOIN #c"]);
        wire(&mut s);
        s.release_idle_buffers();
        assert!(s.rare.is_none());
        feed(
            &mut s,
            &[
                ":bob!b@h JOIN #c",
                ":bob!b@h TOPIC #c :new topic",
                ":bob!b@h NICK bobby",
                ":bobby!b@h PART #c :bye",
                ":carol!c@h JOIN #c",
                ":op!o@h KICK #c carol :out",
                ":irc.test 482 alice #c :You're not channel operator",
            ],
        );
        assert!(s.rare.is_none(), "nothing waited for, nothing made");
    }

    #[test]
    fn cap_negotiation_and_sasl() {
        let mut s = session();
        feed(&mut s, &[":irc.test CAP * LS * :server-time sasl=PLAIN"]);
        assert!(wire(&mut s).is_empty(), "waits for the last LS line");
        feed(&mut s, &[":irc.test CAP * LS :echo-message foo"]);
        assert_eq!(wire(&mut s), ["CAP REQ :server-time echo-message sasl"]);
        feed(
            &mut s,
            &[":irc.test CAP * ACK :server-time echo-message sasl"],
        );
        assert_eq!(wire(&mut s), ["AUTHENTICATE PLAIN"]);
        assert!(s.shared.echo.load(Ordering::SeqCst));
        feed(&mut s, &["AUTHENTICATE +"]);
        assert_eq!(wire(&mut s), ["AUTHENTICATE YWxpY2UAYWxpY2UAcHc="]);
        let events = feed(&mut s, &[":irc.test 904 alice :SASL authentication failed"]);
        assert!(matches!(
            &events[0],
            RemoteEvent::LoginState(LoginState::BadCredentials(_))
        ));
        assert_eq!(wire(&mut s), ["CAP END"]);
    }

    /// A hostile server's endless MOTD is cut at [`caps::MOTD_LINES`], with a count of
    /// what was left out.
    #[test]
    fn a_long_motd_is_cut() {
        let mut s = session();
        registered(&mut s);
        s.take_events();
        let mut lines = vec![":irc.test 375 alice :- irc.test Message of the Day -".to_owned()];
        lines.extend((0..250).map(|i| format!(":irc.test 372 alice :- line {i}")));
        lines.push(":irc.test 376 alice :End of /MOTD command.".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let events = feed(&mut s, &lines);
        let [RemoteEvent::ServiceMessage { body, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(body.lines().count(), caps::MOTD_LINES + 1, "{body}");
        assert!(body.contains("- line 198"), "{body}");
        assert!(!body.contains("- line 199"), "{body}");
        assert!(body.ends_with("(51 more line(s) of the message of the day left out)"));
        assert!(s.rare.as_ref().is_none_or(|r| r.is_empty()), "nothing kept");
    }

    /// CAP LS is kept up to [`caps::CAP_LS_ENTRIES`] capabilities, however many lines the
    /// server sends; what is offered past it is not requested.
    #[test]
    fn cap_ls_is_capped() {
        let mut s = session();
        feed(&mut s, &[":irc.test CAP * LS * :server-time"]);
        for i in 0..20 {
            let junk: Vec<String> = (0..10).map(|j| format!("x-{i}-{j}")).collect();
            let line = format!(":irc.test CAP * LS * :{}", junk.join(" "));
            feed(&mut s, &[&line]);
        }
        let kept = s.rare.as_ref().map_or(0, |r| r.cap_ls.len());
        assert_eq!(kept, caps::CAP_LS_ENTRIES);
        feed(&mut s, &[":irc.test CAP * LS :echo-message"]);
        assert_eq!(wire(&mut s), ["CAP REQ server-time"]);
    }

    /// NAMES (and later JOINs) keep at most [`caps::NAMES_PER_CHANNEL`] members per
    /// channel.
    #[test]
    fn names_are_capped_per_channel() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#big");
        wire(&mut s);
        let mut lines = vec![":alice!a@h JOIN #big".to_owned()];
        for chunk in 0..(caps::NAMES_PER_CHANNEL / 100 + 1) {
            let nicks: Vec<String> = (0..100).map(|i| format!("n{chunk}x{i}")).collect();
            lines.push(format!(":irc.test 353 alice = #big :{}", nicks.join(" ")));
        }
        lines.push(":irc.test 366 alice #big :End of /NAMES list.".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let events = feed(&mut s, &lines);
        let [RemoteEvent::RoomJoined { members, .. }] = &events[..] else {
            panic!("{} events", events.len())
        };
        assert_eq!(members.len(), caps::NAMES_PER_CHANNEL);
        let events = feed(&mut s, &[":newcomer!n@h JOIN #big"]);
        assert!(events.is_empty(), "a member past the cap is not added");
        let events = feed(&mut s, &[":n0x5!n@h PART #big"]);
        assert_eq!(events.len(), 1, "members kept still come and go");
    }

    /// A server that joins us to channels we did not ask for gets [`caps::FORCED_JOINS`]
    /// of them; the others are parted at once, and the user told once.
    #[test]
    fn forced_joins_are_capped() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        s.take_events();
        let n = usize::from(caps::FORCED_JOINS) + 5;
        let lines: Vec<String> = (0..n).map(|i| format!(":alice!a@h JOIN #f{i}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let events = feed(&mut s, &lines);
        assert_eq!(s.channels.len(), usize::from(caps::FORCED_JOINS));
        let parts: Vec<String> = wire(&mut s)
            .into_iter()
            .filter(|l| l.starts_with("PART"))
            .collect();
        assert_eq!(
            parts,
            [
                "PART #f20",
                "PART #f21",
                "PART #f22",
                "PART #f23",
                "PART #f24"
            ]
        );
        let notices = events
            .iter()
            .filter(|e| matches!(e, RemoteEvent::ServiceMessage { body, .. } if body.contains("did not ask for")))
            .count();
        assert_eq!(notices, 1);
        // A join the user asked for is not forced.
        ask_join(&mut s, "#wanted");
        feed(&mut s, &[":alice!a@h JOIN #wanted"]);
        assert!(s.channels.contains_key("#wanted"));
    }

    /// A LIST is kept up to [`caps::LIST_ENTRIES`] channels; the user is told how many
    /// were left out.
    #[test]
    fn a_long_list_is_cut() {
        let mut s = session();
        registered(&mut s);
        let (tx, mut rx) = oneshot::channel();
        s.queue_op(Op::List(tx));
        s.take_events();
        let extra = 10;
        for i in 0..caps::LIST_ENTRIES + extra {
            let line = format!(":irc.test 322 alice #c{i} 3 :topic");
            let _ = s.handle_message(line.parse().unwrap());
        }
        let events = feed(&mut s, &[":irc.test 323 alice :End of /LIST"]);
        let rooms = rx.try_recv().expect("the list was answered");
        assert_eq!(rooms.len(), caps::LIST_ENTRIES);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body.contains("(10 more left out)")),
            "{events:?}"
        );
        assert!(s.rare.as_ref().is_none_or(|r| r.listing_dropped == 0));
    }

    #[test]
    fn join_reports_members_roles_and_topic() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#Test");
        let sent = wire(&mut s);
        assert!(sent.contains(&"JOIN #Test".to_owned()), "{sent:?}");
        let events = feed(
            &mut s,
            &[
                ":alice!a@h JOIN #test",
                ":irc.test 332 alice #test :the \x02topic",
                ":irc.test 333 alice #test op!o@h 1700000000",
                ":irc.test 353 alice = #test :~owner &admin @op %half +voice alice plain!u@h",
                ":irc.test 366 alice #test :End of /NAMES list.",
            ],
        );
        let [
            RemoteEvent::RoomJoined {
                room,
                own_nick,
                members,
                subject,
                subject_by,
            },
        ] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(room, &RemoteChatId::new("#test%irc.test"));
        assert_eq!(own_nick, "alice");
        assert_eq!(subject, "the *topic*");
        assert_eq!(subject_by.as_deref(), Some("op"));
        let role = |n: &str| {
            let m = members.iter().find(|m| m.nick == n).unwrap();
            (m.role, m.affiliation)
        };
        assert_eq!(role("owner"), (Role::Moderator, Affiliation::Owner));
        assert_eq!(role("admin"), (Role::Moderator, Affiliation::Admin));
        assert_eq!(role("op"), (Role::Moderator, Affiliation::Admin));
        assert_eq!(role("half"), (Role::Moderator, Affiliation::Member));
        assert_eq!(role("voice"), (Role::Participant, Affiliation::Member));
        assert_eq!(role("plain"), (Role::Participant, Affiliation::None));
        assert_eq!(members.len(), 7);
    }

    #[test]
    fn join_errors_map_to_kinds() {
        for (numeric, kind) in [
            ("471", ErrorKind::ServiceUnavailable),
            ("473", ErrorKind::Forbidden),
            ("474", ErrorKind::Forbidden),
            ("475", ErrorKind::NotAuthorized),
            ("403", ErrorKind::NotFound),
            ("405", ErrorKind::ResourceConstraint),
        ] {
            let mut s = session();
            registered(&mut s);
            ask_join(&mut s, "#x");
            let events = feed(
                &mut s,
                &[&format!(":irc.test {numeric} alice #x :Cannot join")],
            );
            let [RemoteEvent::RoomJoinFailed { room, error }] = &events[..] else {
                panic!("{numeric}: {events:?}")
            };
            assert_eq!(room.as_str(), "#x%irc.test");
            assert_eq!(error.kind, kind, "{numeric}");
            assert_eq!(error.text, "#x: Cannot join");
        }
    }

    fn say(s: &mut Session, lines: &[&str]) {
        s.queue_op(Op::Say(crate::connection::Say {
            target: "#test".into(),
            kind: MessageKind::Normal,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            body: lines.join("\n"),
            origin_id: None,
            report_echo: false,
            gate: SendGate::open(),
        }));
    }

    /// At a quit, lines still held by flood control are written (up to a bound) and the
    /// user is told of those beyond it.
    #[test]
    fn queued_lines_go_out_at_a_quit_and_the_rest_are_reported() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        s.take_events();
        say(&mut s, &["a", "b", "c"]);
        let lines: Vec<String> = s
            .lines_at_quit(2)
            .iter()
            .map(|m| m.to_string().trim_end().to_owned())
            .collect();
        assert_eq!(lines, ["PRIVMSG #test a", "PRIVMSG #test b"]);
        let events = s.take_events();
        assert!(
            events.iter().any(|e| matches!(e, RemoteEvent::ServiceMessage { body, .. } if body.contains("1 of your line(s)"))),
            "{events:?}"
        );
        assert!(s.lines_at_quit(10).is_empty(), "nothing left");
    }

    /// A user's message whose archive row in the core is not durable yet waits, and the
    /// lines behind it wait too (order kept); once the mark reaches its row, all go.
    #[tokio::test]
    async fn a_gated_message_waits_for_its_archive_row_and_keeps_its_place() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        s.take_events();
        let (mark, rx) = tokio::sync::watch::channel(4u64);
        s.queue_op(Op::Say(crate::connection::Say {
            target: "#test".into(),
            kind: MessageKind::Normal,
            lines: vec!["first".into(), "second".into()],
            body: "first\nsecond".into(),
            origin_id: None,
            report_echo: false,
            gate: SendGate::after(rx, 5),
        }));
        say(&mut s, &["after"]);
        let now = Instant::now();
        assert!(s.can_flush());
        assert!(!s.gate_open(now), "row 5 is not durable at 4");
        let deadline = s.gate_deadline().expect("a deadline");
        assert!(deadline > now && deadline <= now + estuary_bridge_api::gate::COMMIT_WAIT);
        mark.send_replace(5);
        std::future::poll_fn(|cx| s.poll_gate(cx)).await;
        assert!(s.gate_open(Instant::now()));
        let mut lines = Vec::new();
        while s.can_flush() && s.gate_open(Instant::now()) {
            let Some(m) = s.pop_line() else { break };
            lines.push(m.to_string().trim_end().to_owned());
        }
        assert_eq!(
            lines,
            [
                "PRIVMSG #test first",
                "PRIVMSG #test second",
                "PRIVMSG #test after"
            ]
        );
        assert!(s.gate_deadline().is_none());
    }

    /// A database that commits nothing holds a gated line for
    /// [`estuary_bridge_api::gate::COMMIT_WAIT`] at most; then it goes, and the next gated
    /// lines go at once until the mark catches up.
    #[test]
    fn a_stuck_database_costs_one_pause() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        let (_mark, rx) = tokio::sync::watch::channel(0u64);
        for row in 1..=3 {
            s.queue_op(Op::Say(crate::connection::Say {
                target: "#test".into(),
                kind: MessageKind::Normal,
                lines: vec![format!("m{row}")],
                body: format!("m{row}"),
                origin_id: None,
                report_echo: false,
                gate: SendGate::after(rx.clone(), row),
            }));
        }
        let t0 = Instant::now();
        assert!(!s.gate_open(t0));
        let late = t0 + estuary_bridge_api::gate::COMMIT_WAIT + Duration::from_millis(10);
        assert!(s.gate_open(late), "the wait ran out");
        assert!(s.pop_line().is_some());
        assert!(s.gate_open(late), "behind: no second pause");
        assert!(s.pop_line().is_some());
        assert!(s.gate_open(late));
    }

    /// Registration on a server that offers no echo-message.
    fn registered_without_echo(s: &mut Session) {
        feed(
            s,
            &[
                ":irc.test CAP * LS :server-time",
                ":irc.test CAP * ACK :server-time",
                ":irc.test 001 alice :Welcome",
            ],
        );
    }

    /// The connection drops and a new one registers (with or without echo-message).
    fn reconnect(s: &mut Session, echo: bool) {
        s.connection_lost();
        s.shared.echo.store(false, Ordering::SeqCst);
        s.start_session();
        if echo {
            registered(s);
        } else {
            registered_without_echo(s);
        }
    }

    /// A message of several lines to #test, with an XMPP id.
    fn say_as(s: &mut Session, origin: &str, lines: &[&str]) {
        s.queue_op(Op::Say(crate::connection::Say {
            target: "#test".into(),
            kind: MessageKind::Normal,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            body: lines.join("\n"),
            origin_id: Some(origin.into()),
            report_echo: true,
            gate: SendGate::open(),
        }));
    }

    /// The user's lines only (PRIVMSG, JOIN), without registration's.
    fn user_lines(s: &mut Session) -> Vec<String> {
        wire(s)
            .into_iter()
            .filter(|l| l.starts_with("PRIVMSG") || l.starts_with("JOIN") || l.starts_with("PING"))
            .collect()
    }

    fn not_sent(events: &[RemoteEvent]) -> Vec<(String, ErrorKind)> {
        events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::NotSent {
                    origin_id, error, ..
                } => Some((origin_id.clone(), error.kind)),
                _ => None,
            })
            .collect()
    }

    /// With echo-message, the lines whose echo had not come when the connection dropped
    /// are written again after the rejoin, before newer ones; their echoes then report the
    /// message once, as if nothing had happened.
    #[test]
    fn lines_not_echoed_at_a_drop_go_again_after_the_rejoin() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#test");
        feed(
            &mut s,
            &[":alice!a@h JOIN #test", ":irc.test 366 alice #test :End"],
        );
        wire(&mut s);
        s.take_events();
        say_as(&mut s, "o1", &["one", "two", "three"]);
        assert_eq!(
            user_lines(&mut s),
            [
                "PRIVMSG #test one",
                "PRIVMSG #test two",
                "PRIVMSG #test three"
            ],
            "no mark with echo-message"
        );
        assert!(feed(&mut s, &[":alice!a@h PRIVMSG #test one"]).is_empty());
        reconnect(&mut s, true);
        say_as(&mut s, "o2", &["four"]);
        assert_eq!(
            user_lines(&mut s),
            [
                "JOIN #test",
                "PRIVMSG #test two",
                "PRIVMSG #test three",
                "PRIVMSG #test four"
            ]
        );
        s.take_events();
        let events = feed(
            &mut s,
            &[
                ":alice!a@h JOIN #test",
                ":irc.test 366 alice #test :End",
                ":alice!a@h PRIVMSG #test two",
                ":alice!a@h PRIVMSG #test three",
                ":alice!a@h PRIVMSG #test four",
            ],
        );
        let echoes: Vec<(Option<&str>, &str)> = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::Message(m) => Some((m.echo_of.as_deref(), m.body.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            echoes,
            [(Some("o1"), "one\ntwo\nthree"), (Some("o2"), "four")]
        );
        // All confirmed: the next drop writes nothing again.
        reconnect(&mut s, true);
        assert_eq!(user_lines(&mut s), ["JOIN #test"]);
    }

    /// Without echo-message, a PING mark after the lines makes the server confirm them;
    /// what its PONG covered is not written again after a drop, what came after it is.
    #[test]
    fn without_echo_a_mark_confirms_the_lines_before_it() {
        let mut s = session();
        registered_without_echo(&mut s);
        ask_join(&mut s, "#test");
        feed(
            &mut s,
            &[":alice!a@h JOIN #test", ":irc.test 366 alice #test :End"],
        );
        wire(&mut s);
        say_as(&mut s, "o1", &["a", "b"]);
        // The connection writes a mark after each batch (Live::fill).
        let mut out = user_lines(&mut s);
        out.extend(s.take_mark().map(|m| m.to_string().trim_end().to_owned()));
        assert_eq!(
            out,
            ["PRIVMSG #test a", "PRIVMSG #test b", "PING estuary-mark-1"]
        );
        say_as(&mut s, "o2", &["c"]);
        assert_eq!(user_lines(&mut s), ["PRIVMSG #test c"]);
        assert_eq!(s.take_mark(), None, "one mark out at a time");
        feed(&mut s, &[":irc.test PONG irc.test :estuary-mark-1"]);
        reconnect(&mut s, false);
        assert_eq!(user_lines(&mut s), ["JOIN #test", "PRIVMSG #test c"]);
        assert!(not_sent(&s.take_events()).is_empty());
    }

    /// A line is written again once at most: still unconfirmed at a second drop, its
    /// sender is told (once per message, not once per line).
    #[test]
    fn a_line_unconfirmed_at_two_drops_is_told_to_its_sender() {
        let mut s = session();
        registered_without_echo(&mut s);
        ask_join(&mut s, "#test");
        wire(&mut s);
        say_as(&mut s, "o1", &["a", "b"]);
        wire(&mut s);
        reconnect(&mut s, false);
        assert_eq!(
            user_lines(&mut s),
            ["JOIN #test", "PRIVMSG #test a", "PRIVMSG #test b"]
        );
        s.connection_lost();
        assert_eq!(
            not_sent(&s.take_events()),
            [("o1".to_owned(), ErrorKind::RemoteUnreachable)]
        );
        s.start_session();
        registered_without_echo(&mut s);
        assert_eq!(user_lines(&mut s), ["JOIN #test"], "not a third time");
        s.queue_op(Op::Part {
            channel: "#test".into(),
            reason: None,
        });
        feed(&mut s, &[":alice!a@h PART #test"]);
        wire(&mut s);
        s.release_idle_buffers();
        assert!(s.rare.is_none(), "nothing kept once all is settled");
    }

    /// The answer (324) to the join's own MODE query for a channel the user already left
    /// is not shown as a message from the server ("#a: +", seen in Biboumi's
    /// join_history_limit); one for a channel the user is not in (a MODE query they typed)
    /// still is.
    #[test]
    fn the_modes_of_a_channel_being_parted_are_not_told() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#a");
        feed(
            &mut s,
            &[":alice!a@h JOIN #a", ":irc.test 366 alice #a :End"],
        );
        s.queue_op(Op::Part {
            channel: "#a".into(),
            reason: None,
        });
        let events = feed(&mut s, &[":irc.test 324 alice #a +"]);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, RemoteEvent::ServiceMessage { .. })),
            "{events:?}"
        );
        feed(&mut s, &[":alice!a@h PART #a"]);
        let events = feed(&mut s, &[":irc.test 324 alice #elsewhere +nt"]);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body == "#elsewhere: +nt"),
            "{events:?}"
        );
    }

    /// A line to be written again to a channel the user left meanwhile is not written;
    /// its sender is told.
    #[test]
    fn a_line_for_a_channel_left_during_the_outage_is_told_not_written() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#test");
        feed(
            &mut s,
            &[":alice!a@h JOIN #test", ":irc.test 366 alice #test :End"],
        );
        wire(&mut s);
        say_as(&mut s, "o1", &["a"]);
        wire(&mut s);
        s.connection_lost();
        s.queue_op(Op::Part {
            channel: "#test".into(),
            reason: None,
        });
        s.shared.echo.store(false, Ordering::SeqCst);
        s.start_session();
        registered(&mut s);
        s.take_events();
        assert!(user_lines(&mut s).is_empty());
        assert_eq!(
            not_sent(&s.take_events()),
            [("o1".to_owned(), ErrorKind::NotAcceptable)]
        );
    }

    /// The server refuses a line (404 after a failed rejoin, 401 for a nick gone): its
    /// sender gets the error instead of a notice from the server's JID.
    #[test]
    fn a_refused_line_is_told_to_its_sender() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        s.take_events();
        say_as(&mut s, "o1", &["a", "b"]);
        say_as(&mut s, "o2", &["c"]);
        wire(&mut s);
        let events = feed(
            &mut s,
            &[
                ":irc.test 404 alice #test :Cannot send to channel",
                ":irc.test 404 alice #test :Cannot send to channel",
            ],
        );
        assert_eq!(not_sent(&events), [("o1".to_owned(), ErrorKind::Forbidden)]);
        assert_eq!(events.len(), 1, "no notice besides: {events:?}");
        let events = feed(&mut s, &[":alice!a@h PRIVMSG #test c"]);
        assert!(
            matches!(&events[..], [RemoteEvent::Message(m)] if m.echo_of.as_deref() == Some("o2")),
            "the refused message's echo is no longer awaited: {events:?}"
        );
        // Nothing of ours left: a refusal now is the server's notice again.
        let events = feed(
            &mut s,
            &[":irc.test 404 alice #test :Cannot send to channel"],
        );
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { .. }]),
            "{events:?}"
        );
    }

    #[test]
    fn multi_line_echo_is_reported_once() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        s.queue_op(Op::Say(crate::connection::Say {
            target: "#test".into(),
            kind: MessageKind::Normal,
            lines: vec!["one".into(), "two".into()],
            body: "one\ntwo".into(),
            origin_id: Some("o1".into()),
            report_echo: true,
            gate: SendGate::open(),
        }));
        assert_eq!(wire(&mut s), ["PRIVMSG #test one", "PRIVMSG #test two"]);
        let events = feed(
            &mut s,
            &[
                "@msgid=a :alice!a@h PRIVMSG #test one",
                "@msgid=b :alice!a@h PRIVMSG #test two",
            ],
        );
        let [RemoteEvent::Message(m)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(m.body, "one\ntwo");
        assert_eq!(m.echo_of.as_deref(), Some("o1"));
        assert_eq!(m.id.as_ref().map(|i| i.as_str()), Some("b"));
        assert!(m.sender.is_from_me);
    }

    #[test]
    fn whois_and_lusers_answers_arrive_as_one_message_each() {
        let mut s = session();
        registered(&mut s);
        s.take_events();
        // A WHOIS, with someone talking in the middle and numerics irc-proto does not know.
        let mut events = feed(
            &mut s,
            &[
                ":irc.test 311 alice bob ~bob 127.0.0.1 * :Bob Example",
                ":irc.test 319 alice bob :#test",
                ":carol!c@h PRIVMSG alice :hi",
            ],
        );
        events.extend(feed(
            &mut s,
            &[
                ":irc.test 330 alice bob bobacc :is logged in as",
                ":irc.test 301 alice bob :lunch",
                ":irc.test 318 alice bob :End of /WHOIS list.",
            ],
        ));
        let services: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::ServiceMessage { body, .. } => Some(body.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            services,
            [
                "bob is ~bob@127.0.0.1 (Bob Example)\nbob is in #test\nbob is logged in as bobacc\nbob is away: lunch"
            ]
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RemoteEvent::Message(m) if m.body == "hi"))
        );
        // LUSERS without 266 ends with what came in one read; an away reply to a message is
        // not part of any answer.
        let events = feed(
            &mut s,
            &[
                ":irc.test 251 alice :There are 2 users and 0 invisible on 1 servers",
                ":irc.test 254 alice 1 :channels formed",
                ":irc.test 255 alice :I have 2 clients and 0 servers",
            ],
        );
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body == "There are 2 users and 0 invisible on 1 servers\n1 channels formed\nI have 2 clients and 0 servers"),
            "{events:?}"
        );
        let events = feed(&mut s, &[":irc.test 301 alice bob :lunch"]);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { body, .. }] if body == "bob is away: lunch"),
            "{events:?}"
        );
    }

    #[test]
    fn notices_motd_and_private_messages() {
        let mut s = session();
        let events = feed(
            &mut s,
            &[":irc.test NOTICE * :*** Looking up your hostname"],
        );
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { service: Some(srv), .. }] if srv == "irc.test")
        );
        registered(&mut s);
        s.take_events();
        let events = feed(
            &mut s,
            &[
                ":irc.test 375 alice :- irc.test Message of the Day -",
                ":irc.test 372 alice :- hello",
                ":irc.test 376 alice :End of /MOTD command.",
                "@time=2026-11-21T23:40:16.000Z :Bob!b@h PRIVMSG alice :\x01ACTION waves\x01",
                ":Bob!b@h NOTICE alice :a notice",
            ],
        );
        assert!(
            matches!(&events[0], RemoteEvent::ServiceMessage { body, .. } if body.contains("- hello"))
        );
        let RemoteEvent::Message(m) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(m.chat, ChatKey::Direct("bob%irc.test".into()));
        assert_eq!((m.kind, m.body.as_str()), (MessageKind::Action, "waves"));
        assert!(m.at.is_some());
        let RemoteEvent::Message(n) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!(n.kind, MessageKind::Notice);
    }

    #[test]
    fn ctcp_requests_are_answered_not_shown() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        let events = feed(&mut s, &[":bob!b@h PRIVMSG alice :\x01PING 123\x01"]);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(wire(&mut s), ["NOTICE bob :\x01PING 123\x01"]);
    }

    #[test]
    fn a_moderated_channel_makes_visitors() {
        let mut s = session();
        registered(&mut s);
        ask_join(&mut s, "#m");
        wire(&mut s);
        feed(&mut s, &[":alice!a@h JOIN #m"]);
        assert_eq!(wire(&mut s), ["MODE #m"]);
        feed(
            &mut s,
            &[
                ":irc.test 353 alice = #m :@op +voice alice plain",
                ":irc.test 366 alice #m :End of /NAMES list.",
            ],
        );
        let events = feed(&mut s, &[":irc.test 324 alice #m +mnt"]);
        let roles: Vec<(String, Role)> = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::MemberChanged {
                    change: MemberChange::Joined(m),
                    ..
                } => Some((m.nick.clone(), m.role)),
                _ => None,
            })
            .collect();
        assert_eq!(
            roles,
            [
                ("alice".to_string(), Role::Visitor),
                ("plain".to_string(), Role::Visitor)
            ]
        );
        let events = feed(&mut s, &[":op!o@h MODE #m -m+v plain"]);
        let roles: Vec<(String, Role)> = events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::MemberChanged {
                    change: MemberChange::Joined(m),
                    ..
                } => Some((m.nick.clone(), m.role)),
                _ => None,
            })
            .collect();
        assert!(
            roles.contains(&("alice".to_string(), Role::Participant)),
            "{roles:?}"
        );
        assert!(
            roles.contains(&("plain".to_string(), Role::Participant)),
            "{roles:?}"
        );
    }

    #[test]
    fn an_invite_is_an_invitation_event() {
        let mut s = session();
        registered(&mut s);
        let events = feed(&mut s, &[":Bob!b@h INVITE alice :#Secret"]);
        assert_eq!(
            events,
            [RemoteEvent::Invited {
                room: RemoteChatId::new("#secret%irc.test"),
                by: Some(estuary_bridge_api::RemoteUserId::new("bob%irc.test")),
                reason: None,
            }]
        );
    }

    #[test]
    fn a_nick_change_is_answered_by_the_server() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        let (tx, mut rx) = oneshot::channel();
        s.queue_op(Op::Nick("bob".into(), tx));
        assert_eq!(wire(&mut s), ["NICK bob"]);
        s.nick_in_use();
        let refused = rx.try_recv().expect("answered").expect_err("refused");
        assert_eq!(refused.kind, ErrorKind::Conflict);
        assert!(refused.text.contains("bob"), "{}", refused.text);
        assert_eq!(s.own_nick(), "alice");

        let (tx, mut rx) = oneshot::channel();
        s.queue_op(Op::Nick("alicia".into(), tx));
        feed(&mut s, &[":alice!a@h NICK :alicia"]);
        assert_eq!(rx.try_recv().expect("answered"), Ok(()));
        assert_eq!(s.own_nick(), "alicia");
    }

    #[test]
    fn topic_and_kick_get_the_servers_verdict() {
        let mut s = session();
        registered(&mut s);
        wire(&mut s);
        let op = |s: &mut Session, topic: bool, nick: &str| {
            let (answer, rx) = oneshot::channel();
            s.queue_op(if topic {
                Op::Topic {
                    channel: "#T".into(),
                    topic: "new".into(),
                    answer,
                }
            } else {
                Op::Kick {
                    channel: "#T".into(),
                    nick: nick.into(),
                    reason: None,
                    answer,
                }
            });
            rx
        };
        // Refused: the server's text, after the channel.
        let mut rx = op(&mut s, true, "");
        assert_eq!(wire(&mut s), ["TOPIC #T new"]);
        let events = feed(
            &mut s,
            &[":irc.test 482 alice #t :You do not have access to change the topic"],
        );
        assert!(
            events.is_empty(),
            "a refusal that was waited for is not a service message: {events:?}"
        );
        let e = rx.try_recv().expect("answered").expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert_eq!(e.text, "#t: You do not have access to change the topic");
        // Accepted: our own TOPIC.
        let mut rx = op(&mut s, true, "");
        feed(&mut s, &[":alice!a@h TOPIC #t :new"]);
        assert_eq!(rx.try_recv().expect("answered"), Ok(()));
        // Kicks: 441 names the nick, 482 the channel, our KICK accepts.
        let mut gone = op(&mut s, false, "Ghost");
        let mut bob = op(&mut s, false, "bob");
        feed(
            &mut s,
            &[":irc.test 441 alice ghost #t :They are not on that channel"],
        );
        let e = gone.try_recv().expect("answered").expect_err("refused");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.text.contains("They are not on that channel"),
            "{}",
            e.text
        );
        assert!(bob.try_recv().is_err(), "bob's kick still waits");
        feed(&mut s, &[":alice!a@h KICK #t Bob :out"]);
        assert_eq!(bob.try_recv().expect("answered"), Ok(()));
        let mut carol = op(&mut s, false, "carol");
        feed(
            &mut s,
            &[":irc.test 482 alice #T :You must be a channel operator"],
        );
        assert_eq!(
            carol
                .try_recv()
                .expect("answered")
                .expect_err("refused")
                .kind,
            ErrorKind::Forbidden
        );
        let mut nobody = op(&mut s, false, "nobody");
        feed(&mut s, &[":irc.test 401 alice nobody :No such nick"]);
        assert_eq!(
            nobody
                .try_recv()
                .expect("answered")
                .expect_err("refused")
                .text,
            "nobody: No such nick"
        );
        // A refusal nobody waits for still reaches the server's JID.
        let events = feed(&mut s, &[":irc.test 482 alice #other :Not an operator"]);
        assert!(
            matches!(&events[..], [RemoteEvent::ServiceMessage { .. }]),
            "{events:?}"
        );
        // A lost connection drops what was waiting (the client reports it).
        let mut lost = op(&mut s, true, "");
        s.connection_lost();
        assert!(matches!(
            lost.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    fn rooms_in(events: &[RemoteEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                RemoteEvent::RoomJoined { room, .. } => Some(format!("joined {room}")),
                RemoteEvent::Message(m) => Some(format!(
                    "message {}",
                    match &m.chat {
                        ChatKey::Room(r) => r.as_str(),
                        ChatKey::Direct(u) => u.as_str(),
                        ChatKey::Service(s) => s.as_str(),
                    }
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn spellings_of_one_channel_under_rfc1459_share_it() {
        let mut s = session();
        registered(&mut s);
        feed(
            &mut s,
            &[":irc.test 005 alice CASEMAPPING=rfc1459 :are supported"],
        );
        wire(&mut s);
        ask_join(&mut s, "#a[x]");
        assert_eq!(
            wire(&mut s),
            ["JOIN #a[x]"],
            "joined as the user spelled it"
        );
        let events = feed(
            &mut s,
            &[
                ":alice!a@h JOIN #A{X}",
                ":irc.test 353 alice = #A{X} :alice Bob",
                ":irc.test 366 alice #A{X} :End of /NAMES list.",
            ],
        );
        assert_eq!(rooms_in(&events), ["joined #a[x]%irc.test"]);
        wire(&mut s);
        // The other spelling is the same channel: no second JOIN, its own room.
        ask_join(&mut s, "#a{x}");
        assert!(wire(&mut s).is_empty());
        assert_eq!(rooms_in(&s.take_events()), ["joined #a{x}%irc.test"]);
        // The channel's messages reach both rooms; Bob and bob are one contact.
        let events = feed(&mut s, &[":Bob!b@h PRIVMSG #a{X} :hi"]);
        assert_eq!(
            rooms_in(&events),
            ["message #a[x]%irc.test", "message #a{x}%irc.test"]
        );
        let RemoteEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(m.sender.user.as_str(), "bob%irc.test");
        let a = feed(&mut s, &[":Bob!b@h PRIVMSG alice :x"]);
        let b = feed(&mut s, &[":bob!b@h PRIVMSG alice :y"]);
        assert_eq!(rooms_in(&a), rooms_in(&b));
        assert_eq!(rooms_in(&a), ["message bob%irc.test"]);
        // Leaving one spelling keeps the channel; leaving the last parts it.
        s.queue_op(Op::Part {
            channel: "#a[x]".into(),
            reason: None,
        });
        assert!(wire(&mut s).is_empty());
        s.queue_op(Op::Part {
            channel: "#a{x}".into(),
            reason: None,
        });
        assert_eq!(wire(&mut s), ["PART #a{x}"]);
    }

    #[test]
    fn under_ascii_brackets_are_distinct_channels() {
        let mut s = session();
        registered(&mut s); // CASEMAPPING=ascii
        wire(&mut s);
        for c in ["#a[x]", "#a{x}"] {
            ask_join(&mut s, c);
        }
        assert_eq!(wire(&mut s), ["JOIN #a[x]", "JOIN #a{x}"]);
        let events = feed(&mut s, &[":Nick[m]!b@h PRIVMSG alice :hi"]);
        let RemoteEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(m.chat, ChatKey::Direct("nick[m]%irc.test".into()));
    }

    #[test]
    fn nick_in_use_at_registration_retries() {
        let mut s = session();
        s.nick_in_use();
        assert_eq!(wire(&mut s), ["NICK alice_"]);
        let events = feed(&mut s, &[":irc.test 001 alice_ :Welcome"]);
        assert!(
            matches!(
                &events[..],
                [
                    RemoteEvent::LoginState(LoginState::Connected),
                    RemoteEvent::ServiceState { service, online: true },
                ] if service == "irc.test"
            ),
            "{events:?}"
        );
        assert_eq!(s.own_nick(), "alice_");
    }
}
