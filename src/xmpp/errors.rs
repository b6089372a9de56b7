//! Stanza errors: the typed answer to every request the gateway cannot honour.

use estuary_bridge_api::{BridgeError, ErrorKind};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// The stanza error for a bridge error, with its text for the user.
pub fn from_bridge(err: &BridgeError) -> StanzaError {
    let (type_, condition) = match err.kind {
        ErrorKind::Unsupported => (ErrorType::Cancel, DefinedCondition::FeatureNotImplemented),
        ErrorKind::NotFound => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        ErrorKind::BadRequest => (ErrorType::Modify, DefinedCondition::BadRequest),
        ErrorKind::NotAcceptable => (ErrorType::Modify, DefinedCondition::NotAcceptable),
        ErrorKind::Forbidden => (ErrorType::Auth, DefinedCondition::Forbidden),
        ErrorKind::NotAuthorized => (ErrorType::Auth, DefinedCondition::NotAuthorized),
        ErrorKind::Conflict => (ErrorType::Cancel, DefinedCondition::Conflict),
        ErrorKind::ResourceConstraint => (ErrorType::Wait, DefinedCondition::ResourceConstraint),
        ErrorKind::PolicyViolation => (ErrorType::Modify, DefinedCondition::PolicyViolation),
        ErrorKind::RemoteUnreachable => (ErrorType::Wait, DefinedCondition::RemoteServerNotFound),
        ErrorKind::RemoteTimeout => (ErrorType::Wait, DefinedCondition::RemoteServerTimeout),
        ErrorKind::ServiceUnavailable => (ErrorType::Wait, DefinedCondition::ServiceUnavailable),
        ErrorKind::Internal => (ErrorType::Wait, DefinedCondition::InternalServerError),
    };
    StanzaError::new(type_, condition, "en", err.text.clone())
}

/// `bad-request` with a text.
pub fn bad_request(text: impl Into<String>) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest, "en", text)
}

/// `item-not-found` with a text.
pub fn item_not_found(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        "en",
        text,
    )
}

/// `service-unavailable` with a text.
pub fn service_unavailable(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "en",
        text,
    )
}

/// `feature-not-implemented` with a text.
pub fn not_implemented(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::FeatureNotImplemented,
        "en",
        text,
    )
}

/// `forbidden` with a text.
pub fn forbidden(text: impl Into<String>) -> StanzaError {
    StanzaError::new(ErrorType::Auth, DefinedCondition::Forbidden, "en", text)
}

/// `registration-required` with a text.
pub fn registration_required(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Auth,
        DefinedCondition::RegistrationRequired,
        "en",
        text,
    )
}

/// `not-acceptable` with a text.
pub fn not_acceptable(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Modify,
        DefinedCondition::NotAcceptable,
        "en",
        text,
    )
}

/// `internal-server-error` with a text.
pub fn internal(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
        "en",
        text,
    )
}

/// `recipient-unavailable` with a text (the foreign network is not connected yet).
pub fn recipient_unavailable(text: impl Into<String>) -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::RecipientUnavailable,
        "en",
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::minidom::Element;

    #[test]
    fn bridge_errors_map_to_conditions() {
        let e = from_bridge(&BridgeError::new(ErrorKind::Conflict, "nick in use"));
        assert_eq!(e.defined_condition, DefinedCondition::Conflict);
        let el: Element = e.into();
        assert!(el.has_child("conflict", "urn:ietf:params:xml:ns:xmpp-stanzas"));
        let text = el
            .get_child("text", "urn:ietf:params:xml:ns:xmpp-stanzas")
            .map(|t| t.text());
        assert_eq!(text.as_deref(), Some("nick in use"));
    }

    #[test]
    fn unsupported_is_feature_not_implemented() {
        let e = from_bridge(&BridgeError::unsupported("reactions"));
        assert_eq!(e.defined_condition, DefinedCondition::FeatureNotImplemented);
        assert_eq!(e.type_, ErrorType::Cancel);
    }
}
