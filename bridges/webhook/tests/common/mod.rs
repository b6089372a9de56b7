//! Shared test harness: a started connector whose routes are served on 127.0.0.1:0 (by plain
//! `axum::serve`: the listener-level limits are the core's, tested in the root crate's
//! `tests/http_server.rs`) with a real mpsc queue standing in for the core.

#![allow(dead_code)]

use estuary_bridge_api::{Connector, EventRouter, LoginId, OutboundPolicy, RemoteEvent};
use estuary_bridge_webhook::WebhookConnector;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the core would receive.
pub type Event = (String, LoginId, RemoteEvent);

/// A running webhook bridge.
pub struct Harness {
    pub connector: WebhookConnector,
    pub rx: mpsc::Receiver<Event>,
    pub base: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

/// Starts a connector for this table and serves its routes on 127.0.0.1 (a free port).
pub async fn start(table: Value) -> Harness {
    // Receives only: nothing goes out, so the default (strict) outbound policy.
    let connector =
        WebhookConnector::from_config(&table, OutboundPolicy::default()).expect("config");
    let (tx, rx) = mpsc::channel(64);
    let events = EventRouter::new(tx);
    connector
        .start(events.clone())
        .await
        .expect("bridge starts");
    let routes = connector
        .http_routes(events)
        .expect("the bridge serves routes");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Harness {
        connector,
        rx,
        base: format!("http://{addr}"),
        addr,
        http: reqwest::Client::new(),
    }
}

impl Harness {
    /// The URL of a hook.
    pub fn hook_url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.base)
    }

    /// The next event, failing after a second.
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(1), self.rx.recv())
            .await
            .expect("an event within a second")
            .expect("queue open")
    }

    /// Asserts that nothing was delivered.
    pub fn assert_nothing(&mut self) {
        match self.rx.try_recv() {
            Err(mpsc::error::TryRecvError::Empty) => {}
            other => panic!("expected no event, got {other:?}"),
        }
    }
}

/// A fixture file's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// A fixture's expected text.
pub fn expected(name: &str) -> String {
    String::from_utf8(fixture(name))
        .expect("utf-8")
        .trim_end_matches('\n')
        .to_owned()
}
