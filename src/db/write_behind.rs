//! Write-behind for the rows on the hot paths: room archive rows and message-map rows
//! (every relayed message), the rooms a user is in and automatic logins (every join) are
//! queued and written in batches, one transaction per batch, by one task per
//! [`Database`](super::Database).
//!
//! Relaying a message or joining a room must not wait for a commit: under load a commit per
//! row made the database the bottleneck of the whole gateway, and a thousand users joining
//! at once each held a handler (kilobytes) while it waited for the one SQLite connection. The queue keeps the order rows were
//! handed in (archive sequence numbers follow it), and every reader of these tables first
//! waits until what was queued before it is written ([`WriteBehind::settle`]), so a MAM
//! query or a reply lookup always sees every earlier message. A graceful stop writes what
//! is queued ([`Database::close`](super::Database::close)).
//!
//! **Group commit.** Every queued row gets a [`Ticket`], numbered in the order rows are
//! queued, and the writer publishes the *watermark*: the highest ticket such that every row
//! up to it is finished (committed, or refused and logged). A stanza that shows a row's
//! message to someone is handed to the component link with that row's ticket, and the link
//! writes it only once the watermark has reached it (`src/xmpp/link.rs`). The producer does
//! not wait, and the link keeps taking later stanzas in order behind it, so this costs the
//! latency of one batch commit, not throughput; and a crash (SIGKILL) can only lose the
//! rows of messages nobody was shown yet. Tickets are taken before the row enters the
//! queue, so two producers can hand their rows in out of ticket order: the watermark
//! ([`Watermark`]) moves only over a contiguous run of finished tickets.

use super::archive::ArchivedMessage;
use super::{Backend, DbError, now_ms};
use sqlx::{AnyPool, Row as _};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

/// How many jobs may wait; a full queue makes producers wait (nothing is dropped).
const QUEUE: usize = 8192;
/// The most rows written in one transaction.
const MAX_BATCH: usize = 512;

/// One row to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Append a message to a room's archive.
    Archive {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The room's key.
        room: String,
        /// The message.
        msg: ArchivedMessage,
    },
    /// Map an XMPP message id to the network's id (insert or replace).
    Map {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The chat's key.
        chat: String,
        /// The XMPP id (origin-id, stanza-id or message id).
        xmpp_id: String,
        /// The network's id.
        remote_id: String,
    },
    /// Remember that a user is in a room, with the nick used there (insert or update).
    Room {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The room's key.
        room: String,
        /// The user's nick there.
        nick: String,
    },
    /// Forget that a user is in a room.
    RoomLeft {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The room's key.
        room: String,
    },
    /// A room message of the user's accepted for sending: its archive row (under the
    /// stanza-id chosen now) and its `pending_sends` row (which keeps that stanza-id, so a
    /// replay after a crash reuses it), in one transaction. The message goes to the
    /// network once this row's ticket is committed (the bridge's send gate).
    AcceptedSend {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The room's key.
        room: String,
        /// The message as archived.
        msg: ArchivedMessage,
        /// The `pending_sends` row's id (kept by an earlier run, or new).
        id: String,
        /// What to send again at the next start, as the gateway serialized it.
        payload: String,
    },
    /// Forget a send the network answered (a `pending_sends` row): a room message's echo
    /// came back.
    SendDone {
        /// The row's id.
        id: String,
    },
    /// Record the login a user gets by just using a bridge that needs no registration (no
    /// fields, no metadata), unless the user has a login there already.
    AutoLogin {
        /// The bridge.
        bridge: String,
        /// The user's bare JID.
        user: String,
        /// The login's id.
        login_id: String,
    },
}

/// The number of a queued row: once [`Database::committed`](super::Database::committed)
/// has reached it, the row is written (or was refused, and that was logged). The default
/// ticket, [`Ticket::NONE`], is reached from the start: nothing to wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// No row to wait for.
    pub const NONE: Ticket = Ticket(0);
}

/// The highest ticket such that every ticket up to it is finished, from tickets finished
/// in any order.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    /// Every ticket up to this one is finished.
    low: u64,
    /// Finished tickets above `low + 1` (a gap below them).
    above: BTreeSet<u64>,
}

impl Watermark {
    /// Marks `ticket` finished; returns the watermark.
    pub(crate) fn finish(&mut self, ticket: u64) -> u64 {
        if ticket > self.low {
            self.above.insert(ticket);
        }
        while self.above.first() == Some(&(self.low + 1)) {
            self.above.pop_first();
            self.low += 1;
        }
        self.low
    }

    /// Every ticket up to this one is finished.
    pub(crate) fn low(&self) -> u64 {
        self.low
    }
}

// Nearly every job is a row; a settle is rare. Boxing the rows would cost an allocation
// per relayed message to save bytes only while a job waits in the queue.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write(u64, Write),
    Settle(oneshot::Sender<()>),
}

/// The producer side of the write-behind queue.
#[derive(Debug)]
pub(crate) struct WriteBehind {
    tx: mpsc::Sender<Job>,
    /// The last ticket given.
    issued: Arc<AtomicU64>,
    /// The watermark, published by the writer.
    committed: watch::Receiver<Ticket>,
    /// The same, as a number, for the bridges' send gates.
    durable: watch::Receiver<u64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write(n, w) => write!(f, "#{n} {w:?}"),
            Job::Settle(_) => f.write_str("Settle"),
        }
    }
}

impl WriteBehind {
    /// Starts the writer task on `pool`.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (committed_tx, committed) = watch::channel(Ticket::NONE);
        let (durable_tx, durable) = watch::channel(0);
        let marks = Marks {
            committed: committed_tx,
            durable: durable_tx,
        };
        tokio::spawn(run(pool, backend, rx, marks));
        Self {
            tx,
            issued: Arc::new(AtomicU64::new(0)),
            committed,
            durable,
        }
    }

    /// Queues a row and returns its ticket; waits only while the queue is full.
    pub(crate) async fn push(&self, write: Write) -> Result<Ticket, DbError> {
        let ticket = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        self.tx
            .send(Job::Write(ticket, write))
            .await
            .map_err(|_| DbError::Closed)?;
        Ok(Ticket(ticket))
    }

    /// The watermark: every row whose ticket is at most this is written (or refused).
    pub(crate) fn committed(&self) -> watch::Receiver<Ticket> {
        self.committed.clone()
    }

    /// The watermark as a number (see [`super::Database::durable_mark`]).
    pub(crate) fn durable_mark(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Waits until every row queued before this call is written (or failed and logged).
    pub(crate) async fn settle(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Settle(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Where the writer publishes its watermark: for the component link's commit gate, and
/// as a number for the bridges' send gates.
struct Marks {
    committed: watch::Sender<Ticket>,
    durable: watch::Sender<u64>,
}

async fn run(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Job>, marks: Marks) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut tickets = Vec::with_capacity(MAX_BATCH);
    let mut settled = Vec::new();
    let mut watermark = Watermark::default();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(n, w) => {
                    tickets.push(n);
                    writes.push(w);
                }
                Job::Settle(done) => settled.push(done),
            }
            if writes.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            let started = std::time::Instant::now();
            write_all(&pool, backend, &writes).await;
            debug!(
                rows = writes.len(),
                took_us = started.elapsed().as_micros() as u64,
                "rows written behind"
            );
            writes.clear();
            let before = watermark.low();
            for n in tickets.drain(..) {
                watermark.finish(n);
            }
            if watermark.low() != before {
                marks.committed.send_replace(Ticket(watermark.low()));
                marks.durable.send_replace(watermark.low());
            }
        }
        for done in settled.drain(..) {
            let _ = done.send(());
        }
    }
}

/// How often a batch is tried again when the database itself fails (unreachable, pool
/// timed out), one second apart, before its rows are tried one by one.
const BATCH_TRIES: u32 = 3;

/// Writes a batch in one transaction. When the database fails as a whole, the batch is
/// tried again a little later; when a row is refused, the rows are written one by one, so
/// that one bad row costs only itself.
async fn write_all(pool: &AnyPool, backend: Backend, writes: &[Write]) {
    let mut tries = 0;
    let batch_error = loop {
        match write_batch(pool, backend, writes).await {
            Ok(()) => return,
            Err(e) if is_row_error(&e) => break e,
            Err(e) => {
                tries += 1;
                if tries >= BATCH_TRIES {
                    break e;
                }
                warn!(
                    "cannot write {} queued rows ({e}); trying again",
                    writes.len()
                );
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    if !is_row_error(&batch_error) {
        warn!("{} queued rows lost: {batch_error}", writes.len());
        return;
    }
    if writes.len() == 1 {
        warn!("cannot write {}: {batch_error}", what(&writes[0]));
        return;
    }
    for w in writes {
        if let Err(e) = write_batch(pool, backend, std::slice::from_ref(w)).await {
            warn!("cannot write {}: {e}", what(w));
        }
    }
}

/// Whether the database refused something in the rows (a constraint, a value) rather
/// than failing as a whole.
fn is_row_error(e: &DbError) -> bool {
    matches!(e, DbError::Sqlx(sqlx::Error::Database(_)))
}

fn what(w: &Write) -> &'static str {
    match w {
        Write::Archive { .. } => "an archived room message",
        Write::Map { .. } => "a message-map row",
        Write::Room { .. } => "a joined room",
        Write::RoomLeft { .. } => "a left room",
        Write::AutoLogin { .. } => "an automatic login",
        Write::SendDone { .. } => "a finished send",
        Write::AcceptedSend { .. } => "an accepted room message",
    }
}

/// Writes `writes` in one transaction, archive sequence numbers in order.
pub(crate) async fn write_batch(
    pool: &AnyPool,
    backend: Backend,
    writes: &[Write],
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    // Take the sequence numbers first (and with them SQLite's write lock): per bridge, one
    // counter update for the whole batch.
    let mut bridges: Vec<(&str, i64)> = Vec::new();
    for w in writes {
        if let Write::Archive { bridge, .. } | Write::AcceptedSend { bridge, .. } = w {
            match bridges.iter_mut().find(|(b, _)| b == bridge) {
                Some((_, n)) => *n += 1,
                None => bridges.push((bridge, 1)),
            }
        }
    }
    let mut next_seq: Vec<(&str, i64)> = Vec::with_capacity(bridges.len());
    for (bridge, n) in bridges {
        let row = sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + $2 \
             RETURNING value",
        )
        .bind(format!("archive/{bridge}"))
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        let last: i64 = row.try_get(0)?;
        next_seq.push((bridge, last - n + 1));
    }
    let now = now_ms();
    // Archive and message-map rows, the bulk of every batch, go in a few multi-row
    // statements (one statement per row made the writer slower than the traffic on
    // PostgreSQL, a round trip each); the other rows one by one, in their order. The two
    // tables are independent of each other and of the others, so only the order within
    // each counts: archive rows keep theirs, and of two map rows for one XMPP id the later
    // wins, as it would row by row.
    let mut archive: Vec<ArchiveRow<'_>> = Vec::new();
    let mut maps: Vec<&Write> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut sends: Vec<SendRow<'_>> = Vec::new();
    for w in writes {
        match w {
            Write::Archive {
                bridge,
                user,
                room,
                msg,
            }
            | Write::AcceptedSend {
                bridge,
                user,
                room,
                msg,
                ..
            } => {
                let seq = next_seq
                    .iter_mut()
                    .find(|(b, _)| b == bridge)
                    .map(|(_, s)| {
                        *s += 1;
                        *s - 1
                    })
                    .unwrap_or_default();
                archive.push((bridge, user, room, seq, msg));
                if let Write::AcceptedSend { id, payload, .. } = w {
                    sends.push((id, bridge, user, payload, msg));
                }
            }
            Write::Map { .. } => maps.push(w),
            Write::SendDone { id } => done.push(id),
            _ => {}
        }
    }
    insert_archive(&mut tx, backend, &archive).await?;
    insert_maps(&mut tx, backend, &latest_maps(&maps), now).await?;
    // Rows of sends started before those of sends finished: both may be in one batch.
    insert_sends(&mut tx, backend, &sends).await?;
    delete_sends(&mut tx, backend, &done).await?;
    for w in writes {
        match w {
            Write::Archive { .. }
            | Write::Map { .. }
            | Write::SendDone { .. }
            | Write::AcceptedSend { .. } => {}
            Write::Room {
                bridge,
                user,
                room,
                nick,
            } => {
                sqlx::query(
                    "INSERT INTO rooms (bridge, user_jid, room_id, nick, joined_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (bridge, user_jid, room_id) DO UPDATE SET nick = excluded.nick",
                )
                .bind(bridge.as_str())
                .bind(user.as_str())
                .bind(room.as_str())
                .bind(nick.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Write::RoomLeft { bridge, user, room } => {
                sqlx::query(
                    "DELETE FROM rooms WHERE bridge = $1 AND user_jid = $2 AND room_id = $3",
                )
                .bind(bridge.as_str())
                .bind(user.as_str())
                .bind(room.as_str())
                .execute(&mut *tx)
                .await?;
            }
            Write::AutoLogin {
                bridge,
                user,
                login_id,
            } => {
                super::users::insert_user(&mut *tx, user, now).await?;
                sqlx::query(
                    "INSERT INTO logins \
                       (bridge, user_jid, login_id, fields, metadata, created_at_ms, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, '{}', $5, $5) \
                     ON CONFLICT (bridge, user_jid) DO NOTHING",
                )
                .bind(bridge.as_str())
                .bind(user.as_str())
                .bind(login_id.as_str())
                .bind(super::logins::EMPTY_FIELDS)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// An archive row ready to insert: bridge, user, room, sequence number, message.
type ArchiveRow<'a> = (&'a str, &'a str, &'a str, i64, &'a ArchivedMessage);

/// Rows per multi-row statement: far below SQLite's and PostgreSQL's limits on bound
/// values (9 per archive row).
const ROWS_PER_STATEMENT: usize = 128;

/// `rows` groups of `columns` placeholders: `($1, $2, …), ($n+1, …), …` for PostgreSQL,
/// `(?, ?, …), …` for SQLite.
///
/// SQLite gets anonymous `?`s because binding a numbered parameter makes sqlx ask SQLite
/// for its name, a linear search of the statement's parameter list: over a batch of 128
/// archive rows (1,152 values) that search was the gateway's largest single CPU cost per
/// relayed message (`perf`, `irc_vs_biboumi`, docs/performance.md). Anonymous parameters
/// have no name to look up and are numbered in the order written, which is the order bound.
fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => out.push_str(&format!("${}", r * columns + c + 1)),
            }
        }
        out.push(')');
    }
    out
}

async fn insert_archive(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    rows: &[ArchiveRow<'_>],
) -> Result<(), DbError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO archive \
               (bridge, user_jid, room, seq, stanza_id, from_nick, body, at_ms, remote_id) \
             VALUES {} ON CONFLICT (bridge, user_jid, room, stanza_id) DO NOTHING",
            placeholders(backend, chunk.len(), 9)
        );
        // Built from placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (bridge, user, room, seq, msg) in chunk {
            q = q
                .bind(*bridge)
                .bind(*user)
                .bind(*room)
                .bind(*seq)
                .bind(msg.stanza_id.as_str())
                .bind(msg.from_nick.as_str())
                .bind(msg.body.as_str())
                .bind(msg.at_ms)
                .bind(msg.remote_id.as_deref());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A `pending_sends` row of an accepted room message: id, bridge, user, payload, and the
/// message as archived (its stanza-id, and its time, which orders replays).
type SendRow<'a> = (&'a str, &'a str, &'a str, &'a str, &'a ArchivedMessage);

/// Writes the `pending_sends` rows of accepted room messages, many per statement; a row
/// kept by an earlier run (a replay) gets the stanza-id.
async fn insert_sends(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    rows: &[SendRow<'_>],
) -> Result<(), DbError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO pending_sends (id, bridge, user_jid, queued_at_ms, payload, stanza_id) \
             VALUES {} ON CONFLICT (id) DO UPDATE SET stanza_id = excluded.stanza_id",
            placeholders(backend, chunk.len(), 6)
        );
        // Built from placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, bridge, user, payload, msg) in chunk {
            q = q
                .bind(*id)
                .bind(*bridge)
                .bind(*user)
                .bind(msg.at_ms)
                .bind(*payload)
                .bind(msg.stanza_id.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes finished `pending_sends` rows, many per statement.
async fn delete_sends(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    ids: &[&str],
) -> Result<(), DbError> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        // One group of `chunk.len()` placeholders: `($1, $2, …)` or `(?, ?, …)`.
        let list = placeholders(backend, 1, chunk.len());
        let sql = format!("DELETE FROM pending_sends WHERE id IN {list}");
        // Built from placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The map rows to write: of several for one key (bridge, user, chat, XMPP id), the last
/// (an upsert row by row leaves the last; one statement may not touch a row twice).
fn latest_maps<'a>(maps: &[&'a Write]) -> Vec<&'a Write> {
    let key = |w: &Write| match w {
        Write::Map {
            bridge,
            user,
            chat,
            xmpp_id,
            ..
        } => Some((bridge.clone(), user.clone(), chat.clone(), xmpp_id.clone())),
        _ => None,
    };
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&Write> = maps
        .iter()
        .rev()
        .filter(|w| seen.insert(key(w)))
        .copied()
        .collect();
    out.reverse();
    out
}

async fn insert_maps(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    maps: &[&Write],
    now: i64,
) -> Result<(), DbError> {
    for chunk in maps.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO message_map (bridge, user_jid, chat, xmpp_id, remote_id, at_ms) \
             VALUES {} ON CONFLICT (bridge, user_jid, chat, xmpp_id) DO UPDATE SET \
               remote_id = excluded.remote_id, at_ms = excluded.at_ms",
            placeholders(backend, chunk.len(), 6)
        );
        // Built from placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for w in chunk {
            if let Write::Map {
                bridge,
                user,
                chat,
                xmpp_id,
                remote_id,
            } = w
            {
                q = q
                    .bind(bridge.as_str())
                    .bind(user.as_str())
                    .bind(chat.as_str())
                    .bind(xmpp_id.as_str())
                    .bind(remote_id.as_str())
                    .bind(now);
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_follows_tickets_finished_in_order() {
        let mut w = Watermark::default();
        assert_eq!(w.low(), 0);
        assert_eq!(w.finish(1), 1);
        assert_eq!(w.finish(2), 2);
        assert_eq!(w.finish(3), 3);
    }

    #[test]
    fn the_watermark_waits_for_a_ticket_handed_in_late() {
        // Tickets 2 and 3 reached the writer before 1 (two producers racing): 3 committed
        // does not mean 1 is.
        let mut w = Watermark::default();
        assert_eq!(w.finish(2), 0);
        assert_eq!(w.finish(3), 0);
        assert_eq!(w.finish(5), 0);
        assert_eq!(w.finish(1), 3, "1, 2, 3 finished; 4 not yet");
        assert_eq!(w.finish(4), 5);
        assert!(w.above.is_empty());
    }

    #[test]
    fn a_ticket_finished_twice_or_below_the_watermark_changes_nothing() {
        let mut w = Watermark::default();
        w.finish(1);
        w.finish(2);
        assert_eq!(w.finish(1), 2);
        assert_eq!(w.finish(4), 2);
        assert_eq!(w.finish(4), 2);
        assert_eq!(w.finish(3), 4);
        assert!(w.above.is_empty());
    }

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(placeholders(Backend::Postgres, 1, 2), "($1, $2)");
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Sqlite, 2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    fn map(xmpp_id: &str, remote_id: &str) -> Write {
        Write::Map {
            bridge: "b".into(),
            user: "u@x".into(),
            chat: "r:c".into(),
            xmpp_id: xmpp_id.into(),
            remote_id: remote_id.into(),
        }
    }

    #[test]
    fn of_two_map_rows_for_one_id_the_later_is_kept_in_place() {
        let (a1, b, a2) = (map("a", "1"), map("b", "2"), map("a", "3"));
        let kept = latest_maps(&[&a1, &b, &a2]);
        assert_eq!(kept, vec![&b, &a2]);
    }

    #[tokio::test]
    async fn a_batch_of_many_rows_writes_each_once_in_order() {
        sqlx::any::install_default_drivers();
        let db = crate::db::Database::connect("sqlite::memory:", crate::db::SealKey::generate())
            .await
            .expect("an in-memory database");
        let mut writes = Vec::new();
        for i in 0..300 {
            writes.push(Write::Archive {
                bridge: "b".into(),
                user: "u@x".into(),
                room: "#r".into(),
                msg: ArchivedMessage {
                    stanza_id: format!("s{i}"),
                    from_nick: "n".into(),
                    body: format!("m {i}"),
                    at_ms: i,
                    remote_id: None,
                },
            });
            writes.push(map(&format!("x{i}"), &format!("r{i}")));
            // The same id mapped again later in the batch (an echo): the later wins.
            writes.push(map(&format!("x{}", i / 2), &format!("again{i}")));
        }
        write_batch(db.pool(), db.backend(), &writes)
            .await
            .expect("written");
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT body, seq FROM archive ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .expect("read");
        assert_eq!(rows.len(), 300);
        assert!(
            rows.iter()
                .enumerate()
                .all(|(i, (body, _))| *body == format!("m {i}"))
        );
        assert!(
            rows.windows(2).all(|w| w[1].1 == w[0].1 + 1),
            "consecutive seq"
        );
        let (remote,): (String,) =
            sqlx::query_as("SELECT remote_id FROM message_map WHERE xmpp_id = 'x10'")
                .fetch_one(db.pool())
                .await
                .expect("read");
        assert_eq!(remote, "again21", "the last of x10's rows");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM message_map")
            .fetch_one(db.pool())
            .await
            .expect("read");
        assert_eq!(count, 300);
    }

    /// An accepted room message is one row of the write-behind: its archive row and its
    /// `pending_sends` row (with the stanza-id) land in the same batch; a finished send in
    /// the same batch removes its row after it was written; replays list in accept order.
    #[tokio::test]
    async fn an_accepted_send_writes_its_archive_and_pending_rows_together() {
        sqlx::any::install_default_drivers();
        let db = crate::db::Database::connect("sqlite::memory:", crate::db::SealKey::generate())
            .await
            .expect("an in-memory database");
        let accepted = |i: i64| Write::AcceptedSend {
            bridge: "b".into(),
            user: "u@x".into(),
            room: "#r".into(),
            msg: ArchivedMessage {
                stanza_id: format!("s{i}"),
                from_nick: "me".into(),
                body: format!("m {i}"),
                at_ms: 1000 + i,
                remote_id: None,
            },
            id: format!("p{i}"),
            payload: format!("<message id='{i}'/>"),
        };
        let writes = vec![
            accepted(1),
            accepted(2),
            Write::SendDone { id: "p1".into() },
            accepted(3),
        ];
        write_batch(db.pool(), db.backend(), &writes)
            .await
            .expect("written");
        let bodies: Vec<(String, String)> =
            sqlx::query_as("SELECT stanza_id, body FROM archive ORDER BY seq")
                .fetch_all(db.pool())
                .await
                .expect("read");
        assert_eq!(
            bodies,
            [("s1", "m 1"), ("s2", "m 2"), ("s3", "m 3")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let pending = db.list_sends("b").await.expect("listed");
        let got: Vec<(&str, Option<&str>)> = pending
            .iter()
            .map(|p| (p.id.as_str(), p.stanza_id.as_deref()))
            .collect();
        assert_eq!(got, [("p2", Some("s2")), ("p3", Some("s3"))]);
        // The same message accepted again (a replay whose row was kept without a
        // stanza-id) keeps its row and its place.
        write_batch(db.pool(), db.backend(), &[accepted(2)])
            .await
            .expect("written again");
        assert_eq!(db.list_sends("b").await.expect("listed").len(), 2);
    }

    #[tokio::test]
    async fn tickets_are_committed_in_order_and_the_watermark_is_published() {
        sqlx::any::install_default_drivers();
        let db = crate::db::Database::connect("sqlite::memory:", crate::db::SealKey::generate())
            .await
            .expect("an in-memory database");
        let mut committed = db.committed();
        let mut last = Ticket::NONE;
        for i in 0..100 {
            let t = db
                .write_later(Write::Map {
                    bridge: "b".into(),
                    user: "u@x".into(),
                    chat: "r:c".into(),
                    xmpp_id: format!("x{i}"),
                    remote_id: format!("r{i}"),
                })
                .await
                .expect("queued");
            assert!(t > last, "tickets grow: {t:?} after {last:?}");
            last = t;
        }
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            committed.wait_for(|c| *c >= last),
        )
        .await
        .expect("the watermark reaches the last ticket")
        .expect("the writer runs");
        // Reached means written: the row is there without waiting for anything else.
        let row: (String,) =
            sqlx::query_as("SELECT remote_id FROM message_map WHERE xmpp_id = 'x99'")
                .fetch_one(db.pool())
                .await
                .expect("the last row is written");
        assert_eq!(row.0, "r99");
    }
}
