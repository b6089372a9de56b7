//! XML namespaces the core speaks, in one place.

/// XEP-0114 component stream.
pub const COMPONENT: &str = "jabber:component:accept";
/// XEP-0030 disco#info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 disco#items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0077 in-band registration.
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0100 gateway interaction.
pub const GATEWAY: &str = "jabber:iq:gateway";
/// XEP-0050 ad-hoc commands.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0004 data forms.
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0092 software version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0199 ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0115 entity capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0045 MUC.
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045 MUC user.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045 MUC admin.
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// XEP-0045 §6.4: the room information form in a room's disco#info.
pub const MUC_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// XEP-0045 room owner (configuration).
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0249 direct MUC invitations.
pub const CONFERENCE: &str = "jabber:x:conference";
/// XEP-0313 MAM.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0059 result set management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0297 forwarding.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0203 delayed delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0359 stanza and origin ids.
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0184 receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0085 chat states.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0308 last message correction.
pub const CORRECT: &str = "urn:xmpp:message-correct:0";
/// XEP-0424 message retraction.
pub const RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0444 reactions.
pub const REACTIONS: &str = "urn:xmpp:reactions:0";
/// XEP-0461 replies.
pub const REPLY: &str = "urn:xmpp:reply:0";
/// XEP-0333 chat markers.
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0172 user nickname.
pub const NICK: &str = "http://jabber.org/protocol/nick";
/// XEP-0334 message processing hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0393 message styling (advertised).
pub const STYLING: &str = "urn:xmpp:styling:0";
/// XEP-0106 JID escaping (advertised).
pub const JID_ESCAPING: &str = "jid\\20escaping";
/// RFC 6120 stanza error texts.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// The default client namespace stanzas are built in.
pub const CLIENT: &str = "jabber:client";
