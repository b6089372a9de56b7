//! Registration and configuration forms, described without XEP-0004 XML.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kind of a form field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// A secret: sealed at rest, never logged, shown masked in clients.
    Secret,
    /// A yes/no choice.
    Boolean,
    /// One of a fixed set of values: `(value, label)`.
    Choice(Vec<(String, String)>),
    /// Several lines of text (values joined with `\n`).
    Multiline,
    /// A whole number from `min` to `max` (inclusive), shown as one line of text; the core
    /// refuses anything else, naming the field.
    Integer {
        /// The smallest value taken.
        min: i64,
        /// The largest value taken.
        max: i64,
    },
    /// Any number of a fixed set of values (`list-multi`), joined with `\n`: `(value, label)`.
    MultiChoice(Vec<(String, String)>),
}

/// A field of a registration or configuration form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormField {
    /// The field's name (`var`), stable across versions.
    pub var: String,
    /// A human label.
    pub label: String,
    /// What kind of value it takes.
    pub kind: FieldKind,
    /// Whether a value must be given.
    pub required: bool,
    /// A longer description, shown as help.
    pub description: Option<String>,
    /// The value used when none is given.
    pub default: Option<String>,
}

impl FormField {
    /// A text field.
    pub fn text(var: &str, label: &str) -> Self {
        Self {
            var: var.into(),
            label: label.into(),
            kind: FieldKind::Text,
            required: false,
            description: None,
            default: None,
        }
    }
    /// A secret field (sealed at rest).
    pub fn secret(var: &str, label: &str) -> Self {
        Self {
            kind: FieldKind::Secret,
            ..Self::text(var, label)
        }
    }
    /// A boolean field.
    pub fn boolean(var: &str, label: &str) -> Self {
        Self {
            kind: FieldKind::Boolean,
            ..Self::text(var, label)
        }
    }
    /// A whole-number field taking `min..=max`.
    pub fn integer(var: &str, label: &str, min: i64, max: i64) -> Self {
        Self {
            kind: FieldKind::Integer { min, max },
            ..Self::text(var, label)
        }
    }
    /// A several-lines field.
    pub fn multiline(var: &str, label: &str) -> Self {
        Self {
            kind: FieldKind::Multiline,
            ..Self::text(var, label)
        }
    }
    /// Marks the field as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Sets a description.
    pub fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.into());
        self
    }
    /// Sets a default value.
    pub fn default_value(mut self, value: &str) -> Self {
        self.default = Some(value.into());
        self
    }
    /// Whether the field holds a secret.
    pub fn is_secret(&self) -> bool {
        self.kind == FieldKind::Secret
    }
}

/// Values submitted for a form, by field name.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FormValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for FormValues {
    /// Values are never printed: any of them may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl FormValues {
    /// The value of a field, if given and not empty.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    /// A boolean field's value (`1`/`true` are true).
    pub fn get_bool(&self, var: &str) -> Option<bool> {
        self.get(var)
            .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
    /// Sets a value.
    pub fn set(&mut self, var: impl Into<String>, value: impl Into<String>) {
        self.0.insert(var.into(), value.into());
    }
}
