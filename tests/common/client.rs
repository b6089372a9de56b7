//! A real XMPP client (tokio-xmpp, plaintext c2s) that a test drives stanza by stanza.
//!
//! Everything received is kept in a buffer until a test claims it with [`TestClient::expect`],
//! so the order in which a test asks for stanzas does not have to match the order in which the
//! server sends them.

use super::XmppServer;
use super::c2s::{C2sConnector, CLIENT_NS, COMPONENT_NS};
use futures::StreamExt;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

/// The namespace of c2s stanzas.
pub const JABBER_CLIENT: &str = CLIENT_NS;

/// How long [`TestClient::expect`] waits unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long logging in may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A logged-in XMPP client session against a harness server.
///
/// tokio-xmpp reconnects on its own when the link drops (backoff 1 s, 2 s, 4 s … 30 s); after
/// a reconnect this client sends its initial presence again, and
/// [`wait_reconnected`](Self::wait_reconnected) tells a test when that has happened.
pub struct TestClient {
    client: Client,
    jid: FullJid,
    label: String,
    buffer: VecDeque<Element>,
    /// How many times the session came online (1 after `connect`).
    online: u32,
    timeout: Duration,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("jid", &self.jid)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Logs in as `user@<server domain>/<resource>` over plaintext c2s, sends initial presence
    /// and waits until the server has processed it (a ping round trip). The account must exist
    /// (see [`XmppServer::register`]). Panics after 10 s with the server's log tail.
    pub async fn connect<S: XmppServer + ?Sized>(
        server: &S,
        user: &str,
        password: &str,
        resource: &str,
    ) -> TestClient {
        let jid: FullJid = format!("{user}@{}/{resource}", server.domain())
            .parse()
            .unwrap_or_else(|e| {
                panic!(
                    "{user}@{}/{resource} is not a valid JID: {e}",
                    server.domain()
                )
            });
        let client = Client::new_with_connector(
            jid.clone(),
            password.to_string(),
            C2sConnector(server.c2s_addr()),
            Timeouts::tight(),
        );
        let mut this = TestClient {
            client,
            jid: jid.clone(),
            label: jid.to_string(),
            buffer: VecDeque::new(),
            online: 0,
            timeout: DEFAULT_TIMEOUT,
        };
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        while this.online == 0 {
            if !this.pump(deadline).await {
                panic!(
                    "{jid} could not log in to {} at {} within {LOGIN_TIMEOUT:?} \
                     (is the account registered with this password?); server log tail:\n{}",
                    server.name(),
                    server.c2s_addr(),
                    server.log_tail()
                );
            }
        }
        this.settle().await;
        tracing::info!(jid = %this.jid, "test client online");
        this
    }

    /// The full JID the server bound for this session.
    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// The bare JID (`user@domain`) as a string.
    pub fn bare(&self) -> String {
        self.jid.to_bare().to_string()
    }

    /// Changes how long [`expect`](Self::expect) waits (default 10 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends a stanza: a [`Message`], [`Presence`], [`Iq`] or a minidom [`Element`] in the
    /// `jabber:client` namespace. Panics if it is not a valid stanza or the stream is gone.
    pub async fn send(&mut self, stanza: impl Into<Element>) {
        let stanza = to_stanza(stanza.into());
        // send_stanza waits until the stanza is written, which never happens while tokio-xmpp
        // is still reconnecting: bound it.
        match tokio::time::timeout(self.timeout, self.client.send_stanza(stanza)).await {
            Ok(Ok(_token)) => {}
            Ok(Err(e)) => panic!("{} could not send a stanza: {e}", self.label),
            Err(_) => panic!(
                "{}: a stanza was not written within {:?} (is the client still reconnecting?)",
                self.label, self.timeout
            ),
        }
    }

    /// Sends an IQ (given a missing id, a fresh one) and returns the `result` or `error` with
    /// the same id; stanzas that arrive meanwhile stay buffered for [`expect`](Self::expect).
    pub async fn iq(&mut self, iq: impl Into<Element>) -> Element {
        let mut iq = iq.into();
        assert!(
            iq.name() == "iq",
            "TestClient::iq() needs an <iq/>, got <{}/>",
            iq.name()
        );
        let id = match iq.attr("id") {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                iq.set_attr(
                    tokio_xmpp::minidom::rxml::Namespace::NONE,
                    tokio_xmpp::minidom::rxml::NcName::try_from("id")
                        .expect("`id` is a valid attribute name"),
                    id.clone(),
                );
                id
            }
        };
        self.send(iq).await;
        self.expect(&format!("the answer to iq {id}"), |s| {
            s.name() == "iq"
                && s.attr("id") == Some(id.as_str())
                && matches!(s.attr("type"), Some("result") | Some("error"))
        })
        .await
    }

    /// Returns (and removes from the buffer) the first stanza, buffered or incoming, for which
    /// `predicate` holds. Waits at most the client's timeout (default 10 s); on timeout panics
    /// with `description` and every stanza received but not yet claimed.
    pub async fn expect(
        &mut self,
        description: &str,
        predicate: impl FnMut(&Element) -> bool,
    ) -> Element {
        let timeout = self.timeout;
        self.expect_within(description, timeout, predicate).await
    }

    /// [`expect`](Self::expect) with an explicit time limit.
    pub async fn expect_within(
        &mut self,
        description: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&Element) -> bool,
    ) -> Element {
        if let Some(found) = self.take_buffered(&mut predicate) {
            return found;
        }
        let deadline = Instant::now() + timeout;
        let mut seen = self.buffer.len();
        loop {
            if !self.pump(deadline).await {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {description}; \
                     {} stanza(s) received and not claimed:\n{}",
                    self.label,
                    self.buffer.len(),
                    self.dump()
                );
            }
            // pump() appends at most one stanza; check only what is new.
            while seen < self.buffer.len() {
                if predicate(&self.buffer[seen]) {
                    return self
                        .buffer
                        .remove(seen)
                        .expect("the index was checked against the buffer's length");
                }
                seen += 1;
            }
        }
    }

    /// Waits for a message from a JID starting with `from_prefix` whose body (in any
    /// language, see PEERS.md on `xml:lang`) is exactly `body`.
    pub async fn expect_message_body(&mut self, from_prefix: &str, body: &str) -> Element {
        self.expect(
            &format!("a message from {from_prefix}… with body {body:?}"),
            |s| {
                s.name() == "message"
                    && s.attr("from").is_some_and(|f| f.starts_with(from_prefix))
                    && bodies(s).iter().any(|b| b == body)
            },
        )
        .await
    }

    /// Asserts that no stanza matching `predicate` arrives within `period` (buffered ones
    /// count too).
    pub async fn expect_none(
        &mut self,
        description: &str,
        period: Duration,
        mut predicate: impl FnMut(&Element) -> bool,
    ) {
        if let Some(found) = self.buffer.iter().find(|s| predicate(s)) {
            panic!(
                "{}: did not expect {description}, got {}",
                self.label,
                String::from(found)
            );
        }
        let deadline = Instant::now() + period;
        let mut seen = self.buffer.len();
        while self.pump(deadline).await {
            while seen < self.buffer.len() {
                if predicate(&self.buffer[seen]) {
                    panic!(
                        "{}: did not expect {description}, got {}",
                        self.label,
                        String::from(&self.buffer[seen])
                    );
                }
                seen += 1;
            }
        }
    }

    /// Reads what arrives until `deadline` or the first stanza, whichever comes first, and
    /// returns every buffered stanza (taken out of the buffer). Never panics on a timeout:
    /// for tests that watch a stream of traffic while doing something else.
    pub async fn receive_until(&mut self, deadline: Instant) -> Vec<Element> {
        if self.buffer.is_empty() {
            self.pump(deadline).await;
        }
        self.drain()
    }

    /// Removes and returns everything buffered so far.
    pub fn drain(&mut self) -> Vec<Element> {
        self.buffer.drain(..).collect()
    }

    /// Registers with the gateway at `domain` in-band (XEP-0077, a submitted data form with
    /// `username` and `password`, as the fake bridge asks) and returns the answer.
    pub async fn register_with_gateway(
        &mut self,
        domain: &str,
        username: &str,
        password: &str,
    ) -> Element {
        let query: Element = format!(
            "<iq xmlns='jabber:client' type='set' to='{domain}'>\
             <query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='username'><value>{username}</value></field>\
             <field var='password'><value>{password}</value></field></x></query></iq>"
        )
        .parse()
        .expect("a well-formed registration");
        self.iq(query).await
    }

    /// Joins the MUC room as `occupant` (`room@domain/nick`) and waits for the
    /// self-presence (status 110), which it returns.
    pub async fn join_muc(&mut self, occupant: &str) -> Element {
        let join: Element = format!(
            "<presence xmlns='jabber:client' to='{occupant}'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        .parse()
        .expect("a well-formed join");
        self.send(join).await;
        self.expect("the self-presence", |s| {
            s.attr("from") == Some(occupant) && String::from(s).contains("code='110'")
        })
        .await
    }

    /// Reads the whole MAM archive of `archive` (a room JID, or the user's own archive with
    /// the bare JID), page by page of 250: (stanza-id, body) of each message, oldest first.
    /// Panics when an answer is not a result or the archive does not end within 20 pages.
    pub async fn mam_archive(&mut self, archive: &str) -> Vec<(String, String)> {
        let mut all = Vec::new();
        let mut after = String::new();
        for page in 0..20 {
            let qid = format!("mam{page}");
            let rsm = if after.is_empty() {
                "<max>250</max>".to_string()
            } else {
                format!("<max>250</max><after>{after}</after>")
            };
            let query: Element = format!(
                "<iq xmlns='jabber:client' type='set' to='{archive}'>\
                 <query xmlns='urn:xmpp:mam:2' queryid='{qid}'>\
                 <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>"
            )
            .parse()
            .expect("a well-formed MAM query");
            let fin = self.iq(query).await;
            assert_eq!(fin.attr("type"), Some("result"), "{}", String::from(&fin));
            for m in self.drain() {
                let Some(result) = m.get_child("result", "urn:xmpp:mam:2") else {
                    continue;
                };
                if result.attr("queryid") != Some(qid.as_str()) {
                    continue;
                }
                let body = result
                    .get_child("forwarded", "urn:xmpp:forward:0")
                    .and_then(|f| f.get_child("message", "jabber:client"))
                    .and_then(|m| m.get_child("body", "jabber:client"))
                    .map(|b| b.text())
                    .unwrap_or_default();
                all.push((result.attr("id").unwrap_or_default().to_string(), body));
            }
            let xml = String::from(&fin);
            if xml.contains("complete='true'") || xml.contains("complete=\"true\"") {
                return all;
            }
            after = fin
                .get_child("fin", "urn:xmpp:mam:2")
                .and_then(|f| f.get_child("set", "http://jabber.org/protocol/rsm"))
                .and_then(|s| s.get_child("last", "http://jabber.org/protocol/rsm"))
                .map(|l| l.text())
                .expect("an incomplete page names its last message");
        }
        panic!(
            "{}: the archive of {archive} did not end within 20 pages",
            self.label
        );
    }

    /// Waits (at most `limit`) until tokio-xmpp has reconnected after a lost link, then sends
    /// initial presence again and waits until the server has processed it.
    pub async fn wait_reconnected(&mut self, limit: Duration) {
        let before = self.online;
        let deadline = Instant::now() + limit;
        while self.online == before {
            if !self.pump(deadline).await {
                panic!(
                    "{}: no reconnect within {limit:?}; buffered stanzas:\n{}",
                    self.label,
                    self.dump()
                );
            }
        }
        self.settle().await;
    }

    /// Closes the stream cleanly (bounded to 5 s).
    pub async fn disconnect(self) {
        let label = self.label;
        match tokio::time::timeout(Duration::from_secs(5), self.client.send_end()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%label, %e, "closing the stream failed"),
            Err(_) => tracing::warn!(%label, "closing the stream took longer than 5 s"),
        }
    }

    /// Sends initial presence and waits for a ping round trip, so the server has handled the
    /// presence before the test goes on.
    async fn settle(&mut self) {
        self.send(Presence::available()).await;
        let domain = Jid::from(self.jid.domain().to_owned());
        let ping = Element::builder("iq", JABBER_CLIENT)
            .attr(name("type"), "get")
            .attr(name("to"), domain.to_string())
            .append(Element::builder("ping", "urn:xmpp:ping").build())
            .build();
        self.iq(ping).await;
    }

    fn take_buffered(&mut self, predicate: &mut impl FnMut(&Element) -> bool) -> Option<Element> {
        let index = self.buffer.iter().position(predicate)?;
        self.buffer.remove(index)
    }

    /// Reads one event until `deadline`. Stanzas go to the buffer; returns `false` on timeout.
    async fn pump(&mut self, deadline: Instant) -> bool {
        let event = match tokio::time::timeout_at(deadline, self.client.next()).await {
            Err(_) => return false,
            Ok(None) => panic!("{}: the tokio-xmpp client stream ended", self.label),
            Ok(Some(event)) => event,
        };
        match event {
            Event::Online {
                bound_jid, resumed, ..
            } => {
                self.online += 1;
                if let Ok(full) = bound_jid.try_into_full() {
                    self.jid = full;
                }
                tracing::debug!(jid = %self.jid, resumed, count = self.online, "online");
            }
            Event::Disconnected(e) => {
                tracing::debug!(label = %self.label, %e, "disconnected");
            }
            Event::Stanza(stanza) => {
                let element = from_stanza(stanza);
                tracing::trace!(label = %self.label, stanza = %String::from(&element), "received");
                self.buffer.push_back(element);
            }
        }
        true
    }

    fn dump(&self) -> String {
        if self.buffer.is_empty() {
            return "  (none)".to_string();
        }
        self.buffer
            .iter()
            .map(|s| format!("  {}", String::from(s)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every `<body/>` text of a message, whatever its `xml:lang`.
pub fn bodies(stanza: &Element) -> Vec<String> {
    stanza
        .children()
        .filter(|c| c.is("body", JABBER_CLIENT))
        .map(Element::text)
        .collect()
}

/// An attribute name for minidom's builder.
pub fn name(attr: &str) -> tokio_xmpp::minidom::rxml::NcName {
    tokio_xmpp::minidom::rxml::NcName::try_from(attr)
        .unwrap_or_else(|e| panic!("{attr:?} is not a valid attribute name: {e}"))
}

fn to_stanza(element: Element) -> Stanza {
    let xml = String::from(&element);
    // xmpp-parsers' typed stanzas live in the component namespace in this build (see c2s.rs):
    // elements written by a test are in jabber:client, typed stanzas turned into elements are not.
    let element = match element.ns().as_str() {
        CLIENT_NS => renamespace(&element, CLIENT_NS, COMPONENT_NS),
        COMPONENT_NS => element,
        other => {
            panic!("a stanza to send must be in the jabber:client namespace, not {other}: {xml}")
        }
    };
    match element.name() {
        "message" => Message::try_from(element).map(Stanza::from),
        "presence" => Presence::try_from(element).map(Stanza::from),
        "iq" => Iq::try_from(element).map(Stanza::from),
        other => panic!("<{other}/> is not a stanza: {xml}"),
    }
    .unwrap_or_else(|e| panic!("not a valid stanza ({e}): {xml}"))
}

fn from_stanza(stanza: Stanza) -> Element {
    let element: Element = match stanza {
        Stanza::Message(m) => m.into(),
        Stanza::Presence(p) => p.into(),
        Stanza::Iq(i) => i.into(),
    };
    renamespace(&element, COMPONENT_NS, CLIENT_NS)
}

/// A copy of `element` where every element in namespace `from` is in `to` instead.
fn renamespace(element: &Element, from: &str, to: &str) -> Element {
    let ns = if element.ns() == from {
        to.to_string()
    } else {
        element.ns()
    };
    let mut copy = Element::bare(element.name(), ns);
    *copy.attrs_mut() = element.attrs().clone();
    for node in element.nodes() {
        match node {
            Node::Element(child) => {
                copy.append_child(renamespace(child, from, to));
            }
            Node::Text(text) => copy.append_text_node(text.clone()),
        }
    }
    copy
}
