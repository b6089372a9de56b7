//! End-to-end for the gateway's own HTTP server (`[http]`): `/healthz` follows the component
//! link through a real Prosody's stop and restart, `/metrics` is served with no webhook
//! bridge (read by a strict reader of the format, a counter moving between two scrapes),
//! unknown paths get a JSON 404. The gateway runs in-process with the fake bridge.

mod common;

use common::exposition::{self, Exposition};
use common::{Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary_bridge_api::Connector;
use estuary_bridge_fake::FakeConnector;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::disco::DiscoInfoQuery;
use tokio_xmpp::parsers::iq::Iq;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "http-secret";

fn settings(component: SocketAddr, dir: &std::path::Path) -> Settings {
    let toml = format!(
        r#"{head}
[http]
listen = "127.0.0.1:0"

[bridges.fake]
domain = "{DOMAIN}"
secret = "{SECRET}"
"#,
        head = common::gateway_toml_head(component, dir, 5),
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

/// `GET /metrics`: checks the status and the Content-Type (the Prometheus text format
/// 0.0.4), and reads the body strictly ([`common::exposition`]).
async fn scrape(addr: SocketAddr) -> Exposition {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the server answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("a text body");
    exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
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

    let before = scrape(addr).await;
    assert_eq!(
        before.value("estuary_component_link_up", &[("bridge", "fake")]),
        Some(1.0)
    );
    let stanzas_in = |e: &Exposition| {
        e.value("estuary_stanzas_in_total", &[("bridge", "fake")])
            .expect("a sample for the fake bridge")
    };

    // A client's disco#info query to the gateway moves the stanza counters.
    server.register("alice", "alicepw").await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "metrics").await;
    let answer = alice
        .iq(Iq::from_get("disco-1", DiscoInfoQuery { node: None })
            .with_to(Jid::new(DOMAIN).expect("a JID")))
        .await;
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
    let after = scrape(addr).await;
    assert!(
        stanzas_in(&after) >= stanzas_in(&before) + 1.0,
        "stanzas in: {} then {}",
        stanzas_in(&before),
        stanzas_in(&after)
    );
    assert!(
        after
            .value("estuary_stanzas_out_total", &[("bridge", "fake")])
            .is_some_and(|v| v >= 1.0),
        "{after:?}"
    );
    // Every core family is there, with today's names, types and help texts.
    for (name, kind) in [
        ("estuary_stanzas_in_total", "counter"),
        ("estuary_stanzas_refused_total", "counter"),
        ("estuary_stanzas_out_total", "counter"),
        ("estuary_messages_out_total", "counter"),
        ("estuary_events_in_total", "counter"),
        ("estuary_events_dropped_total", "counter"),
        ("estuary_outbound_queue", "gauge"),
        ("estuary_component_link_up", "gauge"),
        ("estuary_component_link_connections_total", "counter"),
        ("estuary_unwritable_stanzas_total", "counter"),
        ("estuary_clients", "gauge"),
    ] {
        let family = after.family(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(family.kind, kind, "{name}");
        assert_eq!(family.samples.len(), 1, "one sample per bridge: {family:?}");
    }
    // The archive pruner's counters: process-wide, one unlabelled sample each (issue 15).
    for name in [
        "estuary_archive_pruned_by_age_total",
        "estuary_archive_pruned_by_count_total",
        "estuary_message_map_pruned_total",
        "estuary_archive_prune_failures_total",
    ] {
        let family = after.family(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(family.kind, "counter", "{name}");
        assert_eq!(family.samples.len(), 1, "{family:?}");
        assert!(family.samples[0].labels.is_empty(), "{family:?}");
        assert_eq!(family.samples[0].value, 0.0, "nothing pruned: {family:?}");
    }
    assert_eq!(after.families.len(), 15, "{after:?}");
    assert_eq!(
        after.family("estuary_stanzas_in_total").unwrap().help,
        "Stanzas received from the XMPP server."
    );
    assert!(
        !after
            .families
            .iter()
            .any(|f| f.name.starts_with("estuary_webhook_"))
    );

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

/// The reader `/metrics` is checked with must be able to fail: each broken text is refused
/// with a reason, and a good one (escapes, comments, a histogram) is read as written.
#[test]
fn the_exposition_reader_refuses_broken_text() {
    let good = "# HELP a_total A \\\\ b\\n.\n# TYPE a_total counter\n\
                a_total{l=\"x\\\"y\\\\z\\n\",m=\"\"} 3\na_total 1.5e3 1700000000\n\
                \n# a comment\n# HELP h H.\n# TYPE h histogram\n\
                h_bucket{le=\"+Inf\"} 2\nh_sum NaN\nh_count 2\n";
    let e = exposition::parse(good).expect("well formed");
    assert_eq!(e.families.len(), 2);
    assert_eq!(e.families[0].help, "A \\ b\n.");
    assert_eq!(
        e.value("a_total", &[("m", ""), ("l", "x\"y\\z\n")]),
        Some(3.0)
    );
    assert_eq!(e.value("a_total", &[]), Some(1500.0));
    for (bad, why) in [
        ("# HELP a A.\n# TYPE a gauge\na 1", "newline"),
        ("a 1\n", "before any HELP"),
        ("# TYPE a gauge\na 1\n", "without a HELP"),
        ("# HELP a A.\na 1\n", "between HELP and TYPE"),
        ("# HELP a A.\n", "has no TYPE"),
        ("# HELP a A.\n# TYPE b gauge\n", "after HELP for a"),
        ("# HELP a A.\n# TYPE a meter\n", "unknown type"),
        ("# HELP a A.\n# TYPE a gauge\nb 1\n", "outside its family"),
        (
            "# HELP a A.\n# TYPE a gauge\n# HELP a A.\n# TYPE a gauge\n",
            "second HELP",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\n",
            "outside its family",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",
            "same series twice",
        ),
        ("# HELP a A.\n# TYPE a counter\na -1\n", "below 0"),
        ("# HELP a A.\n# TYPE a gauge\na{l=x} 1\n", "not quoted"),
        ("# HELP a A.\n# TYPE a gauge\na{l=\"x} 1\n", "is open"),
        (
            "# HELP a A.\n# TYPE a gauge\na{l=\"\\t\"} 1\n",
            "bad escape",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\na{l=\"1\",l=\"2\"} 1\n",
            "twice",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\na{1l=\"1\"} 1\n",
            "bad label name",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\na{l=\"1\" m=\"2\"} 1\n",
            "neither",
        ),
        ("# HELP a A.\n# TYPE a gauge\na one\n", "bad value"),
        (
            "# HELP a A.\n# TYPE a gauge\na 1 2 3\n",
            "after the timestamp",
        ),
        ("# HELP a A.\n# TYPE a gauge\na 1 soon\n", "bad timestamp"),
        ("# HELP 9a A.\n# TYPE 9a gauge\n", "bad metric name"),
        ("# HELP a A \\t.\n# TYPE a gauge\n", "bad escape in help"),
        ("# HELP a A.\n# TYPE a gauge\na\n", "without a value"),
    ] {
        let err = exposition::parse(bad).expect_err(bad);
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}
