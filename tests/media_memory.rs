//! A 100 MB file of unknown length from the network, through the whole own-server path in
//! one process: the fake bridge hands it over as a stream, the gateway spools it to disk
//! (within `[media] max_bytes`), the client gets its URL over XMPP (Prosody), and the file
//! is downloaded from the gateway's HTTP server. The process's resident memory (VmRSS,
//! sampled every 10 ms by a thread of its own) must grow by less than 10 MB (issue 14).
//! In its own test binary, so that no other test's allocations blur the measurement; the
//! figures are in docs/performance.md.

mod common;

use base64::Engine;
use common::{Prosody, TestClient};
use estuary::app;
use estuary::config::Settings;
use estuary_bridge_api::{
    Attachment, ChatKey, Connector, Content, MessageKind, RemoteEvent, RemoteMessage, RemoteUserId,
    Sender, Source,
};
use estuary_bridge_fake::FakeConnector;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::AsyncReadExt;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "memory-secret";
const TOTAL: u64 = 100 * 1024 * 1024;

/// VmRSS of this process, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a VmRSS line")
        * 1024
}

/// A message from dave carrying `len` bytes of 0x5a as content of unknown length.
fn file_of(len: u64, id: &str) -> RemoteEvent {
    RemoteEvent::Message(RemoteMessage {
        chat: ChatKey::Direct(RemoteUserId::new("dave")),
        sender: Sender {
            user: RemoteUserId::new("dave"),
            nick: None,
            is_from_me: false,
        },
        id: Some(estuary_bridge_api::RemoteMessageId::new(id)),
        body: String::new(),
        attachments: vec![Attachment {
            name: format!("{id}.bin"),
            media_type: None,
            size: None,
            source: Source::Content(Content::new(tokio::io::repeat(0x5a).take(len), None)),
        }],
        kind: MessageKind::Normal,
        at: None,
        reply_to: None,
        echo_of: None,
    })
}

/// Sends `len` bytes through the gateway and downloads them; returns the bytes read.
async fn through(
    network: &estuary_bridge_fake::FakeNetwork,
    alice: &mut TestClient,
    len: u64,
    id: &str,
) -> u64 {
    network
        .inject("alice@localhost", file_of(len, id))
        .await
        .expect("the fake network delivers");
    let got = alice
        .expect_within("the file's URL", std::time::Duration::from_secs(120), |s| {
            s.get_child("x", "jabber:x:oob").is_some()
        })
        .await;
    let url = got
        .get_child("x", "jabber:x:oob")
        .and_then(|x| x.get_child("url", "jabber:x:oob"))
        .map(|u| u.text())
        .expect("an OOB URL");
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .expect("the gateway serves it");
    assert_eq!(answer.status(), 200);
    let mut stream = answer.bytes_stream();
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("the bytes arrive");
        assert!(chunk.iter().all(|b| *b == 0x5a));
        read += chunk.len() as u64;
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_file_of_unknown_length_grows_memory_by_less_than_10_mb() {
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "pw").await;
    let dir = tempfile::tempdir().unwrap();
    let http = common::ports::loopback(common::ports::free_port());
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let component = server.component_addr();
    let toml = format!(
        "[xmpp]\nhost = \"{}\"\nport = {}\nserver_domain = \"localhost\"\n\
         [database]\nurl = \"sqlite://{}\"\nseal_key = \"{key}\"\n\
         [http]\nlisten = \"{http}\"\npublic_url = \"http://{http}\"\n\
         [media]\nmode = \"gateway\"\ndir = \"{}\"\nmax_bytes = {}\n\
         [bridges.fake]\ndomain = \"{DOMAIN}\"\nsecret = \"{SECRET}\"\n",
        component.ip(),
        component.port(),
        dir.path().join("estuary.db").display(),
        dir.path().join("media").display(),
        TOTAL + 1,
    );
    let settings = Settings::from_toml(&toml, "memory", false).expect("a valid config");
    let connector = FakeConnector::new();
    let network = connector.network();
    let db = app::open_database(&settings).await.unwrap();
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("fake".into(), Arc::new(connector));
    let gateway = app::start_with(&settings, db, connectors).await.unwrap();
    let mut alice = TestClient::connect(&server, "alice", "pw", "memory").await;
    let answer = alice.register_with_gateway(DOMAIN, "alice1", "pw").await;
    assert_eq!(answer.attr("type"), Some("result"));

    // A 1 MB warm-up through the same path: what a running gateway has set up already
    // (the HTTP client and server, buffers, allocator arenas) is not what is measured.
    let cold = resident();
    assert_eq!(
        through(&network, &mut alice, 1 << 20, "warm").await,
        1 << 20
    );
    let before = resident();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(resident(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    let started = std::time::Instant::now();
    let read = through(&network, &mut alice, TOTAL, "big").await;
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).max(resident());
    assert_eq!(read, TOTAL);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "VmRSS cold {cold} B, before {before} B, peak {peak} B, growth {growth} B \
         ({:.1} MiB) for {TOTAL} B in {took:?}",
        growth as f64 / (1024.0 * 1024.0)
    );
    assert!(
        growth < 10 * 1024 * 1024,
        "resident memory grew by {growth} bytes"
    );
    gateway.shutdown().await;
}
