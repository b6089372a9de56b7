//! The user's lines written to the IRC server and not yet confirmed by it (issue 12,
//! defect 4b): what was in flight when the server dropped the connection is written again
//! after the reconnect instead of vanishing with the socket.
//!
//! IRC has no acknowledgement for a PRIVMSG, but a server handles a connection's lines in
//! order, so anything it says *because of* one of our lines proves that every line before
//! it was handled too. Two such proofs are used:
//!
//! * with IRCv3 `echo-message`, the echo of a line: it confirms that line and every
//!   older one (an older line without its own echo was refused, and the refusal came
//!   first);
//! * without it, a *mark*: `PING estuary-mark-N` written after a batch of lines; its
//!   `PONG` confirms every line written before it. One mark is in flight at a time (one
//!   extra line per round trip, however many lines go out).
//!
//! A refusal numeric for a target (404 cannot send, 401 no such nick, 403 no such channel)
//! answers the oldest unconfirmed line to that target: that line is taken out and its
//! sender told (see [`InFlight::refused`]).
//!
//! When the connection drops, the unconfirmed lines come out oldest first
//! ([`InFlight::lost`]); the session queues them before everything newer, after the
//! rejoins. A line is written again at most once: one still unconfirmed at a second drop
//! is given up and its sender told. The server may so see a line twice (the drop came
//! after it took the line but before our proof came back), never zero times unnoticed.
//!
//! Bounds: at most [`MAX_UNCONFIRMED`] lines are unconfirmed; past it, no more of the
//! user's lines are written until proofs come back (they wait in the session's queue,
//! whose own limit refuses what goes past it with `resource-constraint`). So that a
//! server that never echoes nor answers a mark cannot stall the queue, a line unconfirmed
//! for [`CONFIRM_TIMEOUT`] counts as delivered when room is needed ([`InFlight::expire`]):
//! a server that is that slow still holds the connection, and the keep-alive drops one
//! that says nothing at all.
//!
//! Pure bookkeeping, no I/O: the session feeds it what was written and what came back.

use irc_proto::Message;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// The most lines written and not yet confirmed, per connection.
pub const MAX_UNCONFIRMED: usize = 128;

/// How long a line may stay unconfirmed before it counts as delivered when the set is full.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The token prefix of our confirming marks (`PING estuary-mark-N`).
const MARK_PREFIX: &str = "estuary-mark-";

/// One line written and not yet confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The line as written.
    pub msg: Message,
    /// Its target, folded (channel or nick).
    pub target: String,
    /// The XMPP id of the message it is part of, to tell its sender; `None` for lines that
    /// are not the user's messages (CTCP answers, raw lines).
    pub origin: Option<String>,
    /// Whether this is its second writing (after a drop).
    pub resent: bool,
    /// When it was written.
    pub at: Instant,
}

/// The unconfirmed lines of one connection and the mark in flight.
#[derive(Debug, Default)]
pub struct InFlight {
    lines: VecDeque<Written>,
    /// The mark in flight: its number and how many of `lines` (the oldest) it covers.
    mark: Option<(u32, usize)>,
    /// Marks sent on this connection, for their numbers.
    marks_sent: u32,
}

impl InFlight {
    /// Whether nothing is unconfirmed (and no mark is out).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.mark.is_none()
    }

    /// How many lines are unconfirmed.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no more lines may be written until some are confirmed.
    pub fn is_full(&self) -> bool {
        self.lines.len() >= MAX_UNCONFIRMED
    }

    /// A line was written.
    pub fn written(&mut self, line: Written) {
        self.lines.push_back(line);
    }

    /// When the oldest line's wait runs out ([`CONFIRM_TIMEOUT`]), while the set is full:
    /// the moment writing may go on without a proof.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.is_full() {
            return None;
        }
        self.lines.front().map(|l| l.at + CONFIRM_TIMEOUT)
    }

    /// While the set is full, lines unconfirmed for [`CONFIRM_TIMEOUT`] count as
    /// delivered and make room; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        while self.is_full()
            && self
                .lines
                .front()
                .is_some_and(|l| l.at + CONFIRM_TIMEOUT <= now)
        {
            self.confirm(1);
            gone += 1;
        }
        gone
    }

    /// The token of a mark to write now, after the lines written so far: when some are
    /// not covered by a mark and none is in flight. Only used without `echo-message`.
    pub fn take_mark(&mut self) -> Option<String> {
        if self.mark.is_some() || self.lines.is_empty() {
            return None;
        }
        self.marks_sent = self.marks_sent.wrapping_add(1);
        self.mark = Some((self.marks_sent, self.lines.len()));
        Some(format!("{MARK_PREFIX}{}", self.marks_sent))
    }

    /// The server answered a PING with `token`: if it is the mark in flight, the lines it
    /// covers are confirmed. Returns how many.
    pub fn on_pong(&mut self, token: &str) -> usize {
        let Some((number, covered)) = self.mark else {
            return 0;
        };
        let ours = token
            .strip_prefix(MARK_PREFIX)
            .and_then(|n| n.parse::<u32>().ok())
            == Some(number);
        if !ours {
            return 0;
        }
        self.mark = None;
        let covered = covered.min(self.lines.len());
        self.confirm(covered);
        covered
    }

    /// Our own line to `target` (folded) came back as an echo: the oldest unconfirmed
    /// line to it and every older line are confirmed. Returns how many.
    pub fn on_echo(&mut self, target: &str) -> usize {
        match self.lines.iter().position(|l| l.target == target) {
            Some(at) => {
                self.confirm(at + 1);
                at + 1
            }
            None => 0,
        }
    }

    /// The server refused a line to `target` (folded) with a numeric: the oldest
    /// unconfirmed line to it is the one refused (the server answers in order); it is
    /// taken out and returned, with the older lines confirmed (handled before it).
    pub fn refused(&mut self, target: &str) -> Option<Written> {
        let at = self.lines.iter().position(|l| l.target == target)?;
        self.confirm(at);
        let line = self.lines.pop_front();
        if let Some((_, covered)) = &mut self.mark {
            *covered = covered.saturating_sub(1);
        }
        line
    }

    /// The connection dropped: every unconfirmed line, oldest first, split into those
    /// to write again (first writing) and those given up (already written twice). The
    /// mark is forgotten (the next connection numbers its own).
    pub fn lost(&mut self) -> (Vec<Written>, Vec<Written>) {
        self.mark = None;
        self.marks_sent = 0;
        let (again, given_up) = self.lines.drain(..).partition(|l| !l.resent);
        self.lines = VecDeque::new();
        (again, given_up)
    }

    /// The `n` oldest lines are confirmed.
    fn confirm(&mut self, n: usize) {
        let n = n.min(self.lines.len());
        self.lines.drain(..n);
        if let Some((_, covered)) = &mut self.mark {
            *covered = covered.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irc_proto::Command;

    fn line(target: &str, text: &str, at: Instant) -> Written {
        Written {
            msg: Message::from(Command::PRIVMSG(target.into(), text.into())),
            target: target.into(),
            origin: Some(format!("id-{text}")),
            resent: false,
            at,
        }
    }

    fn texts(lines: &[Written]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match &l.msg.command {
                Command::PRIVMSG(_, text) => text.clone(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn a_pong_to_the_mark_confirms_what_it_covers_and_no_more() {
        let now = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(f.take_mark(), None, "nothing to confirm");
        f.written(line("#a", "1", now));
        f.written(line("#a", "2", now));
        let mark = f.take_mark().expect("a mark after the lines");
        assert_eq!(mark, "estuary-mark-1");
        assert_eq!(f.take_mark(), None, "one mark in flight at a time");
        f.written(line("#a", "3", now));
        assert_eq!(f.on_pong("irc.example.org"), 0, "the keep-alive's PONG");
        assert_eq!(f.on_pong("estuary-mark-7"), 0, "not the mark in flight");
        assert_eq!(f.on_pong(&mark), 2);
        assert_eq!(f.len(), 1, "3 was written after the mark");
        assert_eq!(f.on_pong(&mark), 0, "answered once");
        assert_eq!(f.take_mark().as_deref(), Some("estuary-mark-2"));
        assert_eq!(f.on_pong("estuary-mark-2"), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn an_echo_confirms_its_line_and_every_older_one() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.written(line("#a", "1", now));
        f.written(line("bob", "2", now));
        f.written(line("#a", "3", now));
        f.written(line("#b", "4", now));
        assert_eq!(f.on_echo("#c"), 0, "nothing to #c");
        // "bob" refused line 2 without an echo; the echo of 3 proves it was handled.
        assert_eq!(f.on_echo("#a"), 1);
        assert_eq!(f.on_echo("#a"), 2);
        assert_eq!(f.len(), 1);
        assert_eq!(f.on_echo("#b"), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn a_refusal_takes_out_the_oldest_line_to_its_target() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.written(line("#a", "1", now));
        f.written(line("#b", "2", now));
        f.written(line("#b", "3", now));
        let mark = f.take_mark().expect("mark");
        let refused = f.refused("#b").expect("a line to #b");
        assert_eq!(texts(&[refused]), ["2"]);
        assert_eq!(f.len(), 1, "1 handled before it, 3 still out");
        assert_eq!(f.refused("#a"), None, "1 is confirmed already");
        assert_eq!(f.on_pong(&mark), 1, "the mark now covers 3 alone");
        assert!(f.is_empty());
    }

    #[test]
    fn a_drop_gives_back_the_unconfirmed_lines_in_order_and_each_goes_again_once() {
        let now = Instant::now();
        let mut f = InFlight::default();
        for n in 1..=4 {
            f.written(line("#a", &n.to_string(), now));
        }
        let mark = f.take_mark().expect("mark");
        assert_eq!(f.on_echo("#a"), 1);
        let (again, given_up) = f.lost();
        assert_eq!(texts(&again), ["2", "3", "4"]);
        assert!(given_up.is_empty());
        assert!(f.is_empty(), "the mark is forgotten with the connection");
        assert_eq!(f.on_pong(&mark), 0, "an old mark's PONG confirms nothing");
        // Written again; 2 is confirmed, then the connection drops again.
        for mut l in again {
            l.resent = true;
            f.written(l);
        }
        f.written(line("#a", "5", now));
        assert_eq!(f.on_echo("#a"), 1);
        let (again, given_up) = f.lost();
        assert_eq!(texts(&again), ["5"], "first writing: once more");
        assert_eq!(
            texts(&given_up),
            ["3", "4"],
            "written twice: the sender is told"
        );
    }

    #[test]
    fn the_set_is_bounded_and_a_server_that_never_answers_cannot_stall_it() {
        let start = Instant::now();
        let mut f = InFlight::default();
        for n in 0..MAX_UNCONFIRMED {
            assert!(!f.is_full());
            assert_eq!(f.deadline(), None, "no deadline while there is room");
            f.written(line(
                "#a",
                &n.to_string(),
                start + Duration::from_millis(n as u64),
            ));
        }
        assert!(f.is_full());
        assert_eq!(f.deadline(), Some(start + CONFIRM_TIMEOUT));
        assert_eq!(f.expire(start + CONFIRM_TIMEOUT / 2), 0, "too early");
        assert_eq!(
            f.expire(start + CONFIRM_TIMEOUT),
            1,
            "the oldest makes room"
        );
        assert!(!f.is_full());
        assert_eq!(f.len(), MAX_UNCONFIRMED - 1);
        assert_eq!(f.expire(start + CONFIRM_TIMEOUT * 2), 0, "only while full");
    }

    #[test]
    fn a_mark_is_not_fooled_by_a_lookalike_token() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.written(line("#a", "1", now));
        assert_eq!(f.take_mark().as_deref(), Some("estuary-mark-1"));
        for token in [
            "estuary-mark-",
            "estuary-mark-01x",
            "estuary-mark-1 ",
            "ESTUARY-MARK-1",
            "",
        ] {
            assert_eq!(f.on_pong(token), 0, "{token:?}");
        }
        assert_eq!(f.len(), 1);
    }
}
