//! The IRC bridge against a real InspIRCd (Debian's `inspircd`), with a raw-socket client on
//! the other side and an mpsc receiver standing in for the core.

mod common;

use common::{Bridge, Ircd, Raw, trailing};
use estuary_bridge_api::{
    Affiliation, ChatKey, JoinRequest, LoginState, MemberChange, MessageKind, Outgoing,
    RemoteChatId, RemoteEvent, Role,
};
use std::time::Duration;

const ROOM: &str = "#test%127.0.0.1";

fn room() -> RemoteChatId {
    RemoteChatId::new(ROOM)
}

fn say(chat: ChatKey, body: &str) -> Outgoing {
    Outgoing {
        chat,
        body: body.into(),
        attachments: Vec::new(),
        kind: MessageKind::Normal,
        origin_id: Some(format!("origin-{}", body.len())),
        reply_to: None,
        gate: Default::default(),
    }
}

/// Bob creates #test (so he is op) and sets a topic; alice joins through the bridge.
async fn setup(ircd: &Ircd) -> (Bridge, Raw) {
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #test").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("TOPIC #test :the \x02topic\x02").await;
    bob.expect(|l| l.contains("TOPIC #test")).await;

    let mut alice = Bridge::new(ircd, "alice@localhost").await;
    alice
        .client
        .join_room(JoinRequest {
            room: room(),
            nick: "alice".into(),
            password: None,
        })
        .await
        .expect("join accepted");
    let joined = alice
        .expect("RoomJoined", |e| {
            matches!(e, RemoteEvent::RoomJoined { .. })
        })
        .await;
    let RemoteEvent::RoomJoined {
        room: r,
        own_nick,
        members,
        subject,
        subject_by,
    } = joined
    else {
        unreachable!()
    };
    assert_eq!(r, room());
    assert_eq!(own_nick, "alice");
    assert_eq!(subject, "the *topic*");
    // From RPL_TOPICWHOTIME: the subject is shown as said by its setter.
    assert_eq!(subject_by.as_deref(), Some("bob"));
    let bob_member = members
        .iter()
        .find(|m| m.nick == "bob")
        .expect("bob listed");
    assert_eq!(
        (bob_member.role, bob_member.affiliation),
        (Role::Moderator, Affiliation::Admin)
    );
    let me = members
        .iter()
        .find(|m| m.nick == "alice")
        .expect("self listed");
    assert_eq!(me.role, Role::Participant);
    bob.expect(|l| l.contains("JOIN") && l.starts_with(":alice!"))
        .await;
    (alice, bob)
}

async fn next_message(alice: &mut Bridge, what: &str) -> estuary_bridge_api::RemoteMessage {
    match alice
        .expect(what, |e| matches!(e, RemoteEvent::Message(_)))
        .await
    {
        RemoteEvent::Message(m) => m,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn join_and_room_messages_both_ways() {
    let ircd = Ircd::start();
    let (mut alice, mut bob) = setup(&ircd).await;

    // IRC → XMPP, with formatting and server-time.
    bob.send("PRIVMSG #test :hello \x02world\x02 \x0304red")
        .await;
    let m = next_message(&mut alice, "bob's message").await;
    assert_eq!(m.chat, ChatKey::Room(room()));
    assert_eq!(m.body, "hello *world* red");
    assert_eq!(m.sender.nick.as_deref(), Some("bob"));
    assert_eq!(m.sender.user.as_str(), "bob%127.0.0.1");
    assert!(!m.sender.is_from_me);
    assert!(m.at.is_some(), "server-time gives a time");
    assert!(m.id.is_some(), "msgid gives an id");

    bob.send("PRIVMSG #test :\x01ACTION waves\x01").await;
    let m = next_message(&mut alice, "bob's action").await;
    assert_eq!((m.kind, m.body.as_str()), (MessageKind::Action, "waves"));

    // XMPP → IRC.
    let sent = alice
        .client
        .send_message(say(ChatKey::Room(room()), "hi bob"))
        .await
        .unwrap();
    assert!(sent.will_echo, "InspIRCd acks echo-message");
    let l = bob.expect(|l| l.contains("PRIVMSG #test")).await;
    assert!(l.starts_with(":alice!"), "{l}");
    assert_eq!(trailing(&l), "hi bob");
    // The echo comes back as one message with the origin id.
    let echo = next_message(&mut alice, "echo").await;
    assert!(echo.sender.is_from_me);
    assert_eq!(echo.body, "hi bob");
    assert_eq!(echo.echo_of.as_deref(), Some("origin-6"));

    alice
        .client
        .send_message(say(ChatKey::Room(room()), "/me dances"))
        .await
        .unwrap();
    let l = bob.expect(|l| l.contains("PRIVMSG #test")).await;
    assert_eq!(trailing(&l), "\x01ACTION dances\x01");
    let echo = next_message(&mut alice, "action echo").await;
    assert_eq!(
        (echo.kind, echo.body.as_str()),
        (MessageKind::Action, "dances")
    );

    // A long message is split into several PRIVMSGs that re-assemble to the original.
    let long: String = (0..200).map(|i| format!("w{i:03} ")).collect::<String>() + "end";
    assert!(long.len() >= 1000);
    alice
        .client
        .send_message(say(ChatKey::Room(room()), &long))
        .await
        .unwrap();
    let mut got = String::new();
    let mut lines = 0;
    while got.len() < long.len() {
        let l = bob.expect(|l| l.contains("PRIVMSG #test")).await;
        assert!(l.len() + 2 <= 512, "line of {} bytes", l.len() + 2);
        got.push_str(trailing(&l));
        lines += 1;
    }
    assert_eq!(got, long);
    assert!(lines >= 3, "{lines} lines");
    let echo = next_message(&mut alice, "long echo").await;
    assert_eq!(echo.body, long, "the echo is reported once, whole");

    // CRLF injection never makes a command.
    alice
        .client
        .send_message(say(
            ChatKey::Room(room()),
            "hi\r\nQUIT :pwned\r\nJOIN #evil",
        ))
        .await
        .unwrap();
    let seen = bob.collect_for(Duration::from_millis(1500)).await;
    let texts: Vec<&str> = seen
        .iter()
        .filter(|l| l.contains("PRIVMSG #test"))
        .map(|l| trailing(l))
        .collect();
    assert_eq!(texts, ["hi", "QUIT :pwned", "JOIN #evil"]);
    assert!(
        !seen
            .iter()
            .any(|l| l.contains(" QUIT ") || l.starts_with(":alice!") && l.contains(" JOIN ")),
        "{seen:?}"
    );
    // Alice is still there.
    alice
        .client
        .send_message(say(ChatKey::Room(room()), "still here"))
        .await
        .unwrap();
    let l = bob.expect(|l| l.contains("PRIVMSG #test")).await;
    assert_eq!(trailing(&l), "still here");
}

#[tokio::test]
async fn private_messages_both_ways() {
    let ircd = Ircd::start();
    let (mut alice, mut bob) = setup(&ircd).await;
    bob.send("PRIVMSG alice :psst").await;
    let m = next_message(&mut alice, "private message").await;
    assert_eq!(m.chat, ChatKey::Direct("bob%127.0.0.1".into()));
    assert_eq!(m.body, "psst");
    assert_eq!(m.sender.nick, None);

    let bob_id = alice
        .client
        .resolve_identifier("bob%127.0.0.1")
        .await
        .unwrap();
    alice
        .client
        .send_message(say(ChatKey::Direct(bob_id), "hello you"))
        .await
        .unwrap();
    let l = bob.expect(|l| l.contains("PRIVMSG bob ")).await;
    assert_eq!(trailing(&l), "hello you");
    let echo = next_message(&mut alice, "private echo").await;
    assert_eq!(echo.chat, ChatKey::Direct("bob%127.0.0.1".into()));
    assert!(echo.sender.is_from_me);

    // CTCP VERSION is answered, not shown.
    bob.send("PRIVMSG alice :\x01VERSION\x01").await;
    let l = bob.expect(|l| l.contains("NOTICE bob")).await;
    assert!(trailing(&l).starts_with("\x01VERSION Estuary"), "{l}");
}

#[tokio::test]
async fn nick_change_kick_and_part() {
    let ircd = Ircd::start();
    let (mut alice, mut bob) = setup(&ircd).await;
    let mut carol = Raw::connect(ircd.port, "carol").await;
    carol.send("JOIN #test").await;
    alice
        .expect("carol joins", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Joined(m), .. } if m.nick == "carol"))
        .await;
    bob.send("MODE #test +v carol").await;
    alice
        .expect("carol voiced", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Joined(m), .. } if m.nick == "carol" && m.affiliation == Affiliation::Member))
        .await;
    carol.send("NICK carla").await;
    alice
        .expect("rename", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Renamed { old, new }, .. } if old == "carol" && new == "carla"))
        .await;
    carol.send("PART #test :bye now").await;
    alice
        .expect("part", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Left { nick, reason }, .. } if nick == "carla" && reason.as_deref() == Some("bye now")))
        .await;
    carol.send("JOIN #test").await;
    bob.send("KICK #test carla :out").await;
    alice
        .expect("kick", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Kicked { nick, by, reason }, .. } if nick == "carla" && by.as_deref() == Some("bob") && reason.as_deref() == Some("out")))
        .await;
    // Alice's own nick change.
    alice
        .client
        .set_nick(room(), "alicia".into())
        .await
        .unwrap();
    alice
        .expect("own rename", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Renamed { old, new }, .. } if old == "alice" && new == "alicia"))
        .await;
    // Alice kicked: a kick of her own nick (the core shows 307 + 110 and forgets the room).
    bob.send("KICK #test alicia :go").await;
    alice
        .expect("own kick", |e| matches!(e, RemoteEvent::MemberChanged { change: MemberChange::Kicked { nick, by, reason }, .. } if nick == "alicia" && by.as_deref() == Some("bob") && reason.as_deref() == Some("go")))
        .await;
}

#[tokio::test]
async fn join_errors_become_room_join_failed() {
    let ircd = Ircd::start();
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #locked").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("MODE #locked +k sesame").await;
    bob.expect(|l| l.contains("MODE #locked")).await;
    let mut alice = Bridge::new(&ircd, "alice@localhost").await;
    let join = |password: Option<&str>| JoinRequest {
        room: RemoteChatId::new("#locked%127.0.0.1"),
        nick: "alice".into(),
        password: password.map(str::to_owned),
    };
    alice.client.join_room(join(None)).await.unwrap();
    let failed = alice
        .expect("RoomJoinFailed", |e| {
            matches!(e, RemoteEvent::RoomJoinFailed { .. })
        })
        .await;
    let RemoteEvent::RoomJoinFailed { error, .. } = failed else {
        unreachable!()
    };
    assert_eq!(error.kind, estuary_bridge_api::ErrorKind::NotAuthorized);
    assert!(error.text.contains("#locked"), "{}", error.text);
    alice.client.join_room(join(Some("sesame"))).await.unwrap();
    alice
        .expect("RoomJoined", |e| {
            matches!(e, RemoteEvent::RoomJoined { .. })
        })
        .await;
}

#[tokio::test]
async fn server_restart_reconnects_and_rejoins() {
    let mut ircd = Ircd::start();
    let (mut alice, bob) = setup(&ircd).await;
    drop(bob);
    ircd.restart();
    alice
        .expect("TransientDisconnect", |e| {
            matches!(
                e,
                RemoteEvent::LoginState(LoginState::TransientDisconnect(_))
            )
        })
        .await;
    alice
        .expect("Connected again", |e| {
            matches!(e, RemoteEvent::LoginState(LoginState::Connected))
        })
        .await;
    alice
        .expect(
            "rejoined",
            |e| matches!(e, RemoteEvent::RoomJoined { room: r, .. } if *r == room()),
        )
        .await;
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #test").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("PRIVMSG #test :welcome back").await;
    let m = next_message(&mut alice, "message after restart").await;
    assert_eq!(m.body, "welcome back");
    alice
        .client
        .send_message(say(ChatKey::Room(room()), "thanks"))
        .await
        .unwrap();
    let l = bob.expect(|l| l.contains("PRIVMSG #test")).await;
    assert_eq!(trailing(&l), "thanks");
}

/// A line written to the server just before it went away, never read by it (the server
/// is frozen, then killed), is written again after the reconnect and the rejoin: with
/// echo-message (InspIRCd), its echo then comes back and is reported as the message's
/// reflection, once. Before, it vanished with the socket and the sender never knew.
#[tokio::test]
async fn a_line_in_flight_when_the_server_dies_is_sent_again_after_the_reconnect() {
    let mut ircd = Ircd::start();
    let (mut alice, bob) = setup(&ircd).await;
    drop(bob);
    ircd.freeze();
    alice
        .client
        .send_message(Outgoing {
            origin_id: Some("x-in-flight".into()),
            ..say(ChatKey::Room(room()), "in flight")
        })
        .await
        .expect("accepted");
    // Written to the socket; the frozen server never reads it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ircd.restart();
    alice
        .expect("TransientDisconnect", |e| {
            matches!(
                e,
                RemoteEvent::LoginState(LoginState::TransientDisconnect(_))
            )
        })
        .await;
    alice
        .expect(
            "rejoined",
            |e| matches!(e, RemoteEvent::RoomJoined { room: r, .. } if *r == room()),
        )
        .await;
    let m = next_message(&mut alice, "the echo of the line in flight").await;
    assert_eq!(m.body, "in flight");
    assert!(m.sender.is_from_me);
    assert_eq!(m.echo_of.as_deref(), Some("x-in-flight"));
    // Reported once: nothing else of ours comes back.
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #test").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    bob.send("PRIVMSG #test :after").await;
    let m = next_message(&mut alice, "bob after the restart").await;
    assert_eq!((m.body.as_str(), m.sender.is_from_me), ("after", false));
}

/// The same without echo-message (ngIRCd offers none): a PING mark after the line is
/// what confirms it, and as the server died before answering it, the line is written
/// again after the reconnect; bob, back in the channel first, receives it.
#[tokio::test]
async fn without_echo_a_line_in_flight_when_the_server_dies_is_sent_again() {
    let mut ircd = Ircd::start_ngircd();
    let mut alice = Bridge::new(&ircd, "alice@localhost").await;
    alice
        .client
        .join_room(JoinRequest {
            room: room(),
            nick: "alice".into(),
            password: None,
        })
        .await
        .expect("join accepted");
    alice
        .expect("RoomJoined", |e| {
            matches!(e, RemoteEvent::RoomJoined { .. })
        })
        .await;
    ircd.freeze();
    alice
        .client
        .send_message(say(ChatKey::Room(room()), "in flight"))
        .await
        .expect("accepted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ircd.stop();
    alice
        .expect("TransientDisconnect", |e| {
            matches!(
                e,
                RemoteEvent::LoginState(LoginState::TransientDisconnect(_))
            )
        })
        .await;
    // The gateway now waits 1 s between attempts: bob is in the channel before it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ircd.start_again();
    let mut bob = Raw::connect(ircd.port, "bob").await;
    bob.send("JOIN #test").await;
    bob.expect(|l| l.contains(" 366 ")).await;
    let l = bob
        .expect(|l| l.contains("PRIVMSG #test") && l.starts_with(":alice!"))
        .await;
    assert_eq!(trailing(&l), "in flight");
}

#[tokio::test]
async fn unreachable_server_fails_the_join() {
    let ircd = Ircd::start();
    let mut alice = Bridge::new(&ircd, "alice@localhost").await;
    // The server goes away before the first join: its port is then closed.
    drop(ircd);
    alice
        .client
        .join_room(JoinRequest {
            room: room(),
            nick: "alice".into(),
            password: None,
        })
        .await
        .unwrap();
    let failed = alice
        .expect("RoomJoinFailed", |e| {
            matches!(e, RemoteEvent::RoomJoinFailed { .. })
        })
        .await;
    let RemoteEvent::RoomJoinFailed { error, .. } = failed else {
        unreachable!()
    };
    assert_eq!(error.kind, estuary_bridge_api::ErrorKind::RemoteUnreachable);
    assert!(error.text.contains("127.0.0.1"), "{}", error.text);
}
