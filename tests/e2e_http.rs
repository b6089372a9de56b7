//! End-to-end for the gateway's own HTTP server (`[http]`): `/healthz` follows the component
//! link through a real Prosody's stop and restart, `/metrics` is served with no webhook
//! bridge, unknown paths get a JSON 404. The gateway runs in-process with the fake bridge.

// The harness's client is not used here.
#[allow(unused_imports)]
mod common;

use base64::Engine;
use common::{Prosody, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary_bridge_api::Connector;
use estuary_bridge_fake::FakeConnector;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "http-secret";

fn settings(component: SocketAddr, dir: &std::path::Path) -> Settings {
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
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

[http]
listen = "127.0.0.1:0"

[bridges.fake]
domain = "{DOMAIN}"
secret = "{SECRET}"
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.join("estuary.db").display(),
    );
    Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid")
}

async fn start(server: &impl XmppServer, dir: &std::path::Path) -> App {
    let settings = settings(server.component_addr(), dir);
    assert!(
        settings.notices().is_empty(),
        "an [http] config needs no advice"
    );
    let db = app::open_database(&settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("fake".into(), Arc::new(FakeConnector::new()));
    app::start_with(&settings, db, connectors)
        .await
        .expect("the gateway starts")
}

/// `GET /healthz`: the status and the JSON body.
async fn healthz(addr: SocketAddr) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

/// Polls `/healthz` until it answers `want` (within 20 s); the last body.
async fn healthz_becomes(addr: SocketAddr, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = healthz(addr).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status} ({body}), expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn healthz_follows_the_component_link_through_a_server_restart() {
    common::init_tracing();
    let mut server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = start(&server, dir.path()).await;
    let addrs = app.http_addrs();
    assert_eq!(addrs.len(), 1);
    let addr = addrs[0];
    assert!(addr.ip().is_loopback());

    let up = healthz_becomes(addr, 200).await;
    assert_eq!(up["status"], "ok");
    assert_eq!(up["bridges"]["fake"], "up");
    assert_eq!(up["down"], serde_json::json!([]));

    server.stop().await;
    let down = healthz_becomes(addr, 503).await;
    assert_eq!(down["status"], "degraded");
    assert_eq!(down["bridges"]["fake"], "down");
    assert_eq!(down["down"], serde_json::json!(["fake"]));
    // Still down a moment later: the link does not pretend while it retries.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(healthz(addr).await.0, 503);

    server.start_again().await;
    let back = healthz_becomes(addr, 200).await;
    assert_eq!(back["bridges"]["fake"], "up");

    app.shutdown().await;
    // The server is gone after the shutdown: nothing answers on the port.
    assert!(
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn metrics_are_served_without_the_webhook_bridge() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = start(&server, dir.path()).await;
    let addr = app.http_addrs()[0];
    healthz_becomes(addr, 200).await;

    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the server answers");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.expect("a text body");
    assert!(
        text.lines()
            .any(|l| l == "estuary_component_link_up{bridge=\"fake\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE estuary_stanzas_in_total counter"),
        "{text}"
    );
    assert!(!text.contains("estuary_webhook_"), "{text}");

    // No bridge serves routes here: hook paths are unknown, with a JSON answer.
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/hooks/ci"))
        .body("x")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"], "no such endpoint");
    app.shutdown().await;
}
