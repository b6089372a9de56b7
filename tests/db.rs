//! The puppet-account database, tested against both backends with one suite.
//!
//! * SQLite: a file in a fresh temporary directory.
//! * PostgreSQL: a fresh database `estuary_test_<random>` on the server named by
//!   `ESTUARY_TEST_POSTGRES` (an admin URL; default
//!   `postgres://postgres@127.0.0.1:5432/postgres`), dropped at the end. If that server
//!   cannot be reached the test fails: it is never skipped.

use estuary::db::{
    ArchiveQuery, ArchivedMessage, AvatarMeta, Backend, ContactRow, Database, DbError, DbStore,
    ProfileKind, ProfileRow, RoomRow, SealKey, Write,
};
use estuary_bridge_api::FormValues;
use serde_json::json;
use sqlx::{Connection as _, Row as _};

const DEFAULT_POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[tokio::test]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // The file does not exist yet: connecting must create it.
    let path = dir.path().join("estuary.db");
    let url = format!("sqlite://{}", path.display());
    run_suite(&url, Backend::Sqlite).await;
    assert!(path.exists(), "the SQLite file was not created");
}

/// A pragma's value as one pooled connection reads it (`query` is `PRAGMA <name>`).
async fn pragma<T>(db: &Database, query: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::query(query)
        .fetch_one(db.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("its value")
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_normal_sync_and_a_small_cache() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("estuary.db").display());
    let db = Database::connect(&url, SealKey::generate())
        .await
        .expect("connects");
    let mode: String = pragma(&db, "PRAGMA journal_mode").await;
    assert_eq!(mode, "wal");
    let sync: i64 = pragma(&db, "PRAGMA synchronous").await;
    assert_eq!(sync, 1, "synchronous = NORMAL on every pooled connection");
    let cache: i64 = pragma(&db, "PRAGMA cache_size").await;
    assert_eq!(cache, -64, "a 64 KiB page cache, not SQLite's 2 MB default");
}

#[tokio::test]
async fn postgres_backend() {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("ESTUARY_TEST_POSTGRES")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN.to_owned());
    let shown = estuary::db::redact_url(&admin_url);
    let name = format!("estuary_test_{}", uuid::Uuid::new_v4().simple());

    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {shown}: {e}. This test needs a running \
                 server: start one, or point ESTUARY_TEST_POSTGRES at an admin URL."
            )
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name} on {shown}: {e}"));

    let url = database_url(&admin_url, &name);
    // Run the suite in its own task so the database is dropped even if a check fails.
    let outcome = tokio::spawn(async move { run_suite(&url, Backend::Postgres).await }).await;

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("cannot drop test database {name} on {shown}: {e}"));
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `admin_url` with its database name replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let (server, _db) = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://") && !server.ends_with('/'))
        .unwrap_or((base, ""));
    format!("{server}/{name}{query}")
}

/// Connects to `url`, runs every check, then reconnects to check what persists.
async fn run_suite(url: &str, backend: Backend) {
    let key_dir = tempfile::tempdir().expect("temporary directory");
    let key_path = key_dir.path().join("estuary.key");
    let key = SealKey::load_or_create(&key_path).expect("seal key");

    let db = Database::connect(url, key).await.expect("first connect");
    assert_eq!(db.backend(), backend);
    checks(&db).await;
    db.close().await;

    // Migrations are idempotent, and everything is still there with the same key.
    let key = SealKey::load_or_create(&key_path).expect("seal key, reloaded");
    let db = Database::connect(url, key).await.expect("second connect");
    let login = db.get_login("irc", "carol@example.org").await.unwrap();
    let login = login.expect("carol's login survives a reconnect");
    assert_eq!(login.fields.get("password"), Some("carol-pw-9d1f"));
    assert_eq!(
        db.login_state_get("irc", "carol@example.org", "sync")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"carol-sync-7f3a"[..]),
        "login state survives a reconnect"
    );
    db.close().await;
    // A closed database (down) answers the bridge's store with an error, not a hang.
    let store = estuary_bridge_api::LoginStore::new(
        std::sync::Arc::new(DbStore::new(db.clone(), "irc", "carol@example.org")),
        key_dir.path().join("unused"),
    );
    let started = std::time::Instant::now();
    let err = store.put("sync", b"x").await.unwrap_err();
    assert!(
        matches!(err, estuary_bridge_api::StoreError::Unavailable(_)),
        "{err}"
    );
    assert!(store.get("sync").await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // A different key cannot open the secrets, and says so with a typed error.
    let db = Database::connect(url, SealKey::generate())
        .await
        .expect("third connect");
    let err = db.get_login("irc", "carol@example.org").await.unwrap_err();
    match &err {
        DbError::Seal { var, .. } => assert_eq!(var, "password"),
        other => panic!("expected a seal error, got {other:?}"),
    }
    assert!(!err.to_string().contains("carol-pw-9d1f"));
    // Listing strictly fails; listing each keeps the readable logins.
    assert!(db.list_logins("irc").await.is_err());
    let each = db.list_logins_each("irc").await.unwrap();
    let readable: Vec<_> = each
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|l| l.user.as_str())
        .collect();
    assert_eq!(readable, ["lee@example.org"]);
    assert_eq!(each.iter().filter(|l| l.is_err()).count(), 1);
    assert!(matches!(
        db.login_state_get("irc", "carol@example.org", "sync").await,
        Err(DbError::Seal { .. })
    ));
    db.close().await;
}

/// The checks every backend must pass.
async fn checks(db: &Database) {
    users(db).await;
    logins(db).await;
    automatic_logins(db).await;
    service_settings(db).await;
    contacts(db).await;
    profiles(db).await;
    rooms(db).await;
    message_map(db).await;
    archive(db).await;
    write_behind(db).await;
    outbound(db).await;
    pending_sends(db).await;
    login_state(db).await;
    delete_login_cascades(db).await;
}

fn form(pairs: &[(&str, &str)]) -> FormValues {
    let mut values = FormValues::default();
    for (var, value) in pairs {
        values.set(*var, *value);
    }
    values
}

async fn users(db: &Database) {
    db.upsert_user("zed@example.org").await.unwrap();
    db.upsert_user("zed@example.org").await.unwrap();
    db.upsert_user("amy@example.org").await.unwrap();
    let users = db.list_users().await.unwrap();
    assert_eq!(users, vec!["amy@example.org", "zed@example.org"]);
}

async fn logins(db: &Database) {
    let secrets = vec!["password".to_owned()];
    let fields = form(&[
        ("nick", "carol"),
        ("server", "irc.libera.chat"),
        ("password", "carol-pw-9d1f"),
    ]);
    let metadata = json!({"sasl": true, "channels": ["#rust"]});
    db.save_login(
        "irc",
        "carol@example.org",
        "carol",
        &fields,
        &secrets,
        &metadata,
    )
    .await
    .unwrap();

    let login = db
        .get_login("irc", "carol@example.org")
        .await
        .unwrap()
        .expect("saved login");
    assert_eq!(login.bridge, "irc");
    assert_eq!(login.user, "carol@example.org");
    assert_eq!(login.login_id, "carol");
    assert_eq!(login.fields, fields);
    assert_eq!(login.metadata, metadata);
    assert!(login.created_at_ms > 0);
    // Saving a login records its user.
    assert!(
        db.list_users()
            .await
            .unwrap()
            .contains(&"carol@example.org".to_owned())
    );

    // The secret is sealed at rest; the other fields are not.
    let raw: String = sqlx::query("SELECT fields FROM logins WHERE bridge = $1 AND user_jid = $2")
        .bind("irc")
        .bind("carol@example.org")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert!(
        !raw.contains("carol-pw-9d1f"),
        "secret stored in clear: {raw}"
    );
    assert!(raw.contains("v1:"));
    assert!(raw.contains("irc.libera.chat"));

    // Unknown logins.
    assert!(
        db.get_login("irc", "nobody@example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.get_login("matrix", "carol@example.org")
            .await
            .unwrap()
            .is_none()
    );

    // Saving again replaces the login and keeps its creation time.
    let changed = form(&[("nick", "carol_"), ("password", "carol-pw-9d1f")]);
    db.save_login(
        "irc",
        "carol@example.org",
        "carol_",
        &changed,
        &secrets,
        &metadata,
    )
    .await
    .unwrap();
    let again = db
        .get_login("irc", "carol@example.org")
        .await
        .unwrap()
        .expect("replaced login");
    assert_eq!(again.login_id, "carol_");
    assert_eq!(again.fields, changed);
    assert_eq!(again.created_at_ms, login.created_at_ms);

    // Metadata alone.
    let newer = json!({"sasl": false});
    db.set_login_metadata("irc", "carol@example.org", &newer)
        .await
        .unwrap();
    let again = db
        .get_login("irc", "carol@example.org")
        .await
        .unwrap()
        .expect("login");
    assert_eq!(again.metadata, newer);

    // Values under the metadata's "sealed" object are sealed at rest, each on its own.
    let with_secrets = json!({
        "hooks": [{"name": "ops"}],
        "sealed": {"tokens": {"ops": "hook-token-5e1d"}, "plain": "other-secret-77"}
    });
    db.set_login_metadata("irc", "carol@example.org", &with_secrets)
        .await
        .unwrap();
    let raw_metadata = || async {
        sqlx::query("SELECT metadata FROM logins WHERE bridge = $1 AND user_jid = $2")
            .bind("irc")
            .bind("carol@example.org")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get::<String, _>(0)
    };
    let raw = raw_metadata().await;
    assert!(
        !raw.contains("hook-token-5e1d") && !raw.contains("other-secret-77"),
        "secret metadata stored in clear: {raw}"
    );
    assert!(raw.contains("v1:") && raw.contains("\"ops\""), "{raw}");
    let again = db
        .get_login("irc", "carol@example.org")
        .await
        .unwrap()
        .expect("login");
    assert_eq!(again.metadata, with_secrets);
    // So does a login saved with its metadata.
    db.save_login(
        "irc",
        "carol@example.org",
        "carol_",
        &changed,
        &secrets,
        &with_secrets,
    )
    .await
    .unwrap();
    assert!(!raw_metadata().await.contains("hook-token-5e1d"));
    let again = db
        .get_login("irc", "carol@example.org")
        .await
        .unwrap()
        .expect("login");
    assert_eq!(again.metadata, with_secrets);
    db.set_login_metadata("irc", "carol@example.org", &newer)
        .await
        .unwrap();

    let err = db
        .set_login_metadata("irc", "nobody@example.org", &newer)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    // Listing is per bridge, in user order.
    db.save_login(
        "irc",
        "bea@example.org",
        "bea",
        &form(&[("nick", "bea")]),
        &secrets,
        &json!(null),
    )
    .await
    .unwrap();
    db.save_login(
        "matrix",
        "dan@example.org",
        "@dan:matrix.org",
        &form(&[("token", "syt_dan_secret")]),
        &["token".to_owned()],
        &json!({}),
    )
    .await
    .unwrap();
    let irc: Vec<_> = db
        .list_logins("irc")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.user)
        .collect();
    assert_eq!(irc, vec!["bea@example.org", "carol@example.org"]);
    let matrix = db.list_logins("matrix").await.unwrap();
    assert_eq!(matrix.len(), 1);
    assert_eq!(matrix[0].fields.get("token"), Some("syt_dan_secret"));
    let stored = matrix[0]
        .clone()
        .into_stored(estuary_bridge_api::LoginStore::in_memory());
    assert_eq!(stored.id.as_str(), "@dan:matrix.org");
    assert_eq!(stored.user.jid, "dan@example.org");

    // Deleting.
    assert!(db.delete_login("irc", "bea@example.org").await.unwrap());
    assert!(!db.delete_login("irc", "bea@example.org").await.unwrap());
    assert!(
        db.get_login("irc", "bea@example.org")
            .await
            .unwrap()
            .is_none()
    );
}

/// Settings per service live in the login: secrets sealed (bound to the service), kept when
/// the login is saved again, replaced and forgotten on their own.
/// A login written behind for a user who just used a bridge: seen by the next read, never
/// replacing a registered login, replaced by a registration, gone with an unregistration
/// that follows it at once.
async fn automatic_logins(db: &Database) {
    let (b, u) = ("irc", "auto@example.org");
    db.save_automatic_login(b, u, "auto@example.org")
        .await
        .unwrap();
    let login = db
        .get_login(b, u)
        .await
        .unwrap()
        .expect("the automatic login");
    assert_eq!(login.login_id, "auto@example.org");
    assert!(login.fields.0.is_empty(), "no fields: {:?}", login.fields);
    assert_eq!(login.metadata, json!({}));
    assert!(db.list_logins(b).await.unwrap().iter().any(|l| l.user == u));

    // A registration replaces it; a later automatic login leaves the registration alone.
    let fields = form(&[("nick", "auto")]);
    db.save_login(b, u, "auto", &fields, &[], &json!({"k": 1}))
        .await
        .unwrap();
    db.save_automatic_login(b, u, "auto@example.org")
        .await
        .unwrap();
    let login = db
        .get_login(b, u)
        .await
        .unwrap()
        .expect("the registered login");
    assert_eq!((login.login_id.as_str(), &login.fields), ("auto", &fields));
    assert_eq!(login.metadata, json!({"k": 1}));

    // Queued, then deleted at once: the deletion comes after it.
    let v = "gone@example.org";
    db.save_automatic_login(b, v, v).await.unwrap();
    assert!(
        db.delete_login(b, v).await.unwrap(),
        "the queued login was there"
    );
    assert!(db.get_login(b, v).await.unwrap().is_none());
    assert!(db.delete_login(b, u).await.unwrap());
}

async fn service_settings(db: &Database) {
    let user = "erin@example.org";
    let secrets = vec!["nickserv_password".to_owned()];
    let err = db
        .save_service_settings("irc", user, "irc.libera.chat", None, &secrets)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    db.save_login(
        "irc",
        user,
        "erin",
        &form(&[("nick", "erin")]),
        &[],
        &json!({}),
    )
    .await
    .unwrap();
    let libera = form(&[
        ("nick", "erin_"),
        ("nickserv_password", "ns-pw-77ab"),
        ("port", ""),
    ]);
    let existed = db
        .save_service_settings("irc", user, "irc.libera.chat", Some(&libera), &secrets)
        .await
        .unwrap();
    assert!(!existed);
    db.save_service_settings(
        "irc",
        user,
        "irc.oftc.net",
        Some(&form(&[("nick", "e")])),
        &secrets,
    )
    .await
    .unwrap();
    let raw: String = sqlx::query("SELECT fields FROM logins WHERE bridge = $1 AND user_jid = $2")
        .bind("irc")
        .bind(user)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert!(!raw.contains("ns-pw-77ab"), "secret stored in clear: {raw}");
    let login = db.get_login("irc", user).await.unwrap().expect("the login");
    let got = &login.services["irc.libera.chat"];
    assert_eq!(got.get("nick"), Some("erin_"));
    assert_eq!(got.get("nickserv_password"), Some("ns-pw-77ab"));
    assert_eq!(got.0.get("port"), None, "empty values are not stored");
    assert_eq!(login.services["irc.oftc.net"].get("nick"), Some("e"));

    // Saving the login again keeps them.
    db.save_login(
        "irc",
        user,
        "erin",
        &form(&[("nick", "erin2")]),
        &[],
        &json!({}),
    )
    .await
    .unwrap();
    let login = db.get_login("irc", user).await.unwrap().expect("the login");
    assert_eq!(login.fields.get("nick"), Some("erin2"));
    assert_eq!(
        login.services["irc.libera.chat"].get("nickserv_password"),
        Some("ns-pw-77ab")
    );
    assert_eq!(
        login
            .clone()
            .into_stored(estuary_bridge_api::LoginStore::in_memory())
            .services
            .len(),
        2
    );

    // Replaced, then forgotten, one service at a time.
    assert!(
        db.save_service_settings(
            "irc",
            user,
            "irc.libera.chat",
            Some(&form(&[("nick", "erin3")])),
            &secrets
        )
        .await
        .unwrap()
    );
    let login = db.get_login("irc", user).await.unwrap().expect("the login");
    assert_eq!(
        login.services["irc.libera.chat"].get("nickserv_password"),
        None
    );
    assert!(
        db.save_service_settings("irc", user, "irc.libera.chat", None, &secrets)
            .await
            .unwrap()
    );
    assert!(
        !db.save_service_settings("irc", user, "irc.libera.chat", None, &secrets)
            .await
            .unwrap()
    );
    let login = db.get_login("irc", user).await.unwrap().expect("the login");
    assert_eq!(login.services.keys().collect::<Vec<_>>(), ["irc.oftc.net"]);
    assert!(db.delete_login("irc", user).await.unwrap());
}

async fn contacts(db: &Database) {
    let (b, u) = ("irc", "erin@example.org");
    assert!(db.upsert_contact(b, u, "alice", None).await.unwrap());
    assert!(!db.upsert_contact(b, u, "alice", None).await.unwrap());
    assert!(
        !db.upsert_contact(b, u, "alice", Some("Alice A."))
            .await
            .unwrap()
    );
    // No name keeps the known one.
    assert!(!db.upsert_contact(b, u, "alice", None).await.unwrap());
    assert!(db.upsert_contact(b, u, "bob", Some("Bob")).await.unwrap());
    // Contacts are per user and per bridge.
    assert!(
        db.upsert_contact(b, "other@example.org", "alice", None)
            .await
            .unwrap()
    );
    assert!(db.upsert_contact("matrix", u, "alice", None).await.unwrap());

    let list = db.list_contacts(b, u).await.unwrap();
    assert_eq!(
        list,
        vec![
            ContactRow {
                remote_id: "alice".into(),
                name: Some("Alice A.".into())
            },
            ContactRow {
                remote_id: "bob".into(),
                name: Some("Bob".into())
            },
        ]
    );
    assert!(db.has_contact(b, u, "bob").await.unwrap());
    assert!(!db.has_contact("matrix", u, "bob").await.unwrap());
    assert!(db.delete_contact(b, u, "bob").await.unwrap());
    assert!(!db.delete_contact(b, u, "bob").await.unwrap());
    assert!(!db.has_contact(b, u, "bob").await.unwrap());
    assert_eq!(db.list_contacts(b, u).await.unwrap().len(), 1);
}

/// Names and avatars: a picture stored once by hash, bytes back intact, profile rows
/// replaced whole, and a picture deleted when the last profile lets go of it.
async fn profiles(db: &Database) {
    let b = "fake";
    let bytes: Vec<u8> = (0..=255u8).collect();
    let meta = AvatarMeta {
        hash: "0123456789abcdef0123456789abcdef01234567".into(),
        media_type: "image/png".into(),
        size: bytes.len() as u64,
    };
    db.store_avatar(&meta, &bytes).await.unwrap();
    db.store_avatar(&meta, &bytes).await.unwrap();
    let got = db.get_avatar(&meta.hash).await.unwrap().expect("stored");
    assert_eq!(got.data, bytes, "every byte value survives");
    assert_eq!(got.meta, meta);
    assert_eq!(db.get_avatar("ffff").await.unwrap(), None);

    let row = |user: &str, kind, id: &str, avatar: Option<AvatarMeta>| ProfileRow {
        user: user.into(),
        kind,
        remote_id: id.into(),
        name: Some(format!("{id}'s name")),
        avatar,
        avatar_key: Some("k".into()),
    };
    let alice = row(
        "u@example.org",
        ProfileKind::Contact,
        "alice",
        Some(meta.clone()),
    );
    let room = row("u@example.org", ProfileKind::Room, "#r", Some(meta.clone()));
    db.save_profile(b, &alice, None).await.unwrap();
    db.save_profile(b, &room, None).await.unwrap();
    let mut listed = db.list_profiles(b).await.unwrap();
    listed.sort_by_key(|x| x.kind);
    assert_eq!(listed, vec![alice.clone(), room.clone()]);
    assert!(db.list_profiles("irc").await.unwrap().is_empty());

    // alice lets go of the picture: the room still shows it, so it stays.
    let bare = ProfileRow {
        avatar: None,
        avatar_key: None,
        ..alice.clone()
    };
    db.save_profile(b, &bare, Some(&meta.hash)).await.unwrap();
    assert!(db.get_avatar(&meta.hash).await.unwrap().is_some());
    // The room too: nobody shows it, it goes.
    let bare_room = ProfileRow {
        avatar: None,
        ..room.clone()
    };
    db.save_profile(b, &bare_room, Some(&meta.hash))
        .await
        .unwrap();
    assert_eq!(db.get_avatar(&meta.hash).await.unwrap(), None);
    let listed = db.list_profiles(b).await.unwrap();
    assert!(listed.iter().all(|p| p.avatar.is_none()), "{listed:?}");
    assert_eq!(listed.len(), 2, "rows are replaced, not added");
}

async fn rooms(db: &Database) {
    let (b, u) = ("irc", "fay@example.org");
    db.save_room(b, u, "#rust%irc.libera.chat", "fay")
        .await
        .unwrap();
    db.save_room(b, u, "#estuary%irc.libera.chat", "fay")
        .await
        .unwrap();
    // Saving again changes the nick.
    db.save_room(b, u, "#rust%irc.libera.chat", "fay_")
        .await
        .unwrap();
    assert_eq!(
        db.list_rooms(b, u).await.unwrap(),
        vec![
            RoomRow {
                room_id: "#estuary%irc.libera.chat".into(),
                nick: "fay".into()
            },
            RoomRow {
                room_id: "#rust%irc.libera.chat".into(),
                nick: "fay_".into()
            },
        ]
    );
    db.delete_room(b, u, "#estuary%irc.libera.chat")
        .await
        .unwrap();
    db.delete_room(b, u, "#never-joined").await.unwrap();
    assert_eq!(db.list_rooms(b, u).await.unwrap().len(), 1);
    assert!(db.list_rooms("matrix", u).await.unwrap().is_empty());
}

async fn message_map(db: &Database) {
    let (b, u, chat) = ("matrix", "gus@example.org", "!room:matrix.org");
    db.map_message(b, u, chat, "xmpp-1", "$event1")
        .await
        .unwrap();
    db.map_message(b, u, chat, "xmpp-2", "$event2")
        .await
        .unwrap();
    assert_eq!(
        db.remote_id_for(b, u, chat, "xmpp-1").await.unwrap(),
        Some("$event1".into())
    );
    assert_eq!(
        db.xmpp_id_for(b, u, chat, "$event2").await.unwrap(),
        Some("xmpp-2".into())
    );
    assert_eq!(db.remote_id_for(b, u, chat, "xmpp-3").await.unwrap(), None);
    assert_eq!(db.xmpp_id_for(b, u, chat, "$event3").await.unwrap(), None);
    // Scoped by chat, user and bridge.
    assert_eq!(
        db.remote_id_for(b, u, "!other:matrix.org", "xmpp-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.remote_id_for(b, "hal@example.org", chat, "xmpp-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.remote_id_for("irc", u, chat, "xmpp-1").await.unwrap(),
        None
    );
    // Mapping again replaces.
    db.map_message(b, u, chat, "xmpp-1", "$event1b")
        .await
        .unwrap();
    assert_eq!(
        db.remote_id_for(b, u, chat, "xmpp-1").await.unwrap(),
        Some("$event1b".into())
    );
    assert_eq!(
        db.xmpp_id_for(b, u, chat, "$event1b").await.unwrap(),
        Some("xmpp-1".into())
    );
    // Pruning with a cut-off in the past removes nothing.
    assert_eq!(db.prune_message_map_older_than(1, 1000).await.unwrap(), 0);
}

/// Rows queued with `write_later` are seen by every later reader, in the order queued,
/// mixed with rows appended directly; a replayed stanza-id in a batch is skipped.
async fn write_behind(db: &Database) {
    let (b, u, room) = ("wb", "wes@example.org", "#wb%irc.example.org");
    db.archive_append(b, u, room, &archived(0, "ann", 10))
        .await
        .unwrap();
    for n in 1..=600 {
        db.write_later(Write::Archive {
            bridge: b.into(),
            user: u.into(),
            room: room.into(),
            msg: archived(n, "ben", 10 + n as i64),
        })
        .await
        .unwrap();
        db.write_later(Write::Map {
            bridge: b.into(),
            user: u.into(),
            chat: "r:#wb".into(),
            xmpp_id: format!("x{n}"),
            remote_id: format!("m{n}"),
        })
        .await
        .unwrap();
    }
    // Read at once: the reader waits for the queue, it does not miss the tail.
    assert_eq!(
        db.remote_id_for(b, u, "r:#wb", "x600").await.unwrap(),
        Some("m600".into())
    );
    db.archive_append(b, u, room, &archived(601, "ann", 1))
        .await
        .unwrap();
    let page = db
        .archive_query(
            b,
            u,
            room,
            &ArchiveQuery {
                limit: 1000,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    let expected: Vec<String> = (0..=601).map(|n| format!("s{n}")).collect();
    assert_eq!(ids(&page), expected, "insertion order across both paths");
    // A replayed stanza-id in a batch is skipped; the rows around it are written.
    for n in [602, 5, 603] {
        db.write_later(Write::Archive {
            bridge: b.into(),
            user: u.into(),
            room: room.into(),
            msg: archived(n, "cy", 9),
        })
        .await
        .unwrap();
    }
    db.settle().await;
    let page = db
        .archive_query(
            b,
            u,
            room,
            &ArchiveQuery {
                limit: 3,
                last_page: true,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), ["s601", "s602", "s603"]);
}

fn archived(n: usize, nick: &str, at_ms: i64) -> ArchivedMessage {
    ArchivedMessage {
        stanza_id: format!("s{n}"),
        from_nick: nick.into(),
        body: format!("message {n}"),
        at_ms,
        remote_id: n.is_multiple_of(2).then(|| format!("r{n}")),
    }
}

fn ids(page: &estuary::db::ArchivePage) -> Vec<&str> {
    page.messages.iter().map(|m| m.stanza_id.as_str()).collect()
}

async fn archive(db: &Database) {
    let (b, u, room) = ("irc", "ivy@example.org", "#rust%irc.libera.chat");
    // s0..s9. Timestamps repeat and go backwards once: order is insertion order.
    let times = [1000, 1000, 1000, 2000, 2000, 1500, 3000, 4000, 5000, 6000];
    for (n, at) in times.iter().enumerate() {
        let nick = if n.is_multiple_of(3) { "ann" } else { "ben" };
        db.archive_append(b, u, room, &archived(n, nick, *at))
            .await
            .unwrap();
    }
    // Replaying a stanza-id changes nothing.
    db.archive_append(b, u, room, &archived(3, "ann", 2000))
        .await
        .unwrap();
    // Another room and another user.
    db.archive_append(b, u, "#other", &archived(100, "ann", 1000))
        .await
        .unwrap();
    db.archive_append(b, "jo@example.org", room, &archived(200, "ann", 1000))
        .await
        .unwrap();

    let q = |limit| ArchiveQuery {
        limit,
        ..ArchiveQuery::default()
    };

    // Everything.
    let all = db.archive_query(b, u, room, &q(100)).await.unwrap();
    assert_eq!(
        ids(&all),
        ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]
    );
    assert!(all.complete);
    assert_eq!(all.messages[0], archived(0, "ann", 1000));
    assert_eq!(all.messages[1].remote_id, None);

    // Forward paging.
    let p1 = db.archive_query(b, u, room, &q(4)).await.unwrap();
    assert_eq!(ids(&p1), ["s0", "s1", "s2", "s3"]);
    assert!(!p1.complete);
    let after = |id: &str, limit| ArchiveQuery {
        after_id: Some(id.into()),
        limit,
        ..ArchiveQuery::default()
    };
    let p2 = db.archive_query(b, u, room, &after("s3", 4)).await.unwrap();
    assert_eq!(ids(&p2), ["s4", "s5", "s6", "s7"]);
    assert!(!p2.complete);
    let p3 = db.archive_query(b, u, room, &after("s7", 4)).await.unwrap();
    assert_eq!(ids(&p3), ["s8", "s9"]);
    assert!(p3.complete);
    // Exactly the rest: complete.
    let exact = db.archive_query(b, u, room, &after("s5", 4)).await.unwrap();
    assert_eq!(ids(&exact), ["s6", "s7", "s8", "s9"]);
    assert!(exact.complete);

    // Backward paging: the last page, then before it.
    let last = db
        .archive_query(
            b,
            u,
            room,
            &ArchiveQuery {
                last_page: true,
                limit: 4,
                ..ArchiveQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&last), ["s6", "s7", "s8", "s9"]);
    assert!(!last.complete);
    let before = |id: &str, limit| ArchiveQuery {
        before_id: Some(id.into()),
        limit,
        ..ArchiveQuery::default()
    };
    let prev = db
        .archive_query(b, u, room, &before("s6", 4))
        .await
        .unwrap();
    assert_eq!(ids(&prev), ["s2", "s3", "s4", "s5"]);
    assert!(!prev.complete);
    let first = db
        .archive_query(b, u, room, &before("s2", 4))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["s0", "s1"]);
    assert!(first.complete);

    // Between two ids.
    let between = ArchiveQuery {
        after_id: Some("s2".into()),
        before_id: Some("s6".into()),
        limit: 10,
        ..ArchiveQuery::default()
    };
    let page = db.archive_query(b, u, room, &between).await.unwrap();
    assert_eq!(ids(&page), ["s3", "s4", "s5"]);
    assert!(page.complete);

    // Time and nick filters.
    let timed = ArchiveQuery {
        start_ms: Some(1500),
        end_ms: Some(4000),
        limit: 10,
        ..ArchiveQuery::default()
    };
    let page = db.archive_query(b, u, room, &timed).await.unwrap();
    assert_eq!(ids(&page), ["s3", "s4", "s5", "s6", "s7"]);
    let by_ann = ArchiveQuery {
        with_nick: Some("ann".into()),
        limit: 10,
        ..ArchiveQuery::default()
    };
    let page = db.archive_query(b, u, room, &by_ann).await.unwrap();
    assert_eq!(ids(&page), ["s0", "s3", "s6", "s9"]);

    // A limit of zero only says whether anything matches.
    let none = db.archive_query(b, u, room, &q(0)).await.unwrap();
    assert!(none.messages.is_empty());
    assert!(!none.complete);
    let empty = db.archive_query(b, u, "#empty", &q(0)).await.unwrap();
    assert!(empty.messages.is_empty());
    assert!(empty.complete);

    // Other rooms and users are separate.
    let other = db.archive_query(b, u, "#other", &q(10)).await.unwrap();
    assert_eq!(ids(&other), ["s100"]);

    // An id not in this room's archive.
    let err = db
        .archive_query(b, u, room, &after("s100", 4))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = db
        .archive_query(b, u, room, &before("nope", 4))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

async fn outbound(db: &Database) {
    for n in 0..5 {
        db.push_outbound("irc", &format!("<message id='irc-{n}'/>"))
            .await
            .unwrap();
    }
    db.push_outbound("matrix", "<message id='matrix-0'/>")
        .await
        .unwrap();
    assert_eq!(db.count_outbound("irc").await.unwrap(), 5);
    assert_eq!(db.count_outbound("matrix").await.unwrap(), 1);
    assert_eq!(db.count_outbound("sms").await.unwrap(), 0);

    let head = db.peek_outbound("irc", 3).await.unwrap();
    let stanzas: Vec<_> = head.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        stanzas,
        [
            "<message id='irc-0'/>",
            "<message id='irc-1'/>",
            "<message id='irc-2'/>"
        ]
    );
    assert!(head.windows(2).all(|w| w[0].0 < w[1].0));

    // Delivered the first two.
    db.delete_outbound("irc", head[1].0).await.unwrap();
    assert_eq!(db.count_outbound("irc").await.unwrap(), 3);
    let rest = db.peek_outbound("irc", 10).await.unwrap();
    assert_eq!(rest[0].1, "<message id='irc-2'/>");
    assert_eq!(rest.len(), 3);
    assert_eq!(db.count_outbound("matrix").await.unwrap(), 1);

    // New stanzas go after the old ones, even after deletions.
    db.push_outbound("irc", "<message id='irc-5'/>")
        .await
        .unwrap();
    let rest = db.peek_outbound("irc", 10).await.unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[3].1, "<message id='irc-5'/>");
    assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));

    // Concurrent pushes get distinct, ordered sequence numbers.
    let pushes = (0..16).map(|n| {
        let db = db.clone();
        async move { db.push_outbound("sms", &format!("<m n='{n}'/>")).await }
    });
    for result in futures::future::join_all(pushes).await {
        result.unwrap();
    }
    let queued = db.peek_outbound("sms", 100).await.unwrap();
    assert_eq!(queued.len(), 16);
    assert!(queued.windows(2).all(|w| w[0].0 < w[1].0));

    // Draining everything.
    let last = rest[3].0;
    db.delete_outbound("irc", last).await.unwrap();
    assert_eq!(db.count_outbound("irc").await.unwrap(), 0);
    assert!(db.peek_outbound("irc", 10).await.unwrap().is_empty());
}

/// The bridges' per-login state: sealed at rest, awaited writes, bound to its row.
async fn login_state(db: &Database) {
    let (carol, lee) = ("carol@example.org", "lee@example.org");
    db.login_state_put("irc", carol, "sync", b"carol-sync-7f3a")
        .await
        .unwrap();
    // Binary values round-trip; a put replaces.
    let binary: Vec<u8> = (0..=255).collect();
    db.login_state_put("irc", lee, "sync", &binary)
        .await
        .unwrap();
    assert_eq!(
        db.login_state_get("irc", lee, "sync").await.unwrap(),
        Some(binary)
    );
    db.login_state_put("irc", lee, "sync", b"two")
        .await
        .unwrap();
    assert_eq!(
        db.login_state_get("irc", lee, "sync").await.unwrap(),
        Some(b"two".to_vec())
    );
    assert_eq!(
        db.login_state_get("matrix", lee, "sync").await.unwrap(),
        None
    );
    db.login_state_delete("irc", lee, "sync").await.unwrap();
    assert_eq!(db.login_state_get("irc", lee, "sync").await.unwrap(), None);
    // No clear text in the table.
    let rows = sqlx::query("SELECT value FROM login_state")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for row in rows {
        let value: String = row.get(0);
        assert!(
            value.starts_with("v1:") && !value.contains("carol-sync"),
            "{value}"
        );
    }
    // Through the bridge's handle; limits refused before the database.
    let store = estuary_bridge_api::LoginStore::new(
        std::sync::Arc::new(DbStore::new(db.clone(), "irc", lee)),
        std::env::temp_dir().join("estuary-db-test-unused"),
    );
    store.put("uid", b"4711").await.unwrap();
    assert_eq!(store.get("uid").await.unwrap(), Some(b"4711".to_vec()));
    let big = vec![0u8; estuary_bridge_api::store::MAX_VALUE_LEN + 1];
    assert!(matches!(
        store.put("uid", &big).await,
        Err(estuary_bridge_api::StoreError::ValueTooLarge { .. })
    ));
    assert_eq!(store.get("uid").await.unwrap(), Some(b"4711".to_vec()));
    store.delete("uid").await.unwrap();
    // Directory ids: opaque, stable, per bridge and user.
    let id = db.login_dir_id("irc", carol).await.unwrap();
    assert!(!id.contains("carol"));
    assert_eq!(db.login_dir_id("irc", carol).await.unwrap(), id);
    assert_eq!(
        db.existing_login_dir_id("irc", carol).await.unwrap(),
        Some(id.clone())
    );
    assert_ne!(db.login_dir_id("irc", lee).await.unwrap(), id);
}

async fn delete_login_cascades(db: &Database) {
    let user = "kim@example.org";
    for (bridge, who) in [("irc", user), ("matrix", user), ("irc", "lee@example.org")] {
        db.save_login(bridge, who, "id", &form(&[("nick", "k")]), &[], &json!({}))
            .await
            .unwrap();
        db.upsert_contact(bridge, who, "alice", None).await.unwrap();
        db.save_room(bridge, who, "#room", "k").await.unwrap();
        db.map_message(bridge, who, "#room", "x1", "r1")
            .await
            .unwrap();
        db.archive_append(bridge, who, "#room", &archived(1, "k", 1000))
            .await
            .unwrap();
        let profile = ProfileRow {
            user: who.into(),
            kind: ProfileKind::Contact,
            remote_id: "alice".into(),
            name: Some("Alice".into()),
            avatar: None,
            avatar_key: None,
        };
        db.save_profile(bridge, &profile, None).await.unwrap();
        db.login_state_put(bridge, who, "token", b"t")
            .await
            .unwrap();
        db.login_dir_id(bridge, who).await.unwrap();
    }

    assert!(db.delete_login("irc", user).await.unwrap());
    assert_eq!(db.count_login_state("irc", user).await.unwrap(), 0);
    assert_eq!(db.existing_login_dir_id("irc", user).await.unwrap(), None);
    assert_eq!(db.count_login_state("matrix", user).await.unwrap(), 1);
    assert_eq!(
        db.count_login_state("irc", "lee@example.org")
            .await
            .unwrap(),
        1
    );
    let profiles = db.list_profiles("irc").await.unwrap();
    let owners: Vec<&str> = profiles.iter().map(|p| p.user.as_str()).collect();
    assert_eq!(
        owners,
        ["lee@example.org"],
        "the user's profiles go with the login"
    );

    let all = ArchiveQuery {
        limit: 10,
        ..ArchiveQuery::default()
    };
    assert!(db.get_login("irc", user).await.unwrap().is_none());
    assert!(db.list_contacts("irc", user).await.unwrap().is_empty());
    assert!(db.list_rooms("irc", user).await.unwrap().is_empty());
    assert_eq!(
        db.remote_id_for("irc", user, "#room", "x1").await.unwrap(),
        None
    );
    let page = db.archive_query("irc", user, "#room", &all).await.unwrap();
    assert!(page.messages.is_empty());

    // The same user on another bridge, and another user on this bridge, keep theirs.
    for (bridge, who) in [("matrix", user), ("irc", "lee@example.org")] {
        assert!(db.get_login(bridge, who).await.unwrap().is_some());
        assert_eq!(db.list_contacts(bridge, who).await.unwrap().len(), 1);
        assert_eq!(db.list_rooms(bridge, who).await.unwrap().len(), 1);
        assert_eq!(
            db.remote_id_for(bridge, who, "#room", "x1").await.unwrap(),
            Some("r1".into())
        );
        let page = db.archive_query(bridge, who, "#room", &all).await.unwrap();
        assert_eq!(page.messages.len(), 1);
    }
    // The user is still known (other logins may remain).
    assert!(db.list_users().await.unwrap().contains(&user.to_owned()));
}

async fn pending_sends(db: &Database) {
    db.push_send("webhook", "a@localhost", "s1", "{\"body\":\"one\"}")
        .await
        .expect("push s1");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    db.push_send("webhook", "b@localhost", "s2", "{\"body\":\"two\"}")
        .await
        .expect("push s2");
    db.push_send("irc", "a@localhost", "s3", "{}")
        .await
        .expect("push s3");
    let pending = db.list_sends("webhook").await.expect("list");
    let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2"], "oldest first, per bridge");
    assert_eq!(pending[1].user, "b@localhost");
    assert_eq!(pending[0].payload, "{\"body\":\"one\"}");
    db.delete_send("s1").await.expect("delete");
    let ids: Vec<String> = db
        .list_sends("webhook")
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["s2"]);
    assert!(
        db.push_send("webhook", "a@localhost", "s2", "{}")
            .await
            .is_err(),
        "ids are unique"
    );
}
