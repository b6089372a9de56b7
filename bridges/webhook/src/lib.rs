//! Estuary's webhook bridge: HTTP webhooks in and out as XMPP contacts and room posts.
//!
//! Each configured hook is a contact on the bridge's component domain (`ci@hooks.example.org`).
//!
//! * **Incoming**: an HTTP `POST {path_prefix}/<hook>` authenticated by the hook's token
//!   (a bearer token, or the HMAC signature headers that Gitea/Forgejo, GitHub and GitLab
//!   send) is formatted into text with XEP-0393 styling and handed to the core as a
//!   [`RemoteEvent::Message`](estuary_bridge_api::RemoteEvent::Message) from the hook to every
//!   JID in the hook's `to`, and as a
//!   [`RemoteEvent::PostToXmppRoom`](estuary_bridge_api::RemoteEvent::PostToXmppRoom) for every
//!   room in its `rooms`.
//! * **Outgoing**: a message a user sends to the hook's contact is POSTed as JSON to the
//!   hook's `url`, signed with the hook's token, with bounded retries.
//!
//! The bridge never sees XML: JIDs are plain strings in, plain strings out.
//! The user and admin guide is `docs/bridges/webhook.md`.
//!
//! Hooks come from the config and from the bridge's ad-hoc commands ([`commands`]), which
//! store the hooks they add in the adding user's login metadata so they survive a restart.
//!
//! Module map: [`config`] (the `[bridges.webhook]` table), [`hooks`] (the live set of hooks),
//! [`commands`] (adding, removing and listing hooks at run time, and storing them),
//! [`auth`] (tokens and signatures), [`format`](mod@format) (payload → text, one module per sender),
//! [`ratelimit`], [`metrics`], [`deliver`] (events for the core), [`server`] (the hook routes, mounted on the core's HTTP server), [`outgoing`] (the HTTP
//! client with retries), [`connector`] and [`client`] (the bridge API implementations).

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod commands;
pub mod config;
pub mod connector;
pub mod deliver;
pub mod format;
pub mod hooks;
pub mod metrics;
pub mod outgoing;
pub mod ratelimit;
pub mod server;

pub use client::WebhookClient;
pub use config::{ConfigError, HookConfig, MessageType, PayloadFormat, WebhookConfig};
pub use connector::WebhookConnector;
