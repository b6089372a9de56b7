//! Counters for the gateway's `/metrics`, written with the bridge API's one renderer
//! ([`estuary_bridge_api::prometheus`]).
//!
//! * `estuary_webhook_requests_total{hook,status}`: incoming requests by HTTP status
//!   (requests for unknown hooks count under `hook="_unknown"`, so that random paths
//!   cannot grow the label set);
//! * `estuary_webhook_messages_delivered_total{hook}`: events handed to the core;
//! * `estuary_webhook_outgoing_total{hook,result}`: outgoing deliveries by result
//!   (`ok`, `rejected`, `failed`);
//! * `estuary_webhook_outgoing_retries_total{hook}`: outgoing attempts that were retried.

use estuary_bridge_api::prometheus::{Kind, Sample, write_family};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The label value used for requests to hooks that do not exist.
pub const UNKNOWN_HOOK: &str = "_unknown";

type Key = (String, String);

/// The bridge's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Key, u64>>,
    delivered: Mutex<BTreeMap<String, u64>>,
    outgoing: Mutex<BTreeMap<Key, u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Counts one incoming request answered with `status`.
    pub fn request(&self, hook: &str, status: u16) {
        bump(&self.requests, (hook.to_owned(), status.to_string()), 1);
    }

    /// Counts `n` events handed to the core for `hook`.
    pub fn delivered(&self, hook: &str, n: u64) {
        bump(&self.delivered, hook.to_owned(), n);
    }

    /// Counts one outgoing delivery ending with `result` (`ok`, `rejected`, `failed`).
    pub fn outgoing(&self, hook: &str, result: &str) {
        bump(&self.outgoing, (hook.to_owned(), result.to_owned()), 1);
    }

    /// Counts one outgoing retry.
    pub fn retry(&self, hook: &str) {
        bump(&self.retries, hook.to_owned(), 1);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "estuary_webhook_requests_total",
            "Incoming webhook requests by hook and HTTP status.",
            &snapshot(&self.requests),
            |(h, s)| vec![("hook", h.clone()), ("status", s.clone())],
        );
        family(
            &mut out,
            "estuary_webhook_messages_delivered_total",
            "Messages and room posts handed to the gateway core, by hook.",
            &snapshot(&self.delivered),
            |h| vec![("hook", h.clone())],
        );
        family(
            &mut out,
            "estuary_webhook_outgoing_total",
            "Outgoing deliveries to hook URLs by hook and result.",
            &snapshot(&self.outgoing),
            |(h, r)| vec![("hook", h.clone()), ("result", r.clone())],
        );
        family(
            &mut out,
            "estuary_webhook_outgoing_retries_total",
            "Outgoing delivery attempts that were retried, by hook.",
            &snapshot(&self.retries),
            |h| vec![("hook", h.clone())],
        );
        out
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, n: u64) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(key).or_default() += n;
}

fn snapshot<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> BTreeMap<K, u64> {
    map.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn family<K>(
    out: &mut String,
    name: &str,
    help: &str,
    values: &BTreeMap<K, u64>,
    labels: impl Fn(&K) -> Vec<(&'static str, String)>,
) {
    write_family(
        out,
        name,
        Kind::Counter,
        help,
        values.iter().map(|(k, v)| -> Sample { (labels(k), *v) }),
    );
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
    }
}
