//! XEP-0004 data forms built from a bridge's form fields, and submitted forms read back.

use crate::xmpp::el::a;
use crate::xmpp::ns;
use estuary_bridge_api::{FieldKind, FormField, FormValues};
use tokio_xmpp::minidom::Element;

/// Builds a `<x xmlns='jabber:x:data' type='form'>` from fields; `current` fills values
/// (secrets are never sent back).
pub fn form(
    title: &str,
    instructions: &str,
    fields: &[FormField],
    current: Option<&FormValues>,
) -> Element {
    let mut x = Element::builder("x", ns::DATA_FORMS)
        .attr(a("type"), "form")
        .append(
            Element::builder("title", ns::DATA_FORMS)
                .append(title)
                .build(),
        )
        .append(
            Element::builder("instructions", ns::DATA_FORMS)
                .append(instructions)
                .build(),
        )
        .build();
    for f in fields {
        x.append_child(field(f, current));
    }
    x
}

fn field(f: &FormField, current: Option<&FormValues>) -> Element {
    let type_ = match &f.kind {
        FieldKind::Text => "text-single",
        FieldKind::Secret => "text-private",
        FieldKind::Boolean => "boolean",
        FieldKind::Choice(_) => "list-single",
        FieldKind::Multiline => "text-multi",
        FieldKind::Integer { .. } => "text-single",
        FieldKind::MultiChoice(_) => "list-multi",
    };
    let mut el = Element::builder("field", ns::DATA_FORMS)
        .attr(a("var"), f.var.clone())
        .attr(a("type"), type_)
        .attr(a("label"), f.label.clone())
        .build();
    if let Some(desc) = &f.description {
        el.append_child(
            Element::builder("desc", ns::DATA_FORMS)
                .append(desc.as_str())
                .build(),
        );
    }
    if f.required {
        el.append_child(Element::builder("required", ns::DATA_FORMS).build());
    }
    if let FieldKind::Choice(options) | FieldKind::MultiChoice(options) = &f.kind {
        for (value, label) in options {
            el.append_child(
                Element::builder("option", ns::DATA_FORMS)
                    .attr(a("label"), label.clone())
                    .append(
                        Element::builder("value", ns::DATA_FORMS)
                            .append(value.as_str())
                            .build(),
                    )
                    .build(),
            );
        }
    }
    let value = if f.is_secret() {
        None
    } else {
        current
            .and_then(|c| c.get(&f.var))
            .map(str::to_string)
            .or_else(|| f.default.clone())
    };
    // Booleans are shown as XEP-0004 spells them in examples (and Biboumi sends them).
    let value = match (&f.kind, value) {
        (FieldKind::Boolean, Some(v)) => Some(
            if v == "1" || v.eq_ignore_ascii_case("true") {
                "true"
            } else {
                "false"
            }
            .to_string(),
        ),
        (_, v) => v,
    };
    if let Some(v) = value {
        let lines: Vec<&str> = if matches!(f.kind, FieldKind::Multiline | FieldKind::MultiChoice(_))
        {
            v.split('\n').filter(|l| !l.is_empty()).collect()
        } else {
            vec![v.as_str()]
        };
        for line in lines {
            el.append_child(
                Element::builder("value", ns::DATA_FORMS)
                    .append(line)
                    .build(),
            );
        }
    }
    el
}

/// The rows of a result table ([`result_table`]) as plain text, one line a row (its
/// values joined by ": " for two columns, " | " for more), for clients that show an ad-hoc
/// command's note but not its table (Profanity); `None` when the form has no rows.
pub fn table_text(form: &Element) -> Option<String> {
    let lines: Vec<String> = form
        .children()
        .filter(|c| c.is("item", ns::DATA_FORMS))
        .map(|item| {
            let values: Vec<String> = item
                .children()
                .filter(|f| f.is("field", ns::DATA_FORMS))
                .map(|f| {
                    f.children()
                        .filter(|v| v.is("value", ns::DATA_FORMS))
                        .map(|v| v.text())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            values.join(if values.len() == 2 { ": " } else { " | " })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A hidden FORM_TYPE-less `<x type='result'>` holding a table of rows, for ad-hoc results.
pub fn result_table(title: &str, columns: &[(&str, &str)], rows: &[Vec<String>]) -> Element {
    let mut x = Element::builder("x", ns::DATA_FORMS)
        .attr(a("type"), "result")
        .append(
            Element::builder("title", ns::DATA_FORMS)
                .append(title)
                .build(),
        )
        .build();
    let mut reported = Element::builder("reported", ns::DATA_FORMS).build();
    for (var, label) in columns {
        reported.append_child(
            Element::builder("field", ns::DATA_FORMS)
                .attr(a("var"), *var)
                .attr(a("label"), *label)
                .build(),
        );
    }
    x.append_child(reported);
    for row in rows {
        let mut item = Element::builder("item", ns::DATA_FORMS).build();
        for ((var, _), value) in columns.iter().zip(row) {
            item.append_child(
                Element::builder("field", ns::DATA_FORMS)
                    .attr(a("var"), *var)
                    .append(
                        Element::builder("value", ns::DATA_FORMS)
                            .append(value.as_str())
                            .build(),
                    )
                    .build(),
            );
        }
        x.append_child(item);
    }
    x
}

/// Why a submitted form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The form is not of type submit.
    #[error("the form must be of type 'submit', not '{0}'")]
    NotSubmit(String),
    /// A required field is missing.
    #[error("the field '{0}' is required")]
    Missing(String),
    /// A value is not allowed.
    #[error("'{value}' is not a valid value for '{var}'")]
    BadValue {
        /// The field.
        var: String,
        /// The value.
        value: String,
    },
    /// A whole number was expected.
    #[error("'{value}' is not a valid value for '{var}': enter a whole number from {min} to {max}")]
    NotANumber {
        /// The field.
        var: String,
        /// The value.
        value: String,
        /// The smallest value taken.
        min: i64,
        /// The largest value taken.
        max: i64,
    },
}

impl FormError {
    /// The stanza error it becomes, with `then` after the reason: a form that is not a
    /// submission or lacks a required field is a `bad-request`, a value that is not
    /// acceptable is `not-acceptable` (both name the field).
    pub fn to_stanza_error(&self, then: &str) -> tokio_xmpp::parsers::stanza_error::StanzaError {
        let text = format!("{self}; {then}");
        match self {
            Self::NotSubmit(_) | Self::Missing(_) => crate::xmpp::errors::bad_request(text),
            Self::BadValue { .. } | Self::NotANumber { .. } => {
                crate::xmpp::errors::not_acceptable(text)
            }
        }
    }
}

/// The values of an XEP-0077 `<query xmlns='jabber:iq:register'/>` set: its data form
/// when it has one, else its legacy fields (`<username>…`), checked against `fields`.
pub fn read_register_query(query: &Element, fields: &[FormField]) -> Result<FormValues, FormError> {
    match query.get_child("x", ns::DATA_FORMS) {
        Some(x) => read_submitted(x, fields),
        None => {
            let mut values = FormValues::default();
            for child in query.children().filter(|c| c.ns() == ns::REGISTER) {
                values.set(child.name(), child.text());
            }
            check(values, fields)
        }
    }
}

/// Reads a submitted `<x type='submit'>` against the fields it answers.
/// Unknown fields are ignored (FORM_TYPE and client extras); required fields are checked.
pub fn read_submitted(x: &Element, fields: &[FormField]) -> Result<FormValues, FormError> {
    let type_ = x.attr("type").unwrap_or("");
    if type_ != "submit" {
        return Err(FormError::NotSubmit(type_.to_string()));
    }
    let mut values = FormValues::default();
    for f in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let Some(var) = f.attr("var") else { continue };
        let vals: Vec<String> = f
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        values.set(var, vals.join("\n"));
    }
    check(values, fields)
}

/// Checks values against fields: required present, booleans and choices valid.
pub fn check(mut values: FormValues, fields: &[FormField]) -> Result<FormValues, FormError> {
    for f in fields {
        match (&f.kind, values.get(&f.var).map(str::to_string)) {
            (_, None) if f.required => return Err(FormError::Missing(f.var.clone())),
            (FieldKind::Boolean, Some(v)) => {
                let b = match v.as_str() {
                    "1" | "true" => "1",
                    "0" | "false" => "0",
                    _ => {
                        return Err(FormError::BadValue {
                            var: f.var.clone(),
                            value: v,
                        });
                    }
                };
                values.set(f.var.clone(), b);
            }
            (FieldKind::Choice(options), Some(v)) if !options.iter().any(|(o, _)| *o == v) => {
                return Err(FormError::BadValue {
                    var: f.var.clone(),
                    value: v,
                });
            }
            (FieldKind::MultiChoice(options), Some(v)) => {
                if let Some(bad) = v
                    .split('\n')
                    .find(|one| !one.is_empty() && !options.iter().any(|(o, _)| o == one))
                {
                    return Err(FormError::BadValue {
                        var: f.var.clone(),
                        value: bad.to_string(),
                    });
                }
            }
            (FieldKind::Integer { min, max }, Some(v)) => {
                let trimmed = v.trim();
                match trimmed.parse::<i64>() {
                    Ok(n) if (*min..=*max).contains(&n) => values.set(f.var.clone(), n.to_string()),
                    _ => {
                        return Err(FormError::NotANumber {
                            var: f.var.clone(),
                            value: v,
                            min: *min,
                            max: *max,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(values)
}

/// The values of a single-field lookup in a submitted form.
pub fn value_of(x: &Element, var: &str) -> Option<String> {
    x.children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .find(|f| f.attr("var") == Some(var))
        .map(|f| {
            f.children()
                .filter(|c| c.is("value", ns::DATA_FORMS))
                .map(|v| v.text())
                .collect::<Vec<_>>()
                .join("\n")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_result_table_reads_as_text() {
        let rows = vec![
            vec!["clients".to_string(), "3".to_string()],
            vec!["component link".to_string(), "Up".to_string()],
        ];
        let table = result_table("Statistics", &[("name", "Name"), ("value", "Value")], &rows);
        assert_eq!(
            table_text(&table).as_deref(),
            Some("clients: 3\ncomponent link: Up")
        );
        let empty = result_table("Nothing", &[("name", "Name")], &[]);
        assert_eq!(table_text(&empty), None);
    }

    use super::*;

    fn fields() -> Vec<FormField> {
        vec![
            FormField::text("username", "Username").required(),
            FormField::secret("password", "Password").required(),
            FormField::boolean("tls", "Use TLS"),
        ]
    }

    #[test]
    fn form_hides_secrets_and_marks_required() {
        let mut cur = FormValues::default();
        cur.set("username", "bob");
        cur.set("password", "hunter2");
        let x = form("t", "i", &fields(), Some(&cur));
        let xml = String::from(&x);
        assert!(xml.contains("bob"));
        assert!(!xml.contains("hunter2"), "{xml}");
        assert!(xml.contains("text-private"));
        assert!(xml.contains("<required/>"), "{xml}");
    }

    #[test]
    fn submitted_form_is_read_and_checked() {
        let x: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE'><value>jabber:iq:register</value></field>\
            <field var='username'><value>bob</value></field>\
            <field var='password'><value>pw</value></field>\
            <field var='tls'><value>true</value></field></x>"
            .parse()
            .unwrap();
        let v = read_submitted(&x, &fields()).unwrap();
        assert_eq!(v.get("username"), Some("bob"));
        assert_eq!(v.get_bool("tls"), Some(true));
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let x: Element = "<x xmlns='jabber:x:data' type='submit'><field var='username'><value>bob</value></field></x>"
            .parse()
            .unwrap();
        assert_eq!(
            read_submitted(&x, &fields()).unwrap_err(),
            FormError::Missing("password".into())
        );
    }

    #[test]
    fn bad_boolean_and_wrong_type_are_errors() {
        let x: Element = "<x xmlns='jabber:x:data' type='submit'><field var='username'><value>b</value></field>\
            <field var='password'><value>p</value></field><field var='tls'><value>maybe</value></field></x>"
            .parse()
            .unwrap();
        assert!(matches!(
            read_submitted(&x, &fields()),
            Err(FormError::BadValue { .. })
        ));
        let x: Element = "<x xmlns='jabber:x:data' type='form'/>".parse().unwrap();
        assert_eq!(
            read_submitted(&x, &fields()).unwrap_err(),
            FormError::NotSubmit("form".into())
        );
    }

    fn numbers_and_lists() -> Vec<FormField> {
        vec![
            FormField::integer("limit", "Limit", 1, 100),
            FormField {
                kind: FieldKind::MultiChoice(vec![
                    ("a".into(), "A".into()),
                    ("b".into(), "B".into()),
                ]),
                ..FormField::text("servers", "Servers")
            },
            FormField::boolean("on", "On").default_value("1"),
        ]
    }

    #[test]
    fn whole_numbers_and_several_choices_are_checked_naming_the_field() {
        let submit = |inner: &str| -> Element {
            format!("<x xmlns='jabber:x:data' type='submit'>{inner}</x>")
                .parse()
                .unwrap()
        };
        let ok = read_submitted(
            &submit("<field var='limit'><value> 42 </value></field><field var='servers'><value>a</value><value>b</value></field>"),
            &numbers_and_lists(),
        )
        .unwrap();
        assert_eq!(ok.get("limit"), Some("42"));
        assert_eq!(ok.get("servers"), Some("a\nb"));
        for bad in ["bleh", "0", "101", "1.5"] {
            let e = read_submitted(
                &submit(&format!("<field var='limit'><value>{bad}</value></field>")),
                &numbers_and_lists(),
            )
            .unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("'limit'") && text.contains("1 to 100"),
                "{text}"
            );
        }
        let e = read_submitted(
            &submit("<field var='servers'><value>a</value><value>c</value></field>"),
            &numbers_and_lists(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            FormError::BadValue {
                var: "servers".into(),
                value: "c".into()
            }
        );
    }

    #[test]
    fn booleans_show_as_true_and_false_and_lists_as_options() {
        let mut current = FormValues::default();
        current.set("servers", "a\nb");
        let x = form("t", "i", &numbers_and_lists(), Some(&current));
        let xml = String::from(&x);
        assert!(
            xml.contains("type='list-multi'") || xml.contains("type=\"list-multi\""),
            "{xml}"
        );
        let on = x.children().find(|f| f.attr("var") == Some("on")).unwrap();
        assert_eq!(
            on.get_child("value", ns::DATA_FORMS).unwrap().text(),
            "true"
        );
        let servers = x
            .children()
            .find(|f| f.attr("var") == Some("servers"))
            .unwrap();
        let values: Vec<String> = servers
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        assert_eq!(values, ["a", "b"]);
    }
}
