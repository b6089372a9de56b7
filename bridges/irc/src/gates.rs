//! The send gates of one connection: a user's room message is written to the server only
//! once the core's archive row of it is durable ([`estuary_bridge_api::gate`]), within the
//! [`GateKeeper`]'s bounds (a database that commits nothing costs one pause, not a stall).
//!
//! Only the first line of a message carries a gate; the lines behind it wait in the
//! session's queue, in order, so under load the wait costs the latency of one batch commit
//! in the core, not throughput. Kept in the session's rarely used state: a connection
//! whose lines never wait holds nothing for it.

use estuary_bridge_api::gate::Verdict;
use estuary_bridge_api::{GateKeeper, SendGate};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// A wait for the core's durable mark to move, boxed: made only while a line waits.
type MarkWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The gate state of one connection.
#[derive(Default)]
pub struct Gates {
    keeper: GateKeeper,
    /// Wakes when the mark moves from the value it was made for.
    wait: Option<(u64, MarkWait)>,
    /// When the waiting line goes whatever the mark does.
    until: Option<Instant>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("keeper", &self.keeper)
            .field("waiting", &self.wait.is_some())
            .field("until", &self.until)
            .finish()
    }
}

impl Gates {
    /// Whether the line gated by `gate` may be written now. If not, a wait for the mark
    /// and a deadline are set ([`Gates::poll`], [`Gates::deadline`]).
    pub fn check(&mut self, gate: &SendGate, now: Instant) -> bool {
        match self.keeper.check(gate, now) {
            Verdict::Go => {
                self.clear();
                true
            }
            Verdict::WaitUntil { until, seen } => {
                if self.wait.as_ref().is_none_or(|(s, _)| *s != seen) {
                    self.wait = Some((seen, Box::pin(gate.changed(seen))));
                }
                self.until = Some(until);
                false
            }
        }
    }

    /// No line waits any more.
    pub fn clear(&mut self) {
        self.wait = None;
        self.until = None;
    }

    /// `Ready` once the mark has moved while a line waited: time to check again.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((_, wait)) = &mut self.wait else {
            return Poll::Pending;
        };
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.wait = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// When the waiting line goes at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Nothing waits and no outage is being ridden out: the state may be dropped.
    pub fn is_idle(&self) -> bool {
        self.wait.is_none() && self.until.is_none() && self.keeper.is_settled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::watch;

    #[tokio::test]
    async fn a_line_waits_for_its_mark_then_goes() {
        let (tx, rx) = watch::channel(0u64);
        let gate = SendGate::after(rx, 2);
        let mut gates = Gates::default();
        assert!(!gates.check(&gate, Instant::now()));
        assert!(gates.deadline().is_some());
        assert!(!gates.is_idle());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(gates.poll(&mut cx).is_pending());
        tx.send_replace(2);
        let woke = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| gates.poll(cx)),
        )
        .await;
        assert!(woke.is_ok(), "woken when the mark moved");
        assert!(gates.check(&gate, Instant::now()));
        assert!(gates.is_idle());
    }
}
