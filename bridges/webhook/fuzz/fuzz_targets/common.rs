//! What both webhook targets share: one hook per format, and the checks on a rendering.

use estuary_bridge_webhook::format::template::HookTemplate;
use estuary_bridge_webhook::format::{FormatError, Payload, RequestMeta, render};
use estuary_bridge_webhook::{HookConfig, PayloadFormat};

/// The event names the forges send, and one nobody sends.
pub const EVENTS: [&str; 12] = [
    "push",
    "pull_request",
    "issues",
    "issue_comment",
    "release",
    "create",
    "delete",
    "ping",
    "Push Hook",
    "Merge Request Hook",
    "Note Hook",
    "no such event",
];

/// A template that reads the payload's fields, loops and filters (fuel-bounded).
const TEMPLATE: &str = "{{ hook }}/{{ event }}: {{ text }} {% for k in payload %}{{ k }} {% endfor %}\
                        {{ payload.title | upper }} {{ payload.commits | length }}";

/// One hook per format.
pub fn hooks() -> Vec<HookConfig> {
    [
        PayloadFormat::Auto,
        PayloadFormat::Text,
        PayloadFormat::Forgejo,
        PayloadFormat::Github,
        PayloadFormat::Gitlab,
        PayloadFormat::Alertmanager,
        PayloadFormat::Template,
    ]
    .into_iter()
    .map(|format| {
        let mut hook = HookConfig::new(format.as_str(), "t");
        hook.format = format;
        if matches!(format, PayloadFormat::Template | PayloadFormat::Auto) {
            hook.template = Some(HookTemplate::compile(TEMPLATE).expect("the template compiles"));
        }
        hook
    })
    .collect()
}

/// Renders `payload` for every hook and every forge header (and none): no panic, and a
/// message, when there is one, is never blank.
pub fn render_all(hooks: &[HookConfig], payload: &Payload, event: &str) {
    let metas = [
        RequestMeta::default(),
        meta("x-github-event", event),
        meta("x-gitea-event", event),
        meta("x-gitlab-event", event),
    ];
    for hook in hooks {
        for m in &metas {
            match render(hook, m, payload) {
                Ok(text) => assert!(!text.trim().is_empty(), "{:?} rendered blank", hook.format),
                Err(FormatError::Empty) | Err(_) => {}
            }
        }
    }
}

fn meta(header: &'static str, event: &str) -> RequestMeta {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(event) {
        headers.insert(header, v);
    }
    RequestMeta::from_headers(&headers)
}
