//! The bridges this build serves, each behind a cargo feature.

use estuary_bridge_api::{Connector, OutboundPolicy};
use std::sync::Arc;

/// The names of the bridges compiled in.
pub fn available() -> Vec<&'static str> {
    [
        #[cfg(feature = "fake")]
        "fake",
        #[cfg(feature = "irc")]
        "irc",
        #[cfg(feature = "webhook")]
        "webhook",
    ]
    .to_vec()
}

/// Keys of a bridge table that only the core reads; the bridge never sees them.
const CORE_KEYS: [&str; 3] = ["enabled", "admins", "allowed_domains"];

/// Builds the connector for a bridge from its config table (`[bridges.<name>]` with the
/// core's own keys taken out; `domain` and `secret` stay, for bridges that show them) and
/// the `[outbound]` policy, which bridges that connect out apply to every connection.
pub fn build(
    name: &str,
    table: &serde_json::Value,
    outbound: &OutboundPolicy,
) -> Result<Arc<dyn Connector>, String> {
    let mut table = table.clone();
    if let Some(map) = table.as_object_mut() {
        for key in CORE_KEYS {
            map.remove(key);
        }
    }
    let table = &table;
    match name {
        #[cfg(feature = "fake")]
        "fake" => Ok(Arc::new(
            estuary_bridge_fake::FakeConnector::from_config(table).map_err(|e| e.text)?,
        )),
        #[cfg(feature = "irc")]
        "irc" => Ok(Arc::new(
            estuary_bridge_irc::IrcConnector::from_config(table, outbound.clone())
                .map_err(|e| e.to_string())?,
        )),
        #[cfg(feature = "webhook")]
        "webhook" => Ok(Arc::new(
            estuary_bridge_webhook::WebhookConnector::from_config(table, outbound.clone())
                .map_err(|e| e.to_string())?,
        )),
        other => Err(format!(
            "unknown bridge {other:?} (available in this build: {})",
            available().join(", ")
        )),
    }
}

/// Checks a bridge's own keys without starting it, for `check-config`.
pub fn check(
    name: &str,
    table: &serde_json::Value,
    outbound: &OutboundPolicy,
) -> Result<(), String> {
    build(name, table, outbound).map(|_| ())
}
