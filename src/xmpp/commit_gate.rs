//! When the component link may write a stanza that shows a message: once the database rows
//! of that message (archive, message map) are committed.
//!
//! Rows on the hot path are written behind, in batches (`src/db/write_behind.rs`). A
//! stanza handed to the link with the [`Ticket`] of its rows waits, at the head of the
//! link's queue, until the write-behind's watermark has reached that ticket; everything
//! behind it waits too (the order of stanzas is kept), and the link keeps taking new
//! stanzas meanwhile. So a SIGKILL can lose the archive row only of a message that nobody
//! has been shown, and the wait costs the latency of one batch commit, not throughput.
//!
//! A database that is down or stuck must not stop the traffic. As long as it keeps
//! committing, the stanzas follow it at its pace (under a burst the wait grows with the
//! write-behind's batches; its bounded queue holds the producers back). Once it has
//! committed nothing for [`COMMIT_WAIT`] while a stanza waited (counted from the later of
//! the stanza's arrival and the last commit seen), or the stanza has waited [`MAX_WAIT`]
//! in all, it is written anyway, its rows stay queued (the write-behind tries them again),
//! and until the watermark has caught up with every stanza written so (the backlog the
//! database has to work off) the link writes without waiting: one pause at the start of
//! an outage, not one per message, and none behind the backlog after it. In that window a crash can again lose the rows of
//! messages already shown: the trade-off chosen over stalling every conversation on the
//! database.

use crate::db::Ticket;
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tracing::{info, warn};

/// How long a stanza waits for its rows while the database commits nothing, before it is
/// written anyway.
pub const COMMIT_WAIT: Duration = Duration::from_secs(1);
/// The longest a stanza waits for its rows, even while the database commits (a database
/// that writes slower than the traffic comes).
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// A stanza waiting in the link's queue, with the ticket its rows must reach.
#[derive(Debug)]
pub struct Gated {
    /// The stanza.
    pub el: Element,
    /// The rows it shows are written once the watermark reaches this ([`Ticket::NONE`]:
    /// nothing to wait for).
    pub after: Ticket,
    /// When it was handed to the link (its wait is counted from here).
    pub since: Instant,
}

impl Gated {
    /// A stanza with nothing to wait for.
    pub fn now(el: Element) -> Gated {
        Gated::after(el, Ticket::NONE)
    }

    /// A stanza to write once `after` is committed, handed in now.
    pub fn after(el: Element, after: Ticket) -> Gated {
        Gated {
            el,
            after,
            since: Instant::now(),
        }
    }
}

/// What the head of the queue should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Go,
    /// Wait for the watermark to move, or until this instant at the latest.
    WaitUntil(Instant),
}

/// The gate's state: the last watermark seen and when it moved, whether the database is
/// behind (a wait ran out) or gone.
#[derive(Debug, Default)]
pub struct CommitGate {
    /// The highest watermark seen, and when it was first seen.
    seen: Option<(Ticket, Instant)>,
    /// A wait ran out on this ticket: stanzas go without waiting until the watermark has
    /// reached it.
    behind: Option<Ticket>,
    /// The write-behind has stopped (the process is ending): nothing to wait for.
    gone: bool,
}

impl CommitGate {
    /// Whether a stanza waiting for `after` may be written, the watermark being
    /// `committed`, without changing the gate's state (no deadline considered).
    pub fn ready(&self, after: Ticket, committed: Ticket) -> bool {
        after <= committed || self.gone || self.behind.is_some_and(|b| committed < b)
    }

    /// What the head of the queue, `next`, should do at `now`, the watermark being
    /// `committed`.
    pub fn check(&mut self, next: &Gated, committed: Ticket, now: Instant) -> Verdict {
        let moved_at = match self.seen {
            Some((seen, at)) if seen >= committed => at,
            _ => {
                self.seen = Some((committed, now));
                now
            }
        };
        if let Some(b) = self.behind
            && committed >= b
        {
            info!("the database has caught up: stanzas wait for their rows again");
            self.behind = None;
        }
        if next.after <= committed || self.gone {
            return Verdict::Go;
        }
        if let Some(b) = &mut self.behind {
            // Waiting again only once the database has caught up with everything written
            // meanwhile: not behind a backlog of seconds.
            *b = (*b).max(next.after);
            return Verdict::Go;
        }
        let deadline = (next.since.max(moved_at) + COMMIT_WAIT).min(next.since + MAX_WAIT);
        if now < deadline {
            return Verdict::WaitUntil(deadline);
        }
        warn!(
            waited_ms = now.duration_since(next.since).as_millis() as u64,
            committed = committed.0,
            "the database is slow or down: stanzas are written before their archive rows \
             until it catches up (the rows stay queued)"
        );
        self.behind = Some(next.after);
        Verdict::Go
    }

    /// The write-behind has stopped: no stanza waits any more.
    pub fn writer_gone(&mut self) {
        self.gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el() -> Element {
        Element::builder("message", "jabber:component:accept").build()
    }

    fn gated(after: u64, since: Instant) -> Gated {
        Gated {
            el: el(),
            after: Ticket(after),
            since,
        }
    }

    #[test]
    fn a_stanza_waits_until_its_rows_are_committed() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        let next = gated(5, t0);
        assert_eq!(
            gate.check(&next, Ticket(4), t0),
            Verdict::WaitUntil(t0 + COMMIT_WAIT)
        );
        assert_eq!(gate.check(&next, Ticket(5), t0), Verdict::Go);
        assert_eq!(gate.check(&next, Ticket(9), t0), Verdict::Go);
    }

    #[test]
    fn a_stanza_without_rows_never_waits() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        assert_eq!(gate.check(&Gated::now(el()), Ticket::NONE, t0), Verdict::Go);
    }

    #[test]
    fn a_stanza_waits_as_long_as_the_database_commits() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        let next = gated(50, t0);
        assert_eq!(
            gate.check(&next, Ticket(10), t0),
            Verdict::WaitUntil(t0 + COMMIT_WAIT)
        );
        // A batch committed 0.9 s later: the wait starts again from there.
        let t1 = t0 + Duration::from_millis(900);
        assert_eq!(
            gate.check(&next, Ticket(30), t1),
            Verdict::WaitUntil(t1 + COMMIT_WAIT)
        );
        // Nothing more for a second: it goes.
        assert_eq!(gate.check(&next, Ticket(30), t1 + COMMIT_WAIT), Verdict::Go);
    }

    #[test]
    fn a_stanza_waits_at_most_max_wait_behind_a_slow_database() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        let next = gated(1000, t0);
        let mut now = t0;
        let mut committed = 0;
        // A batch every 0.8 s: progress, but never enough.
        while now < t0 + MAX_WAIT {
            assert!(matches!(
                gate.check(&next, Ticket(committed), now),
                Verdict::WaitUntil(d) if d <= t0 + MAX_WAIT
            ));
            now += Duration::from_millis(800);
            committed += 10;
        }
        assert_eq!(gate.check(&next, Ticket(committed), now), Verdict::Go);
    }

    #[test]
    fn past_the_limit_stanzas_go_until_the_database_catches_up() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        assert_eq!(
            gate.check(&gated(5, t0), Ticket(3), t0),
            Verdict::WaitUntil(t0 + COMMIT_WAIT)
        );
        let late = t0 + COMMIT_WAIT;
        // The database is stuck at 3: the stanza waiting for 5 goes after the limit …
        assert_eq!(gate.check(&gated(5, t0), Ticket(3), late), Verdict::Go);
        // … and those after it go at once, though their own wait has not run out.
        assert_eq!(gate.check(&gated(6, late), Ticket(3), late), Verdict::Go);
        assert!(gate.ready(Ticket(7), Ticket(4)));
        // The database works off its backlog: past the stanza that ran out, but not yet
        // past every stanza written without waiting; the next ones still go.
        assert_eq!(gate.check(&gated(7, late), Ticket(5), late), Verdict::Go);
        // Once the watermark has passed all of them, they wait again.
        let t1 = late + Duration::from_millis(10);
        assert_eq!(
            gate.check(&gated(9, t1), Ticket(7), t1),
            Verdict::WaitUntil(t1 + COMMIT_WAIT)
        );
        assert!(!gate.ready(Ticket(9), Ticket(7)));
    }

    #[test]
    fn nothing_waits_once_the_writer_is_gone() {
        let t0 = Instant::now();
        let mut gate = CommitGate::default();
        gate.writer_gone();
        assert_eq!(gate.check(&gated(5, t0), Ticket(1), t0), Verdict::Go);
    }
}
