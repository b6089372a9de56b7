//! XEP-0045 room surface: occupant presences, status codes, subject and join errors, built
//! from the neutral room vocabulary.

use crate::xmpp::el::{a, set};
use crate::xmpp::ns;
use estuary_bridge_api::{Affiliation, Role};
use std::time::{Duration, SystemTime};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::StanzaError;

/// Status code 110: this presence is about you.
pub const SELF_PRESENCE: u16 = 110;
/// Status code 100: the room is non-anonymous.
pub const NON_ANONYMOUS: u16 = 100;
/// Status code 210: the service changed your nick.
pub const NICK_ASSIGNED: u16 = 210;
/// Status code 303: nick changed.
pub const NICK_CHANGED: u16 = 303;
/// Status code 307: kicked.
pub const KICKED: u16 = 307;
/// Status code 332: removed because the service is shutting down.
pub const SYSTEM_SHUTDOWN: u16 = 332;
/// Status code 333: removed because the service went away (XEP-0045 §9.2 extension).
pub const SERVICE_ERROR: u16 = 333;

/// The XEP-0045 name of a role.
pub fn role_str(role: Role) -> &'static str {
    match role {
        Role::Moderator => "moderator",
        Role::Participant => "participant",
        Role::Visitor => "visitor",
    }
}

/// The XEP-0045 name of an affiliation.
pub fn affiliation_str(a: Affiliation) -> &'static str {
    match a {
        Affiliation::Owner => "owner",
        Affiliation::Admin => "admin",
        Affiliation::Member => "member",
        Affiliation::None => "none",
    }
}

/// Everything an occupant presence says.
#[derive(Clone, Debug, Default)]
pub struct Occupant<'a> {
    /// `room@gw/nick`.
    pub from: Option<Jid>,
    /// The user's full JID.
    pub to: Option<Jid>,
    /// Role; `None` renders `none` (the occupant is gone).
    pub role: Option<Role>,
    /// Affiliation.
    pub affiliation: Option<Affiliation>,
    /// The occupant's real (contact) JID, for non-anonymous rooms.
    pub jid: Option<&'a str>,
    /// The new nick (with 303).
    pub new_nick: Option<&'a str>,
    /// Status codes.
    pub codes: &'a [u16],
    /// Unavailable presence.
    pub unavailable: bool,
    /// A reason (kick, part).
    pub reason: Option<&'a str>,
    /// Who did it (a kick): `<actor nick='…'/>` in the item.
    pub actor: Option<&'a str>,
    /// The occupant's avatar hash (XEP-0153), when the network gave it one.
    pub avatar: Option<&'a str>,
}

/// An occupant's presence in a room.
pub fn occupant_presence(o: &Occupant<'_>) -> Presence {
    let mut item = Element::builder("item", ns::MUC_USER)
        .attr(
            a("affiliation"),
            o.affiliation.map(affiliation_str).unwrap_or("none"),
        )
        .attr(a("role"), o.role.map(role_str).unwrap_or("none"))
        .build();
    if let Some(jid) = o.jid {
        set(&mut item, "jid", jid);
    }
    if let Some(n) = o.new_nick {
        set(&mut item, "nick", n);
    }
    if let Some(nick) = o.actor {
        item.append_child(
            Element::builder("actor", ns::MUC_USER)
                .attr(a("nick"), nick)
                .build(),
        );
    }
    if let Some(r) = o.reason {
        item.append_child(Element::builder("reason", ns::MUC_USER).append(r).build());
    }
    let mut x = Element::builder("x", ns::MUC_USER).append(item).build();
    for code in o.codes {
        x.append_child(
            Element::builder("status", ns::MUC_USER)
                .attr(a("code"), code.to_string())
                .build(),
        );
    }
    let mut p = Presence::new(if o.unavailable {
        PresenceType::Unavailable
    } else {
        PresenceType::None
    });
    p.from = o.from.clone();
    p.to = o.to.clone();
    p.payloads.push(x);
    if let Some(hash) = o.avatar.filter(|_| !o.unavailable) {
        p.payloads
            .push(crate::xmpp::avatar::vcard_update(Some(hash)));
    }
    p
}

/// A join (or nick change) refused: `<presence type='error'>` from `room@gw/nick`.
pub fn error_presence(from: Jid, to: Jid, error: StanzaError) -> Presence {
    let mut p = Presence::new(PresenceType::Error);
    p.from = Some(from);
    p.to = Some(to);
    p.payloads.push(Element::builder("x", ns::MUC).build());
    p.payloads.push(error.into());
    p
}

/// The subject message sent after the occupant list (also when empty).
pub fn subject_message(from: Jid, to: Jid, subject: &str) -> Message {
    let mut m = Message::new_with_type(MessageType::Groupchat, Some(to));
    m.from = Some(from);
    m.subjects.insert(Lang(String::new()), subject.to_string());
    m
}

/// What a presence to a room asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinIntent {
    /// The `<password/>` given.
    pub password: Option<String>,
    /// `<history maxstanzas=…>`; `Some(0)` asks for none.
    pub max_stanzas: Option<usize>,
    /// The oldest history wanted (RFC 3339), from `<history since=…>` and
    /// `<history seconds=…>`.
    pub since: Option<String>,
    /// The presence carries the MUC `<x/>` (a join, not a nick change or a status update).
    pub is_join: bool,
}

/// Reads the `<x xmlns='…muc'>` of a presence to a room.
pub fn read_join(payloads: &[Element]) -> JoinIntent {
    read_join_at(payloads, SystemTime::now())
}

/// [`read_join`] for a join received at `now`: the `<history/>` limits (XEP-0045 §7.2.14)
/// are resolved to a count and a start time. `seconds` becomes a start `now - seconds`
/// (the later of it and `since` wins); `maxchars='0'` or `seconds='0'` ask for no history.
pub fn read_join_at(payloads: &[Element], now: SystemTime) -> JoinIntent {
    let x = payloads.iter().find(|p| p.is("x", ns::MUC));
    let history = x.and_then(|x| x.get_child("history", ns::MUC));
    let number = |name: &str| -> Option<u64> {
        history
            .and_then(|h| h.attr(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let none_wanted = number("maxchars") == Some(0) || number("seconds") == Some(0);
    let since = history
        .and_then(|h| h.attr("since"))
        .and_then(crate::xmpp::message::parse_rfc3339);
    let from_seconds = number("seconds").and_then(|s| now.checked_sub(Duration::from_secs(s)));
    let start = match (since, from_seconds) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    JoinIntent {
        password: x
            .and_then(|x| x.get_child("password", ns::MUC))
            .map(|p| p.text()),
        max_stanzas: if none_wanted {
            Some(0)
        } else {
            number("maxstanzas").and_then(|n| usize::try_from(n).ok())
        },
        since: start.map(crate::xmpp::message::rfc3339),
        is_join: x.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_presence_carries_codes() {
        let codes = [NON_ANONYMOUS, SELF_PRESENCE, NICK_ASSIGNED];
        let p = occupant_presence(&Occupant {
            from: Some(Jid::new("#lobby@fake.localhost/me_").unwrap()),
            to: Some(Jid::new("u@localhost/r").unwrap()),
            role: Some(Role::Participant),
            affiliation: Some(Affiliation::Member),
            codes: &codes,
            ..Default::default()
        });
        let xml = String::from(&Element::from(p));
        assert!(xml.contains("code='110'"), "{xml}");
        assert!(xml.contains("code='210'"), "{xml}");
        assert!(xml.contains("role='participant'"), "{xml}");
    }

    #[test]
    fn kicked_occupant_is_unavailable_with_reason() {
        let codes = [KICKED];
        let p = occupant_presence(&Occupant {
            unavailable: true,
            codes: &codes,
            reason: Some("spam"),
            actor: Some("op"),
            ..Default::default()
        });
        let xml = String::from(&Element::from(p));
        assert!(xml.contains("type='unavailable'"), "{xml}");
        assert!(xml.contains("role='none'"), "{xml}");
        assert!(
            xml.contains("<actor nick='op'/><reason>spam</reason></item>"),
            "{xml}"
        );
    }

    #[test]
    fn join_intent_reads_password_and_history() {
        let x: Element = "<x xmlns='http://jabber.org/protocol/muc'><password>pw</password><history maxstanzas='0'/></x>".parse().unwrap();
        let j = read_join(&[x]);
        assert_eq!(j.password.as_deref(), Some("pw"));
        assert_eq!(j.max_stanzas, Some(0));
        assert!(j.is_join);
        assert!(!read_join(&[]).is_join);
    }

    #[test]
    fn history_seconds_and_since_resolve_to_a_start() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = |attrs: &str| {
            let x: Element =
                format!("<x xmlns='http://jabber.org/protocol/muc'><history {attrs}/></x>")
                    .parse()
                    .unwrap();
            read_join_at(&[x], now)
        };
        let start = |attrs: &str| {
            h(attrs)
                .since
                .and_then(|s| crate::xmpp::message::parse_rfc3339(&s))
        };
        assert_eq!(start("seconds='60'"), Some(now - Duration::from_secs(60)));
        // The later of the two wins.
        assert_eq!(
            start("seconds='60' since='1970-01-12T13:45:00Z'"),
            Some(now - Duration::from_secs(60))
        );
        assert_eq!(
            start("seconds='600000' since='1970-01-12T13:45:00Z'"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_900))
        );
        assert_eq!(h("maxstanzas='2'").max_stanzas, Some(2));
        assert_eq!(h("maxstanzas='2'").since, None);
        assert_eq!(h("seconds='0'").max_stanzas, Some(0));
        assert_eq!(h("maxchars='0'").max_stanzas, Some(0));
        assert_eq!(h("maxstanzas='-1' seconds='x'").max_stanzas, None);
        assert_eq!(h("maxstanzas='-1' seconds='x'").since, None);
    }
}
