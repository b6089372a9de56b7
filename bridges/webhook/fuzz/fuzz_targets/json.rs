//! Fuzzes the webhook formatters with JSON built from the bytes (structure-aware): objects
//! keyed by the field names the forge and Alertmanager formatters look for, nested up to
//! six levels, with strings, numbers, booleans, nulls and lists anywhere. Random bytes
//! rarely parse as JSON of the right shape; these do, so the formatters' field walks are
//! reached. Nothing may panic; a rendering is never blank.
#![no_main]

use estuary_bridge_webhook::format::Payload;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

mod common;

/// The keys the formatters read.
const KEYS: [&str; 48] = [
    "action",
    "after",
    "alerts",
    "annotations",
    "author",
    "before",
    "body",
    "commits",
    "compare",
    "compare_url",
    "created",
    "deleted",
    "description",
    "endsAt",
    "event_name",
    "forced",
    "full_name",
    "head_commit",
    "html_url",
    "id",
    "iid",
    "labels",
    "login",
    "merged",
    "message",
    "name",
    "note",
    "number",
    "object_attributes",
    "object_kind",
    "path_with_namespace",
    "project",
    "pull_request",
    "pusher",
    "ref",
    "ref_type",
    "release",
    "repository",
    "sender",
    "status",
    "summary",
    "tag_name",
    "text",
    "title",
    "total_commits_count",
    "url",
    "user",
    "username",
];

/// The values the formatters compare strings with.
const WORDS: [&str; 16] = [
    "firing",
    "resolved",
    "opened",
    "closed",
    "merged",
    "push",
    "tag_push",
    "merge_request",
    "note",
    "pipeline",
    "refs/heads/main",
    "refs/tags/v1",
    "0000000000000000000000000000000000000000",
    "",
    "\n\n",
    "*_`>",
];

/// Reads a JSON value off the front of `data`.
struct Builder<'d> {
    data: &'d [u8],
    /// Values built so far, bounded so one input cannot build a huge tree.
    budget: u32,
}

impl Builder<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 24).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(head).into_owned()
    }

    fn value(&mut self, depth: u32) -> Value {
        if self.budget == 0 {
            return Value::Null;
        }
        self.budget -= 1;
        let kind = self.byte();
        match kind % 9 {
            0 => Value::Null,
            1 => Value::Bool(kind & 0x10 != 0),
            2 => Value::from(i64::from(self.byte()) - 64),
            3 => Value::from(self.text()),
            4 => Value::from(WORDS[usize::from(self.byte()) % WORDS.len()]),
            5 | 6 | 7 if depth < 6 => {
                let n = self.byte() % 6;
                let mut map = Map::new();
                for _ in 0..n {
                    let key = KEYS[usize::from(self.byte()) % KEYS.len()];
                    let v = self.value(depth + 1);
                    map.insert(key.to_owned(), v);
                }
                Value::Object(map)
            }
            8 if depth < 6 => {
                let n = self.byte() % 5;
                Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            _ => Value::from(self.text()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let event = common::EVENTS[usize::from(pick) % common::EVENTS.len()];
    let mut b = Builder {
        data: rest,
        budget: 256,
    };
    // The top level is an object, as every sender sends.
    let top = match b.value(0) {
        Value::Object(map) => Value::Object(map),
        other => {
            let mut map = Map::new();
            map.insert(KEYS[usize::from(pick) % KEYS.len()].to_owned(), other);
            Value::Object(map)
        }
    };
    common::render_all(&common::hooks(), &Payload::Json(top), event);
});
