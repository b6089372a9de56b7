//! End-to-end archive retention: a real Prosody, the gateway with the fake bridge, a room
//! talked in, then a restart with `[archive] max_messages_per_room = 3`: the pruner runs at
//! start, and MAM through Prosody serves exactly the newest three, paging from the new first.

mod common;

use base64::Engine;
use common::{Prosody, TestClient};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary_bridge_api::Connector;
use estuary_bridge_fake::FakeConnector;
use sqlx::Row as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "e2e-secret";
const ROOM: &str = "#lobby@fake.localhost";

fn settings(component: std::net::SocketAddr, dir: &std::path::Path, archive: &str) -> Settings {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let toml = format!(
        r#"
[xmpp]
host = "{host}"
port = {port}
server_domain = "localhost"

[database]
url = "sqlite://{db}"
seal_key = "{key}"

[archive]
{archive}

[bridges.fake]
domain = "{DOMAIN}"
secret = "{SECRET}"
allowed_domains = ["localhost"]
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.join("estuary.db").display(),
    );
    Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid")
}

async fn start(settings: &Settings) -> App {
    let db = app::open_database(settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("fake".into(), Arc::new(FakeConnector::new()));
    app::start_with(settings, db, connectors)
        .await
        .expect("the gateway starts")
}

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

fn iq(to: &str, payload: &str) -> Element {
    el(&format!(
        "<iq xmlns='jabber:client' type='set' to='{to}' id='{}'>{payload}</iq>",
        uuid::Uuid::new_v4()
    ))
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

async fn join(alice: &mut TestClient) {
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    alice
        .expect("self-presence", |s| {
            s.attr("from") == Some("#lobby@fake.localhost/al")
                && String::from(s).contains("code='110'")
        })
        .await;
}

/// The bodies of one MAM page (`rsm` is the inside of `<set/>`) that should hold `n`
/// results, and its `<fin/>`; a result beyond the `n` fails the test.
async fn mam(alice: &mut TestClient, qid: &str, rsm: &str, n: usize) -> (Vec<String>, String) {
    let fin = alice
        .iq(iq(
            ROOM,
            &format!(
                "<query xmlns='urn:xmpp:mam:2' queryid='{qid}'><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query>"
            ),
        ))
        .await;
    let fin = String::from(&fin);
    let marker = format!("queryid='{qid}'");
    let mut bodies = Vec::new();
    for _ in 0..n {
        let m = alice
            .expect("a MAM result", |s| String::from(s).contains(&marker))
            .await;
        let forwarded = m
            .get_child("result", "urn:xmpp:mam:2")
            .and_then(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
            .and_then(|f| f.get_child("message", "jabber:client"))
            .and_then(body);
        bodies.extend(forwarded);
    }
    alice
        .expect_none("another MAM result", Duration::from_millis(300), |s| {
            String::from(s).contains(&marker)
        })
        .await;
    (bodies, fin)
}

#[tokio::test]
async fn the_pruner_trims_a_room_at_start_and_mam_pages_from_the_new_first() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let dir = tempfile::tempdir().unwrap();

    // Without limits: four messages and the bot's four answers are archived.
    let app = start(&settings(server.component_addr(), dir.path(), "")).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;
    alice
        .iq(iq(
            DOMAIN,
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='username'><value>alice1</value></field>\
             <field var='password'><value>pw</value></field></x></query>",
        ))
        .await;
    join(&mut alice).await;
    for i in 1..=4 {
        alice
            .send(el(&format!(
                "<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='g{i}'><body>m{i}</body></message>"
            )))
            .await;
        let want = format!("bot heard: m{i}");
        alice
            .expect("bot answers", |s| body(s).as_deref() == Some(want.as_str()))
            .await;
    }
    let (all, _) = mam(&mut alice, "q0", "<max>20</max>", 8).await;
    assert_eq!(all.len(), 8, "{all:?}");
    app.shutdown().await;
    drop(app);

    // Restarted with a count limit: the pass at start keeps the newest three.
    let app = start(&settings(
        server.component_addr(),
        dir.path(),
        "max_messages_per_room = 3",
    ))
    .await;
    let mut rows = 0i64;
    for _ in 0..100 {
        rows = sqlx::query("SELECT COUNT(*) FROM archive")
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        if rows == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows, 3, "pruned at start");

    join(&mut alice).await;
    let (kept, fin) = mam(&mut alice, "q1", "<max>2</max>", 2).await;
    assert_eq!(kept, ["bot heard: m3", "m4"], "{fin}");
    assert!(!fin.contains("complete='true'"), "{fin}");
    let first = fin
        .split("<first")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .expect("an RSM first")
        .to_owned();
    // Paging after the new first works (no item-not-found).
    let (next, fin) = mam(
        &mut alice,
        "q2",
        &format!("<max>10</max><after>{first}</after>"),
        2,
    )
    .await;
    assert_eq!(next, ["m4", "bot heard: m4"], "{fin}");
    assert!(fin.contains("complete='true'"), "{fin}");
    let (last, _) = mam(&mut alice, "q3", "<max>1</max><before/>", 1).await;
    assert_eq!(last, ["bot heard: m4"]);
    app.shutdown().await;
}
