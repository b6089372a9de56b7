//! XEP-0045 room surface: occupant presences, status codes, subject and join errors, built
//! from the neutral room vocabulary.

use crate::xmpp::el::{a, set};
use crate::xmpp::ns;
use estuary_bridge_api::{Affiliation, Role};
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
    /// `<history since=…>`.
    pub since: Option<String>,
    /// The presence carries the MUC `<x/>` (a join, not a nick change or a status update).
    pub is_join: bool,
}

/// Reads the `<x xmlns='…muc'>` of a presence to a room.
pub fn read_join(payloads: &[Element]) -> JoinIntent {
    let x = payloads.iter().find(|p| p.is("x", ns::MUC));
    let history = x.and_then(|x| x.get_child("history", ns::MUC));
    JoinIntent {
        password: x
            .and_then(|x| x.get_child("password", ns::MUC))
            .map(|p| p.text()),
        max_stanzas: history
            .and_then(|h| h.attr("maxstanzas"))
            .and_then(|v| v.parse().ok()),
        since: history.and_then(|h| h.attr("since")).map(String::from),
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
            ..Default::default()
        });
        let xml = String::from(&Element::from(p));
        assert!(xml.contains("type='unavailable'"), "{xml}");
        assert!(xml.contains("role='none'"), "{xml}");
        assert!(xml.contains("<reason>spam</reason>"), "{xml}");
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
}
