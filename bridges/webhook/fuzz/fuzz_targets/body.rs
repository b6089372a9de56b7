//! Fuzzes the webhook body parsers and formatters with arbitrary bytes: the first byte picks
//! the content type and the forge event, the rest is the body, decoded as the listener does
//! (`Payload::decode`) and rendered by every formatter. Nothing may panic; a rendering is
//! never blank.
#![no_main]

use estuary_bridge_webhook::format::Payload;
use libfuzzer_sys::fuzz_target;

mod common;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain; charset=utf-8"),
    Some("application/vnd.github+json"),
    Some("application/octet-stream"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let event = common::EVENTS[usize::from(pick / 8) % common::EVENTS.len()];
    let Ok(payload) = Payload::decode(content_type, body) else {
        return;
    };
    common::render_all(&common::hooks(), &payload, event);
});
