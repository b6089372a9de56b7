//! Avatars and vCards on the wire: XEP-0054 vcard-temp, XEP-0153 vCard-based avatar
//! hashes in presence, XEP-0084 user avatars (PEP items and notifications) and the
//! XEP-0486 avatar hash in a room's disco#info.
//!
//! Every element is built from an xmpp-parsers type; the hashes are SHA-1 in lowercase hex,
//! as all three XEPs show them.

use crate::db::{AvatarMeta, StoredAvatar};
use sha1::{Digest, Sha1};
use std::str::FromStr as _;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::avatar::{Data, Info, Metadata};
use tokio_xmpp::parsers::hashes::Sha1HexAttribute;
use tokio_xmpp::parsers::pubsub::{self, ItemId, NodeName, PubSub};
use tokio_xmpp::parsers::vcard::{Binval, Photo, Type, VCard};
use tokio_xmpp::parsers::vcard_update;

/// XEP-0054's namespace (the IQ payload `<vCard/>`, and the disco feature).
pub const VCARD: &str = "vcard-temp";
/// XEP-0084's metadata node.
pub const METADATA_NODE: &str = "urn:xmpp:avatar:metadata";
/// XEP-0084's data node.
pub const DATA_NODE: &str = "urn:xmpp:avatar:data";
/// XEP-0060's namespace.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0486's field in a room's `muc#roominfo` form.
pub const ROOMINFO_AVATARHASH: &str = "muc#roominfo_avatarhash";

/// The SHA-1 of `bytes` in lowercase hex: an avatar's id everywhere.
pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 20 bytes of a SHA-1 given in hex (`None` if it is not one).
fn sha1_bytes(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// XEP-0153's `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` for a presence:
/// `None` says "no avatar" (an empty `<photo/>`).
pub fn vcard_update(hash: Option<&str>) -> Element {
    let data = hash.and_then(sha1_bytes);
    vcard_update::VCardUpdate {
        photo: Some(vcard_update::Photo { data }),
    }
    .into()
}

/// A vcard-temp answer: the name as NICKNAME and FN, the avatar as PHOTO (TYPE, BINVAL).
pub fn vcard(name: Option<&str>, avatar: Option<&StoredAvatar>) -> Element {
    let mut payloads = Vec::new();
    if let Some(name) = name {
        for field in ["FN", "NICKNAME"] {
            payloads.push(Element::builder(field, VCARD).append(name).build());
        }
    }
    VCard {
        photo: avatar.map(|a| Photo {
            type_: Type {
                data: a.meta.media_type.clone(),
            },
            binval: Binval {
                data: a.data.clone(),
            },
        }),
        payloads,
    }
    .into()
}

fn info(meta: &AvatarMeta) -> Option<Info> {
    Some(Info {
        bytes: u32::try_from(meta.size).ok()?,
        width: None,
        height: None,
        id: Sha1HexAttribute::from_str(&meta.hash).ok()?,
        type_: meta.media_type.clone(),
        url: None,
    })
}

/// XEP-0084 metadata: one `<info/>` for the avatar, none when it was removed (§4.5).
fn metadata(meta: Option<&AvatarMeta>) -> Metadata {
    Metadata {
        infos: meta.and_then(info).into_iter().collect(),
    }
}

/// The answer to a PEP `items` request on the metadata node.
pub fn metadata_items(meta: &AvatarMeta) -> Element {
    let mut items = pubsub::pubsub::Items::new(METADATA_NODE);
    items.items.push(pubsub::pubsub::Item::new(
        Some(ItemId(meta.hash.clone())),
        None,
        Some(metadata(Some(meta))),
    ));
    PubSub::Items(items).into()
}

/// The answer to a PEP `items` request on the data node.
pub fn data_items(avatar: &StoredAvatar) -> Element {
    let mut items = pubsub::pubsub::Items::new(DATA_NODE);
    items.items.push(pubsub::pubsub::Item::new(
        Some(ItemId(avatar.meta.hash.clone())),
        None,
        Some(Data {
            data: avatar.data.clone(),
        }),
    ));
    PubSub::Items(items).into()
}

/// The PEP notification a contact's avatar change sends (in a headline message): the new
/// metadata, or an empty one when the avatar was removed.
pub fn metadata_event(meta: Option<&AvatarMeta>) -> Element {
    // XEP-0084 §4.5: an avatar is disabled by publishing empty metadata (item "current").
    let id = meta
        .map(|m| m.hash.clone())
        .unwrap_or_else(|| "current".into());
    pubsub::Event {
        payload: pubsub::event::Payload::Items {
            node: NodeName(METADATA_NODE.into()),
            published: vec![pubsub::event::Item {
                id: Some(ItemId(id)),
                publisher: None,
                payload: Some(metadata(meta).into()),
            }],
            retracted: Vec::new(),
        },
    }
    .into()
}

/// A PEP request, as far as avatars go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PepRequest {
    /// `items` on the metadata node.
    Metadata,
    /// `items` on the data node, maybe for one item id.
    Data(Option<String>),
    /// `items` on some other node.
    OtherNode(String),
    /// Not an `items` request (publish, subscribe, …).
    NotItems,
}

/// Reads a `<pubsub/>` request.
pub fn pep_request(payload: &Element) -> Result<PepRequest, String> {
    let parsed = PubSub::try_from(payload.clone()).map_err(|e| e.to_string())?;
    let PubSub::Items(items) = parsed else {
        return Ok(PepRequest::NotItems);
    };
    Ok(match items.node.0.as_str() {
        METADATA_NODE => PepRequest::Metadata,
        DATA_NODE => PepRequest::Data(items.items.first().and_then(|i| i.id.clone()).map(|i| i.0)),
        other => PepRequest::OtherNode(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredAvatar {
        let data = b"\x89PNG fake".to_vec();
        StoredAvatar {
            meta: AvatarMeta {
                hash: sha1_hex(&data),
                media_type: "image/png".into(),
                size: data.len() as u64,
            },
            data,
        }
    }

    #[test]
    fn sha1_matches_a_known_value() {
        // SHA-1("abc"), FIPS 180-2 appendix A.
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn presence_hash_round_trips() {
        let hash = sha1_hex(b"abc");
        let x = vcard_update(Some(&hash));
        let xml = String::from(&x);
        assert!(xml.contains(&format!("<photo>{hash}</photo>")), "{xml}");
        assert!(xml.contains("xmlns='vcard-temp:x:update'"), "{xml}");
        let empty = String::from(&vcard_update(None));
        assert!(empty.contains("<photo/>"), "{empty}");
    }

    #[test]
    fn vcard_carries_photo_and_names() {
        let a = stored();
        let el = vcard(Some("Alice A."), Some(&a));
        let back = VCard::try_from(el.clone()).expect("a vCard");
        assert_eq!(back.photo.expect("a photo").binval.data, a.data);
        let xml = String::from(&el);
        assert!(xml.contains("<NICKNAME>Alice A.</NICKNAME>"), "{xml}");
        assert!(xml.contains("<TYPE>image/png</TYPE>"), "{xml}");
        let bare = String::from(&vcard(None, None));
        assert!(!bare.contains("PHOTO"), "{bare}");
    }

    #[test]
    fn pep_answers_and_requests() {
        let a = stored();
        let meta = String::from(&metadata_items(&a.meta));
        assert!(meta.contains(&format!("id='{}'", a.meta.hash)), "{meta}");
        assert!(meta.contains("bytes='9'"), "{meta}");
        let data = data_items(&a);
        let back = PubSub::try_from(data).expect("pubsub");
        let PubSub::Items(items) = back else {
            panic!("items")
        };
        let payload = items.items[0].payload.clone().expect("a payload");
        assert_eq!(Data::try_from(payload).expect("data").data, a.data);

        let req: Element = format!(
            "<pubsub xmlns='{PUBSUB}'><items node='{DATA_NODE}'><item id='abc'/></items></pubsub>"
        )
        .parse()
        .unwrap();
        assert_eq!(pep_request(&req), Ok(PepRequest::Data(Some("abc".into()))));
        let req: Element =
            format!("<pubsub xmlns='{PUBSUB}'><items node='{METADATA_NODE}'/></pubsub>")
                .parse()
                .unwrap();
        assert_eq!(pep_request(&req), Ok(PepRequest::Metadata));
        let bad: Element = format!("<pubsub xmlns='{PUBSUB}'><items/></pubsub>")
            .parse()
            .unwrap();
        assert!(
            pep_request(&bad).is_err(),
            "an items without node is malformed"
        );
    }

    #[test]
    fn removal_notification_has_no_info() {
        let xml = String::from(&metadata_event(None));
        assert!(xml.contains("urn:xmpp:avatar:metadata"), "{xml}");
        assert!(!xml.contains("<info"), "{xml}");
        let set = String::from(&metadata_event(Some(&stored().meta)));
        assert!(set.contains("<info"), "{set}");
    }
}
