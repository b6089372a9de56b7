//! The bridge interface of Estuary.
//!
//! A bridge adapts one foreign network (IRC, Matrix, SMS, email, webhooks) to the gateway
//! core. It implements two traits:
//!
//! * [`Connector`]: one per bridge, process-wide. It describes the network (its
//!   [`BridgeInfo`] and [`Capabilities`]), owns the address codec (contact and room
//!   local parts on the component domain), registers logins and turns a stored login into
//!   a live [`Client`].
//! * [`Client`]: one per login, the live connection to the network on the user's behalf.
//!   It takes typed commands from the core and reports what happens on the network as
//!   [`RemoteEvent`]s through an [`EventSink`].
//!
//! Nothing here knows XMPP: no XML, no JIDs beyond the user's bare JID as an opaque string.
//! Everything XMPP-specific is written once, in the core.

pub mod attachment;
mod capabilities;
mod chat;
mod client;
mod command;
mod connector;
pub mod download;
mod error;
mod event;
mod form;
pub mod gate;
mod ids;
pub mod outbound;
pub mod profile;
pub mod prometheus;
pub mod small_map;
pub mod store;

pub use attachment::{Attachment, AttachmentLimits, Content, LimitError, Source};
pub use capabilities::{BridgeInfo, Capabilities, OfflinePolicy};
pub use chat::{
    Affiliation, ChatKey, ChatState, Member, MessageKind, Role, RoomInfo, Show, StandingChange,
};
pub use client::{Client, JoinRequest, Outgoing, Sent, SoftwareVersion};
pub use command::{
    CommandAccess, CommandContext, CommandForm, CommandOutput, CommandScope, CommandSpec,
    CommandTarget, RoomPolicy,
};
pub use connector::{Connector, Registered, StoredLogin, User};
pub use download::{DownloadError, DownloadLimits, Downloaded, download};
pub use error::{BridgeError, ErrorKind, Result};
pub use event::{
    EventRouter, EventSink, EventSlot, LoginState, MemberChange, RemoteEvent, RemoteMessage,
    SEALED_METADATA_KEY, Sender, SinkClosed, TrySend,
};
pub use form::{FieldKind, FormField, FormValues};
pub use gate::{DurableMark, GateKeeper, SendGate};
pub use ids::{LoginId, RemoteChatId, RemoteMessageId, RemoteUserId};
pub use outbound::{OutboundError, OutboundPolicy};
pub use profile::{Avatar, AvatarSource, AvatarUpdate};
/// The Prometheus client crate behind `/metrics` ([`prometheus`]), for bridges' own families
/// ([`Connector::register_metrics`]).
pub use prometheus_client;
pub use small_map::SmallMap;
pub use store::{LoginStore, StoreBackend, StoreError};
