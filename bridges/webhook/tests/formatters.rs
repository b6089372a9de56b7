//! Formatter fixtures: realistic payloads in tests/fixtures/*.json, formatted as a hook
//! would, compared with the expected text in the `.txt` of the same name.
//!
//! After a deliberate change to a formatter, review the new texts and refresh them with
//! `UPDATE_FIXTURES=1 cargo test -p estuary-bridge-webhook --test formatters`.

use estuary_bridge_webhook::format::{Forge, Payload, RequestMeta, render};
use estuary_bridge_webhook::{HookConfig, PayloadFormat};

fn dir() -> String {
    format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

fn check(name: &str, hook: &HookConfig, forge: Option<Forge>, event: Option<&str>) {
    let json = std::fs::read(format!("{}/{name}.json", dir())).expect("fixture");
    let meta = RequestMeta {
        forge,
        event: event.map(str::to_owned),
        delivery: None,
    };
    let payload = Payload::decode(Some("application/json"), &json).expect("fixture parses");
    let got = render(hook, &meta, &payload).expect("fixture formats");
    let expected_path = format!("{}/{name}.txt", dir());
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&expected_path, format!("{got}\n")).expect("write fixture");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).expect("expected text");
    assert_eq!(got, expected.trim_end_matches('\n'), "fixture {name}");
}

fn auto() -> HookConfig {
    HookConfig::new("ci", "t")
}

fn with_format(format: PayloadFormat) -> HookConfig {
    let mut h = auto();
    h.format = format;
    h
}

#[test]
fn github_events_by_header() {
    check("github_push", &auto(), Some(Forge::Github), Some("push"));
    check(
        "github_pull_request",
        &auto(),
        Some(Forge::Github),
        Some("pull_request"),
    );
    check(
        "github_issue_comment",
        &auto(),
        Some(Forge::Github),
        Some("issue_comment"),
    );
}

#[test]
fn forgejo_events_by_header() {
    check("forgejo_push", &auto(), Some(Forge::Gitea), Some("push"));
    check(
        "forgejo_issues",
        &auto(),
        Some(Forge::Gitea),
        Some("issues"),
    );
    check(
        "forgejo_release",
        &auto(),
        Some(Forge::Gitea),
        Some("release"),
    );
}

#[test]
fn gitlab_events_by_header() {
    check(
        "gitlab_push",
        &auto(),
        Some(Forge::Gitlab),
        Some("Push Hook"),
    );
    check(
        "gitlab_merge_request",
        &auto(),
        Some(Forge::Gitlab),
        Some("Merge Request Hook"),
    );
}

#[test]
fn forge_events_without_headers() {
    // Same expected texts: the event is inferred from the payload's shape.
    check("github_push", &auto(), None, None);
    check(
        "github_pull_request",
        &with_format(PayloadFormat::Github),
        None,
        None,
    );
    check(
        "forgejo_release",
        &with_format(PayloadFormat::Forgejo),
        None,
        None,
    );
    check("forgejo_issues", &auto(), None, None);
    check("gitlab_push", &auto(), None, None);
    check(
        "gitlab_merge_request",
        &with_format(PayloadFormat::Gitlab),
        None,
        None,
    );
}

#[test]
fn alertmanager_groups() {
    check("alertmanager_firing", &auto(), None, None);
    check(
        "alertmanager_resolved",
        &with_format(PayloadFormat::Alertmanager),
        None,
        None,
    );
}
