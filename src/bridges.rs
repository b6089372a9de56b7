//! The bridges this build serves, each behind a cargo feature.

use estuary_bridge_api::Connector;
use std::sync::Arc;

/// The names of the bridges compiled in.
pub fn available() -> Vec<&'static str> {
    [
        #[cfg(feature = "fake")]
        "fake",
    ]
    .to_vec()
}

/// Builds the connector for a bridge from its config table.
pub fn build(name: &str, table: &serde_json::Value) -> Result<Arc<dyn Connector>, String> {
    let _ = table;
    match name {
        #[cfg(feature = "fake")]
        "fake" => Ok(Arc::new(
            estuary_bridge_fake::FakeConnector::from_config(table).map_err(|e| e.text)?,
        )),
        other => Err(format!(
            "unknown bridge {other:?} (available in this build: {})",
            available().join(", ")
        )),
    }
}
