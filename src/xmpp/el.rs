//! Tiny helpers for building elements with minidom's typed attribute names.

use tokio_xmpp::minidom::Element;
use tokio_xmpp::minidom::rxml::{Namespace, NcName};

/// An attribute name. Only ever called with literal names of the XMPP specs, which are
/// valid XML names; an invalid one is a programming error caught by the unit tests.
pub fn a(name: &'static str) -> NcName {
    NcName::try_from(name).expect("attribute names in the code are valid XML names")
}

/// Sets an attribute on an element.
pub fn set(el: &mut Element, name: &'static str, value: impl Into<String>) {
    el.set_attr(Namespace::NONE, a(name), value.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_attributes() {
        let mut el = Element::builder("x", "urn:test")
            .attr(a("type"), "form")
            .build();
        set(&mut el, "node", "n");
        assert_eq!(el.attr("type"), Some("form"));
        assert_eq!(el.attr("node"), Some("n"));
    }
}
