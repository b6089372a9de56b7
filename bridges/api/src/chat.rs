//! Conversations and their members, in the neutral vocabulary.

use crate::{RemoteChatId, RemoteUserId};

/// What a local part on the component domain names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChatKey {
    /// A foreign person (a 1:1 chat).
    Direct(RemoteUserId),
    /// A foreign group conversation (a MUC room).
    Room(RemoteChatId),
    /// A foreign service endpoint that is neither, e.g. an IRC server (`irc.server@irc.gw`).
    Service(String),
}

/// Kinds of message text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageKind {
    /// An ordinary message.
    #[default]
    Normal,
    /// An action (`/me waves`); the body holds the text after `/me `.
    Action,
    /// A notice: informational, must not be answered automatically.
    Notice,
}

/// XEP-0085 chat states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatState {
    /// Taking part.
    Active,
    /// Typing.
    Composing,
    /// Stopped typing.
    Paused,
    /// Not paying attention.
    Inactive,
    /// Left the conversation.
    Gone,
}

/// Availability of a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// Online.
    Available,
    /// Away.
    Away,
    /// Away for long.
    ExtendedAway,
    /// Busy.
    DoNotDisturb,
    /// Offline.
    Offline,
}

/// XEP-0045 role of a room member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May kick and change roles.
    Moderator,
    /// May speak.
    Participant,
    /// May only listen.
    Visitor,
}

/// XEP-0045 affiliation of a room member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affiliation {
    /// Owns the room.
    Owner,
    /// Administers the room.
    Admin,
    /// A member.
    Member,
    /// No affiliation.
    None,
}

/// A change of a room member's standing asked through muc#admin (XEP-0045 §8 and §9: an
/// `<item nick='…'>` with a `role` or an `affiliation`), for the network to carry out in its
/// own terms (IRC: channel prefix modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandingChange {
    /// The member should have this role (voice granted or revoked, moderator granted or
    /// revoked). `Role::Visitor` takes every privilege away.
    Role(Role),
    /// The member should have this affiliation.
    Affiliation(Affiliation),
}

/// A room member as the network sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's name in the room (the MUC nick).
    pub nick: String,
    /// The member's foreign identity, where known.
    pub user: Option<RemoteUserId>,
    /// The member's role.
    pub role: Role,
    /// The member's affiliation.
    pub affiliation: Affiliation,
    /// Where the member is connected from, when the network says (IRC: `user@host` from
    /// a JOIN's prefix). Shown as the resource of the member's real JID, as Biboumi does.
    pub address: Option<String>,
}

impl Member {
    /// A plain participant.
    pub fn participant(nick: impl Into<String>) -> Self {
        Self {
            nick: nick.into(),
            user: None,
            role: Role::Participant,
            affiliation: Affiliation::None,
            address: None,
        }
    }
}

/// A room as listed by the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room.
    pub id: RemoteChatId,
    /// Its display name.
    pub name: String,
    /// Member count, where known.
    pub members: Option<u32>,
    /// Its topic, where known.
    pub topic: Option<String>,
}
