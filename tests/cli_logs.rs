//! The `estuary` binary's logs when nobody watches a terminal: on stderr, without ANSI
//! colours (journald and log files show escape codes as garbage).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn logs_go_to_stderr_without_colours_when_it_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // A port nothing listens on: the gateway logs that it cannot reach the server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.path().join("estuary.toml");
    std::fs::write(
        &config,
        format!(
            "[xmpp]\nhost = \"127.0.0.1\"\nport = {closed}\nreconnect_max_secs = 1\n\n\
             [database]\nurl = \"sqlite://{db}\"\nseal_key_file = \"{key}\"\n\n\
             [bridges.fake]\ndomain = \"fake.localhost\"\nsecret = \"s\"\n",
            db = dir.path().join("estuary.db").display(),
            key = dir.path().join("estuary.key").display(),
        ),
    )
    .expect("the config is written");
    let mut child = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Let it log for a moment (it exits on its own or keeps retrying), then stop it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    let mut stdout = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    assert!(
        stderr.contains("INFO") || stderr.contains("WARN") || stderr.contains("ERROR"),
        "log lines on stderr: stderr {stderr:?}, stdout {stdout:?}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stdout.contains('\u{1b}'),
        "no ANSI escape codes: stderr {stderr:?}, stdout {stdout:?}"
    );
}
