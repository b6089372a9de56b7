//! The core's own endpoints: `GET /healthz` (every enabled bridge's component link) and
//! `GET /metrics` (Prometheus text for the whole gateway, [`crate::metrics`]).

use crate::gateway::Gateway;
use crate::metrics::Registry;
use crate::xmpp::link::LinkState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::{Arc, Weak};

/// What the status endpoints read: the gateways by bridge (kept weakly: a stopped gateway
/// counts as down) and the metrics registry.
#[derive(Clone)]
pub struct StatusState {
    /// Every enabled bridge's gateway, by bridge name.
    pub gateways: Arc<Vec<(String, Weak<Gateway>)>>,
    /// The core's metrics.
    pub registry: Arc<Registry>,
}

/// The `/healthz` body.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    /// `"ok"` when every link is up, else `"degraded"`.
    pub status: &'static str,
    /// Each bridge's link: `up`, `down` (connecting or reconnecting) or `stopped`.
    pub bridges: std::collections::BTreeMap<String, &'static str>,
    /// The bridges whose link is not up, in name order.
    pub down: Vec<String>,
}

/// The health of these gateways.
pub fn health(gateways: &[(String, Weak<Gateway>)]) -> Health {
    let bridges: std::collections::BTreeMap<String, &'static str> = gateways
        .iter()
        .map(|(name, g)| {
            let state = match g.upgrade().map(|g| g.link_state()) {
                Some(LinkState::Up) => "up",
                Some(LinkState::Down) => "down",
                Some(LinkState::Closed) | None => "stopped",
            };
            (name.clone(), state)
        })
        .collect();
    let down: Vec<String> = bridges
        .iter()
        .filter(|(_, s)| **s != "up")
        .map(|(n, _)| n.clone())
        .collect();
    Health {
        status: if down.is_empty() { "ok" } else { "degraded" },
        bridges,
        down,
    }
}

/// `GET /healthz`: 200 while every enabled bridge's component link is up, else 503; the
/// JSON body names each bridge's link state and those that are not up.
pub async fn healthz(State(st): State<StatusState>) -> Response {
    let health = health(&st.gateways);
    let code = if health.down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health)).into_response()
}

/// `GET /metrics`: the core's metrics, then each bridge's own, in the Prometheus text
/// format 0.0.4 ([`Registry::render`]); 500 if the core's own fail to encode.
pub async fn metrics(State(st): State<StatusState>) -> Response {
    match st.registry.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(estuary_bridge_api::prometheus::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => {
            tracing::error!("the core's metrics failed to encode");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_gateway_is_reported_down() {
        let h = health(&[("irc".into(), Weak::new())]);
        assert_eq!(h.status, "degraded");
        assert_eq!(h.down, vec!["irc".to_string()]);
        assert_eq!(h.bridges["irc"], "stopped");
    }

    #[test]
    fn no_gateway_is_healthy() {
        let h = health(&[]);
        assert_eq!(h.status, "ok");
        assert!(h.down.is_empty());
    }
}
