//! One task per user for a kind of work (stanzas from XMPP, events from the network), so that
//! each user's items are handled in order while users never wait on each other.
//!
//! Items travel boxed: a channel allocates its slots in blocks of 32, so with thousands of
//! users an unboxed stanza or event per slot would cost kilobytes per user while idle.

use super::session::lock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a worker waits for its next item before it ends. Short: an idle user then holds
/// no task and no queue (about 1.3 KiB each), and starting a worker again costs a spawn.
const IDLE: Duration = Duration::from_secs(2);

/// The live workers of one kind, by user.
pub(super) struct Workers<T> {
    map: Mutex<HashMap<String, mpsc::Sender<Box<T>>>>,
    /// Items handed over and not yet handled.
    busy: AtomicUsize,
}

impl<T: Send + 'static> Workers<T> {
    /// No workers yet.
    pub(super) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
        }
    }

    /// Whether every item handed over has been handled.
    pub(super) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Hands `item` to `key`'s worker, starting one with `start` when there is none or the
    /// last one has just ended. Waits while the worker's queue is full; never drops the item.
    pub(super) async fn hand(&self, key: &str, item: T, start: impl Fn(mpsc::Receiver<Box<T>>)) {
        let mut item = Box::new(item);
        self.busy.fetch_add(1, Ordering::SeqCst);
        loop {
            let tx = {
                let mut map = lock(&self.map);
                match map.get(key) {
                    Some(tx) if !tx.is_closed() => tx.clone(),
                    _ => {
                        let (tx, rx) = mpsc::channel(256);
                        start(rx);
                        map.insert(key.to_string(), tx.clone());
                        tx
                    }
                }
            };
            match tx.send(item).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => item = back,
            }
        }
    }

    /// A worker's loop: handles items in order and ends after [`IDLE`] without any. Items
    /// that slip in while it ends are still handled; later ones start a new worker.
    pub(super) async fn run<F, Fut>(&self, key: &str, mut rx: mpsc::Receiver<Box<T>>, mut handle: F)
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                // Boxed: the handler's future is large, and a worker waiting for its next
                // item should not hold its space.
                Ok(Some(item)) => {
                    let _done = Done(&self.busy);
                    Box::pin(handle(*item)).await;
                }
                Ok(None) => return,
                Err(_) => {
                    {
                        let mut map = lock(&self.map);
                        if !rx.is_empty() {
                            continue;
                        }
                        map.remove(key);
                        rx.close();
                    }
                    while let Ok(item) = rx.try_recv() {
                        let _done = Done(&self.busy);
                        Box::pin(handle(*item)).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Counts an item as handled when dropped, also when its handler panicked.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn items_of_one_key_are_handled_in_order() {
        let workers: Arc<Workers<u32>> = Arc::new(Workers::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for n in 0..100 {
            let (w, s) = (Arc::clone(&workers), Arc::clone(&seen));
            workers
                .hand("u", n, move |rx| {
                    let (w, s) = (Arc::clone(&w), Arc::clone(&s));
                    tokio::spawn(async move {
                        w.run("u", rx, |i| {
                            lock(&s).push(i);
                            async {}
                        })
                        .await
                    });
                })
                .await;
        }
        for _ in 0..100 {
            if lock(&seen).len() == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*lock(&seen), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_ends_and_a_new_one_takes_over() {
        let workers: Arc<Workers<u32>> = Arc::new(Workers::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let starts = Arc::new(Mutex::new(0));
        let hand = |n: u32| {
            let (w, s, c) = (Arc::clone(&workers), Arc::clone(&seen), Arc::clone(&starts));
            async move {
                let w2 = Arc::clone(&w);
                w.hand("u", n, move |rx| {
                    *lock(&c) += 1;
                    let (w, s) = (Arc::clone(&w2), Arc::clone(&s));
                    tokio::spawn(async move {
                        w.run("u", rx, |i| {
                            lock(&s).push(i);
                            async {}
                        })
                        .await
                    });
                })
                .await
            }
        };
        hand(1).await;
        tokio::time::sleep(IDLE * 2).await;
        hand(2).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*lock(&seen), [1, 2]);
        assert_eq!(*lock(&starts), 2, "the first worker ended while idle");
    }
}
