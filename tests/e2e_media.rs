//! Files from the network end to end (issue 14): in own-server mode (the gateway's HTTP
//! server, `[media] mode = "gateway"` or `auto` without an upload service), through
//! ejabberd's `mod_http_upload`, and the faults: a network that stops sending half-way, an
//! upload peer that dies or stalls, a file too large, an expired file, a guessed path.
//! Each fault test asserts what the user is told and that other traffic keeps flowing.

mod common;

use common::{Ejabberd, Prosody, TestClient, XmppServer};
use estuary::app::{self, App};
use estuary::config::Settings;
use estuary_bridge_api::{
    Attachment, ChatKey, Connector, Content, MessageKind, RemoteChatId, RemoteEvent, RemoteMessage,
    RemoteMessageId, RemoteUserId, Sender, Source,
};
use estuary_bridge_fake::{FakeConnector, FakeNetwork};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_xmpp::minidom::Element;

const DOMAIN: &str = "fake.localhost";
const SECRET: &str = "media-secret";

struct Gateway {
    app: App,
    network: FakeNetwork,
    /// The gateway's `[http] public_url` (no trailing slash).
    public_url: String,
    dir: tempfile::TempDir,
}

/// Starts the gateway against `server` with the fake bridge, an `[http]` server on a free
/// loopback port (its `public_url` that same address) and `[media]` set by `media` (TOML
/// lines; `dir` is set here, in the test's temp dir).
async fn start_gateway(server: &impl XmppServer, media: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("a temp dir");
    start_gateway_in(server, media, dir).await
}

async fn start_gateway_in(
    server: &impl XmppServer,
    media: &str,
    dir: tempfile::TempDir,
) -> Gateway {
    let component = server.component_addr();
    let http = common::ports::loopback(common::ports::free_port());
    let toml = format!(
        r#"{head}
[http]
listen = "{http}"
public_url = "http://{http}/"
# A client that reads nothing of an answer for 2 s is cut off (tested below).
send_timeout_secs = 2

[media]
dir = "{media_dir}"
{media}

[bridges.fake]
domain = "{DOMAIN}"
secret = "{SECRET}"
allowed_domains = ["localhost"]
"#,
        head = common::gateway_toml_head(component, dir.path(), 7),
        media_dir = dir.path().join("media").display(),
    );
    let settings =
        Settings::from_toml(&toml, "e2e", false).expect("the test configuration is valid");
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
        public_url: format!("http://{http}"),
        dir,
    }
}

/// `user@localhost` on `server`, logged in and registered with the gateway.
async fn user(server: &impl XmppServer, name: &str) -> TestClient {
    server.register(name, "pw").await;
    let mut client = TestClient::connect(server, name, "pw", "media").await;
    let answer = client
        .register_with_gateway(DOMAIN, &format!("{name}1"), "pw")
        .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        String::from(&answer)
    );
    client
}

/// A 1:1 message from the fake contact `from` carrying `attachments`.
fn file_from(from: &str, id: &str, attachments: Vec<Attachment>) -> RemoteEvent {
    RemoteEvent::Message(RemoteMessage {
        attachments,
        ..text_from(from, id, "")
    })
}

fn text_from(from: &str, id: &str, body: &str) -> RemoteMessage {
    RemoteMessage {
        chat: ChatKey::Direct(RemoteUserId::new(from)),
        sender: Sender {
            user: RemoteUserId::new(from),
            nick: None,
            is_from_me: false,
        },
        id: Some(RemoteMessageId::new(id)),
        body: body.into(),
        attachments: Vec::new(),
        kind: MessageKind::Normal,
        at: None,
        reply_to: None,
        echo_of: None,
    }
}

/// Content of unknown length (the bridge does not say how long it is).
fn unsized_content(name: &str, media_type: Option<&str>, bytes: Vec<u8>) -> Attachment {
    Attachment {
        name: name.into(),
        media_type: media_type.map(str::to_string),
        size: None,
        source: Source::Content(Content::new(std::io::Cursor::new(bytes), None)),
    }
}

/// Content of known length.
fn sized_content(name: &str, media_type: Option<&str>, bytes: Vec<u8>) -> Attachment {
    Attachment {
        name: name.into(),
        media_type: media_type.map(str::to_string),
        size: None,
        source: Source::Content(Content::from_bytes(bytes)),
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

fn body(m: &Element) -> Option<String> {
    m.get_child("body", "jabber:client").map(|b| b.text())
}

fn oob_url(m: &Element) -> Option<String> {
    m.get_child("x", "jabber:x:oob")
        .and_then(|x| x.get_child("url", "jabber:x:oob"))
        .map(|u| u.text())
}

/// Waits for the message from `from@…` whose OOB URL is set, checks body = URL, returns it.
async fn expect_file_url(client: &mut TestClient, from: &str) -> String {
    let got = client
        .expect("a file as body = URL + OOB", |s| {
            s.attr("from")
                .is_some_and(|f| f.starts_with(&format!("{from}@")))
                && oob_url(s).is_some()
        })
        .await;
    let url = oob_url(&got).expect("an OOB URL");
    assert_eq!(body(&got).as_deref(), Some(url.as_str()), "body = URL");
    url
}

/// Waits for the line that names a file not shown and returns its body.
async fn expect_told(client: &mut TestClient, name: &str) -> String {
    let said = client
        .expect("the line naming a file not shown", |s| {
            body(s).is_some_and(|b| b.starts_with(&format!("[file {name}")))
        })
        .await;
    assert!(oob_url(&said).is_none(), "{}", String::from(&said));
    body(&said).expect("a body")
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
        .get(url)
        .send()
        .await
        .expect("the gateway's HTTP server answers")
}

#[tokio::test]
async fn own_server_serves_network_files_under_unguessable_paths() {
    common::init_tracing();
    // No upload service on this server: `auto` falls back to the gateway's own server.
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let gw = start_gateway(&server, "mode = \"auto\"\nmax_bytes = 500000").await;
    let mut alice = user(&server, "alice").await;

    // Known length, a picture.
    let jpeg = pattern(150_000, 1);
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "f1",
                vec![sized_content(
                    "holiday pic.jpg",
                    Some("image/jpeg"),
                    jpeg.clone(),
                )],
            ),
        )
        .await
        .expect("the fake network delivers");
    let url = expect_file_url(&mut alice, "dave").await;
    let rest = url
        .strip_prefix(&format!("{}/media/", gw.public_url))
        .unwrap_or_else(|| panic!("{url} is under the public URL"));
    let (token, name) = rest.split_once('/').expect("token/name");
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    assert_eq!(name, "holiday%20pic.jpg");
    let answer = get(&url).await;
    assert_eq!(answer.status(), 200);
    let header = |n: &str| {
        answer
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "image/jpeg");
    assert_eq!(header("content-length"), "150000");
    assert_eq!(
        header("content-disposition"),
        "inline; filename=\"holiday pic.jpg\"; filename*=UTF-8''holiday%20pic.jpg"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(
        answer.bytes().await.expect("the bytes").as_ref(),
        jpeg.as_slice()
    );

    // Unknown length, a hostile name and media type: spooled, then served as a download.
    let doc = pattern(300_000, 2);
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "f2",
                vec![unsized_content(
                    "../../etc/pass\"wd",
                    Some("text/html\r\nSet-Cookie: a=b"),
                    doc.clone(),
                )],
            ),
        )
        .await
        .expect("the fake network delivers");
    let url2 = expect_file_url(&mut alice, "dave").await;
    assert!(url2.ends_with("/_.._etc_pass%22wd"), "{url2}");
    let answer = get(&url2).await;
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], "300000");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"_.._etc_pass_wd\""),
        "{:?}",
        headers["content-disposition"]
    );
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(
        answer.bytes().await.expect("the bytes").as_ref(),
        doc.as_slice()
    );

    // A downloader that stops reading holds up nobody else.
    let http_addr = gw.public_url.trim_start_matches("http://").to_string();
    let mut stuck = tokio::net::TcpStream::connect(&http_addr)
        .await
        .expect("connects");
    let path = url2.trim_start_matches(&gw.public_url);
    stuck
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {http_addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let again = get(&url2).await.bytes().await.expect("the bytes again");
    assert_eq!(again.as_ref(), doc.as_slice());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(stuck);

    // Guesses: no listing, no other token, no way out of the store.
    let base = &gw.public_url;
    let other = format!("{:032x}", u128::from_str_radix(token, 16).unwrap() ^ 1);
    for guess in [
        format!("{base}/media"),
        format!("{base}/media/"),
        format!("{base}/media/{token}"),
        format!("{base}/media/{token}/"),
        format!("{base}/media/{other}/holiday%20pic.jpg"),
        format!("{base}/media/{}/x", token.to_uppercase()),
        format!("{base}/media/..%2F..%2Festuary.db/x"),
        format!("{base}/media/%2E%2E/estuary.db"),
        format!("{base}/media/{token}.json/x"),
        format!("{base}/media/tmp/x"),
    ] {
        let answer = get(&guess).await;
        assert_eq!(answer.status(), 404, "{guess}");
        let text = answer.text().await.unwrap_or_default();
        assert!(!text.contains(token), "{guess} lists nothing: {text}");
    }

    // Too large: refused with the limit, whether the size is known or found while reading.
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "f3",
                vec![
                    sized_content("big.iso", None, vec![0u8; 600_000]),
                    unsized_content("stream.bin", None, vec![0u8; 600_000]),
                ],
            ),
        )
        .await
        .expect("the fake network delivers");
    assert_eq!(
        expect_told(&mut alice, "big.iso").await,
        "[file big.iso, 600000 bytes not shown: it is larger than the gateway takes (500000 bytes)]"
    );
    assert_eq!(
        expect_told(&mut alice, "stream.bin").await,
        "[file stream.bin not shown: it is larger than the gateway takes (500000 bytes)]"
    );
    let tmp = gw.dir.path().join("media/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing is left half-read"
    );

    // In a room: the groupchat carries the URL, and the room's archive keeps it.
    let room = "#lobby@fake.localhost";
    alice.join_muc(&format!("{room}/al")).await;
    gw.network
        .inject(
            "alice@localhost",
            RemoteEvent::Message(RemoteMessage {
                chat: ChatKey::Room(RemoteChatId::new("#lobby")),
                sender: Sender {
                    user: RemoteUserId::new("dave"),
                    nick: Some("dave".into()),
                    is_from_me: false,
                },
                attachments: vec![unsized_content(
                    "minutes.txt",
                    Some("text/plain"),
                    b"one two".to_vec(),
                )],
                ..text_from("dave", "r1", "")
            }),
        )
        .await
        .expect("the fake network delivers");
    let in_room = alice
        .expect("the file in the room", |s| {
            s.attr("from") == Some("#lobby@fake.localhost/dave") && oob_url(s).is_some()
        })
        .await;
    let room_url = oob_url(&in_room).unwrap();
    assert_eq!(get(&room_url).await.text().await.unwrap(), "one two");
    let archive = alice.mam_archive(room).await;
    assert!(
        archive.iter().any(|(_, b)| *b == room_url),
        "the archive keeps the URL: {archive:?}"
    );
    gw.app.shutdown().await;
}

#[tokio::test]
async fn files_expire_and_leftovers_are_deleted_at_start() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    // What an earlier run left: a file cut short in tmp/, an expired file and its
    // description.
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("tmp")).unwrap();
    std::fs::create_dir_all(media.join("files")).unwrap();
    std::fs::write(media.join("tmp/0123"), b"cut short").unwrap();
    let old = "0123456789abcdef0123456789abcdef";
    std::fs::write(media.join("files").join(old), b"old").unwrap();
    std::fs::write(
        media.join("files").join(format!("{old}.json")),
        r#"{"name":"old.txt","media_type":null,"size":3,"expires":1}"#,
    )
    .unwrap();
    let gw = start_gateway_in(&server, "mode = \"gateway\"\nexpire_secs = 2", dir).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while media.join("tmp/0123").exists() || media.join("files").join(old).exists() {
        assert!(Instant::now() < deadline, "leftovers are deleted at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut alice = user(&server, "alice").await;
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "e1",
                vec![sized_content(
                    "soon.txt",
                    Some("text/plain"),
                    b"gone soon".to_vec(),
                )],
            ),
        )
        .await
        .expect("the fake network delivers");
    let url = expect_file_url(&mut alice, "dave").await;
    assert_eq!(get(&url).await.text().await.unwrap(), "gone soon");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(&url).await.status(), 404, "expired");
    let files = gw.dir.path().join("media/files");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(&files).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the expired file is deleted from disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.app.shutdown().await;
}

/// A network that stops sending a file half-way: the user is told after `stall_secs`,
/// another user's message arrives meanwhile, and the user's own next message follows.
#[tokio::test]
async fn a_network_that_stops_sending_a_file_is_told_and_others_flow() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let gw = start_gateway(&server, "mode = \"gateway\"\nstall_secs = 2").await;
    let mut alice = user(&server, "alice").await;
    let mut bob = user(&server, "bob").await;
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    tx.write_all(&[1u8; 10_000]).await.unwrap();
    let stalled = Attachment {
        name: "slow.bin".into(),
        media_type: None,
        size: None,
        source: Source::Content(Content::new(rx, None)),
    };
    let started = Instant::now();
    gw.network
        .inject("alice@localhost", file_from("dave", "s1", vec![stalled]))
        .await
        .expect("the fake network delivers");
    gw.network
        .inject(
            "alice@localhost",
            RemoteEvent::Message(text_from("dave", "s2", "after the file")),
        )
        .await
        .expect("the fake network delivers");
    gw.network
        .inject(
            "bob@localhost",
            RemoteEvent::Message(text_from("erin", "b1", "meanwhile")),
        )
        .await
        .expect("the fake network delivers");
    bob.expect_within(
        "bob's message during alice's stalled file",
        Duration::from_secs(1),
        |s| body(s).as_deref() == Some("meanwhile"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        expect_told(&mut alice, "slow.bin").await,
        "[file slow.bin not shown: the network stopped sending it]"
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(6)).contains(&waited),
        "told after the stall limit: {waited:?}"
    );
    alice
        .expect("alice's next message, in order", |s| {
            body(s).as_deref() == Some("after the file")
        })
        .await;
    drop(tx);
    gw.app.shutdown().await;
}

/// A stand-in XEP-0363 service, `slots.localhost`, whose slots point at an HTTP peer that
/// misbehaves: `/die/…` reads the request head and a little of the body, then closes;
/// `/stall/…` accepts and never reads or answers.
async fn bad_upload_service(server: &Prosody) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio_xmpp::connect::DnsConfig;
    use tokio_xmpp::jid::Jid;
    use tokio_xmpp::parsers::http_upload::{Get, Put, SlotRequest, SlotResult};
    use tokio_xmpp::parsers::iq::Iq;
    use tokio_xmpp::xmlstream::Timeouts;
    use tokio_xmpp::{Component, Stanza};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut head = vec![0u8; 8192];
            let n = sock.read(&mut head).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&head[..n]).to_string();
            if text.contains(" /die/") {
                let mut some = [0u8; 1000];
                let _ = sock.read(&mut some).await;
                drop(sock);
            } else {
                held.push(sock);
            }
        }
    });
    let mut component = Component::new_plaintext(
        "slots.localhost",
        "slots-secret",
        DnsConfig::addr(&server.component_addr().to_string()),
        Timeouts::tight(),
    )
    .await
    .expect("the stand-in service attaches");
    let service = tokio::spawn(async move {
        while let Some(stanza) = component.next().await {
            let Stanza::Iq(iq) = stanza else { continue };
            let (from, id) = (iq.from().cloned(), iq.id().to_string());
            let el = Element::from(iq);
            let Some(request) = el
                .get_child("request", "urn:xmpp:http:upload:0")
                .and_then(|r| SlotRequest::try_from(r.clone()).ok())
            else {
                continue;
            };
            let how = if request.filename.starts_with("dies") {
                "die"
            } else {
                "stall"
            };
            let url = format!("http://{http}/{how}/{}", request.filename);
            let answer = Iq::from_result(
                id,
                Some(SlotResult {
                    put: Put {
                        url: url.clone(),
                        headers: Vec::new(),
                    },
                    get: Get { url },
                }),
            )
            .with_from(Jid::new("slots.localhost").unwrap());
            let answer = match from {
                Some(to) => answer.with_to(to),
                None => answer,
            };
            if component.send_stanza(Stanza::Iq(answer)).await.is_err() {
                return;
            }
        }
    });
    vec![peer, service]
}

#[tokio::test]
async fn an_upload_peer_that_dies_or_stalls_is_told_and_others_flow() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET), ("slots.localhost", "slots-secret")]).await;
    let tasks = bad_upload_service(&server).await;
    let gw = start_gateway(
        &server,
        "mode = \"upload\"\nupload_service = \"slots.localhost\"\ntransfer_timeout_secs = 3",
    )
    .await;
    let mut alice = user(&server, "alice").await;
    let mut bob = user(&server, "bob").await;
    let started = Instant::now();
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "u1",
                vec![
                    sized_content("dies.bin", None, pattern(2_000_000, 3)),
                    sized_content("stalls.bin", None, pattern(2_000_000, 4)),
                ],
            ),
        )
        .await
        .expect("the fake network delivers");
    gw.network
        .inject(
            "bob@localhost",
            RemoteEvent::Message(text_from("erin", "b1", "meanwhile")),
        )
        .await
        .expect("the fake network delivers");
    bob.expect_within(
        "bob's message during alice's uploads",
        Duration::from_secs(2),
        |s| body(s).as_deref() == Some("meanwhile"),
    )
    .await;
    assert_eq!(
        expect_told(&mut alice, "dies.bin").await,
        "[file dies.bin, 2000000 bytes not shown: the upload to the server failed]"
    );
    assert_eq!(
        expect_told(&mut alice, "stalls.bin").await,
        "[file stalls.bin, 2000000 bytes not shown: the upload to the server took too long]"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "the stalled PUT waited its limit: {waited:?}"
    );
    gw.network
        .inject(
            "alice@localhost",
            RemoteEvent::Message(text_from("dave", "u2", "still here")),
        )
        .await
        .expect("the fake network delivers");
    alice
        .expect("alice's next message", |s| {
            body(s).as_deref() == Some("still here")
        })
        .await;
    gw.app.shutdown().await;
    for t in tasks {
        t.abort();
    }
}

/// ejabberd's `mod_http_upload`: a network file of unknown length (spooled first, so that
/// the slot gets its size) and one of known length arrive as URLs on ejabberd's HTTP
/// listener that download the same bytes; one over the service's limit is told.
#[tokio::test]
async fn ejabberd_upload_service_carries_network_files() {
    common::init_tracing();
    let server = Ejabberd::start_with_upload(&[(DOMAIN, SECRET)]).await;
    let gw = start_gateway(&server, "mode = \"upload\"").await;
    let mut alice = user(&server, "alice").await;
    let upload = server.upload_http().expect("an upload port");
    let notes = pattern(400_000, 5);
    let photo = pattern(250_000, 6);
    for (n, (file, expected)) in [
        (
            unsized_content("notes.txt", Some("text/plain"), notes.clone()),
            notes,
        ),
        (
            sized_content("photo.png", Some("image/png"), photo.clone()),
            photo,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        gw.network
            .inject(
                "alice@localhost",
                file_from("dave", &format!("j{n}"), vec![file]),
            )
            .await
            .expect("the fake network delivers");
        let url = expect_file_url(&mut alice, "dave").await;
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{}/upload/", upload.port())),
            "{url}\n{}",
            server.log_tail()
        );
        let answer = get(&url).await;
        assert_eq!(answer.status(), 200, "{url}");
        assert_eq!(
            answer.bytes().await.unwrap().as_ref(),
            expected.as_slice(),
            "GET {url}"
        );
    }
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "j9",
                vec![sized_content("huge.bin", None, vec![0u8; 2 << 20])],
            ),
        )
        .await
        .expect("the fake network delivers");
    assert_eq!(
        expect_told(&mut alice, "huge.bin").await,
        "[file huge.bin, 2097152 bytes not shown: the server's upload service refused it (too large for the server?)]"
    );
    gw.app.shutdown().await;
}

/// The default, `auto`: the server's upload service when it takes the file, the gateway's
/// own server (with `public_url` set) when the service refuses it (too large for Prosody's
/// 1 MiB here).
#[tokio::test]
async fn auto_uses_the_upload_service_and_falls_back_to_the_own_server() {
    common::init_tracing();
    let server = Prosody::start_with_upload(&[(DOMAIN, SECRET)]).await;
    let gw = start_gateway(&server, "").await;
    let mut alice = user(&server, "alice").await;
    let small = pattern(100_000, 7);
    let large = pattern(2_000_000, 8);
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "a1",
                vec![
                    unsized_content("small.bin", None, small.clone()),
                    sized_content("large.bin", None, large.clone()),
                ],
            ),
        )
        .await
        .expect("the fake network delivers");
    let first = expect_file_url(&mut alice, "dave").await;
    let prosody = format!("http://{}/", server.upload_http().expect("an upload port"));
    assert!(first.starts_with(&prosody), "{first} is Prosody's");
    assert_eq!(
        get(&first).await.bytes().await.unwrap().as_ref(),
        small.as_slice()
    );
    let second = expect_file_url(&mut alice, "dave").await;
    assert!(
        second.starts_with(&format!("{}/media/", gw.public_url)),
        "{second} is the gateway's"
    );
    assert_eq!(
        get(&second).await.bytes().await.unwrap().as_ref(),
        large.as_slice()
    );
    gw.app.shutdown().await;
}

/// A client that starts downloading a large served file and stops reading is cut off after
/// `[http] send_timeout_secs` (2 s here): the connection ends before the file does, and the
/// place it held is free again.
#[tokio::test]
async fn a_downloader_that_stops_reading_is_cut_off() {
    common::init_tracing();
    let server = Prosody::start(&[(DOMAIN, SECRET)]).await;
    let gw = start_gateway(&server, "mode = \"gateway\"").await;
    let mut alice = user(&server, "alice").await;
    const SIZE: usize = 40 << 20;
    gw.network
        .inject(
            "alice@localhost",
            file_from(
                "dave",
                "d1",
                vec![sized_content("big.bin", None, vec![7u8; SIZE])],
            ),
        )
        .await
        .expect("the fake network delivers");
    let url = expect_file_url(&mut alice, "dave").await;
    let http_addr = gw.public_url.trim_start_matches("http://").to_string();
    let mut stuck = tokio::net::TcpStream::connect(&http_addr)
        .await
        .expect("connects");
    let path = url.trim_start_matches(&gw.public_url);
    stuck
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {http_addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stuck.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
    assert!(
        got < SIZE,
        "cut off before the end: {got} of {SIZE} bytes (what the socket buffers held)"
    );
    // A reader that keeps reading gets the whole file.
    let whole = get(&url).await.bytes().await.expect("the whole file");
    assert_eq!(whole.len(), SIZE);
    gw.app.shutdown().await;
}
