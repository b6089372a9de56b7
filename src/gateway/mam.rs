//! XEP-0313 archive queries on rooms, answered from the `archive` table.

use super::Gateway;
use super::iq::Request;
use crate::db::ArchiveQuery;
use crate::xmpp::el::a;
use crate::xmpp::message as msg;
use crate::xmpp::{errors, forms, ns};
use estuary_bridge_api::{ChatKey, RemoteChatId};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::stanza_error::StanzaError;

/// The most messages one page returns.
const MAX_PAGE: i64 = 250;
/// The messages of a page when the query asks no `<max/>`: 100, as Biboumi (whose users'
/// clients may rely on it) and as the gateway's other paged lists.
const DEFAULT_PAGE: i64 = 100;

/// Reads the query's form and RSM into an archive query.
pub(super) fn read_query(query: &Element) -> Result<ArchiveQuery, StanzaError> {
    let mut q = ArchiveQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    let time = |v: Option<String>, name: &str| -> Result<Option<i64>, StanzaError> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => msg::parse_rfc3339(&s)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| Some(d.as_millis() as i64))
                .ok_or_else(|| {
                    errors::bad_request(format!("'{name}' is not a XEP-0082 date-time: {s}"))
                }),
        }
    };
    if let Some(x) = query.get_child("x", ns::DATA_FORMS) {
        q.start_ms = time(forms::value_of(x, "start"), "start")?;
        q.end_ms = time(forms::value_of(x, "end"), "end")?;
        q.with_nick = forms::value_of(x, "with")
            .filter(|w| !w.is_empty())
            .map(|w| match w.split_once('/') {
                Some((_, nick)) => nick.to_string(),
                None => w,
            });
    }
    if let Some(set) = query.get_child("set", ns::RSM) {
        if let Some(max) = set.get_child("max", ns::RSM) {
            q.limit = max
                .text()
                .trim()
                .parse::<i64>()
                .map_err(|_| errors::bad_request("<max/> must be a number"))?
                .clamp(0, MAX_PAGE);
        }
        if let Some(after) = set.get_child("after", ns::RSM) {
            q.after_id = Some(after.text());
        }
        if let Some(before) = set.get_child("before", ns::RSM) {
            let t = before.text();
            if t.is_empty() {
                q.last_page = true;
            } else {
                q.before_id = Some(t);
            }
        }
    }
    Ok(q)
}

impl Gateway {
    pub(super) async fn handle_mam(
        self: &Arc<Self>,
        req: &Request,
        room: &RemoteChatId,
    ) -> Result<Option<Element>, StanzaError> {
        let q = read_query(&req.payload)?;
        let query_id = req.payload.attr("queryid").map(str::to_string);
        let page = self
            .db
            .archive_query(&self.bridge, req.user().as_str(), room.as_str(), &q)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    // XEP-0059 §2.6: an `after`/`before` id that is not in the archive.
                    errors::item_not_found(format!("{e}: page from an id of this archive"))
                } else {
                    errors::internal(format!("the archive could not be read: {e}"))
                }
            })?;
        let room_jid = self
            .chat_jid(&ChatKey::Room(room.clone()))
            .ok_or_else(|| errors::internal("the room has no JID"))?;
        for m in &page.messages {
            let Some(from) = self.occupant_jid(room, &m.from_nick) else {
                continue;
            };
            let mut inner = Message::new_with_type(MessageType::Groupchat, None::<Jid>);
            inner.from = Some(from);
            inner.bodies.insert(Default::default(), m.body.clone());
            let mut inner_el: Element = inner.into();
            // The forwarded message is in the client namespace, whatever our stream's is.
            inner_el = rename_ns(inner_el, ns::CLIENT);
            let at =
                SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(m.at_ms.max(0) as u64);
            let forwarded = Element::builder("forwarded", ns::FORWARD)
                .append(msg::delay(at, room_jid.as_str()))
                .append(inner_el)
                .build();
            let mut result = Element::builder("result", ns::MAM)
                .attr(a("id"), m.stanza_id.clone())
                .append(forwarded)
                .build();
            if let Some(qid) = &query_id {
                crate::xmpp::el::set(&mut result, "queryid", qid.clone());
            }
            let mut wrapper = Message::new_with_type(MessageType::Normal, Some(req.from.clone()));
            wrapper.from = Some(Jid::from(room_jid.clone()));
            wrapper.payloads.push(result);
            self.send(wrapper).await;
        }
        let mut set = Element::builder("set", ns::RSM).build();
        if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
            set.append_child(
                Element::builder("first", ns::RSM)
                    .append(first.stanza_id.as_str())
                    .build(),
            );
            set.append_child(
                Element::builder("last", ns::RSM)
                    .append(last.stanza_id.as_str())
                    .build(),
            );
        }
        let mut fin = Element::builder("fin", ns::MAM).append(set).build();
        if page.complete {
            crate::xmpp::el::set(&mut fin, "complete", "true");
        }
        Ok(Some(fin))
    }
}

/// Copies an element into another default namespace (children in the old one follow).
fn rename_ns(el: Element, to: &str) -> Element {
    let old = el.ns();
    let mut out = Element::builder(el.name(), to).build();
    for (name, value) in el.attrs() {
        out.set_attr(name.0.clone(), name.1.clone(), value.to_string());
    }
    for node in el.nodes() {
        match node {
            Node::Element(child) if child.ns() == old => {
                out.append_child(rename_ns(child.clone(), to));
            }
            Node::Element(child) => {
                out.append_child(child.clone());
            }
            Node::Text(text) => out.append_text_node(text.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_reads_form_and_rsm() {
        let q: Element =
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
            <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
            <field var='with'><value>#lobby@fake.localhost/bot</value></field></x>\
            <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set></query>"
                .parse()
                .unwrap();
        let aq = read_query(&q).unwrap();
        assert_eq!(aq.limit, 10);
        assert!(aq.last_page);
        assert_eq!(aq.with_nick.as_deref(), Some("bot"));
        assert_eq!(aq.start_ms, Some(1_275_868_800_000));
    }

    #[test]
    fn a_query_without_max_gets_a_page_of_100() {
        let q: Element = "<query xmlns='urn:xmpp:mam:2' queryid='f28'/>"
            .parse()
            .unwrap();
        assert_eq!(read_query(&q).unwrap().limit, 100);
        let q: Element = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>9999</max></set></query>"
            .parse()
            .unwrap();
        assert_eq!(read_query(&q).unwrap().limit, MAX_PAGE);
    }

    #[test]
    fn renaming_the_namespace_keeps_text_and_foreign_children() {
        let el: Element = "<message xmlns='jabber:component:accept' from='r@gw/n'><body>hi there</body><x xmlns='urn:other'>t</x></message>".parse().unwrap();
        let out = rename_ns(el, ns::CLIENT);
        assert_eq!(out.ns(), ns::CLIENT);
        assert_eq!(
            out.get_child("body", ns::CLIENT)
                .map(|b| b.text())
                .as_deref(),
            Some("hi there")
        );
        assert_eq!(
            out.get_child("x", "urn:other").map(|b| b.text()).as_deref(),
            Some("t")
        );
        assert_eq!(out.attr("from"), Some("r@gw/n"));
    }

    #[test]
    fn bad_dates_and_max_are_bad_requests() {
        let q: Element = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>".parse().unwrap();
        assert!(read_query(&q).is_err());
        let q: Element = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>lots</max></set></query>".parse().unwrap();
        assert!(read_query(&q).is_err());
    }
}
