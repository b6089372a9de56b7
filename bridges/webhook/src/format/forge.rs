//! Forge events: GitHub, Gitea/Forgejo (same shapes as GitHub, a few fields renamed) and
//! GitLab.
//!
//! Known events: push (and tag push, branch create/delete), pull/merge request, issue,
//! issue/MR comment, release, ping, GitLab pipeline. Any other event still gives a one-line
//! summary naming the event, so a forge hook never fails on a new event type.
//!
//! The event comes from the forge's header; without it, it is inferred from the payload
//! shape (GitLab's `object_kind`, or which objects a GitHub-style payload holds).

use super::{Forge, FormatError, first_line, get_str};
use serde_json::Value;
use std::fmt::Write as _;

/// Commits listed in a push; more are counted.
const MAX_COMMITS: usize = 5;
/// Lines of a comment quoted.
const MAX_COMMENT_LINES: usize = 3;
/// An all-zero commit id: the "before" of a new ref or the "after" of a deleted one.
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Recognises a forge payload without headers: GitLab by `object_kind`, GitHub-style by a
/// `repository` together with what the event is about.
pub fn detect(p: &Value) -> Option<Forge> {
    if p.get("object_kind").and_then(Value::as_str).is_some() && p.get("project").is_some() {
        return Some(Forge::Gitlab);
    }
    let about = ["commits", "pull_request", "issue", "release", "zen"];
    if p.get("repository").is_some_and(Value::is_object) && about.iter().any(|k| p.get(k).is_some())
    {
        return Some(Forge::Github);
    }
    None
}

/// Formats a forge event. `event` is the forge's event header, if any.
pub fn format(forge: Forge, event: Option<&str>, p: &Value) -> Result<String, FormatError> {
    if !p.is_object() {
        return Err(FormatError::WrongShape {
            expected: "forge",
            why: "the payload is not a JSON object".into(),
        });
    }
    Ok(match forge {
        Forge::Github | Forge::Gitea => github_like(event, p),
        Forge::Gitlab => gitlab(event, p),
    })
}

// ---------------------------------------------------------------- GitHub, Gitea, Forgejo

fn github_like(event: Option<&str>, p: &Value) -> String {
    let event = event
        .map(str::to_owned)
        .unwrap_or_else(|| infer_github_event(p).to_owned());
    let repo = get_str(p, &["repository", "full_name"])
        .or_else(|| get_str(p, &["repository", "name"]))
        .unwrap_or("repository");
    let actor = get_str(p, &["sender", "login"])
        .or_else(|| get_str(p, &["sender", "username"]))
        .or_else(|| get_str(p, &["pusher", "login"]))
        .or_else(|| get_str(p, &["pusher", "username"]))
        .or_else(|| get_str(p, &["pusher", "name"]))
        .unwrap_or("someone");
    let action = get_str(p, &["action"]).unwrap_or("");
    let mut out = format!("*{repo}*: ");
    match event.as_str() {
        "push" => github_push(&mut out, actor, p),
        "pull_request" => {
            let pr = p.get("pull_request").unwrap_or(&Value::Null);
            let merged = pr.get("merged").and_then(Value::as_bool).unwrap_or(false);
            let number = number(p.get("number").or_else(|| pr.get("number")));
            let _ = write!(
                out,
                "{actor} {} pull request #{number}: _{}_",
                verb(action, merged),
                get_str(pr, &["title"]).unwrap_or("(untitled)")
            );
            if let (Some(head), Some(base)) =
                (get_str(pr, &["head", "ref"]), get_str(pr, &["base", "ref"]))
                && action == "opened"
            {
                let _ = write!(out, " (`{head}` → `{base}`)");
            }
            push_url(&mut out, get_str(pr, &["html_url"]));
        }
        "issues" => {
            let issue = p.get("issue").unwrap_or(&Value::Null);
            let _ = write!(
                out,
                "{actor} {} issue #{}: _{}_",
                verb(action, false),
                number(issue.get("number")),
                get_str(issue, &["title"]).unwrap_or("(untitled)")
            );
            push_url(&mut out, get_str(issue, &["html_url"]));
        }
        "issue_comment" => {
            let issue = p.get("issue").unwrap_or(&Value::Null);
            let what = if issue.get("pull_request").is_some_and(|v| !v.is_null()) {
                "pull request"
            } else {
                "issue"
            };
            let verb = match action {
                "created" | "" => "commented on",
                "edited" => "edited a comment on",
                "deleted" => "deleted a comment on",
                other => other,
            };
            let _ = write!(
                out,
                "{actor} {verb} {what} #{}: _{}_",
                number(issue.get("number")),
                get_str(issue, &["title"]).unwrap_or("(untitled)")
            );
            if action != "deleted" {
                quote(&mut out, get_str(p, &["comment", "body"]).unwrap_or(""));
            }
            push_url(
                &mut out,
                get_str(p, &["comment", "html_url"]).or_else(|| get_str(issue, &["html_url"])),
            );
        }
        "release" => {
            let rel = p.get("release").unwrap_or(&Value::Null);
            let tag = get_str(rel, &["tag_name"]).unwrap_or("?");
            let pre = rel.get("prerelease").and_then(Value::as_bool) == Some(true);
            let _ = write!(
                out,
                "{actor} {} {}release *{tag}*",
                verb(
                    if action.is_empty() {
                        "published"
                    } else {
                        action
                    },
                    false
                ),
                if pre { "pre-" } else { "" }
            );
            if let Some(name) = get_str(rel, &["name"]).filter(|n| *n != tag) {
                let _ = write!(out, ": _{name}_");
            }
            push_url(&mut out, get_str(rel, &["html_url"]));
        }
        "create" | "delete" => {
            let _ = write!(
                out,
                "{actor} {}d {} `{}`",
                event,
                get_str(p, &["ref_type"]).unwrap_or("ref"),
                get_str(p, &["ref"]).map(short_ref).unwrap_or("?")
            );
        }
        "ping" => {
            out.push_str("the webhook is set up");
            if let Some(zen) = get_str(p, &["zen"]) {
                let _ = write!(out, ": _{zen}_");
            }
        }
        other => {
            let _ = write!(out, "{actor} sent `{other}`");
            if !action.is_empty() {
                let _ = write!(out, " ({action})");
            }
            push_url(&mut out, get_str(p, &["repository", "html_url"]));
        }
    }
    out
}

fn infer_github_event(p: &Value) -> &'static str {
    if p.get("pull_request").is_some() {
        "pull_request"
    } else if p.get("issue").is_some() && p.get("comment").is_some() {
        "issue_comment"
    } else if p.get("issue").is_some() {
        "issues"
    } else if p.get("release").is_some() {
        "release"
    } else if p.get("zen").is_some() {
        "ping"
    } else if p.get("commits").is_some() || (p.get("ref").is_some() && p.get("before").is_some()) {
        "push"
    } else {
        "event"
    }
}

fn github_push(out: &mut String, actor: &str, p: &Value) {
    let git_ref = get_str(p, &["ref"]).unwrap_or("");
    let is_tag = git_ref.starts_with("refs/tags/");
    let name = short_ref(git_ref);
    let what = if is_tag { "tag" } else { "branch" };
    let deleted = p.get("deleted").and_then(Value::as_bool) == Some(true)
        || get_str(p, &["after"]) == Some(ZERO_SHA);
    let created = p.get("created").and_then(Value::as_bool) == Some(true)
        || get_str(p, &["before"]) == Some(ZERO_SHA);
    let commits = p
        .get("commits")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let total = p
        .get("total_commits")
        .and_then(Value::as_u64)
        .map_or(commits.len(), |n| n as usize);
    if deleted {
        let _ = write!(out, "{actor} deleted {what} `{name}`");
        return;
    }
    if is_tag || (created && total == 0) {
        let _ = write!(
            out,
            "{actor} {} {what} `{name}`",
            if is_tag { "pushed" } else { "created" }
        );
    } else {
        let _ = write!(
            out,
            "{actor} pushed {} to `{name}`",
            plural(total, "commit")
        );
        if p.get("forced").and_then(Value::as_bool) == Some(true) {
            out.push_str(" (forced)");
        }
    }
    list_commits(out, commits, total, |c| {
        get_str(c, &["author", "name"]).or_else(|| get_str(c, &["author", "username"]))
    });
    push_url(
        out,
        get_str(p, &["compare"])
            .or_else(|| get_str(p, &["compare_url"]))
            .or_else(|| get_str(p, &["head_commit", "url"])),
    );
}

// ---------------------------------------------------------------- GitLab

fn gitlab(event: Option<&str>, p: &Value) -> String {
    let kind = get_str(p, &["object_kind"])
        .or_else(|| get_str(p, &["event_name"]))
        .map(str::to_owned)
        .unwrap_or_else(|| gitlab_kind_from_header(event.unwrap_or("")));
    let repo = get_str(p, &["project", "path_with_namespace"])
        .or_else(|| get_str(p, &["project", "name"]))
        .unwrap_or("project");
    let actor = get_str(p, &["user", "username"])
        .or_else(|| get_str(p, &["user_username"]))
        .or_else(|| get_str(p, &["user", "name"]))
        .or_else(|| get_str(p, &["user_name"]))
        .unwrap_or("someone");
    let attrs = p.get("object_attributes").unwrap_or(&Value::Null);
    let mut out = format!("*{repo}*: ");
    match kind.as_str() {
        "push" | "tag_push" => gitlab_push(&mut out, actor, &kind, p),
        "merge_request" => {
            let action = get_str(attrs, &["action"]).unwrap_or("");
            let _ = write!(
                out,
                "{actor} {} merge request !{}: _{}_",
                verb(action, false),
                number(attrs.get("iid")),
                get_str(attrs, &["title"]).unwrap_or("(untitled)")
            );
            if let (Some(src), Some(dst), "open") = (
                get_str(attrs, &["source_branch"]),
                get_str(attrs, &["target_branch"]),
                action,
            ) {
                let _ = write!(out, " (`{src}` → `{dst}`)");
            }
            push_url(&mut out, get_str(attrs, &["url"]));
        }
        "issue" | "work_item" => {
            let _ = write!(
                out,
                "{actor} {} issue #{}: _{}_",
                verb(get_str(attrs, &["action"]).unwrap_or(""), false),
                number(attrs.get("iid")),
                get_str(attrs, &["title"]).unwrap_or("(untitled)")
            );
            push_url(&mut out, get_str(attrs, &["url"]));
        }
        "note" => {
            let (what, target) = if let Some(mr) = p.get("merge_request") {
                (format!("merge request !{}", number(mr.get("iid"))), mr)
            } else if let Some(issue) = p.get("issue") {
                (format!("issue #{}", number(issue.get("iid"))), issue)
            } else if let Some(c) = p.get("commit") {
                let id = get_str(c, &["id"]).unwrap_or("?");
                (format!("commit `{}`", short_sha(id)), &Value::Null)
            } else {
                ("something".to_owned(), &Value::Null)
            };
            let _ = write!(out, "{actor} commented on {what}");
            if let Some(title) = get_str(target, &["title"]) {
                let _ = write!(out, ": _{title}_");
            }
            quote(&mut out, get_str(attrs, &["note"]).unwrap_or(""));
            push_url(&mut out, get_str(attrs, &["url"]));
        }
        "release" => {
            let action = get_str(p, &["action"]).unwrap_or("create");
            let tag = get_str(p, &["tag"]).unwrap_or("?");
            let verb = match action {
                "create" => "published",
                other => verb(other, false),
            };
            let _ = write!(out, "{actor} {verb} release *{tag}*");
            if let Some(name) = get_str(p, &["name"]).filter(|n| *n != tag) {
                let _ = write!(out, ": _{name}_");
            }
            push_url(&mut out, get_str(p, &["url"]));
        }
        "pipeline" => {
            let status = get_str(attrs, &["status"]).unwrap_or("unknown");
            let _ = write!(
                out,
                "pipeline #{} for `{}` *{status}*",
                number(attrs.get("id")),
                get_str(attrs, &["ref"]).unwrap_or("?")
            );
            push_url(&mut out, get_str(attrs, &["url"]));
        }
        other => {
            let _ = write!(out, "{actor} sent `{other}`");
            push_url(&mut out, get_str(p, &["project", "web_url"]));
        }
    }
    out
}

fn gitlab_kind_from_header(header: &str) -> String {
    match header {
        "Push Hook" => "push",
        "Tag Push Hook" => "tag_push",
        "Merge Request Hook" => "merge_request",
        "Issue Hook" | "Confidential Issue Hook" => "issue",
        "Note Hook" | "Confidential Note Hook" => "note",
        "Release Hook" => "release",
        "Pipeline Hook" => "pipeline",
        "" => "event",
        other => other,
    }
    .to_owned()
}

fn gitlab_push(out: &mut String, actor: &str, kind: &str, p: &Value) {
    let git_ref = get_str(p, &["ref"]).unwrap_or("");
    let name = short_ref(git_ref);
    let is_tag = kind == "tag_push" || git_ref.starts_with("refs/tags/");
    let what = if is_tag { "tag" } else { "branch" };
    let commits = p
        .get("commits")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let total = p
        .get("total_commits_count")
        .and_then(Value::as_u64)
        .map_or(commits.len(), |n| n as usize);
    if get_str(p, &["after"]) == Some(ZERO_SHA) {
        let _ = write!(out, "{actor} deleted {what} `{name}`");
        return;
    }
    if is_tag {
        let _ = write!(out, "{actor} pushed tag `{name}`");
    } else if get_str(p, &["before"]) == Some(ZERO_SHA) && total == 0 {
        let _ = write!(out, "{actor} created branch `{name}`");
    } else {
        let _ = write!(
            out,
            "{actor} pushed {} to `{name}`",
            plural(total, "commit")
        );
    }
    list_commits(out, commits, total, |c| get_str(c, &["author", "name"]));
    let url = match commits {
        [only] => get_str(only, &["url"]).map(str::to_owned),
        _ => match (
            get_str(p, &["project", "web_url"]),
            get_str(p, &["before"]),
            get_str(p, &["after"]),
        ) {
            (Some(web), Some(before), Some(after)) if before != ZERO_SHA && !is_tag => {
                Some(format!("{web}/-/compare/{before}...{after}"))
            }
            (web, ..) => web.map(str::to_owned),
        },
    };
    push_url(out, url.as_deref());
}

// ---------------------------------------------------------------- shared bits

fn list_commits<'v>(
    out: &mut String,
    commits: &'v [Value],
    total: usize,
    author: impl Fn(&'v Value) -> Option<&'v str>,
) {
    // GitHub lists commits oldest first; show the most recent ones.
    let shown = &commits[commits.len().saturating_sub(MAX_COMMITS)..];
    for c in shown {
        let id = get_str(c, &["id"]).unwrap_or("?");
        let msg = get_str(c, &["message"])
            .or_else(|| get_str(c, &["title"]))
            .map(first_line)
            .unwrap_or("");
        let _ = write!(out, "\n• `{}` {msg}", short_sha(id));
        if let Some(a) = author(c) {
            let _ = write!(out, " ({a})");
        }
    }
    let hidden = total.saturating_sub(shown.len());
    if hidden > 0 {
        let _ = write!(out, "\n• … and {}", plural(hidden, "more commit"));
    }
}

fn quote(out: &mut String, text: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for l in lines.iter().take(MAX_COMMENT_LINES) {
        let _ = write!(out, "\n> {}", l.trim_end());
    }
    if lines.len() > MAX_COMMENT_LINES {
        out.push_str("\n> …");
    }
}

fn push_url(out: &mut String, url: Option<&str>) {
    if let Some(u) = url {
        let _ = write!(out, "\n{u}");
    }
}

fn verb(action: &str, merged: bool) -> &str {
    match action {
        "opened" | "open" => "opened",
        "closed" | "close" if merged => "merged",
        "closed" | "close" => "closed",
        "merge" => "merged",
        "reopened" | "reopen" => "reopened",
        "synchronize" | "synchronized" | "update" => "updated",
        "edited" => "edited",
        "ready_for_review" => "marked ready for review",
        "approved" => "approved",
        "published" => "published",
        "created" => "created",
        "updated" => "updated",
        "deleted" | "delete" => "deleted",
        "" => "updated",
        other => other,
    }
}

fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

fn short_sha(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

fn number(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "?".into(),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detection_by_shape() {
        assert_eq!(
            detect(&json!({"object_kind": "push", "project": {}})),
            Some(Forge::Gitlab)
        );
        assert_eq!(
            detect(&json!({"repository": {}, "commits": []})),
            Some(Forge::Github)
        );
        assert_eq!(detect(&json!({"repository": "x", "commits": []})), None);
        assert_eq!(detect(&json!({"text": "x"})), None);
    }

    #[test]
    fn branch_deletion_and_creation() {
        let del = json!({"ref": "refs/heads/old", "after": ZERO_SHA, "deleted": true,
            "repository": {"full_name": "o/r"}, "sender": {"login": "ana"}});
        assert_eq!(
            github_like(Some("push"), &del),
            "*o/r*: ana deleted branch `old`"
        );
        let new = json!({"ref": "refs/heads/new", "before": ZERO_SHA, "created": true, "commits": [],
            "repository": {"full_name": "o/r"}, "sender": {"login": "ana"}});
        assert_eq!(github_like(None, &new), "*o/r*: ana created branch `new`");
    }

    #[test]
    fn unknown_events_still_summarise() {
        let p = json!({"action": "starred", "repository": {"full_name": "o/r", "html_url": "https://f/o/r"},
            "sender": {"login": "ana"}});
        assert_eq!(
            github_like(Some("star"), &p),
            "*o/r*: ana sent `star` (starred)\nhttps://f/o/r"
        );
        assert!(format(Forge::Github, None, &json!([1])).is_err());
        // Missing fields never panic.
        for e in [
            "push",
            "pull_request",
            "issues",
            "issue_comment",
            "release",
            "create",
            "ping",
        ] {
            assert!(github_like(Some(e), &json!({})).starts_with("*repository*: "));
        }
        for k in [
            "push",
            "tag_push",
            "merge_request",
            "issue",
            "note",
            "release",
            "pipeline",
        ] {
            assert!(gitlab(None, &json!({"object_kind": k})).starts_with("*project*: "));
        }
    }
}
