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
    let config = write_config(dir.path(), closed, "reconnect_max_secs = 1\n");
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

/// SIGINT while the gateway is still starting (here: an XMPP server that accepts the
/// component connection and never answers the handshake) stops it cleanly: the process
/// exits with success and says it stopped, instead of being killed by the signal half-way
/// (the handlers were installed only after the start).
#[test]
fn a_stop_asked_during_start_up_is_honoured() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = silent.local_addr().expect("an address").port();
    // Accepts and keeps the connections open without a word (bounded: the test's life).
    let keeper = std::thread::spawn(move || {
        let mut held = Vec::new();
        silent
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok((conn, _)) = silent.accept() {
                held.push(conn);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let config = write_config(dir.path(), port, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Wait for the line that says the start began (the handlers are in place by then).
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(text) if text.contains("starting") => break,
            _ if Instant::now() > deadline => panic!("the gateway never said it was starting"),
            _ => {}
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: a plain signal to the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the gateway did not stop within 15 s of SIGINT during start-up");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = reader.join().expect("the reader");
    drop(keeper);
    assert!(
        status.success(),
        "a clean stop, not a death by signal: {status:?}\n{log}"
    );
    assert!(log.contains("stop asked during start-up"), "{log}");
}

/// Writes a config for the fake bridge in `dir`: the component at 127.0.0.1:`port`, SQLite
/// and the seal key in `dir`, `xmpp` appended to the `[xmpp]` table.
fn write_config(dir: &std::path::Path, port: u16, xmpp: &str) -> std::path::PathBuf {
    let config = dir.join("estuary.toml");
    std::fs::write(
        &config,
        format!(
            "[xmpp]\nhost = \"127.0.0.1\"\nport = {port}\n{xmpp}\n\
             [database]\nurl = \"sqlite://{db}\"\nseal_key_file = \"{key}\"\n\n\
             [bridges.fake]\ndomain = \"fake.localhost\"\nsecret = \"s\"\n",
            db = dir.join("estuary.db").display(),
            key = dir.join("estuary.key").display(),
        ),
    )
    .expect("the config is written");
    config
}
