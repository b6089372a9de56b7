//! What Prosody 0.12's XEP-0363 service (`http_file_share`) grants a component, found
//! against a real Prosody: the gateway's upload of files that a network hands over as bytes
//! will request its slots this way.
//!
//! Measured (this test): with `http_file_share_access` unset, the service answers slot
//! requests from the component's own domain and from any JID on it (Prosody's
//! `may_upload` accepts an uploader whose host is any host of the server, and a component's
//! domain is one); the PUT with the slot's headers stores the bytes and a GET of the slot's
//! URL returns them; the service appears in disco#items of the server domain; a request
//! over `http_file_share_size_limit` is refused `not-acceptable` with `file-too-large`.

// This test uses the harness's Prosody only, not its client.
#[allow(unused_imports)]
mod common;

use common::Prosody;
use futures::StreamExt;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::DiscoItemsQuery;
use tokio_xmpp::parsers::http_upload::SlotRequest;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Component, Stanza};

const PROBE: &str = "probe.localhost";
const SECRET: &str = "probe-secret";
const UPLOAD_NS: &str = "urn:xmpp:http:upload:0";

/// Sends `iq` and waits (10 s at most) for the answer with its id, as an element.
async fn ask(component: &mut Component<TcpServerConnector>, iq: Iq, id: &str) -> Element {
    component
        .send_stanza(Stanza::Iq(iq))
        .await
        .expect("the component sends");
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(stanza) = component.next().await {
            if let Stanza::Iq(answer) = stanza {
                let el = Element::from(answer);
                if el.attr("id") == Some(id) {
                    return el;
                }
            }
        }
        panic!("the component stream ended");
    })
    .await
    .expect("an answer within 10 s")
}

fn slot_request(id: &str, from: &str, filename: &str, size: u64) -> Iq {
    Iq::from_get(
        id,
        SlotRequest {
            filename: filename.into(),
            size,
            content_type: Some("text/plain".into()),
        },
    )
    .with_to(Jid::new("upload.localhost").expect("a JID"))
    .with_from(Jid::new(from).expect("a JID"))
}

#[tokio::test]
async fn prosody_grants_upload_slots_to_a_component() {
    common::init_tracing();
    let server = Prosody::start_with_upload(&[(PROBE, SECRET)]).await;
    let mut component = Component::new_plaintext(
        PROBE,
        SECRET,
        DnsConfig::addr(&server.component_addr().to_string()),
        Timeouts::tight(),
    )
    .await
    .expect("the probe component attaches");

    // The service is found by disco#items on the server domain.
    let items = ask(
        &mut component,
        Iq::from_get(
            "d1",
            DiscoItemsQuery {
                node: None,
                rsm: None,
            },
        )
        .with_to(Jid::new("localhost").expect("a JID"))
        .with_from(Jid::new(PROBE).expect("a JID")),
        "d1",
    )
    .await;
    let listed = String::from(&items);
    assert!(listed.contains("upload.localhost"), "{listed}");

    let http = reqwest::Client::new();
    for (n, from) in [PROBE, "alice@probe.localhost"].into_iter().enumerate() {
        let id = format!("s{n}");
        let bytes = format!("hello from {from}");
        let answer = ask(
            &mut component,
            slot_request(&id, from, "hello.txt", bytes.len() as u64),
            &id,
        )
        .await;
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "a slot for {from}: {}\n{}",
            String::from(&answer),
            server.log_tail()
        );
        let slot = answer.get_child("slot", UPLOAD_NS).expect("a slot");
        let put = slot.get_child("put", UPLOAD_NS).expect("a put URL");
        let get = slot
            .get_child("get", UPLOAD_NS)
            .and_then(|g| g.attr("url"))
            .expect("a get URL");
        let mut request = http.put(put.attr("url").expect("a put URL"));
        for h in put.children().filter(|c| c.is("header", UPLOAD_NS)) {
            request = request.header(h.attr("name").expect("a header name"), h.text());
        }
        let stored = request
            .header("Content-Type", "text/plain")
            .body(bytes.clone())
            .send()
            .await
            .expect("the PUT reaches Prosody");
        assert!(
            stored.status().is_success(),
            "PUT: {}\n{}",
            stored.status(),
            String::from(&answer)
        );
        let fetched = http
            .get(get)
            .send()
            .await
            .expect("the GET reaches Prosody")
            .text()
            .await
            .expect("a body");
        assert_eq!(fetched, bytes, "GET {get} returns what was PUT");
    }

    // Over the service's size limit (1 MiB here): refused, with the limit.
    let answer = ask(
        &mut component,
        slot_request("big", PROBE, "big.bin", 2 << 20),
        "big",
    )
    .await;
    let text = String::from(&answer);
    assert_eq!(answer.attr("type"), Some("error"), "{text}");
    assert!(
        text.contains("not-acceptable") && text.contains("file-too-large"),
        "{text}"
    );
}
