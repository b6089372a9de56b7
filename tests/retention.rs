//! Archive retention (`[archive]`): the pruner's deletions on SQLite and PostgreSQL, their
//! boundaries, MAM paging after them, and how long a batch holds SQLite's writer.
//!
//! PostgreSQL: a fresh database on `ESTUARY_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end; never skipped.

use estuary::db::{ArchiveQuery, ArchivedMessage, Database, DbError, RetentionPolicy, SealKey};
use estuary::retention::{PrunerConfig, prune_pass};
use sqlx::Connection as _;
use std::time::{Duration, Instant};

const DEFAULT_POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn msg(id: &str, at_ms: i64) -> ArchivedMessage {
    ArchivedMessage {
        stanza_id: id.to_owned(),
        from_nick: "n".into(),
        body: format!("body {id}"),
        at_ms,
        remote_id: Some(format!("r-{id}")),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn ids(db: &Database, user: &str, room: &str) -> Vec<String> {
    let q = ArchiveQuery {
        limit: 1000,
        ..ArchiveQuery::default()
    };
    db.archive_query("fake", user, room, &q)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.stanza_id)
        .collect()
}

fn config(policy: RetentionPolicy, batch: u64) -> PrunerConfig {
    PrunerConfig {
        policy,
        interval: Duration::from_secs(3600),
        batch,
        pause: Duration::ZERO,
    }
}

async fn checks(db: &Database) {
    let (_stop, never) = tokio::sync::watch::channel(false);

    // Age: a message exactly at the limit stays; one millisecond older goes.
    let now = now_ms();
    let day = 86_400_000;
    db.archive_import(
        "fake",
        "a@x",
        "#age",
        &[
            msg("old2", now - 3 * day),
            msg("old1", now - day - 60_000),
            msg("edge", now - day + 60_000),
            msg("new", now),
        ],
    )
    .await
    .unwrap();
    let age = RetentionPolicy {
        max_age_ms: Some(day),
        max_per_room: None,
    };
    let pruned = prune_pass(db, &config(age, 1), &never).await.unwrap();
    assert_eq!(pruned.by_age, 2, "{pruned:?}");
    assert_eq!(ids(db, "a@x", "#age").await, ["edge", "new"]);
    // The exact boundary, on the statement itself: strictly older than `before` goes.
    db.archive_import(
        "fake",
        "a@x",
        "#edge",
        &[msg("999", 999), msg("1000", 1000), msg("1001", 1001)],
    )
    .await
    .unwrap();
    assert_eq!(db.prune_archive_older_than(1000, 10).await.unwrap(), 1);
    assert_eq!(ids(db, "a@x", "#edge").await, ["1000", "1001"]);
    assert_eq!(db.prune_archive_older_than(1000, 10).await.unwrap(), 0);

    // Count, per room: 10 in one room, 3 in another, 7 in the same room of another user;
    // keep 5, removed in batches of 2.
    let ten: Vec<_> = (0..10).map(|i| msg(&format!("m{i}"), now)).collect();
    db.archive_import("fake", "a@x", "#big", &ten)
        .await
        .unwrap();
    let three: Vec<_> = (0..3).map(|i| msg(&format!("s{i}"), now)).collect();
    db.archive_import("fake", "a@x", "#small", &three)
        .await
        .unwrap();
    let seven: Vec<_> = (0..7).map(|i| msg(&format!("b{i}"), now)).collect();
    db.archive_import("fake", "b@x", "#big", &seven)
        .await
        .unwrap();
    let count = RetentionPolicy {
        max_age_ms: None,
        max_per_room: Some(5),
    };
    let pruned = prune_pass(db, &config(count, 2), &never).await.unwrap();
    assert_eq!(pruned.by_count, 5 + 2, "{pruned:?}");
    assert_eq!(ids(db, "a@x", "#big").await, ["m5", "m6", "m7", "m8", "m9"]);
    assert_eq!(ids(db, "a@x", "#small").await, ["s0", "s1", "s2"]);
    assert_eq!(ids(db, "b@x", "#big").await, ["b2", "b3", "b4", "b5", "b6"]);
    // A room at exactly its count loses nothing; a second pass removes nothing.
    let again = prune_pass(db, &config(count, 2), &never).await.unwrap();
    assert_eq!(again.archive_rows(), 0);

    // MAM after pruning: the first page starts at the new oldest, paging from it works,
    // the last page is right, and only the pruned id is unknown.
    let first = db
        .archive_query(
            "fake",
            "a@x",
            "#big",
            &ArchiveQuery {
                limit: 2,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    let first_ids: Vec<_> = first
        .messages
        .iter()
        .map(|m| m.stanza_id.as_str())
        .collect();
    assert_eq!(first_ids, ["m5", "m6"]);
    assert!(!first.complete);
    let next = db
        .archive_query(
            "fake",
            "a@x",
            "#big",
            &ArchiveQuery {
                after_id: Some("m5".into()),
                limit: 10,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next.messages.len(), 4);
    assert!(next.complete);
    let back = db
        .archive_query(
            "fake",
            "a@x",
            "#big",
            &ArchiveQuery {
                before_id: Some("m6".into()),
                limit: 10,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    let back_ids: Vec<_> = back.messages.iter().map(|m| m.stanza_id.as_str()).collect();
    assert_eq!(back_ids, ["m5"]);
    assert!(back.complete, "m5 is now the oldest");
    let last = db
        .archive_query(
            "fake",
            "a@x",
            "#big",
            &ArchiveQuery {
                last_page: true,
                limit: 2,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    let last_ids: Vec<_> = last.messages.iter().map(|m| m.stanza_id.as_str()).collect();
    assert_eq!(last_ids, ["m8", "m9"]);
    let gone = db
        .archive_query(
            "fake",
            "a@x",
            "#big",
            &ArchiveQuery {
                after_id: Some("m4".into()),
                limit: 10,
                ..ArchiveQuery::default()
            },
        )
        .await;
    assert!(matches!(gone, Err(DbError::NotFound(_))), "{gone:?}");

    // Message map: pruned by age only; a recent mapping stays (corrections still work).
    db.map_message("fake", "a@x", "r:#big", "x-new", "r-new")
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO message_map (bridge, user_jid, chat, xmpp_id, remote_id, at_ms) \
         VALUES ('fake', 'a@x', 'r:#big', 'x-old', 'r-old', $1)",
    )
    .bind(now - 2 * day)
    .execute(db.pool())
    .await
    .unwrap();
    let pruned = prune_pass(db, &config(age, 10), &never).await.unwrap();
    assert_eq!(pruned.map_rows, 1, "{pruned:?}");
    assert_eq!(
        db.remote_id_for("fake", "a@x", "r:#big", "x-new")
            .await
            .unwrap()
            .as_deref(),
        Some("r-new")
    );
    assert_eq!(
        db.remote_id_for("fake", "a@x", "r:#big", "x-old")
            .await
            .unwrap(),
        None
    );
    // The count limit never touches the map: a busy room's recent messages stay correctable.
    let pruned = prune_pass(db, &config(count, 10), &never).await.unwrap();
    assert_eq!(pruned.map_rows, 0);

    // A stop signal ends a pass after its current batch.
    let many: Vec<_> = (0..50).map(|i| msg(&format!("h{i}"), 1)).collect();
    db.archive_import("fake", "a@x", "#stop", &many)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    stop.send(true).unwrap();
    let pruned = prune_pass(db, &config(age, 10), &stopped).await.unwrap();
    assert_eq!(pruned.by_age, 10, "one batch, then stopped");
}

#[tokio::test]
async fn sqlite_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let db = Database::connect(&url, SealKey::generate()).await.unwrap();
    checks(&db).await;
    db.close().await;
}

#[tokio::test]
async fn postgres_retention() {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("ESTUARY_TEST_POSTGRES")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN.to_owned());
    let name = format!("estuary_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL reachable (set ESTUARY_TEST_POSTGRES)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (server, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{server}/{name}");
    let outcome = tokio::spawn(async move {
        let db = Database::connect(&url, SealKey::generate()).await.unwrap();
        checks(&db).await;
        db.close().await;
    })
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// SQLite has one writer (and the gateway's pool one connection): a batch of deletions
/// must not hold it long. 60,000 old rows are pruned in batches of 10,000 while a writer
/// appends a message every 5 ms; the slowest batch and the slowest append are printed
/// (see docs/admin.md) and bounded.
#[tokio::test]
async fn sqlite_a_batch_does_not_block_writes_for_long() {
    // The default batch, then a batch of 10,000.
    for batch in [1_000, 10_000] {
        writes_during_pruning(batch).await;
    }
}

async fn writes_during_pruning(batch: u64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let db = Database::connect(&url, SealKey::generate()).await.unwrap();
    const ROWS: usize = 60_000;
    let batch_size = batch;
    for room in 0..6 {
        let rows: Vec<_> = (0..ROWS / 6)
            .map(|i| msg(&format!("o{room}-{i}"), 1))
            .collect();
        db.archive_import("fake", "a@x", &format!("#r{room}"), &rows)
            .await
            .unwrap();
    }

    // The count pass starts with one scan for rooms over their limit; it holds SQLite's one
    // pooled connection too.
    let t = Instant::now();
    let over = db.archive_rooms_over(1_000).await.unwrap();
    println!(
        "finding the rooms over 1,000 among {ROWS} rows took {:?}",
        t.elapsed()
    );
    assert_eq!(over.len(), 6);
    let writer_db = db.clone();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut n = 0u32;
        // Bounded: at most 2,000 appends (10 s), whatever the pruner does.
        while !*done_rx.borrow() && n < 2000 {
            let t = Instant::now();
            writer_db
                .archive_append("fake", "a@x", "#live", &msg(&format!("w{n}"), now_ms()))
                .await
                .unwrap();
            worst = worst.max(t.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (worst, n)
    });

    let mut slowest = Duration::ZERO;
    let mut removed = 0;
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let n = db.prune_archive_older_than(2, batch_size).await.unwrap();
        slowest = slowest.max(t.elapsed());
        removed += n;
        if n < batch_size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    done_tx.send(true).unwrap();
    let (worst_write, writes) = writer.await.unwrap();
    println!(
        "pruned {removed} rows in {total:?}; slowest batch of {batch_size}: {slowest:?}; \
         slowest of {writes} concurrent appends: {worst_write:?}"
    );
    assert_eq!(removed, ROWS as u64);
    assert!(writes > 0);
    // Generous bounds for a shared 2-core debug build; the figures are what matter.
    assert!(slowest < Duration::from_secs(3), "a batch took {slowest:?}");
    let bound = if batch_size <= 1_000 {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    assert!(worst_write < bound, "an append waited {worst_write:?}");
    db.close().await;
}

/// The background task: prunes at start, counts what it removed, prunes again at its next
/// pass, and stops when asked.
#[tokio::test]
async fn the_pruner_runs_at_start_and_periodically_and_stops() {
    use estuary::retention::{Pruner, RetentionStats};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let db = Database::connect(&url, SealKey::generate()).await.unwrap();
    let rows: Vec<_> = (0..25).map(|i| msg(&format!("p{i}"), now_ms())).collect();
    db.archive_import("fake", "a@x", "#p", &rows).await.unwrap();
    let stats = Arc::new(RetentionStats::default());
    let mut cfg = config(
        RetentionPolicy {
            max_age_ms: None,
            max_per_room: Some(10),
        },
        4,
    );
    cfg.interval = Duration::from_millis(200);
    let pruner = Pruner::start(db.clone(), cfg, Arc::clone(&stats)).expect("a limit is set");
    let wait_for = |want: u64| {
        let stats = Arc::clone(&stats);
        async move {
            for _ in 0..100 {
                if stats.archive_by_count.load(Ordering::Relaxed) >= want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the pruner removed fewer than {want} in 2 s");
        }
    };
    wait_for(15).await;
    assert_eq!(ids(&db, "a@x", "#p").await.len(), 10);
    // New messages: the next pass (200 ms later) removes the surplus again.
    let more: Vec<_> = (0..5).map(|i| msg(&format!("q{i}"), now_ms())).collect();
    db.archive_import("fake", "a@x", "#p", &more).await.unwrap();
    wait_for(20).await;
    let kept = ids(&db, "a@x", "#p").await;
    assert_eq!(kept.first().map(String::as_str), Some("p20"));
    assert_eq!(kept.last().map(String::as_str), Some("q4"));
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), pruner.stop())
        .await
        .expect("stops");
    println!("stopped in {:?}", t.elapsed());
    assert_eq!(stats.failed_passes.load(Ordering::Relaxed), 0);
    // No policy, no task.
    assert!(Pruner::start(db.clone(), config(RetentionPolicy::default(), 4), stats).is_none());
    db.close().await;
}
