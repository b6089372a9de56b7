//! The live part of one IRC connection: one socket, from the registration lines to the
//! end of the connection. Lines go out (urgent ones first, the rest through the
//! flood-control bucket), lines come in and become events, operations from the client are
//! queued, and one timer wakes it for the next token, the idle disconnect, the keep-alive
//! PING, a write the server does not take and the end of a line's wait for its send gate
//! (`crate::gates`; the core's commits wake it too).
//!
//! Written as a state machine of its own rather than an `async fn`: every XMPP user has a
//! connection per IRC server, so what a waiting connection holds is memory per user, and
//! a hand-made future holds exactly its fields (an `async fn` loop held about twice as
//! much: every wait's temporaries side by side). [`Live`] keeps no buffer while idle.

use crate::connection::{End, Op, push_line};
use crate::remote::{Flow, Session};
use crate::throttle::TokenBucket;
use crate::transport::{Transport, WRITE_TIMEOUT};
use estuary_bridge_api::{EventSink, EventSlot, RemoteEvent, SinkClosed, TrySend};
use futures::StreamExt;
use futures::channel::mpsc as ops;
use irc_proto::{Command, Message};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep, sleep_until};

/// Silence from the server after which the connection sends a PING.
pub const PING_AFTER: Duration = Duration::from_secs(60);
/// How long the server has to say anything after that PING before the connection is
/// taken as lost.
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);
/// Events the connection holds while the core is busy before it stops reading the server
/// (it still writes: what the user sends keeps going out).
pub const MAX_PENDING_EVENTS: usize = 256;

/// The most chunks read after a failed write (what the server said before it went away);
/// a bound, so that a server still sending cannot hold the connection's end.
const READS_AFTER_A_FAILED_WRITE: usize = 256;

/// A wait for room in the core's queue, boxed: only a connection whose core is behind
/// holds one.
type SlotWait<'a> = Pin<Box<dyn Future<Output = Result<EventSlot<'a>, SinkClosed>> + Send + 'a>>;

/// One connected socket's life; resolves to why it ended. On [`End::Quit`] and
/// [`End::Idle`] the caller says goodbye on the transport (QUIT).
pub struct Live<'a> {
    transport: &'a mut Transport,
    events: &'a EventSink,
    rx: &'a mut ops::UnboundedReceiver<Box<Op>>,
    session: &'a mut Session,
    /// Events the core had no room for yet, oldest first.
    pending: &'a mut VecDeque<RemoteEvent>,
    bucket: TokenBucket,
    /// Since when nothing keeps the connection (no channel, nothing queued).
    idle_since: Option<Instant>,
    /// Since when we wait to hear from the server: its last line, our stopping to listen,
    /// or our keep-alive PING going out (while `ping_out`).
    quiet_since: Instant,
    /// Bytes for the server, of which `written` are written; empty (unallocated) while
    /// nothing is in flight.
    out: Vec<u8>,
    written: usize,
    /// Since when a write has been waiting for the server to take it.
    write_since: Option<Instant>,
    /// The one timer, set to the earliest deadline while `armed`.
    timer: Pin<Box<Sleep>>,
    slot: Option<SlotWait<'a>>,
    /// Whether the server is looked at before the client on the next wait (they take
    /// turns, so that neither can keep the other waiting).
    read_first: bool,
    /// Whether `timer` stands for a deadline.
    armed: bool,
    /// Whether our keep-alive PING is unanswered (sent at `quiet_since`).
    ping_out: bool,
    /// Whether lines wait for the bucket's next token.
    wants_token: bool,
}

impl<'a> Live<'a> {
    /// A connection that has just connected: it starts with the registration lines
    /// (`hello`) and a fresh session.
    pub fn new(
        transport: &'a mut Transport,
        events: &'a EventSink,
        rx: &'a mut ops::UnboundedReceiver<Box<Op>>,
        session: &'a mut Session,
        pending: &'a mut VecDeque<RemoteEvent>,
        hello: String,
    ) -> Self {
        let throttle = session.settings().profile.throttle;
        session.start_session();
        let now = Instant::now();
        Self {
            transport,
            events,
            rx,
            session,
            pending,
            bucket: TokenBucket::new(throttle),
            idle_since: None,
            quiet_since: now,
            out: hello.into_bytes(),
            written: 0,
            write_since: None,
            timer: Box::pin(sleep_until(now + PING_AFTER)),
            slot: None,
            read_first: true,
            armed: true,
            ping_out: false,
            wants_token: false,
        }
    }

    /// Moves lines from the session into `out`: urgent ones (registration, PONG) always,
    /// after what is already there; the others through the bucket and only once the
    /// previous lines are all written, so that a slow server holds one batch at most here
    /// (the rest waits, in order, in the session's queue).
    fn fill(&mut self) {
        if self.written >= self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        let drained = self.out.is_empty();
        let mut text = String::new();
        while let Some(msg) = self.session.pop_urgent() {
            push_line(&mut text, &msg);
        }
        while drained && self.session.can_flush() {
            if !self.session.gate_open(Instant::now()) {
                break;
            }
            self.wants_token = !self.bucket.try_take(Instant::now());
            if self.wants_token {
                break;
            }
            if let Some(msg) = self.session.pop_line() {
                push_line(&mut text, &msg);
            }
        }
        // Without echo-message, a mark after the user's lines makes the server confirm
        // them (crate::inflight); one at a time.
        if let Some(mark) = self.session.take_mark() {
            push_line(&mut text, &mark);
        }
        if self.out.is_empty() {
            self.out = text.into_bytes();
        } else {
            self.out.extend_from_slice(text.as_bytes());
        }
    }

    /// Writes what `out` holds as far as the server takes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        if self.written >= self.out.len() {
            self.write_since = None;
            if self.out.capacity() > 0 {
                self.out = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        match self
            .transport
            .poll_write_all(cx, &self.out, &mut self.written)
        {
            Poll::Ready(Ok(())) => {
                self.out = Vec::new();
                self.written = 0;
                self.write_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(End::Lost(e.to_string()))),
            Poll::Pending => {
                self.write_since.get_or_insert_with(Instant::now);
                Poll::Pending
            }
        }
    }

    /// Hands pending events to the core, as many as it takes now; waits for room for the
    /// rest without holding up anything else. `Err` when the core has stopped.
    fn deliver(&mut self, cx: &mut Context<'_>) -> Result<(), End> {
        self.pending.extend(self.session.take_events());
        loop {
            if let Some(wait) = &mut self.slot {
                match wait.as_mut().poll(cx) {
                    Poll::Ready(Ok(slot)) => {
                        self.slot = None;
                        if let Some(event) = self.pending.pop_front() {
                            slot.send(event);
                        }
                    }
                    Poll::Ready(Err(_)) => return Err(End::Quit(None)),
                    Poll::Pending => return Ok(()),
                }
            }
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySend::Full(event)) => {
                    self.pending.push_front(*event);
                    self.slot = Some(Box::pin(self.events.reserve()));
                }
                Err(TrySend::Closed) => return Err(End::Quit(None)),
            }
        }
        if self.pending.capacity() > 0 {
            // Released once drained: an idle connection keeps no event buffer.
            *self.pending = VecDeque::new();
        }
        Ok(())
    }

    /// Sets the timer to the earliest deadline; returns the deadlines it stands for.
    fn arm(&mut self, reading: bool) -> Deadlines {
        let now = Instant::now();
        if self.session.is_idle() {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        if !reading {
            // Not listening: the silence is ours, not the server's.
            self.quiet_since = now;
        }
        let idle_disconnect = self.session.settings().profile.idle_disconnect;
        let d = Deadlines {
            idle: self.idle_since.map(|t| t + idle_disconnect),
            token: self.wants_token.then(|| self.bucket.next_token()).flatten(),
            ping: reading.then(|| {
                let wait = if self.ping_out {
                    PING_TIMEOUT
                } else {
                    PING_AFTER
                };
                self.quiet_since + wait
            }),
            write: self.write_since.map(|t| t + WRITE_TIMEOUT),
            confirm: self.session.confirm_deadline(),
            gate: self.session.gate_deadline(),
        };
        let earliest = [d.idle, d.token, d.ping, d.write, d.confirm, d.gate]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = earliest
            && !(self.armed && self.timer.deadline() == at)
        {
            self.timer.as_mut().reset(at);
        }
        self.armed = earliest.is_some();
        d
    }

    /// The timer fired: whichever deadlines passed take effect.
    fn on_timer(&mut self, d: Deadlines) -> Result<(), End> {
        let now = Instant::now();
        if d.token.is_some_and(|at| at <= now) {
            self.wants_token = false;
        }
        if d.confirm.is_some_and(|at| at <= now) {
            self.session.expire_unconfirmed(now);
        }
        if d.write.is_some_and(|at| at <= now) {
            return Err(End::Lost(format!(
                "the server did not take our data for {} s",
                WRITE_TIMEOUT.as_secs()
            )));
        }
        if d.idle.is_some_and(|at| at <= now) {
            if self.session.is_idle() {
                return Err(End::Idle);
            }
            self.idle_since = None;
        }
        if d.ping.is_some_and(|at| at <= now) {
            if self.ping_out {
                let silent = PING_AFTER + PING_TIMEOUT;
                return Err(End::Lost(format!(
                    "the server did not answer for {} s",
                    silent.as_secs()
                )));
            }
            // After whatever is being written: whole lines, never interleaved.
            let server = self.session.settings().server().to_owned();
            let mut line = String::new();
            push_line(&mut line, &Message::from(Command::PING(server, None)));
            self.out.extend_from_slice(line.as_bytes());
            self.quiet_since = now;
            self.ping_out = true;
        }
        Ok(())
    }

    /// The server sent something: its lines become events (or end the connection).
    fn poll_server(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        match self.transport.poll_read(cx) {
            Poll::Ready(Ok(())) => {
                self.quiet_since = Instant::now();
                self.ping_out = false;
                while let Some(msg) = self.transport.next_line() {
                    if let Flow::Stop(why) = self.session.handle_message(msg) {
                        return Poll::Ready(Err(End::Lost(why)));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(End::Lost(e.to_string()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write failed (the server closed the connection, or reset it): what it had said
    /// before may still wait in our socket, unread; it is read now, as far as it goes
    /// without waiting (at most [`READS_AFTER_A_FAILED_WRITE`] chunks), so that its
    /// messages are delivered and its echoes and PONGs confirm our lines (else those are
    /// written again after the reconnect, twice on the channel).
    fn read_what_is_left(&mut self, cx: &mut Context<'_>) {
        for _ in 0..READS_AFTER_A_FAILED_WRITE {
            if !matches!(self.poll_server(cx), Poll::Ready(Ok(()))) {
                break;
            }
        }
    }

    /// An operation from the client: queued (or the end, for a quit).
    fn poll_client(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        match self.rx.poll_next_unpin(cx) {
            Poll::Ready(None) => Poll::Ready(Err(End::Quit(None))),
            Poll::Ready(Some(op)) => match *op {
                Op::Quit(reason) => Poll::Ready(Err(End::Quit(reason))),
                Op::UserQuit(reason) => {
                    // The rooms' events are handed over by `close`, after the QUIT.
                    let left = self.session.leave_all(reason.clone());
                    self.pending.extend(left);
                    Poll::Ready(Err(End::Quit(reason)))
                }
                op => {
                    // Any use keeps the connection (private chats have no channel).
                    self.idle_since = None;
                    self.session.queue_op(op);
                    Poll::Ready(Ok(()))
                }
            },
            Poll::Pending => Poll::Pending,
        }
    }

    /// One round: out, events, then whatever woke us. `Ready(Ok)` to go round again.
    fn round(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), End>> {
        self.fill();
        match self.poll_write(cx) {
            Poll::Ready(Ok(())) => self.session.release_idle_buffers(),
            Poll::Ready(Err(end)) => {
                self.read_what_is_left(cx);
                return Poll::Ready(Err(end));
            }
            Poll::Pending => {}
        }
        self.deliver(cx)?;
        let reading = self.pending.len() < MAX_PENDING_EVENTS;
        let deadlines = self.arm(reading);
        self.read_first = !self.read_first;
        for server in [self.read_first, !self.read_first] {
            let step = match (server, reading) {
                (true, true) => self.poll_server(cx),
                (true, false) => Poll::Pending,
                (false, _) => self.poll_client(cx),
            };
            if step?.is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        // The core committed more while the next line waited for its send gate.
        if self.session.poll_gate(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if self.armed && self.timer.as_mut().poll(cx).is_ready() {
            self.armed = false;
            self.on_timer(deadlines)?;
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

/// The deadlines the timer was set for.
#[derive(Clone, Copy)]
struct Deadlines {
    idle: Option<Instant>,
    token: Option<Instant>,
    ping: Option<Instant>,
    write: Option<Instant>,
    /// The unconfirmed lines are full and the oldest's wait for a proof runs out.
    confirm: Option<Instant>,
    /// The next line's wait for its send gate runs out (the next round looks again).
    gate: Option<Instant>,
}

impl Future for Live<'_> {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        loop {
            match this.round(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(end)) => return Poll::Ready(end),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
