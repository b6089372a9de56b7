//! Serving HTTPS with a configured certificate (a self-signed test pair in fixtures/).

use estuary_bridge_api::{Connector, EventRouter, OutboundPolicy, RemoteEvent};
use estuary_bridge_webhook::WebhookConnector;
use serde_json::json;
use tokio::sync::mpsc;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn hooks_are_served_over_tls() {
    let c = WebhookConnector::from_config(
        &json!({
            "listen": "127.0.0.1:0",
            "tls_cert": fixture("tls_test_cert.pem"),
            "tls_key": fixture("tls_test_key.pem"),
            "hooks": [{"name": "ci", "token": "s3cret", "to": ["alice@localhost"]}]
        }),
        OutboundPolicy::default(),
    )
    .unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    c.start(EventRouter::new(tx)).await.unwrap();
    let port = c.local_addr().unwrap().port();
    // The test certificate is self-signed: trust it blindly, this test is about serving TLS.
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = http
        .post(format!("https://localhost:{port}/hooks/ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    match rx.recv().await.unwrap().2 {
        RemoteEvent::Message(m) => assert_eq!(m.body, "over TLS"),
        other => panic!("{other:?}"),
    }
    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks/ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "plain"}))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    assert!(rx.try_recv().is_err());
    c.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_is_reported_with_its_path() {
    let c = WebhookConnector::from_config(
        &json!({
            "listen": "127.0.0.1:0",
            "tls_cert": "/nonexistent/cert.pem",
            "tls_key": fixture("tls_test_key.pem"),
        }),
        OutboundPolicy::default(),
    )
    .unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = c.start(EventRouter::new(tx)).await.unwrap_err();
    assert!(err.text.contains("/nonexistent/cert.pem"), "{err}");
    assert!(c.local_addr().is_none());
}
