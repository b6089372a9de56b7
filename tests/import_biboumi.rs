//! `estuary import-biboumi`, run as the admin runs it: a Biboumi database built with the
//! tables Biboumi 9 creates (as `/usr/bin/biboumi` made them here) and rows good and odd,
//! imported into a fresh Estuary SQLite database, then read back through Estuary's own
//! database API: settings (secrets sealed), the archive in date order, nothing imported
//! twice, and the refusals (not a Biboumi file, a database open elsewhere). The import
//! runs into SQLite and into PostgreSQL (a fresh database on the server named by
//! `ESTUARY_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`; the
//! test fails if it cannot be reached).

use estuary::db::{ArchiveQuery, Database, SealKey};
use sqlx::Connection as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The schema as Biboumi 9 creates it (`sqlite3 .schema` of a file Biboumi made).
const BIBOUMI_SCHEMA: &str = "
CREATE TABLE muclogline_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,uuid_ TEXT,owner_ TEXT,ircchanname_ TEXT,ircservername_ TEXT,date_ INTEGER,body_ TEXT,nick_ TEXT);
CREATE TABLE globaloptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,maxhistorylength_ INTEGER,recordhistory_ INTEGER,persistent_ INTEGER);
CREATE TABLE ircserveroptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,server_ TEXT,pass_ TEXT,tlsports_ TEXT,ports_ TEXT,username_ TEXT,realname_ TEXT,verifycert_ INTEGER,trustedfingerprint_ TEXT,encodingout_ TEXT,encodingin_ TEXT,maxhistorylength_ INTEGER,address_ TEXT,nick_ TEXT,saslpassword_ TEXT,throttlelimit_ INTEGER);
CREATE TABLE ircchanneloptions_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,owner_ TEXT,server_ TEXT,channel_ TEXT,encodingout_ TEXT,encodingin_ TEXT,maxhistorylength_ INTEGER,persistent_ INTEGER,recordhistory_ INTEGER);
CREATE TABLE roster (local TEXT,remote TEXT);
CREATE TABLE after_connection_commands_ (id_ INTEGER PRIMARY KEY AUTOINCREMENT,fk_ INTEGER,afterconnectioncommand_ TEXT);
CREATE INDEX archive_index ON muclogline_(owner_,ircchanname_,ircservername_);
";

/// Rows: alice has everything; bob has only odd rows; a NULL owner, bad UTF-8, an
/// encoding Estuary does not speak, a negative throttle, a channel that is not one.
const BIBOUMI_ROWS: &str = "
INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_) VALUES
  ('alice@example.org', 42, 0, 1),
  (NULL, 20, 1, 0),
  ('bob@example.org', 500, 1, 0);
INSERT INTO ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, realname_,
    verifycert_, trustedfingerprint_, encodingout_, encodingin_, maxhistorylength_, address_,
    nick_, saslpassword_, throttlelimit_) VALUES
  ('alice@example.org', 'irc.example.net', 'server-pw', '6697;6670', '6667', 'ali', 'Alice A.',
    0, 'AB:CD', 'UTF-8', 'ISO-8859-1', 20, '', 'alice', 'sasl-pw', 10),
  ('bob@example.org', 'irc.example.net', X'ff70', '6697', '6667', '', '', 1, '', 'koi8-r', '',
    20, '', 'bob', '', -1);
INSERT INTO after_connection_commands_ (fk_, afterconnectioncommand_) VALUES
  (1, 'MODE alice +x'), (1, 'PRIVMSG NickServ :hello'), (99, 'orphan');
INSERT INTO ircchanneloptions_ (owner_, server_, channel_, encodingout_, encodingin_,
    maxhistorylength_, persistent_, recordhistory_) VALUES
  ('alice@example.org', 'irc.example.net', '#rust', '', '', -1, 1, -1),
  ('alice@example.org', 'irc.example.net', 'nochannel', '', '', 20, 1, 0);
INSERT INTO muclogline_ (uuid_, owner_, ircchanname_, ircservername_, date_, body_, nick_) VALUES
  ('00000000-0000-4000-8000-000000000002', 'alice@example.org', '#rust', 'irc.example.net', 1700000060, 'second', 'bob'),
  ('00000000-0000-4000-8000-000000000001', 'alice@example.org', '#rust', 'irc.example.net', 1700000000, 'first', 'carol'),
  ('00000000-0000-4000-8000-000000000003', 'alice@example.org', '#rust', 'irc.example.net', 1700000120, X'6869ff', 'bob'),
  ('00000000-0000-4000-8000-000000000004', 'alice@example.org', '#rust', 'irc.example.net', NULL, 'no date', 'bob'),
  (NULL, 'alice@example.org', '#rust', 'irc.example.net', 1700000180, 'third', 'alice'),
  ('00000000-0000-4000-8000-000000000005', 'alice@example.org', '#go', 'irc.example.net', 1700000000, 'other room', 'dave');
INSERT INTO roster (local, remote) VALUES ('irc.example.net@biboumi.example.org', 'alice@example.org');
";

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    biboumi: PathBuf,
    /// The SQLite file of Estuary's database (unused with PostgreSQL).
    estuary: PathBuf,
    db_url: String,
    key: PathBuf,
}

async fn setup() -> Setup {
    setup_with(None).await
}

/// A Biboumi file and a configuration whose database is `db_url`, or a SQLite file.
async fn setup_with(db_url: Option<String>) -> Setup {
    let dir = tempfile::tempdir().expect("a temp dir");
    let biboumi = dir.path().join("biboumi.sqlite");
    let url = format!("sqlite://{}?mode=rwc", biboumi.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("creates the Biboumi file");
    sqlx::raw_sql(BIBOUMI_SCHEMA)
        .execute(&mut conn)
        .await
        .expect("Biboumi's tables");
    sqlx::raw_sql(BIBOUMI_ROWS)
        .execute(&mut conn)
        .await
        .expect("Biboumi's rows");
    conn.close().await.expect("closed");
    let estuary = dir.path().join("estuary.db");
    let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}", estuary.display()));
    let key = dir.path().join("estuary.key");
    let config = dir.path().join("estuary.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\nseal_key_file = \"{}\"\n\
             [bridges.irc]\ndomain = \"irc.example.org\"\nsecret = \"s\"\n",
            key.display()
        ),
    )
    .expect("config written");
    Setup {
        _dir: dir,
        config,
        biboumi,
        estuary,
        db_url,
        key,
    }
}

fn import(s: &Setup, source: &Path, apply: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_estuary"));
    cmd.arg("--config")
        .arg(&s.config)
        .arg("import-biboumi")
        .arg(source)
        .env("RUST_LOG", "warn");
    if apply {
        cmd.arg("--apply");
    }
    cmd.output().expect("estuary runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The report line of a table.
fn line<'a>(stdout: &'a str, table: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{table}:")))
        .unwrap_or_else(|| panic!("no line for {table} in:\n{stdout}"))
}

async fn open(s: &Setup) -> Database {
    let key = SealKey::load_or_create(&s.key).expect("the key the import made");
    Database::connect(&s.db_url, key)
        .await
        .expect("Estuary's database")
}

#[tokio::test]
async fn a_biboumi_database_is_imported_once_and_reads_back() {
    import_and_read_back(&setup().await).await;
}

#[tokio::test]
async fn a_biboumi_database_is_imported_into_postgresql() {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("ESTUARY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("estuary_import_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin_url}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("a fresh database");
    let (server, _) = admin_url.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}");
    // In its own task, so that the database is dropped even if a check fails.
    let outcome = tokio::spawn(async move {
        import_and_read_back(&setup_with(Some(url)).await).await;
    })
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("dropped");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Dry run, import, reading back, second import.
async fn import_and_read_back(s: &Setup) {
    // A dry run says what would be imported and writes nothing.
    let out = import(s, &s.biboumi, false);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        line(&stdout, "globaloptions_"),
        "globaloptions_: 3 read, 2 to import, 0 already in Estuary, 1 skipped"
    );
    assert!(stdout.contains("skipped 1: owner_ is empty"), "{stdout}");
    assert!(
        stdout.contains("value left out 1: max_history_length: '500'"),
        "{stdout}"
    );
    assert_eq!(
        line(&stdout, "muclogline_"),
        "muclogline_: 6 read, 4 to import, 0 already in Estuary, 2 skipped"
    );
    assert!(stdout.contains("body_ is not UTF-8 text"), "{stdout}");
    assert!(stdout.contains("date_ is empty"), "{stdout}");
    assert!(stdout.contains("Dry run"), "{stdout}");
    {
        let db = open(s).await;
        assert_eq!(
            db.get_login("irc", "alice@example.org").await.unwrap(),
            None
        );
        db.close().await;
    }

    let out = import(s, &s.biboumi, true);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        line(&stdout, "ircserveroptions_"),
        "ircserveroptions_: 2 read, 2 imported, 0 already in Estuary, 0 skipped",
        "{stdout}"
    );
    for reason in [
        "trustedfingerprint_ has no Estuary equivalent",
        "pass_ is not UTF-8 text",
        "encoding_out: 'koi8-r'",
        "throttle_limit: '-1'",
    ] {
        assert!(stdout.contains(reason), "{reason} in\n{stdout}");
    }
    assert_eq!(
        line(&stdout, "after_connection_commands_"),
        "after_connection_commands_: 1 read, 0 imported, 0 already in Estuary, 1 skipped"
    );
    assert_eq!(
        line(&stdout, "ircchanneloptions_"),
        "ircchanneloptions_: 2 read, 1 imported, 0 already in Estuary, 1 skipped"
    );
    assert_eq!(
        line(&stdout, "roster"),
        "roster: 1 read, 0 imported, 0 already in Estuary, 1 skipped"
    );

    let db = open(s).await;
    let alice = db
        .get_login("irc", "alice@example.org")
        .await
        .unwrap()
        .expect("alice has a login");
    let global = &alice.services["@gateway"];
    assert_eq!(global.get("max_history_length"), Some("42"));
    assert_eq!(global.get("record_history"), Some("0"));
    assert_eq!(global.get("persistent"), Some("1"));
    let server = &alice.services["irc.example.net"];
    assert_eq!(server.get("pass"), Some("server-pw"));
    assert_eq!(server.get("sasl_password"), Some("sasl-pw"));
    assert_eq!(server.get("tls_ports"), Some("6697\n6670"));
    assert_eq!(server.get("ports"), Some("6667"));
    assert_eq!(server.get("verify_cert"), Some("false"));
    assert_eq!(
        server.get("after_connect_commands"),
        Some("MODE alice +x\nPRIVMSG NickServ :hello")
    );
    assert_eq!(server.get("encoding_in"), Some("ISO-8859-1"));
    assert_eq!(server.get("throttle_limit"), Some("10"));
    let room = &alice.services["@room/#rust%irc.example.net"];
    assert_eq!(room.get("record_history"), Some("false"));
    assert_eq!(room.get("persistent"), Some("1"));
    assert_eq!(
        room.get("max_history_length"),
        None,
        "Biboumi's -1 is unset"
    );
    // The passwords are sealed at rest.
    let raw: String = sqlx::query_scalar("SELECT fields FROM logins WHERE user_jid = $1")
        .bind("alice@example.org")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(
        !raw.contains("server-pw") && !raw.contains("sasl-pw"),
        "{raw}"
    );
    // bob: what Estuary takes of his rows (500 is above the form's 100).
    let bob = db
        .get_login("irc", "bob@example.org")
        .await
        .unwrap()
        .expect("bob has a login");
    let global = &bob.services["@gateway"];
    assert_eq!(global.get("max_history_length"), None);
    assert_eq!(global.get("record_history"), Some("1"));
    let server = &bob.services["irc.example.net"];
    assert_eq!(server.get("nick"), Some("bob"));
    assert_eq!(server.get("encoding_out"), None);
    assert_eq!(server.get("pass"), None);
    assert_eq!(server.get("throttle_limit"), None);

    // The archive: in date order, not Biboumi's row order, with Biboumi's ids.
    let q = ArchiveQuery {
        limit: 100,
        ..Default::default()
    };
    let page = db
        .archive_query("irc", "alice@example.org", "#rust%irc.example.net", &q)
        .await
        .unwrap();
    let got: Vec<(&str, &str, i64)> = page
        .messages
        .iter()
        .map(|m| (m.body.as_str(), m.from_nick.as_str(), m.at_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("first", "carol", 1_700_000_000_000),
            ("second", "bob", 1_700_000_060_000),
            ("third", "alice", 1_700_000_180_000),
        ]
    );
    assert_eq!(
        page.messages[0].stanza_id,
        "00000000-0000-4000-8000-000000000001"
    );
    assert!(page.messages[2].stanza_id.starts_with("biboumi-"));
    // Paging after Biboumi's id goes on where a client left off.
    let after = db
        .archive_query(
            "irc",
            "alice@example.org",
            "#rust%irc.example.net",
            &ArchiveQuery {
                after_id: Some("00000000-0000-4000-8000-000000000002".into()),
                ..q.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(after.messages.len(), 1);
    assert_eq!(after.messages[0].body, "third");
    let other = db
        .archive_query("irc", "alice@example.org", "#go%irc.example.net", &q)
        .await
        .unwrap();
    assert_eq!(other.messages.len(), 1);
    db.close().await;

    // A second run imports nothing twice.
    let out = import(s, &s.biboumi, true);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        line(&stdout, "muclogline_"),
        "muclogline_: 6 read, 0 imported, 4 already in Estuary, 2 skipped"
    );
    assert_eq!(
        line(&stdout, "globaloptions_"),
        "globaloptions_: 3 read, 0 imported, 2 already in Estuary, 1 skipped"
    );
    let db = open(s).await;
    let page = db
        .archive_query("irc", "alice@example.org", "#rust%irc.example.net", &q)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 3);
    db.close().await;
}

#[tokio::test]
async fn what_is_not_a_biboumi_database_is_refused_before_anything_is_written() {
    let s = setup().await;
    // A SQLite file without Biboumi's tables.
    let other = s.config.with_file_name("other.sqlite");
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", other.display()))
            .await
            .unwrap();
    sqlx::raw_sql("CREATE TABLE globaloptions_ (id_ INTEGER PRIMARY KEY, owner_ TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let out = import(&s, &other, true);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not a Biboumi database: missing table muclogline_"),
        "{stderr}"
    );
    assert!(!stderr.contains("table globaloptions_"), "{stderr}");
    // Not SQLite at all, and no file.
    let out = import(&s, &s.config, true);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be read as a SQLite database"),
        "{}",
        text(&out.stderr)
    );
    let out = import(&s, &s.config.with_file_name("absent.sqlite"), true);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no such file"));
    assert!(!s.estuary.exists(), "no Estuary database was created");
}

#[tokio::test]
async fn a_database_open_in_another_process_is_refused() {
    let s = setup().await;
    // Estuary's database, made by a first import, then held open by another process.
    assert!(import(&s, &s.biboumi, true).status.success());
    let mut holder = Command::new("sqlite3")
        .arg(&s.estuary)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sqlite3 (installed with SQLite) runs");
    {
        use std::io::Write as _;
        let stdin = holder.stdin.as_mut().expect("stdin");
        writeln!(stdin, "SELECT count(*) FROM archive;").unwrap();
        stdin.flush().unwrap();
    }
    // Once it has read, it holds the file open until its input ends.
    let mut waited = 0;
    while !estuary::import::in_use::held_elsewhere(&s.estuary) {
        assert!(waited < 100, "sqlite3 never opened the database");
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let out = import(&s, &s.biboumi, true);
    drop(holder.stdin.take());
    holder.wait().expect("sqlite3 ends");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is open in another process"),
        "{}",
        text(&out.stderr)
    );
    // Once it is closed, the import runs (and finds everything there).
    let out = import(&s, &s.biboumi, true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 imported, 4 already in Estuary"));
}
