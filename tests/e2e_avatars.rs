//! End-to-end: names and avatars of contacts, rooms and occupants (issue 14), with the fake
//! bridge against a real Prosody (and ejabberd for vcard-temp and PEP on a component JID).
//!
//! The fake network gives a contact or room a name and a picture (`FakeNetwork::
//! set_contact_profile` / `set_room_profile`); a real XMPP client then asks for it the ways
//! clients do: vcard-temp (XEP-0054), XEP-0084 PEP items, the hash in presences (XEP-0153),
//! and a room's disco#info (XEP-0486).

mod common;

use base64::Engine;
use common::{Ejabberd, Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary::gateway::profiles::MAX_AVATAR_BYTES;
use estuary_bridge_api::{Avatar, AvatarUpdate, Connector, RemoteEvent, RemoteUserId, Show};
use estuary_bridge_fake::{FakeConnector, FakeNetwork};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "avatar-secret";
const USER: &str = "alice@localhost";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const VCARD: &str = "vcard-temp";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A small PNG-looking picture, different for each `n`.
fn picture(n: u8) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    p.extend((0..200u16).map(|i| (i as u8).wrapping_mul(n)));
    p
}

/// Everything the gateway logged in this test binary, to check what a refusal says.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// A log writer that keeps a copy in [`LOGS`] and prints through the test harness's capture.
struct KeptLog;

impl std::io::Write for KeptLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber once: `info` and up, without colours, into [`KeptLog`].
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(|| KeptLog)
            .try_init();
    });
}

/// Waits (5 s at most) until the logs hold `text`.
async fn expect_logged(text: &str) {
    for _ in 0..100 {
        if String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never logged {text:?}");
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

struct Gateway {
    app: App,
    network: FakeNetwork,
    _dir: tempfile::TempDir,
}

async fn start_gateway(server: &impl XmppServer) -> Gateway {
    start_gateway_in(server, tempfile::tempdir().expect("a temp dir")).await
}

/// Starts the gateway on the database in `dir` (a restart when it was used before).
async fn start_gateway_in(server: &impl XmppServer, dir: tempfile::TempDir) -> Gateway {
    let component = server.component_addr();
    let toml = format!(
        r#"{head}
[outbound]
allow = ["127.0.0.1"]

[bridges.fake]
domain = "{DOMAIN}"
secret = "{SECRET}"
"#,
        head = common::gateway_toml_head(component, dir.path(), 9),
    );
    let settings = Settings::from_toml(&toml, "e2e", false).expect("a valid configuration");
    let connector = FakeConnector::new();
    let network = connector.network();
    let db = app::open_database(&settings)
        .await
        .expect("the database opens");
    let mut connectors: HashMap<String, Arc<dyn Connector>> = HashMap::new();
    connectors.insert("fake".into(), Arc::new(connector));
    let app = app::start_with(&settings, db, connectors)
        .await
        .expect("the gateway starts");
    Gateway {
        app,
        network,
        _dir: dir,
    }
}

fn el(xml: &str) -> Element {
    xml.parse().expect("the test's XML is well-formed")
}

fn iq(type_: &str, to: &str, payload: &str) -> Element {
    el(&format!(
        "<iq xmlns='jabber:client' type='{type_}' to='{to}' id='{}'>{payload}</iq>",
        uuid::Uuid::new_v4()
    ))
}

fn is_error(reply: &Element, condition: &str) -> bool {
    reply.attr("type") == Some("error")
        && reply
            .get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child(condition, STANZAS))
}

/// A server with the fake component and alice, the gateway, and alice online and
/// registered with the gateway.
async fn setup<S: XmppServer>(server: &S) -> (Gateway, TestClient) {
    server.register("alice", "alicepw").await;
    let gw = start_gateway(server).await;
    let mut alice = TestClient::connect(server, "alice", "alicepw", "avatars").await;
    alice.send(el("<presence xmlns='jabber:client'/>")).await;
    let ok = alice.register_with_gateway(DOMAIN, "alice1", "pw").await;
    assert_eq!(ok.attr("type"), Some("result"), "{}", String::from(&ok));
    (gw, alice)
}

/// vcard-temp of `jid`: the answer, and the photo's (type, bytes) if any.
async fn vcard(alice: &mut TestClient, jid: &str) -> (Element, Option<(String, Vec<u8>)>) {
    let reply = alice
        .iq(iq("get", jid, "<vCard xmlns='vcard-temp'/>"))
        .await;
    let photo = reply
        .get_child("vCard", VCARD)
        .and_then(|v| v.get_child("PHOTO", VCARD))
        .map(|p| {
            let type_ = p
                .get_child("TYPE", VCARD)
                .map(|t| t.text())
                .unwrap_or_default();
            let b64: String = p
                .get_child("BINVAL", VCARD)
                .map(|b| b.text())
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("BINVAL is base64");
            (type_, bytes)
        });
    (reply, photo)
}

fn vcard_text(reply: &Element, field: &str) -> Option<String> {
    reply
        .get_child("vCard", VCARD)?
        .get_child(field, VCARD)
        .map(|f| f.text())
}

/// The XEP-0153 hash in a presence: `Some("")` for an empty `<photo/>`.
fn photo_hash(p: &Element) -> Option<String> {
    p.get_child("x", "vcard-temp:x:update")?
        .get_child("photo", "vcard-temp:x:update")
        .map(|ph| ph.text())
}

async fn expect_presence_hash(alice: &mut TestClient, from: &str, hash: &str) -> Element {
    alice
        .expect(
            &format!("a presence from {from} with photo {hash:?}"),
            |s| {
                s.name() == "presence"
                    && s.attr("from").is_some_and(|f| f.starts_with(from))
                    && photo_hash(s).as_deref() == Some(hash)
            },
        )
        .await
}

/// PEP items of `node` on `jid`.
async fn pep(alice: &mut TestClient, jid: &str, node: &str) -> Element {
    alice
        .iq(iq(
            "get",
            jid,
            &format!("<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>"),
        ))
        .await
}

fn pep_item(reply: &Element) -> Option<&Element> {
    reply
        .get_child("pubsub", PUBSUB)?
        .get_child("items", PUBSUB)?
        .get_child("item", PUBSUB)
}

async fn set_contact(gw: &Gateway, contact: &str, name: Option<&str>, avatar: AvatarUpdate) {
    gw.network
        .set_contact_profile(USER, contact, name, avatar)
        .await
        .expect("alice has a fake client");
}

/// Waits until every event injected before has been handled: the gateway handles a user's
/// events in order, so a presence injected now arrives after them.
async fn settle(gw: &Gateway, alice: &mut TestClient) {
    let marker = uuid::Uuid::new_v4().to_string();
    gw.network
        .inject(
            USER,
            RemoteEvent::Presence {
                user: RemoteUserId::new("marker"),
                show: Show::Away,
                status: Some(marker.clone()),
            },
        )
        .await
        .expect("injected");
    alice
        .expect("the marker presence", |s| {
            s.name() == "presence" && String::from(s).contains(&marker)
        })
        .await;
}

async fn avatar_rows(gw: &Gateway) -> i64 {
    use sqlx::Row as _;
    sqlx::query("SELECT COUNT(*) AS n FROM avatars")
        .fetch_one(gw.app.db.pool())
        .await
        .expect("the database answers")
        .try_get("n")
        .expect("a count")
}

#[tokio::test]
async fn a_contacts_avatar_by_vcard_pep_and_presence_and_its_change() {
    init_logs();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let (gw, mut alice) = setup(&server).await;
    let bob = format!("bob@{DOMAIN}");
    let (p1, p2) = (picture(3), picture(5));

    set_contact(
        &gw,
        "bob",
        Some("Bob Builder"),
        AvatarUpdate::Set(Avatar::from_bytes(p1.clone(), "image/png")),
    )
    .await;
    gw.network
        .inject(
            USER,
            RemoteEvent::Presence {
                user: RemoteUserId::new("bob"),
                show: Show::Available,
                status: None,
            },
        )
        .await
        .expect("injected");
    expect_presence_hash(&mut alice, &bob, &sha1_hex(&p1)).await;

    // vcard-temp: the same bytes, type and name.
    let (reply, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(&reply)
    );
    assert_eq!(photo, Some(("image/png".into(), p1.clone())));
    assert_eq!(
        vcard_text(&reply, "NICKNAME").as_deref(),
        Some("Bob Builder")
    );
    assert_eq!(vcard_text(&reply, "FN").as_deref(), Some("Bob Builder"));

    // XEP-0084: metadata then data, the same bytes.
    let meta = pep(&mut alice, &bob, "urn:xmpp:avatar:metadata").await;
    let item = pep_item(&meta).unwrap_or_else(|| panic!("an item: {}", String::from(&meta)));
    assert_eq!(item.attr("id"), Some(sha1_hex(&p1).as_str()));
    let info = item
        .get_child("metadata", "urn:xmpp:avatar:metadata")
        .and_then(|m| m.get_child("info", "urn:xmpp:avatar:metadata"))
        .expect("an info");
    assert_eq!(info.attr("bytes"), Some(p1.len().to_string().as_str()));
    assert_eq!(info.attr("type"), Some("image/png"));
    let data = pep(&mut alice, &bob, "urn:xmpp:avatar:data").await;
    let b64: String = pep_item(&data)
        .and_then(|i| i.get_child("data", "urn:xmpp:avatar:data"))
        .map(|d| d.text())
        .unwrap_or_else(|| panic!("data: {}", String::from(&data)));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
        p1
    );

    // A change reaches the client without a restart: presence with the new hash, and the
    // XEP-0084 notification.
    set_contact(
        &gw,
        "bob",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(p2.clone(), "image/png")),
    )
    .await;
    expect_presence_hash(&mut alice, &bob, &sha1_hex(&p2)).await;
    let note = alice
        .expect("a XEP-0084 metadata notification", |s| {
            s.name() == "message"
                && s.attr("from") == Some(bob.as_str())
                && String::from(s).contains(&sha1_hex(&p2))
        })
        .await;
    assert_eq!(note.attr("type"), Some("headline"));
    let (reply, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(photo, Some(("image/png".into(), p2.clone())));
    assert_eq!(
        vcard_text(&reply, "NICKNAME").as_deref(),
        Some("Bob Builder"),
        "an avatar change keeps the name"
    );
    assert_eq!(avatar_rows(&gw).await, 1, "the replaced picture is deleted");

    // Oversize: refused (logged), the previous avatar stays, messages still flow.
    let big = vec![7u8; MAX_AVATAR_BYTES as usize + 1];
    set_contact(
        &gw,
        "bob",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(big, "image/png")),
    )
    .await;
    settle(&gw, &mut alice).await;
    expect_logged(&format!(
        "avatar refused, the previous one stays: the avatar is {} bytes or more; the gateway keeps avatars of at most {MAX_AVATAR_BYTES} bytes",
        MAX_AVATAR_BYTES + 1
    ))
    .await;
    alice
        .send(el(&format!(
            "<message xmlns='jabber:client' type='chat' to='{bob}' id='m1'><body>still there?</body></message>"
        )))
        .await;
    alice.expect_message_body(&bob, "bob: still there?").await;
    // The first message made bob a contact: the subscription request has his name (XEP-0172).
    let subscribe = alice
        .expect("bob's subscription request", |s| {
            s.name() == "presence"
                && s.attr("type") == Some("subscribe")
                && s.attr("from") == Some(bob.as_str())
        })
        .await;
    assert_eq!(
        subscribe
            .get_child("nick", "http://jabber.org/protocol/nick")
            .map(|n| n.text())
            .as_deref(),
        Some("Bob Builder")
    );
    let (_, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(
        photo,
        Some(("image/png".into(), p2.clone())),
        "the old avatar stays"
    );
    alice
        .expect_none(
            "a presence for the refused avatar",
            Duration::from_millis(300),
            |s| s.name() == "presence" && s.attr("from").is_some_and(|f| f.starts_with(&bob)),
        )
        .await;

    // Same network fingerprint: the picture is not taken again, even with other bytes.
    set_contact(
        &gw,
        "bob",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(picture(9), "image/png").with_hash("net-1")),
    )
    .await;
    expect_presence_hash(&mut alice, &bob, &sha1_hex(&picture(9))).await;
    set_contact(
        &gw,
        "bob",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(picture(11), "image/png").with_hash("net-1")),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(
        photo.map(|p| p.1),
        Some(picture(9)),
        "an unchanged fingerprint is skipped"
    );

    // Removed: an empty <photo/>, no PHOTO, no PEP item.
    set_contact(&gw, "bob", None, AvatarUpdate::Removed).await;
    expect_presence_hash(&mut alice, &bob, "").await;
    let (reply, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(photo, None);
    assert_eq!(
        vcard_text(&reply, "NICKNAME").as_deref(),
        Some("Bob Builder")
    );
    let meta = pep(&mut alice, &bob, "urn:xmpp:avatar:metadata").await;
    assert!(is_error(&meta, "item-not-found"), "{}", String::from(&meta));
    assert_eq!(avatar_rows(&gw).await, 0, "no picture is kept for nobody");

    // Garbage bytes are served as given (the gateway does not decode images).
    let garbage = b"not an image \x00\xff\xfe at all".to_vec();
    set_contact(
        &gw,
        "dave",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(garbage.clone(), "image/png")),
    )
    .await;
    let dave = format!("dave@{DOMAIN}");
    settle(&gw, &mut alice).await;
    let (_, got) = vcard(&mut alice, &dave).await;
    assert_eq!(got, Some(("image/png".into(), garbage.clone())));

    // Two contacts with one picture: stored once.
    set_contact(
        &gw,
        "erin",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(garbage.clone(), "image/png")),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &format!("erin@{DOMAIN}")).await;
    assert!(photo.is_some());
    assert_eq!(
        avatar_rows(&gw).await,
        1,
        "one row per picture, not per contact"
    );

    // At the cap exactly: taken, and the vCard (~171 KiB of base64) passes the server.
    let largest: Vec<u8> = (0..MAX_AVATAR_BYTES).map(|i| (i % 251) as u8).collect();
    set_contact(
        &gw,
        "gina",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(largest.clone(), "image/png")),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &format!("gina@{DOMAIN}")).await;
    assert_eq!(
        photo.map(|p| p.1),
        Some(largest),
        "the largest avatar arrives whole"
    );

    // A contact the gateway knows nothing of.
    let (reply, _) = vcard(&mut alice, &format!("nobody@{DOMAIN}")).await;
    assert!(
        is_error(&reply, "item-not-found"),
        "{}",
        String::from(&reply)
    );
    let reply = pep(
        &mut alice,
        &format!("nobody@{DOMAIN}"),
        "urn:xmpp:avatar:data",
    )
    .await;
    assert!(
        is_error(&reply, "item-not-found"),
        "{}",
        String::from(&reply)
    );
    gw.app.shutdown().await;
}

/// Serves each of `bodies` in turn with `content_type`, one per connection.
async fn serve_pictures(bodies: Vec<Vec<u8>>, content_type: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        for body in bodies {
            let Ok(Ok((mut sock, _))) =
                tokio::time::timeout(Duration::from_secs(20), listener.accept()).await
            else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}/avatar")
}

#[tokio::test]
async fn an_avatar_given_as_a_url_is_downloaded_once_and_oversize_is_refused() {
    init_logs();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let (gw, mut alice) = setup(&server).await;
    let frank = format!("frank@{DOMAIN}");
    let pic = picture(13);
    let url = serve_pictures(vec![pic.clone(), picture(15)], "image/jpeg").await;
    set_contact(
        &gw,
        "frank",
        Some("Frank"),
        AvatarUpdate::Set(Avatar::from_url(&url)),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &frank).await;
    assert_eq!(photo, Some(("image/jpeg".into(), pic.clone())));
    // The same URL again: not fetched (a second fetch would get another picture).
    set_contact(
        &gw,
        "frank",
        None,
        AvatarUpdate::Set(Avatar::from_url(&url)),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &frank).await;
    assert_eq!(photo.map(|p| p.1), Some(pic.clone()));

    let big_url =
        serve_pictures(vec![vec![1u8; MAX_AVATAR_BYTES as usize + 10]], "image/png").await;
    set_contact(
        &gw,
        "frank",
        None,
        AvatarUpdate::Set(Avatar::from_url(&big_url)),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (_, photo) = vcard(&mut alice, &frank).await;
    assert_eq!(
        photo.map(|p| p.1),
        Some(pic),
        "an oversize download leaves the old one"
    );
    expect_logged(&format!(
        "the avatar is {} bytes or more; the gateway keeps avatars of at most {MAX_AVATAR_BYTES} bytes",
        MAX_AVATAR_BYTES + 10
    ))
    .await;
    gw.app.shutdown().await;
}

#[tokio::test]
async fn a_rooms_name_and_avatar_in_disco_and_vcard_and_an_occupants_avatar() {
    init_logs();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let (gw, mut alice) = setup(&server).await;
    let room = format!("#lobby@{DOMAIN}");
    let (bot_pic, r1, r2) = (picture(17), picture(19), picture(23));

    // The occupant `bot` has an avatar before the join: its presence carries the hash.
    set_contact(
        &gw,
        "bot",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(bot_pic.clone(), "image/png")),
    )
    .await;
    gw.network
        .set_room_profile(
            USER,
            "#lobby",
            Some("The Lobby"),
            AvatarUpdate::Set(Avatar::from_bytes(r1.clone(), "image/webp")),
        )
        .await
        .expect("alice has a fake client");
    alice.send(el(&format!(
        "<presence xmlns='jabber:client' to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))).await;
    expect_presence_hash(&mut alice, &format!("{room}/bot"), &sha1_hex(&bot_pic)).await;
    alice
        .expect("the self-presence", |s| {
            s.attr("from") == Some(format!("{room}/alice").as_str())
                && String::from(s).contains("code='110'")
        })
        .await;

    // disco#info: the name and the XEP-0486 hash.
    let info = alice
        .iq(iq("get", &room, &format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    let q = info.get_child("query", DISCO_INFO).expect("disco#info");
    let identity = q.get_child("identity", DISCO_INFO).expect("an identity");
    assert_eq!(identity.attr("name"), Some("The Lobby"));
    assert!(
        q.children()
            .any(|f| f.name() == "feature" && f.attr("var") == Some(VCARD)),
        "{}",
        String::from(&info)
    );
    let hash_in_disco = |q: &Element| -> Option<String> {
        q.get_child("x", "jabber:x:data")?
            .children()
            .find(|f| f.attr("var") == Some("muc#roominfo_avatarhash"))?
            .get_child("value", "jabber:x:data")
            .map(|v| v.text())
    };
    assert_eq!(hash_in_disco(q), Some(sha1_hex(&r1)));

    // vcard-temp of the room and of the occupant.
    let (_, photo) = vcard(&mut alice, &room).await;
    assert_eq!(photo, Some(("image/webp".into(), r1.clone())));
    let (_, photo) = vcard(&mut alice, &format!("{room}/bot")).await;
    assert_eq!(photo, Some(("image/png".into(), bot_pic.clone())));
    let (reply, _) = vcard(&mut alice, &format!("{room}/nosuchnick")).await;
    assert!(
        is_error(&reply, "item-not-found"),
        "{}",
        String::from(&reply)
    );

    // The room's avatar changes: status 104, then disco#info has the new hash.
    gw.network
        .set_room_profile(
            USER,
            "#lobby",
            None,
            AvatarUpdate::Set(Avatar::from_bytes(r2.clone(), "image/png")),
        )
        .await
        .expect("alice has a fake client");
    alice
        .expect("status 104 from the room", |s| {
            s.name() == "message"
                && s.attr("from") == Some(room.as_str())
                && String::from(s).contains("code='104'")
        })
        .await;
    let info = alice
        .iq(iq("get", &room, &format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    let q = info.get_child("query", DISCO_INFO).expect("disco#info");
    assert_eq!(hash_in_disco(q), Some(sha1_hex(&r2)));
    assert_eq!(
        q.get_child("identity", DISCO_INFO)
            .and_then(|i| i.attr("name")),
        Some("The Lobby"),
        "an avatar change keeps the name"
    );

    // The occupant's avatar changes while the user is in: a new occupant presence.
    let bot2 = picture(29);
    set_contact(
        &gw,
        "bot",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(bot2.clone(), "image/png")),
    )
    .await;
    expect_presence_hash(&mut alice, &format!("{room}/bot"), &sha1_hex(&bot2)).await;

    // A room without a profile: no form, no vcard.
    let other = format!("#rust@{DOMAIN}");
    let info = alice
        .iq(iq("get", &other, &format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    let q = info.get_child("query", DISCO_INFO).expect("disco#info");
    assert_eq!(hash_in_disco(q), None);
    let (reply, _) = vcard(&mut alice, &other).await;
    assert!(
        is_error(&reply, "item-not-found"),
        "{}",
        String::from(&reply)
    );
    gw.app.shutdown().await;
}

/// ejabberd routes vcard-temp and PEP requests to a JID on a component's domain to the
/// component (its mod_vcard answers only for its own hosts).
#[tokio::test]
async fn ejabberd_passes_vcard_and_pep_to_the_component() {
    init_logs();
    let server = Ejabberd::start(&[(DOMAIN, SECRET)]).await;
    let (gw, mut alice) = setup(&server).await;
    let bob = format!("bob@{DOMAIN}");
    let pic = picture(31);
    set_contact(
        &gw,
        "bob",
        Some("Bob"),
        AvatarUpdate::Set(Avatar::from_bytes(pic.clone(), "image/png")),
    )
    .await;
    gw.network
        .inject(
            USER,
            RemoteEvent::Presence {
                user: RemoteUserId::new("bob"),
                show: Show::Available,
                status: None,
            },
        )
        .await
        .expect("injected");
    expect_presence_hash(&mut alice, &bob, &sha1_hex(&pic)).await;
    let (reply, photo) = vcard(&mut alice, &bob).await;
    assert_eq!(
        photo,
        Some(("image/png".into(), pic.clone())),
        "{}",
        String::from(&reply)
    );
    let data = pep(&mut alice, &bob, "urn:xmpp:avatar:data").await;
    assert!(pep_item(&data).is_some(), "{}", String::from(&data));
    // At the cap exactly: the vCard (~171 KiB of base64) passes ejabberd too.
    let largest: Vec<u8> = (0..MAX_AVATAR_BYTES).map(|i| (i % 251) as u8).collect();
    set_contact(
        &gw,
        "gina",
        None,
        AvatarUpdate::Set(Avatar::from_bytes(largest.clone(), "image/png")),
    )
    .await;
    settle(&gw, &mut alice).await;
    let (reply, photo) = vcard(&mut alice, &format!("gina@{DOMAIN}")).await;
    assert_eq!(
        photo.map(|p| p.1),
        Some(largest),
        "the largest avatar arrives whole: {}",
        reply.attr("type").unwrap_or("")
    );
    let (reply, _) = vcard(&mut alice, &format!("nobody@{DOMAIN}")).await;
    assert!(
        is_error(&reply, "item-not-found"),
        "{}",
        String::from(&reply)
    );
    gw.app.shutdown().await;
}

#[tokio::test]
async fn names_and_avatars_survive_a_gateway_restart() {
    init_logs();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let (gw, mut alice) = setup(&server).await;
    let bob = format!("bob@{DOMAIN}");
    let pic = picture(37);
    set_contact(
        &gw,
        "bob",
        Some("Bob"),
        AvatarUpdate::Set(Avatar::from_bytes(pic.clone(), "image/gif")),
    )
    .await;
    gw.network
        .set_room_profile(USER, "#lobby", Some("Lobby"), AvatarUpdate::Unchanged)
        .await
        .expect("alice has a fake client");
    settle(&gw, &mut alice).await;
    gw.app.shutdown().await;
    let Gateway { _dir: dir, .. } = gw;

    let gw = start_gateway_in(&server, dir).await;
    // Without any new event: the hash in the contact's presence, the vCard, the room's name.
    let mut got = None;
    for _ in 0..100 {
        let (reply, photo) = vcard(&mut alice, &bob).await;
        if reply.attr("type") == Some("result") {
            got = Some((reply, photo));
            break;
        }
        // The gateway's component connection may still be coming up.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reply, photo) = got.expect("the vCard is answered after the restart");
    assert_eq!(photo, Some(("image/gif".into(), pic.clone())));
    assert_eq!(vcard_text(&reply, "NICKNAME").as_deref(), Some("Bob"));
    gw.network
        .inject(
            USER,
            RemoteEvent::Presence {
                user: RemoteUserId::new("bob"),
                show: Show::Available,
                status: None,
            },
        )
        .await
        .expect("alice's login is back");
    expect_presence_hash(&mut alice, &bob, &sha1_hex(&pic)).await;
    let room = format!("#lobby@{DOMAIN}");
    let info = alice
        .iq(iq("get", &room, &format!("<query xmlns='{DISCO_INFO}'/>")))
        .await;
    let name = info
        .get_child("query", DISCO_INFO)
        .and_then(|q| q.get_child("identity", DISCO_INFO))
        .and_then(|i| i.attr("name"))
        .map(str::to_owned);
    assert_eq!(name.as_deref(), Some("Lobby"));
    gw.app.shutdown().await;
}
