//! The hooks against abusive clients, over real TCP on 127.0.0.1: slow bodies, a wrong token
//! with a huge body, token guessing. (Slow headers and too many connections are the core's
//! HTTP server's to refuse: the root crate's `tests/http_server.rs`.)

mod common;

use common::{Harness, start};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(extra: Value) -> Value {
    let mut table = json!({
        "hooks": [
            {"name": "ci", "token": "s3cret", "to": ["alice@localhost"]},
            {"name": "other", "token": "0ther", "to": ["alice@localhost"]}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        table[k] = v.clone();
    }
    table
}

fn addr(h: &Harness) -> SocketAddr {
    h.addr
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

/// Reads until the end of a response's headers (or `limit` passes).
async fn read_head(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
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
async fn a_wrong_bearer_token_is_refused_without_reading_a_huge_body() {
    // The body limit is above the declared size: only the token check can refuse early.
    let h = start(config(json!({"max_body_bytes": 16 * 1024 * 1024}))).await;
    let mut stream = TcpStream::connect(addr(&h)).await.unwrap();
    let declared: usize = 10 * 1024 * 1024;
    let head = format!(
        "POST /hooks/ci HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    stream.write_all(&chunk).await.unwrap();
    let sent = chunk.len();

    let t0 = Instant::now();
    let answer = read_head(&mut stream, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "expected 401 after {sent} of {declared} body bytes, got {answer:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // The server does not wait for the rest: it closes the connection.
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(
        closed,
        "the connection stayed open for the rest of the body"
    );
    eprintln!(
        "401 after sending {sent} of {declared} declared bytes ({:.1}%), in {took:?}",
        100.0 * sent as f64 / declared as f64
    );
}

#[tokio::test]
async fn a_slow_body_is_408_within_the_body_timeout() {
    let h = start(config(json!({"body_timeout_secs": 1}))).await;
    let mut stream = TcpStream::connect(addr(&h)).await.unwrap();
    stream
        .write_all(
            b"POST /hooks/ci HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n\
              Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b",
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    let answer = read_head(&mut stream, Duration::from_secs(4)).await;
    let took = t0.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn repeated_bad_tokens_from_one_address_get_429_then_even_the_right_token_waits() {
    let mut h = start(config(json!({"auth_failures_per_minute": 3}))).await;
    for i in 0..3 {
        assert_eq!(post_ok(&h, "ci", &format!("guess-{i}")).await, 401);
    }
    let resp = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "right token, too late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .starts_with("too many failed authentications from your address"),
        "{err}"
    );
    // The count is per address, not per hook.
    assert_eq!(post_ok(&h, "other", "0ther").await, 429);
    h.assert_nothing();

    // Another address (127.0.0.2 is loopback too) is not affected.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let resp = other
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "from elsewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    h.next().await;
}
