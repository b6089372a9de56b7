//! Proves the test harness against the real servers: Prosody and ejabberd start on free
//! loopback ports, a raw tokio-xmpp component attaches to them, a real c2s client talks to it,
//! a wrong component secret is refused, and a server restart is survived.

mod common;

use common::client::bodies;
use common::{AnyServer, ServerKind, TestClient, XmppServer};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Component, Stanza};

const ECHO: &str = "echo.localhost";
const SECRET: &str = "echo-secret";

/// Connects a bare tokio-xmpp component to the server.
async fn connect_component(
    server: &impl XmppServer,
    domain: &str,
    secret: &str,
) -> Result<Component<TcpServerConnector>, tokio_xmpp::Error> {
    Component::new_plaintext(
        domain,
        secret,
        DnsConfig::addr(&server.component_addr().to_string()),
        Timeouts::tight(),
    )
    .await
}

/// A component that answers every chat message with `echo: <body>` from the JID it was sent
/// to. It reads bodies in any language (PEERS.md: `bodies.get("")` misses `xml:lang` ones).
fn spawn_echo(mut component: Component<TcpServerConnector>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(stanza) = component.next().await {
            let Stanza::Message(message) = stanza else {
                continue;
            };
            let Some((_, body)) = message.get_best_body_cloned(vec![]) else {
                continue;
            };
            let (Some(from), Some(to)) = (message.from.clone(), message.to.clone()) else {
                continue;
            };
            let reply = Message::new_with_type(MessageType::Chat, Some(from))
                .with_body(Lang::default(), format!("echo: {body}"));
            let reply = Message {
                from: Some(to),
                ..reply
            };
            if let Err(e) = component.send_stanza(reply.into()).await {
                tracing::warn!(%e, "the echo component could not reply");
                break;
            }
        }
    })
}

/// The shared scenario: component attaches, alice chats with it and gets the echo back.
async fn echo_roundtrip(kind: ServerKind) {
    common::init_tracing();
    let started = Instant::now();
    let server = AnyServer::start(kind, &[(ECHO, SECRET)]).await;
    tracing::info!(server = server.name(), elapsed = ?started.elapsed(), "server up");
    server.register("alice", "alicepw").await;

    let component = connect_component(&server, ECHO, SECRET)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the echo component could not attach to {}: {e}\n{}",
                server.name(),
                server.log_tail()
            )
        });
    let echo = spawn_echo(component);

    let mut alice = TestClient::connect(&server, "alice", "alicepw", "smoke").await;
    let to: Jid = format!("bot@{ECHO}").parse().expect("a valid JID");
    // A body with xml:lang, as slixmpp and many clients send it.
    alice
        .send(Message::chat(Some(to)).with_body(Lang::from("en"), "hello".to_string()))
        .await;
    let reply = alice
        .expect_message_body("bot@echo.localhost", "echo: hello")
        .await;
    assert_eq!(reply.attr("type"), Some("chat"));
    assert!(
        reply
            .attr("to")
            .is_some_and(|to| to.starts_with("alice@localhost/")),
        "the reply goes to alice's full JID: {}",
        String::from(&reply)
    );

    // An IQ to the server itself goes through iq() and leaves unrelated stanzas buffered.
    let version = alice
        .iq(
            tokio_xmpp::minidom::Element::builder("iq", common::client::JABBER_CLIENT)
                .attr(common::client::name("type"), "get")
                .attr(common::client::name("to"), "localhost")
                .append(tokio_xmpp::minidom::Element::builder("query", "jabber:iq:version").build())
                .build(),
        )
        .await;
    assert_eq!(
        version.attr("type"),
        Some("result"),
        "{}",
        String::from(&version)
    );

    alice.disconnect().await;
    echo.abort();
    tracing::info!(server = server.name(), elapsed = ?started.elapsed(), "echo scenario done");
}

#[tokio::test]
async fn prosody_component_echo() {
    echo_roundtrip(ServerKind::Prosody).await;
}

#[tokio::test]
async fn ejabberd_component_echo() {
    echo_roundtrip(ServerKind::Ejabberd).await;
}

#[tokio::test]
async fn prosody_refuses_a_wrong_component_secret() {
    common::init_tracing();
    let server = common::Prosody::start(&[(ECHO, SECRET)]).await;
    match connect_component(&server, ECHO, "not-the-secret").await {
        Err(tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::ComponentFail)) => {}
        Err(other) => panic!("expected Error::Auth(ComponentFail), got {other:?}"),
        Ok(_) => panic!("Prosody accepted a wrong component secret"),
    }
    // The right secret still works afterwards.
    connect_component(&server, ECHO, SECRET)
        .await
        .expect("the right secret is accepted after a wrong one");
}

/// The shared restart scenario: the server stops and starts again on the same ports with the
/// same data; a connected client reconnects by itself and a new one logs in.
async fn stop_and_start_again(kind: ServerKind) {
    common::init_tracing();
    let mut server = AnyServer::start(kind, &[]).await;
    server.register("alice", "alicepw").await;
    server.register("bob", "bobpw").await;
    let mut alice = TestClient::connect(&server, "alice", "alicepw", "restart").await;
    let c2s = server.c2s_addr();

    let stopped = Instant::now();
    server.stop().await;
    assert!(
        !common::ports::accepts(c2s),
        "nothing may listen on {c2s} after stop()"
    );
    server.start_again().await;
    tracing::info!(server = server.name(), elapsed = ?stopped.elapsed(), "restarted");
    assert_eq!(server.c2s_addr(), c2s, "the same ports after a restart");

    // tokio-xmpp reconnects by itself (backoff 1 s, 2 s, 4 s…); the data dir kept the accounts.
    alice.wait_reconnected(Duration::from_secs(30)).await;
    let mut bob = TestClient::connect(&server, "bob", "bobpw", "restart").await;
    let to: Jid = bob.jid().clone().into();
    alice
        .send(Message::chat(Some(to)).with_body(Lang::default(), "still there?".to_string()))
        .await;
    let got = bob
        .expect_message_body("alice@localhost", "still there?")
        .await;
    assert_eq!(bodies(&got), vec!["still there?".to_string()]);
    tracing::info!(server = server.name(), elapsed = ?stopped.elapsed(), "message delivered after the restart");
}

#[tokio::test]
async fn prosody_stop_and_start_again() {
    stop_and_start_again(ServerKind::Prosody).await;
}

#[tokio::test]
async fn ejabberd_stop_and_start_again() {
    stop_and_start_again(ServerKind::Ejabberd).await;
}
