//! The archive pruner: a background task that enforces `[archive]`'s retention
//! ([`RetentionPolicy`]) at start and then periodically, in bounded batches, and stops at
//! shutdown.
//!
//! Each batch is one short `DELETE` (see [`crate::db`]'s retention methods); the task
//! yields between batches, so writes from the gateways (which share SQLite's one writer)
//! wait for at most one batch.

use crate::db::{Database, DbError, Pruned, RetentionPolicy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, info_span, warn};

/// Most batches one pass runs, so that a pass always ends (the rest waits for the next).
const MAX_BATCHES_PER_PASS: u32 = 10_000;

/// What the pruner removed since the process started, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RetentionStats {
    /// Archive rows removed because they were too old.
    pub archive_by_age: AtomicU64,
    /// Archive rows removed because their room held more than its count.
    pub archive_by_count: AtomicU64,
    /// Message-map rows removed (too old).
    pub map_rows: AtomicU64,
    /// Passes that failed (a database error; retried at the next pass).
    pub failed_passes: AtomicU64,
}

impl RetentionStats {
    fn record(&self, pruned: Pruned) {
        self.archive_by_age
            .fetch_add(pruned.by_age, Ordering::Relaxed);
        self.archive_by_count
            .fetch_add(pruned.by_count, Ordering::Relaxed);
        self.map_rows.fetch_add(pruned.map_rows, Ordering::Relaxed);
    }
}

/// How the pruner runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrunerConfig {
    /// What to keep.
    pub policy: RetentionPolicy,
    /// Time between passes (the first runs at start).
    pub interval: Duration,
    /// Most rows one `DELETE` removes.
    pub batch: u64,
    /// Pause between two batches of a pass, so that queued writes go first.
    pub pause: Duration,
}

/// The running pruner; [`Pruner::stop`] ends it.
#[derive(Debug)]
pub struct Pruner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Pruner {
    /// Starts the pruner on `db`; `None` when the policy keeps everything.
    pub fn start(db: Database, config: PrunerConfig, stats: Arc<RetentionStats>) -> Option<Pruner> {
        if config.policy.keeps_everything() {
            return None;
        }
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(
            async move {
                loop {
                    // Not raced with the stop signal: the pass looks at it between
                    // batches, so stopping waits for one batch at most.
                    match prune_pass(&db, &config, &stopped).await {
                        Ok(pruned) => {
                            stats.record(pruned);
                            if pruned != Pruned::default() {
                                info!(
                                    by_age = pruned.by_age,
                                    by_count = pruned.by_count,
                                    map_rows = pruned.map_rows,
                                    "archive pruned"
                                );
                            }
                        }
                        Err(e) => {
                            stats.failed_passes.fetch_add(1, Ordering::Relaxed);
                            warn!("archive pruning failed (retried at the next pass): {e}");
                        }
                    }
                    if *stopped.borrow() {
                        break;
                    }
                    tokio::select! {
                        _ = stopped.changed() => break,
                        () = tokio::time::sleep(config.interval) => {}
                    }
                }
            }
            .instrument(info_span!("archive.pruner")),
        );
        Some(Pruner { stop, task })
    }

    /// Stops the pruner and waits for it: a batch under way completes first (one short
    /// statement), then the task ends.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// One pass: every batch the policy calls for, now. Stops early (with what it removed so
/// far) when `stopped` turns true or after [`MAX_BATCHES_PER_PASS`] batches.
pub async fn prune_pass(
    db: &Database,
    config: &PrunerConfig,
    stopped: &watch::Receiver<bool>,
) -> Result<Pruned, DbError> {
    let mut pruned = Pruned::default();
    let mut batches = 0u32;
    let go_on = |removed: u64, batches: &mut u32, stopped: &watch::Receiver<bool>| {
        *batches += 1;
        removed >= config.batch.max(1) && *batches < MAX_BATCHES_PER_PASS && !*stopped.borrow()
    };
    if let Some(age) = config.policy.max_age_ms {
        let before = crate::db::now_ms().saturating_sub(age);
        loop {
            let n = db.prune_archive_older_than(before, config.batch).await?;
            pruned.by_age += n;
            if !go_on(n, &mut batches, stopped) {
                break;
            }
            tokio::time::sleep(config.pause).await;
        }
        loop {
            let n = db
                .prune_message_map_older_than(before, config.batch)
                .await?;
            pruned.map_rows += n;
            if !go_on(n, &mut batches, stopped) {
                break;
            }
            tokio::time::sleep(config.pause).await;
        }
    }
    if let Some(keep) = config.policy.max_per_room {
        for room in db.archive_rooms_over(keep).await? {
            loop {
                let n = db.prune_archive_room_to(&room, keep, config.batch).await?;
                pruned.by_count += n;
                if !go_on(n, &mut batches, stopped) {
                    break;
                }
                tokio::time::sleep(config.pause).await;
            }
            if *stopped.borrow() || batches >= MAX_BATCHES_PER_PASS {
                break;
            }
        }
    }
    Ok(pruned)
}
