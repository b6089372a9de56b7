//! Interoperability: README.md's user steps walked by slixmpp (the Python XMPP library Poezio
//! is built on), a client stack independent of the Rust one the other end-to-end tests use,
//! against a real Prosody, a real InspIRCd and the gateway (fake and irc bridges) in-process.
//! The steps are in `tests/interop/readme_walk.py`; when README's steps change, change it.
//!
//! Needs `python3` with slixmpp (`python3 -m pip install slixmpp`; `.ci/run` installs it).

// The shared harness re-exports a client this test does not use (slixmpp is the client).
#[allow(unused_imports)]
mod common;
#[path = "../bridges/irc/tests/common/mod.rs"]
mod ircd;

use base64::Engine;
use common::Prosody;
use estuary::app;
use estuary::config::Settings;
use ircd::Ircd;
use std::process::Stdio;
use std::time::Duration;

/// The most the whole walk may take.
const WALK_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn readme_steps_with_slixmpp() {
    common::init_tracing();
    let ircd = Ircd::start();
    let server = Prosody::start(&[
        ("fake.localhost", "fake-secret"),
        ("irc.localhost", "irc-secret"),
    ])
    .await;
    server.register("walker", "walkerpw").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let component = server.component_addr();
    let toml = format!(
        r#"
[xmpp]
host = "{host}"
port = {port}
server_domain = "localhost"

[database]
url = "sqlite://{db}"
seal_key = "{key}"

[outbound]
allow = ["127.0.0.1"]

[bridges.fake]
domain = "fake.localhost"
secret = "fake-secret"

[bridges.irc]
domain = "irc.localhost"
secret = "irc-secret"

[bridges.irc.servers."127.0.0.1"]
port = {irc_port}
tls = false
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.path().join("estuary.db").display(),
        irc_port = ircd.port,
    );
    let settings =
        Settings::from_toml(&toml, "interop", false).expect("the test configuration is valid");
    let app = app::start(&settings).await.expect("the gateway starts");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/readme_walk.py");
    let c2s = server.c2s_addr();
    let walk = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--jid", "walker@localhost", "--password", "walkerpw"])
        .args(["--host", &c2s.ip().to_string()])
        .args(["--port", &c2s.port().to_string()])
        .args(["--irc-server", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WALK_LIMIT, walk)
        .await
        .expect("the walk ends within its limit")
        .expect("python3 runs (install it, with slixmpp: python3 -m pip install slixmpp)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "slixmpp is missing: python3 -m pip install slixmpp\n{stderr}"
    );
    assert!(
        out.status.success() && stdout.contains("all README steps passed"),
        "the README walk failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    app.shutdown().await;
}
