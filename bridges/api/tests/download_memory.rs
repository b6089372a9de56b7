//! The bounded download streams: 100 MB pass through it while the process's resident memory
//! grows by less than 10 MB (issue 14). In its own test binary, so no other test's
//! allocations blur the measurement.

use estuary_bridge_api::{DownloadLimits, OutboundPolicy, download};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOTAL: u64 = 100 * 1024 * 1024;

/// Resident set size in bytes, from /proc/self/statm.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("the resident page count");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_download_grows_memory_by_less_than_10_mb() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock));
        }
    });
    let policy = OutboundPolicy::new(&["127.0.0.1"]).unwrap();
    let limits = DownloadLimits {
        max_bytes: TOTAL,
        timeout: Duration::from_secs(120),
    };
    let url = format!("http://{addr}/big.bin");
    // A warm-up download of 1 MB: what a running gateway has set up already (the TLS
    // roots, the runtime's threads and their allocator arenas) is not what is measured.
    let cold = resident();
    let warm = download(&policy, &url, limits)
        .await
        .expect("the warm-up starts");
    let mut reader = warm.content.take().expect("the stream");
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..16 {
        reader
            .read_exact(&mut buf)
            .await
            .expect("the warm-up bytes");
    }
    drop(reader);
    let before = resident();
    let got = download(&policy, &url, limits)
        .await
        .expect("the download starts");
    let mut reader = got.content.take().expect("the stream");
    let (mut read, mut peak) = (0u64, before);
    loop {
        let n = reader.read(&mut buf).await.expect("the bytes arrive");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0x5a));
        read += n as u64;
        if read % (8 * 1024 * 1024) < n as u64 {
            peak = peak.max(resident());
        }
    }
    peak = peak.max(resident());
    assert_eq!(read, TOTAL);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "resident cold {cold} B, before {before} B, peak {peak} B, growth {growth} B for {TOTAL} B"
    );
    assert!(
        growth < 10 * 1024 * 1024,
        "resident memory grew by {growth} bytes"
    );
}

/// Answers one request with `TOTAL` bytes of 0x5a, until the reader goes away.
async fn serve(mut sock: tokio::net::TcpStream) {
    let mut req = [0u8; 2048];
    let _ = sock.read(&mut req).await;
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n");
    sock.write_all(head.as_bytes()).await.unwrap();
    let block = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    while sent < TOTAL {
        let n = block.len().min((TOTAL - sent) as usize);
        if sock.write_all(&block[..n]).await.is_err() {
            return;
        }
        sent += n as u64;
    }
}
