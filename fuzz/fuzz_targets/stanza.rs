//! Fuzzes the core's pure translation of what a user sends into bridge types: arbitrary
//! bytes parsed as XML with minidom, then, as the link and the gateway do, refused when
//! nested deeper than `MAX_DEPTH`, cleaned of characters XML cannot carry, and read:
//! a `<message/>` into `Inbound` (body, `/me`, reply fallback, corrections, reactions,
//! markers, chat states), a `<presence/>` into a MUC `JoinIntent`, a data form into
//! `FormValues`, the addressed local part through XEP-0106 unescaping, and every
//! `stamp`/`since` through the RFC 3339 reader, and every `<pubsub/>` through the XEP-0084
//! request reader a contact's PEP service uses. Nothing may panic, and:
//!
//! * a cleaned stanza can always be written (`to_xml`);
//! * an action (`/me`) comes only from a body that started with `/me `, and the body read
//!   is never longer than the one sent;
//! * the message map key is the origin id, else the stanza id;
//! * escaping any local part and unescaping it gives it back;
//! * a time read from RFC 3339 is written back to a text that reads as the same time.
#![no_main]

use estuary::xmpp::avatar::{PUBSUB, PepRequest, pep_request};
use estuary::xmpp::escape::{escape_local, unescape_local};
use estuary::xmpp::forms::{check, read_submitted};
use estuary::xmpp::message::{parse_rfc3339, read, rfc3339};
use estuary::xmpp::muc::read_join_at;
use estuary::xmpp::xml_safe::{
    MAX_DEPTH, clean_element, depth, dismantle, first_forbidden, to_xml,
};
use estuary_bridge_api::{FieldKind, FormField, MessageKind};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::presence::Presence;

/// Larger inputs only slow the fuzzer down; the link bounds stanza size anyway.
const MAX_INPUT: usize = 64 * 1024;

fn fields() -> Vec<FormField> {
    vec![
        FormField::text("name", "Name").required(),
        FormField::secret("token", "Token"),
        FormField::boolean("replace", "Replace").default_value("0"),
        FormField {
            kind: FieldKind::Choice(vec![("a".into(), "A".into()), ("b".into(), "B".into())]),
            ..FormField::text("choice", "Choice")
        },
        FormField {
            kind: FieldKind::Multiline,
            ..FormField::text("to", "To")
        },
    ]
}

/// Every element of `el`, without recursion (the depth is bounded before this runs).
fn all_elements(el: &Element) -> Vec<&Element> {
    let mut out = Vec::new();
    let mut stack = vec![el];
    while let Some(e) = stack.pop() {
        out.push(e);
        stack.extend(e.children());
    }
    out
}

fn check_times(el: &Element) {
    for e in all_elements(el) {
        for name in ["stamp", "since"] {
            let Some(text) = e.attr(name) else { continue };
            if let Some(t) = parse_rfc3339(text) {
                let written = rfc3339(t);
                assert_eq!(
                    parse_rfc3339(&written),
                    Some(t),
                    "{text:?} read as {t:?}, written as {written:?}"
                );
            }
        }
    }
}

fn check_message(el: Element) {
    let Ok(msg) = Message::try_from(el) else {
        return;
    };
    let inbound = read(&msg);
    let sent = msg.get_best_body_cloned(vec![]).map(|(_, b)| b);
    assert_eq!(inbound.body.is_some(), sent.is_some());
    if let (Some(read_body), Some(sent)) = (&inbound.body, &sent) {
        assert!(read_body.chars().count() <= sent.chars().count());
        if inbound.kind == MessageKind::Action {
            assert!(inbound.reply_to.is_some() || sent.starts_with("/me "));
        }
    }
    let id = msg.id.as_ref().map(|id| id.0.as_str());
    assert_eq!(inbound.key(), inbound.origin_id.as_deref().or(id));
    if let Some(to) = &msg.to
        && let Some(node) = to.node()
    {
        let foreign = unescape_local(node.as_str());
        assert_eq!(unescape_local(&escape_local(&foreign)), foreign);
    }
    if let Some(body) = &inbound.body {
        assert_eq!(unescape_local(&escape_local(body)), *body);
    }
}

fn check_presence(el: Element) {
    let Ok(presence) = Presence::try_from(el) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let join = read_join_at(&presence.payloads, now);
    if let Some(since) = &join.since {
        assert!(
            parse_rfc3339(since).is_some(),
            "since {since:?} does not read back"
        );
    }
}

fn check_forms(el: &Element) {
    let fields = fields();
    for x in all_elements(el) {
        if x.is("x", "jabber:x:data")
            && let Ok(values) = read_submitted(x, &fields)
        {
            let _ = check(values, &fields);
        }
    }
}

/// Every `<pubsub/>` read as a PEP request: an item id asked for on the data node is one
/// the request carried.
fn check_pubsub(el: &Element) {
    for x in all_elements(el) {
        if x.is("pubsub", PUBSUB)
            && let Ok(PepRequest::Data(Some(id))) = pep_request(x)
        {
            assert!(
                all_elements(x)
                    .iter()
                    .any(|i| i.attr("id") == Some(id.as_str())),
                "item id {id:?} is not in the request"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut el) = text.parse::<Element>() else {
        return;
    };
    // As the link does: too deep is refused, and taken apart without recursion.
    if depth(&el, MAX_DEPTH) > MAX_DEPTH {
        dismantle(el);
        return;
    }
    clean_element(&mut el);
    assert_eq!(first_forbidden(&el), None);
    assert!(to_xml(&el).is_ok(), "a cleaned stanza cannot be written");
    check_times(&el);
    check_forms(&el);
    check_pubsub(&el);
    match el.name() {
        "message" => check_message(el),
        "presence" => check_presence(el),
        _ => {}
    }
});
