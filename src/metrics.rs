//! The process's gateways as Prometheus metrics, served on the core's `/metrics`
//! ([`crate::http`]) before each bridge's own
//! ([`Connector::prometheus`](estuary_bridge_api::Connector::prometheus)).

use crate::gateway::Gateway;
use crate::xmpp::link::LinkState;
use estuary_bridge_api::prometheus::{Kind, write_family};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

/// Every gateway of the process, for [`Registry::render`].
#[derive(Default)]
pub struct Registry {
    gateways: Mutex<Vec<Weak<Gateway>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a gateway (kept weakly: a stopped gateway disappears).
    pub fn add(&self, gateway: &Arc<Gateway>) {
        self.gateways
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(gateway));
    }

    fn live(&self) -> Vec<Arc<Gateway>> {
        self.gateways
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// One metric family: its help, type and one sample per gateway.
fn family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[(String, u64)]) {
    write_family(
        out,
        name,
        kind,
        help,
        samples
            .iter()
            .map(|(bridge, value)| (vec![("bridge", bridge.clone())], *value)),
    );
}

impl Registry {
    /// Every gateway's metrics in the Prometheus text format; a family without a gateway
    /// still has its `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> String {
        let gateways = self.live();
        let per = |f: &dyn Fn(&Gateway) -> u64| -> Vec<(String, u64)> {
            gateways.iter().map(|g| (g.bridge.clone(), f(g))).collect()
        };
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        family(
            &mut out,
            "estuary_stanzas_in_total",
            Kind::Counter,
            "Stanzas received from the XMPP server.",
            &per(&|g| load(&g.stats().stanzas_in)),
        );
        family(
            &mut out,
            "estuary_stanzas_refused_total",
            Kind::Counter,
            "Stanzas answered with resource-constraint: their user had too many waiting.",
            &per(&|g| load(&g.stats().refused)),
        );
        family(
            &mut out,
            "estuary_stanzas_out_total",
            Kind::Counter,
            "Stanzas sent (or queued) to the XMPP server.",
            &per(&|g| load(&g.stats().stanzas_out)),
        );
        family(
            &mut out,
            "estuary_messages_out_total",
            Kind::Counter,
            "Messages sent to the foreign network.",
            &per(&|g| load(&g.stats().messages_out)),
        );
        family(
            &mut out,
            "estuary_events_in_total",
            Kind::Counter,
            "Events received from the foreign network.",
            &per(&|g| load(&g.stats().events_in)),
        );
        family(
            &mut out,
            "estuary_events_dropped_total",
            Kind::Counter,
            "Events from the foreign network dropped: their user had too many waiting.",
            &per(&|g| load(&g.stats().events_dropped)),
        );
        family(
            &mut out,
            "estuary_outbound_queue",
            Kind::Gauge,
            "Stanzas waiting for the XMPP server (memory, database, unconfirmed).",
            &per(&|g| g.queued()),
        );
        family(
            &mut out,
            "estuary_component_link_up",
            Kind::Gauge,
            "1 when the component link to the XMPP server is up.",
            &per(&|g| u64::from(g.link_state() == LinkState::Up)),
        );
        family(
            &mut out,
            "estuary_component_link_connections_total",
            Kind::Counter,
            "Times the component link came up (a rising count means it keeps dropping).",
            &per(&|g| g.link_connections()),
        );
        family(
            &mut out,
            "estuary_unwritable_stanzas_total",
            Kind::Counter,
            "Stanzas dropped because they could not be written as XML (a bug if not 0).",
            &per(&|g| g.unwritable_stanzas()),
        );
        family(
            &mut out,
            "estuary_clients",
            Kind::Gauge,
            "Live clients (one per login).",
            &per(&|g| g.client_count() as u64),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_labels() {
        let mut out = String::new();
        family(
            &mut out,
            "estuary_x_total",
            Kind::Counter,
            "X.",
            &[("irc".into(), 3)],
        );
        assert_eq!(
            out,
            "# HELP estuary_x_total X.\n# TYPE estuary_x_total counter\nestuary_x_total{bridge=\"irc\"} 3\n"
        );
    }

    #[test]
    fn an_empty_registry_still_describes_its_metrics() {
        let text = Registry::new().render();
        assert!(
            text.contains("# TYPE estuary_component_link_up gauge"),
            "{text}"
        );
    }
}
