//! End-to-end for the webhook bridge: HTTP posts in, XMPP messages out, through a real
//! Prosody (and its MUC component), with the gateway in-process.

mod common;

use common::{Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary_bridge_api::Connector;
use estuary_bridge_webhook::WebhookConnector;
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "hooks.localhost";
const SECRET: &str = "hooks-secret";

struct Hooks {
    app: App,
    http: SocketAddr,
    dir: Arc<tempfile::TempDir>,
}

async fn start(server: &impl XmppServer) -> Hooks {
    let dir = Arc::new(tempfile::tempdir().expect("a temp dir"));
    start_in(server, dir).await
}

/// Starts the gateway on the database in `dir` (a second start there is a restart).
async fn start_in(server: &impl XmppServer, dir: Arc<tempfile::TempDir>) -> Hooks {
    let component = server.component_addr();
    let toml = format!(
        r#"{head}
# The hooks' receivers listen on 127.0.0.1, which the gateway refuses unless allowed.
[outbound]
allow = ["127.0.0.1"]

[bridges.webhook]
domain = "{DOMAIN}"
secret = "{SECRET}"
listen = "127.0.0.1:0"
admins = ["admin@localhost"]
max_body_bytes = 65536

[[bridges.webhook.hooks]]
name = "limited"
token = "lim"
to = ["alice@localhost"]
rate_limit_per_minute = 2

[[bridges.webhook.hooks]]
name = "ci"
token = "s3cret"
to = ["alice@localhost"]

[[bridges.webhook.hooks]]
name = "forge"
token = "forge-token"
to = ["alice@localhost"]

[[bridges.webhook.hooks]]
name = "room"
token = "room-token"
rooms = ["dev@conference.localhost"]
nick = "hookbot"
"#,
        head = common::gateway_toml_head(component, dir.path(), 9),
    );
    let settings =
        Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid");
    let mut table = settings
        .bridge_tables
        .get("webhook")
        .cloned()
        .expect("the webhook table");
    // As the core does (`estuary::bridges::build`): the bridge never sees `admins`.
    if let Some(map) = table.as_object_mut() {
        map.remove("admins");
    }
    let outbound = settings.outbound.policy().expect("the allow list is valid");
    let connector =
        Arc::new(WebhookConnector::from_config(&table, outbound).expect("the hooks are valid"));
    let db = app::open_database(&settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("webhook".into(), connector.clone());
    let app = app::start_with(&settings, db, connectors)
        .await
        .expect("the gateway starts");
    // No [http] section: the gateway's server listens where the (older) webhook table says.
    let http = *app.http_addrs().first().expect("the HTTP server is bound");
    Hooks { app, http, dir }
}

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

#[tokio::test]
async fn a_posted_hook_reaches_the_client() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let hooks = start(&server).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    let http = reqwest::Client::new();

    let wrong = http
        .post(format!("http://{}/hooks/ci", hooks.http))
        .bearer_auth("nope")
        .json(&serde_json::json!({"text": "should not arrive"}))
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(wrong.status(), 401);

    let ok = http
        .post(format!("http://{}/hooks/ci", hooks.http))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"text": "build passed"}))
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(ok.status(), 202);
    let m = alice
        .expect("the hook's message", |s| {
            body(s).as_deref() == Some("build passed")
        })
        .await;
    assert_eq!(
        m.attr("from").map(|f| f.split('/').next().unwrap_or(f)),
        Some("ci@hooks.localhost")
    );
    assert!(
        m.get_child("delay", "urn:xmpp:delay").is_none(),
        "a live hook message is not delayed: {}",
        String::from(&m)
    );
    assert!(
        alice
            .drain()
            .iter()
            .all(|s| body(s).as_deref() != Some("should not arrive"))
    );

    // Every bad request is refused with its status, and nothing reaches the client.
    let url = |hook: &str| format!("http://{}/hooks/{hook}", hooks.http);
    let unknown = http
        .post(url("nope"))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"text": "x"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 404);
    let malformed = http
        .post(url("ci"))
        .bearer_auth("s3cret")
        .header("Content-Type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .expect("answer");
    assert_eq!(malformed.status(), 400);
    assert!(
        malformed
            .text()
            .await
            .unwrap_or_default()
            .to_lowercase()
            .contains("eof"),
        "the parse error is given"
    );
    // What the example's `curl -d '{"text":"build passed"}'` sends: JSON as a form.
    let curl = http
        .post(url("ci"))
        .bearer_auth("s3cret")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"text":"sent like curl -d"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(curl.status(), 202);
    alice
        .expect("the curl-style post's message", |s| {
            body(s).as_deref() == Some("sent like curl -d")
        })
        .await;
    let unrecognised = http
        .post(url("ci"))
        .bearer_auth("s3cret")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("colour=blue")
        .send()
        .await
        .expect("answer");
    assert_eq!(unrecognised.status(), 400);
    let why = unrecognised.text().await.unwrap_or_default();
    assert!(
        why.contains(
            "received Content-Type: application/x-www-form-urlencoded, 11 bytes: colour=blue"
        ),
        "the 400 says what was received: {why}"
    );
    let huge = http
        .post(url("ci"))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"text": "y".repeat(100_000)}))
        .send()
        .await
        .expect("answer");
    assert_eq!(huge.status(), 413);
    let mut statuses = Vec::new();
    for n in 0..3 {
        let r = http
            .post(url("limited"))
            .bearer_auth("lim")
            .json(&serde_json::json!({"text": format!("limited {n}")}))
            .send()
            .await
            .expect("answer");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429]);
    alice
        .expect("the first limited post", |s| {
            body(s).as_deref() == Some("limited 0")
        })
        .await;
    alice
        .expect("the second limited post", |s| {
            body(s).as_deref() == Some("limited 1")
        })
        .await;
    alice
        .expect_none("nothing else", std::time::Duration::from_millis(300), |s| {
            body(s).is_some_and(|b| b == "limited 2" || b.starts_with("yyy") || b == "x")
        })
        .await;

    // A GitHub-style signed push is verified and formatted.
    let payload =
        std::fs::read("bridges/webhook/tests/fixtures/github_push.json").expect("the fixture");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"forge-token").expect("any key length");
    mac.update(&payload);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signed = http
        .post(format!("http://{}/hooks/forge", hooks.http))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .body(payload)
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(signed.status(), 202);
    alice
        .expect("the formatted push", |s| {
            body(s)
                .is_some_and(|b| b.contains("estuary-im/estuary") && b.contains("pushed 2 commits"))
        })
        .await;

    // Alice writes to the hook: it has no outgoing URL, and says so.
    alice.send(el("<message xmlns='jabber:client' type='chat' to='ci@hooks.localhost' id='w1'><body>hi</body></message>")).await;
    let err = alice
        .expect("an error naming the missing URL", |s| {
            s.attr("type") == Some("error") && s.attr("id") == Some("w1")
        })
        .await;
    assert!(
        String::from(&err).contains("outgoing URL"),
        "{}",
        String::from(&err)
    );
    hooks.app.shutdown().await;
}

#[tokio::test]
async fn a_hook_posts_into_a_muc_room() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let hooks = start(&server).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    alice.send(el("<presence xmlns='jabber:client' to='dev@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    alice
        .expect("alice is in the room", |s| {
            s.name() == "presence" && s.attr("from") == Some("dev@conference.localhost/alice")
        })
        .await;
    // Unlock the new room (instant room, XEP-0045 §10.1.2).
    alice
        .iq(el("<iq xmlns='jabber:client' type='set' id='cfg' to='dev@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"))
        .await;
    let status = reqwest::Client::new()
        .post(format!("http://{}/hooks/room", hooks.http))
        .bearer_auth("room-token")
        .json(&serde_json::json!({"text": "deploy finished"}))
        .send()
        .await
        .expect("the listener answers")
        .status();
    assert_eq!(status, 202);
    alice
        .expect("the post in the room", |s| {
            s.attr("from") == Some("dev@conference.localhost/hookbot")
                && body(s).as_deref() == Some("deploy finished")
        })
        .await;
    hooks.app.shutdown().await;
}

#[tokio::test]
async fn a_post_accepted_while_prosody_is_down_arrives_after_restart() {
    common::init_tracing();
    let mut server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let hooks = start(&server).await;
    server.stop().await;
    let status = reqwest::Client::new()
        .post(format!("http://{}/hooks/ci", hooks.http))
        .bearer_auth("s3cret")
        .json(&serde_json::json!({"text": "sent while the server was down"}))
        .send()
        .await
        .expect("the listener answers while XMPP is down")
        .status();
    assert_eq!(status, 202);
    server.start_again().await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    alice
        .expect("the queued post", |s| {
            body(s).as_deref() == Some("sent while the server was down")
        })
        .await;
    hooks.app.shutdown().await;
}

/// Runs a bridge command with a submitted form; returns the IQ answer.
async fn command(client: &mut TestClient, node: &str, fields: &[(&str, &str)]) -> Element {
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{DOMAIN}'>\
             <command xmlns='http://jabber.org/protocol/commands' node='{node}' action='complete'>\
             <x xmlns='jabber:x:data' type='submit'>{fields}</x></command></iq>"
        )))
        .await
}

/// The `<note/>` of a completed command; panics with the answer otherwise.
fn completed_note(answer: &Element) -> String {
    let xml = String::from(answer);
    let command = answer
        .get_child("command", "http://jabber.org/protocol/commands")
        .filter(|c| c.attr("status") == Some("completed"))
        .unwrap_or_else(|| panic!("the command did not complete: {xml}"));
    command
        .get_child("note", "http://jabber.org/protocol/commands")
        .map(|n| n.text())
        .unwrap_or_else(|| panic!("no note: {xml}"))
}

fn error_condition(answer: &Element) -> Option<String> {
    let error = answer.get_child("error", "jabber:client")?;
    error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
}

async fn post(http: SocketAddr, hook: &str, token: &str, text: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{http}/hooks/{hook}"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .expect("the listener answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn hooks_added_by_command_work_and_survive_a_restart() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    for (user, pw) in [("alice", "alicepw"), ("bob", "bobpw"), ("admin", "adminpw")] {
        server.register(user, pw).await;
    }
    let hooks = start(&server).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    let mut bob = TestClient::connect(&server, "bob", "bobpw", "e2e").await;
    let mut admin = TestClient::connect(&server, "admin", "adminpw", "e2e").await;

    // The admin adds a hook for alice, with a token of their choosing.
    let note = completed_note(
        &command(
            &mut admin,
            "admin-hook-add",
            &[
                ("name", "deploy"),
                ("token", "deploy-token"),
                ("to", "alice@localhost"),
                ("message_type", "chat"),
            ],
        )
        .await,
    );
    assert!(
        note.contains("deploy") && !note.contains("deploy-token"),
        "{note}"
    );
    assert_eq!(
        post(hooks.http, "deploy", "deploy-token", "deployed v1").await,
        202
    );
    let m = alice
        .expect("the admin's hook's message", |s| {
            body(s).as_deref() == Some("deployed v1")
        })
        .await;
    assert_eq!(
        m.attr("from").map(|f| f.split('/').next().unwrap_or(f)),
        Some("deploy@hooks.localhost")
    );

    // Bob is no admin: the admin commands are refused, and config hooks are read-only.
    let denied = command(
        &mut bob,
        "admin-hook-add",
        &[("name", "x"), ("to", "bob@localhost")],
    )
    .await;
    assert_eq!(
        error_condition(&denied).as_deref(),
        Some("forbidden"),
        "{}",
        String::from(&denied)
    );
    let taken = command(&mut bob, "hook-add", &[("name", "ci")]).await;
    assert_eq!(
        error_condition(&taken).as_deref(),
        Some("conflict"),
        "{}",
        String::from(&taken)
    );
    let config_hook = command(&mut admin, "admin-hook-remove", &[("name", "ci")]).await;
    assert!(
        error_condition(&config_hook).as_deref() == Some("forbidden")
            && String::from(&config_hook).contains("configuration file"),
        "{}",
        String::from(&config_hook)
    );

    // Bob adds a hook for himself and gets a generated token, once.
    let note = completed_note(&command(&mut bob, "hook-add", &[("name", "bobs")]).await);
    let token = note
        .split("shown only this once: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in {note:?}"))
        .to_owned();
    assert_eq!(post(hooks.http, "bobs", &token, "for bob").await, 202);
    bob.expect("bob's own hook's message", |s| {
        body(s).as_deref() == Some("for bob")
    })
    .await;
    let list = command(&mut bob, "hook-list", &[]).await;
    let xml = String::from(&list);
    assert!(xml.contains("bobs") && !xml.contains(&token), "{xml}");

    // The whole gateway's metrics are on the gateway's HTTP server.
    let metrics = reqwest::get(format!("http://{}/metrics", hooks.http))
        .await
        .expect("the listener answers")
        .text()
        .await
        .expect("a text body");
    assert!(
        metrics
            .lines()
            .any(|l| l == "estuary_component_link_up{bridge=\"webhook\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("estuary_webhook_messages_delivered_total{hook=\"bobs\"} 1"),
        "{metrics}"
    );
    // The core's families and the bridge's read as one well-formed exposition.
    let read = common::exposition::parse(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(
        read.value(
            "estuary_webhook_requests_total",
            &[("hook", "bobs"), ("status", "202")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let webhook: Vec<(&str, &str)> = read
        .families
        .iter()
        .filter(|f| f.name.starts_with("estuary_webhook_"))
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        webhook,
        [
            ("estuary_webhook_requests_total", "counter"),
            ("estuary_webhook_messages_delivered_total", "counter"),
            ("estuary_webhook_outgoing_total", "counter"),
            ("estuary_webhook_outgoing_retries_total", "counter"),
        ],
        "{metrics}"
    );
    assert_eq!(
        read.families[0].name, "estuary_stanzas_in_total",
        "the core's come first"
    );

    // The hooks are stored (asynchronously, through the core's queue) before the restart.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stored = |user: &'static str| {
            let db = hooks.app.db.clone();
            async move {
                db.get_login("webhook", user)
                    .await
                    .expect("the database answers")
                    .is_some_and(|l| {
                        l.metadata["hooks"]
                            .as_array()
                            .is_some_and(|h| !h.is_empty())
                    })
            }
        };
        if stored("bob@localhost").await && stored("admin@localhost").await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hooks were not stored in the logins' metadata"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The tokens are sealed at rest: no stored row holds one in clear.
    let rows = raw_webhook_metadata(&hooks).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (user, metadata) in &rows {
        assert!(
            !metadata.contains("deploy-token") && !metadata.contains(&token),
            "a token of {user} is stored in clear: {metadata}"
        );
        assert!(metadata.contains("v1:"), "{user}: {metadata}");
    }
    // A row stored before tokens were sealed (token in the hook's table) still loads.
    hooks
        .app
        .db
        .save_login(
            "webhook",
            "carol@localhost",
            "webhook:carol@localhost",
            &Default::default(),
            &[],
            &serde_json::json!({"hooks": [
                {"name": "legacy", "token": "legacy-token", "to": ["alice@localhost"]}
            ]}),
        )
        .await
        .expect("a legacy row is written");

    // Restart: a new gateway on the same database.
    hooks.app.shutdown().await;
    let dir = hooks.dir.clone();
    drop(hooks);
    let hooks = start_in(&server, dir).await;
    assert_eq!(
        post(hooks.http, "legacy", "legacy-token", "legacy hook").await,
        202
    );
    alice
        .expect("the legacy hook's message after the restart", |s| {
            body(s).as_deref() == Some("legacy hook")
        })
        .await;
    // ... and is stored again, sealed.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = raw_webhook_metadata(&hooks).await;
        let carol = rows
            .iter()
            .find(|(u, _)| u == "carol@localhost")
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        if !carol.contains("legacy-token") && carol.contains("v1:") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the legacy row was not stored again sealed: {carol}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(hooks.http, "bobs", &token, "after the restart").await,
        202
    );
    bob.expect("bob's hook's message after the restart", |s| {
        body(s).as_deref() == Some("after the restart")
    })
    .await;
    assert_eq!(
        post(hooks.http, "deploy", "deploy-token", "deployed v2").await,
        202
    );
    alice
        .expect("the admin's hook's message after the restart", |s| {
            body(s).as_deref() == Some("deployed v2")
        })
        .await;

    // Removed hooks stay removed across a restart, too.
    completed_note(&command(&mut bob, "hook-remove", &[("name", "bobs")]).await);
    assert_eq!(post(hooks.http, "bobs", &token, "gone").await, 404);
    hooks.app.shutdown().await;
}

/// The webhook logins' `metadata` column as stored, by user.
async fn raw_webhook_metadata(hooks: &Hooks) -> Vec<(String, String)> {
    use sqlx::Row as _;
    sqlx::query("SELECT user_jid, metadata FROM logins WHERE bridge = 'webhook' ORDER BY user_jid")
        .fetch_all(hooks.app.db.pool())
        .await
        .expect("the logins are read")
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

/// What the local receiver saw: the body and the signature header of each POST.
type Received = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// An HTTP receiver on loopback answering `status` to every POST on `/receive`.
async fn receiver(status: u16) -> (SocketAddr, Received) {
    let seen: Received = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/receive",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let record = Arc::clone(&record);
            async move {
                let signature = headers
                    .get("x-estuary-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                record.lock().expect("not poisoned").push((body, signature));
                axum::http::StatusCode::from_u16(status).expect("a valid status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn a_message_to_a_hook_is_posted_out_signed() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    server.register("admin", "adminpw").await;
    let hooks = start(&server).await;
    let (ok_addr, seen) = receiver(200).await;
    let (bad_addr, _) = receiver(404).await;
    let mut admin = TestClient::connect(&server, "admin", "adminpw", "e2e").await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    for (name, addr) in [("deploy", ok_addr), ("broken", bad_addr)] {
        let url = format!("http://{addr}/receive");
        let added = command(
            &mut admin,
            "admin-hook-add",
            &[
                ("name", name),
                ("token", "out-token"),
                ("to", "alice@localhost"),
                ("url", &url),
            ],
        )
        .await;
        completed_note(&added);
    }

    alice
        .send(el("<message xmlns='jabber:client' type='chat' to='deploy@hooks.localhost' id='o1'><body>ship it</body><request xmlns='urn:xmpp:receipts'/></message>"))
        .await;
    alice
        .expect("a receipt once the URL took it", |s| {
            s.get_child("received", "urn:xmpp:receipts")
                .is_some_and(|r| r.attr("id") == Some("o1"))
        })
        .await;
    let (body, signature) = seen
        .lock()
        .expect("not poisoned")
        .first()
        .cloned()
        .expect("the receiver got the POST");
    let json: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(json["body"], "ship it");
    assert_eq!(json["from"], "alice@localhost");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"out-token").expect("any key length");
    mac.update(body.as_bytes());
    assert_eq!(
        signature,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        "the signature verifies"
    );

    alice
        .send(el("<message xmlns='jabber:client' type='chat' to='broken@hooks.localhost' id='o2'><body>ship it too</body></message>"))
        .await;
    let err = alice
        .expect("an error with the HTTP status", |s| {
            s.attr("type") == Some("error") && s.attr("id") == Some("o2")
        })
        .await;
    assert!(String::from(&err).contains("404"), "{}", String::from(&err));
    hooks.app.shutdown().await;
}
