//! Outgoing delivery to a local HTTP receiver: signature, JSON shape, retries, errors;
//! plus the connector's address codec and registration.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use estuary_bridge_api::OutboundPolicy;
use estuary_bridge_api::{
    ChatKey, Client, Connector, ErrorKind, EventSink, FormValues, LoginId, LoginState, MessageKind,
    Outgoing, RemoteEvent, RemoteUserId, Sent, StoredLogin, User,
};
use estuary_bridge_webhook::WebhookConnector;
use estuary_bridge_webhook::auth::sign;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A receiver that answers each request with the next status of its script (the last one
/// repeats) and records what it got.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Vec<u16>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let n = {
        let mut seen = r.seen.lock().unwrap();
        seen.push((headers, body));
        seen.len()
    };
    let status = r
        .script
        .get(n - 1)
        .or(r.script.last())
        .copied()
        .unwrap_or(200);
    let text = if status >= 400 {
        "  nope:\n  not here  ".to_owned()
    } else {
        "thanks".to_owned()
    };
    (StatusCode::from_u16(status).unwrap(), text)
}

async fn receiver(script: &[u16]) -> (Receiver, SocketAddr) {
    let r = Receiver {
        script: Arc::new(script.to_vec()),
        ..Default::default()
    };
    let app = Router::new()
        .route("/in", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, addr)
}

/// The receivers listen on 127.0.0.1, which the gateway refuses unless allowed.
fn loopback() -> OutboundPolicy {
    OutboundPolicy::new(&["127.0.0.1"]).unwrap()
}

fn connector(url: Option<String>) -> WebhookConnector {
    let mut hook = json!({"name": "ci", "token": "s3cret", "to": ["alice@localhost"]});
    if let Some(url) = url {
        hook["url"] = json!(url);
    }
    WebhookConnector::from_config(
        &json!({
            "domain": "hooks.localhost",
            "secret": "x",
            "outgoing_backoff_ms": 20,
            "outgoing_timeout_secs": 2,
            "hooks": [hook, {"name": "status", "token": "t", "to": ["bob@localhost"]}]
        }),
        loopback(),
    )
    .unwrap()
}

async fn client_for(
    c: &WebhookConnector,
    jid: &str,
) -> (
    Box<dyn Client>,
    mpsc::Receiver<(String, LoginId, RemoteEvent)>,
) {
    let (tx, rx) = mpsc::channel(8);
    let login = StoredLogin {
        id: LoginId::new(format!("webhook:{jid}")),
        user: User { jid: jid.into() },
        fields: FormValues::default(),
        metadata: json!({}),
        services: Default::default(),
        store: estuary_bridge_api::LoginStore::in_memory(),
    };
    let sink = EventSink::new(jid, login.id.clone(), tx);
    (c.load_login(&login, sink).await.unwrap(), rx)
}

fn to_ci(body: &str) -> Outgoing {
    Outgoing {
        chat: ChatKey::Direct(RemoteUserId::new("ci")),
        body: body.into(),
        attachments: Vec::new(),
        kind: MessageKind::Normal,
        origin_id: Some("origin-1".into()),
        reply_to: None,
        gate: Default::default(),
    }
}

#[tokio::test]
async fn signed_json_reaches_the_receiver() {
    let (r, addr) = receiver(&[200]).await;
    let c = connector(Some(format!("http://{addr}/in")));
    let (client, mut events) = client_for(&c, "alice@localhost").await;
    client.connect().await;
    let (_, _, ev) = events.recv().await.unwrap();
    assert_eq!(ev, RemoteEvent::LoginState(LoginState::Connected));

    let sent = client.send_message(to_ci("deploy please")).await.unwrap();
    assert_eq!(
        sent,
        Sent {
            id: None,
            will_echo: false,
            ran_as_command: false
        }
    );
    let seen = r.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    // The receiver checks the signature the way a GitHub-style receiver would.
    let sig = headers["x-estuary-signature"].to_str().unwrap();
    assert_eq!(sig, format!("sha256={}", sign(b"s3cret", body)));
    assert_eq!(headers["content-type"], "application/json");
    let json: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["from"], "alice@localhost");
    assert_eq!(json["to"], "ci@hooks.localhost");
    assert_eq!(json["hook"], "ci");
    assert_eq!(json["body"], "deploy please");
    assert_eq!(json["id"], "origin-1");
    let ts = json["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (r, addr) = receiver(&[500, 500, 200]).await;
    let c = connector(Some(format!("http://{addr}/in")));
    let (client, _events) = client_for(&c, "alice@localhost").await;
    let started = std::time::Instant::now();
    client.send_message(to_ci("retry me")).await.unwrap();
    assert_eq!(r.seen.lock().unwrap().len(), 3);
    // Backoff 20 ms then 40 ms.
    assert!(started.elapsed() >= std::time::Duration::from_millis(60));
    let metrics = c.metrics().render();
    assert!(metrics.contains("estuary_webhook_outgoing_total{hook=\"ci\",result=\"ok\"} 1"));
    assert!(metrics.contains("estuary_webhook_outgoing_retries_total{hook=\"ci\"} 2"));
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_the_last_status() {
    let (r, addr) = receiver(&[503]).await;
    let c = connector(Some(format!("http://{addr}/in")));
    let (client, _events) = client_for(&c, "alice@localhost").await;
    let err = client.send_message(to_ci("x")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ServiceUnavailable);
    assert_eq!(
        err.text,
        "the hook's URL did not take the message after 3 attempt(s); last: HTTP 503: nope: not here"
    );
    assert_eq!(r.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_status() {
    for (status, kind) in [
        (404, ErrorKind::NotAcceptable),
        (422, ErrorKind::NotAcceptable),
        (403, ErrorKind::Forbidden),
    ] {
        let (r, addr) = receiver(&[status]).await;
        let c = connector(Some(format!("http://{addr}/in")));
        let (client, _events) = client_for(&c, "alice@localhost").await;
        let err = client.send_message(to_ci("x")).await.unwrap_err();
        assert_eq!(err.kind, kind, "{status}");
        assert_eq!(
            err.text,
            format!("the hook's URL refused the message: HTTP {status}: nope: not here")
        );
        assert_eq!(r.seen.lock().unwrap().len(), 1, "no retry on {status}");
        assert!(
            c.metrics()
                .render()
                .contains("estuary_webhook_outgoing_total{hook=\"ci\",result=\"rejected\"} 1")
        );
    }
}

#[tokio::test]
async fn unreachable_receiver_is_service_unavailable() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = connector(Some(format!("http://127.0.0.1:{port}/in")));
    let (client, _events) = client_for(&c, "alice@localhost").await;
    let err = client.send_message(to_ci("x")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ServiceUnavailable);
    assert!(err.text.contains("could not connect"), "{}", err.text);
}

#[tokio::test]
async fn hooks_without_url_or_permission_refuse() {
    let c = connector(None);
    let (client, _events) = client_for(&c, "alice@localhost").await;
    let err = client.send_message(to_ci("x")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotAcceptable);
    assert_eq!(
        err.text,
        "this hook only posts to you; it has no outgoing URL"
    );

    let (_r, addr) = receiver(&[200]).await;
    let c = connector(Some(format!("http://{addr}/in")));
    let (mallory, _events) = client_for(&c, "mallory@elsewhere").await;
    let err = mallory.send_message(to_ci("x")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);

    let (client, _events) = client_for(&c, "alice@localhost").await;
    let mut to_room = to_ci("x");
    to_room.chat = ChatKey::Service("x".into());
    assert_eq!(
        client.send_message(to_room).await.unwrap_err().kind,
        ErrorKind::NotAcceptable
    );
    let mut to_nobody = to_ci("x");
    to_nobody.chat = ChatKey::Direct(RemoteUserId::new("nobody"));
    assert_eq!(
        client.send_message(to_nobody).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn address_codec_identifiers_and_registration() {
    let c = connector(None);
    assert_eq!(
        c.parse_local_part("ci").unwrap(),
        ChatKey::Direct(RemoteUserId::new("ci"))
    );
    let err = c.parse_local_part("cd").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotAcceptable);
    assert_eq!(
        err.text,
        "`cd` is not a hook on this gateway; hooks: ci, status"
    );
    assert_eq!(c.contact_local_part(&RemoteUserId::new("ci")), "ci");

    let (client, _events) = client_for(&c, "alice@localhost").await;
    assert_eq!(
        client.resolve_identifier(" CI ").await.unwrap(),
        RemoteUserId::new("ci")
    );
    assert_eq!(
        client
            .resolve_identifier("status@hooks.localhost")
            .await
            .unwrap(),
        RemoteUserId::new("status")
    );
    assert_eq!(
        client.resolve_identifier("nope").await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    assert!(c.registration_fields().is_empty());
    let caps = c.capabilities();
    assert!(!caps.groups && !caps.requires_registration && !caps.edits);
    let reg = c
        .register(
            &User {
                jid: "alice@localhost".into(),
            },
            &FormValues::default(),
        )
        .await
        .unwrap();
    assert_eq!(reg.id, LoginId::new("webhook:alice@localhost"));
    assert_eq!(c.info().id, "webhook");
}
