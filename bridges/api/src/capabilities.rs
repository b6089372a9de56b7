//! What a bridge is and what its network can do; the core advertises only this.

/// The bridge's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeInfo {
    /// A short stable id, used as the config table name and the database key (`irc`).
    pub id: String,
    /// A human name (`IRC`).
    pub name: String,
    /// The XEP-0030 `gateway/<type>` of the domain (`irc`, `matrix`, `sms`, `smtp`, `http`).
    pub disco_type: String,
    /// What XEP-0100 prompts the user for (`Enter the IRC nick and server`).
    pub prompt: String,
}

/// Features of the foreign network that the core may advertise and translate.
///
/// Every optional [`Client`](crate::Client) method must agree with these flags: a flag set
/// to `true` means the matching method is implemented.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Group conversations exist (shown as MUC rooms).
    pub groups: bool,
    /// A login is needed before use (XEP-0077 registration); IRC can work without one.
    pub requires_registration: bool,
    /// Messages can be corrected (XEP-0308).
    pub edits: bool,
    /// Reactions (XEP-0444).
    pub reactions: bool,
    /// Retractions (XEP-0424).
    pub retractions: bool,
    /// Replies that point at a message (XEP-0461).
    pub replies: bool,
    /// Typing notifications (XEP-0085).
    pub chat_states: bool,
    /// Read markers (XEP-0333).
    pub read_markers: bool,
    /// Delivery receipts from the network (XEP-0184); without it the core acknowledges on send.
    pub receipts: bool,
    /// Room nick changes.
    pub nick_changes: bool,
    /// Room topics can be set.
    pub set_topic: bool,
    /// Room members can be kicked.
    pub kicks: bool,
    /// Rooms can be listed (disco#items on the domain).
    pub room_list: bool,
    /// Whether the network takes attachments (`None`: it takes none), how many per message
    /// and how large; the core refuses what exceeds them with `not-acceptable`.
    pub attachments: Option<crate::AttachmentLimits>,
    /// The longest body the network takes in one message, in bytes; longer ones are split.
    pub max_body_bytes: Option<usize>,
    /// What happens to the user's rooms on the network when the user goes offline.
    pub offline: OfflinePolicy,
    /// The service (`ChatKey::Service`) the gateway's own domain stands for, where the
    /// network has one only (IRC with a fixed server): messages to the domain go to it, and
    /// what it says comes from the domain.
    pub domain_service: Option<String>,
}

/// What the core does with a user's rooms on the network when the user's last resource
/// goes offline (or leaves the room), set by the bridge from its config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OfflinePolicy {
    /// Leave the room at once (the default).
    #[default]
    Leave,
    /// Stay in the room this long; a user back within it finds the room still joined.
    Grace(std::time::Duration),
    /// Stay in the room; what is said meanwhile goes to the room's archive (XEP-0313).
    Persistent,
}
