//! Estuary: an XMPP gateway to IRC, Matrix, SMS, email and webhooks.
//!
//! The core owns XMPP. It runs one [`gateway`] per enabled bridge, each on its own XEP-0114
//! component domain, keeps the puppet-account [`db`] and drives bridge adapters through the
//! `estuary-bridge-api` traits.

#![allow(clippy::result_large_err)] // StanzaError is the natural error of a stanza handler

pub mod app;
pub mod bridges;
pub mod config;
pub mod db;
pub mod gateway;
pub mod http;
#[cfg(feature = "irc")]
pub mod import;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod retention;
pub mod secret;
pub mod xmpp;
