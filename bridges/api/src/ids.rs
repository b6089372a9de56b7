//! Opaque identifiers minted by a bridge and stored by the core.
//!
//! The core never looks inside these: it stores them, compares them and hands them back.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a bridge-minted identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The identifier as the bridge minted it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

opaque_id!(
    /// One user's puppet account on one network, e.g. an IRC nick or a Matrix user id.
    LoginId
);
opaque_id!(
    /// A foreign person, e.g. `alice!irc.libera.chat` or `@alice:matrix.org`.
    RemoteUserId
);
opaque_id!(
    /// A foreign group conversation, e.g. `#rust%irc.libera.chat` or `!abc:matrix.org`.
    RemoteChatId
);
opaque_id!(
    /// A foreign message, e.g. an IRCv3 msgid or a Matrix event id.
    RemoteMessageId
);
