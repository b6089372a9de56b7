//! End-to-end for the webhook bridge: HTTP posts in, XMPP messages out, through a real
//! Prosody (and its MUC component), with the gateway in-process.

mod common;

use base64::Engine;
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
    _dir: tempfile::TempDir,
}

async fn start(server: &impl XmppServer) -> Hooks {
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let component = server.component_addr();
    let toml = format!(
        r#"
[xmpp]
host = "{host}"
port = {port}
server_domain = "localhost"
ping_interval_secs = 2
ping_timeout_secs = 3
reconnect_max_secs = 1

[database]
url = "sqlite://{db}"
seal_key = "{key}"

[bridges.webhook]
domain = "{DOMAIN}"
secret = "{SECRET}"
listen = "127.0.0.1:0"

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
        host = component.ip(),
        port = component.port(),
        db = dir.path().join("estuary.db").display(),
    );
    let settings =
        Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid");
    let table = settings
        .bridge_tables
        .get("webhook")
        .cloned()
        .expect("the webhook table");
    let connector = Arc::new(WebhookConnector::from_config(&table).expect("the hooks are valid"));
    let db = app::open_database(&settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("webhook".into(), connector.clone());
    let app = app::start_with(&settings, db, connectors)
        .await
        .expect("the gateway starts");
    let http = connector.local_addr().expect("the HTTP listener is bound");
    Hooks {
        app,
        http,
        _dir: dir,
    }
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
        alice
            .drain()
            .iter()
            .all(|s| body(s).as_deref() != Some("should not arrive"))
    );

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
