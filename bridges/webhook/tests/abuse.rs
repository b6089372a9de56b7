//! The listener against abusive clients, over real TCP on 127.0.0.1: slow headers and
//! bodies, a wrong token with a huge body, token guessing, too many connections.

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
    h.connector.local_addr().unwrap()
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
async fn a_slowloris_client_is_cut_off_and_others_are_served_meanwhile() {
    let mut h = start(config(json!({"header_timeout_secs": 2}))).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr(&h)).await.unwrap();
    let mut idle = TcpStream::connect(addr(&h)).await.unwrap();
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

#[tokio::test]
async fn connections_over_the_limit_are_answered_503_and_the_place_comes_back() {
    let mut h = start(config(json!({"max_connections": 2}))).await;
    let a = TcpStream::connect(addr(&h)).await.unwrap();
    let _b = TcpStream::connect(addr(&h)).await.unwrap();
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr(&h)).await.unwrap();
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
