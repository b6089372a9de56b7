//! Shared test harness: a started connector on 127.0.0.1:0 with a real mpsc queue standing
//! in for the core.

#![allow(dead_code)]

use estuary_bridge_api::{Connector, EventRouter, LoginId, OutboundPolicy, RemoteEvent};
use estuary_bridge_webhook::WebhookConnector;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the core would receive.
pub type Event = (String, LoginId, RemoteEvent);

/// A running webhook bridge.
pub struct Harness {
    pub connector: WebhookConnector,
    pub rx: mpsc::Receiver<Event>,
    pub base: String,
    pub http: reqwest::Client,
}

/// Starts a connector for this table; `listen` is forced to 127.0.0.1:0 unless given.
pub async fn start(mut table: Value) -> Harness {
    if table.get("listen").is_none() {
        table["listen"] = Value::from("127.0.0.1:0");
    }
    // Receives only: nothing goes out, so the default (strict) outbound policy.
    let connector =
        WebhookConnector::from_config(&table, OutboundPolicy::default()).expect("config");
    let (tx, rx) = mpsc::channel(64);
    connector
        .start(EventRouter::new(tx))
        .await
        .expect("listener starts");
    let addr = connector.local_addr().expect("bound");
    Harness {
        connector,
        rx,
        base: format!("http://{addr}"),
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
