//! End-to-end: the gateway killed with SIGKILL in the middle of a conversation. A real
//! Prosody, the `estuary` binary as a process of its own (so that it can be killed the hard
//! way) with the fake bridge and a SQLite database, and a real XMPP client.
//!
//! Issue 12's goal under SIGKILL: losses only of what was never acknowledged to anyone. A
//! room message the client received live must therefore be in the room's archive (MAM)
//! after the kill, whatever the write-behind still had queued (defect 3 of
//! docs/reliability.md).
//!
//! The second test does the same for the other direction with the IRC bridge against a
//! real InspIRCd: a room message the IRC side received must be in the archive after the
//! kill, though the gateway died before the server's echo of it came back.

mod common;
#[path = "../bridges/irc/tests/common/mod.rs"]
mod ircd;

use common::process::ServerProcess;
use common::{Prosody, TestClient};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "crash-secret";
const ROOM: &str = "#lobby@fake.localhost";
/// Messages the client sends to the room; each comes back twice (reflected, and the fake
/// network's bot answering it), each copy with an archive row and message-map rows.
const MESSAGES: usize = 140;
/// The first messages go at a steady pace (40 a second), the rest in one burst: the
/// write-behind falls behind during a burst, and the kill comes in the middle of it.
const PACED: usize = 80;
/// The pace of the first messages.
const PACE: Duration = Duration::from_millis(25);
/// The kill comes once the client has received this many bot answers (in the burst).
const KILL_AFTER: usize = 95;

/// The IRC bridge's domain.
const IRC_DOMAIN: &str = "irc.localhost";
/// The channel of the IRC test, as a room.
const IRC_ROOM: &str = "#crash%127.0.0.1@irc.localhost";
/// Messages the XMPP client sends to the channel in one burst.
const IRC_MESSAGES: usize = 400;
/// The kill comes once the IRC side has received this many of them.
const IRC_KILL_AFTER: usize = 120;

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

/// The config of the binary: the fake bridge, SQLite and the seal key in `dir`.
fn write_config(dir: &Path, server: &Prosody) -> std::path::PathBuf {
    write_config_with(
        dir,
        server,
        &format!("[bridges.fake]\ndomain = \"{DOMAIN}\"\nsecret = \"{SECRET}\"\n"),
    )
}

/// The config of the binary for the IRC bridge on `ircd`: SQLite and the seal key in `dir`,
/// loose flood control (so that many lines are in flight at once).
fn write_irc_config(dir: &Path, server: &Prosody, ircd: &ircd::Ircd) -> std::path::PathBuf {
    write_config_with(
        dir,
        server,
        &format!(
            "[outbound]\nallow = [\"127.0.0.1\"]\n\n\
             [bridges.irc]\ndomain = \"{IRC_DOMAIN}\"\nsecret = \"{SECRET}\"\n\n\
             [bridges.irc.servers.\"127.0.0.1\"]\nport = {irc_port}\ntls = false\n\
             throttle = {{ lines_per_second = 1000.0, burst = 1000 }}\n",
            irc_port = ircd.port,
        ),
    )
}

/// Writes `dir/estuary.toml`: the component link to `server`, SQLite and the seal key in
/// `dir`, then `rest` (the bridges and anything else).
fn write_config_with(dir: &Path, server: &Prosody, rest: &str) -> std::path::PathBuf {
    let config = dir.join("estuary.toml");
    let component = server.component_addr();
    std::fs::write(
        &config,
        format!(
            "[xmpp]\nhost = \"{host}\"\nport = {port}\nserver_domain = \"localhost\"\n\
             reconnect_max_secs = 1\n\n\
             [database]\nurl = \"sqlite://{db}\"\nseal_key_file = \"{key}\"\n\n{rest}",
            host = component.ip(),
            port = component.port(),
            db = dir.join("estuary.db").display(),
            key = dir.join("estuary.key").display(),
        ),
    )
    .expect("the config is written");
    config
}

/// Starts the binary on `config`, its log appended to `dir/estuary.log` (at `info`, or
/// what `ESTUARY_LOG` says).
fn spawn_gateway(dir: &Path, config: &Path) -> ServerProcess {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_estuary"));
    command
        .arg("--config")
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("ESTUARY_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1");
    ServerProcess::spawn("estuary", command, &dir.join("estuary.log"))
}

/// Waits until the gateway answers a disco#info on its domain (its component is up).
async fn wait_for_gateway(client: &mut TestClient, dir: &Path) {
    wait_for_domain(client, dir, DOMAIN).await
}

/// [`wait_for_gateway`] for the gateway's component on `domain`.
async fn wait_for_domain(client: &mut TestClient, dir: &Path, domain: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .iq(el(&format!(
                "<iq xmlns='jabber:client' type='get' to='{domain}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )))
            .await;
        if answer.attr("type") == Some("result") {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the gateway did not come up within 20 s:\n{}",
                common::tail_of_files(&[dir.join("estuary.log")], 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

/// The stanza-id (XEP-0359) the room gave a live message.
fn stanza_id(m: &Element) -> Option<String> {
    m.children()
        .find(|c| c.is("stanza-id", "urn:xmpp:sid:0") && c.attr("by") == Some(ROOM))
        .and_then(|c| c.attr("id"))
        .map(str::to_string)
}

/// A live room message: its stanza-id and body.
fn room_message(m: &Element) -> Option<(String, String)> {
    if m.name() != "message" || m.attr("type") != Some("groupchat") {
        return None;
    }
    Some((stanza_id(m)?, body(m)?))
}

/// Reads the whole archive of the room with MAM: stanza-id → body.
async fn archive(alice: &mut TestClient) -> BTreeMap<String, String> {
    archive_of(alice, ROOM).await
}

/// [`archive`] of `room`.
async fn archive_of(alice: &mut TestClient, room: &str) -> BTreeMap<String, String> {
    alice.mam_archive(room).await.into_iter().collect()
}

/// Every room message the client received live before and around a SIGKILL of the
/// gateway is in the room's archive afterwards: a delivered message's archive row was
/// committed before it was delivered.
#[tokio::test]
async fn a_sigkill_loses_no_archive_row_of_a_delivered_message() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = write_config(dir.path(), &server);
    let mut gateway = spawn_gateway(dir.path(), &config);
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "crash").await;
    wait_for_gateway(&mut alice, dir.path()).await;
    let registered = alice.register_with_gateway(DOMAIN, "alice1", "pw").await;
    assert_eq!(registered.attr("type"), Some("result"));
    alice.join_muc(&format!("{ROOM}/al")).await;
    alice.drain();

    // The traffic: messages to the room at a steady pace, then a burst, and the kill in
    // the middle of what comes back of the burst, as soon as the client has seen it.
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    let mut answers = 0;
    let mut sent = 0;
    let mut next_send = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answers < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {answers} answers within 60 s"
        );
        if sent < MESSAGES && (sent >= PACED || Instant::now() >= next_send) {
            alice
                .send(el(&format!(
                    "<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='m-{sent}'>\
                     <body>m {sent}</body></message>"
                )))
                .await;
            sent += 1;
            next_send += PACE;
        }
        let until = if sent < PACED {
            next_send
        } else if sent < MESSAGES {
            // In the burst, only what has arrived already.
            Instant::now()
        } else {
            Instant::now() + Duration::from_millis(100)
        };
        for m in alice.receive_until(until).await {
            if let Some((id, text)) = room_message(&m) {
                answers += usize::from(text.starts_with("bot heard: "));
                live.insert(id, text);
            }
        }
    }
    gateway.kill_now();
    // What the server had already taken from the gateway still arrives: read for a second.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        for m in alice.receive_until(until).await {
            if let Some((id, text)) = room_message(&m) {
                live.insert(id, text);
            }
        }
    }

    // A new process on the same database; the archive is read with MAM.
    let _gateway = spawn_gateway(dir.path(), &config);
    wait_for_gateway(&mut alice, dir.path()).await;
    let archived = archive(&mut alice).await;
    let missing: Vec<&String> = live
        .iter()
        .filter(|(id, _)| !archived.contains_key(*id))
        .map(|(_, text)| text)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of the {} room messages received live are not in the archive after the SIGKILL \
         ({} archived): {missing:?}\n{}",
        missing.len(),
        live.len(),
        archived.len(),
        common::tail_of_files(&[dir.path().join("estuary.log")], 60)
    );
    assert!(live.len() >= 2 * KILL_AFTER - 1, "{}", live.len());
}

/// The numbers of the test's messages (`x N`) in the PRIVMSGs among `lines`.
fn said(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .filter(|l| l.contains(" PRIVMSG #crash :x "))
        .filter_map(|l| ircd::trailing(l).strip_prefix("x ")?.parse().ok())
        .collect()
}

/// XMPP → IRC: every room message the IRC side received before and around a SIGKILL of the
/// gateway is in the room's archive afterwards, though the gateway may have died before
/// the IRC server's echo of it came back (it is archived when it is accepted, with its row
/// of sends in progress); the next start sends what was accepted and not sent yet, archives
/// nothing twice, and the archive holds nothing the IRC side never got.
#[tokio::test]
async fn a_sigkill_loses_no_archive_row_of_a_message_sent_to_irc() {
    common::init_tracing();
    let server = Prosody::start(&[(IRC_DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let ircd = ircd::Ircd::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = write_irc_config(dir.path(), &server, &ircd);
    let mut gateway = spawn_gateway(dir.path(), &config);
    let mut bob = ircd::Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #crash").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "crash").await;
    wait_for_domain(&mut alice, dir.path(), IRC_DOMAIN).await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{IRC_ROOM}/al'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    alice
        .expect("the self-presence", |s| {
            s.attr("from") == Some(&format!("{IRC_ROOM}/al"))
                && String::from(s).contains("code='110'")
        })
        .await;
    bob.expect(|l| l.starts_with(":al!") && l.contains("JOIN"))
        .await;
    alice.drain();

    // The burst, and the kill as soon as the IRC side has seen part of it.
    for n in 0..IRC_MESSAGES {
        alice
            .send(el(&format!(
                "<message xmlns='jabber:client' type='groupchat' to='{IRC_ROOM}' id='x-{n}'>\
                 <body>x {n}</body></message>"
            )))
            .await;
    }
    let mut before_kill: Vec<usize> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while before_kill.len() < IRC_KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the IRC side got only {} messages within 60 s",
            before_kill.len()
        );
        before_kill.extend(said(&bob.collect_for(Duration::from_millis(5)).await));
    }
    gateway.kill_now();
    // What the IRC server had already taken from the gateway still arrives.
    before_kill.extend(said(&bob.collect_for(Duration::from_secs(1)).await));

    // A new process on the same database: it joins the channel again and sends what the
    // last one accepted and did not send. The archive is read with MAM.
    let _gateway = spawn_gateway(dir.path(), &config);
    wait_for_domain(&mut alice, dir.path(), IRC_DOMAIN).await;
    let after_restart = said(&bob.collect_for(Duration::from_secs(5)).await);
    let archived = archive_of(&mut alice, IRC_ROOM).await;
    let mut in_archive: BTreeMap<usize, usize> = BTreeMap::new();
    for text in archived.values() {
        if let Some(n) = text.strip_prefix("x ").and_then(|n| n.parse().ok()) {
            *in_archive.entry(n).or_default() += 1;
        }
    }
    let log = || common::tail_of_files(&[dir.path().join("estuary.log")], 60);
    let missing: Vec<&usize> = before_kill
        .iter()
        .filter(|n| !in_archive.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of the {} messages the IRC side got before the restart are not in the archive \
         ({} archived): {missing:?}\n{}",
        missing.len(),
        before_kill.len(),
        in_archive.len(),
        log()
    );
    let twice: Vec<(&usize, &usize)> = in_archive.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "archived more than once: {twice:?}");
    let never_said: Vec<&usize> = in_archive
        .keys()
        .filter(|n| !before_kill.contains(n) && !after_restart.contains(n))
        .collect();
    assert!(
        never_said.is_empty(),
        "in the archive but never received on IRC: {never_said:?}\n{}",
        log()
    );
}
