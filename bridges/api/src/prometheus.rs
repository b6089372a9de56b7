//! The Prometheus text exposition format (version 0.0.4), one metric family at a time: the
//! one renderer behind the gateway's `/metrics`, for the core's families and every bridge's
//! ([`Connector::prometheus`](crate::Connector::prometheus)).

use std::fmt::Write as _;

/// A family's type, as written on its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`…_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// One sample: its labels (name, value) and its value.
pub type Sample = (Vec<(&'static str, String)>, u64);

/// Appends a family to `out`: `# HELP`, `# TYPE`, then one line per sample, label values
/// escaped (`\`, `"` and newlines), so that a label taken from outside (a hook name, a bridge
/// name) cannot break the text. A family without samples keeps its two header lines.
pub fn write_family(
    out: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    samples: impl IntoIterator<Item = Sample>,
) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
    for (labels, value) in samples {
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"{}\"", escape(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// A label value as the format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_labelled_samples() {
        let mut out = String::new();
        write_family(
            &mut out,
            "estuary_x_total",
            Kind::Counter,
            "X.",
            [
                (vec![("bridge", "irc".to_string())], 3),
                (vec![("hook", "ci".into()), ("status", "202".into())], 1),
            ],
        );
        assert_eq!(
            out,
            "# HELP estuary_x_total X.\n# TYPE estuary_x_total counter\n\
             estuary_x_total{bridge=\"irc\"} 3\nestuary_x_total{hook=\"ci\",status=\"202\"} 1\n"
        );
    }

    #[test]
    fn hostile_label_values_and_help_cannot_break_lines() {
        let mut out = String::new();
        write_family(
            &mut out,
            "g",
            Kind::Gauge,
            "two\nlines",
            [(vec![("l", "a\"b\\c\nd".to_string())], 1), (vec![], 2)],
        );
        assert_eq!(
            out,
            "# HELP g two\\nlines\n# TYPE g gauge\ng{l=\"a\\\"b\\\\c\\nd\"} 1\ng 2\n"
        );
    }
}
