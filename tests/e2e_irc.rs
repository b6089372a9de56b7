//! End-to-end for the IRC bridge: a real Prosody, a real InspIRCd, the gateway in-process,
//! a real XMPP client on one side and a raw IRC client on the other.

mod common;
#[path = "../bridges/irc/tests/common/mod.rs"]
mod ircd;

use base64::Engine;
use common::{Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use ircd::{Ircd, Raw};
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "irc.localhost";
const SECRET: &str = "irc-secret";
const ROOM: &str = "#test%127.0.0.1@irc.localhost";

async fn start(server: &impl XmppServer, ircd: &Ircd, dir: &std::path::Path) -> App {
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
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

[bridges.irc]
domain = "{DOMAIN}"
secret = "{SECRET}"

[bridges.irc.servers."127.0.0.1"]
port = {irc_port}
tls = false
throttle = {{ lines_per_second = 50.0, burst = 50 }}
"#,
        host = component.ip(),
        port = component.port(),
        db = dir.join("estuary.db").display(),
        irc_port = ircd.port,
    );
    let settings =
        Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid");
    app::start(&settings).await.expect("the gateway starts")
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
