//! The IRC bridge of Estuary: IRC channels as MUC rooms and IRC users as contacts, with
//! Biboumi's address syntax, one IRC connection per XMPP user and server.
//!
//! * [`address`]: the address codec (local parts ↔ channels, nicks, servers; CASEMAPPING).
//! * [`format`]: IRC formatting ↔ XEP-0393 styling, XMPP bodies → safe IRC lines, CTCP.
//! * [`config`]: the `[bridges.irc]` table.
//! * [`connector`]: [`IrcConnector`], the bridge's [`Connector`](estuary_bridge_api::Connector).
//! * [`client`]: [`IrcClient`], one login's connections.
//! * [`connection`]: one connection's task (registration, throttle, reconnect).
//! * [`profile`]: what every user's connection to one server shares, kept once.
//! * [`settings`]: a user's per-server settings (the server JID's "Configure" form).
//! * [`prefixes`]: a server's channel prefix modes (`PREFIX=(ov)@+`).
//! * [`progress`]: the "Connecting to…" lines told to the user while a connection opens.
//! * [`remote`]: one session's state and IRC → event translation.
//! * [`standing`]: muc#admin role and affiliation changes as channel prefix modes.
//! * [`throttle`]: the flood-control token bucket.
//! * [`transport`]: the socket (TCP, TLS), lines in and out.

pub mod address;
pub mod client;
pub mod commands;
pub mod config;
pub mod connection;
pub mod connector;
pub mod format;
pub mod gates;
pub mod inflight;
pub mod live;
pub mod prefixes;
pub mod profile;
pub mod progress;
pub mod remote;
pub mod replies;
pub mod settings;
pub mod standing;
pub mod throttle;
pub mod transport;

pub use client::IrcClient;
pub use config::{ConfigError, IrcConfig};
pub use connector::IrcConnector;
