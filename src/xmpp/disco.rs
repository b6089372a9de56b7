//! XEP-0030 service discovery and XEP-0115 capabilities, derived from what the bridge can do.
//!
//! The gateway advertises only what the bridge's [`Capabilities`] honour.

use crate::xmpp::el::{a, set};
use crate::xmpp::ns;
use base64::Engine;
use estuary_bridge_api::{BridgeInfo, Capabilities};
use sha1::{Digest, Sha1};
use tokio_xmpp::minidom::Element;

/// What disco#info says about one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoInfo {
    /// `(category, type, name)`.
    pub identity: (String, String, String),
    /// Feature namespaces, sorted.
    pub features: Vec<String>,
}

impl DiscoInfo {
    fn new(category: &str, type_: &str, name: &str, mut features: Vec<&str>) -> Self {
        features.sort_unstable();
        features.dedup();
        Self {
            identity: (category.into(), type_.into(), name.into()),
            features: features.into_iter().map(String::from).collect(),
        }
    }

    /// Adds a feature, keeping the list sorted and without duplicates.
    pub fn add_feature(&mut self, feature: &str) {
        if let Err(at) = self.features.binary_search_by(|f| f.as_str().cmp(feature)) {
            self.features.insert(at, feature.to_owned());
        }
    }

    /// The `<query xmlns='…disco#info'>` answer.
    pub fn to_element(&self, node: Option<&str>) -> Element {
        let (category, type_, name) = &self.identity;
        let mut q = Element::builder("query", ns::DISCO_INFO).build();
        if let Some(node) = node {
            set(&mut q, "node", node);
        }
        q.append_child(
            Element::builder("identity", ns::DISCO_INFO)
                .attr(a("category"), category.clone())
                .attr(a("type"), type_.clone())
                .attr(a("name"), name.clone())
                .build(),
        );
        for f in &self.features {
            q.append_child(
                Element::builder("feature", ns::DISCO_INFO)
                    .attr(a("var"), f.clone())
                    .build(),
            );
        }
        q
    }

    /// The XEP-0115 verification string (`ver`) of this entity.
    pub fn caps_ver(&self) -> String {
        let (category, type_, name) = &self.identity;
        let mut s = format!("{category}/{type_}//{name}<");
        for f in &self.features {
            s.push_str(f);
            s.push('<');
        }
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
    }

    /// The `<c/>` element for presences.
    pub fn caps_element(&self) -> Element {
        caps_element(&self.caps_ver())
    }
}

/// The XEP-0045 §6.4 room information form (`muc#roominfo`): how many occupants the room
/// has, for a user who is in it (others are not told who is there), and the room's avatar
/// hash (XEP-0486). One form for both (XEP-0128: one form per `FORM_TYPE`); `None` when
/// there is neither.
pub fn room_info_form(occupants: Option<usize>, avatar_hash: Option<&str>) -> Option<Element> {
    use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
    let mut fields = Vec::new();
    if let Some(n) = occupants {
        fields.push(Field::text_single("muc#roominfo_occupants", &n.to_string()));
    }
    if let Some(hash) = avatar_hash {
        fields.push(
            Field::new(super::avatar::ROOMINFO_AVATARHASH, FieldType::TextMulti).with_value(hash),
        );
    }
    if fields.is_empty() {
        return None;
    }
    Some(DataForm::new(DataFormType::Result_, ns::MUC_ROOMINFO, fields).into())
}

/// The `node` of the gateway's XEP-0115 `<c/>` elements.
pub const CAPS_NODE: &str = "https://estuary.invalid/caps";

/// Whether a disco#info `node` is the `node#ver` that presences with the verification
/// string `ver` advertise (XEP-0115 §6.2: such a query is answered like one without node,
/// with the node echoed).
pub fn is_caps_node(node: &str, ver: &str) -> bool {
    node.strip_prefix(CAPS_NODE)
        .and_then(|rest| rest.strip_prefix('#'))
        .is_some_and(|v| v == ver)
}

/// The `<c/>` element for presences of an entity whose [`DiscoInfo::caps_ver`] is `ver`
/// (for callers that computed it once).
pub fn caps_element(ver: &str) -> Element {
    Element::builder("c", ns::CAPS)
        .attr(a("hash"), "sha-1")
        .attr(a("node"), CAPS_NODE)
        .attr(a("ver"), ver)
        .build()
}

fn message_features(caps: &Capabilities) -> Vec<&'static str> {
    let mut f = vec![ns::RECEIPTS, ns::STYLING, ns::SID];
    if caps.chat_states {
        f.push(ns::CHATSTATES);
    }
    if caps.edits {
        f.push(ns::CORRECT);
    }
    if caps.retractions {
        f.push(ns::RETRACT);
    }
    if caps.reactions {
        f.push(ns::REACTIONS);
    }
    if caps.replies {
        f.push(ns::REPLY);
    }
    if caps.read_markers {
        f.push(ns::MARKERS);
    }
    f
}

/// disco#info of the gateway domain: `gateway/<type>` and the services the core runs.
pub fn gateway(info: &BridgeInfo, caps: &Capabilities) -> DiscoInfo {
    let mut f = vec![
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::REGISTER,
        ns::GATEWAY,
        ns::COMMANDS,
        ns::VERSION,
        ns::PING,
        ns::JID_ESCAPING,
    ];
    if caps.groups {
        f.push(ns::MUC);
    }
    DiscoInfo::new(
        "gateway",
        &info.disco_type,
        &format!("{} gateway (Estuary)", info.name),
        f,
    )
}

/// disco#info of a contact on the gateway.
pub fn contact(info: &BridgeInfo, caps: &Capabilities, name: &str) -> DiscoInfo {
    let mut f = vec![ns::DISCO_INFO];
    f.extend(message_features(caps));
    let _ = info;
    DiscoInfo::new("client", "pc", name, f)
}

/// disco#info of a room on the gateway.
pub fn room(info: &BridgeInfo, caps: &Capabilities, name: &str) -> DiscoInfo {
    let mut f = vec![
        ns::DISCO_INFO,
        ns::MUC,
        "muc_nonanonymous",
        "muc_open",
        "muc_persistent",
        "muc_unsecured",
        ns::MAM,
        // A room answers ad-hoc commands (its configuration), pings and version queries.
        ns::COMMANDS,
        ns::PING,
        ns::VERSION,
    ];
    f.extend(message_features(caps));
    DiscoInfo::new("conference", &info.disco_type, name, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_room_info_form_holds_the_count_and_the_avatar_hash() {
        assert!(room_info_form(None, None).is_none());
        let xml = String::from(&room_info_form(Some(3), Some("abcd")).unwrap());
        assert_eq!(xml.matches("<x ").count(), 1, "{xml}");
        assert!(xml.contains(ns::MUC_ROOMINFO), "{xml}");
        assert!(xml.contains("muc#roominfo_occupants"), "{xml}");
        assert!(xml.contains("<value>3</value>"), "{xml}");
        assert!(xml.contains("muc#roominfo_avatarhash"), "{xml}");
        assert!(xml.contains("<value>abcd</value>"), "{xml}");
        let only_hash = String::from(&room_info_form(None, Some("abcd")).unwrap());
        assert!(!only_hash.contains("muc#roominfo_occupants"), "{only_hash}");
    }

    fn info() -> BridgeInfo {
        BridgeInfo {
            id: "irc".into(),
            name: "IRC".into(),
            disco_type: "irc".into(),
            prompt: String::new(),
        }
    }

    #[test]
    fn gateway_identity_and_features() {
        let d = gateway(
            &info(),
            &Capabilities {
                groups: true,
                ..Default::default()
            },
        );
        assert_eq!(d.identity.0, "gateway");
        assert_eq!(d.identity.1, "irc");
        assert!(d.features.iter().any(|f| f == ns::MUC));
        assert!(d.features.iter().any(|f| f == ns::REGISTER));
        let xml = String::from(&d.to_element(None));
        assert!(xml.contains("category='gateway'"), "{xml}");
    }

    #[test]
    fn only_capabilities_are_advertised() {
        let none = contact(&info(), &Capabilities::default(), "alice");
        assert!(
            !none
                .features
                .iter()
                .any(|f| f == ns::CORRECT || f == ns::REACTIONS || f == ns::CHATSTATES)
        );
        let all = contact(
            &info(),
            &Capabilities {
                edits: true,
                reactions: true,
                chat_states: true,
                ..Default::default()
            },
            "alice",
        );
        assert!(all.features.iter().any(|f| f == ns::CORRECT));
        assert!(all.features.iter().any(|f| f == ns::REACTIONS));
        let no_groups = gateway(&info(), &Capabilities::default());
        assert!(!no_groups.features.iter().any(|f| f == ns::MUC));
    }

    #[test]
    fn the_advertised_caps_node_is_recognised() {
        let c = caps_element("abc=");
        let node = format!("{}#{}", c.attr("node").unwrap(), c.attr("ver").unwrap());
        assert!(is_caps_node(&node, "abc="));
        assert!(!is_caps_node(&node, "other="));
        assert!(!is_caps_node(CAPS_NODE, "abc="));
        assert!(!is_caps_node("abc=", "abc="));
        assert!(!is_caps_node(&format!("{CAPS_NODE}abc="), "abc="));
    }

    #[test]
    fn caps_ver_matches_xep_0115_example() {
        // The simple example of XEP-0115 §5.2.
        let d = DiscoInfo::new(
            "client",
            "pc",
            "Exodus 0.9.1",
            vec![
                "http://jabber.org/protocol/caps",
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc",
            ],
        );
        assert_eq!(d.caps_ver(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
