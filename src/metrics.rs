//! The process's gateways as Prometheus metrics, served on the core's `/metrics`
//! ([`crate::http`]) before each bridge's own
//! ([`Connector::register_metrics`](estuary_bridge_api::Connector::register_metrics)),
//! encoded by the `prometheus-client` crate ([`estuary_bridge_api::prometheus`]). The
//! counters stay the gateways' own atomics; [`Registry`] is a `Collector` that reads them at
//! every scrape, one sample per gateway (`{bridge="irc"}`).

use crate::gateway::Gateway;
use crate::retention::RetentionStats;
use crate::xmpp::link::LinkState;
use estuary_bridge_api::prometheus;
use estuary_bridge_api::prometheus_client::collector::Collector;
use estuary_bridge_api::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use estuary_bridge_api::prometheus_client::metrics::MetricType;
use estuary_bridge_api::prometheus_client::metrics::counter::ConstCounter;
use estuary_bridge_api::prometheus_client::metrics::gauge::ConstGauge;
use estuary_bridge_api::prometheus_client::registry::Registry as PromRegistry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use tracing::warn;

/// Every gateway of the process, for [`Registry::render`].
#[derive(Debug, Default)]
pub struct Registry {
    gateways: Mutex<Vec<Weak<Gateway>>>,
    retention: Arc<RetentionStats>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The archive pruner's counters (process-wide, served without a `bridge` label).
    pub fn retention(&self) -> Arc<RetentionStats> {
        Arc::clone(&self.retention)
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

/// A family's type.
#[derive(Clone, Copy)]
enum Kind {
    /// Only goes up; the crate serves it with `_total` after the name.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One of the core's families: one sample per gateway.
struct Family {
    /// The name as registered: a counter's is served with `_total` after it.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// The gateway's value, read at scrape time.
    value: fn(&Gateway) -> u64,
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The core's families, in the order served.
const FAMILIES: &[Family] = &[
    Family {
        name: "estuary_stanzas_in",
        kind: Kind::Counter,
        help: "Stanzas received from the XMPP server.",
        value: |g| load(&g.stats().stanzas_in),
    },
    Family {
        name: "estuary_stanzas_refused",
        kind: Kind::Counter,
        help: "Stanzas answered with resource-constraint: their user had too many waiting.",
        value: |g| load(&g.stats().refused),
    },
    Family {
        name: "estuary_stanzas_out",
        kind: Kind::Counter,
        help: "Stanzas sent (or queued) to the XMPP server.",
        value: |g| load(&g.stats().stanzas_out),
    },
    Family {
        name: "estuary_messages_out",
        kind: Kind::Counter,
        help: "Messages sent to the foreign network.",
        value: |g| load(&g.stats().messages_out),
    },
    Family {
        name: "estuary_events_in",
        kind: Kind::Counter,
        help: "Events received from the foreign network.",
        value: |g| load(&g.stats().events_in),
    },
    Family {
        name: "estuary_events_dropped",
        kind: Kind::Counter,
        help: "Events from the foreign network dropped: their user had too many waiting.",
        value: |g| load(&g.stats().events_dropped),
    },
    Family {
        name: "estuary_outbound_queue",
        kind: Kind::Gauge,
        help: "Stanzas waiting for the XMPP server (memory, database, unconfirmed).",
        value: |g| g.queued(),
    },
    Family {
        name: "estuary_component_link_up",
        kind: Kind::Gauge,
        help: "1 when the component link to the XMPP server is up.",
        value: |g| u64::from(g.link_state() == LinkState::Up),
    },
    Family {
        name: "estuary_component_link_connections",
        kind: Kind::Counter,
        help: "Times the component link came up (a rising count means it keeps dropping).",
        value: |g| g.link_connections(),
    },
    Family {
        name: "estuary_unwritable_stanzas",
        kind: Kind::Counter,
        help: "Stanzas dropped because they could not be written as XML (a bug if not 0).",
        value: |g| g.unwritable_stanzas(),
    },
    Family {
        name: "estuary_clients",
        kind: Kind::Gauge,
        help: "Live clients (one per login).",
        value: |g| g.client_count() as u64,
    },
];

/// Describes one family and writes a sample per `(bridge, value)`; a family without a
/// sample keeps its `# HELP` and `# TYPE` lines.
fn encode_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    kind: Kind,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) -> Result<(), std::fmt::Error> {
    let metric_type = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (bridge, value) in samples {
        let labels = [("bridge", bridge)];
        let sample = family.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(value).encode(sample)?,
            Kind::Gauge => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for Registry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gateways = self.live();
        for f in FAMILIES {
            let samples = gateways.iter().map(|g| (g.bridge.clone(), (f.value)(g)));
            encode_family(&mut encoder, f.name, f.kind, f.help, samples)?;
        }
        encode_retention(&mut encoder, &self.retention)
    }
}

/// The archive pruner's counters: one unlabelled sample each (the pruner serves every
/// bridge at once).
fn encode_retention(
    encoder: &mut DescriptorEncoder<'_>,
    stats: &RetentionStats,
) -> Result<(), std::fmt::Error> {
    let families = [
        (
            "estuary_archive_pruned_by_age",
            "Archived room messages removed by the pruner because they were older than [archive] max_age_days.",
            load(&stats.archive_by_age),
        ),
        (
            "estuary_archive_pruned_by_count",
            "Archived room messages removed by the pruner because their room held more than [archive] max_messages_per_room.",
            load(&stats.archive_by_count),
        ),
        (
            "estuary_message_map_pruned",
            "Message-map rows removed by the pruner because they were older than [archive] max_age_days.",
            load(&stats.map_rows),
        ),
        (
            "estuary_archive_prune_failures",
            "Pruning passes that failed on a database error (retried at the next pass).",
            load(&stats.failed_passes),
        ),
    ];
    for (name, help, value) in families {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)?;
    }
    Ok(())
}

impl Registry {
    /// The whole gateway's `/metrics` in the Prometheus text format 0.0.4
    /// ([`prometheus::CONTENT_TYPE`]): the core's families (each with its `# HELP` and
    /// `# TYPE` lines even without a gateway), then each live gateway's bridge's own. A
    /// bridge whose metrics fail to encode is left out, with a warning.
    ///
    /// # Errors
    ///
    /// [`std::fmt::Error`] if the core's own families fail to encode (a bug).
    pub fn render(self: &Arc<Self>) -> Result<String, std::fmt::Error> {
        let core = Arc::clone(self);
        let mut out = prometheus::text(|r| r.register_collector(Box::new(core)))?;
        for gateway in self.live() {
            append_bridge(&mut out, &gateway.bridge, |r| {
                gateway.register_bridge_metrics(r)
            });
        }
        Ok(out)
    }
}

/// Appends what `bridge` registers to `out`; a bridge whose metrics fail to encode is left
/// out whole (no half-written family), with a warning, and the others are still served.
fn append_bridge(out: &mut String, bridge: &str, register: impl FnOnce(&mut PromRegistry)) {
    match prometheus::text(register) {
        Ok(text) => out.push_str(&text),
        Err(_) => warn!(
            bridge,
            "the bridge's metrics failed to encode: left out of /metrics"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(
        encode: impl Fn(&mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error>
        + Send
        + Sync
        + 'static,
    ) -> String {
        struct One<F>(F);
        impl<F> std::fmt::Debug for One<F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("One")
            }
        }
        impl<F> Collector for One<F>
        where
            F: Fn(&mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error>
                + Send
                + Sync
                + 'static,
        {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                (self.0)(&mut encoder)
            }
        }
        prometheus::text(|r| r.register_collector(Box::new(One(encode)))).unwrap()
    }

    #[test]
    fn families_have_help_type_and_labels() {
        let out = text(|e| {
            encode_family(e, "estuary_x", Kind::Counter, "X.", [("irc".into(), 3)])?;
            encode_family(e, "estuary_g", Kind::Gauge, "G.", [("fake".into(), 0)])
        });
        assert_eq!(
            out,
            "# HELP estuary_x_total X.\n# TYPE estuary_x_total counter\n\
             estuary_x_total{bridge=\"irc\"} 3\n\
             # HELP estuary_g G.\n# TYPE estuary_g gauge\nestuary_g{bridge=\"fake\"} 0\n"
        );
    }

    #[derive(Debug)]
    struct Failing;

    impl Collector for Failing {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            // Half a family, then a failure: none of it may reach /metrics.
            encode_family(&mut encoder, "estuary_bad", Kind::Gauge, "Bad.", [])?;
            Err(std::fmt::Error)
        }
    }

    #[test]
    fn a_bridge_whose_metrics_fail_is_left_out_and_the_next_one_served() {
        let mut out = "core\n".to_string();
        append_bridge(&mut out, "bad", |r| r.register_collector(Box::new(Failing)));
        assert_eq!(out, "core\n");
        append_bridge(&mut out, "good", |r| {
            r.register_collector(Box::new(Registry::default()))
        });
        assert!(
            out.starts_with("core\n# HELP estuary_stanzas_in_total "),
            "{out}"
        );
        assert!(!out.contains("estuary_bad"), "{out}");
    }

    #[test]
    fn an_empty_registry_still_describes_its_metrics() {
        let text = Registry::new().render().unwrap();
        assert!(
            text.contains("# TYPE estuary_component_link_up gauge"),
            "{text}"
        );
        // Every family is described once, HELP before TYPE, and names are today's.
        for f in FAMILIES {
            let served = match f.kind {
                Kind::Counter => format!("{}_total", f.name),
                Kind::Gauge => f.name.to_string(),
            };
            let help = format!("# HELP {served} {}\n", f.help);
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let typ = format!("# TYPE {served} {kind}\n");
            assert_eq!(text.matches(&help).count(), 1, "{help} in {text}");
            assert!(text.contains(&format!("{help}{typ}")), "{typ} in {text}");
        }
        // The pruner's counters: described and sampled once each, without labels, even
        // with no gateway (issue 15).
        for name in [
            "estuary_archive_pruned_by_age",
            "estuary_archive_pruned_by_count",
            "estuary_message_map_pruned",
            "estuary_archive_prune_failures",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name}_total counter\n{name}_total 0\n")),
                "{name} in {text}"
            );
        }
        assert_eq!(text.lines().count(), 2 * FAMILIES.len() + 3 * 4);
    }

    #[test]
    fn the_pruners_counts_are_served() {
        let registry = Registry::new();
        let stats = registry.retention();
        stats.archive_by_age.fetch_add(7, Ordering::Relaxed);
        stats.map_rows.fetch_add(2, Ordering::Relaxed);
        let text = registry.render().unwrap();
        assert!(
            text.contains("\nestuary_archive_pruned_by_age_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("\nestuary_archive_pruned_by_count_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nestuary_message_map_pruned_total 2\n"),
            "{text}"
        );
    }
}
