//! Text that XML 1.0 can carry.
//!
//! Bridges hand the core text from the outside world: an IRC QUIT reason with mIRC colour
//! codes, a webhook body with `\u0001`, a message with U+FFFE. XML 1.0 forbids most C0
//! control characters and U+FFFE/U+FFFF anywhere in a document (§2.2 `Char`), and the
//! stream writer refuses a stanza that holds one. Every stanza the core sends is cleaned
//! here once, at the link's door ([`crate::xmpp::link::LinkHandle::send`]), so no text from
//! any bridge, live or read back from the archive, can make a stanza unwritable.
//!
//! A forbidden character becomes U+FFFD (the replacement character), so the reader sees
//! that something was there; bridges that know what such bytes mean (IRC formatting) turn
//! them into something better before they reach the core.

use tokio_xmpp::minidom::{Element, Node};

/// The character a forbidden one becomes.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether XML 1.0 allows `c` in text and attribute values (§2.2 `Char`). Rust's `char`
/// holds no surrogates, so only C0 controls other than tab, LF and CR, and U+FFFE/U+FFFF,
/// are left out.
pub fn is_xml_char(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' => true,
        '\u{0}'..='\u{1f}' => false,
        '\u{fffe}' | '\u{ffff}' => false,
        _ => true,
    }
}

/// `text` with every character XML forbids replaced by [`REPLACEMENT`]; `None` when it is
/// already clean (the common case, which allocates nothing).
pub fn clean_text(text: &str) -> Option<String> {
    if text.chars().all(is_xml_char) {
        return None;
    }
    Some(
        text.chars()
            .map(|c| if is_xml_char(c) { c } else { REPLACEMENT })
            .collect(),
    )
}

/// Cleans every text node and attribute value of `el` and its descendants in place; returns
/// how many strings had to change.
pub fn clean_element(el: &mut Element) -> usize {
    let mut changed = 0;
    // An explicit stack, not recursion: a stanza can be nested as deep as its sender likes.
    let mut stack: Vec<&mut Element> = vec![el];
    while let Some(el) = stack.pop() {
        for (_, value) in el.attrs_mut().iter_mut() {
            if let Some(clean) = clean_text(value) {
                *value = clean;
                changed += 1;
            }
        }
        for node in el.nodes_mut() {
            match node {
                Node::Text(text) => {
                    if let Some(clean) = clean_text(text) {
                        *text = clean;
                        changed += 1;
                    }
                }
                Node::Element(child) => stack.push(child),
            }
        }
    }
    changed
}

/// The first character XML forbids in `el`'s text nodes or attribute values, if any.
pub fn first_forbidden(el: &Element) -> Option<char> {
    let bad = |text: &str| text.chars().find(|&c| !is_xml_char(c));
    let mut stack: Vec<&Element> = vec![el];
    while let Some(el) = stack.pop() {
        for (_, value) in el.attrs().iter() {
            if let Some(c) = bad(value) {
                return Some(c);
            }
        }
        for node in el.nodes() {
            match node {
                Node::Text(text) => {
                    if let Some(c) = bad(text) {
                        return Some(c);
                    }
                }
                Node::Element(child) => stack.push(child),
            }
        }
    }
    None
}

/// `el` as XML text, or why it cannot be written. Never panics: minidom's writer panics on
/// a character XML forbids, so those are looked for first.
pub fn to_xml(el: &Element) -> Result<String, UnwritableStanza> {
    if let Some(c) = first_forbidden(el) {
        return Err(UnwritableStanza(format!(
            "it holds U+{:04X}, which XML 1.0 does not allow",
            c as u32
        )));
    }
    let mut out = Vec::new();
    el.write_to(&mut out)
        .map_err(|e| UnwritableStanza(e.to_string()))?;
    String::from_utf8(out).map_err(|e| UnwritableStanza(e.to_string()))
}

/// How deep a stanza from the server may nest: far beyond what any XMPP extension uses
/// (a MAM result inside an IQ is about 8), far below what would exhaust a task's stack in
/// the recursive parts of minidom (cloning, writing, dropping).
pub const MAX_DEPTH: usize = 128;

/// How deeply `el` nests (1 for an element without children), counted without recursion
/// and without looking further than `limit + 1` levels.
pub fn depth(el: &Element, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Element, usize)> = vec![(el, 1)];
    while let Some((el, level)) = stack.pop() {
        deepest = deepest.max(level);
        if level > limit {
            return deepest;
        }
        stack.extend(el.children().map(|c| (c, level + 1)));
    }
    deepest
}

/// Drops `el` without recursion (minidom's own drop recurses once per level).
pub fn dismantle(el: Element) {
    let mut stack = vec![el];
    while let Some(mut el) = stack.pop() {
        for node in el.take_nodes() {
            if let Node::Element(child) = node {
                stack.push(child);
            }
        }
    }
}

/// Why a stanza cannot be written as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stanza cannot be written as XML: {0}")]
pub struct UnwritableStanza(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn serialise(el: &Element) -> Result<String, UnwritableStanza> {
        to_xml(el)
    }

    #[test]
    fn what_xml_allows_and_forbids() {
        for ok in [
            '\t', '\n', '\r', ' ', 'a', 'é', '\u{d7ff}', '\u{e000}', '\u{fffd}',
        ] {
            assert!(is_xml_char(ok), "{ok:?} is allowed");
        }
        for bad in [
            '\0', '\x01', '\x02', '\x03', '\x0f', '\x1f', '\u{fffe}', '\u{ffff}',
        ] {
            assert!(!is_xml_char(bad), "{bad:?} is forbidden");
        }
        assert!(is_xml_char('\u{10000}'));
        assert!(is_xml_char('\x7f'), "DEL is a legal XML 1.0 character");
    }

    #[test]
    fn clean_text_is_none_when_nothing_changes() {
        assert_eq!(clean_text("plain ünïcode\ttext\n"), None);
        assert_eq!(
            clean_text("\x0304red\x03 \u{fffe}").as_deref(),
            Some("\u{fffd}04red\u{fffd} \u{fffd}")
        );
    }

    /// The stanzas that stopped a whole bridge: colour codes in a QUIT reason (an attribute
    /// and a text), a control character from a webhook, U+FFFF in a body, deep inside.
    #[test]
    fn a_poisoned_stanza_becomes_writable_and_keeps_the_rest() {
        let mut el = Element::builder("message", "jabber:component:accept")
            .attr(crate::xmpp::el::a("id"), "a\x01b")
            .append(
                Element::builder("body", "jabber:component:accept")
                    .append("ctl \u{1} here \u{ffff}")
                    .build(),
            )
            .append(
                Element::builder("x", "http://jabber.org/protocol/muc#user")
                    .append(
                        Element::builder("status", "http://jabber.org/protocol/muc#user")
                            .append("\x0304red\x03 \x02bold")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            serialise(&el),
            Err(UnwritableStanza(
                "it holds U+0001, which XML 1.0 does not allow".into()
            )),
            "refused as it is, without a panic"
        );
        assert_eq!(clean_element(&mut el), 3);
        let xml = serialise(&el).expect("writable once cleaned");
        assert!(xml.contains("ctl \u{fffd} here \u{fffd}"), "{xml}");
        assert!(xml.contains("id='a\u{fffd}b'"), "{xml}");
        assert_eq!(clean_element(&mut el), 0, "cleaning twice changes nothing");
    }

    #[test]
    fn depth_is_counted_up_to_the_limit_and_a_deep_tree_dropped_flat() {
        let shallow: Element = "<a xmlns='urn:t'><b><c/></b><d/></a>".parse().expect("xml");
        assert_eq!(depth(&shallow, MAX_DEPTH), 3);
        // Built and taken apart on a small stack (a tokio worker's is 2 MiB): nothing
        // here may recurse once per level.
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let xml = format!(
                    "<a xmlns='urn:t'>{}{}</a>",
                    "<n>".repeat(20_000),
                    "</n>".repeat(20_000)
                );
                let deep: Element = xml.parse().expect("xml");
                assert_eq!(depth(&deep, MAX_DEPTH), MAX_DEPTH + 1, "stops looking");
                dismantle(deep);
            })
            .expect("a thread")
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn a_deeply_nested_element_is_cleaned_without_recursion() {
        // minidom builds and drops nested elements recursively: give that a big stack,
        // the cleaning itself needs none.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(|| {
                let mut el = Element::builder("leaf", "urn:test").append("\x01").build();
                for _ in 0..10_000 {
                    el = Element::builder("n", "urn:test").append(el).build();
                }
                assert_eq!(clean_element(&mut el), 1);
            })
            .expect("a thread")
            .join()
            .expect("cleaned");
    }
}
