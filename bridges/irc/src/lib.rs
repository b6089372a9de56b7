//! The IRC bridge of Estuary: IRC channels as MUC rooms and IRC users as contacts, with
//! Biboumi's address syntax.
//!
//! * [`address`]: the address codec (local parts ↔ channels, nicks, servers; CASEMAPPING).
//! * [`format`]: IRC formatting ↔ XEP-0393 styling, XMPP bodies → safe IRC lines, CTCP.

pub mod address;
pub mod format;
