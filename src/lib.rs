//! Estuary: an XMPP gateway to IRC, Matrix, SMS, email and webhooks.

pub mod db;
