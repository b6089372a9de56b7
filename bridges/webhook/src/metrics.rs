//! Counters for the gateway's `/metrics`: [`prometheus_client`] families of counters,
//! registered through
//! [`Connector::register_metrics`](estuary_bridge_api::Connector::register_metrics).
//!
//! * `estuary_webhook_requests_total{hook,status}`: incoming requests by HTTP status
//!   (requests for unknown hooks count under `hook="_unknown"`, so that random paths
//!   cannot grow the label set);
//! * `estuary_webhook_messages_delivered_total{hook}`: events handed to the core;
//! * `estuary_webhook_outgoing_total{hook,result}`: outgoing deliveries by result
//!   (`ok`, `rejected`, `failed`);
//! * `estuary_webhook_outgoing_retries_total{hook}`: outgoing attempts that were retried.
//!
//! Each family is described (`# HELP`, `# TYPE`) even before its first sample.

use estuary_bridge_api::prometheus;
use estuary_bridge_api::prometheus_client::collector::Collector;
use estuary_bridge_api::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use estuary_bridge_api::prometheus_client::metrics::counter::Counter;
use estuary_bridge_api::prometheus_client::metrics::family::Family;

/// The label value used for requests to hooks that do not exist.
pub const UNKNOWN_HOOK: &str = "_unknown";

/// Counters labelled by hook.
type ByHook = Family<[(&'static str, String); 1], Counter>;
/// Counters labelled by hook and one more label.
type ByHookAnd = Family<[(&'static str, String); 2], Counter>;

/// The bridge's counters. Clones share them (the crate's families are shared handles).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    requests: ByHookAnd,
    delivered: ByHook,
    outgoing: ByHookAnd,
    retries: ByHook,
}

impl Metrics {
    /// Counts one incoming request answered with `status`.
    pub fn request(&self, hook: &str, status: u16) {
        self.requests
            .get_or_create(&[("hook", hook.to_owned()), ("status", status.to_string())])
            .inc();
    }

    /// Counts `n` events handed to the core for `hook`.
    pub fn delivered(&self, hook: &str, n: u64) {
        self.delivered
            .get_or_create(&[("hook", hook.to_owned())])
            .inc_by(n);
    }

    /// Counts one outgoing delivery ending with `result` (`ok`, `rejected`, `failed`).
    pub fn outgoing(&self, hook: &str, result: &str) {
        self.outgoing
            .get_or_create(&[("hook", hook.to_owned()), ("result", result.to_owned())])
            .inc();
    }

    /// Counts one outgoing retry.
    pub fn retry(&self, hook: &str) {
        self.retries
            .get_or_create(&[("hook", hook.to_owned())])
            .inc();
    }

    /// The counters as `/metrics` serves them (the Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let metrics = self.clone();
        prometheus::text(|r| r.register_collector(Box::new(metrics)))
            .expect("counters encode into a String")
    }
}

/// Describes one family, then writes its samples.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The families in the order served; names without `_total`, which the crate adds.
impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        family(
            &mut encoder,
            "estuary_webhook_requests",
            "Incoming webhook requests by hook and HTTP status.",
            &self.requests,
        )?;
        family(
            &mut encoder,
            "estuary_webhook_messages_delivered",
            "Messages and room posts handed to the gateway core, by hook.",
            &self.delivered,
        )?;
        family(
            &mut encoder,
            "estuary_webhook_outgoing",
            "Outgoing deliveries to hook URLs by hook and result.",
            &self.outgoing,
        )?;
        family(
            &mut encoder,
            "estuary_webhook_outgoing_retries",
            "Outgoing delivery attempts that were retried, by hook.",
            &self.retries,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.request("ci", 202);
        m.request("ci", 202);
        m.request(UNKNOWN_HOOK, 404);
        m.delivered("ci", 3);
        m.outgoing("ci", "ok");
        let text = m.render();
        assert!(text.contains("estuary_webhook_requests_total{hook=\"ci\",status=\"202\"} 2\n"));
        assert!(
            text.contains("estuary_webhook_requests_total{hook=\"_unknown\",status=\"404\"} 1\n")
        );
        assert!(text.contains("estuary_webhook_messages_delivered_total{hook=\"ci\"} 3\n"));
        assert!(text.contains("estuary_webhook_outgoing_total{hook=\"ci\",result=\"ok\"} 1\n"));
        assert!(text.contains("# TYPE estuary_webhook_outgoing_retries_total counter\n"));
        assert!(text.contains(
            "# HELP estuary_webhook_outgoing_retries_total Outgoing delivery attempts that were retried, by hook.\n"
        ));
        // Four families, each described once; five samples.
        assert_eq!(text.matches("# HELP ").count(), 4, "{text}");
        assert_eq!(text.matches("# TYPE ").count(), 4, "{text}");
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            4,
            "{text}"
        );
    }

    #[test]
    fn clones_share_the_counters() {
        let m = Metrics::default();
        m.clone().retry("ci");
        m.retry("ci");
        assert!(
            m.render()
                .contains("estuary_webhook_outgoing_retries_total{hook=\"ci\"} 2\n")
        );
    }
}
