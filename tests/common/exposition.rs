//! A strict reader of the Prometheus text exposition format (version 0.0.4), for tests of
//! the gateway's `/metrics`: written here from the format's description, independently of
//! the crate that writes the text, so that a test can tell the text is well formed.
//!
//! What it insists on, beyond the format's grammar (names, label syntax and escapes,
//! values, the final newline): every family has one `# HELP` and one `# TYPE` line, in that
//! order, before its samples; a family's lines form one group; no series appears twice;
//! counters are not negative. Other comments and empty lines are allowed, as the format
//! allows them.

use std::collections::HashSet;

/// One metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The name on its `# HELP` and `# TYPE` lines.
    pub name: String,
    /// The help text, unescaped.
    pub help: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (the family's, or a histogram's/summary's with its suffix).
    pub name: String,
    /// The labels, in order, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A whole exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    /// The families, in order.
    pub families: Vec<Family>,
}

impl Exposition {
    /// The family named `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample named `name` with exactly these labels (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(&str, &str)> = labels.to_vec();
        want.sort_unstable();
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| {
                let mut have: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                have.sort_unstable();
                s.name == name && have == want
            })
            .map(|s| s.value)
    }
}

/// Reads `text`; the error names the line (1-based) and what is wrong with it.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    // Names whose group has ended: seeing them again is an error.
    let mut closed: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    // A `# HELP` read, waiting for its `# TYPE`.
    let mut pending_help: Option<(String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_metric_name(name).map_err(at)?;
            if let Some((previous, _)) = &pending_help {
                return Err(at(format!("HELP for {previous} has no TYPE")));
            }
            if closed.contains(name) || families.last().is_some_and(|f| f.name == name) {
                return Err(at(format!("a second HELP for {name}")));
            }
            if let Some(last) = families.last() {
                closed.insert(last.name.clone());
            }
            pending_help = Some((name.to_string(), unescape_help(help).map_err(at)?));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            let Some((help_name, help)) = pending_help.take() else {
                return Err(at(format!("TYPE for {name} without a HELP before it")));
            };
            if help_name != name {
                return Err(at(format!("TYPE for {name} after HELP for {help_name}")));
            }
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            families.push(Family {
                name: name.to_string(),
                help,
                kind: kind.to_string(),
                samples: Vec::new(),
            });
        } else if line.starts_with('#') {
            // Another comment.
        } else {
            if let Some((name, _)) = &pending_help {
                return Err(at(format!("a sample between HELP and TYPE of {name}")));
            }
            let sample = parse_sample(line).map_err(at)?;
            let family = families
                .last_mut()
                .ok_or_else(|| at("a sample before any HELP and TYPE".into()))?;
            if !belongs(&sample.name, family) {
                return Err(at(format!(
                    "sample {} outside its family's group (the current one is {})",
                    sample.name, family.name
                )));
            }
            if family.kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
                return Err(at("a counter below 0 or NaN".into()));
            }
            let mut key: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            key.sort_unstable();
            if !series.insert(format!("{}{{{}}}", sample.name, key.join(","))) {
                return Err(at("the same series twice".into()));
            }
            family.samples.push(sample);
        }
    }
    if let Some((name, _)) = pending_help {
        return Err(format!("HELP for {name} has no TYPE"));
    }
    Ok(Exposition { families })
}

/// Whether a sample named `sample` belongs to `family`.
fn belongs(sample: &str, family: &Family) -> bool {
    let suffixes: &[&str] = match family.kind.as_str() {
        "histogram" => &["_bucket", "_sum", "_count"],
        "summary" => &["", "_sum", "_count"],
        _ => &[""],
    };
    suffixes
        .iter()
        .any(|s| sample.strip_suffix(s) == Some(family.name.as_str()))
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// A help text: `\\` and `\n` are the only escapes.
fn unescape_help(help: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape in help: \\{other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..end];
    check_metric_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .trim_start_matches(' ');
    let mut fields = rest.split(' ').filter(|f| !f.is_empty());
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    let mut seen = HashSet::new();
    for (k, _) in &labels {
        if !seen.insert(k.clone()) {
            return Err(format!("label {k} twice"));
        }
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Labels read, in order.
type Labels = Vec<(String, String)>;

/// The labels after `{`, up to and including `}`; what follows.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("a label without =")?;
        let name = &s[..eq];
        check_label_name(name)?;
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name}'s value is not quoted"));
        }
        let mut value = String::new();
        let close = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label {name}: {other:?}")),
                },
                Some((j, '"')) => break j,
                Some((_, '\n')) | None => return Err(format!("label {name}'s value is open")),
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = &s[eq + 1 + close + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("after label {name}: neither , nor }}"));
        }
    }
}

/// A value as Go's `ParseFloat` reads it in this format (`NaN`, `+Inf`, `-Inf` included).
fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))
        }
        _ => Err(format!("bad value {v:?}")),
    }
}
