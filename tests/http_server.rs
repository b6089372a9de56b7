//! The gateway's HTTP server (`estuary::http`) against abusive clients and with TLS, over
//! real TCP on 127.0.0.1, with the webhook bridge's routes mounted as the core mounts them:
//! slow headers, too many connections, a body over `[http] max_body_bytes`, HTTPS, a bad
//! certificate, a taken port.

#![cfg(feature = "webhook")]

use estuary::config::HttpSettings;
use estuary::http::{self, HttpError, HttpServer};
use estuary::metrics::Registry;
use estuary_bridge_api::{Connector, EventRouter, LoginId, OutboundPolicy, RemoteEvent};
use estuary_bridge_webhook::WebhookConnector;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A server with the webhook bridge's routes, and what the core's queue received.
struct Harness {
    server: Option<HttpServer>,
    rx: mpsc::Receiver<(String, LoginId, RemoteEvent)>,
    addr: SocketAddr,
    http: reqwest::Client,
}

/// `[http]` on 127.0.0.1, a free port, other settings at their defaults.
fn local() -> HttpSettings {
    HttpSettings {
        listen: vec!["127.0.0.1:0".into()],
        ..HttpSettings::default()
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The webhook bridge with two hooks, started, its routes fed into a fresh queue.
async fn webhook() -> (
    Vec<(String, axum::Router)>,
    mpsc::Receiver<(String, LoginId, RemoteEvent)>,
) {
    let connector = WebhookConnector::from_config(
        &json!({
            "max_body_bytes": 16 * 1024 * 1024,
            "hooks": [{"name": "ci", "token": "s3cret", "to": ["alice@localhost"]}]
        }),
        OutboundPolicy::default(),
    )
    .expect("config");
    let (tx, rx) = mpsc::channel(64);
    let events = EventRouter::new(tx);
    connector
        .start(events.clone())
        .await
        .expect("bridge starts");
    let routes = connector.http_routes(events).expect("webhook routes");
    (vec![("webhook".into(), routes)], rx)
}

async fn try_start(settings: HttpSettings) -> Result<Harness, HttpError> {
    let (mounts, rx) = webhook().await;
    let server = http::start(&settings, &[], Registry::new(), mounts).await?;
    let addr = server.local_addrs()[0];
    Ok(Harness {
        server: Some(server),
        rx,
        addr,
        http: reqwest::Client::new(),
    })
}

async fn start(settings: HttpSettings) -> Harness {
    try_start(settings).await.expect("the server starts")
}

impl Harness {
    fn hook_url(&self, name: &str) -> String {
        format!("http://{}/hooks/{name}", self.addr)
    }

    async fn next(&mut self) -> RemoteEvent {
        tokio::time::timeout(Duration::from_secs(1), self.rx.recv())
            .await
            .expect("an event within a second")
            .expect("queue open")
            .2
    }
}

/// Reads until the server closes the connection (or `limit` passes): what it sent, and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn post_ok(h: &Harness, hook: &str, token: &str) -> reqwest::StatusCode {
    h.http
        .post(h.hook_url(hook))
        .bearer_auth(token)
        .json(&json!({"text": "hello"}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("an answer")
        .status()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_and_others_are_served_meanwhile() {
    let mut h = start(HttpSettings {
        header_timeout_secs: 2,
        ..local()
    })
    .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(h.addr).await.unwrap();
    let mut idle = TcpStream::connect(h.addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        // One byte every 250 ms: headers that would take a minute; at most 40 bytes (10 s).
        let head =
            b"POST /hooks/ci HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaa";
        for b in head.iter().take(40) {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Closed by the server? A read that ends says so.
            let mut probe = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        started.elapsed()
    });

    // Meanwhile, ordinary requests are served.
    for _ in 0..3 {
        assert_eq!(post_ok(&h, "ci", "s3cret").await, 202);
        h.next().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let cut_after = trickle.await.unwrap();
    assert!(
        cut_after >= Duration::from_millis(1500) && cut_after < Duration::from_secs(4),
        "the slow client was cut off after {cut_after:?} (header timeout 2 s)"
    );
    // A connection that sends nothing is closed by the same timeout.
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(4)).await;
    assert!(
        closed,
        "an idle connection was kept past the header timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn connections_over_the_limit_are_answered_503_and_the_place_comes_back() {
    let mut h = start(HttpSettings {
        max_connections: 2,
        ..local()
    })
    .await;
    let a = TcpStream::connect(h.addr).await.unwrap();
    let _b = TcpStream::connect(h.addr).await.unwrap();
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(h.addr).await.unwrap();
    third
        .write_all(b"POST /hooks/ci HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut third, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("retry-after: 1"), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer:?}");
    assert!(closed);

    // One connection closes: its place is free again (bounded retries).
    drop(a);
    let mut served = false;
    for _ in 0..20 {
        let http = reqwest::Client::new();
        let resp = http
            .post(h.hook_url("ci"))
            .bearer_auth("s3cret")
            .json(&json!({"text": "hello"}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(r) = resp
            && r.status() == 202
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a freed place was not given to a new connection");
    h.next().await;
}

#[tokio::test]
async fn a_body_over_the_server_limit_is_413_even_where_the_route_allows_more() {
    // The hook allows 16 MiB; the server 1 KiB.
    let h = start(HttpSettings {
        max_body_bytes: 1024,
        ..local()
    })
    .await;
    let big = "x".repeat(4096);
    let resp = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({ "text": big }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let mut h = h;
    assert!(h.rx.try_recv().is_err(), "nothing was delivered");
    assert_eq!(post_ok(&h, "ci", "s3cret").await, 202);
    h.next().await;
}

#[tokio::test]
async fn hooks_are_served_over_tls() {
    let mut h = start(HttpSettings {
        tls_cert: Some(fixture("tls_test_cert.pem")),
        tls_key: Some(fixture("tls_test_key.pem")),
        ..local()
    })
    .await;
    let port = h.addr.port();
    // The test certificate is self-signed: trust it blindly, this test is about serving TLS.
    let https = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = https
        .post(format!("https://localhost:{port}/hooks/ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    match h.next().await {
        RemoteEvent::Message(m) => assert_eq!(m.body, "over TLS"),
        other => panic!("{other:?}"),
    }
    let health = https
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "no gateway: nothing is down");
    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks/ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "plain"}))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    assert!(h.rx.try_recv().is_err());
    h.server.take().unwrap().stop().await;
}

#[tokio::test]
async fn a_missing_certificate_is_reported_with_its_path() {
    let err = try_start(HttpSettings {
        tls_cert: Some("/nonexistent/cert.pem".into()),
        tls_key: Some(fixture("tls_test_key.pem")),
        ..local()
    })
    .await
    .err()
    .expect("no server without its certificate");
    assert!(matches!(err, HttpError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn a_taken_port_is_named_and_stop_frees_it() {
    let mut h = start(local()).await;
    let addr = h.addr;
    let err = try_start(HttpSettings {
        listen: vec![addr.to_string()],
        ..local()
    })
    .await
    .err()
    .expect("the port is taken");
    assert!(matches!(err, HttpError::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    h.server.take().unwrap().stop().await;
    let again = try_start(HttpSettings {
        listen: vec![addr.to_string()],
        ..local()
    })
    .await
    .expect("the port is free after stop");
    again.server.unwrap().stop().await;
}

#[tokio::test]
async fn several_addresses_share_one_server() {
    let mut h = start(HttpSettings {
        listen: vec!["127.0.0.1:0".into(), "127.0.0.1:0".into()],
        ..local()
    })
    .await;
    let addrs = h.server.as_ref().unwrap().local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    for addr in addrs {
        let resp = h
            .http
            .post(format!("http://{addr}/hooks/ci"))
            .bearer_auth("s3cret")
            .json(&json!({"text": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        h.next().await;
    }
}
