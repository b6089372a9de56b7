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
//! At most [`IN_FLIGHT`] items of a kind are handed over and not yet handled; beyond that,
//! handing over waits. When thousands of users join at once, the stanzas not yet taken
//! then wait where they are (in the XMPP server, or in the network connection's own
//! bounded queue) instead of each holding a parsed stanza and a handler here: the
//! gateway's peak stays small, and so does what the burst leaves behind in the allocator.

use super::session::lock;
use futures::FutureExt as _;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, Semaphore};
use tracing::error;

/// How many items one user may have waiting; handing over more waits for room (nothing is
/// dropped), which slows down only the reader that hands items over. A worker handles its
/// items one at a time, so a few keep it busy (64 relayed no faster in the benchmark).
pub(super) const QUEUE: usize = 8;

/// How many items of a kind may be handed over and not yet handled, all users together:
/// several times what one user may queue, so that one busy user never holds them all.
/// Each item in flight holds a parsed stanza or event and its handler's state; when
/// thousands of users join at once, fewer in flight leave fewer short-lived objects among
/// the joined users' long-lived ones (32 instead of 128: 0.3 KiB less resident memory per
/// joined user at 1,000 users in the benchmark, the same join time and throughput).
pub(super) const IN_FLIGHT: usize = 32;

/// The live workers of one kind: each user's waiting items, by user.
pub(super) struct Workers<T> {
    queues: Mutex<HashMap<String, VecDeque<Box<T>>>>,
    /// Items handed over and not yet handled.
    busy: AtomicUsize,
    /// Told when a full queue has room again.
    room: Notify,
    /// One permit per item that may still be handed over ([`IN_FLIGHT`]).
    in_flight: Semaphore,
}

impl<T: Send + 'static> Workers<T> {
    /// No workers yet.
    pub(super) fn new() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            room: Notify::new(),
            in_flight: Semaphore::new(IN_FLIGHT),
        }
    }

    /// Whether every item handed over has been handled.
    pub(super) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Hands `item` to `key`'s worker; when `key` has none, queues it and calls `start`,
    /// which must spawn a task that calls [`Workers::run`] for `key`. Waits while the
    /// worker's queue is full or [`IN_FLIGHT`] items wait; never drops the item.
    pub(super) async fn hand(&self, key: &str, item: T, start: impl FnOnce()) {
        // Given back by the worker once the item is handled (`Done`).
        if let Ok(permit) = self.in_flight.acquire().await {
            permit.forget();
        }
        let mut item = Some(Box::new(item));
        self.busy.fetch_add(1, Ordering::SeqCst);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            {
                let mut queues = lock(&self.queues);
                match queues.get_mut(key) {
                    // Listening while the queues are still locked: a worker makes room
                    // under that lock and tells after it, so this cannot miss it. Only a
                    // full queue listens (that takes the `Notify`'s own lock).
                    Some(queue) if queue.len() >= QUEUE => {
                        room.as_mut().enable();
                    }
                    Some(queue) => {
                        queue.extend(item.take());
                        return;
                    }
                    None => {
                        queues.insert(key.to_owned(), item.take().into_iter().collect());
                        drop(queues);
                        start();
                        return;
                    }
                }
            }
            room.await;
        }
    }

    /// A worker's loop: handles `key`'s items in order and ends once its queue is empty
    /// (the next item then starts a new worker). A handler that panics is logged and the
    /// worker goes on with the next item.
    pub(super) async fn run<F, Fut>(&self, key: &str, mut handle: F)
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let (item, was_full) = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(key) else {
                    return;
                };
                let was_full = queue.len() >= QUEUE;
                match queue.pop_front() {
                    Some(item) => (item, was_full),
                    None => {
                        queues.remove(key);
                        return;
                    }
                }
            };
            if was_full {
                self.room.notify_waiters();
            }
            let _done = Done(self);
            // Boxed: the handler's future is large, and only a working worker holds it.
            let handled = AssertUnwindSafe(Box::pin(handle(*item))).catch_unwind();
            if handled.await.is_err() {
                error!(
                    user = key,
                    "an item's handler panicked; going on with the next"
                );
            }
        }
    }
}

/// Counts an item as handled when dropped, and lets the next one in.
struct Done<'a, T>(&'a Workers<T>);

impl<T> Drop for Done<'_, T> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.in_flight.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Workers for user `u` whose handler records each item once `gate` lets it through,
    /// and panics on 13 instead; counts the workers started.
    #[derive(Clone)]
    struct Rig {
        w: Arc<Workers<u32>>,
        seen: Arc<Mutex<Vec<u32>>>,
        starts: Arc<AtomicUsize>,
        gate: Arc<Semaphore>,
    }

    impl Rig {
        fn new(permits: usize) -> Self {
            Self {
                w: Arc::new(Workers::new()),
                seen: Arc::default(),
                starts: Arc::default(),
                gate: Arc::new(Semaphore::new(permits)),
            }
        }

        async fn hand(&self, n: u32) {
            self.hand_to("u", n).await
        }

        async fn hand_to(&self, key: &str, n: u32) {
            let rig = self.clone();
            let user = key.to_owned();
            self.w
                .hand(key, n, move || {
                    rig.starts.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        rig.w
                            .run(&user, |i| {
                                let rig = rig.clone();
                                async move {
                                    rig.gate.acquire().await.expect("open").forget();
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

        fn seen(&self) -> Vec<u32> {
            lock(&self.seen).clone()
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
    async fn a_full_queue_makes_the_hand_over_wait_and_loses_nothing() {
        let rig = Rig::new(0);
        let total = QUEUE as u32 + 20;
        let feeder = {
            let rig = rig.clone();
            tokio::spawn(async move {
                for n in 0..total {
                    rig.hand(n + 100).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!feeder.is_finished(), "the feeder waits for room");
        let queued = lock(&rig.w.queues).get("u").map(VecDeque::len);
        assert_eq!(queued, Some(QUEUE));
        rig.gate.add_permits(total as usize);
        feeder.await.expect("the feeder ends");
        rig.settle().await;
        assert_eq!(rig.seen(), (100..100 + total).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn at_most_in_flight_items_of_all_users_wait_and_the_next_hand_over_waits() {
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
        assert_eq!(rig.w.in_flight.available_permits(), IN_FLIGHT);
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
}
