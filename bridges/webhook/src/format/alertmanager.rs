//! Prometheus Alertmanager notifications (webhook_config, payload version 4).
//!
//! One message per group:
//!
//! ```text
//! *[FIRING:2]* HighLatency (severity=critical)
//! • instance=db1:9100: _p99 latency above 2s_
//!   The p99 latency of db1 was 2.4s for 5 minutes.
//!   https://prometheus.example.org/graph?g0.expr=…
//! https://alertmanager.example.org/#/alerts?receiver=xmpp
//! ```

use super::{FormatError, get_str};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Alerts listed in one message; more are counted.
const MAX_ALERTS: usize = 10;

/// Whether the payload has Alertmanager's shape: an `alerts` list and a `status`, with
/// `groupLabels` or `groupKey`.
pub fn looks_like(p: &Value) -> bool {
    p.get("alerts").is_some_and(Value::is_array)
        && p.get("status").is_some_and(Value::is_string)
        && (p.get("groupLabels").is_some() || p.get("groupKey").is_some())
}

/// Formats an alert group.
pub fn format(p: &Value) -> Result<String, FormatError> {
    let alerts =
        p.get("alerts")
            .and_then(Value::as_array)
            .ok_or_else(|| FormatError::WrongShape {
                expected: "Alertmanager",
                why: "there is no `alerts` list".into(),
            })?;
    let empty = Map::new();
    let common = p
        .get("commonLabels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let group = p
        .get("groupLabels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let firing = alerts
        .iter()
        .filter(|a| get_str(a, &["status"]) != Some("resolved"))
        .count();
    let status = get_str(p, &["status"]).unwrap_or(if firing > 0 { "firing" } else { "resolved" });

    let mut out = if status == "resolved" {
        "*[RESOLVED]*".to_owned()
    } else {
        format!("*[{}:{firing}]*", status.to_uppercase())
    };
    let name = label(group, "alertname").or_else(|| label(common, "alertname"));
    if let Some(name) = name {
        let _ = write!(out, " {name}");
    }
    let mut context: Vec<String> = group
        .iter()
        .chain(common.iter().filter(|(k, _)| !group.contains_key(*k)))
        .filter(|(k, _)| *k != "alertname")
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect();
    context.truncate(4);
    if !context.is_empty() {
        let _ = write!(out, " ({})", context.join(", "));
    }
    if let Some(summary) = get_str(p, &["commonAnnotations", "summary"]) {
        let _ = write!(out, "\n_{summary}_");
    }

    let mixed = firing > 0 && firing < alerts.len();
    let shared_summary = get_str(p, &["commonAnnotations", "summary"]);
    for a in alerts.iter().take(MAX_ALERTS) {
        out.push_str("\n• ");
        if mixed {
            let s = get_str(a, &["status"]).unwrap_or("firing");
            let _ = write!(out, "[{s}] ");
        }
        let labels = a.get("labels").and_then(Value::as_object).unwrap_or(&empty);
        let own: Vec<String> = labels
            .iter()
            .filter(|(k, _)| !common.contains_key(*k))
            .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
            .collect();
        let who = if own.is_empty() {
            label(labels, "alertname").unwrap_or("alert").to_owned()
        } else {
            own.join(", ")
        };
        out.push_str(&who);
        let summary =
            get_str(a, &["annotations", "summary"]).filter(|s| Some(*s) != shared_summary);
        let description = get_str(a, &["annotations", "description"])
            .or_else(|| get_str(a, &["annotations", "message"]));
        if let Some(s) = summary {
            let _ = write!(out, ": _{s}_");
        }
        if let Some(d) = description.filter(|d| Some(*d) != summary) {
            for line in d.lines().filter(|l| !l.trim().is_empty()) {
                let _ = write!(out, "\n  {}", line.trim());
            }
        }
        if let Some(url) = get_str(a, &["generatorURL"]) {
            let _ = write!(out, "\n  {url}");
        }
    }
    if alerts.len() > MAX_ALERTS {
        let _ = write!(out, "\n• … and {} more", alerts.len() - MAX_ALERTS);
    }
    if let Some(url) = get_str(p, &["externalURL"]) {
        let _ = write!(out, "\n{url}");
    }
    Ok(out)
}

fn label<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m str> {
    m.get(k).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shape_detection() {
        assert!(looks_like(
            &json!({"alerts": [], "status": "firing", "groupLabels": {}})
        ));
        assert!(!looks_like(&json!({"alerts": [], "status": "firing"})));
        assert!(!looks_like(&json!({"text": "x"})));
    }

    #[test]
    fn minimal_and_mixed_groups() {
        let p = json!({"status": "resolved", "groupLabels": {"alertname": "Disk"},
            "alerts": [{"status": "resolved", "labels": {"alertname": "Disk"}}]});
        assert_eq!(format(&p).unwrap(), "*[RESOLVED]* Disk\n• alertname=Disk");
        let p = json!({"status": "firing", "groupLabels": {"alertname": "Up"},
        "commonLabels": {"alertname": "Up"},
        "alerts": [
            {"status": "firing", "labels": {"alertname": "Up", "instance": "a"}},
            {"status": "resolved", "labels": {"alertname": "Up", "instance": "b"}}
        ]});
        assert_eq!(
            format(&p).unwrap(),
            "*[FIRING:1]* Up\n• [firing] instance=a\n• [resolved] instance=b"
        );
        assert!(format(&json!({"status": "firing"})).is_err());
    }
}
