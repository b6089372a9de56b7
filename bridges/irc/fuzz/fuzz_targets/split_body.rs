//! Fuzzes XMPP body → IRC lines: no line may carry CR, LF or NUL (or any other forbidden
//! control), every line fits the budget, and the lines of each source line concatenate back
//! to it, so nothing is cut or dropped.
#![no_main]

use estuary_bridge_irc::format::{irc_to_styled, sanitize, split_body, split_line, strip_formatting};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&b, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let budget = 1 + usize::from(b) * 2; // 1..=511, below 4 too

    let clean = sanitize(text);
    assert!(!clean.contains(['\r', '\0']));
    assert!(!clean.chars().any(|c| c.is_ascii_control() && !matches!(c, '\n' | '\t' | '\x7f')));

    let lines = split_body(text, budget);
    let mut expected = Vec::new();
    for source in clean.split('\n') {
        let pieces = split_line(source, budget);
        assert_eq!(pieces.concat(), source, "a piece was lost");
        expected.extend(pieces);
    }
    assert_eq!(lines, expected);
    for line in &lines {
        assert!(!line.is_empty());
        assert!(!line.contains(['\r', '\n', '\0']), "forbidden byte in {line:?}");
        assert!(line.len() <= budget.max(4), "{} > {budget}", line.len());
    }

    // IRC → XMPP never panics and never lets a control through.
    for out in [irc_to_styled(text), strip_formatting(text)] {
        assert!(!out.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')));
    }
});
