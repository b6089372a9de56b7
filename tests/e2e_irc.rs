//! End-to-end for the IRC bridge: a real Prosody, a real InspIRCd, the gateway in-process,
//! a real XMPP client on one side and a raw IRC client on the other.

mod common;
#[path = "../bridges/irc/tests/common/mod.rs"]
mod ircd;

use base64::Engine;
use common::tap::ComponentTap;
use common::{Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use ircd::{Ircd, Raw};
use std::time::Duration;
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "irc.localhost";
const SECRET: &str = "irc-secret";
const ROOM: &str = "#test%127.0.0.1@irc.localhost";
/// The IRC server's own JID (`irc.server@irc.gw`).
const SERVER_JID: &str = "127.0.0.1@irc.localhost";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

async fn start(server: &impl XmppServer, ircd: &Ircd, dir: &std::path::Path) -> App {
    start_with(server, dir, &servers_table(ircd)).await
}

/// The usual per-server table for the test IRC server (plain, fast flood control).
fn servers_table(ircd: &Ircd) -> String {
    format!(
        r#"
[bridges.irc.servers."127.0.0.1"]
port = {irc_port}
tls = false
throttle = {{ lines_per_second = 50.0, burst = 50 }}
"#,
        irc_port = ircd.port
    )
}

/// The `[outbound]` table of the tests: the IRC servers listen on 127.0.0.1, which the
/// gateway refuses unless allowed.
const ALLOW_LOOPBACK: &str = "[outbound]\nallow = [\"127.0.0.1\"]\n";

/// Starts the gateway with `irc` appended to its `[bridges.irc]` table (more keys, or
/// per-server tables), connections to 127.0.0.1 allowed.
///
/// Unless `irc` sets `offline`, the channels are parted as soon as the test's client leaves
/// the room (`offline = "leave"`): the test client answers the gateway's "are you still
/// online?" ping only while the test reads from it, so under the default (`grace`) a leave
/// could be taken for going offline.
async fn start_with(server: &impl XmppServer, dir: &std::path::Path, irc: &str) -> App {
    start_toml(server, dir, ALLOW_LOOPBACK, irc).await
}

/// Starts the gateway with `outbound` (the `[outbound]` table, or nothing) and `irc`
/// appended to its `[bridges.irc]` table.
async fn start_toml(
    server: &impl XmppServer,
    dir: &std::path::Path,
    outbound: &str,
    irc: &str,
) -> App {
    start_at(server.component_addr(), dir, outbound, irc).await
}

/// [`start_toml`] with the gateway's component link to `component` (a [`ComponentTap`] in
/// front of the server, say).
async fn start_at(
    component: std::net::SocketAddr,
    dir: &std::path::Path,
    outbound: &str,
    irc: &str,
) -> App {
    let offline = if irc.contains("offline") {
        ""
    } else {
        "offline = \"leave\""
    };
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    let toml = format!(
        r#"
[xmpp]
host = "{host}"
port = {port}
server_domain = "localhost"

[database]
url = "sqlite://{db}"
seal_key = "{key}"

{outbound}
[bridges.irc]
domain = "{DOMAIN}"
secret = "{SECRET}"
{offline}
{irc}
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.join("estuary.db").display(),
    );
    let settings =
        Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid");
    app::start(&settings).await.expect("the gateway starts")
}

/// One scenario's world: its own Prosody, IRC server, database and gateway.
struct World {
    server: Prosody,
    ircd: Ircd,
    dir: tempfile::TempDir,
    app: App,
}

impl World {
    /// Starts everything, with `alice` registered on Prosody.
    async fn start(ircd: Ircd) -> World {
        World::start_extra(ircd, "").await
    }

    /// Starts everything with `extra` keys in the gateway's `[bridges.irc]` table, before
    /// the usual per-server table.
    async fn start_extra(ircd: Ircd, extra: &str) -> World {
        let irc = format!("{extra}\n{}", servers_table(&ircd));
        World::start_with(ircd, &irc).await
    }

    /// Starts everything with the gateway's `[bridges.irc]` table extended by `irc`
    /// instead of the usual per-server table.
    async fn start_with(ircd: Ircd, irc: &str) -> World {
        common::init_tracing();
        let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
        server.register("alice", "alicepw").await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let app = start_with(&server, dir.path(), irc).await;
        World {
            server,
            ircd,
            dir,
            app,
        }
    }

    async fn alice(&self, resource: &str) -> TestClient {
        TestClient::connect(&self.server, "alice", "alicepw", resource).await
    }
}

/// The room JID of `#chan` on the test IRC server.
fn room(chan: &str) -> String {
    format!("#{chan}%127.0.0.1@{DOMAIN}")
}

/// Joins `room` as `nick` and waits for the self-presence (110) and the subject; returns
/// the self-presence.
async fn join(client: &mut TestClient, room: &str, nick: &str) -> Element {
    client
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
        )))
        .await;
    let me = client
        .expect(&format!("the self-presence in {room}"), |s| {
            s.name() == "presence"
                && s.attr("from").is_some_and(|f| f.starts_with(room))
                && s.attr("type").is_none()
                && codes(s).contains(&110)
        })
        .await;
    client
        .expect(&format!("the subject of {room}"), |s| {
            s.attr("from").is_some_and(|f| f.starts_with(room)) && subject(s).is_some()
        })
        .await;
    me
}

/// Whether `s` is a presence from exactly `from`.
fn presence_from(s: &Element, from: &str) -> bool {
    s.name() == "presence" && s.attr("from") == Some(from)
}

/// The MUC status codes of a presence.
fn codes(s: &Element) -> Vec<u16> {
    s.get_child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `<item/>` of a MUC presence as (role, affiliation).
fn item(s: &Element) -> Option<(String, String)> {
    let item = s.get_child("x", MUC_USER)?.get_child("item", MUC_USER)?;
    Some((
        item.attr("role")?.to_string(),
        item.attr("affiliation")?.to_string(),
    ))
}

/// An attribute of the presence's `<item/>`.
fn item_attr(s: &Element, name: &str) -> Option<String> {
    let item = s.get_child("x", MUC_USER)?.get_child("item", MUC_USER)?;
    item.attr(name).map(str::to_string)
}

/// The `<reason/>` of a MUC presence's item.
fn item_reason(s: &Element) -> Option<String> {
    let item = s.get_child("x", MUC_USER)?.get_child("item", MUC_USER)?;
    item.get_child("reason", MUC_USER).map(|r| r.text())
}

fn status(s: &Element) -> Option<String> {
    s.get_child("status", "jabber:client").map(|b| b.text())
}

fn subject(s: &Element) -> Option<String> {
    s.get_child("subject", "jabber:client").map(|b| b.text())
}

/// The error condition and text of an error stanza.
fn error_of(s: &Element) -> Option<(String, String)> {
    let e = s.get_child("error", "jabber:client")?;
    let ns = "urn:ietf:params:xml:ns:xmpp-stanzas";
    let condition = e
        .children()
        .find(|c| c.ns() == ns && c.name() != "text")?
        .name()
        .to_string();
    let text = e
        .get_child("text", ns)
        .map(|t| t.text())
        .unwrap_or_default();
    Some((condition, text))
}

/// Sends a presence to `occupant` (a join with `<x/>` and an optional password, or a nick
/// change without) and returns the refusal's condition and text.
async fn refused(
    client: &mut TestClient,
    occupant: &str,
    x: Option<&str>,
    what: &str,
) -> (String, String) {
    let x = x
        .map(|inner| format!("<x xmlns='http://jabber.org/protocol/muc'>{inner}</x>"))
        .unwrap_or_default();
    client
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{occupant}'>{x}</presence>"
        )))
        .await;
    let e = client
        .expect(what, |s| {
            presence_from(s, occupant) && s.attr("type") == Some("error")
        })
        .await;
    error_of(&e).unwrap_or_else(|| panic!("{what}: no error in {}", String::from(&e)))
}

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

#[tokio::test]
async fn an_irc_channel_is_a_muc_room() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let ircd = Ircd::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = start(&server, &ircd, dir.path()).await;
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #test").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "e2e").await;

    alice.send(el(&format!("<presence xmlns='jabber:client' to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"))).await;
    alice
        .expect("bob is in the room", |s| {
            s.name() == "presence" && s.attr("from") == Some(&format!("{ROOM}/bob"))
        })
        .await;
    alice
        .expect("self-presence", |s| {
            s.name() == "presence" && String::from(s).contains("code='110'")
        })
        .await;
    alice
        .expect("the subject (empty)", |s| {
            s.get_child("subject", "jabber:client").is_some()
        })
        .await;
    bob.expect(|l| l.contains("JOIN") && l.contains("#test") && l.starts_with(":alice"))
        .await;

    // XMPP → IRC, with a multi-line body and an injection attempt.
    alice.send(el(&format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='g1'><body>hello irc</body></message>"))).await;
    bob.expect(|l| l.contains("PRIVMSG #test :hello irc")).await;
    alice
        .expect("reflection", |s| {
            body(s).as_deref() == Some("hello irc")
                && s.attr("from") == Some(&format!("{ROOM}/alice"))
        })
        .await;
    alice.send(el(&format!("<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='g2'><body>one&#13;&#10;QUIT :pwned\ntwo</body></message>"))).await;
    bob.expect(|l| l.contains("PRIVMSG #test :one")).await;
    bob.expect(|l| l.contains("PRIVMSG #test :QUIT :pwned"))
        .await;
    bob.expect(|l| l.contains("PRIVMSG #test :two")).await;
    let lines = bob.collect_for(std::time::Duration::from_millis(500)).await;
    assert!(
        !lines.iter().any(|l| l.contains(" QUIT ")),
        "no command was injected: {lines:?}"
    );

    // IRC → XMPP, in the room and in private.
    bob.send("PRIVMSG #test :hi xmpp").await;
    alice
        .expect("bob's message", |s| {
            body(s).as_deref() == Some("hi xmpp") && s.attr("from") == Some(&format!("{ROOM}/bob"))
        })
        .await;
    bob.send("PRIVMSG alice :psst").await;
    alice
        .expect("bob's private message", |s| {
            body(s).as_deref() == Some("psst")
                && s.attr("from")
                    .is_some_and(|f| f.starts_with("bob%127.0.0.1@irc.localhost"))
        })
        .await;

    // Leaving parts the channel.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{ROOM}/alice' type='unavailable'/>"
        )))
        .await;
    alice
        .expect("left", |s| {
            s.attr("type") == Some("unavailable") && String::from(s).contains("code='110'")
        })
        .await;
    bob.expect(|l| l.contains(" PART ") && l.contains("#test") && l.starts_with(":alice"))
        .await;
    app.shutdown().await;
}

/// Roles from channel modes, mode changes, topic both ways, nick changes both ways, kicks
/// both ways, part and quit with their reasons.
#[tokio::test]
async fn room_life_roles_topic_nicks_kicks() {
    let w = World::start(Ircd::start()).await;
    let room = room("life");
    let occupant = |nick: &str| format!("{room}/{nick}");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #life").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #life").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("life").await;

    // Occupants with roles from modes: the channel's creator is op.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    let b = alice
        .expect("bob's presence", |s| presence_from(s, &occupant("bob")))
        .await;
    assert_eq!(item(&b), Some(("moderator".into(), "admin".into())));
    let c = alice
        .expect("carol's presence", |s| presence_from(s, &occupant("carol")))
        .await;
    assert_eq!(item(&c), Some(("participant".into(), "none".into())));
    let me = alice
        .expect("self-presence", |s| {
            presence_from(s, &occupant("alice")) && codes(s).contains(&110)
        })
        .await;
    assert_eq!(item(&me), Some(("participant".into(), "none".into())));
    alice.expect("the subject", |s| subject(s).is_some()).await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    // A moderated channel (+m): who has no voice is a visitor.
    bob.send("MODE #life +m").await;
    let c = alice
        .expect("carol a visitor", |s| presence_from(s, &occupant("carol")))
        .await;
    assert_eq!(item(&c), Some(("visitor".into(), "none".into())));
    let me = alice
        .expect("alice a visitor", |s| {
            presence_from(s, &occupant("alice")) && codes(s).contains(&110)
        })
        .await;
    assert_eq!(item(&me).map(|i| i.0), Some("visitor".into()));
    bob.send("MODE #life -m").await;
    let c = alice
        .expect("carol a participant again", |s| {
            presence_from(s, &occupant("carol"))
        })
        .await;
    assert_eq!(item(&c), Some(("participant".into(), "none".into())));
    alice
        .expect("alice a participant again", |s| {
            presence_from(s, &occupant("alice")) && item(s).is_some_and(|i| i.0 == "participant")
        })
        .await;

    // MODE changes become presence updates.
    bob.send("MODE #life +v carol").await;
    let c = alice
        .expect("carol voiced", |s| presence_from(s, &occupant("carol")))
        .await;
    assert_eq!(item(&c), Some(("participant".into(), "member".into())));
    bob.send("MODE #life +o carol").await;
    let c = alice
        .expect("carol opped", |s| presence_from(s, &occupant("carol")))
        .await;
    assert_eq!(item(&c), Some(("moderator".into(), "admin".into())));
    bob.send("MODE #life -o carol").await;
    let c = alice
        .expect("carol deopped", |s| presence_from(s, &occupant("carol")))
        .await;
    assert_eq!(item(&c), Some(("participant".into(), "member".into())));
    bob.send("MODE #life +o alice").await;
    let me = alice
        .expect("alice opped", |s| {
            presence_from(s, &occupant("alice")) && codes(s).contains(&110)
        })
        .await;
    assert_eq!(item(&me), Some(("moderator".into(), "admin".into())));

    // Topic from IRC, then from XMPP.
    bob.send("TOPIC #life :the \x02new\x02 topic").await;
    let t = alice
        .expect("the topic from IRC", |s| {
            subject(s).is_some() && s.attr("from") == Some(&occupant("bob"))
        })
        .await;
    assert_eq!(subject(&t).as_deref(), Some("the *new* topic"));
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><subject>set from xmpp</subject></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("TOPIC #life :set from xmpp"))
        .await;
    alice
        .expect("the topic set from XMPP, reflected", |s| {
            subject(s).as_deref() == Some("set from xmpp")
        })
        .await;

    // Nick change from IRC.
    bob.send("NICK bobby").await;
    let gone = alice
        .expect("bob's 303", |s| {
            presence_from(s, &occupant("bob")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&gone).contains(&303), "{}", String::from(&gone));
    assert_eq!(item_attr(&gone, "nick").as_deref(), Some("bobby"));
    alice
        .expect("bobby", |s| {
            presence_from(s, &occupant("bobby")) && s.attr("type").is_none()
        })
        .await;

    // Nick change from XMPP: a presence to the new nick, without the MUC <x/>.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alicia'/>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice!") && l.contains("NICK") && l.ends_with("alicia"))
        .await;
    let gone = alice
        .expect("alice's own 303", |s| {
            presence_from(s, &occupant("alice")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&gone).contains(&303) && codes(&gone).contains(&110));
    assert_eq!(item_attr(&gone, "nick").as_deref(), Some("alicia"));
    alice
        .expect("alicia's self-presence", |s| {
            presence_from(s, &occupant("alicia")) && codes(s).contains(&110)
        })
        .await;

    // Kick from IRC.
    bob.send("KICK #life carol :behave").await;
    let k = alice
        .expect("carol kicked", |s| {
            presence_from(s, &occupant("carol")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&k).contains(&307), "{}", String::from(&k));
    assert!(
        item_reason(&k).is_some_and(|r| r.contains("behave")),
        "{}",
        String::from(&k)
    );

    // Kick from XMPP (muc#admin, role='none').
    carol.send("JOIN #life").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    alice
        .expect("carol is back", |s| {
            presence_from(s, &occupant("carol")) && s.attr("type").is_none()
        })
        .await;
    let answer = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='carol' role='none'><reason>out</reason></item></query></iq>"
        )))
        .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        String::from(&answer)
    );
    carol
        .expect(|l| l.starts_with(":alicia") && l.contains("KICK #life carol :out"))
        .await;
    let k = alice
        .expect("carol kicked by alice", |s| {
            presence_from(s, &occupant("carol")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&k).contains(&307));

    // Part and quit with reasons.
    carol.send("JOIN #life").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    carol.send("PART #life :bye now").await;
    let p = alice
        .expect("carol parts", |s| {
            presence_from(s, &occupant("carol")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert_eq!(status(&p).as_deref(), Some("bye now"));
    carol.send("JOIN #life").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    carol.send("QUIT :gone fishing").await;
    let q = alice
        .expect("carol quits", |s| {
            presence_from(s, &occupant("carol")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(
        status(&q).is_some_and(|s| s.contains("gone fishing")),
        "{}",
        String::from(&q)
    );

    // Alice herself kicked from IRC: 307 with 110, and she is out of the room.
    bob.send("KICK #life alicia :enough").await;
    let k = alice
        .expect("alice kicked", |s| {
            presence_from(s, &occupant("alicia")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(
        codes(&k).contains(&307) && codes(&k).contains(&110),
        "{}",
        String::from(&k)
    );
    assert!(item_reason(&k).is_some_and(|r| r.contains("enough")));
    w.app.shutdown().await;
}

/// Two resources of one user in one channel share the one IRC connection: both see the
/// traffic, the first leaving does not part the channel, the last one does.
#[tokio::test]
async fn two_resources_share_a_channel() {
    let w = World::start(Ircd::start()).await;
    let room = room("duo");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #duo").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut phone = w.alice("phone").await;
    let mut laptop = w.alice("laptop").await;
    join(&mut phone, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    let me = join(&mut laptop, &room, "alice").await;
    assert_eq!(me.attr("from"), Some(format!("{room}/alice").as_str()));
    let laptop_sees_bob = laptop
        .expect("bob, for the second resource", |s| {
            presence_from(s, &format!("{room}/bob"))
        })
        .await;
    assert_eq!(
        item(&laptop_sees_bob).map(|i| i.0),
        Some("moderator".into())
    );
    let joins = bob.collect_for(Duration::from_millis(500)).await;
    assert!(
        !joins.iter().any(|l| l.contains("JOIN")),
        "one IRC connection, one JOIN: {joins:?}"
    );

    // Both see bob; what one resource says, the other sees too.
    bob.send("PRIVMSG #duo :hello both").await;
    let live = phone
        .expect_message_body(&format!("{room}/bob"), "hello both")
        .await;
    assert!(
        live.get_child("delay", "urn:xmpp:delay").is_none(),
        "a live line is not delayed: {}",
        String::from(&live)
    );
    laptop
        .expect_message_body(&format!("{room}/bob"), "hello both")
        .await;
    phone
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}' id='p1'><body>from the phone</body></message>"
        )))
        .await;
    bob.expect(|l| l.contains("PRIVMSG #duo :from the phone"))
        .await;
    laptop
        .expect_message_body(&format!("{room}/alice"), "from the phone")
        .await;
    phone
        .expect_message_body(&format!("{room}/alice"), "from the phone")
        .await;

    // The phone leaves: the channel stays joined for the laptop.
    phone
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    phone
        .expect("the phone's own leave", |s| {
            s.attr("type") == Some("unavailable") && codes(s).contains(&110)
        })
        .await;
    let lines = bob.collect_for(Duration::from_millis(1000)).await;
    assert!(
        !lines.iter().any(|l| l.contains("PART")),
        "one resource leaving must not part: {lines:?}"
    );
    bob.send("PRIVMSG #duo :still there?").await;
    laptop
        .expect_message_body(&format!("{room}/bob"), "still there?")
        .await;
    phone
        .expect_none(
            "room traffic after leaving",
            Duration::from_millis(500),
            |s| s.name() == "message" && s.attr("from").is_some_and(|f| f.starts_with(&room)),
        )
        .await;

    // The last resource leaves: PART.
    laptop
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    laptop
        .expect("the laptop's own leave", |s| {
            s.attr("type") == Some("unavailable") && codes(s).contains(&110)
        })
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains(" PART ") && l.contains("#duo"))
        .await;
    w.app.shutdown().await;
}

/// IRC formatting to XEP-0393, /me both ways, NOTICEs, and a long message split into
/// several PRIVMSGs that join back exactly.
#[tokio::test]
async fn formatting_actions_notices_and_long_messages() {
    let w = World::start(Ircd::start()).await;
    let room = room("fmt");
    let bob_jid = format!("{room}/bob");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #fmt").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("fmt").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    bob.send("PRIVMSG #fmt :\x02bold\x02 and \x1ditalic\x1d and \x0304red\x03")
        .await;
    alice
        .expect_message_body(&bob_jid, "*bold* and _italic_ and red")
        .await;
    bob.send("PRIVMSG #fmt :\x01ACTION waves\x01").await;
    alice.expect_message_body(&bob_jid, "/me waves").await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>/me dances</body></message>"
        )))
        .await;
    bob.expect(|l| l.contains("PRIVMSG #fmt :\x01ACTION dances\x01"))
        .await;
    alice
        .expect_message_body(&format!("{room}/alice"), "/me dances")
        .await;

    // NOTICEs: in the room (marked, as Biboumi marks them), and in private; a private one
    // that starts with "[#fmt]" (as ChanServ greets) is shown in that room.
    bob.send("NOTICE #fmt :a channel notice").await;
    alice
        .expect_message_body(&bob_jid, "[notice] a channel notice")
        .await;
    bob.send("NOTICE alice :a private notice").await;
    alice
        .expect_message_body("bob%127.0.0.1@irc.localhost", "a private notice")
        .await;
    bob.send("NOTICE alice :[#fmt] welcome to the channel")
        .await;
    alice
        .expect_message_body(&bob_jid, "[notice] [#fmt] welcome to the channel")
        .await;
    bob.send("NOTICE alice :[#elsewhere] not a room of ours")
        .await;
    alice
        .expect_message_body(
            "bob%127.0.0.1@irc.localhost",
            "[#elsewhere] not a room of ours",
        )
        .await;

    // 1,000 bytes in one XMPP message: several PRIVMSGs that join back exactly.
    let words: Vec<String> = (0..250).map(|i| format!("w{i:03}")).collect();
    let mut long = words.join(" ");
    long.truncate(1000);
    assert_eq!(long.len(), 1000);
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>{long}</body></message>"
        )))
        .await;
    let mut pieces: Vec<String> = Vec::new();
    while pieces.concat().len() < long.len() {
        let line = bob
            .expect(|l| l.starts_with(":alice") && l.contains("PRIVMSG #fmt :"))
            .await;
        let text = line.split_once("PRIVMSG #fmt :").map(|x| x.1).unwrap_or("");
        pieces.push(text.to_string());
    }
    assert!(pieces.len() >= 2, "split into several lines: {pieces:?}");
    assert!(pieces.iter().all(|p| p.len() <= 450), "{pieces:?}");
    assert_eq!(pieces.concat(), long, "the pieces join back exactly");
    alice
        .expect_message_body(&format!("{room}/alice"), &long)
        .await;
    w.app.shutdown().await;
}

/// Private messages both ways through `nick%server@irc.gw`; raw commands to the server's
/// JID, and what the server answers and announces delivered from it.
#[tokio::test]
async fn private_messages_and_the_server_jid() {
    let w = World::start(Ircd::start()).await;
    let bob_jid = format!("bob%127.0.0.1@{DOMAIN}");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("pm").await;

    // XMPP → IRC first: the message opens alice's IRC connection.
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{bob_jid}' id='m1'><body>hi bob</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG bob :hi bob"))
        .await;
    bob.send("PRIVMSG alice :hi alice").await;
    let m = alice.expect_message_body(&bob_jid, "hi alice").await;
    assert_eq!(m.attr("type"), Some("chat"));
    assert!(
        m.get_child("delay", "urn:xmpp:delay").is_none(),
        "a live private message is not delayed: {}",
        String::from(&m)
    );
    bob.send("PRIVMSG alice :\x01ACTION nods\x01").await;
    alice.expect_message_body(&bob_jid, "/me nods").await;

    // Raw commands to the server JID: a PRIVMSG, and a WHOIS whose numerics come back
    // from the server JID.
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{SERVER_JID}'><body>PRIVMSG bob :raw hello\n/WHOIS bob</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG bob :raw hello"))
        .await;
    // InspIRCd answers with seven numerics or more: they come as one message, in words.
    let whois = alice
        .expect("the WHOIS answer from the server JID", |s| {
            s.name() == "message"
                && s.attr("from") == Some(SERVER_JID)
                && body(s).is_some_and(|b| b.contains("bob") && b.contains("127.0.0.1"))
        })
        .await;
    let text = body(&whois).unwrap_or_default();
    assert!(
        text.starts_with("bob is ")
            && text.contains("\nbob is connected to ")
            && text.contains("\nbob has been idle "),
        "one message for the whole WHOIS: {text:?}"
    );
    assert!(!text.contains("End of /WHOIS"), "{text:?}");
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{SERVER_JID}'><body>LUSERS</body></message>"
        )))
        .await;
    let lusers = alice
        .expect("the LUSERS answer", |s| {
            s.attr("from") == Some(SERVER_JID) && body(s).is_some_and(|b| b.contains("There are "))
        })
        .await;
    let text = body(&lusers).unwrap_or_default();
    assert!(
        text.lines().count() >= 3 && text.contains("I have "),
        "one message for the whole LUSERS answer: {text:?}"
    );

    // An IRC INVITE is a XEP-0249 direct invitation from the inviter.
    bob.send("JOIN #secret").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("INVITE alice #secret").await;
    let invite = alice
        .expect("the invitation", |s| {
            s.name() == "message" && s.get_child("x", "jabber:x:conference").is_some()
        })
        .await;
    assert_eq!(invite.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(
        invite
            .get_child("x", "jabber:x:conference")
            .and_then(|x| x.attr("jid")),
        Some(room("secret").as_str())
    );

    // Invitations from XMPP become INVITEs: mediated (XEP-0045, to the room) and direct
    // (XEP-0249, to the contact).
    let secret = room("inv");
    join(&mut alice, &secret, "alice").await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{secret}'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='{bob_jid}'/></x></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("INVITE bob") && l.contains("#inv"))
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{bob_jid}'><x xmlns='jabber:x:conference' jid='{secret}'/></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("INVITE bob") && l.contains("#inv"))
        .await;

    // A server-wide notice from an operator reaches alice from the server JID.
    bob.send("OPER oper operpw").await;
    bob.expect(|l| l.contains(" 381 ")).await;
    bob.send("NOTICE $* :maintenance at noon").await;
    alice
        .expect("the global notice from the server JID", |s| {
            s.name() == "message"
                && s.attr("from") == Some(SERVER_JID)
                && body(s).is_some_and(|b| b.contains("maintenance at noon"))
        })
        .await;
    w.app.shutdown().await;
}

/// IRC's refusals become MUC errors carrying the server's text: a +k channel without its
/// key (and joined with the key as the MUC password), a ban, a nick in use.
#[tokio::test]
async fn join_and_nick_errors_are_muc_errors() {
    let w = World::start(Ircd::start()).await;
    let locked = room("locked");
    let banned = room("banned");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #locked").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("MODE #locked +k sesame").await;
    bob.expect(|l| l.contains("MODE #locked +k")).await;
    bob.send("JOIN #banned").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("MODE #banned +b alice!*@*").await;
    bob.expect(|l| l.contains("MODE #banned +b")).await;
    let mut alice = w.alice("errors").await;

    // +k without the key: not-authorized with the IRC text.
    let (condition, text) = refused(
        &mut alice,
        &format!("{locked}/alice"),
        Some(""),
        "the +k refusal",
    )
    .await;
    assert_eq!(condition, "not-authorized");
    assert!(
        text.contains("#locked") && text.contains("key"),
        "the IRC text: {text}"
    );
    // With the key as the MUC password.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{locked}/alice'><x xmlns='http://jabber.org/protocol/muc'><password>sesame</password></x></presence>"
        )))
        .await;
    alice
        .expect("joined with the key", |s| {
            presence_from(s, &format!("{locked}/alice")) && codes(s).contains(&110)
        })
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN") && l.contains("#locked"))
        .await;

    // Banned: forbidden with the IRC text.
    let (condition, text) =
        refused(&mut alice, &format!("{banned}/alice"), Some(""), "the ban").await;
    assert_eq!(condition, "forbidden");
    assert!(
        text.contains("#banned") && text.contains("banned"),
        "the IRC text: {text}"
    );

    // A nick change to a nick in use: conflict, and alice keeps her nick.
    let (condition, text) = refused(
        &mut alice,
        &format!("{locked}/bob"),
        None,
        "the nick conflict",
    )
    .await;
    assert_eq!(condition, "conflict");
    assert!(text.contains("bob"), "{text}");
    bob.send("PRIVMSG #locked :still alice?").await;
    alice
        .expect_message_body(&format!("{locked}/bob"), "still alice?")
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{locked}'><body>yes</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice!") && l.ends_with("PRIVMSG #locked :yes"))
        .await;

    // A first join with a nick that is taken: the server's choice, announced with 210.
    w.server.register("dave", "davepw").await;
    let mut dave = TestClient::connect(&w.server, "dave", "davepw", "errors").await;
    dave.send(el(&format!(
        "<presence xmlns='jabber:client' to='{locked}/bob'><x xmlns='http://jabber.org/protocol/muc'><password>sesame</password></x></presence>"
    )))
    .await;
    let me = dave
        .expect("dave's self-presence", |s| {
            s.name() == "presence" && codes(s).contains(&110)
        })
        .await;
    assert!(codes(&me).contains(&210), "{}", String::from(&me));
    assert_eq!(me.attr("from"), Some(format!("{locked}/bob_").as_str()));
    w.app.shutdown().await;
}

/// The IRC server restarts mid-conversation: the user is told, the bridge reconnects and
/// rejoins on its own, what was said meanwhile is sent, and messages flow again.
/// The outbound policy: without an `[outbound] allow` entry for it, a channel on
/// 127.0.0.1 is refused with `forbidden` and a text that sends the user to the admin, and
/// nothing connects to the server's port. (With the entry, every other test joins.)
#[tokio::test]
async fn a_loopback_server_is_refused_unless_allowed() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let irc = format!("\n[bridges.irc.servers.\"127.0.0.1\"]\nport = {port}\ntls = false\n");
    let app = start_toml(&server, dir.path(), "", &irc).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "policy").await;
    let (condition, text) = refused(
        &mut alice,
        &format!("{}/alice", room("private")),
        Some(""),
        "the join refused by the outbound policy",
    )
    .await;
    assert_eq!(condition, "forbidden", "{text}");
    assert!(
        text.contains("127.0.0.1") && text.contains("ask the gateway's admin"),
        "{text}"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the gateway connected to a refused address"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_irc_server_restarts() {
    let mut w = World::start(Ircd::start()).await;
    let room = room("rc");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #rc").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    // Carol is there before the restart and does not come back.
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #rc").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("rc").await;
    // The gateway in the roster, as after registration: its presence shows the login state.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{DOMAIN}' type='subscribe'/>"
        )))
        .await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    bob.send("PRIVMSG #rc :before").await;
    alice
        .expect_message_body(&format!("{room}/bob"), "before")
        .await;

    // Down long enough for two reconnection attempts to fail (1 s, then 2 s), so that bob
    // is back in the channel before alice's puppet tries again (4 s later).
    w.ircd.stop();
    let told = alice
        .expect("the news from the server JID", |s| {
            s.name() == "message"
                && s.attr("from") == Some(SERVER_JID)
                && body(s).is_some_and(|b| b.contains("lost"))
        })
        .await;
    assert!(
        body(&told).is_some_and(|b| b.contains("Reconnecting")),
        "{}",
        String::from(&told)
    );
    alice
        .expect("the gateway's presence while reconnecting", |s| {
            s.name() == "presence"
                && s.attr("from") == Some(DOMAIN)
                && s.get_child("show", "jabber:client").map(|x| x.text()) == Some("xa".into())
                && status(s).is_some_and(|s| s.contains("reconnecting"))
        })
        .await;
    // Older presences (the first connection's) are not what the test waits for below.
    alice.drain();
    // Said while the connection is down: queued, not lost.
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>during the outage</body></message>"
        )))
        .await;
    alice
        .expect_within("the second failed attempt", Duration::from_secs(20), |s| {
            s.attr("from") == Some(SERVER_JID)
                && body(s).is_some_and(|b| b.contains("Reconnecting in 4 s"))
        })
        .await;
    w.ircd.restart();

    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #rc").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    // Alice's puppet comes back by itself (backoff 1 s) and rejoins.
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN") && l.contains("#rc"))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG #rc :during the outage"))
        .await;
    alice
        .expect("the gateway online again", |s| {
            s.name() == "presence"
                && s.attr("from") == Some(DOMAIN)
                && s.attr("type").is_none()
                && s.get_child("show", "jabber:client").is_none()
        })
        .await;
    // The rejoin shows who is gone: carol.
    alice
        .expect("carol gone after the rejoin", |s| {
            presence_from(s, &format!("{room}/carol")) && s.attr("type") == Some("unavailable")
        })
        .await;
    alice
        .expect_none("bob gone (he is back)", Duration::from_millis(300), |s| {
            presence_from(s, &format!("{room}/bob")) && s.attr("type") == Some("unavailable")
        })
        .await;
    bob.send("PRIVMSG #rc :after").await;
    alice
        .expect_message_body(&format!("{room}/bob"), "after")
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>back</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG #rc :back"))
        .await;
    w.app.shutdown().await;
}

/// A XEP-0077 registration form submitting these IRC login fields.
fn register_iq(fields: &[(&str, &str)]) -> Element {
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    el(&format!(
        "<iq xmlns='jabber:client' type='set' to='{DOMAIN}'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>"
    ))
}

/// Registers `nick` with Atheme's NickServ (password `password`) from a raw client that
/// then quits, so that the gateway's puppet can log in to the account.
async fn register_with_nickserv(port: u16, nick: &str, password: &str) {
    let mut owner = Raw::connect(port, nick).await;
    owner
        .send(&format!(
            "PRIVMSG NickServ :REGISTER {password} {nick}@example.com"
        ))
        .await;
    owner
        .expect(|l| l.contains(&format!("NOTICE {nick}")) && l.contains("registered"))
        .await;
    owner.send("QUIT :done").await;
    owner.expect(|l| l.starts_with("ERROR")).await;
}

/// SASL PLAIN against InspIRCd + Atheme with the password given at XEP-0077 registration
/// (sealed in the database), and a wrong password reported as refused credentials.
#[tokio::test]
async fn sasl_login_from_the_registration() {
    let w = World::start(Ircd::start_with_services()).await;
    // An Atheme account for the nick alice.
    register_with_nickserv(w.ircd.port, "alice", "s3cret-irc").await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;

    let mut alice = w.alice("sasl").await;
    let answer = alice
        .iq(register_iq(&[
            ("server", "127.0.0.1"),
            ("nick", "alice"),
            ("sasl_password", "s3cret-irc"),
        ]))
        .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        String::from(&answer)
    );
    // The database and its journal files (WAL) never hold the password in clear.
    let mut files = 0;
    for entry in std::fs::read_dir(w.dir.path()).expect("the temp dir") {
        let path = entry.expect("a dir entry").path();
        if path.to_string_lossy().contains("estuary.db") {
            files += 1;
            let bytes = std::fs::read(&path).expect("a database file");
            assert!(
                !bytes
                    .windows(b"s3cret-irc".len())
                    .any(|x| x == b"s3cret-irc"),
                "the SASL password is sealed at rest, also in {}",
                path.display()
            );
        }
    }
    assert!(files > 0, "the database is in the temp dir");

    join(&mut alice, &room("sasl"), "alice").await;
    alice
        .expect("the SASL success from the server JID", |s| {
            s.attr("from") == Some(SERVER_JID)
                && body(s).is_some_and(|b| b.contains("logged in as alice"))
        })
        .await;
    bob.send("WHOIS alice").await;
    let logged = bob
        .expect(|l| l.contains(" 330 ") || l.contains(" 318 "))
        .await;
    assert!(
        logged.contains(" 330 ") && logged.contains("alice alice"),
        "services know alice's puppet as the account alice: {logged}"
    );

    // A wrong password: the gateway says the login was refused.
    let answer = alice
        .iq(register_iq(&[
            ("server", "127.0.0.1"),
            ("nick", "alice"),
            ("sasl_password", "wrong"),
        ]))
        .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        String::from(&answer)
    );
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
            room("again")
        )))
        .await;
    alice
        .expect("the refusal", |s| {
            s.name() == "message"
                && s.attr("from") == Some(DOMAIN)
                && body(s).is_some_and(|b| b.contains("refused your login"))
        })
        .await;
    w.app.shutdown().await;
}

/// A plain RFC 1459 server (ngircd: no echo-message, no server-time, no msgid): join with
/// the occupant list, messages both ways, part.
#[tokio::test]
async fn a_plain_rfc1459_server() {
    let w = World::start(Ircd::start_ngircd()).await;
    let room = room("plain");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #plain").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("plain").await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    let b = alice
        .expect("bob, op", |s| presence_from(s, &format!("{room}/bob")))
        .await;
    assert_eq!(item(&b).map(|i| i.0), Some("moderator".into()));
    alice
        .expect("self-presence", |s| {
            presence_from(s, &format!("{room}/alice")) && codes(s).contains(&110)
        })
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    bob.send("PRIVMSG #plain :hello from rfc1459").await;
    alice
        .expect_message_body(&format!("{room}/bob"), "hello from rfc1459")
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}' id='n1'><body>hello from xmpp</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG #plain :hello from xmpp"))
        .await;
    // Without echo-message the gateway reflects the message itself.
    let reflected = alice
        .expect_message_body(&format!("{room}/alice"), "hello from xmpp")
        .await;
    assert_eq!(reflected.attr("id"), Some("n1"));
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains(" PART ") && l.contains("#plain"))
        .await;
    w.app.shutdown().await;
}

/// A topic change or a kick the IRC server refuses (alice is not op on a +t channel) comes
/// back as an XMPP error carrying the server's text, not as silence.
#[tokio::test]
async fn refused_topic_and_kick_are_xmpp_errors() {
    let w = World::start(Ircd::start()).await;
    let room = room("guarded");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #guarded").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("MODE #guarded +t").await;
    let mut alice = w.alice("guarded").await;
    join(&mut alice, &room, "alice").await;

    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}' id='t1'><subject>mine now</subject></message>"
        )))
        .await;
    let e = alice
        .expect("the refused topic change", |s| {
            s.name() == "message" && s.attr("type") == Some("error") && s.attr("id") == Some("t1")
        })
        .await;
    assert_eq!(e.attr("from"), Some(room.as_str()), "{}", String::from(&e));
    let (condition, text) = error_of(&e).expect("an error element");
    assert_eq!(condition, "forbidden", "{text}");
    assert!(text.starts_with("#guarded: "), "{text}");
    assert!(
        text.len() > "#guarded: ".len() + 5,
        "the server's text: {text}"
    );

    let answer = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='bob' role='none'><reason>coup</reason></item></query></iq>"
        )))
        .await;
    assert_eq!(
        answer.attr("type"),
        Some("error"),
        "{}",
        String::from(&answer)
    );
    let (condition, text) = error_of(&answer).expect("an error element");
    assert_eq!(condition, "forbidden", "{text}");
    assert!(text.starts_with("#guarded: "), "{text}");

    // Nothing changed on IRC: bob is still there and the topic is not "mine now".
    let lines = bob.collect_for(Duration::from_millis(300)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(" KICK ") || l.contains("mine now")),
        "{lines:?}"
    );
    w.app.shutdown().await;
}

/// Messages said on IRC while alice is in the room are archived; rejoining with
/// `<history maxstanzas='2'/>` replays exactly the last two, with their XEP-0203 delay,
/// before the subject; a XEP-0313 query on the room returns all of them.
#[tokio::test]
async fn rejoining_replays_history_from_the_archive() {
    let w = World::start(Ircd::start()).await;
    let room = room("hist");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #hist").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("hist").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    for n in 1..=3 {
        bob.send(&format!("PRIVMSG #hist :line {n}")).await;
        alice
            .expect_message_body(&format!("{room}/bob"), &format!("line {n}"))
            .await;
    }
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains(" PART "))
        .await;
    alice.drain();

    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='2'/></x></presence>"
        )))
        .await;
    let mut seen = Vec::new();
    loop {
        let s = alice
            .expect("history or the subject", |s| {
                s.name() == "message"
                    && s.attr("from").is_some_and(|f| f.starts_with(&room))
                    && (body(s).is_some() || subject(s).is_some())
            })
            .await;
        if subject(&s).is_some() {
            break;
        }
        let delay = s
            .get_child("delay", "urn:xmpp:delay")
            .unwrap_or_else(|| panic!("history carries a delay: {}", String::from(&s)));
        assert!(delay.attr("stamp").is_some());
        assert_eq!(s.attr("from"), Some(format!("{room}/bob").as_str()));
        seen.push(body(&s).unwrap_or_default());
    }
    assert_eq!(seen, ["line 2", "line 3"], "the last two, oldest first");

    let fin = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}' id='mam1'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>"
        )))
        .await;
    assert_eq!(fin.attr("type"), Some("result"), "{}", String::from(&fin));
    let archived: Vec<String> = alice
        .drain()
        .iter()
        .filter(|s| String::from(*s).contains("queryid='q1'"))
        .map(|s| {
            let r = s
                .get_child("result", "urn:xmpp:mam:2")
                .expect("a MAM result");
            let m = r
                .get_child("forwarded", "urn:xmpp:forward:0")
                .and_then(|f| f.get_child("message", "jabber:client"))
                .expect("a forwarded message");
            body(m).unwrap_or_default()
        })
        .collect();
    assert_eq!(archived, ["line 1", "line 2", "line 3"]);

    // Paging from an id the archive does not hold is item-not-found (XEP-0059 §2.6), as
    // Biboumi's default_mam_limit scenario expects, not a server error.
    let unknown = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}' id='mam2'><query xmlns='urn:xmpp:mam:2' queryid='q2'><set xmlns='http://jabber.org/protocol/rsm'><after>DUMMY_ID</after></set></query></iq>"
        )))
        .await;
    let (condition, text) = error_of(&unknown).expect("an error");
    assert_eq!(condition, "item-not-found", "{text}");
    let kind = unknown
        .get_child("error", "jabber:client")
        .and_then(|e| e.attr("type"));
    assert_eq!(kind, Some("cancel"), "{}", String::from(&unknown));
    w.app.shutdown().await;
}

/// With `fixed_server`, addresses drop `%server`: the room is `#chan@gw`, people are
/// `nick@gw`; joins, room messages and private chats work both ways.
#[tokio::test]
async fn a_fixed_server_drops_the_server_part() {
    let w = World::start_extra(Ircd::start(), r#"fixed_server = "127.0.0.1""#).await;
    let room = format!("#fixed@{DOMAIN}");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #fixed").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("fixed").await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    alice
        .expect("bob in the room", |s| {
            presence_from(s, &format!("{room}/bob"))
        })
        .await;
    alice
        .expect("the self-presence", |s| {
            presence_from(s, &format!("{room}/alice")) && codes(s).contains(&110)
        })
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN") && l.contains("#fixed"))
        .await;

    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>hello fixed</body></message>"
        )))
        .await;
    bob.expect(|l| l.contains("PRIVMSG #fixed :hello fixed"))
        .await;
    bob.send("PRIVMSG #fixed :hi from irc").await;
    alice
        .expect_message_body(&format!("{room}/bob"), "hi from irc")
        .await;

    // Private chats: bob@gw, both ways.
    bob.send("PRIVMSG alice :psst").await;
    let m = alice
        .expect_message_body(&format!("bob@{DOMAIN}"), "psst")
        .await;
    assert_eq!(m.attr("type"), Some("chat"));
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='bob@{DOMAIN}'><body>psst back</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("PRIVMSG bob :psst back"))
        .await;

    // The domain stands for the fixed server (docs/bridges/irc.md): a raw command written
    // to it runs on IRC (not the help text), and the server's answers come from it.
    alice.drain();
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{DOMAIN}'><body>WHOIS bob</body></message>"
        )))
        .await;
    let whois = alice
        .expect("the WHOIS answer from the domain", |s| {
            s.name() == "message"
                && s.attr("from") == Some(DOMAIN)
                && body(s).is_some_and(|b| b.contains("bob"))
        })
        .await;
    assert!(
        !body(&whois).unwrap_or_default().contains("This is the"),
        "not the help text: {}",
        String::from(&whois)
    );
    w.app.shutdown().await;
}

/// `[bridges.irc.limits]`: a join past `channels_per_user` is refused with
/// `resource-constraint` and a text naming the limit; leaving a channel makes room.
#[tokio::test]
async fn a_join_past_the_channel_limit_is_a_resource_constraint() {
    let w = World::start_extra(
        Ircd::start(),
        "[bridges.irc.limits]\nchannels_per_user = 1\n",
    )
    .await;
    let mut alice = w.alice("limits").await;
    join(&mut alice, &room("one"), "alice").await;
    let (condition, text) = refused(
        &mut alice,
        &format!("{}/alice", room("two")),
        Some(""),
        "the second join refused",
    )
    .await;
    assert_eq!(condition, "resource-constraint", "{text}");
    assert!(text.contains("at most 1 IRC channel(s)"), "{text}");
    w.app.shutdown().await;
}

/// A user of a domain the gateway does not serve (`allowed_domains`) opens nothing:
/// disco#items on a server JID is `forbidden` and no IRC connection is made.
#[tokio::test]
async fn a_user_of_another_domain_opens_no_connection() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let irc = format!(
        "allowed_domains = [\"example.org\"]\n\n[bridges.irc.servers.\"127.0.0.1\"]\nport = {port}\ntls = false\n"
    );
    let app = start_with(&server, dir.path(), &irc).await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "other").await;
    let answer = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{SERVER_JID}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        )))
        .await;
    let (condition, text) = error_of(&answer).unwrap_or_default();
    assert_eq!(condition, "forbidden", "{}", String::from(&answer));
    assert!(text.contains("example.org"), "{text}");
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "a connection was opened for a user the gateway does not serve"
    );
    app.shutdown().await;
}

/// disco#items on the IRC server's JID lists its channels (from LIST), each as a room JID
/// named with its user count and topic, paged by XEP-0059.
#[tokio::test]
async fn the_server_jid_lists_channels_in_pages() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    for chan in ["#la", "#lb", "#lc"] {
        bob.send(&format!("JOIN {chan}")).await;
        bob.expect(|l| l.contains(" 366 ") && l.contains(chan))
            .await;
    }
    bob.send("TOPIC #la :all about a").await;
    bob.expect(|l| l.contains("TOPIC #la")).await;
    let mut alice = w.alice("list").await;
    let disco = |set: &str| {
        el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{SERVER_JID}'><query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'>{set}</set></query></iq>"
        ))
    };
    let items = |answer: &Element| -> Vec<(String, String)> {
        answer
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .map(|q| {
                q.children()
                    .filter(|c| c.name() == "item")
                    .map(|c| {
                        (
                            c.attr("jid").unwrap_or_default().to_string(),
                            c.attr("name").unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let rsm = |answer: &Element, name: &str| -> Option<String> {
        answer
            .get_child("query", "http://jabber.org/protocol/disco#items")?
            .get_child("set", "http://jabber.org/protocol/rsm")?
            .get_child(name, "http://jabber.org/protocol/rsm")
            .map(|c| c.text())
    };

    let first = alice.iq(disco("<max>2</max>")).await;
    assert_eq!(
        first.attr("type"),
        Some("result"),
        "{}",
        String::from(&first)
    );
    let page = items(&first);
    let jids: Vec<&str> = page.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jids, [room("la"), room("lb")], "{}", String::from(&first));
    assert!(page[0].1.starts_with("#la (1)"), "{:?}", page[0]);
    assert!(page[0].1.contains("all about a"), "{:?}", page[0]);
    assert_eq!(rsm(&first, "count").as_deref(), Some("3"));
    let last = rsm(&first, "last").expect("the page's last item");

    let second = alice
        .iq(disco(&format!("<max>2</max><after>{last}</after>")))
        .await;
    let page = items(&second);
    let jids: Vec<&str> = page.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jids, [room("lc")], "{}", String::from(&second));
    w.app.shutdown().await;
}

/// With `offline = "persistent"`, alice going offline keeps her in the channel; what is
/// said meanwhile is archived, and back online she fetches it with XEP-0313; rejoining
/// sends no JOIN to IRC.
#[tokio::test]
async fn persistent_channels_archive_while_offline() {
    let w = World::start_extra(Ircd::start(), r#"offline = "persistent""#).await;
    let room = room("pers");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #pers").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("pers").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    alice.disconnect().await;
    // Long enough for the gateway to find alice's resource gone (and, under "leave", to part).
    let lines = bob.collect_for(Duration::from_secs(6)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(":alice") && (l.contains(" PART ") || l.contains(" QUIT "))),
        "alice stays in the channel while offline: {lines:?}"
    );
    bob.send("PRIVMSG #pers :while you were away").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut alice = w.alice("back").await;
    let fin = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}' id='mam1'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>"
        )))
        .await;
    assert_eq!(fin.attr("type"), Some("result"), "{}", String::from(&fin));
    let archived: Vec<String> = alice
        .drain()
        .iter()
        .filter(|s| String::from(*s).contains("queryid='q1'"))
        .filter_map(|s| {
            let m = s
                .get_child("result", "urn:xmpp:mam:2")?
                .get_child("forwarded", "urn:xmpp:forward:0")?
                .get_child("message", "jabber:client")?
                .clone();
            body(&m)
        })
        .collect();
    assert_eq!(archived, ["while you were away"]);

    // Rejoining finds the channel still joined: no JOIN reaches IRC.
    join(&mut alice, &room, "alice").await;
    let lines = bob.collect_for(Duration::from_millis(500)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(":alice") && l.contains("JOIN")),
        "{lines:?}"
    );
    w.app.shutdown().await;
}

/// CASEMAPPING (InspIRCd says rfc1459): two resources join `#Case[X]` and `#CASE{x}`, which
/// are one channel on IRC. Alice joins it once; each resource sees the room JID it joined
/// (lower-cased, as XMPP does) and gets the channel's messages there.
#[tokio::test]
async fn differently_cased_joins_land_in_one_channel() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #Case[X]").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let (asked_a, seen_a) = (
        "#Case[X]%127.0.0.1@irc.localhost",
        "#case[x]%127.0.0.1@irc.localhost",
    );
    let (asked_b, seen_b) = (
        "#CASE{x}%127.0.0.1@irc.localhost",
        "#case{x}%127.0.0.1@irc.localhost",
    );
    let mut a = w.alice("a").await;
    let mut b = w.alice("b").await;
    for (client, asked, seen) in [(&mut a, asked_a, seen_a), (&mut b, asked_b, seen_b)] {
        client
            .send(el(&format!(
                "<presence xmlns='jabber:client' to='{asked}/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
            )))
            .await;
        client
            .expect(&format!("bob in {seen}"), |s| {
                presence_from(s, &format!("{seen}/bob"))
            })
            .await;
        client
            .expect(&format!("the self-presence from {seen}"), |s| {
                presence_from(s, &format!("{seen}/alice")) && codes(s).contains(&110)
            })
            .await;
    }
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    let lines = bob.collect_for(Duration::from_millis(500)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(":alice") && l.contains("JOIN")),
        "one channel, joined once: {lines:?}"
    );

    bob.send("PRIVMSG #case{x} :one channel").await;
    a.expect_message_body(&format!("{seen_a}/bob"), "one channel")
        .await;
    b.expect_message_body(&format!("{seen_b}/bob"), "one channel")
        .await;
    // A private message from Bob and one from bob come from the same contact.
    bob.send("NICK Bob").await;
    bob.send("PRIVMSG alice :from Bob").await;
    let m = a
        .expect_message_body("bob%127.0.0.1@irc.localhost", "from Bob")
        .await;
    assert_eq!(m.attr("type"), Some("chat"));
    w.app.shutdown().await;
}

/// With `offline = "grace"`, alice offline and back within the grace period finds the
/// channel still joined (no PART, no JOIN on IRC, what was said meanwhile as history);
/// offline for longer, the channel is parted.
#[tokio::test]
async fn grace_keeps_channels_for_a_while() {
    let w = World::start_extra(Ircd::start(), "offline = \"grace\"\noffline_grace_secs = 4").await;
    let room = room("grace");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #grace").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("grace").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    alice.disconnect().await;
    bob.send("PRIVMSG #grace :missed you").await;
    let mut alice = w.alice("back").await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    alice
        .expect_message_body(&format!("{room}/bob"), "missed you")
        .await;
    // Past the grace period the rejoined room is still joined, and nothing was seen on IRC.
    let lines = bob.collect_for(Duration::from_secs(6)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(":alice") && (l.contains(" PART ") || l.contains("JOIN"))),
        "no part, no rejoin: {lines:?}"
    );

    alice.disconnect().await;
    let part = bob
        .expect(|l| l.starts_with(":alice") && l.contains(" PART "))
        .await;
    assert!(part.contains("#grace"), "{part}");
    w.app.shutdown().await;
}

const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// A submitted data form with these fields.
fn submit_form(fields: &[(&str, &str)]) -> String {
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    format!("<x xmlns='jabber:x:data' type='submit'>{fields}</x>")
}

/// The values of a form field in `stanza` (first `<x/>` found at any depth).
fn form_values(stanza: &Element, var: &str) -> Vec<String> {
    fn find<'a>(e: &'a Element, var: &str) -> Option<&'a Element> {
        if e.name() == "field" && e.attr("var") == Some(var) {
            return Some(e);
        }
        e.children().find_map(|c| find(c, var))
    }
    find(stanza, var)
        .map(|f| {
            f.children()
                .filter(|c| c.name() == "value")
                .map(|v| v.text())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the "Configure" command on `jid`: executes it (returns that answer when `fields`
/// is `None`), then submits `fields` in the same session and returns the answer.
async fn configure(client: &mut TestClient, jid: &str, fields: Option<&[(&str, &str)]>) -> Element {
    let first = client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{jid}'><command xmlns='{COMMANDS}' node='configure' action='execute'/></iq>"
        )))
        .await;
    let Some(fields) = fields else {
        return first;
    };
    let session = first
        .get_child("command", COMMANDS)
        .and_then(|c| c.attr("sessionid"))
        .unwrap_or_else(|| panic!("a command session: {}", String::from(&first)))
        .to_string();
    client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{jid}'><command xmlns='{COMMANDS}' node='configure' sessionid='{session}' action='complete'>{}</command></iq>",
            submit_form(fields)
        )))
        .await
}

/// Asks bob's raw client to WHOIS `nick` until a line matching `pred` comes (the services
/// may take a moment), and returns it.
async fn whois_until(bob: &mut Raw, nick: &str, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..20 {
        bob.send(&format!("WHOIS {nick}")).await;
        let lines = bob.collect_for(Duration::from_millis(500)).await;
        if let Some(l) = lines.into_iter().find(|l| pred(l)) {
            return l;
        }
    }
    panic!("WHOIS {nick} never showed the expected line");
}

/// The per-server "Configure" command and registration on the server JID: listed in disco,
/// bad input refused with nothing stored, the form prefilled without secrets, the NickServ
/// password sealed at rest and used (Atheme's NickServ identifies the puppet), and the
/// settings forgotten with `<remove/>`.
#[tokio::test]
async fn configure_the_server_and_identify_to_nickserv() {
    let w = World::start(Ircd::start_with_services()).await;
    register_with_nickserv(w.ircd.port, "alice", "ns-s3cret").await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("cfg").await;

    let items = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{SERVER_JID}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        )))
        .await;
    let listed = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .is_some_and(|q| {
            q.children()
                .any(|i| i.attr("node") == Some("configure") && i.attr("jid") == Some(SERVER_JID))
        });
    assert!(listed, "Configure is listed: {}", String::from(&items));
    let info = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{SERVER_JID}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )))
        .await;
    let info = String::from(&info);
    assert!(
        info.contains(COMMANDS) && info.contains("jabber:iq:register"),
        "the server JID advertises commands and registration: {info}"
    );
    // A room is named as Biboumi names it, channel on server.
    let room_info = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )))
        .await;
    let identity = room_info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"));
    assert_eq!(
        identity.and_then(|i| i.attr("name")),
        Some("#test on 127.0.0.1"),
        "{}",
        String::from(&room_info)
    );

    // Bad input: a typed error that says what to fix, and nothing stored.
    let refused = configure(
        &mut alice,
        SERVER_JID,
        Some(&[("nick", "alice"), ("ports", "99999")]),
    )
    .await;
    let (condition, text) = error_of(&refused).expect("an error");
    assert_eq!(condition, "not-acceptable", "{text}");
    assert!(text.contains("99999") && text.contains("65535"), "{text}");
    let refused = configure(&mut alice, SERVER_JID, Some(&[("autojoin", "rust")])).await;
    assert_eq!(
        error_of(&refused).map(|e| e.0).as_deref(),
        Some("not-acceptable")
    );
    let form = configure(&mut alice, SERVER_JID, None).await;
    assert!(
        form_values(&form, "nick").is_empty(),
        "{}",
        String::from(&form)
    );

    let done = configure(
        &mut alice,
        SERVER_JID,
        Some(&[("nick", "alice"), ("nickserv_password", "ns-s3cret")]),
    )
    .await;
    assert_eq!(
        done.get_child("command", COMMANDS)
            .and_then(|c| c.attr("status")),
        Some("completed"),
        "{}",
        String::from(&done)
    );
    // Prefilled, secrets not echoed; registration on the server JID shows the same.
    let form = configure(&mut alice, SERVER_JID, None).await;
    assert_eq!(form_values(&form, "nick"), ["alice"]);
    assert!(form_values(&form, "nickserv_password").is_empty());
    assert_eq!(form_values(&form, "verify_cert"), ["true"]);
    let reg = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{SERVER_JID}'><query xmlns='jabber:iq:register'/></iq>"
        )))
        .await;
    let q = reg
        .get_child("query", "jabber:iq:register")
        .expect("a query");
    assert!(q.get_child("registered", "jabber:iq:register").is_some());
    assert_eq!(form_values(&reg, "nick"), ["alice"]);
    assert!(!String::from(&reg).contains("ns-s3cret"));
    for entry in std::fs::read_dir(w.dir.path()).expect("the temp dir") {
        let path = entry.expect("a dir entry").path();
        if path.to_string_lossy().contains("estuary.db") {
            let bytes = std::fs::read(&path).expect("a database file");
            assert!(
                !bytes.windows(b"ns-s3cret".len()).any(|x| x == b"ns-s3cret"),
                "the NickServ password is sealed at rest, also in {}",
                path.display()
            );
        }
    }

    // The join uses the configured nick and identifies to NickServ.
    join(&mut alice, &room("ns"), "someone").await;
    let logged = whois_until(&mut bob, "alice", |l| l.contains(" 330 ")).await;
    assert!(
        logged.contains("alice alice"),
        "NickServ knows alice's puppet as the account alice: {logged}"
    );

    // Forget the settings.
    let removed = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{SERVER_JID}'><query xmlns='jabber:iq:register'><remove/></query></iq>"
        )))
        .await;
    assert_eq!(
        removed.attr("type"),
        Some("result"),
        "{}",
        String::from(&removed)
    );
    let form = configure(&mut alice, SERVER_JID, None).await;
    assert!(
        form_values(&form, "nick").is_empty(),
        "{}",
        String::from(&form)
    );
    let again = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{SERVER_JID}'><query xmlns='jabber:iq:register'><remove/></query></iq>"
        )))
        .await;
    assert_eq!(
        error_of(&again).map(|e| e.0).as_deref(),
        Some("item-not-found")
    );
    w.app.shutdown().await;
}

/// No port configured: TLS on the TLS port first, then plain on the plain port (as
/// Biboumi). The "TLS port" here is a listener that records the TLS ClientHello and hangs
/// up; the gateway then falls back to InspIRCd's plain port and joins.
#[tokio::test]
async fn no_port_tries_tls_then_plain() {
    let ircd = Ircd::start();
    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let tls_port = tls_listener.local_addr().expect("its address").port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        if let Ok((mut sock, _)) = tls_listener.accept().await {
            let mut first = [0u8; 1];
            let _ = sock.read_exact(&mut first).await;
            let _ = seen_tx.send(first[0]);
        }
    });
    let irc = format!(
        "default_tls_port = {tls_port}\ndefault_plain_port = {}\n",
        ircd.port
    );
    let w = World::start_with(ircd, &irc).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #fallback").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("tls").await;
    join(&mut alice, &room("fallback"), "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    let first = tokio::time::timeout(Duration::from_secs(5), seen_rx)
        .await
        .expect("the TLS port was tried")
        .expect("the listener saw a connection");
    assert_eq!(first, 0x16, "a TLS handshake (ClientHello) came first");
    w.app.shutdown().await;
}

/// TLS on InspIRCd with a self-signed certificate: refused while the certificate is
/// checked (the plain fallback port is closed), accepted once the user's Configure says
/// not to check it; the server sees a TLS connection (WHOIS 671).
#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let ircd = Ircd::start_tls();
    let closed = common::ports::free_port();
    let irc = format!(
        "default_tls_port = {}\ndefault_plain_port = {closed}\n",
        ircd.tls_port
    );
    let w = World::start_with(ircd, &irc).await;
    let mut alice = w.alice("tls").await;
    let (condition, text) = refused(
        &mut alice,
        &format!("{}/alice", room("tls")),
        Some(""),
        "the join refused: the certificate is not trusted",
    )
    .await;
    assert_eq!(condition, "remote-server-not-found", "{text}");

    let done = configure(&mut alice, SERVER_JID, Some(&[("verify_cert", "false")])).await;
    assert_eq!(
        done.get_child("command", COMMANDS)
            .and_then(|c| c.attr("status")),
        Some("completed"),
        "{}",
        String::from(&done)
    );
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    join(&mut alice, &room("tls"), "alice").await;
    let secure = whois_until(&mut bob, "alice", |l| l.contains(" 671 ")).await;
    assert!(secure.contains("alice"), "{secure}");
    w.app.shutdown().await;
}

/// TLS with a self-signed certificate accepted because the gateway's config says not to
/// check it for that server (`verify_certificate = false`).
#[tokio::test]
async fn tls_with_the_certificate_check_off_in_the_config() {
    let ircd = Ircd::start_tls();
    let closed = common::ports::free_port();
    let irc = format!(
        "default_tls_port = {}\ndefault_plain_port = {closed}\n\n[bridges.irc.servers.\"127.0.0.1\"]\nverify_certificate = false\n",
        ircd.tls_port
    );
    let w = World::start_with(ircd, &irc).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("tls").await;
    join(&mut alice, &room("tls"), "alice").await;
    let secure = whois_until(&mut bob, "alice", |l| l.contains(" 671 ")).await;
    assert!(secure.contains("alice"), "{secure}");
    w.app.shutdown().await;
}

/// With a fixed server, the server's JID is the gateway's domain: its Configure command is
/// listed there beside the gateway's own and its nick is used at the next join.
#[tokio::test]
async fn configure_the_fixed_server_on_the_domain() {
    let ircd = Ircd::start();
    let irc = format!(
        "fixed_server = \"127.0.0.1\"\n\n[bridges.irc.servers.\"127.0.0.1\"]\nport = {}\ntls = false\n",
        ircd.port
    );
    let w = World::start_with(ircd, &irc).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("fixed").await;
    let items = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        )))
        .await;
    let items = String::from(&items);
    assert!(
        items.contains("node='configure'") || items.contains("node=\"configure\""),
        "{items}"
    );
    let done = configure(&mut alice, DOMAIN, Some(&[("nick", "fixedalice")])).await;
    assert_eq!(
        done.get_child("command", COMMANDS)
            .and_then(|c| c.attr("status")),
        Some("completed"),
        "{}",
        String::from(&done)
    );
    let form = configure(&mut alice, DOMAIN, None).await;
    assert_eq!(form_values(&form, "nick"), ["fixedalice"]);
    join(&mut alice, &format!("#fixed@{DOMAIN}"), "alice").await;
    bob.send("WHOIS fixedalice").await;
    bob.expect(|l| l.contains(" 311 ") && l.contains("fixedalice"))
        .await;
    w.app.shutdown().await;
}

/// What IRC users send that XML cannot carry — U+FFFE/U+FFFF in a message, `\x01` and
/// `\x1f` in a PART reason, mIRC colours in a QUIT reason — once stopped every stanza of the
/// bridge, for every user, for good (the writer refused the stanza and the link retried it
/// forever). Each now arrives cleaned (formatting as styling, the rest as U+FFFD), the
/// traffic after it flows both ways on the same component connection, and the archive gives
/// the line back just as clean.
#[tokio::test]
async fn text_xml_forbids_from_irc_never_stops_the_bridge() {
    let w = World::start(Ircd::start()).await;
    let room = room("poison");
    let bob_jid = format!("{room}/bob");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #poison").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #poison").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("poison").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    let gateway = &w.app.gateways[0];
    let connections = gateway.link_connections();

    bob.send("PRIVMSG #poison :odd \u{fffe}\u{ffff} end").await;
    alice
        .expect_message_body(&bob_jid, "odd \u{fffd}\u{fffd} end")
        .await;
    bob.send("PART #poison :\x01bye\x1f").await;
    let part = alice
        .expect("bob's part", |s| {
            presence_from(s, &bob_jid) && s.attr("type") == Some("unavailable")
        })
        .await;
    let xml = String::from(&part);
    assert!(xml.contains("bye") && !xml.contains('\u{1}'), "{xml}");
    bob.send("JOIN #poison").await;
    alice
        .expect("bob back", |s| {
            presence_from(s, &bob_jid) && s.attr("type").is_none()
        })
        .await;
    bob.send("QUIT :\x0304red\x03 \x02bold\x02").await;
    let quit = alice
        .expect("bob's quit", |s| {
            presence_from(s, &bob_jid) && s.attr("type") == Some("unavailable")
        })
        .await;
    let xml = String::from(&quit);
    assert!(
        xml.contains("red *bold*"),
        "colours dropped, bold as styling: {xml}"
    );

    carol.send("PRIVMSG #poison :after the poison").await;
    alice
        .expect_message_body(&format!("{room}/carol"), "after the poison")
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{room}'><body>both ways</body></message>"
        )))
        .await;
    carol
        .expect(|l| l.starts_with(":alice") && l.ends_with("PRIVMSG #poison :both ways"))
        .await;

    // The archive holds the line as the network sent it; what it gives back is clean too.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice' type='unavailable'/>"
        )))
        .await;
    carol
        .expect(|l| l.starts_with(":alice") && l.contains(" PART "))
        .await;
    alice.drain();
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='100'/></x></presence>"
        )))
        .await;
    alice
        .expect("the poisoned line from the archive, cleaned", |s| {
            s.attr("from") == Some(bob_jid.as_str())
                && s.get_child("delay", "urn:xmpp:delay").is_some()
                && body(s).as_deref() == Some("odd \u{fffd}\u{fffd} end")
        })
        .await;
    assert_eq!(
        gateway.link_connections(),
        connections,
        "the component link never dropped"
    );
    assert_eq!(gateway.unwritable_stanzas(), 0);
    // At a stop, the rooms tell their clients that they are out (110 + 332), so that none
    // believes itself still in a room whose messages no longer come.
    w.app.shutdown().await;
    let gone = alice
        .expect("out of the room at the gateway's stop", |s| {
            presence_from(s, &format!("{room}/alice"))
                && s.attr("type") == Some("unavailable")
                && codes(s).contains(&332)
        })
        .await;
    assert_eq!(codes(&gone), [110, 332], "{}", String::from(&gone));
}

/// A TCP listener on 127.0.0.1 that accepts connections and never says a word (an IRC
/// server that hangs). Sending on (or dropping) the returned sender closes every
/// connection it accepted; the task then returns how many that was.
async fn silent_server() -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<usize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the silent server");
    let port = listener.local_addr().expect("its address").port();
    let (hang_up, mut hung_up) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut kept = Vec::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => kept.push(stream),
                    Err(_) => break,
                },
                _ = &mut hung_up => break,
            }
        }
        kept.len()
    });
    (port, hang_up, task)
}

/// One user's slow requests never delay another user's stanzas (issue 12): alice asks an
/// IRC server that accepts and never speaks for its channels twelve times at once, while
/// bob talks in a channel of the real IRC server. Bob's lines reach IRC at once (and a
/// burst of his is not refused: his worker keeps up); alice's
/// requests beyond the four that wait for the server's LIST are answered with
/// `resource-constraint` (`wait`) at once, and the four are answered as soon as the
/// silent server hangs up (not after the LIST's 30-s limit).
#[tokio::test]
async fn a_silent_servers_room_lists_do_not_hold_up_other_users() {
    const FLOOD: usize = 12;
    const WAITING: usize = 4;
    let (silent_port, hang_up, silent) = silent_server().await;
    let ircd = Ircd::start();
    let irc = format!(
        "{}\n[bridges.irc.servers.\"localhost\"]\nport = {silent_port}\ntls = false\n",
        servers_table(&ircd)
    );
    let w = World::start_with(ircd, &irc).await;
    w.server.register("bob", "bobpw").await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #test").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut bob = TestClient::connect(&w.server, "bob", "bobpw", "talk").await;
    join(&mut bob, ROOM, "bob").await;
    carol
        .expect(|l| l.starts_with(":bob") && l.contains("JOIN"))
        .await;
    let mut alice = w.alice("flood").await;

    for i in 0..FLOOD {
        alice
            .send(el(&format!(
                "<iq xmlns='jabber:client' type='get' id='list{i}' to='localhost@{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
            )))
            .await;
    }
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let sent = std::time::Instant::now();
        bob.send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='b{i}'><body>bob says {i}</body></message>"
        )))
        .await;
        let line = format!("PRIVMSG #test :bob says {i}");
        tokio::time::timeout(Duration::from_secs(2), carol.expect(|l| l.contains(&line)))
            .await
            .unwrap_or_else(|_| {
                panic!("bob's message {i} did not reach IRC within 2 s of alice's flood")
            });
        worst = worst.max(sent.elapsed());
    }
    tracing::info!(?worst, "bob's slowest message during alice's flood");
    // A burst from a user whose worker keeps up waits for room instead of being refused.
    const BURST: usize = 40;
    for i in 0..BURST {
        bob.send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{ROOM}' id='burst{i}'><body>burst {i}</body></message>"
        )))
        .await;
    }
    for i in 0..BURST {
        let line = format!("PRIVMSG #test :burst {i}");
        carol.expect(|l| l.ends_with(&line)).await;
    }
    bob.expect_none(
        "an error for a message of the burst",
        Duration::from_millis(200),
        |s| s.name() == "message" && s.attr("type") == Some("error"),
    )
    .await;

    let is_list_answer = |s: &Element, type_: &str| {
        s.name() == "iq"
            && s.attr("id").is_some_and(|id| id.starts_with("list"))
            && s.attr("type") == Some(type_)
    };
    for _ in WAITING..FLOOD {
        let refused = alice
            .expect_within("a refused room list", Duration::from_secs(3), |s| {
                is_list_answer(s, "error")
            })
            .await;
        let (condition, text) = error_of(&refused).expect("an error");
        assert_eq!(
            condition,
            "resource-constraint",
            "{}",
            String::from(&refused)
        );
        assert!(text.contains("too many requests"), "{text}");
        let error_type = refused
            .get_child("error", "jabber:client")
            .and_then(|e| e.attr("type"));
        assert_eq!(error_type, Some("wait"));
    }
    alice
        .expect_none(
            "a fifth answer while the silent server says nothing",
            Duration::from_millis(300),
            |s| is_list_answer(s, "error") || is_list_answer(s, "result"),
        )
        .await;

    // The silent server hangs up: the four waiting lists are answered now, not after
    // the LIST's own time limit.
    let _ = hang_up.send(());
    let connections = silent.await.expect("the silent server's task");
    assert!(
        connections >= 1,
        "the gateway connected to the silent server"
    );
    for _ in 0..WAITING {
        let answer = alice
            .expect_within(
                "a room list answered once the silent server hung up",
                Duration::from_secs(5),
                |s| is_list_answer(s, "result") || is_list_answer(s, "error"),
            )
            .await;
        // An empty list, or the news that the connection was lost; either way no refusal.
        let condition = error_of(&answer).map(|(c, _)| c);
        assert_ne!(
            condition.as_deref(),
            Some("resource-constraint"),
            "{}",
            String::from(&answer)
        );
    }
    w.app.shutdown().await;
}

/// A gateway restart under the default `grace` policy: the stop tells alice's client it is
/// out of the room (110 + 332); the new start joins the channel again on IRC by itself,
/// before any client comes back, so what bob says meanwhile is archived; alice's client
/// joins again and gets it as history. Before, the channel stayed unjoined until a client
/// came back, and everything said in between was lost for good.
#[tokio::test]
async fn a_gateway_restart_rejoins_the_channels_and_keeps_what_was_said() {
    let w = World::start_extra(Ircd::start(), r#"offline = "grace""#).await;
    let room = room("rj");
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #rj").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("rj").await;
    join(&mut alice, &room, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    w.app.shutdown().await;
    alice
        .expect("out of the room at the stop", |s| {
            presence_from(s, &format!("{room}/alice"))
                && s.attr("type") == Some("unavailable")
                && codes(s).contains(&332)
        })
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("QUIT"))
        .await;
    let app = start_with(
        &w.server,
        w.dir.path(),
        &format!("offline = \"grace\"\n{}", servers_table(&w.ircd)),
    )
    .await;
    // Joined again by the gateway itself: no client has asked.
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN") && l.contains("#rj"))
        .await;
    bob.send("PRIVMSG #rj :said while your client was out")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.drain();
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20'/></x></presence>"
        )))
        .await;
    alice
        .expect("what bob said, as history", |s| {
            s.attr("from") == Some(format!("{room}/bob").as_str())
                && s.get_child("delay", "urn:xmpp:delay").is_some()
                && body(s).as_deref() == Some("said while your client was out")
        })
        .await;
    bob.send("PRIVMSG #rj :and live again").await;
    alice
        .expect_message_body(&format!("{room}/bob"), "and live again")
        .await;
    app.shutdown().await;
}

/// A raw `QUIT` to the server JID (Biboumi's `quit` scenario) leaves every room: each
/// joined resource gets its unavailable self-presence (110), the server sees the user's
/// reason, and the connection is not opened again.
#[tokio::test]
async fn a_raw_quit_leaves_the_rooms_without_reconnecting() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #quit").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut phone = w.alice("phone").await;
    let mut laptop = w.alice("laptop").await;
    let quit = room("quit");
    join(&mut phone, &quit, "alice").await;
    join(&mut laptop, &quit, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    phone
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{SERVER_JID}'><body>QUIT :bye bye</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("QUIT") && l.contains("bye bye"))
        .await;
    let me = format!("{quit}/alice");
    for client in [&mut phone, &mut laptop] {
        client
            .expect("the unavailable self-presence", |s| {
                presence_from(s, &me)
                    && s.attr("type") == Some("unavailable")
                    && codes(s).contains(&110)
            })
            .await;
    }
    phone
        .expect_none("a reconnection notice", Duration::from_millis(2500), |s| {
            body(s).is_some_and(|b| b.contains("Reconnecting"))
        })
        .await;
    let lines = bob.collect_for(Duration::from_millis(500)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(":alice") && l.contains("JOIN")),
        "alice came back: {lines:?}"
    );
    w.app.shutdown().await;
}

/// A mediated invitation to a bare nick keeps the nick's case as typed: ngIRCd confirms
/// (341) with the nick of the INVITE, and the confirmation reads "Bob has been invited",
/// as in Biboumi's `invite_other` scenario, not the folded "bob".
#[tokio::test]
async fn an_invitation_is_confirmed_with_the_nick_as_typed() {
    let w = World::start(Ircd::start_ngircd()).await;
    let mut bob = Raw::connect(w.ircd.port, "Bob").await;
    let mut alice = w.alice("inv").await;
    let party = room("party");
    join(&mut alice, &party, "alice").await;

    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{party}' id='i1'><x xmlns='{MUC_USER}'><invite to='Bob'/></x></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("INVITE Bob") && l.contains("#party"))
        .await;
    alice
        .expect_message_body(SERVER_JID, "Bob has been invited to #party")
        .await;
    w.app.shutdown().await;
}

/// A XEP-0045 mediated invitation (a message without a type to the room, Biboumi's
/// `invite_other` scenario) to a bare nick sends an IRC INVITE; one to an XMPP address
/// elsewhere is passed on from the room.
#[tokio::test]
async fn a_mediated_invitation_names_a_nick_or_an_xmpp_address() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("inv").await;
    let secret = room("inv2");
    join(&mut alice, &secret, "alice").await;

    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{secret}' id='i1'><x xmlns='{MUC_USER}'><invite to='bob'/></x></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("INVITE bob") && l.contains("#inv2"))
        .await;
    // The server's confirmation, as Biboumi words it.
    alice
        .expect_message_body(SERVER_JID, "bob has been invited to #inv2")
        .await;

    let me = alice.jid().to_string();
    let bare = alice.bare();
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{secret}' id='i2'><x xmlns='{MUC_USER}'><invite to='{bare}'><reason>come</reason></invite></x></message>"
        )))
        .await;
    let passed = alice
        .expect("the invitation passed on from the room", |s| {
            s.name() == "message"
                && s.attr("from") == Some(secret.as_str())
                && s.get_child("x", MUC_USER)
                    .and_then(|x| x.get_child("invite", MUC_USER))
                    .is_some()
        })
        .await;
    let invite = passed
        .get_child("x", MUC_USER)
        .and_then(|x| x.get_child("invite", MUC_USER))
        .expect("the invite");
    assert_eq!(invite.attr("from"), Some(me.as_str()));
    assert_eq!(
        invite.get_child("reason", MUC_USER).map(|r| r.text()),
        Some("come".to_owned())
    );
    alice
        .expect_none("an error", Duration::from_millis(300), |s| {
            s.attr("type") == Some("error")
        })
        .await;
    w.app.shutdown().await;
}

/// XEP-0359 on the reflection of the user's room message (Biboumi's `stable_id`
/// scenario): the origin id comes back, the room's own stanza id replaces the ones that
/// claim to be the room's or name nobody, and another entity's stanza id is kept.
#[tokio::test]
async fn the_reflection_keeps_other_entities_stanza_ids() {
    let w = World::start(Ircd::start()).await;
    let mut alice = w.alice("sid").await;
    let sid = room("sid");
    join(&mut alice, &sid, "alice").await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{sid}' id='first_id'>\
             <origin-id xmlns='urn:xmpp:sid:0' id='client-origin-id'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='client-stanza-id'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='claims-the-room' by='{sid}'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='theirs' by='archive@elsewhere.example'/>\
             <body>coucou</body></message>"
        )))
        .await;
    let m = alice
        .expect("the reflection", |s| body(s).as_deref() == Some("coucou"))
        .await;
    let sids: Vec<(String, String)> = m
        .children()
        .filter(|c| c.is("stanza-id", "urn:xmpp:sid:0"))
        .map(|c| {
            (
                c.attr("id").unwrap_or_default().to_string(),
                c.attr("by").unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        m.get_child("origin-id", "urn:xmpp:sid:0")
            .and_then(|o| o.attr("id")),
        Some("client-origin-id")
    );
    assert!(
        sids.contains(&(
            "theirs".to_string(),
            "archive@elsewhere.example".to_string()
        )),
        "another entity's stanza id is kept: {sids:?}"
    );
    let ours: Vec<&(String, String)> = sids.iter().filter(|(_, by)| *by == sid).collect();
    assert_eq!(ours.len(), 1, "one stanza id by the room: {sids:?}");
    assert!(
        !sids
            .iter()
            .any(|(id, _)| id == "client-stanza-id" || id == "claims-the-room"),
        "the client's ids claiming the room or nobody are gone: {sids:?}"
    );
    w.app.shutdown().await;
}

/// The gateway's answers to subscription requests carry the request's id (Biboumi's
/// `basic_subscribe_unsubscribe` scenario), from the gateway and from a contact. Prosody
/// turns a `subscribed` into a roster push, so the answers are read on the component link.
#[tokio::test]
async fn subscription_answers_keep_the_request_id() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    server.register("alice", "alicepw").await;
    let ircd = Ircd::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let tap = ComponentTap::start(server.component_addr()).await;
    let app = start_at(
        tap.addr(),
        dir.path(),
        ALLOW_LOOPBACK,
        &servers_table(&ircd),
    )
    .await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "sub").await;
    let bob_jid = format!("bob%127.0.0.1@{DOMAIN}");
    let limit = Duration::from_secs(10);
    for (to, type_, id, answer) in [
        (DOMAIN, "subscribe", "subid1", "subscribed"),
        (bob_jid.as_str(), "subscribe", "subid2", "subscribed"),
        (bob_jid.as_str(), "unsubscribe", "unsubid1", "unsubscribed"),
    ] {
        alice
            .send(el(&format!(
                "<presence xmlns='jabber:client' to='{to}' type='{type_}' id='{id}'/>"
            )))
            .await;
        tap.expect_tag(
            "presence",
            &[("from", to), ("type", answer), ("id", id)],
            limit,
        )
        .await;
    }
    // Subscriptions to the gateway and to a server's JID are mutual: each asks back (and
    // an unsubscription from the gateway withdraws its own, after its unavailable
    // presence), as Biboumi's basic_subscribe_unsubscribe scenario expects. A contact
    // does not ask back.
    let bare = alice.bare();
    tap.expect_tag(
        "presence",
        &[
            ("from", DOMAIN),
            ("to", bare.as_str()),
            ("type", "subscribe"),
        ],
        limit,
    )
    .await;
    for (to, type_, id, answer) in [
        (SERVER_JID, "subscribe", "subid3", "subscribed"),
        (DOMAIN, "unsubscribe", "unsubid2", "unsubscribed"),
    ] {
        alice
            .send(el(&format!(
                "<presence xmlns='jabber:client' to='{to}' type='{type_}' id='{id}'/>"
            )))
            .await;
        tap.expect_tag(
            "presence",
            &[("from", to), ("type", answer), ("id", id)],
            limit,
        )
        .await;
    }
    tap.expect_tag(
        "presence",
        &[
            ("from", SERVER_JID),
            ("to", bare.as_str()),
            ("type", "subscribe"),
        ],
        limit,
    )
    .await;
    for type_ in ["unavailable", "unsubscribe"] {
        tap.expect_tag(
            "presence",
            &[("from", DOMAIN), ("to", bare.as_str()), ("type", type_)],
            limit,
        )
        .await;
    }
    let asked_back = tap
        .tags("presence")
        .into_iter()
        .any(|t| t.contains(&format!(" from='{bob_jid}'")) && t.contains(" type='subscribe'"));
    assert!(!asked_back, "a contact does not ask back");
    app.shutdown().await;
}

/// A kick (Biboumi's `simple_kick` scenario): the occupant's unavailable presence has 307,
/// the kicker as `<actor nick='…'/>` in the item and the kicker's reason as it was given;
/// the kicked user's own presence likewise, with 110.
#[tokio::test]
async fn a_kick_names_the_kicker_as_actor() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #kick").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #kick").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("kick").await;
    let kick = room("kick");
    join(&mut alice, &kick, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    for (nick, reason, own) in [("carol", "behave", false), ("alice", "enough", true)] {
        bob.send(&format!("KICK #kick {nick} :{reason}")).await;
        let occupant = format!("{kick}/{nick}");
        let k = alice
            .expect(&format!("{nick} kicked"), |s| {
                presence_from(s, &occupant) && s.attr("type") == Some("unavailable")
            })
            .await;
        let xml = String::from(&k);
        assert!(codes(&k).contains(&307), "{xml}");
        assert_eq!(codes(&k).contains(&110), own, "{xml}");
        assert_eq!(item_reason(&k).as_deref(), Some(reason), "{xml}");
        let actor = k
            .get_child("x", MUC_USER)
            .and_then(|x| x.get_child("item", MUC_USER))
            .and_then(|i| i.get_child("actor", MUC_USER))
            .and_then(|a| a.attr("nick"));
        assert_eq!(actor, Some("bob"), "{xml}");
    }
    w.app.shutdown().await;
}

/// `/mode …` typed in a room (as in Biboumi) runs `MODE` on the channel and is never
/// posted: a `+k` key must not reach the channel as text, nor come back as a message.
#[tokio::test]
async fn a_mode_command_in_a_room_is_run_not_posted() {
    let w = World::start(Ircd::start()).await;
    let mut alice = w.alice("mode").await;
    let modek = room("modek");
    join(&mut alice, &modek, "alice").await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #modek").await;
    bob.expect(|l| l.contains(" 366 ")).await;

    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{modek}' id='k1'><body>/mode +k SECRET</body></message>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("MODE #modek +k"))
        .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='groupchat' to='{modek}' id='k2'><body>after the key</body></message>"
        )))
        .await;
    let lines = bob.collect_for(Duration::from_millis(800)).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("PRIVMSG #modek :after the key")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("PRIVMSG") && l.contains("SECRET")),
        "the key was posted: {lines:?}"
    );
    alice
        .expect("the next message's reflection", |s| {
            body(s).as_deref() == Some("after the key")
        })
        .await;
    // The room tells the mode change, from its own JID (as IRC shows it to everyone in the
    // channel); the command itself is never a message from alice.
    let alice_occupant = format!("{modek}/alice");
    alice
        .expect_none(
            "the command as a message",
            Duration::from_millis(300),
            |s| {
                s.attr("from") == Some(alice_occupant.as_str())
                    && body(s).is_some_and(|b| b.contains("SECRET"))
            },
        )
        .await;
    w.app.shutdown().await;
}

/// A resource that bounces a room message (Biboumi's `client_error` scenario) is taken out
/// of the room: it alone gets its unavailable self-presence and no more of the room's
/// messages; the other resource stays and the channel is not parted.
#[tokio::test]
async fn a_resource_that_bounces_a_room_message_leaves_the_room() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #bounce").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut phone = w.alice("phone").await;
    let mut laptop = w.alice("laptop").await;
    let bounce = room("bounce");
    join(&mut phone, &bounce, "alice").await;
    join(&mut laptop, &bounce, "alice").await;
    let me = format!("{bounce}/alice");

    phone
        .send(el(&format!(
            "<message xmlns='jabber:client' to='{me}' type='error'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )))
        .await;
    phone
        .expect("the bouncing resource's unavailable self-presence", |s| {
            presence_from(s, &me)
                && s.attr("type") == Some("unavailable")
                && codes(s).contains(&110)
        })
        .await;
    bob.send("PRIVMSG #bounce :still there?").await;
    laptop
        .expect_message_body(&format!("{bounce}/bob"), "still there?")
        .await;
    laptop
        .expect_none(
            "an unavailable self-presence on the other resource",
            Duration::from_millis(200),
            |s| presence_from(s, &me) && s.attr("type") == Some("unavailable"),
        )
        .await;
    phone
        .expect_none(
            "room messages after the bounce",
            Duration::from_millis(300),
            |s| body(s).as_deref() == Some("still there?"),
        )
        .await;
    let lines = bob.collect_for(Duration::from_millis(300)).await;
    assert!(
        !lines.iter().any(|l| l.contains("PART")),
        "the channel was parted: {lines:?}"
    );
    w.app.shutdown().await;
}

/// XEP-0092 on an occupant (as Biboumi): the gateway sends the nick a CTCP VERSION and
/// turns the NOTICE reply into the answer; a nick that never replies gets
/// `remote-server-timeout` after about 10 s.
#[tokio::test]
async fn an_occupants_version_is_asked_with_ctcp() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #ver").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #ver").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("ver").await;
    let ver = room("ver");
    join(&mut alice, &ver, "alice").await;

    alice
        .send(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{ver}/bob' id='v1'><query xmlns='jabber:iq:version'/></iq>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("PRIVMSG bob :\u{1}VERSION\u{1}"))
        .await;
    bob.send("NOTICE alice :\u{1}VERSION rawclient 2.0 - TestOS 1\u{1}")
        .await;
    let answer = alice
        .expect("the version answer", |s| {
            s.name() == "iq" && s.attr("id") == Some("v1")
        })
        .await;
    let xml = String::from(&answer);
    assert_eq!(answer.attr("type"), Some("result"), "{xml}");
    let q = answer
        .get_child("query", "jabber:iq:version")
        .expect("a version query");
    let field = |name: &str| q.get_child(name, "jabber:iq:version").map(|c| c.text());
    assert_eq!(field("name").as_deref(), Some("rawclient"), "{xml}");
    assert_eq!(field("version").as_deref(), Some("2.0"), "{xml}");
    assert_eq!(field("os").as_deref(), Some("TestOS 1"), "{xml}");

    alice
        .send(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{ver}/carol' id='v2'><query xmlns='jabber:iq:version'/></iq>"
        )))
        .await;
    carol
        .expect(|l| l.contains("PRIVMSG carol :\u{1}VERSION\u{1}"))
        .await;
    let answer = alice
        .expect_within("the timeout", Duration::from_secs(15), |s| {
            s.name() == "iq" && s.attr("id") == Some("v2")
        })
        .await;
    assert_eq!(answer.attr("type"), Some("error"));
    let (condition, text) = error_of(&answer).expect("an error");
    assert_eq!(condition, "remote-server-timeout", "{text}");
    assert!(text.contains("carol"), "{text}");
    w.app.shutdown().await;
}

/// A room's disco#info lists what the room answers (ad-hoc commands, ping, version, MAM,
/// stable ids) and, for a user in it, the `muc#roominfo` form with the occupant count, as
/// Biboumi's `muc_disco_info` scenario expects; the room answers a version query itself.
#[tokio::test]
async fn a_rooms_disco_info_says_what_it_answers_and_who_is_there() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #info").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("info").await;
    let info = room("info");
    let disco = el(&format!(
        "<iq xmlns='jabber:client' type='get' to='{info}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    ));
    let roominfo = |answer: &Element| {
        answer
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .and_then(|q| q.get_child("x", "jabber:x:data"))
            .map(|x| {
                x.children()
                    .filter_map(|f| {
                        let value = f.get_child("value", "jabber:x:data")?.text();
                        Some((f.attr("var")?.to_owned(), value))
                    })
                    .collect::<Vec<_>>()
            })
    };
    let before = alice.iq(disco.clone()).await;
    let xml = String::from(&before);
    for feature in [
        "http://jabber.org/protocol/commands",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:mam:2",
        "urn:xmpp:sid:0",
        "muc_nonanonymous",
    ] {
        assert!(
            xml.contains(&format!("var='{feature}'")),
            "{feature}: {xml}"
        );
    }
    assert_eq!(roominfo(&before), None, "not in the room: no count. {xml}");

    join(&mut alice, &info, "alice").await;
    let after = alice.iq(disco).await;
    assert_eq!(
        roominfo(&after),
        Some(vec![
            (
                "FORM_TYPE".to_owned(),
                "http://jabber.org/protocol/muc#roominfo".to_owned()
            ),
            ("muc#roominfo_occupants".to_owned(), "2".to_owned()),
        ]),
        "{}",
        String::from(&after)
    );

    let version = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{info}'><query xmlns='jabber:iq:version'/></iq>"
        )))
        .await;
    assert_eq!(
        version.attr("type"),
        Some("result"),
        "{}",
        String::from(&version)
    );
    assert!(String::from(&version).contains("<name>Estuary</name>"));
    w.app.shutdown().await;
}

/// An unavailable presence to the bare room JID leaves the room (Biboumi takes it so, and
/// its join_history_limit scenario leaves that way): the self-presence (110), and the
/// channel is parted.
#[tokio::test]
async fn leaving_by_the_bare_room_jid() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #bare").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("bare").await;
    let bare = room("bare");
    join(&mut alice, &bare, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{bare}' type='unavailable'/>"
        )))
        .await;
    let gone = alice
        .expect("the unavailable self-presence", |s| {
            presence_from(s, &format!("{bare}/alice")) && s.attr("type") == Some("unavailable")
        })
        .await;
    assert!(codes(&gone).contains(&110), "{}", String::from(&gone));
    bob.expect(|l| l.starts_with(":alice") && l.contains("PART") && l.contains("#bare"))
        .await;
    w.app.shutdown().await;
}

/// XEP-0092 on one's own occupant: the gateway answers with its own name and version at
/// once (it is what others on IRC get from a CTCP VERSION to the user), without a CTCP
/// sent to the user's own nick (which would come back to this gateway and time out).
#[tokio::test]
async fn ones_own_occupants_version_is_the_gateways() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #myver").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("myver").await;
    let myver = room("myver");
    join(&mut alice, &myver, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;

    let answer = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{myver}/alice'><query xmlns='jabber:iq:version'/></iq>"
        )))
        .await;
    let xml = String::from(&answer);
    assert_eq!(answer.attr("type"), Some("result"), "{xml}");
    let q = answer
        .get_child("query", "jabber:iq:version")
        .expect("a version query");
    let field = |name: &str| q.get_child(name, "jabber:iq:version").map(|c| c.text());
    assert_eq!(field("name").as_deref(), Some("Estuary"), "{xml}");
    assert_eq!(
        field("version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "{xml}"
    );
    // bob (in the channel) saw no CTCP go by, nor did anything reach IRC for it.
    let lines = bob.collect_for(Duration::from_millis(300)).await;
    assert!(!lines.iter().any(|l| l.contains("VERSION")), "{lines:?}");
    w.app.shutdown().await;
}

/// A join to a server that cannot be reached fails with `remote-server-not-found` and the
/// reason, and nothing else changes: the gateway's presence does not say "reconnecting"
/// (nothing is), and the channel on the working server goes on.
#[tokio::test]
async fn an_unreachable_server_does_not_leave_the_gateway_reconnecting() {
    let closed = common::ports::free_port();
    let w = World::start_extra(
        Ircd::start(),
        &format!("[bridges.irc.servers.\"localhost\"]\nport = {closed}\ntls = false\n"),
    )
    .await;
    let mut alice = w.alice("unreach").await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{DOMAIN}' type='subscribe'/>"
        )))
        .await;
    let ok_room = room("ok");
    join(&mut alice, &ok_room, "alice").await;
    let (condition, text) = refused(
        &mut alice,
        &format!("#gone%localhost@{DOMAIN}/alice"),
        Some(""),
        "the join to the unreachable server",
    )
    .await;
    assert_eq!(condition, "remote-server-not-found", "{text}");
    alice
        .expect_none(
            "a gateway presence saying reconnecting",
            Duration::from_secs(2),
            |s| {
                s.name() == "presence"
                    && s.attr("from") == Some(DOMAIN)
                    && status(s).is_some_and(|t| t.contains("reconnecting"))
            },
        )
        .await;
    w.app.shutdown().await;
}

// Biboumi's ad-hoc commands and forms, under Biboumi's nodes and field names.

/// Runs `node` on `jid`: executes it, then (with `form`) submits that `<x/>` in the same
/// session. Returns the last answer.
async fn run_command(
    client: &mut TestClient,
    jid: &str,
    node: &str,
    form: Option<&str>,
) -> Element {
    let first = client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{jid}'><command xmlns='{COMMANDS}' node='{node}' action='execute'/></iq>"
        )))
        .await;
    let Some(form) = form else { return first };
    let session = first
        .get_child("command", COMMANDS)
        .and_then(|c| c.attr("sessionid"))
        .unwrap_or_else(|| panic!("a command session: {}", String::from(&first)))
        .to_string();
    client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{jid}'><command xmlns='{COMMANDS}' node='{node}' sessionid='{session}' action='complete'>{form}</command></iq>"
        )))
        .await
}

/// A command answer's status and note.
fn command_result(answer: &Element) -> (String, String) {
    let c = answer
        .get_child("command", COMMANDS)
        .unwrap_or_else(|| panic!("a command: {}", String::from(answer)));
    let note = c
        .get_child("note", COMMANDS)
        .map(|n| n.text())
        .unwrap_or_default();
    (c.attr("status").unwrap_or_default().to_string(), note)
}

/// The nodes of the commands `jid` lists to `client`.
async fn command_nodes(client: &mut TestClient, jid: &str) -> Vec<String> {
    let items = client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='get' to='{jid}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        )))
        .await;
    items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .map(|q| {
            q.children()
                .filter(|i| i.attr("jid") == Some(jid))
                .filter_map(|i| i.attr("node").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A server's `configure` with Biboumi's fields: the form has Biboumi's title and fields,
/// a bad value is refused naming the field (nothing stored), the values come back, and
/// the next connection uses them: the nick, username, realname and the after-connect
/// commands are what the IRC server sees.
#[tokio::test]
async fn biboumi_server_configure_takes_effect() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    let mut alice = w.alice("bcfg").await;
    assert!(
        command_nodes(&mut alice, SERVER_JID)
            .await
            .iter()
            .any(|n| n == "get-irc-connection-info"),
        "the server lists Biboumi's command"
    );

    let form = run_command(&mut alice, SERVER_JID, "configure", None).await;
    let text = String::from(&form);
    assert!(
        text.contains("Configure the IRC server 127.0.0.1")
            && text
                .contains("Edit the form, to configure the settings of the IRC server 127.0.0.1"),
        "{text}"
    );
    for var in [
        "ports",
        "tls_ports",
        "verify_cert",
        "pass",
        "after_connect_commands",
        "nick",
        "username",
        "realname",
        "throttle_limit",
        "max_history_length",
        "encoding_in",
        "encoding_out",
        "sasl_password",
    ] {
        assert!(
            text.contains(&format!("var='{var}'")) || text.contains(&format!("var=\"{var}\"")),
            "{var} in {text}"
        );
    }
    assert_eq!(form_values(&form, "verify_cert"), ["true"]);

    // Biboumi's configure_bad_value: refused here, naming the field; nothing stored.
    let refused = configure(
        &mut alice,
        SERVER_JID,
        Some(&[("nick", "confnick"), ("throttle_limit", "bleh")]),
    )
    .await;
    let (condition, why) = error_of(&refused).expect("an error");
    assert_eq!(condition, "not-acceptable", "{why}");
    assert!(
        why.contains("throttle_limit") && why.contains("bleh"),
        "{why}"
    );
    let refused = configure(&mut alice, SERVER_JID, Some(&[("encoding_out", "latin-1")])).await;
    let (condition, why) = error_of(&refused).expect("an error");
    assert_eq!(condition, "not-acceptable");
    assert!(why.contains("encoding_out"), "{why}");
    assert!(
        form_values(
            &run_command(&mut alice, SERVER_JID, "configure", None).await,
            "nick"
        )
        .is_empty()
    );

    let port = w.ircd.port.to_string();
    let submitted = format!(
        "<x xmlns='jabber:x:data' type='submit'>\
         <field var='ports'><value>{port}</value></field>\
         <field var='tls_ports'/>\
         <field var='nick'><value>confnick</value></field>\
         <field var='username'><value>confuser</value></field>\
         <field var='realname'><value>Conf Real</value></field>\
         <field var='after_connect_commands'><value>PRIVMSG bob :after one</value><value>PRIVMSG bob :after two</value></field>\
         <field var='throttle_limit'><value>9999</value></field>\
         <field var='max_history_length'><value>69</value></field>\
         <field var='encoding_in'><value>latin-1</value></field>\
         <field var='encoding_out'><value>UTF-8</value></field>\
         </x>"
    );
    let done = run_command(&mut alice, SERVER_JID, "configure", Some(&submitted)).await;
    assert_eq!(
        command_result(&done),
        (
            "completed".into(),
            "Configuration successfully applied.".into()
        )
    );
    let form = run_command(&mut alice, SERVER_JID, "configure", None).await;
    assert_eq!(form_values(&form, "ports"), [port]);
    assert_eq!(
        form_values(&form, "after_connect_commands"),
        ["PRIVMSG bob :after one", "PRIVMSG bob :after two"]
    );
    // Biboumi's users write 9999 for "no flood control": taken (the admin's cap still
    // applies, see "Limits").
    assert_eq!(form_values(&form, "throttle_limit"), ["9999"]);
    assert_eq!(form_values(&form, "max_history_length"), ["69"]);
    assert_eq!(form_values(&form, "encoding_in"), ["latin-1"]);
    // Cancelling a started configure is answered as XEP-0050 says.
    let session = form
        .get_child("command", COMMANDS)
        .and_then(|c| c.attr("sessionid"))
        .expect("a session")
        .to_string();
    let cancelled = alice
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{SERVER_JID}'><command xmlns='{COMMANDS}' node='configure' sessionid='{session}' action='cancel'/></iq>"
        )))
        .await;
    assert_eq!(command_result(&cancelled).0, "canceled");

    // The join uses them.
    join(&mut alice, &room("bcfg"), "someone").await;
    bob.expect(|l| l.starts_with(":confnick!") && l.contains("PRIVMSG bob :after one"))
        .await;
    bob.expect(|l| l.starts_with(":confnick!") && l.contains("PRIVMSG bob :after two"))
        .await;
    let whois = whois_until(&mut bob, "confnick", |l| l.contains(" 311 ")).await;
    assert!(
        whois.contains("confuser") && whois.ends_with(":Conf Real"),
        "the username and realname: {whois}"
    );
    w.app.shutdown().await;
}

/// A channel made persistent through `muc#owner` (and seen in its `configure` command)
/// stays joined on IRC when the user leaves the room; without it the channel is parted.
#[tokio::test]
async fn biboumi_persistent_channel_stays_joined() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #pers").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("pers").await;
    let chan = room("pers");
    join(&mut alice, &chan, "alice").await;
    bob.expect(|l| l.starts_with(":alice!") && l.contains("JOIN"))
        .await;

    assert!(
        command_nodes(&mut alice, &chan)
            .await
            .iter()
            .any(|n| n == "configure")
    );
    let owner = |kind: &str, inner: &str| {
        el(&format!(
            "<iq xmlns='jabber:client' type='{kind}' to='{chan}'><query xmlns='http://jabber.org/protocol/muc#owner'>{inner}</query></iq>"
        ))
    };
    let form = alice.iq(owner("get", "")).await;
    assert_eq!(
        form_values(&form, "persistent"),
        ["false"],
        "{}",
        String::from(&form)
    );
    assert_eq!(form_values(&form, "record_history"), ["unset"]);
    let bad = alice
        .iq(owner("set", &submit_form(&[("persistent", "maybe")])))
        .await;
    let (condition, why) = error_of(&bad).expect("an error");
    assert_eq!(condition, "not-acceptable");
    assert!(why.contains("persistent"), "{why}");
    let set = alice
        .iq(owner("set", &submit_form(&[("persistent", "true")])))
        .await;
    assert_eq!(set.attr("type"), Some("result"), "{}", String::from(&set));
    let cancelled = alice
        .iq(owner("set", "<x xmlns='jabber:x:data' type='cancel'/>"))
        .await;
    assert_eq!(cancelled.attr("type"), Some("result"));
    let form = run_command(&mut alice, &chan, "configure", None).await;
    assert_eq!(form_values(&form, "persistent"), ["true"]);
    assert!(String::from(&form).contains("Configure the IRC channel #pers on server 127.0.0.1"));

    // alice is op in the channel.
    bob.send("MODE #pers +o alice").await;
    alice
        .expect("alice a moderator", |s| {
            presence_from(s, &format!("{chan}/alice"))
                && item(s).is_some_and(|i| i.0 == "moderator")
        })
        .await;

    // Leaving: the user is out of the room, the gateway stays in the channel, and the
    // unavailable self-presence keeps the place alice still has there (as Biboumi's).
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{chan}/alice' type='unavailable'/>"
        )))
        .await;
    let gone = alice
        .expect("the unavailable self-presence", |s| {
            s.name() == "presence"
                && s.attr("type") == Some("unavailable")
                && codes(s).contains(&110)
        })
        .await;
    assert_eq!(
        item(&gone),
        Some(("moderator".into(), "admin".into())),
        "{}",
        String::from(&gone)
    );
    let lines = bob.collect_for(Duration::from_secs(2)).await;
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("PART") || l.contains("QUIT")),
        "the persistent channel is kept: {lines:?}"
    );
    bob.send("PRIVMSG #pers :while you were away").await;
    // Back in the room: the channel was never left, and what was said is history.
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{chan}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )))
        .await;
    alice
        .expect("what was said while away", |s| {
            body(s).as_deref() == Some("while you were away")
        })
        .await;

    // Not persistent any more: leaving parts the channel.
    let set = alice
        .iq(owner("set", &submit_form(&[("persistent", "false")])))
        .await;
    assert_eq!(set.attr("type"), Some("result"));
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{chan}/alice' type='unavailable'/>"
        )))
        .await;
    bob.expect(|l| l.starts_with(":alice!") && l.contains("PART"))
        .await;
    w.app.shutdown().await;
}

/// `get-irc-connection-info` on the server JID, and `disconnect-from-irc-server` on the
/// domain (a form of the servers the user is on, then the quit with its message).
#[tokio::test]
async fn biboumi_connection_info_and_disconnect_from_server() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #info").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("info").await;
    let info = run_command(&mut alice, SERVER_JID, "get-irc-connection-info", None).await;
    assert_eq!(
        command_result(&info),
        (
            "completed".into(),
            "You are not connected to the IRC server 127.0.0.1".into()
        )
    );
    let chan = room("info");
    join(&mut alice, &chan, "alice").await;
    let info = run_command(&mut alice, SERVER_JID, "get-irc-connection-info", None).await;
    let (_, note) = command_result(&info);
    let first = format!(
        "Connected to IRC server 127.0.0.1 on port {} since ",
        w.ircd.port
    );
    assert!(note.starts_with(&first), "{note}");
    assert!(
        note.contains(" seconds ago).\n#info from 1 resource: info"),
        "{note}"
    );

    let nothing = run_command(&mut alice, DOMAIN, "disconnect-from-irc-server", None).await;
    let text = String::from(&nothing);
    assert_eq!(command_result(&nothing).0, "executing", "{text}");
    assert!(
        text.contains("irc-servers") && text.contains("127.0.0.1"),
        "{text}"
    );
    let done = run_command(
        &mut alice,
        DOMAIN,
        "disconnect-from-irc-server",
        Some(&submit_form(&[
            ("irc-servers", "127.0.0.1"),
            ("quit-message", "Disconnected by e2e"),
        ])),
    )
    .await;
    // The second step's answer; the first step started the session.
    assert_eq!(
        command_result(&done),
        (
            "completed".into(),
            "alice@localhost was disconnected from 1 IRC server.".into()
        ),
        "{}",
        String::from(&done)
    );
    let gone = alice
        .expect("the room is left", |s| {
            s.name() == "presence"
                && s.attr("type") == Some("unavailable")
                && s.attr("from") == Some(&format!("{chan}/alice"))
        })
        .await;
    assert_eq!(status(&gone).as_deref(), Some("Disconnected by e2e"));
    bob.expect(|l| {
        l.starts_with(":alice!") && l.contains("QUIT") && l.contains("Disconnected by e2e")
    })
    .await;
    let info = run_command(&mut alice, SERVER_JID, "get-irc-connection-info", None).await;
    assert_eq!(
        command_result(&info).1,
        "You are not connected to the IRC server 127.0.0.1"
    );
    w.app.shutdown().await;
}

/// The domain's commands: Biboumi's `ping`, `hello` and the global `configure` for
/// everyone; `disconnect-user` listed for admins only, refused to others with `forbidden`
/// and a text, and run by an admin (the user leaves their rooms, with the message).
#[tokio::test]
async fn biboumi_domain_commands_and_admin_only_ones() {
    let w = World::start_extra(Ircd::start(), "admins = [\"boss@localhost\"]").await;
    w.server.register("boss", "bosspw").await;
    let mut alice = w.alice("dom").await;
    let mut boss = TestClient::connect(&w.server, "boss", "bosspw", "dom").await;

    let nodes = command_nodes(&mut alice, DOMAIN).await;
    for node in ["configure", "ping", "hello", "disconnect-from-irc-server"] {
        assert!(nodes.iter().any(|n| n == node), "{node} in {nodes:?}");
    }
    assert!(!nodes.iter().any(|n| n == "disconnect-user"), "{nodes:?}");
    assert!(
        command_nodes(&mut boss, DOMAIN)
            .await
            .iter()
            .any(|n| n == "disconnect-user")
    );

    let refused = run_command(&mut alice, DOMAIN, "disconnect-user", None).await;
    let (condition, why) = error_of(&refused).expect("an error");
    assert_eq!(condition, "forbidden");
    assert!(why.contains("admins"), "{why}");

    let pong = run_command(&mut alice, DOMAIN, "ping", None).await;
    assert_eq!(command_result(&pong), ("completed".into(), "Pong".into()));
    let hello = run_command(
        &mut alice,
        DOMAIN,
        "hello",
        Some(&submit_form(&[("name", "COUCOU")])),
    )
    .await;
    assert_eq!(command_result(&hello).1, "Hello COUCOU!");
    let incomplete = run_command(
        &mut alice,
        DOMAIN,
        "hello",
        Some("<x xmlns='jabber:x:data' type='submit'/>"),
    )
    .await;
    assert_eq!(incomplete.attr("type"), Some("error"));

    // The global settings (Biboumi's global configure).
    let form = run_command(&mut alice, DOMAIN, "configure", None).await;
    assert!(String::from(&form).contains("Configure some global default settings."));
    assert_eq!(form_values(&form, "max_history_length"), ["20"]);
    assert_eq!(form_values(&form, "record_history"), ["true"]);
    assert_eq!(form_values(&form, "persistent"), ["false"]);
    let done = run_command(
        &mut alice,
        DOMAIN,
        "configure",
        Some(&submit_form(&[
            ("record_history", "0"),
            ("max_history_length", "42"),
        ])),
    )
    .await;
    assert_eq!(
        command_result(&done).1,
        "Configuration successfully applied."
    );
    let form = run_command(&mut alice, DOMAIN, "configure", None).await;
    assert_eq!(form_values(&form, "max_history_length"), ["42"]);
    assert_eq!(form_values(&form, "record_history"), ["false"]);

    // The admin disconnects alice.
    let chan = room("dom");
    join(&mut alice, &chan, "alice").await;
    let form = run_command(&mut boss, DOMAIN, "disconnect-user", None).await;
    assert!(
        String::from(&form).contains("alice@localhost"),
        "{}",
        String::from(&form)
    );
    let done = run_command(
        &mut boss,
        DOMAIN,
        "disconnect-user",
        Some(&submit_form(&[
            ("jids", "alice@localhost"),
            ("quit-message", "Bye from admin"),
        ])),
    )
    .await;
    assert_eq!(command_result(&done).1, "1 user has been disconnected.");
    let gone = alice
        .expect("alice's room is left", |s| {
            s.name() == "presence"
                && s.attr("type") == Some("unavailable")
                && s.attr("from") == Some(&format!("{chan}/alice"))
        })
        .await;
    assert_eq!(status(&gone).as_deref(), Some("Bye from admin"));
    let bad = run_command(
        &mut boss,
        DOMAIN,
        "disconnect-user",
        Some(&submit_form(&[("jids", "nobody@localhost")])),
    )
    .await;
    assert_eq!(
        error_of(&bad).map(|e| e.0).as_deref(),
        Some("not-acceptable")
    );
    w.app.shutdown().await;
}

/// Occupant JIDs as Biboumi gives them: someone who joins while the user is in the room is
/// `nick%server@gw/user@host` (from the JOIN's prefix), and so is the user in their own
/// self-presence; members listed by NAMES, which gives no address, are the bare contact JID.
#[tokio::test]
async fn occupant_jids_carry_user_and_host_as_biboumi_shows_them() {
    let w = World::start(Ircd::start_ngircd()).await;
    let mut carol = Raw::connect(w.ircd.port, "carol").await;
    carol.send("JOIN #who").await;
    carol.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("who").await;
    let who = room("who");
    let me = join(&mut alice, &who, "alice").await;
    let own = item_attr(&me, "jid").unwrap_or_default();
    let own_resource = own
        .strip_prefix(&format!("alice%127.0.0.1@{DOMAIN}/"))
        .unwrap_or_default();
    assert!(
        own_resource.ends_with("@127.0.0.1"),
        "the self-presence shows the user's IRC identity, user@host: {}",
        String::from(&me)
    );

    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #who").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let occupant = format!("{who}/bob");
    let p = alice
        .expect("bob's join", |s| {
            presence_from(s, &occupant) && s.attr("type").is_none()
        })
        .await;
    let jid = item_attr(&p, "jid").unwrap_or_default();
    let (bare, resource) = jid.split_once('/').unwrap_or((&jid, ""));
    assert_eq!(
        bare,
        format!("bob%127.0.0.1@{DOMAIN}"),
        "{}",
        String::from(&p)
    );
    assert!(
        resource.trim_start_matches('~') == "bob@127.0.0.1",
        "the resource is bob's user@host: {}",
        String::from(&p)
    );
    w.app.shutdown().await;
}

/// A channel mode change is told in the room from the room's JID, as Biboumi tells it:
/// `Mode #chan [+k SECRET] by bob`.
#[tokio::test]
async fn a_mode_change_is_told_in_the_room() {
    let w = World::start(Ircd::start()).await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #modes").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let mut alice = w.alice("modes").await;
    let modes = room("modes");
    join(&mut alice, &modes, "alice").await;
    bob.expect(|l| l.starts_with(":alice") && l.contains("JOIN"))
        .await;
    bob.send("MODE #modes +v alice").await;
    let m = alice
        .expect("the mode change, told by the room", |s| {
            s.name() == "message" && body(s).is_some_and(|b| b.starts_with("Mode #modes"))
        })
        .await;
    assert_eq!(m.attr("from"), Some(modes.as_str()), "{}", String::from(&m));
    assert_eq!(m.attr("type"), Some("groupchat"));
    assert_eq!(body(&m).as_deref(), Some("Mode #modes [+v alice] by bob"));
    w.app.shutdown().await;
}

/// Sends a muc#admin `<item nick='…' {attrs}/>` to `room` and returns the answer.
async fn admin_item(client: &mut TestClient, room: &str, nick: &str, attrs: &str) -> Element {
    client
        .iq(el(&format!(
            "<iq xmlns='jabber:client' type='set' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='{nick}' {attrs}/></query></iq>"
        )))
        .await
}

/// Voice and op through muc#admin (XEP-0045 §8.3–§8.6, §9.3–§9.5, as Biboumi's users do
/// it): each role or affiliation becomes the IRC `MODE` that gives it, taking higher modes
/// away, and the occupant's presence follows the server's `MODE`; a nick not in the
/// channel is `item-not-found`, and where the user is not op the server's refusal is a
/// `forbidden` error with its text.
#[tokio::test]
async fn voice_and_op_through_muc_admin() {
    let w = World::start(Ircd::start()).await;
    let stage = room("stage");
    let bob_jid = format!("{stage}/bob");
    let mut alice = w.alice("stage").await;
    // alice opens the channel, so she is its op.
    let me = join(&mut alice, &stage, "alice").await;
    assert_eq!(item(&me), Some(("moderator".into(), "admin".into())));
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #stage").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    alice
        .expect("bob joins", |s| presence_from(s, &bob_jid))
        .await;

    // (what is asked, the MODE bob sees, bob's (role, affiliation) after it)
    let steps = [
        (
            "role='participant'",
            "MODE #stage +v bob",
            ("participant", "member"),
        ),
        (
            "role='moderator'",
            "MODE #stage +o bob",
            ("moderator", "admin"),
        ),
        (
            "affiliation='member'",
            "MODE #stage -o bob",
            ("participant", "member"),
        ),
        (
            "affiliation='admin'",
            "MODE #stage +o bob",
            ("moderator", "admin"),
        ),
        (
            "affiliation='none'",
            "MODE #stage -ov bob bob",
            ("participant", "none"),
        ),
    ];
    for (attrs, mode, (role, affiliation)) in steps {
        let answer = admin_item(&mut alice, &stage, "bob", attrs).await;
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "{attrs}: {}",
            String::from(&answer)
        );
        // InspIRCd writes the last nick as a trailing parameter (`:bob`).
        bob.expect(|l| l.starts_with(":alice") && l.replace(" :", " ").contains(mode))
            .await;
        // One presence per MODE line (`-ov bob bob` too), with where bob ends up.
        let p = alice.expect(mode, |s| presence_from(s, &bob_jid)).await;
        assert_eq!(
            item(&p),
            Some((role.into(), affiliation.into())),
            "{attrs}: {}",
            String::from(&p)
        );
    }
    // A change that changes nothing is answered without a MODE line.
    let answer = admin_item(&mut alice, &stage, "bob", "role='visitor'").await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        String::from(&answer)
    );
    let lines = bob.collect_for(Duration::from_millis(300)).await;
    assert!(!lines.iter().any(|l| l.contains(" MODE ")), "{lines:?}");

    // Someone not in the channel.
    let answer = admin_item(&mut alice, &stage, "nobody", "role='participant'").await;
    let (condition, text) = error_of(&answer).expect("an error element");
    assert_eq!(condition, "item-not-found", "{text}");
    // Bad values are refused before anything is sent.
    let answer = admin_item(&mut alice, &stage, "bob", "role='boss'").await;
    assert_eq!(
        error_of(&answer).map(|e| e.0).as_deref(),
        Some("bad-request")
    );

    // In bob's own channel alice is not op: taking bob's op away (a visitor has no
    // mode) is refused by the server, with its text.
    bob.send("JOIN #bobs").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let bobs = room("bobs");
    join(&mut alice, &bobs, "alice").await;
    let answer = admin_item(&mut alice, &bobs, "bob", "role='visitor'").await;
    let (condition, text) = error_of(&answer).expect("an error element");
    assert_eq!(condition, "forbidden", "{text}");
    assert!(text.starts_with("#bobs: "), "{text}");
    w.app.shutdown().await;
}

/// A muc#admin change that would change nothing (the member already has that standing)
/// is still sent to the server when the user is not op there, so that the server's
/// refusal (482) is the answer, as with Biboumi; an op's is answered at once, as before.
#[tokio::test]
async fn a_change_that_changes_nothing_is_refused_for_a_non_op() {
    let w = World::start(Ircd::start()).await;
    let mut alice = w.alice("bobs").await;
    let mut bob = Raw::connect(w.ircd.port, "bob").await;
    bob.send("JOIN #bobs").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let bobs = room("bobs");
    let me = join(&mut alice, &bobs, "alice").await;
    assert_eq!(item(&me), Some(("participant".into(), "none".into())));
    // bob is op already, alice has no mode: neither change would change anything.
    for (nick, attrs) in [("bob", "affiliation='admin'"), ("alice", "role='visitor'")] {
        let answer = admin_item(&mut alice, &bobs, nick, attrs).await;
        let (condition, text) = error_of(&answer)
            .unwrap_or_else(|| panic!("{attrs}: an error, got {}", String::from(&answer)));
        assert_eq!(condition, "forbidden", "{attrs}: {text}");
        assert!(text.starts_with("#bobs: "), "{text}");
    }
    // Nothing was changed on the server's side.
    let lines = bob.collect_for(Duration::from_millis(300)).await;
    assert!(!lines.iter().any(|l| l.contains(" MODE ")), "{lines:?}");
    w.app.shutdown().await;
}

/// While a connection opens, the server's JID tells the user how it goes, in Biboumi's
/// words: each port tried ("Connecting to host:port (encrypted)"), its failure
/// ("Connection failed: …"), and the port that answered ("Connected to IRC server.").
/// Here the TLS port is closed and the plain one is InspIRCd's.
#[tokio::test]
async fn connection_progress_is_told_from_the_server_jid() {
    let ircd = Ircd::start();
    let closed = common::ports::free_port();
    let irc = format!(
        "default_tls_port = {closed}\ndefault_plain_port = {}\n",
        ircd.port
    );
    let w = World::start_with(ircd, &irc).await;
    let mut alice = w.alice("progress").await;
    join(&mut alice, &room("progress"), "alice").await;
    let server_jid = format!("127.0.0.1@{DOMAIN}");
    let expected = [
        format!("Connecting to 127.0.0.1:{closed} (encrypted)"),
        "Connection failed: ".to_owned(),
        format!("Connecting to 127.0.0.1:{} (not encrypted)", w.ircd.port),
        "Connected to IRC server.".to_owned(),
    ];
    // They came before the join's answer: read them back from what the client has seen.
    let mut seen = Vec::new();
    for line in &expected {
        let m = alice
            .expect(line, |s| {
                s.name() == "message"
                    && s.attr("from") == Some(server_jid.as_str())
                    && body(s).is_some_and(|b| b.starts_with(line.as_str()))
            })
            .await;
        seen.push(body(&m).unwrap_or_default());
    }
    assert!(
        seen[1].contains("refused"),
        "the failure says why: {seen:?}"
    );
    w.app.shutdown().await;
}

/// A user subscribed to the server's JID sees the IRC connection as its presence:
/// available once registered, unavailable when the connection ends (here a raw `QUIT`),
/// as Biboumi shows an IRC server in the roster; after unsubscribing, nothing.
#[tokio::test]
async fn the_server_jid_shows_the_connection_to_a_subscribed_user() {
    let w = World::start(Ircd::start()).await;
    let mut alice = w.alice("roster").await;
    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{SERVER_JID}' type='subscribe'/>"
        )))
        .await;
    // The gateway's own request comes after the subscription was stored.
    alice
        .expect("the server JID's subscription request", |s| {
            s.attr("from") == Some(SERVER_JID) && s.attr("type") == Some("subscribe")
        })
        .await;
    let from_server = |s: &Element, kind: Option<&str>| {
        s.name() == "presence" && s.attr("from") == Some(SERVER_JID) && s.attr("type") == kind
    };
    join(&mut alice, &room("roster"), "alice").await;
    alice
        .expect("the server JID available", |s| from_server(s, None))
        .await;
    let quit = format!(
        "<message xmlns='jabber:client' type='chat' to='{SERVER_JID}'><body>QUIT :bye</body></message>"
    );
    alice.send(el(&quit)).await;
    alice
        .expect("the server JID unavailable", |s| {
            from_server(s, Some("unavailable"))
        })
        .await;

    alice
        .send(el(&format!(
            "<presence xmlns='jabber:client' to='{SERVER_JID}' type='unsubscribe'/>"
        )))
        .await;
    // Prosody takes the answer (`unsubscribed`) as a roster change: give the gateway
    // a moment to forget the subscription instead.
    tokio::time::sleep(Duration::from_millis(500)).await;
    join(&mut alice, &room("roster2"), "alice").await;
    alice
        .expect_none(
            "a server JID presence after unsubscribing",
            Duration::from_millis(1500),
            |s| from_server(s, None),
        )
        .await;
    w.app.shutdown().await;
}
