//! The error a bridge returns; its kind says which stanza error the core answers with.

use std::fmt;

/// What went wrong, in terms the core can turn into an XMPP stanza error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The network or this bridge cannot do that (`feature-not-implemented`).
    Unsupported,
    /// No such contact, room or message (`item-not-found`).
    NotFound,
    /// The request is malformed (`bad-request`).
    BadRequest,
    /// The request is well-formed but refused as given, e.g. an invalid address (`not-acceptable`).
    NotAcceptable,
    /// The user may not do that (`forbidden`).
    Forbidden,
    /// Credentials are missing or wrong (`not-authorized`).
    NotAuthorized,
    /// A name is taken, e.g. a nickname in use (`conflict`).
    Conflict,
    /// A limit was hit, e.g. too many connections (`resource-constraint`).
    ResourceConstraint,
    /// The network refused by policy, e.g. a ban (`policy-violation`).
    PolicyViolation,
    /// The foreign server cannot be reached right now (`remote-server-not-found`).
    RemoteUnreachable,
    /// The network did not answer in time (`remote-server-timeout`).
    RemoteTimeout,
    /// The foreign service is unavailable (`service-unavailable`).
    ServiceUnavailable,
    /// A bug or an unexpected failure inside the bridge (`internal-server-error`).
    Internal,
}

/// An error from a bridge: a kind for the machine and a text for the user.
///
/// The text is shown to the XMPP user as is: say what happened and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct BridgeError {
    /// Which stanza error this becomes.
    pub kind: ErrorKind,
    /// A human sentence for the user.
    pub text: String,
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.text)
    }
}

impl BridgeError {
    /// An error of the given kind with a human text.
    pub fn new(kind: ErrorKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
        }
    }
    /// The network or bridge cannot do `what`.
    pub fn unsupported(what: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("{what} is not supported by this network"),
        )
    }
    /// No such item.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, text)
    }
    /// Malformed request.
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, text)
    }
    /// Refused as given.
    pub fn not_acceptable(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotAcceptable, text)
    }
    /// Unexpected failure.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, text)
    }
}

/// Result with a [`BridgeError`].
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;
