//! Turning an incoming request body into message text, with XEP-0393 styling.
//!
//! Pure functions, no I/O: [`Payload::decode`] reads the body by its content type,
//! [`RequestMeta::from_headers`] picks out what the sender said about itself, and
//! [`render`] chooses a formatter by the hook's [`PayloadFormat`]:
//!
//! * `auto`: a forge event when a forge header (`X-GitHub-Event`, `X-Gitea-Event`,
//!   `X-Forgejo-Event`, `X-Gitlab-Event`) is present; else an Alertmanager group when the
//!   payload has its shape; else `{"text"|"body"|"message": …}` or a text body; else a forge
//!   event recognised by payload shape alone; else the hook's template; else
//!   [`FormatError::Unrecognised`].
//! * `text`, `forgejo`/`github`/`gitlab`, `alertmanager`, `template`: that formatter only.
//!
//! Output is plain text: `*bold*`, `_italic_`, `` `code` ``, `> quote` and bare URLs.

pub mod alertmanager;
pub mod forge;
pub mod plain;
pub mod template;

use crate::config::{HookConfig, PayloadFormat};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// Why a payload could not be turned into a message; becomes a 400 with this text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The body claimed (or looked) to be JSON and did not parse.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The form-encoded body did not parse.
    #[error("malformed form body: {0}")]
    Form(String),
    /// The body is not UTF-8 text.
    #[error("the body is not UTF-8 text")]
    NotUtf8,
    /// The formatter chosen by the hook's `format` does not fit the payload.
    #[error("not a {expected} payload: {why}")]
    WrongShape {
        /// What the hook expects (`forge`, `Alertmanager`, `text`).
        expected: &'static str,
        /// What is missing.
        why: String,
    },
    /// Nothing recognised the payload and the hook has no template.
    #[error(
        "cannot tell what this payload is: send {{\"text\": \"...\"}} or a text/plain body, \
         or give the hook a `format` or a `template`"
    )]
    Unrecognised,
    /// The template failed while rendering.
    #[error("template error: {0}")]
    Template(String),
    /// The result was empty.
    #[error("the payload produced an empty message")]
    Empty,
}

/// A decoded request body.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// JSON, or a form turned into a JSON object of strings.
    Json(Value),
    /// A text body.
    Text(String),
}

impl Payload {
    /// Decodes `body` by its `Content-Type`.
    ///
    /// `application/json` (and `+json`) parses as JSON. A form body that is itself a JSON
    /// object or array is that JSON (`curl -d '{"text": …}'` sends JSON as a form); any
    /// other form body becomes an object of strings, except that a single `payload` field
    /// holding JSON (GitHub's form mode) is parsed as that JSON. `text/*` is text. Without a content type a body that starts
    /// with `{` or `[` is taken as JSON, anything else as text.
    pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Self, FormatError> {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        let text = || std::str::from_utf8(body).map_err(|_| FormatError::NotUtf8);
        let json = || {
            serde_json::from_slice::<Value>(body)
                .map(Payload::Json)
                .map_err(|e| FormatError::Json(e.to_string()))
        };
        match mime.as_deref() {
            Some("application/json") => json(),
            Some(m) if m.ends_with("+json") => json(),
            Some("application/x-www-form-urlencoded") => decode_form(body),
            Some(m) if m.starts_with("text/") => Ok(Payload::Text(text()?.to_owned())),
            _ => {
                let t = text()?;
                let start = t.trim_start();
                if start.starts_with('{') || start.starts_with('[') {
                    json()
                } else {
                    Ok(Payload::Text(t.to_owned()))
                }
            }
        }
    }

    /// The JSON value, if the payload is JSON.
    pub fn json(&self) -> Option<&Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Text(_) => None,
        }
    }
}

fn decode_form(body: &[u8]) -> Result<Payload, FormatError> {
    if let Some(json) = json_body(body) {
        return Ok(Payload::Json(json));
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| FormatError::Form(e.to_string()))?;
    if let [(key, value)] = pairs.as_slice()
        && key == "payload"
        && let Ok(v) = serde_json::from_str::<Value>(value)
    {
        return Ok(Payload::Json(v));
    }
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k, Value::String(v));
    }
    Ok(Payload::Json(Value::Object(map)))
}

/// The body as JSON when it is a JSON object or array, whatever the content type said.
fn json_body(body: &[u8]) -> Option<Value> {
    let start = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *start != b'{' && *start != b'[' {
        return None;
    }
    serde_json::from_slice::<Value>(body).ok()
}

/// How many bytes of the body a rejection shows.
const SHOWN_BYTES: usize = 64;

/// The text of a 400 for `error`, saying what was received: the content type and the
/// first bytes of the body (control characters escaped), so the sender can see what its
/// client really sent (`curl -d` sends a form, not JSON).
pub fn rejection_text(error: &FormatError, content_type: Option<&str>, body: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BYTES)]);
    let shown: String = shown.chars().flat_map(char::escape_debug).collect();
    let more = if body.len() > SHOWN_BYTES { "…" } else { "" };
    format!(
        "{error} (received Content-Type: {}, {} bytes: {shown}{more})",
        content_type.unwrap_or("none"),
        body.len()
    )
}

/// Which forge sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forge {
    /// GitHub.
    Github,
    /// Gitea or Forgejo (their payloads follow GitHub's shapes closely).
    Gitea,
    /// GitLab.
    Gitlab,
}

/// What the request's headers say about its sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The forge, from its event header.
    pub forge: Option<Forge>,
    /// The event name as the forge sent it (`push`, `pull_request`, `Merge Request Hook`).
    pub event: Option<String>,
    /// The sender's delivery id (`X-GitHub-Delivery`, `X-Gitea-Delivery`,
    /// `X-Forgejo-Delivery`, `X-Gitlab-Event-UUID`), the same on a redelivery.
    pub delivery: Option<String>,
}

impl RequestMeta {
    /// Reads the forge headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (forge, event) = if let Some(e) = get("x-github-event") {
            (Some(Forge::Github), Some(e))
        } else if let Some(e) = get("x-forgejo-event").or_else(|| get("x-gitea-event")) {
            (Some(Forge::Gitea), Some(e))
        } else if let Some(e) = get("x-gitlab-event") {
            (Some(Forge::Gitlab), Some(e))
        } else {
            (None, None)
        };
        let delivery = get("x-github-delivery")
            .or_else(|| get("x-forgejo-delivery"))
            .or_else(|| get("x-gitea-delivery"))
            .or_else(|| get("x-gitlab-event-uuid"));
        Self {
            forge,
            event,
            delivery,
        }
    }
}

/// Formats a payload for a hook, as its `format` says.
pub fn render(
    hook: &HookConfig,
    meta: &RequestMeta,
    payload: &Payload,
) -> Result<String, FormatError> {
    let event = meta.event.as_deref();
    let text = match hook.format {
        PayloadFormat::Auto => render_auto(hook, meta, payload)?,
        PayloadFormat::Text => plain::format(payload).ok_or_else(|| FormatError::WrongShape {
            expected: "text",
            why: "expected a text body or a JSON object with a \"text\", \"body\" or \
                  \"message\" string"
                .into(),
        })?,
        PayloadFormat::Forgejo => forge::format(Forge::Gitea, event, json_of(payload, "forge")?)?,
        PayloadFormat::Github => forge::format(Forge::Github, event, json_of(payload, "forge")?)?,
        PayloadFormat::Gitlab => forge::format(Forge::Gitlab, event, json_of(payload, "forge")?)?,
        PayloadFormat::Alertmanager => alertmanager::format(json_of(payload, "Alertmanager")?)?,
        PayloadFormat::Template => match &hook.template {
            Some(t) => t.render(&hook.name, event, payload)?,
            None => return Err(FormatError::Unrecognised),
        },
    };
    if text.trim().is_empty() {
        return Err(FormatError::Empty);
    }
    Ok(text)
}

fn render_auto(
    hook: &HookConfig,
    meta: &RequestMeta,
    payload: &Payload,
) -> Result<String, FormatError> {
    if let (Some(forge), Some(json)) = (meta.forge, payload.json()) {
        return forge::format(forge, meta.event.as_deref(), json);
    }
    if let Some(json) = payload.json()
        && alertmanager::looks_like(json)
    {
        return alertmanager::format(json);
    }
    if let Some(text) = plain::format(payload) {
        return Ok(text);
    }
    if let Some(json) = payload.json()
        && let Some(forge) = forge::detect(json)
    {
        return forge::format(forge, None, json);
    }
    match &hook.template {
        Some(t) => t.render(&hook.name, meta.event.as_deref(), payload),
        None => Err(FormatError::Unrecognised),
    }
}

fn json_of<'p>(payload: &'p Payload, expected: &'static str) -> Result<&'p Value, FormatError> {
    payload.json().ok_or_else(|| FormatError::WrongShape {
        expected,
        why: "the body is text, not JSON".into(),
    })
}

/// Walks nested objects: `get_str(v, &["repository", "full_name"])`.
pub(crate) fn get_str<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    get(v, path)?.as_str().filter(|s| !s.is_empty())
}

/// Walks nested objects to a value.
pub(crate) fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The first line of a text, trimmed.
pub(crate) fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn decode_by_content_type() {
        assert_eq!(
            Payload::decode(Some("application/json; charset=utf-8"), br#"{"a":1}"#),
            Ok(Payload::Json(json!({"a": 1})))
        );
        let e = Payload::decode(Some("application/json"), b"{\"a\":").unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed JSON: EOF while parsing a value at line 1 column 5"
        );
        assert_eq!(
            Payload::decode(
                Some("application/x-www-form-urlencoded"),
                b"text=build+passed&x=1"
            ),
            Ok(Payload::Json(json!({"text": "build passed", "x": "1"})))
        );
        assert_eq!(
            Payload::decode(
                Some("application/x-www-form-urlencoded"),
                b"payload=%7B%22zen%22%3A%22hi%22%7D"
            ),
            Ok(Payload::Json(json!({"zen": "hi"})))
        );
        assert_eq!(
            Payload::decode(Some("text/plain"), b"{not json}"),
            Ok(Payload::Text("{not json}".into()))
        );
        assert_eq!(
            Payload::decode(None, b"hello"),
            Ok(Payload::Text("hello".into()))
        );
        assert!(matches!(
            Payload::decode(None, b" {x"),
            Err(FormatError::Json(_))
        ));
        assert_eq!(Payload::decode(None, b"\xff"), Err(FormatError::NotUtf8));
    }

    #[test]
    fn a_json_body_sent_as_a_form_is_json() {
        // What `curl -d '{"text":"build passed"}'` sends.
        assert_eq!(
            Payload::decode(
                Some("application/x-www-form-urlencoded"),
                br#"{"text":"build passed"}"#
            ),
            Ok(Payload::Json(json!({"text": "build passed"})))
        );
        assert_eq!(
            Payload::decode(Some("application/x-www-form-urlencoded"), b" [1, 2]\n"),
            Ok(Payload::Json(json!([1, 2])))
        );
        // A form that only starts like JSON is still a form.
        assert_eq!(
            Payload::decode(Some("application/x-www-form-urlencoded"), b"{x=1"),
            Ok(Payload::Json(json!({"{x": "1"})))
        );
    }

    #[test]
    fn rejections_say_what_was_received() {
        let text = rejection_text(
            &FormatError::Unrecognised,
            Some("application/x-www-form-urlencoded"),
            b"a=1\n\x01",
        );
        assert!(
            text.starts_with("cannot tell what this payload is"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "(received Content-Type: application/x-www-form-urlencoded, 5 bytes: a=1\\n\\u{1})"
            ),
            "{text}"
        );
        let long = vec![b'x'; 100];
        let text = rejection_text(&FormatError::Empty, None, &long);
        assert!(
            text.ends_with(&format!(
                "Content-Type: none, 100 bytes: {}…)",
                "x".repeat(64)
            )),
            "{text}"
        );
        // A body cut inside a character is still shown.
        let text = rejection_text(&FormatError::Empty, None, "é".repeat(40).as_bytes());
        assert!(text.contains("80 bytes: "), "{text}");
    }

    #[test]
    fn meta_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-gitea-event", HeaderValue::from_static("push"));
        h.insert("x-forgejo-event", HeaderValue::from_static("push"));
        h.insert("x-gitea-delivery", HeaderValue::from_static("d-1"));
        let m = RequestMeta::from_headers(&h);
        assert_eq!(m.forge, Some(Forge::Gitea));
        assert_eq!(m.event.as_deref(), Some("push"));
        assert_eq!(m.delivery.as_deref(), Some("d-1"));
        assert_eq!(
            RequestMeta::from_headers(&HeaderMap::new()),
            RequestMeta::default()
        );
    }

    #[test]
    fn auto_order_and_fallbacks() {
        let mut hook = HookConfig::new("ci", "t");
        let meta = RequestMeta::default();
        let p = Payload::Json(json!({"text": "build passed"}));
        assert_eq!(render(&hook, &meta, &p).unwrap(), "build passed");
        let unknown = Payload::Json(json!({"foo": 1}));
        assert_eq!(
            render(&hook, &meta, &unknown),
            Err(FormatError::Unrecognised)
        );
        hook.template = Some(template::HookTemplate::compile("foo is {{ foo }}").unwrap());
        assert_eq!(render(&hook, &meta, &unknown).unwrap(), "foo is 1");
        let empty = Payload::Text("  \n".into());
        assert_eq!(render(&hook, &meta, &empty), Err(FormatError::Empty));
        hook.format = PayloadFormat::Alertmanager;
        assert!(matches!(
            render(&hook, &meta, &Payload::Text("x".into())),
            Err(FormatError::WrongShape { .. })
        ));
    }
}
