//! When a network may be told a user's message: once the core's rows for it are durable.
//!
//! The core archives a room message of the user's when it accepts it, but writes that row
//! behind, in batches (group commit). A [`SendGate`] travels with the message in
//! [`Outgoing`](crate::Outgoing): it opens once the core's *durable mark* (the number of the
//! last row such that every row up to it is committed) reaches the message's rows. A
//! bridge that writes to its network in order (IRC) holds the message's first line until
//! its gate is open, so a crash can no longer leave a message the network saw that no
//! archive holds; the user's handler never waits for a commit, and lines keep queuing
//! behind the gate, so the wait costs the latency of one batch commit, not throughput.
//!
//! A database that is down or stuck must not stop the traffic: [`GateKeeper`] applies the
//! same bounds as the core's commit gate for stanzas. While the mark keeps moving, a gated
//! message waits; once it has not moved for [`COMMIT_WAIT`], or the message has waited
//! [`MAX_WAIT`] in all, the message goes anyway, and until the mark has caught up with
//! every message let through while the core committed nothing, nothing waits (one pause at
//! the start of an outage, not one per message). Messages let through once the core
//! commits again do not push that point further, so the keeper waits again soon after the
//! database is back, even under steady traffic. A bridge that ignores the gate loses only
//! this guarantee.
//!
//! Nothing here knows the core's database: the mark is a number in a
//! [`tokio::sync::watch`] channel the core publishes.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a message waits for its rows while the core commits nothing, before it goes
/// anyway.
pub const COMMIT_WAIT: Duration = Duration::from_secs(1);
/// The longest a message waits for its rows, even while the core commits.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// The core's durable mark: every row numbered up to it is committed (or refused and
/// logged). Cheap to clone (a shared channel).
pub type DurableMark = watch::Receiver<u64>;

/// What a message waits for before its network may see it (see the module's
/// documentation). The default gate is open.
#[derive(Clone, Debug, Default)]
pub struct SendGate {
    /// The mark and the row number it must reach; `None`: open.
    after: Option<(DurableMark, u64)>,
    /// When the message was accepted (its wait is counted from here).
    since: Option<Instant>,
}

impl SendGate {
    /// A gate with nothing to wait for.
    pub fn open() -> Self {
        Self::default()
    }

    /// A gate that opens once `mark` reaches `row`, accepted now.
    pub fn after(mark: DurableMark, row: u64) -> Self {
        Self {
            after: Some((mark, row)),
            since: Some(Instant::now()),
        }
    }

    /// Whether the rows are durable (or there are none).
    pub fn is_open(&self) -> bool {
        match &self.after {
            None => true,
            Some((mark, row)) => *mark.borrow() >= *row,
        }
    }

    /// Whether this gate has rows to wait for at all.
    pub fn is_gated(&self) -> bool {
        self.after.is_some()
    }

    /// The row number waited for (0: none).
    pub fn row(&self) -> u64 {
        self.after.as_ref().map_or(0, |(_, row)| *row)
    }

    /// The mark now (`u64::MAX` for an open gate).
    pub fn mark(&self) -> u64 {
        self.after
            .as_ref()
            .map_or(u64::MAX, |(mark, _)| *mark.borrow())
    }

    /// Resolves once the mark is no longer `seen` (the value a [`Verdict::WaitUntil`]
    /// was given on), or the core has stopped publishing it; at once for an open gate. For
    /// a bridge to wake on, then ask its [`GateKeeper`] again.
    pub fn changed(&self, seen: u64) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut mark = self.after.as_ref().map(|(m, _)| m.clone());
        async move {
            if let Some(mark) = &mut mark {
                let _ = mark.wait_for(|m| *m != seen).await;
            }
        }
    }
}

/// Gates compare by the row they wait for: two messages waiting for the same rows are
/// gated alike.
impl PartialEq for SendGate {
    fn eq(&self, other: &Self) -> bool {
        self.row() == other.row()
    }
}

impl Eq for SendGate {}

/// What the next gated message should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Go,
    /// Wait for the mark to move from `seen` ([`SendGate::changed`]), or until `until` at
    /// the latest, then ask again.
    WaitUntil {
        /// The latest instant to ask again.
        until: Instant,
        /// The mark this verdict was given on.
        seen: u64,
    },
}

/// One connection's view of the gates of the messages it sends in order: the bounds of
/// the module's documentation. Small; keep one per connection.
#[derive(Debug, Default)]
pub struct GateKeeper {
    /// The highest mark seen, and when it was first seen.
    seen: Option<(u64, Instant)>,
    /// A wait ran out: messages go without waiting until the mark reaches [`Behind::row`].
    behind: Option<Behind>,
}

/// The state of a keeper whose wait ran out.
#[derive(Debug, Clone, Copy)]
struct Behind {
    /// The last row let through while the core committed nothing: once the mark reaches
    /// it, messages wait again.
    row: u64,
    /// The mark when the wait ran out: while it stays there (the database is still stuck),
    /// every message let through moves `row` on; once it moves, `row` stays, so that the
    /// keeper catches up even while messages keep coming.
    stuck_at: u64,
}

impl GateKeeper {
    /// What the next message to send, gated by `gate`, should do at `now`.
    pub fn check(&mut self, gate: &SendGate, now: Instant) -> Verdict {
        let Some((_, row)) = &gate.after else {
            return Verdict::Go;
        };
        let mark = gate.mark();
        self.check_at(*row, mark, gate.since.unwrap_or(now), now)
    }

    /// Whether no outage is being ridden out (no wait ran out that the mark has not
    /// caught up with): a keeper in this state may be dropped and made anew.
    pub fn is_settled(&self) -> bool {
        self.behind.is_none()
    }

    /// [`GateKeeper::check`] for a message waiting for `row`, accepted at `since`, the
    /// mark being `mark`.
    fn check_at(&mut self, row: u64, mark: u64, since: Instant, now: Instant) -> Verdict {
        let moved_at = match self.seen {
            Some((seen, at)) if seen >= mark => at,
            _ => {
                self.seen = Some((mark, now));
                now
            }
        };
        if let Some(b) = self.behind
            && mark >= b.row
        {
            info!("the database has caught up: messages wait for their archive rows again");
            self.behind = None;
        }
        if row <= mark {
            return Verdict::Go;
        }
        if let Some(b) = &mut self.behind {
            if mark == b.stuck_at {
                b.row = b.row.max(row);
            }
            return Verdict::Go;
        }
        let deadline = (since.max(moved_at) + COMMIT_WAIT).min(since + MAX_WAIT);
        if now < deadline {
            return Verdict::WaitUntil {
                until: deadline,
                seen: mark,
            };
        }
        warn!(
            waited_ms = now.duration_since(since).as_millis() as u64,
            mark,
            "the database is slow or down: messages go to the network before their archive \
             rows are committed until it catches up (the rows stay queued)"
        );
        self.behind = Some(Behind {
            row,
            stuck_at: mark,
        });
        Verdict::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_never_waits() {
        let mut keeper = GateKeeper::default();
        let gate = SendGate::open();
        assert!(gate.is_open());
        assert!(!gate.is_gated());
        assert_eq!(keeper.check(&gate, Instant::now()), Verdict::Go);
    }

    #[test]
    fn a_gate_opens_when_the_mark_reaches_its_row() {
        let (tx, rx) = watch::channel(3u64);
        let gate = SendGate::after(rx, 5);
        let mut keeper = GateKeeper::default();
        let now = gate.since.expect("accepted now");
        assert!(!gate.is_open());
        assert_eq!(
            keeper.check(&gate, now),
            Verdict::WaitUntil {
                until: now + COMMIT_WAIT,
                seen: 3
            }
        );
        tx.send_replace(5);
        assert!(gate.is_open());
        assert_eq!(keeper.check(&gate, now), Verdict::Go);
    }

    #[tokio::test]
    async fn changed_wakes_when_the_mark_moves() {
        let (tx, rx) = watch::channel(1u64);
        let gate = SendGate::after(rx, 2);
        let waiting = tokio::spawn(gate.changed(1));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tx.send_replace(2);
        // A mark that moved before the wait began is not missed.
        tokio::time::timeout(Duration::from_secs(5), gate.changed(1))
            .await
            .expect("already moved");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
        // A core that stopped publishing wakes everyone too.
        let (tx, rx) = watch::channel(1u64);
        let gate = SendGate::after(rx, 2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), gate.changed(1))
            .await
            .expect("woken by the end");
    }

    #[test]
    fn a_message_waits_as_long_as_the_mark_moves_then_at_most_max_wait() {
        let t0 = Instant::now();
        let mut keeper = GateKeeper::default();
        let mut now = t0;
        let mut mark = 0;
        while now < t0 + MAX_WAIT {
            assert!(matches!(
                keeper.check_at(1000, mark, t0, now),
                Verdict::WaitUntil { until, .. } if until <= t0 + MAX_WAIT
            ));
            now += Duration::from_millis(800);
            mark += 10;
        }
        assert_eq!(keeper.check_at(1000, mark, t0, now), Verdict::Go);
    }

    #[test]
    fn after_a_wait_ran_out_messages_go_until_the_mark_catches_up() {
        let t0 = Instant::now();
        let mut keeper = GateKeeper::default();
        assert_eq!(
            keeper.check_at(5, 3, t0, t0),
            Verdict::WaitUntil {
                until: t0 + COMMIT_WAIT,
                seen: 3
            }
        );
        let late = t0 + COMMIT_WAIT;
        // Stuck at 3 for a second: it goes, and so do the next ones, at once.
        assert_eq!(keeper.check_at(5, 3, t0, late), Verdict::Go);
        assert_eq!(keeper.check_at(6, 3, late, late), Verdict::Go);
        assert!(!keeper.is_settled());
        // The database commits again: what goes now no longer moves the catch-up point (6).
        assert_eq!(keeper.check_at(7, 5, late, late), Verdict::Go);
        assert_eq!(keeper.check_at(8, 5, late, late), Verdict::Go);
        // Caught up with everything let through while it was stuck (6): they wait again,
        // though 7 and 8 are not committed yet.
        let t1 = late + Duration::from_millis(10);
        assert_eq!(
            keeper.check_at(9, 7, t1, t1),
            Verdict::WaitUntil {
                until: t1 + COMMIT_WAIT,
                seen: 7
            }
        );
    }
}
