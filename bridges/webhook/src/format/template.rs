//! The hook's own template (minijinja) for payloads no built-in formatter knows.
//!
//! The template sees:
//!
//! * `payload`: the decoded body (JSON value, form fields as an object, or the text);
//! * every top-level key of a JSON object body, directly (`{{ repository.name }}`);
//! * `hook`: the hook's name; `event`: the forge event header's value, or `none`.
//!
//! Undefined values print as nothing and can be chained (`{{ a.b.c }}`), so a template
//! survives optional fields. Rendering is bounded (fuel), so a template cannot spin forever.

use super::{FormatError, Payload};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as TplValue};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

const NAME: &str = "hook";
/// Enough for loops over a few thousand items; stops runaway templates.
const FUEL: u64 = 200_000;

/// A compiled template.
#[derive(Clone)]
pub struct HookTemplate {
    env: Arc<Environment<'static>>,
    source: String,
}

impl fmt::Debug for HookTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HookTemplate").field(&self.source).finish()
    }
}

impl HookTemplate {
    /// Compiles a template; the error says where the syntax is wrong.
    pub fn compile(source: &str) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_template_owned(NAME, source.to_owned())?;
        Ok(Self {
            env: Arc::new(env),
            source: source.to_owned(),
        })
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template for one request.
    pub fn render(
        &self,
        hook: &str,
        event: Option<&str>,
        payload: &Payload,
    ) -> Result<String, FormatError> {
        let mut ctx = Map::new();
        let payload_value = match payload {
            Payload::Json(v) => {
                if let Value::Object(obj) = v {
                    ctx.extend(obj.clone());
                }
                v.clone()
            }
            Payload::Text(t) => Value::String(t.clone()),
        };
        ctx.insert("payload".into(), payload_value);
        ctx.insert("hook".into(), Value::String(hook.to_owned()));
        ctx.insert(
            "event".into(),
            event.map_or(Value::Null, |e| Value::String(e.to_owned())),
        );
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| FormatError::Template(e.to_string()))?;
        template
            .render(TplValue::from(Serde(&Value::Object(ctx))))
            .map(|s| s.trim().to_owned())
            .map_err(|e| FormatError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_payload_and_top_level_keys() {
        let t = HookTemplate::compile(
            "*{{ service }}* is {{ payload.state | upper }}{% if missing.deep %}!{% endif %} ({{ hook }}/{{ event }})",
        )
        .unwrap();
        let p = Payload::Json(json!({"service": "db", "state": "down"}));
        assert_eq!(
            t.render("mon", Some("x"), &p).unwrap(),
            "*db* is DOWN (mon/x)"
        );
        let text = HookTemplate::compile("got: {{ payload }}").unwrap();
        assert_eq!(
            text.render("mon", None, &Payload::Text("hi".into()))
                .unwrap(),
            "got: hi"
        );
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        assert!(HookTemplate::compile("{% for x in %}").is_err());
        let t = HookTemplate::compile("{{ 1 / 0 }}").unwrap();
        assert!(matches!(
            t.render("h", None, &Payload::Text(String::new())),
            Err(FormatError::Template(_))
        ));
        let spin = HookTemplate::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(matches!(
            spin.render("h", None, &Payload::Text(String::new())),
            Err(FormatError::Template(_))
        ));
    }
}
