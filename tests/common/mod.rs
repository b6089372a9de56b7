//! The integration-test harness: real XMPP servers and a real XMPP client.
//!
//! Use it from any file in `tests/` with `mod common;`:
//!
//! ```ignore
//! mod common;
//! use common::{Prosody, TestClient, XmppServer};
//!
//! #[tokio::test]
//! async fn hello() {
//!     common::init_tracing();
//!     let server = Prosody::start(&[("irc.localhost", "secret")]).await;
//!     server.register("alice", "alicepw").await;
//!     let mut alice = TestClient::connect(&server, "alice", "alicepw", "test").await;
//!     // connect a component to server.component_addr(), then alice.send(…), alice.expect(…)
//! }
//! ```
//!
//! Every server gets its own temp dir and its own free loopback ports, so tests run in
//! parallel; each one is stopped (its whole process group killed) when its value is dropped.
//! See `docs/testing.md`.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod c2s;
pub mod client;
pub mod ejabberd;
pub mod exposition;
pub mod ports;
pub mod process;
pub mod prosody;
pub mod tap;

pub use client::TestClient;
pub use ejabberd::Ejabberd;
pub use prosody::Prosody;

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;

/// What a scenario needs from an XMPP server, so it can run against Prosody and ejabberd alike
/// (write it as `async fn scenario(server: &mut impl XmppServer)`).
pub trait XmppServer {
    /// "Prosody" or "ejabberd", for messages.
    fn name(&self) -> &'static str;
    /// The c2s listener (plaintext, on 127.0.0.1).
    fn c2s_addr(&self) -> SocketAddr;
    /// The XEP-0114 component listener (on 127.0.0.1).
    fn component_addr(&self) -> SocketAddr;
    /// The user domain, `localhost`.
    fn domain(&self) -> &str;
    /// The server's own MUC service, `conference.localhost`.
    fn muc_domain(&self) -> &str;
    /// Creates the account `user@<domain>`.
    async fn register(&self, user: &str, password: &str);
    /// Stops the server, keeping ports and data.
    async fn stop(&mut self);
    /// Starts it again after [`stop`](Self::stop), same ports and data.
    async fn start_again(&mut self);
    /// The last lines of the server's logs, for failure messages.
    fn log_tail(&self) -> String;
}

/// Which server a parameterised scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// [`Prosody`].
    Prosody,
    /// [`Ejabberd`].
    Ejabberd,
}

/// Either server, for scenarios that take the kind as a parameter.
#[derive(Debug)]
pub enum AnyServer {
    /// A running Prosody.
    Prosody(Prosody),
    /// A running ejabberd.
    Ejabberd(Ejabberd),
}

impl AnyServer {
    /// Starts a server of `kind` with the given `(domain, secret)` components.
    pub async fn start(kind: ServerKind, components: &[(&str, &str)]) -> AnyServer {
        match kind {
            ServerKind::Prosody => AnyServer::Prosody(Prosody::start(components).await),
            ServerKind::Ejabberd => AnyServer::Ejabberd(Ejabberd::start(components).await),
        }
    }
}

impl XmppServer for AnyServer {
    fn name(&self) -> &'static str {
        match self {
            AnyServer::Prosody(s) => s.name(),
            AnyServer::Ejabberd(s) => s.name(),
        }
    }
    fn c2s_addr(&self) -> SocketAddr {
        match self {
            AnyServer::Prosody(s) => s.c2s_addr(),
            AnyServer::Ejabberd(s) => s.c2s_addr(),
        }
    }
    fn component_addr(&self) -> SocketAddr {
        match self {
            AnyServer::Prosody(s) => s.component_addr(),
            AnyServer::Ejabberd(s) => s.component_addr(),
        }
    }
    fn domain(&self) -> &str {
        "localhost"
    }
    fn muc_domain(&self) -> &str {
        "conference.localhost"
    }
    async fn register(&self, user: &str, password: &str) {
        match self {
            AnyServer::Prosody(s) => s.register(user, password).await,
            AnyServer::Ejabberd(s) => s.register(user, password).await,
        }
    }
    async fn stop(&mut self) {
        match self {
            AnyServer::Prosody(s) => s.stop().await,
            AnyServer::Ejabberd(s) => s.stop().await,
        }
    }
    async fn start_again(&mut self) {
        match self {
            AnyServer::Prosody(s) => s.start_again().await,
            AnyServer::Ejabberd(s) => s.start_again().await,
        }
    }
    fn log_tail(&self) -> String {
        match self {
            AnyServer::Prosody(s) => s.log_tail(),
            AnyServer::Ejabberd(s) => s.log_tail(),
        }
    }
}

/// Installs a tracing subscriber once per test binary: output goes through the test harness's
/// capture (shown for failing tests, or all with `--nocapture`), filtered by `RUST_LOG`
/// (default `info`). tokio-xmpp's `log` records are included.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed (e.g. by a test's own setup): keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The last `lines` lines of each file that exists, each under a header naming it.
pub fn tail_of_files(files: &[PathBuf], lines: usize) -> String {
    let mut out = String::new();
    for path in files {
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        // Read at most the last 64 KiB; a log tail needs no more.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        out.push_str(&format!(
            "--- {} (last {} lines)\n",
            path.display(),
            all.len() - start
        ));
        for line in &all[start..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(no log files written)\n");
    }
    out
}

/// The `[xmpp]` and `[database]` sections an in-process gateway of the e2e tests starts
/// with: the XMPP server's component port at `component`, pings every 2 s and reconnects
/// within 1 s, SQLite at `dir/estuary.db`, and a seal key of `key_byte` repeated. Callers
/// append the sections their test needs.
pub fn gateway_toml_head(component: SocketAddr, dir: &std::path::Path, key_byte: u8) -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([key_byte; 32]);
    format!(
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
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.join("estuary.db").display(),
    )
}
