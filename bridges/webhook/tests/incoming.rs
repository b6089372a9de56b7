//! Incoming hooks over real HTTP: auth schemes, formats, every rejection, metrics.

mod common;

use common::{Harness, expected, fixture, start};
use estuary_bridge_api::{
    ChatKey, Connector, LoginId, MessageKind, RemoteEvent, RemoteMessageId, RemoteUserId, Sender,
};
use estuary_bridge_webhook::auth::sign;
use serde_json::{Value, json};

fn ci_config() -> Value {
    json!({
        "domain": "hooks.localhost",
        "secret": "component-secret",
        "hooks": [
            {"name": "ci", "token": "s3cret", "to": ["alice@localhost"]},
            {"name": "forge", "token": "f0rge", "to": ["alice@localhost", "bob@localhost"],
             "message_type": "headline"},
            {"name": "alerts", "token": "al3rt", "rooms": ["ops@conference.localhost"], "nick": "Alertmanager"},
            {"name": "tpl", "token": "tpl", "to": ["alice@localhost"], "format": "template",
             "template": "*{{ service }}* is {{ state | upper }}{% if payload.note %}: {{ note }}{% endif %}"},
            {"name": "tiny", "token": "t", "to": ["alice@localhost"], "rate_limit_per_minute": 2}
        ]
    })
}

fn message_body(event: &RemoteEvent) -> &str {
    match event {
        RemoteEvent::Message(m) => &m.body,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn status_and_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn bearer_text_is_delivered_from_the_hook() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "build passed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(resp).await, (202, json!({"accepted": 1})));
    let (user, login, event) = h.next().await;
    assert_eq!(user, "alice@localhost");
    assert_eq!(login, LoginId::new("webhook:ci"));
    let RemoteEvent::Message(m) = event else {
        panic!("not a message")
    };
    assert_eq!(m.body, "build passed");
    assert_eq!(m.chat, ChatKey::Direct(RemoteUserId::new("ci")));
    assert_eq!(
        m.sender,
        Sender {
            user: RemoteUserId::new("ci"),
            nick: None,
            is_from_me: false
        }
    );
    assert_eq!(m.kind, MessageKind::Normal);
    h.assert_nothing();
}

#[tokio::test]
async fn github_signed_push_is_verified_and_formatted() {
    let mut h = start(ci_config()).await;
    let body = fixture("github_push.json");
    let resp = h
        .http
        .post(h.hook_url("forge"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(b"f0rge", &body)),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(resp).await, (202, json!({"accepted": 2})));
    for jid in ["alice@localhost", "bob@localhost"] {
        let (user, _, event) = h.next().await;
        assert_eq!(user, jid);
        let RemoteEvent::Message(m) = &event else {
            panic!("not a message")
        };
        assert_eq!(m.body, expected("github_push.txt"));
        assert_eq!(m.kind, MessageKind::Notice, "headline hooks send notices");
        assert_eq!(
            m.id,
            Some(RemoteMessageId::new("72d3162e-cc78-11e3-81ab-4c9367dc0958"))
        );
    }
}

#[tokio::test]
async fn forgejo_signed_push_is_verified_and_formatted() {
    let mut h = start(ci_config()).await;
    let body = fixture("forgejo_push.json");
    let sig = sign(b"f0rge", &body);
    let resp = h
        .http
        .post(h.hook_url("forge"))
        .header("Content-Type", "application/json")
        .header("X-Forgejo-Event", "push")
        .header("X-Gitea-Event", "push")
        .header("X-Forgejo-Signature", &sig)
        .header("X-Gitea-Signature", &sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (_, _, event) = h.next().await;
    assert_eq!(message_body(&event), expected("forgejo_push.txt"));
}

#[tokio::test]
async fn gitlab_token_header_is_accepted() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("forge"))
        .header("Content-Type", "application/json")
        .header("X-Gitlab-Event", "Merge Request Hook")
        .header("X-Gitlab-Token", "f0rge")
        .body(fixture("gitlab_merge_request.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (_, _, event) = h.next().await;
    assert_eq!(message_body(&event), expected("gitlab_merge_request.txt"));
}

#[tokio::test]
async fn bad_or_missing_credentials_are_401_and_deliver_nothing() {
    let mut h = start(ci_config()).await;
    let body = fixture("github_push.json");
    let wrong_key = h
        .http
        .post(h.hook_url("forge"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(b"not-the-token", &body)),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    assert_eq!(wrong_key.headers()["www-authenticate"], "Bearer");
    let (_, err) = status_and_json(wrong_key).await;
    let text = err["error"].as_str().unwrap();
    assert!(text.contains("X-Hub-Signature-256"), "{text}");
    assert!(!text.contains("f0rge"));

    // A valid signature of a different body does not cover this one.
    let mut tampered = body.clone();
    tampered.push(b' ');
    let resp = h
        .http
        .post(h.hook_url("forge"))
        .header("X-Gitea-Signature", sign(b"f0rge", &body))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let wrong_bearer = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("S3cret")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_bearer.status(), 401);
    let none = h
        .http
        .post(h.hook_url("ci"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(none).await;
    assert_eq!(status, 401);
    assert!(err["error"].as_str().unwrap().starts_with("no credentials"));
    h.assert_nothing();
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mut table = ci_config();
    table["max_body_bytes"] = json!(64);
    let mut h = start(table).await;
    let resp = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "x".repeat(100)}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(resp).await;
    assert_eq!(status, 413);
    assert_eq!(err["error"], "the body is larger than 64 bytes");
    h.assert_nothing();
}

#[tokio::test]
async fn malformed_json_is_400_with_the_parse_error() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .header("Content-Type", "application/json")
        .body("{\"text\": \"unterminated")
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(resp).await;
    assert_eq!(status, 400);
    // The parse error, then what was received (so a sender sees what went wrong).
    assert_eq!(
        err["error"],
        "malformed JSON: EOF while parsing a string at line 1 column 22 \
         (received Content-Type: application/json, 22 bytes: {\\\"text\\\": \\\"unterminated)"
    );
    let unknown_shape = h
        .http
        .post(h.hook_url("ci"))
        .bearer_auth("s3cret")
        .json(&json!({"temperature": 21}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(unknown_shape).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot tell what this payload is")
    );
    h.assert_nothing();
}

#[tokio::test]
async fn unknown_hook_is_404() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("nope"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(resp).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "no hook named `nope`");
    h.assert_nothing();
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let mut h = start(ci_config()).await;
    // Unauthenticated requests do not use up the hook's allowance (auth comes first).
    let bad = h
        .http
        .post(h.hook_url("tiny"))
        .bearer_auth("x")
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    for i in 0..2 {
        let resp = h
            .http
            .post(h.hook_url("tiny"))
            .bearer_auth("t")
            .body(format!("message {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let resp = h
        .http
        .post(h.hook_url("tiny"))
        .bearer_auth("t")
        .body("one too many")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(message_body(&h.next().await.2), "message 0");
    assert_eq!(message_body(&h.next().await.2), "message 1");
    h.assert_nothing();
}

#[tokio::test]
async fn alertmanager_group_is_posted_into_the_room() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("alerts"))
        .bearer_auth("al3rt")
        .header("Content-Type", "application/json")
        .body(fixture("alertmanager_firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (user, login, event) = h.next().await;
    assert_eq!(user, "ops@conference.localhost");
    assert_eq!(login, LoginId::new("webhook:alerts"));
    assert_eq!(
        event,
        RemoteEvent::PostToXmppRoom {
            from: RemoteUserId::new("alerts"),
            room: "ops@conference.localhost".into(),
            nick: "Alertmanager".into(),
            body: expected("alertmanager_firing.txt"),
        }
    );
}

#[tokio::test]
async fn template_hook_renders_json_and_form_bodies() {
    let mut h = start(ci_config()).await;
    let resp = h
        .http
        .post(h.hook_url("tpl"))
        .bearer_auth("tpl")
        .json(&json!({"service": "db1", "state": "down", "note": "disk full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(message_body(&h.next().await.2), "*db1* is DOWN: disk full");
    let resp = h
        .http
        .post(h.hook_url("tpl"))
        .bearer_auth("tpl")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("service=web&state=up")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(message_body(&h.next().await.2), "*web* is UP");
}

#[tokio::test]
async fn plain_text_and_form_bodies() {
    let mut h = start(ci_config()).await;
    for (ct, body, want) in [
        ("text/plain", "deploy finished", "deploy finished"),
        (
            "application/x-www-form-urlencoded",
            "message=hello+there",
            "hello there",
        ),
        ("application/json", "{\"body\": \"from body\"}", "from body"),
    ] {
        let resp = h
            .http
            .post(h.hook_url("ci"))
            .bearer_auth("s3cret")
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{ct}");
        assert_eq!(message_body(&h.next().await.2), want);
    }
}

#[tokio::test]
async fn closed_core_queue_is_503() {
    let h = start(ci_config()).await;
    let Harness {
        rx,
        http,
        base,
        connector,
        ..
    } = h;
    drop(rx);
    let resp = http
        .post(format!("{base}/hooks/ci"))
        .bearer_auth("s3cret")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(resp).await;
    assert_eq!(status, 503);
    assert_eq!(err["error"], "the gateway core is no longer listening");
    connector.stop().await;
}

#[tokio::test]
async fn requests_are_counted_for_metrics() {
    let mut h = start(ci_config()).await;
    let get_hook = h.http.get(h.hook_url("ci")).send().await.unwrap();
    assert_eq!(get_hook.status(), 405);
    for token in ["s3cret", "wrong"] {
        h.http
            .post(h.hook_url("ci"))
            .bearer_auth(token)
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap();
    }
    h.http.post(h.hook_url("zzz")).send().await.unwrap();
    h.next().await;
    // The core serves /metrics; the bridge's part is what it registers there.
    let text = estuary_bridge_api::prometheus::text(|r| h.connector.register_metrics(r))
        .expect("the bridge's metrics encode");
    for line in [
        "estuary_webhook_requests_total{hook=\"ci\",status=\"202\"} 1",
        "estuary_webhook_requests_total{hook=\"ci\",status=\"401\"} 1",
        "estuary_webhook_requests_total{hook=\"_unknown\",status=\"404\"} 1",
        "estuary_webhook_messages_delivered_total{hook=\"ci\"} 1",
        "# TYPE estuary_webhook_outgoing_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}
