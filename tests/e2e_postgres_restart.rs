//! End-to-end: the commit gate (`src/xmpp/commit_gate.rs`) while PostgreSQL restarts. A
//! real Prosody, the gateway in-process with the fake bridge on a PostgreSQL cluster of the
//! test's own (initdb/pg_ctl in a temp dir, on a free loopback port; never the machine's
//! server on 5432, which other tests use), and a real XMPP client that talks in a room while
//! the cluster gets a fast shutdown, stays down and starts again.
//!
//! A stanza that shows a message waits for its archive and message-map rows; a database
//! that is gone must cost the traffic one pause, not a stall, and lose nothing: every
//! message the client sends is shown (reflected, and answered by the fake network's bot) or
//! its sender is told, nothing is shown twice, the traffic resumes within a bound, and the
//! rows queued during the outage reach the archive once the database is back.

mod common;
#[path = "../bench/src/pg_cluster.rs"]
mod pg_cluster;

use base64::Engine;
use common::{Prosody, TestClient};
use estuary::app;
use estuary::config::Settings;
use estuary_bridge_api::Connector;
use estuary_bridge_fake::FakeConnector;
use pg_cluster::PgCluster;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "pg-restart-secret";
const ROOM: &str = "#lobby@fake.localhost";
/// Messages the client sends, at [`PACE`]: 6 s of traffic.
const MESSAGES: usize = 240;
/// The pace of the client's messages (40 a second).
const PACE: Duration = Duration::from_millis(25);
/// The restart begins once this many were sent.
const RESTART_AT: usize = 40;
/// How long the cluster stays down.
const DOWN: Duration = Duration::from_secs(2);
/// The longest the traffic may stand still: the gate's pause at the start of an outage is
/// about a second (`COMMIT_WAIT`); more means stanzas waited for the database.
const MAX_GAP: Duration = Duration::from_secs(4);
/// The longest a message sent once the cluster is back may take to be shown.
const MAX_LATENCY_AFTER: Duration = Duration::from_secs(3);

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

/// The gateway's settings: the fake bridge, the database at `url`.
fn settings(server: &Prosody, url: &str) -> Settings {
    let component = server.component_addr();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let toml = format!(
        "[xmpp]\nhost = \"{host}\"\nport = {port}\nserver_domain = \"localhost\"\n\
         reconnect_max_secs = 1\n\n\
         [database]\nurl = \"{url}\"\nseal_key = \"{key}\"\n\n\
         [bridges.fake]\ndomain = \"{DOMAIN}\"\nsecret = \"{SECRET}\"\n",
        host = component.ip(),
        port = component.port(),
    );
    Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid")
}

/// The number `N` of a reflection (`m N`) or a bot answer (`bot heard: m N`), and which.
fn number(text: &str) -> Option<(usize, bool)> {
    if let Some(rest) = text.strip_prefix("bot heard: m ") {
        return Some((rest.parse().ok()?, true));
    }
    Some((text.strip_prefix("m ")?.parse().ok()?, false))
}

/// What the client saw of each message.
#[derive(Default)]
struct Seen {
    /// Reflections, by number: how many times.
    reflected: BTreeMap<usize, usize>,
    /// Bot answers, by number: how many times.
    answered: BTreeMap<usize, usize>,
    /// Numbers the sender got an error for.
    told: BTreeSet<usize>,
    /// Every room stanza-id seen, to find one shown twice.
    stanza_ids: BTreeMap<String, usize>,
    /// When each live room message arrived, in order.
    arrivals: Vec<Instant>,
    /// When each number was first reflected.
    first_reflected: BTreeMap<usize, Instant>,
    last: String,
}

impl Seen {
    fn take(&mut self, m: &Element) {
        self.last = String::from(m);
        if m.name() != "message" {
            return;
        }
        if m.attr("type") == Some("error") {
            if let Some(n) = m
                .attr("id")
                .and_then(|id| id.strip_prefix("m-"))
                .and_then(|n| n.parse().ok())
            {
                self.told.insert(n);
            }
            return;
        }
        if m.attr("type") != Some("groupchat") {
            return;
        }
        let Some((n, answer)) = body(m).as_deref().and_then(number) else {
            return;
        };
        let now = Instant::now();
        self.arrivals.push(now);
        if let Some(id) = m
            .children()
            .find(|c| c.is("stanza-id", "urn:xmpp:sid:0") && c.attr("by") == Some(ROOM))
            .and_then(|c| c.attr("id"))
        {
            *self.stanza_ids.entry(id.to_string()).or_default() += 1;
        }
        if answer {
            *self.answered.entry(n).or_default() += 1;
        } else {
            *self.reflected.entry(n).or_default() += 1;
            self.first_reflected.entry(n).or_insert(now);
        }
    }

    /// Whether every message sent so far is accounted for.
    fn settled(&self, sent: usize) -> bool {
        (0..sent).all(|n| {
            self.told.contains(&n)
                || (self.reflected.contains_key(&n) && self.answered.contains_key(&n))
        })
    }

    /// The longest time between two live arrivals.
    fn longest_gap(&self) -> Duration {
        self.arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

/// Reads the whole archive of the room with MAM: the bodies, in order.
async fn archive(alice: &mut TestClient) -> Vec<String> {
    alice
        .mam_archive(ROOM)
        .await
        .into_iter()
        .filter(|(_, body)| !body.is_empty())
        .map(|(_, body)| body)
        .collect()
}

#[tokio::test]
async fn a_postgres_restart_pauses_the_room_traffic_once_and_loses_nothing() {
    common::init_tracing();
    // The cluster's directory must be reachable by the `postgres` user.
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("the temp dir is made traversable");
    let pg = PgCluster::start(&dir.path().join("pg"), common::ports::free_port())
        .await
        .unwrap_or_else(|e| panic!("the test's PostgreSQL cluster starts: {e}"));
    let pg = Arc::new(pg);
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let settings = settings(&server, &pg.url());
    let db = app::open_database(&settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("fake".into(), Arc::new(FakeConnector::new()));
    let _app = app::start_with(&settings, db, connectors)
        .await
        .expect("the gateway starts");

    let mut alice = TestClient::connect(&server, "alice", "alicepw", "pg").await;
    // The component may be a moment from routable.
    let up = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = alice
            .iq(el(&format!(
                "<iq xmlns='jabber:client' type='get' to='{DOMAIN}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )))
            .await;
        if answer.attr("type") == Some("result") {
            break;
        }
        assert!(
            Instant::now() < up,
            "the gateway did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let registered = alice.register_with_gateway(DOMAIN, "alice1", "pw").await;
    assert_eq!(registered.attr("type"), Some("result"));
    alice.join_muc(&format!("{ROOM}/al")).await;
    alice.drain();

    // The traffic, and the restart in the middle of it.
    let mut seen = Seen::default();
    let mut restart: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let mut back_at: Option<Instant> = None;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(MESSAGES);
    let mut next_send = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the traffic did not settle within 60 s: {} of {MESSAGES} reflected, {} answered, \
             {} told; last {}",
            seen.reflected.len(),
            seen.answered.len(),
            seen.told.len(),
            seen.last
        );
        let sent = sent_at.len();
        if sent < MESSAGES && Instant::now() >= next_send {
            alice
                .send(el(&format!(
                    "<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='m-{sent}'>\
                     <body>m {sent}</body></message>"
                )))
                .await;
            sent_at.push(Instant::now());
            next_send += PACE;
            if sent_at.len() == RESTART_AT {
                let pg = Arc::clone(&pg);
                restart = Some(tokio::spawn(async move { pg.restart(DOWN).await }));
            }
        }
        if back_at.is_none() && restart.as_ref().is_some_and(|r| r.is_finished()) {
            let done = restart.take().expect("checked above");
            done.await
                .expect("the restart task ran")
                .unwrap_or_else(|e| panic!("the cluster restarts: {e}"));
            back_at = Some(Instant::now());
        }
        if sent_at.len() == MESSAGES && back_at.is_some() && seen.settled(MESSAGES) {
            break;
        }
        // Never a deadline in the past: the client must keep reading (tokio-xmpp stops
        // writing what it is given while what it read is not taken).
        let until = if sent_at.len() < MESSAGES {
            next_send.max(Instant::now() + Duration::from_millis(5))
        } else {
            Instant::now() + Duration::from_millis(100)
        };
        for m in alice.receive_until(until).await {
            seen.take(&m);
        }
    }
    let back_at = back_at.expect("the cluster came back");
    // Anything shown twice would arrive right after: read a little longer.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        for m in alice.receive_until(until).await {
            seen.take(&m);
        }
    }

    // Every message shown, or its sender told (checked by `settled`); nothing twice.
    let twice: Vec<(&usize, &usize)> = seen
        .reflected
        .iter()
        .chain(seen.answered.iter())
        .filter(|(_, c)| **c > 1)
        .collect();
    assert!(twice.is_empty(), "shown more than once: {twice:?}");
    let ids_twice: Vec<&String> = seen
        .stanza_ids
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        ids_twice.is_empty(),
        "stanza-ids shown twice: {ids_twice:?}"
    );
    // One pause at most, and bounded.
    let gap = seen.longest_gap();
    tracing::info!(
        ?gap,
        reflected = seen.reflected.len(),
        answered = seen.answered.len(),
        told = seen.told.len(),
        "the traffic through the restart"
    );
    assert!(
        gap < MAX_GAP,
        "the room stood still for {gap:?} (at most {MAX_GAP:?})"
    );
    // Once the cluster is back, messages are shown at once again.
    let slow: Vec<(usize, Duration)> = sent_at
        .iter()
        .enumerate()
        .filter(|(_, at)| **at > back_at)
        .filter_map(|(n, at)| Some((n, *seen.first_reflected.get(&n)? - *at)))
        .filter(|(_, took)| *took > MAX_LATENCY_AFTER)
        .collect();
    assert!(
        slow.is_empty(),
        "messages sent after the restart took more than {MAX_LATENCY_AFTER:?}: {slow:?}"
    );
    assert!(
        sent_at.iter().any(|at| *at > back_at),
        "the test sent nothing after the cluster was back; make the traffic longer"
    );

    // The rows queued during the outage reached the archive: each message shown is there
    // once (a refused one is not).
    let archived = archive(&mut alice).await;
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for text in &archived {
        *count.entry(text.as_str()).or_default() += 1;
    }
    let mut missing = Vec::new();
    for n in seen.reflected.keys() {
        for text in [format!("m {n}"), format!("bot heard: m {n}")] {
            match count.get(text.as_str()) {
                Some(1) => {}
                Some(c) => panic!("{text:?} is {c} times in the archive"),
                None => missing.push(text),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "shown but not in the archive after the restart: {missing:?}"
    );
}
