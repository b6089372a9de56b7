//! The gateway's `/metrics` in the Prometheus text exposition format (version 0.0.4), written
//! by the [`prometheus_client`] crate (re-exported at this crate's root, so that every bridge
//! builds against the core's version): the core's families, then every bridge's
//! ([`Connector::register_metrics`](crate::Connector::register_metrics)).
//!
//! The crate names counters for the format: a counter registered or described as `foo` is
//! served as `foo_total` (on its `# HELP`, `# TYPE` and sample lines alike), and a name that
//! already ends in `_total` is a mistake it catches with a panic in debug builds. Label
//! values and help texts are escaped by the crate (`\`, `"` and newlines), so a label taken
//! from outside (a hook name) cannot break the text. A help text given to
//! [`Registry::register`] gets a full stop added by the crate; one written by a
//! `Collector` (`DescriptorEncoder::encode_descriptor`) is served as given.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

/// The `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4
/// (`text/plain; version=0.0.4; charset=utf-8`).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The text of the metrics `register` puts in a fresh registry: each family with its
/// `# HELP` and `# TYPE` lines, then its samples. How the core writes each part of
/// `/metrics`; a bridge's tests read their families the same way.
///
/// # Errors
///
/// [`std::fmt::Error`] when a registered [`Collector`](prometheus_client::collector::Collector)
/// fails (writing to a `String` does not).
pub fn text(register: impl FnOnce(&mut Registry)) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    register(&mut registry);
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn counters_gain_total_and_samples_carry_labels() {
        let hits: Family<[(&str, String); 2], Counter> = Family::default();
        hits.get_or_create(&[("hook", "ci".into()), ("status", "202".into())])
            .inc_by(3);
        let up: Gauge = Gauge::default();
        up.set(1);
        let out = text(|r| {
            // `register` ends each help text with a full stop of its own.
            r.register("estuary_x", "X", hits.clone());
            r.register("estuary_up", "Up", up.clone());
        })
        .unwrap();
        assert_eq!(
            out,
            "# HELP estuary_x_total X.\n# TYPE estuary_x_total counter\n\
             estuary_x_total{hook=\"ci\",status=\"202\"} 3\n\
             # HELP estuary_up Up.\n# TYPE estuary_up gauge\nestuary_up 1\n"
        );
    }

    #[test]
    fn hostile_label_values_and_help_cannot_break_lines() {
        let g: Family<[(&str, String); 1], Gauge> = Family::default();
        g.get_or_create(&[("l", "a\"b\\c\nd".into())]).set(1);
        let out = text(|r| r.register("g", "two\nlines", g.clone())).unwrap();
        assert_eq!(
            out,
            "# HELP g two\\nlines.\n# TYPE g gauge\ng{l=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[derive(Debug)]
    struct Failing;

    impl Collector for Failing {
        fn encode(&self, _: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
    }

    #[test]
    fn a_failing_collector_is_an_error() {
        assert!(text(|r| r.register_collector(Box::new(Failing))).is_err());
    }
}
