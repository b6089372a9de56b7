//! Message translation, pure both ways: what a user's `<message/>` asks for, and the
//! payloads of the `<message/>`s the gateway sends.
//!
//! Covers body and `/me`, XEP-0359 origin id, XEP-0184 receipts, XEP-0085 chat states,
//! XEP-0308 corrections, XEP-0424 retractions, XEP-0444 reactions, XEP-0461 replies (with
//! the XEP-0428 fallback quote removed), XEP-0333 displayed markers, XEP-0203 delay.

use crate::xmpp::el::a;
use crate::xmpp::ns;
use estuary_bridge_api::{ChatState, MessageKind};
use std::time::SystemTime;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;

const FALLBACK: &str = "urn:xmpp:fallback:0";

/// What a user's message asks the gateway to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inbound {
    /// The stanza's `id`.
    pub id: Option<String>,
    /// XEP-0359 origin id.
    pub origin_id: Option<String>,
    /// The text, with a reply's fallback quote removed and `/me ` taken off actions; with
    /// attachments, their caption (the lines that only repeat a URL taken out; empty when
    /// nothing else was said).
    pub body: Option<String>,
    /// XEP-0066 and XEP-0447 attachments.
    pub attachments: Vec<estuary_bridge_api::Attachment>,
    /// Normal or action.
    pub kind: MessageKind,
    /// A new room subject.
    pub subject: Option<String>,
    /// XEP-0308: the id of the message this corrects.
    pub replace: Option<String>,
    /// XEP-0424: the id of the message to retract.
    pub retract: Option<String>,
    /// XEP-0444: the id reacted to and the full set of reactions.
    pub reactions: Option<(String, Vec<String>)>,
    /// XEP-0461: the id replied to.
    pub reply_to: Option<String>,
    /// XEP-0085.
    pub chat_state: Option<ChatState>,
    /// XEP-0184: a receipt is requested.
    pub wants_receipt: bool,
    /// XEP-0333: displayed up to this id.
    pub displayed: Option<String>,
    /// XEP-0359 stanza ids the client's message carries, as `(id, by)`; those without a
    /// `by` are left out (they claim nobody, so nobody keeps them).
    pub stanza_ids: Vec<(String, String)>,
}

impl Inbound {
    /// The id to key the message map with: origin id first, then the stanza id.
    pub fn key(&self) -> Option<&str> {
        self.origin_id.as_deref().or(self.id.as_deref())
    }
}

/// Reads a user's message.
pub fn read(msg: &Message) -> Inbound {
    let mut out = Inbound {
        id: msg.id.as_ref().map(|id| id.0.clone()),
        subject: msg.subjects.values().next().cloned(),
        ..Default::default()
    };
    let mut fallback: Option<(usize, usize)> = None;
    for p in &msg.payloads {
        match (p.ns().as_str(), p.name()) {
            (ns::SID, "origin-id") => out.origin_id = p.attr("id").map(String::from),
            (ns::SID, "stanza-id") => {
                if let (Some(id), Some(by)) = (p.attr("id"), p.attr("by")) {
                    out.stanza_ids.push((id.to_string(), by.to_string()));
                }
            }
            (ns::RECEIPTS, "request") => out.wants_receipt = true,
            (ns::CORRECT, "replace") => out.replace = p.attr("id").map(String::from),
            (ns::RETRACT, "retract") => out.retract = p.attr("id").map(String::from),
            (ns::REACTIONS, "reactions") => {
                if let Some(id) = p.attr("id") {
                    let list = p
                        .children()
                        .filter(|c| c.is("reaction", ns::REACTIONS))
                        .map(|c| c.text())
                        .filter(|t| !t.is_empty())
                        .collect();
                    out.reactions = Some((id.to_string(), list));
                }
            }
            (ns::REPLY, "reply") => out.reply_to = p.attr("id").map(String::from),
            (ns::MARKERS, "displayed") => out.displayed = p.attr("id").map(String::from),
            (ns::CHATSTATES, name) => out.chat_state = chat_state(name),
            (FALLBACK, "fallback") if p.attr("for") == Some(ns::REPLY) => {
                if let Some(b) = p.get_child("body", FALLBACK) {
                    let start = b.attr("start").and_then(|s| s.parse().ok()).unwrap_or(0);
                    let end = b.attr("end").and_then(|s| s.parse().ok());
                    if let Some(end) = end {
                        fallback = Some((start, end));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((_, body)) = msg.get_best_body_cloned(vec![]) {
        let mut body = match fallback {
            Some((start, end)) if out.reply_to.is_some() => remove_chars(&body, start, end),
            _ => body,
        };
        if let Some(rest) = body.strip_prefix("/me ") {
            out.kind = MessageKind::Action;
            body = rest.to_string();
        }
        out.body = Some(body);
    }
    out.attachments = crate::xmpp::attachment::read(msg);
    if !out.attachments.is_empty() {
        let body = out.body.take().unwrap_or_default();
        out.body = Some(crate::xmpp::attachment::caption(&body, &out.attachments));
    }
    out
}

/// Removes the code points `start..end` (XEP-0426 counts code points).
fn remove_chars(s: &str, start: usize, end: usize) -> String {
    if start >= end {
        return s.to_string();
    }
    s.chars()
        .enumerate()
        .filter(|(i, _)| *i < start || *i >= end)
        .map(|(_, c)| c)
        .collect()
}

fn chat_state(name: &str) -> Option<ChatState> {
    Some(match name {
        "active" => ChatState::Active,
        "composing" => ChatState::Composing,
        "paused" => ChatState::Paused,
        "inactive" => ChatState::Inactive,
        "gone" => ChatState::Gone,
        _ => return None,
    })
}

/// The XEP-0085 element for a chat state.
pub fn chat_state_element(state: ChatState) -> Element {
    let name = match state {
        ChatState::Active => "active",
        ChatState::Composing => "composing",
        ChatState::Paused => "paused",
        ChatState::Inactive => "inactive",
        ChatState::Gone => "gone",
    };
    Element::builder(name, ns::CHATSTATES).build()
}

/// The body for a message of the given kind (`/me ` put back on actions).
pub fn body_text(body: &str, kind: MessageKind) -> String {
    match kind {
        MessageKind::Action => format!("/me {body}"),
        _ => body.to_string(),
    }
}

/// XEP-0359 `<origin-id/>`.
pub fn origin_id(id: &str) -> Element {
    Element::builder("origin-id", ns::SID)
        .attr(a("id"), id)
        .build()
}

/// XEP-0359 `<stanza-id/>` assigned by `by`.
pub fn stanza_id(id: &str, by: &str) -> Element {
    Element::builder("stanza-id", ns::SID)
        .attr(a("id"), id)
        .attr(a("by"), by)
        .build()
}

/// The stanza ids of a user's message that the gateway passes on (XEP-0359 §4: an entity
/// removes only the ids that claim to be its own): those whose `by` is not on `domain`, the
/// gateway's (the gateway, its rooms and contacts), at most 8 of them; a `by` that is not a
/// JID is dropped.
pub fn foreign_stanza_ids(ids: &[(String, String)], domain: &str) -> Vec<(String, String)> {
    ids.iter()
        .filter(|(_, by)| {
            tokio_xmpp::jid::Jid::new(by)
                .is_ok_and(|by| !by.domain().as_str().eq_ignore_ascii_case(domain))
        })
        .take(8)
        .cloned()
        .collect()
}

/// XEP-0184 `<received/>`.
pub fn receipt(id: &str) -> Element {
    Element::builder("received", ns::RECEIPTS)
        .attr(a("id"), id)
        .build()
}

/// XEP-0184 `<request/>`.
pub fn receipt_request() -> Element {
    Element::builder("request", ns::RECEIPTS).build()
}

/// XEP-0333 `<markable/>`.
pub fn markable() -> Element {
    Element::builder("markable", ns::MARKERS).build()
}

/// XEP-0333 `<displayed/>`.
pub fn displayed(id: &str) -> Element {
    Element::builder("displayed", ns::MARKERS)
        .attr(a("id"), id)
        .build()
}

/// XEP-0308 `<replace/>`.
pub fn replace(id: &str) -> Element {
    Element::builder("replace", ns::CORRECT)
        .attr(a("id"), id)
        .build()
}

/// XEP-0424 `<retract/>`.
pub fn retract(id: &str) -> Element {
    Element::builder("retract", ns::RETRACT)
        .attr(a("id"), id)
        .build()
}

/// XEP-0444 `<reactions/>`.
pub fn reactions(id: &str, list: &[String]) -> Element {
    let mut el = Element::builder("reactions", ns::REACTIONS)
        .attr(a("id"), id)
        .build();
    for r in list {
        el.append_child(
            Element::builder("reaction", ns::REACTIONS)
                .append(r.as_str())
                .build(),
        );
    }
    el
}

/// XEP-0461 `<reply/>`.
pub fn reply(id: &str) -> Element {
    Element::builder("reply", ns::REPLY)
        .attr(a("id"), id)
        .build()
}

/// XEP-0334 `<store/>` hint, for payload-only messages that belong in archives.
pub fn store_hint() -> Element {
    Element::builder("store", ns::HINTS).build()
}

/// How much older than now a message must be to be marked as delayed: live messages whose
/// time the network gives (IRC server-time, a webhook's receipt time) are always a little
/// in the past, and clients show `<delay/>` as "delivered late".
pub const LATE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a message sent `at` is late at `now` (more than [`LATE_AFTER`] old): history,
/// or a message that waited somewhere. A time in the future is not late.
pub fn is_late(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at).is_ok_and(|age| age > LATE_AFTER)
}

/// The `<delay/>` for a message from the network sent `at`, only when it is late at `now`.
pub fn delay_if_late(at: Option<SystemTime>, now: SystemTime, from: &str) -> Option<Element> {
    at.filter(|at| is_late(*at, now)).map(|at| delay(at, from))
}

/// Marks a `<message/>` with a body as delayed since `at` (XEP-0203) unless it already says
/// when it was sent: for stanzas queued while the component link is down.
pub fn mark_queued(stanza: &mut Element, at: SystemTime, from: &str) {
    if stanza.name() == "message"
        && stanza.children().any(|c| c.name() == "body")
        && !stanza.has_child("delay", ns::DELAY)
    {
        stanza.append_child(delay(at, from));
    }
}

/// XEP-0203 `<delay/>`.
pub fn delay(at: SystemTime, from: &str) -> Element {
    Element::builder("delay", ns::DELAY)
        .attr(a("from"), from)
        .attr(a("stamp"), rfc3339(at))
        .build()
}

/// A UTC timestamp as XEP-0082 wants it.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses the XEP-0082 timestamps clients send in MAM queries (UTC or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let (y, m, d): (i64, u32, u32) = (
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
    );
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0i64)
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (oh.parse::<i64>().ok()?, om.parse::<i64>().ok()?);
        if !(0..=23).contains(&oh) || !(0..=59).contains(&om) {
            return None;
        }
        (c, sign * (oh * 3600 + om * 60))
    } else {
        (time, 0)
    };
    let mut cp = clock.splitn(3, ':');
    let h: i64 = cp.next()?.parse().ok()?;
    let mi: i64 = cp.next()?.parse().ok()?;
    let sec_f: f64 = cp.next()?.parse().ok()?;
    // RFC 3339 years have four digits: a stamp from year 3352163685140732912 (seen by the
    // fuzzer) overflowed the day count.
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec_f)
    {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let total = days * 86_400 + h * 3600 + mi * 60 - offset_secs;
    let millis = (total as f64 + sec_f) * 1000.0;
    if millis < 0.0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(millis as u64))
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_older_than_a_few_seconds_are_late() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let ago = |secs| now - std::time::Duration::from_secs(secs);
        assert!(!is_late(now, now), "live");
        assert!(!is_late(ago(2), now), "server-time a little behind is live");
        assert!(!is_late(ago(5), now));
        assert!(is_late(ago(6), now), "late");
        assert!(is_late(ago(86_400), now), "history");
        assert!(
            !is_late(now + std::time::Duration::from_secs(60), now),
            "a clock ahead"
        );
        assert!(delay_if_late(Some(ago(1)), now, "irc.localhost").is_none());
        assert!(delay_if_late(None, now, "irc.localhost").is_none());
        let d = delay_if_late(Some(ago(60)), now, "irc.localhost").expect("a delay");
        assert_eq!(d.attr("from"), Some("irc.localhost"));
        assert_eq!(d.attr("stamp").map(String::from), Some(rfc3339(ago(60))));
    }

    #[test]
    fn queued_messages_are_marked_once_and_other_stanzas_never() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let mut m: Element = "<message xmlns='jabber:client'><body>hi</body></message>"
            .parse()
            .unwrap();
        mark_queued(&mut m, at, "gw.localhost");
        mark_queued(&mut m, at, "gw.localhost");
        assert_eq!(m.children().filter(|c| c.is("delay", ns::DELAY)).count(), 1);
        let mut old: Element = format!(
            "<message xmlns='jabber:client'><body>hi</body><delay xmlns='{}' stamp='x'/></message>",
            ns::DELAY
        )
        .parse()
        .unwrap();
        mark_queued(&mut old, at, "gw.localhost");
        let stamps: Vec<_> = old.children().filter_map(|c| c.attr("stamp")).collect();
        assert_eq!(stamps, ["x"], "the original time is kept");
        for xml in [
            "<message xmlns='jabber:client'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<presence xmlns='jabber:client'/>",
        ] {
            let mut s: Element = xml.parse().unwrap();
            mark_queued(&mut s, at, "gw.localhost");
            assert!(!s.has_child("delay", ns::DELAY), "{xml}");
        }
    }

    fn parse(xml: &str) -> Message {
        let el: Element = xml.parse().expect("fixture is XML");
        Message::try_from(el).expect("fixture is a message")
    }

    #[test]
    fn only_stanza_ids_of_others_are_kept() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='groupchat' id='m1'><body>hi</body>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='someone@else.example'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s2' by='#a%irc.example.net@irc.gw'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s3' by='irc.gw'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s4'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s5' by='irc.gw.example/x@y'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s6' by='a@irc.gw/x@y'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='s7' by='@@'/></message>",
        );
        let i = read(&m);
        assert_eq!(i.stanza_ids.len(), 6, "the one without `by` is not read");
        let kept = foreign_stanza_ids(&i.stanza_ids, "irc.gw");
        assert_eq!(
            kept,
            [
                ("s1".to_string(), "someone@else.example".to_string()),
                ("s5".to_string(), "irc.gw.example/x@y".to_string())
            ]
        );
    }

    #[test]
    fn plain_body_with_origin_id_and_receipt_request() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='m1' to='alice@fake.localhost' from='u@localhost/r'>\
            <body xml:lang='en'>hello</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/><request xmlns='urn:xmpp:receipts'/></message>",
        );
        let i = read(&m);
        assert_eq!(i.body.as_deref(), Some("hello"));
        assert_eq!(i.origin_id.as_deref(), Some("o1"));
        assert_eq!(i.key(), Some("o1"));
        assert!(i.wants_receipt);
    }

    #[test]
    fn action_correction_and_chat_state() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='m2'><body>/me waves</body>\
            <replace xmlns='urn:xmpp:message-correct:0' id='m1'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        let i = read(&m);
        assert_eq!(i.body.as_deref(), Some("waves"));
        assert_eq!(i.kind, MessageKind::Action);
        assert_eq!(i.replace.as_deref(), Some("m1"));
        assert_eq!(i.chat_state, Some(ChatState::Active));
        assert_eq!(i.key(), Some("m2"));
    }

    #[test]
    fn reactions_retraction_and_marker() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='m3'>\
            <reactions xmlns='urn:xmpp:reactions:0' id='x1'><reaction>👍</reaction><reaction>🎉</reaction></reactions></message>",
        );
        assert_eq!(
            read(&m).reactions,
            Some(("x1".into(), vec!["👍".into(), "🎉".into()]))
        );
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='m4'><retract xmlns='urn:xmpp:message-retract:1' id='x2'/></message>",
        );
        assert_eq!(read(&m).retract.as_deref(), Some("x2"));
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='x3'/></message>",
        );
        assert_eq!(read(&m).displayed.as_deref(), Some("x3"));
    }

    #[test]
    fn reply_fallback_is_removed() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat' id='m5'><body>&gt; hi\nyes!</body>\
            <reply xmlns='urn:xmpp:reply:0' id='x4' to='a@b'/>\
            <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='5'/></fallback></message>",
        );
        let i = read(&m);
        assert_eq!(i.reply_to.as_deref(), Some("x4"));
        assert_eq!(i.body.as_deref(), Some("yes!"));
    }

    #[test]
    fn bogus_fallback_range_does_not_panic() {
        let m = parse(
            "<message xmlns='jabber:component:accept' type='chat'><body>ab</body><reply xmlns='urn:xmpp:reply:0' id='x'/>\
            <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='9' end='2'/></fallback></message>",
        );
        assert_eq!(read(&m).body.as_deref(), Some("ab"));
    }

    /// Found by the `stanza` fuzz target: years and offsets out of RFC 3339's range are
    /// refused, not multiplied past `i64`.
    #[test]
    fn stamps_out_of_range_are_refused_without_overflow() {
        assert_eq!(
            parse_rfc3339(
                "0000000000000000000000000003352163685140732912-02-29T23:59:60.123+01:00"
            ),
            None
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T10:00:00+9223372036854775807:00"),
            None
        );
        assert_eq!(parse_rfc3339("10000-01-01T00:00:00Z"), None);
        assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_some());
    }

    #[test]
    fn timestamps_round_trip() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let s = rfc3339(t);
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.123+01:00"), Some(t));
        assert_eq!(parse_rfc3339("not a date"), None);
        assert_eq!(parse_rfc3339("2023-13-01T00:00:00Z"), None);
    }

    #[test]
    fn builders_produce_namespaced_elements() {
        assert_eq!(
            String::from(&receipt("a")),
            "<received xmlns='urn:xmpp:receipts' id='a'/>"
        );
        let r = reactions("m", &["👍".into()]);
        assert!(r.has_child("reaction", ns::REACTIONS));
        assert_eq!(body_text("waves", MessageKind::Action), "/me waves");
    }
}
