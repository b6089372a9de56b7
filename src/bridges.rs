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
    // A build without some bridges leaves these unused.
    let _ = (table, outbound);
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

/// Checks a bridge's own keys without starting it, for `check-config`: everything the
/// bridge finds wrong, each as (full dotted key, what is wrong). Empty: the table is usable.
pub fn check(
    name: &str,
    table: &serde_json::Value,
    outbound: &OutboundPolicy,
) -> Vec<(String, String)> {
    let mut own = table.clone();
    if let Some(map) = own.as_object_mut() {
        for key in CORE_KEYS {
            map.remove(key);
        }
    }
    let problems: Vec<(String, String)> = match name {
        #[cfg(feature = "irc")]
        "irc" => estuary_bridge_irc::IrcConfig::check(&own)
            .into_iter()
            .map(|e| match e {
                estuary_bridge_irc::ConfigError::OutOfRange { key, why } if !key.is_empty() => {
                    (format!("bridges.irc.{key}"), why)
                }
                other => ("bridges.irc".to_string(), other.to_string()),
            })
            .collect(),
        // The webhook bridge names the full key of the first problem it finds.
        #[cfg(feature = "webhook")]
        "webhook" => match estuary_bridge_webhook::WebhookConfig::from_json(&own) {
            Ok(_) => Vec::new(),
            Err(e) => vec![(e.key, e.reason)],
        },
        _ => Vec::new(),
    };
    if !problems.is_empty() {
        return problems;
    }
    match build(name, table, outbound) {
        Ok(_) => Vec::new(),
        Err(message) => vec![(format!("bridges.{name}"), message)],
    }
}

/// Keys of the webhook table that described its own HTTP listener before the core had one
/// (`[http]`), with their names in `[http]`.
#[cfg(feature = "webhook")]
const WEBHOOK_LISTENER_KEYS: [(&str, &str); 5] = [
    ("listen", "listen"),
    ("tls_cert", "tls_cert"),
    ("tls_key", "tls_key"),
    ("header_timeout_secs", "header_timeout_secs"),
    ("max_connections", "max_connections"),
];

/// The keys of a bridge table that belong in `[http]` now, each as (full dotted key, what to
/// do); `check-config` reports them as problems when `[http]` is also given (two places
/// for one listener would leave the admin guessing which one is used).
pub fn listener_keys_moved(name: &str, table: &serde_json::Value) -> Vec<(String, String)> {
    match name {
        #[cfg(feature = "webhook")]
        "webhook" => WEBHOOK_LISTENER_KEYS
            .iter()
            .filter(|(key, _)| table.get(key).is_some())
            .map(|(key, http_key)| {
                (
                    format!("bridges.webhook.{key}"),
                    format!(
                        "the webhook bridge has no listener of its own any more: remove `{key}` here and set `{http_key}` in [http] (the hooks keep their paths, `path_prefix/<hook>`, on the [http] server)"
                    ),
                )
            })
            .collect(),
        _ => {
            let _ = table;
            Vec::new()
        }
    }
}

/// The HTTP server an older bridge table describes, for a config without `[http]`: the
/// webhook bridge's `listen` (default `127.0.0.1:8080`), `tls_cert`/`tls_key`,
/// `header_timeout_secs`, `body_timeout_secs`, `max_connections` and `max_body_bytes`, as
/// its own listener used them. `None` for other bridges and for a table that does not read.
pub fn legacy_http(name: &str, table: &serde_json::Value) -> Option<crate::config::HttpSettings> {
    match name {
        #[cfg(feature = "webhook")]
        "webhook" => {
            let mut own = table.clone();
            if let Some(map) = own.as_object_mut() {
                for key in CORE_KEYS {
                    map.remove(key);
                }
            }
            let c = estuary_bridge_webhook::WebhookConfig::from_json(&own).ok()?;
            Some(crate::config::HttpSettings {
                listen: vec![c.listen.to_string()],
                tls_cert: c.tls.as_ref().map(|t| t.cert.clone()),
                tls_key: c.tls.as_ref().map(|t| t.key.clone()),
                public_url: None,
                max_body_bytes: c.max_body_bytes,
                header_timeout_secs: c.limits.header_timeout.as_secs().max(1),
                body_timeout_secs: c.limits.body_timeout.as_secs().max(1),
                send_timeout_secs: crate::config::HttpSettings::default().send_timeout_secs,
                max_connections: c.limits.max_connections,
            })
        }
        _ => {
            let _ = table;
            None
        }
    }
}
