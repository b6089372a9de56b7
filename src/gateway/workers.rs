//! One task per user for a kind of work (stanzas from XMPP, events from the network), so that
//! each user's items are handled in order while users never wait on each other.
//!
//! A worker exists only while its user has items: it is started with the first one and ends
//! when its queue is empty. The queues are plain vectors in one map, not channels: a channel
//! per user cost about a kilobyte each (a cache-padded state and a 32-slot block), and when
//! a thousand users joined at once those short-lived kilobytes were interleaved with the
//! joined users' long-lived state, leaving pages that one live object kept resident.
//! Items travel boxed, so a waiting item costs one pointer in its queue.
//!
//! Handing an item over never waits on a stuck user: when the user's queue is full, the item
//! is given back and the caller answers it (`resource-constraint`) or counts it. At once when
//! the user's worker is slow (see below); when it keeps up and the queue is full only because
//! the client sent a burst, after at most [`ROOM_WAIT`] for room (a burst of a hundred
//! messages then goes through, as it did when handing over waited without bound).
//!
//! At most [`IN_FLIGHT`] items of a kind are handed over and not yet handled; beyond that,
//! handing over waits. When thousands of users join at once, the stanzas not yet taken
//! then wait where they are (in the XMPP server, or in the network connection's own
//! bounded queue) instead of each holding a parsed stanza and a handler here: the
//! gateway's peak stays small, and so does what the burst leaves behind in the allocator.
//! A permit is held for at most [`PATIENCE`] after its item was handed over: a handler
//! still running then gives its permit back, and so do the items queued behind it, and
//! that user's next items take none until the worker moves on (it still handles them one
//! after the other, in order). A few users with slow handlers (a network that does not
//! answer) thus hold no permits, and the others wait at most [`PATIENCE`] for one; what a
//! slow user keeps is bounded by its own queue.

use super::session::lock;
use futures::FutureExt as _;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error};

/// How many stanzas other than presences one user may have waiting. One more waits for room
/// while the user's worker keeps up (up to [`ROOM_WAIT`]), else it is given back and the
/// gateway answers it with `resource-constraint`. A worker handles its items one at a
/// time, so a few keep it busy (64 relayed no faster in the benchmark).
pub(super) const QUEUE: usize = 8;

/// How many presences one user may have waiting: more than [`QUEUE`], since a client joins
/// every bookmarked room at once and a lost leave would keep the user in a channel. One more
/// is answered with a presence error, never dropped silently.
pub(super) const PRESENCE_QUEUE: usize = 32;

/// How many network events one user may have waiting. Events cannot be refused, so the
/// bound is large: it is reached only when the user's worker is stuck (or far behind) while
/// the network keeps talking; then each event beyond it is dropped with a log line and
/// counted (`estuary_events_dropped_total`).
pub(super) const EVENT_QUEUE: usize = 1024;

/// How many items of a kind may be handed over and not yet handled, all users together
/// (items past [`PATIENCE`] excepted). Each item in flight holds a parsed stanza or event
/// and its handler's state; when thousands of users join at once, fewer in flight leave
/// fewer short-lived objects among the joined users' long-lived ones (32 instead of 128:
/// 0.3 KiB less resident memory per joined user at 1,000 users in the benchmark, the same
/// join time and throughput).
pub(super) const IN_FLIGHT: usize = 32;

/// How long after it was handed over an item holds its global permit. Handlers take
/// milliseconds unless they wait on a network; one that waits longer gives its permit back
/// (and its user's queued items theirs) so that it never keeps other users waiting.
pub(super) const PATIENCE: Duration = Duration::from_millis(500);

/// How long handing over waits for room in the full queue of a user whose worker keeps up
/// (its handler has not run past [`PATIENCE`]) before the item is given back. The others'
/// stanzas behind it in the inbound queue wait that long at most, each.
pub(super) const ROOM_WAIT: Duration = Duration::from_millis(50);

/// How many requests that wait on the network (a room list, a kick) one user may have
/// running outside its worker at once; one more is answered with `resource-constraint`.
pub(super) const DETACHED: usize = 4;

/// The live workers of one kind: each user's waiting items, by user.
pub(super) struct Workers<T> {
    queues: Mutex<HashMap<String, Queue<T>>>,
    /// Items handed over and not yet handled.
    busy: AtomicUsize,
    /// One permit per item that may still be handed over ([`IN_FLIGHT`]).
    in_flight: Semaphore,
    /// Told when a queue that a hand-over waits on has room, or its worker turned slow.
    room: Notify,
    /// How long an item holds its permit ([`PATIENCE`]).
    patience: Duration,
    /// How long a hand-over waits for room in a full queue ([`ROOM_WAIT`]).
    room_wait: Duration,
}

/// One user's waiting items.
struct Queue<T> {
    items: VecDeque<Box<Entry<T>>>,
    /// Whether the item being handled ran past its patience: items handed over meanwhile
    /// take no permit.
    slow: bool,
    /// Whether a hand-over waits for room in this queue.
    wanted: bool,
}

/// A waiting item.
struct Entry<T> {
    item: T,
    /// When it was handed over (its patience counts from here).
    handed: Instant,
    /// Whether it holds one of the [`IN_FLIGHT`] permits.
    permit: bool,
}

impl<T: Send + 'static> Workers<T> {
    /// No workers yet.
    pub(super) fn new() -> Self {
        Self::with_timing(PATIENCE, ROOM_WAIT)
    }

    /// No workers yet; items hold their permits for `patience`, and a hand-over waits
    /// `room_wait` for room in the full queue of a worker that keeps up.
    fn with_timing(patience: Duration, room_wait: Duration) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            in_flight: Semaphore::new(IN_FLIGHT),
            room: Notify::new(),
            patience,
            room_wait,
        }
    }

    /// Whether every item handed over has been handled.
    pub(super) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Hands `item` to `key`'s worker; when `key` has none, queues it and calls `start`,
    /// which must spawn a task that calls [`Workers::run`] for `key`. Gives `item` back when
    /// `key` already has `limit` items waiting: at once if its worker is slow, else once
    /// no room came within [`ROOM_WAIT`]. Otherwise it may wait for one of the
    /// [`IN_FLIGHT`] permits (at most about [`PATIENCE`]), unless `key`'s worker is slow:
    /// then the item takes none.
    pub(super) async fn hand(
        &self,
        key: &str,
        item: T,
        limit: usize,
        start: impl FnOnce(),
    ) -> Result<(), T> {
        // Whether the permit was asked for, and whether it was given.
        let mut asked = false;
        let mut permit = false;
        let give_up = Instant::now() + self.room_wait;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            let full = {
                let mut queues = lock(&self.queues);
                let queue = queues.get_mut(key);
                let waiting = queue.as_ref().map_or(0, |q| q.items.len());
                let slow = queue.as_ref().is_some_and(|q| q.slow);
                if waiting >= limit {
                    if slow || Instant::now() >= give_up {
                        drop(queues);
                        if permit {
                            self.in_flight.add_permits(1);
                        }
                        return Err(item);
                    }
                    // Listening while the queues are still locked: the worker makes room
                    // (or turns slow) under that lock and tells after it.
                    if let Some(queue) = queue {
                        queue.wanted = true;
                    }
                    room.as_mut().enable();
                    true
                } else if asked || slow {
                    if permit && slow {
                        // The worker turned slow meanwhile: its items take no permit.
                        self.in_flight.add_permits(1);
                        permit = false;
                    }
                    let entry = Box::new(Entry {
                        item,
                        handed: Instant::now(),
                        permit,
                    });
                    self.busy.fetch_add(1, Ordering::SeqCst);
                    match queue {
                        Some(queue) => queue.items.push_back(entry),
                        None => {
                            let queue = Queue {
                                items: VecDeque::from([entry]),
                                slow: false,
                                wanted: false,
                            };
                            queues.insert(key.to_owned(), queue);
                            drop(queues);
                            start();
                        }
                    }
                    return Ok(());
                } else {
                    false
                }
            };
            if full {
                let _ = tokio::time::timeout_at(give_up, room).await;
                continue;
            }
            // Given back once the item is handled or its patience runs out (`Done`). The
            // semaphore is never closed; if it were, the item would go without.
            if let Ok(p) = self.in_flight.acquire().await {
                p.forget();
                permit = true;
            }
            asked = true;
        }
    }

    /// A worker's loop: handles `key`'s items in order and ends once its queue is empty
    /// (the next item then starts a new worker). A handler that panics is logged and the
    /// worker goes on with the next item. A handler still running [`PATIENCE`] after its
    /// item was handed over gives the permits of its user back; the worker still waits
    /// for it before the next item.
    pub(super) async fn run<F, Fut>(&self, key: &str, mut handle: F)
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let (entry, wanted) = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(key) else {
                    return;
                };
                queue.slow = false;
                let wanted = std::mem::take(&mut queue.wanted);
                match queue.items.pop_front() {
                    Some(entry) => (entry, wanted),
                    None => {
                        queues.remove(key);
                        return;
                    }
                }
            };
            if wanted {
                self.room.notify_waiters();
            }
            let Entry {
                item,
                handed,
                permit,
            } = *entry;
            let mut done = Done {
                workers: self,
                permit,
            };
            // Boxed: the handler's future is large, and only a working worker holds it.
            let mut handled = AssertUnwindSafe(Box::pin(handle(item))).catch_unwind();
            let outcome = tokio::select! {
                biased;
                outcome = &mut handled => outcome,
                () = tokio::time::sleep_until(handed + self.patience) => {
                    self.too_slow(key, &mut done);
                    handled.await
                }
            };
            if outcome.is_err() {
                error!(
                    user = key,
                    "an item's handler panicked; going on with the next"
                );
            }
        }
    }

    /// `key`'s handler ran past its patience: it and the items waiting behind it give their
    /// permits back, and the items handed over until it ends take none.
    fn too_slow(&self, key: &str, done: &mut Done<'_, T>) {
        let mut given = usize::from(std::mem::take(&mut done.permit));
        let mut wanted = false;
        {
            let mut queues = lock(&self.queues);
            if let Some(queue) = queues.get_mut(key) {
                queue.slow = true;
                wanted = std::mem::take(&mut queue.wanted);
                for entry in &mut queue.items {
                    given += usize::from(std::mem::take(&mut entry.permit));
                }
            }
        }
        if given > 0 {
            self.in_flight.add_permits(given);
        }
        if wanted {
            // A hand-over waiting for room gives its item back now.
            self.room.notify_waiters();
        }
        debug!(
            user = key,
            permits = given,
            "a handler runs past its patience; its user's items give their permits back"
        );
    }
}

/// Counts an item as handled when dropped, and gives its permit back if it still has it.
struct Done<'a, T> {
    workers: &'a Workers<T>,
    permit: bool,
}

impl<T> Drop for Done<'_, T> {
    fn drop(&mut self) {
        self.workers.busy.fetch_sub(1, Ordering::SeqCst);
        if self.permit {
            self.workers.in_flight.add_permits(1);
        }
    }
}

/// Counts, per user, the things running at once, up to a bound (the requests answered
/// outside the user's worker, [`DETACHED`]).
pub(super) struct PerUser {
    running: Mutex<HashMap<String, usize>>,
    max: usize,
}

impl PerUser {
    /// Nothing running yet; at most `max` per user.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            running: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A slot for `key`, or `None` when `key` already runs `max` things; the slot is free
    /// again when dropped.
    pub(super) fn try_take(self: &Arc<Self>, key: &str) -> Option<Slot> {
        let mut running = lock(&self.running);
        let count = running.get(key).copied().unwrap_or(0);
        if count >= self.max {
            return None;
        }
        running.insert(key.to_owned(), count + 1);
        Some(Slot {
            owner: Arc::clone(self),
            key: key.to_owned(),
        })
    }

    /// How many things `key` runs.
    #[cfg(test)]
    fn running(&self, key: &str) -> usize {
        lock(&self.running).get(key).copied().unwrap_or(0)
    }
}

/// One of a user's [`PerUser`] slots, free again when dropped.
pub(super) struct Slot {
    owner: Arc<PerUser>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = lock(&self.owner.running);
        if let Some(count) = running.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers whose handler records each item once `gate` lets it through (items of keys
    /// starting with `free` need no gate), and panics on 13 instead; counts the workers
    /// started.
    #[derive(Clone)]
    struct Rig {
        w: Arc<Workers<u32>>,
        seen: Arc<Mutex<Vec<u32>>>,
        starts: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
    }

    impl Rig {
        fn new(permits: usize) -> Self {
            Self::with_patience(permits, Duration::from_secs(60))
        }

        fn with_patience(permits: usize, patience: Duration) -> Self {
            Self::with_timing(permits, patience, Duration::from_secs(60))
        }

        fn with_timing(permits: usize, patience: Duration, room_wait: Duration) -> Self {
            Self {
                w: Arc::new(Workers::with_timing(patience, room_wait)),
                seen: Arc::default(),
                starts: Arc::default(),
                gate: Arc::new(Semaphore::new(permits)),
            }
        }

        async fn hand(&self, n: u32) {
            self.hand_to("u", n).await
        }

        async fn hand_to(&self, key: &str, n: u32) {
            let given = self.try_hand(key, n, QUEUE).await;
            assert_eq!(given, Ok(()), "the queue of {key} had room");
        }

        async fn try_hand(&self, key: &str, n: u32, limit: usize) -> Result<(), u32> {
            let rig = self.clone();
            let user = key.to_owned();
            self.w
                .hand(key, n, limit, move || {
                    rig.starts.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        rig.w
                            .run(&user, |i| {
                                let rig = rig.clone();
                                let gated = !user.starts_with("free");
                                async move {
                                    if gated {
                                        rig.gate.acquire().await.expect("open").forget();
                                    }
                                    assert_ne!(i, 13, "a handler that panics");
                                    lock(&rig.seen).push(i);
                                }
                            })
                            .await
                    });
                })
                .await
        }

        async fn settle(&self) {
            for _ in 0..400 {
                if self.w.is_idle() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the workers did not finish");
        }

        async fn wait_seen(&self, count: usize) {
            for _ in 0..400 {
                if self.seen().len() >= count {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("fewer than {count} items were handled: {:?}", self.seen());
        }

        fn seen(&self) -> Vec<u32> {
            lock(&self.seen).clone()
        }

        fn queued(&self, key: &str) -> Option<usize> {
            lock(&self.w.queues).get(key).map(|q| q.items.len())
        }

        fn permits(&self) -> usize {
            self.w.in_flight.available_permits()
        }
    }

    #[tokio::test]
    async fn items_of_one_key_are_handled_in_order_by_one_worker() {
        let rig = Rig::new(0);
        let end = 100 + QUEUE as u32;
        for n in 100..end {
            rig.hand(n).await;
        }
        rig.gate.add_permits(QUEUE);
        rig.settle().await;
        assert_eq!(rig.seen(), (100..end).collect::<Vec<_>>());
        assert_eq!(
            rig.starts.load(Ordering::SeqCst),
            1,
            "one worker took them all"
        );
        assert!(
            lock(&rig.w.queues).is_empty(),
            "the worker ended with its queue"
        );
    }

    #[tokio::test]
    async fn a_worker_ends_when_its_queue_is_empty_and_the_next_item_starts_one() {
        let rig = Rig::new(10);
        rig.hand(1).await;
        rig.settle().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(lock(&rig.w.queues).is_empty());
        rig.hand(2).await;
        rig.settle().await;
        assert_eq!(rig.seen(), [1, 2]);
        assert_eq!(rig.starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_slow_workers_full_queue_gives_the_item_back_at_once_and_the_others_go_on() {
        let rig = Rig::with_patience(0, Duration::from_millis(20));
        let limit = 4;
        // One being handled (stuck at the gate), `limit` waiting.
        assert_eq!(rig.try_hand("u", 100, limit).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rig.queued("u"), Some(0), "the worker took the first");
        for n in 101..=100 + limit as u32 {
            assert_eq!(rig.try_hand("u", n, limit).await, Ok(()));
        }
        assert_eq!(rig.queued("u"), Some(limit));
        // Past its patience the worker is slow: a full queue gives the item back at once
        // (this rig would wait a minute for room).
        tokio::time::sleep(Duration::from_millis(40)).await;
        let refused = tokio::time::timeout(Duration::from_secs(1), rig.try_hand("u", 7, limit))
            .await
            .expect("a slow worker's full queue does not make the hand-over wait");
        assert_eq!(refused, Err(7), "the item comes back to its sender");
        // Another user is not held up by the full queue.
        tokio::time::timeout(Duration::from_secs(1), rig.hand_to("free", 8))
            .await
            .expect("another user's item is taken at once");
        rig.gate.add_permits(limit + 1);
        rig.settle().await;
        let mine: Vec<u32> = rig.seen().into_iter().filter(|&n| n >= 100).collect();
        assert_eq!(mine, (100..=100 + limit as u32).collect::<Vec<_>>());
        assert!(rig.seen().contains(&8));
        assert!(!rig.seen().contains(&7), "the refused item was not handled");
        assert_eq!(rig.permits(), IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_full_queue_of_a_worker_that_keeps_up_waits_for_room_a_little() {
        let limit = 2;
        let rig = Rig::with_timing(0, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(rig.try_hand("u", 1, limit).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for n in [2, 3] {
            assert_eq!(rig.try_hand("u", n, limit).await, Ok(()));
        }
        let burst = {
            let rig = rig.clone();
            tokio::spawn(async move { rig.try_hand("u", 4, limit).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!burst.is_finished(), "the hand-over waits for room");
        rig.gate.add_permits(1);
        let handed = tokio::time::timeout(Duration::from_secs(1), burst)
            .await
            .expect("room came")
            .expect("the hand-over ends");
        assert_eq!(
            handed,
            Ok(()),
            "nothing is refused while the worker keeps up"
        );
        rig.gate.add_permits(3);
        rig.settle().await;
        assert_eq!(rig.seen(), [1, 2, 3, 4]);

        // When no room comes within the wait, the item comes back.
        let rig = Rig::with_timing(0, Duration::from_secs(60), Duration::from_millis(50));
        assert_eq!(rig.try_hand("u", 1, limit).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for n in [2, 3] {
            assert_eq!(rig.try_hand("u", n, limit).await, Ok(()));
        }
        let refused = tokio::time::timeout(Duration::from_secs(1), rig.try_hand("u", 4, limit))
            .await
            .expect("the wait for room is bounded");
        assert_eq!(refused, Err(4));
        rig.gate.add_permits(3);
        rig.settle().await;
        assert_eq!(rig.seen(), [1, 2, 3]);
        assert_eq!(rig.permits(), IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_hand_over_waiting_for_room_gives_up_when_the_worker_turns_slow() {
        let limit = 2;
        let patience = Duration::from_millis(100);
        let rig = Rig::with_timing(0, patience, Duration::from_secs(60));
        assert_eq!(rig.try_hand("u", 1, limit).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for n in [2, 3] {
            assert_eq!(rig.try_hand("u", n, limit).await, Ok(()));
        }
        let waited = std::time::Instant::now();
        let refused = tokio::time::timeout(Duration::from_secs(2), rig.try_hand("u", 4, limit))
            .await
            .expect("the worker's patience ends the wait");
        assert_eq!(refused, Err(4));
        assert!(
            waited.elapsed() < Duration::from_secs(1),
            "{:?}",
            waited.elapsed()
        );
        rig.gate.add_permits(3);
        rig.settle().await;
        assert_eq!(rig.permits(), IN_FLIGHT);
    }

    #[tokio::test]
    async fn within_patience_at_most_in_flight_items_wait_and_the_next_hand_over_waits() {
        let rig = Rig::new(0);
        for n in 0..IN_FLIGHT as u32 {
            rig.hand_to(&format!("u{n}"), n + 100).await;
        }
        let last = {
            let rig = rig.clone();
            tokio::spawn(async move { rig.hand_to("late", 7).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!last.is_finished(), "the hand-over beyond the limit waits");
        rig.gate.add_permits(IN_FLIGHT + 1);
        last.await.expect("it goes through once items are handled");
        rig.settle().await;
        assert_eq!(rig.seen().len(), IN_FLIGHT + 1);
        assert_eq!(rig.permits(), IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_slow_handler_gives_its_permits_back_after_its_patience() {
        let patience = Duration::from_millis(50);
        let rig = Rig::with_patience(0, patience);
        // A few slow users fill every permit: each one's handler and queued items.
        let per_user = IN_FLIGHT / 4;
        for user in 0..4u32 {
            for i in 0..per_user as u32 {
                rig.hand_to(&format!("slow{user}"), 1000 * (user + 1) + i)
                    .await;
            }
        }
        assert_eq!(rig.permits(), 0, "every permit is held");
        tokio::time::sleep(patience * 4).await;
        assert_eq!(
            rig.permits(),
            IN_FLIGHT,
            "past their patience, the slow handlers and their queues hold no permit"
        );
        // Others go through, and the slow users' new items take no permit.
        for n in 0..IN_FLIGHT as u32 {
            tokio::time::timeout(
                Duration::from_secs(1),
                rig.hand_to(&format!("free{n}"), 100 + n),
            )
            .await
            .expect("another user is not held up");
        }
        rig.hand_to("slow0", 1999).await;
        rig.wait_seen(IN_FLIGHT).await;
        assert_eq!(rig.permits(), IN_FLIGHT, "a slow user's new item took none");
        rig.gate.add_permits(4 * per_user + 1);
        rig.settle().await;
        assert_eq!(rig.permits(), IN_FLIGHT, "no permit was given back twice");
        let slow0: Vec<u32> = rig
            .seen()
            .into_iter()
            .filter(|n| (1000..2000).contains(n))
            .collect();
        let mut expected: Vec<u32> = (1000..1000 + per_user as u32).collect();
        expected.push(1999);
        assert_eq!(slow0, expected, "a slow user's order is kept");
    }

    #[tokio::test]
    async fn order_is_kept_across_a_slow_handler() {
        let patience = Duration::from_millis(30);
        let rig = Rig::with_patience(0, patience);
        for n in 0..3 {
            rig.hand(n).await;
        }
        tokio::time::sleep(patience * 3).await;
        for n in 3..6 {
            rig.hand(n).await;
        }
        rig.gate.add_permits(1);
        tokio::time::sleep(patience * 3).await;
        for n in 6..9 {
            rig.hand(n).await;
        }
        rig.gate.add_permits(8);
        rig.settle().await;
        assert_eq!(rig.seen(), (0..9).collect::<Vec<_>>());
        assert_eq!(rig.permits(), IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_panicking_handler_does_not_stop_the_items_after_it() {
        let rig = Rig::new(10);
        for n in [12, 13, 14] {
            rig.hand(n).await;
        }
        rig.settle().await;
        assert_eq!(rig.seen(), [12, 14]);
    }

    #[test]
    fn per_user_slots_are_bounded_and_freed_when_dropped() {
        let limit = PerUser::new(2);
        let a1 = limit.try_take("a").expect("a first slot");
        let a2 = limit.try_take("a").expect("a second slot");
        assert!(limit.try_take("a").is_none(), "a third is refused");
        let b = limit.try_take("b").expect("another user has their own");
        assert_eq!(limit.running("a"), 2);
        drop(a1);
        assert_eq!(limit.running("a"), 1);
        let a3 = limit.try_take("a").expect("a freed slot is taken again");
        drop((a2, a3, b));
        assert_eq!(limit.running("a"), 0);
        assert!(lock(&limit.running).is_empty(), "no user is kept at zero");
    }
}
