//! Message text both ways, pure: IRC formatting ↔ XEP-0393 styling, XMPP bodies → IRC lines
//! that are safe on the wire, `/me` ↔ CTCP ACTION, and CTCP replies.
//!
//! # IRC → XMPP
//!
//! [`irc_to_styled`] maps bold (`\x02`), italic (`\x1d`), strikethrough (`\x1e`) and
//! monospace (`\x11`) to XEP-0393 `*bold*`, `_italic_`, `~strike~` and `` `mono` ``, and
//! drops what XEP-0393 cannot say: underline (`\x1f`), colours (`\x03NN[,NN]`, `\x04RRGGBB`),
//! reverse (`\x16`) and any other control character. `\x0f` resets. [`strip_formatting`]
//! drops everything.
//!
//! # XMPP → IRC
//!
//! [`sanitize`] removes `\r`, NUL and every other C0 control character but `\n` and `\t`
//! (so no CR/LF/NUL ever reaches an IRC line, and no stray `\x01` can forge a CTCP);
//! [`split_body`] splits the sanitized text on `\n` and splits each line that is longer than
//! the byte budget on UTF-8 character boundaries, at a space where there is one (the space
//! stays at the end of the first piece), so that the pieces of a line concatenate back to
//! the line exactly: text is never cut or dropped, only empty lines (which IRC cannot carry)
//! are left out. [`text_budget`] computes the budget from the command and target, with a
//! conservative allowance for the `:nick!user@host ` prefix the server adds when relaying.

use estuary_bridge_api::MessageKind;

/// The IRC line limit, in bytes, including the trailing CRLF (RFC 1459 §2.3).
pub const IRC_LINE_BYTES: usize = 512;
/// A conservative length of the `nick!user@host` prefix the server prepends when it relays
/// a line: nick (≤ 30), `!~`, user (≤ 10), `@`, host (≤ 64).
pub const CONSERVATIVE_PREFIX_BYTES: usize = 30 + 2 + 10 + 1 + 64;
/// The smallest budget ever used, so that even an absurd target leaves room for text.
pub const MIN_BUDGET: usize = 32;
/// The bytes CTCP ACTION adds around the text: `\x01ACTION ` and `\x01`.
pub const ACTION_OVERHEAD: usize = 9;

/// Bold.
const BOLD: char = '\x02';
/// Colour (mIRC): `\x03[N[N]][,N[N]]`.
const COLOR: char = '\x03';
/// Hex colour: `\x04[RRGGBB][,RRGGBB]`.
const HEX_COLOR: char = '\x04';
/// Reset.
const RESET: char = '\x0f';
/// Monospace.
const MONO: char = '\x11';
/// Reverse video.
const REVERSE: char = '\x16';
/// Italic.
const ITALIC: char = '\x1d';
/// Strikethrough.
const STRIKE: char = '\x1e';
/// Underline.
const UNDERLINE: char = '\x1f';

/// The styles XEP-0393 can carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Style {
    bold: bool,
    italic: bool,
    strike: bool,
    mono: bool,
}

impl Style {
    fn markers(self) -> String {
        let mut m = String::new();
        if self.mono {
            // Nothing is styled inside a preformatted span, so it wraps the others.
            m.push('`');
        }
        if self.bold {
            m.push('*');
        }
        if self.italic {
            m.push('_');
        }
        if self.strike {
            m.push('~');
        }
        m
    }
}

/// Skips the digits of a mIRC colour code after `\x03`; returns the rest.
fn skip_color(rest: &str) -> &str {
    fn digits(s: &str) -> usize {
        s.bytes().take(2).take_while(u8::is_ascii_digit).count()
    }
    let fg = digits(rest);
    if fg == 0 {
        return rest;
    }
    let after = &rest[fg..];
    if let Some(bg_part) = after.strip_prefix(',') {
        let bg = digits(bg_part);
        if bg > 0 {
            return &bg_part[bg..];
        }
    }
    after
}

/// Skips a hex colour code after `\x04`; returns the rest.
fn skip_hex_color(rest: &str) -> &str {
    fn hex6(s: &str) -> bool {
        s.len() >= 6 && s.as_bytes()[..6].iter().all(u8::is_ascii_hexdigit)
    }
    if !hex6(rest) {
        return rest;
    }
    let after = &rest[6..];
    match after.strip_prefix(',') {
        Some(bg) if hex6(bg) => &bg[6..],
        _ => after,
    }
}

/// Splits IRC text into runs of one style each, formatting codes removed.
fn styled_runs(text: &str) -> Vec<(Style, String)> {
    let mut runs: Vec<(Style, String)> = Vec::new();
    let mut style = Style::default();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            BOLD => style.bold = !style.bold,
            ITALIC => style.italic = !style.italic,
            STRIKE => style.strike = !style.strike,
            MONO => style.mono = !style.mono,
            RESET => style = Style::default(),
            COLOR => rest = skip_color(rest),
            HEX_COLOR => rest = skip_hex_color(rest),
            UNDERLINE | REVERSE => {}
            '\n' | '\t' => push_char(&mut runs, style, c),
            c if c.is_control() => {}
            c => push_char(&mut runs, style, c),
        }
    }
    runs
}

fn push_char(runs: &mut Vec<(Style, String)>, style: Style, c: char) {
    match runs.last_mut() {
        Some((s, text)) if *s == style => text.push(c),
        _ => runs.push((style, c.to_string())),
    }
}

/// IRC text with every formatting code and control character (but `\n`, `\t`) removed.
///
/// ```
/// use estuary_bridge_irc::format::strip_formatting;
/// assert_eq!(strip_formatting("\x02bold\x02 \x0304,12red\x03 plain"), "bold red plain");
/// ```
pub fn strip_formatting(text: &str) -> String {
    styled_runs(text).into_iter().map(|(_, t)| t).collect()
}

/// IRC text with formatting mapped to XEP-0393 styling where it has an equivalent and
/// dropped where it has not.
///
/// Markers are only placed where XEP-0393 reads them as such: around text that neither
/// starts nor ends with whitespace, within one line.
///
/// ```
/// use estuary_bridge_irc::format::irc_to_styled;
/// assert_eq!(irc_to_styled("a \x02bold\x02 word"), "a *bold* word");
/// assert_eq!(irc_to_styled("\x1ditalic \x1e\x1dstrike\x0f"), "_italic_ ~strike~");
/// assert_eq!(irc_to_styled("\x11mono\x11 \x0303green\x03"), "`mono` green");
/// ```
pub fn irc_to_styled(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (style, run) in styled_runs(text) {
        let markers = style.markers();
        if markers.is_empty() {
            out.push_str(&run);
            continue;
        }
        let closing: String = markers.chars().rev().collect();
        let mut first = true;
        for line in run.split('\n') {
            if !first {
                out.push('\n');
            }
            first = false;
            let core = line.trim();
            if core.is_empty() {
                out.push_str(line);
                continue;
            }
            let lead = line.len() - line.trim_start().len();
            let trail = line.trim_end().len();
            out.push_str(&line[..lead]);
            out.push_str(&markers);
            out.push_str(core);
            out.push_str(&closing);
            out.push_str(&line[trail..]);
        }
    }
    out
}

/// Whether `c` may not travel from XMPP to an IRC line: every C0 control but `\n` (a line
/// separator, handled by splitting) and `\t`.
fn is_forbidden(c: char) -> bool {
    c.is_ascii_control() && c != '\n' && c != '\t' && c != '\x7f'
}

/// Removes what must never reach an IRC line from XMPP text: CR, NUL and every other C0
/// control character but `\n` and `\t` (including IRC formatting codes and `\x01`, so that
/// no one forges a CTCP).
///
/// ```
/// use estuary_bridge_irc::format::sanitize;
/// assert_eq!(sanitize("hi\r\nQUIT\0 \x01VERSION\x01"), "hi\nQUIT VERSION");
/// ```
pub fn sanitize(text: &str) -> String {
    text.chars().filter(|&c| !is_forbidden(c)).collect()
}

/// The bytes left for text in `COMMAND target :text` once the server has prepended a prefix
/// of `prefix_bytes` (`nick!user@host`) and the line ends with CRLF; never below
/// [`MIN_BUDGET`].
///
/// ```
/// use estuary_bridge_irc::format::{text_budget, IRC_LINE_BYTES};
/// // ":" prefix " " "PRIVMSG" " " "#c" " :" … "\r\n"
/// assert_eq!(text_budget("PRIVMSG", "#c", 20), IRC_LINE_BYTES - 2 - 22 - 8 - 2 - 2);
/// ```
pub fn text_budget(command: &str, target: &str, prefix_bytes: usize) -> usize {
    let overhead = 2 // CRLF
        + 1 + prefix_bytes + 1 // ":prefix "
        + command.len() + 1
        + target.len()
        + 2; // " :"
    IRC_LINE_BYTES.saturating_sub(overhead).max(MIN_BUDGET)
}

/// Splits one line (no `\n` in it) into pieces of at most `budget` bytes, on character
/// boundaries, preferring to break after a space. The pieces concatenate to `line`.
///
/// `budget` is raised to 4 if lower, so that any character fits. An empty line gives no
/// piece.
pub fn split_line(line: &str, budget: usize) -> Vec<String> {
    let budget = budget.max(4);
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer a word boundary, unless it would leave a piece shorter than a third.
        if let Some(space) = rest[..cut].rfind(' ')
            && space + 1 >= budget / 3
        {
            cut = space + 1;
        }
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

/// Turns an XMPP body into the IRC texts to send, in order: sanitized, one per line, long
/// lines split at `budget` bytes (see [`split_line`]); empty lines are left out.
///
/// ```
/// use estuary_bridge_irc::format::split_body;
/// assert_eq!(split_body("one\r\ntwo\n\nthree four", 6), ["one", "two", "three ", "four"]);
/// ```
pub fn split_body(body: &str, budget: usize) -> Vec<String> {
    sanitize(body)
        .split('\n')
        .flat_map(|line| split_line(line, budget))
        .collect()
}

/// Reads a `/me ` prefix: `(Action, rest)` for `/me text`, else `(kind, body)` unchanged.
pub fn parse_me(body: &str, kind: MessageKind) -> (MessageKind, &str) {
    match body.strip_prefix("/me ") {
        Some(rest) if kind == MessageKind::Normal => (MessageKind::Action, rest),
        _ => (kind, body),
    }
}

/// A CTCP request or reply inside a PRIVMSG or NOTICE (`\x01COMMAND args\x01`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctcp<'a> {
    /// The command, upper-cased by the sender as a rule (`ACTION`, `VERSION`, `PING`).
    pub command: &'a str,
    /// What follows the command (may be empty).
    pub args: &'a str,
}

/// Reads a CTCP message; `None` for ordinary text. The closing `\x01` is optional, as
/// some clients leave it out.
///
/// ```
/// use estuary_bridge_irc::format::{parse_ctcp, Ctcp};
/// assert_eq!(parse_ctcp("\x01ACTION waves\x01"), Some(Ctcp { command: "ACTION", args: "waves" }));
/// assert_eq!(parse_ctcp("\x01VERSION\x01"), Some(Ctcp { command: "VERSION", args: "" }));
/// assert_eq!(parse_ctcp("hello"), None);
/// ```
pub fn parse_ctcp(text: &str) -> Option<Ctcp<'_>> {
    let inner = text.strip_prefix('\x01')?;
    let inner = inner.strip_suffix('\x01').unwrap_or(inner);
    let (command, args) = inner.split_once(' ').unwrap_or((inner, ""));
    if command.is_empty() {
        return None;
    }
    Some(Ctcp { command, args })
}

/// Wraps text as a CTCP ACTION.
pub fn ctcp_action(text: &str) -> String {
    format!("\x01ACTION {text}\x01")
}

/// The CTCP reply (the NOTICE text) to a request, if it is one this bridge answers:
/// `VERSION` (with `version`), `PING` (echoing its argument), `TIME` and `CLIENTINFO`.
///
/// The reply is sanitized, so an argument can never smuggle a control character back out.
pub fn ctcp_reply(request: &Ctcp<'_>, version: &str, now_unix_secs: u64) -> Option<String> {
    let body = match request.command.to_ascii_uppercase().as_str() {
        "VERSION" => format!("VERSION {version}"),
        "PING" if request.args.is_empty() => "PING".to_owned(),
        "PING" => format!("PING {}", request.args),
        "TIME" => format!("TIME {now_unix_secs}"),
        "CLIENTINFO" => "CLIENTINFO ACTION CLIENTINFO PING TIME VERSION".to_owned(),
        _ => return None,
    };
    Some(format!("\x01{}\x01", sanitize(&body).replace('\n', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_map_to_xep_0393() {
        assert_eq!(irc_to_styled("\x02bold\x02"), "*bold*");
        assert_eq!(irc_to_styled("\x1ditalic\x1d"), "_italic_");
        assert_eq!(irc_to_styled("\x1estrike\x1e"), "~strike~");
        assert_eq!(irc_to_styled("\x11mono\x11"), "`mono`");
        assert_eq!(irc_to_styled("\x02\x1dboth\x0f after"), "*_both_* after");
        // Unterminated styles close at the end.
        assert_eq!(irc_to_styled("a \x02b"), "a *b*");
        // Whitespace moves outside the markers.
        assert_eq!(irc_to_styled("a\x02 b \x02c"), "a *b* c");
        // Nothing left to style: no markers.
        assert_eq!(irc_to_styled("a\x02 \x02b"), "a b");
        assert_eq!(irc_to_styled("\x02\x02"), "");
    }

    #[test]
    fn unsupported_codes_are_dropped() {
        assert_eq!(irc_to_styled("\x1funder\x1f"), "under");
        assert_eq!(irc_to_styled("\x16rev\x16"), "rev");
        assert_eq!(irc_to_styled("\x034red\x03"), "red");
        assert_eq!(irc_to_styled("\x0304,12red on blue"), "red on blue");
        assert_eq!(irc_to_styled("\x03,12x"), ",12x");
        assert_eq!(irc_to_styled("\x03123"), "3");
        assert_eq!(irc_to_styled("\x0312,345"), "5");
        assert_eq!(irc_to_styled("\x0399,"), ",");
        assert_eq!(irc_to_styled("\x04FF0000red\x04"), "red");
        assert_eq!(irc_to_styled("\x04FF0000,00FF00x"), "x");
        assert_eq!(irc_to_styled("\x04FF00"), "FF00");
        assert_eq!(irc_to_styled("bell\x07\x01\0"), "bell");
    }

    #[test]
    fn styles_do_not_cross_lines() {
        assert_eq!(irc_to_styled("\x02one\ntwo\x02"), "*one*\n*two*");
        assert_eq!(irc_to_styled("\x02one\n\ntwo"), "*one*\n\n*two*");
    }

    #[test]
    fn strip_keeps_text_only() {
        assert_eq!(
            strip_formatting("\x02b\x1di\x1fu\x1es\x11m\x16r\x0f\x0301,02c"),
            "biusmrc"
        );
        assert_eq!(strip_formatting("é\x02ü"), "éü");
    }

    #[test]
    fn sanitize_removes_line_breakers() {
        assert_eq!(sanitize("a\r\nb"), "a\nb");
        assert_eq!(sanitize("a\rb"), "ab");
        assert_eq!(sanitize("a\0b"), "ab");
        assert_eq!(sanitize("\x01ACTION x\x01"), "ACTION x");
        assert_eq!(sanitize("tab\there\x7f"), "tab\there\x7f");
        assert_eq!(sanitize("\x02bold\x0f"), "bold");
    }

    #[test]
    fn injection_never_makes_a_command() {
        let lines = split_body("hi\r\nQUIT :bye\r\n", 400);
        assert_eq!(lines, ["hi", "QUIT :bye"]);
        for l in &lines {
            assert!(!l.contains(['\r', '\n', '\0']));
        }
    }

    #[test]
    fn budget_accounts_for_everything() {
        let b = text_budget("PRIVMSG", "#rust", CONSERVATIVE_PREFIX_BYTES);
        let line = format!(
            ":{} PRIVMSG #rust :{}\r\n",
            "p".repeat(CONSERVATIVE_PREFIX_BYTES),
            "x".repeat(b)
        );
        assert_eq!(line.len(), IRC_LINE_BYTES);
        assert_eq!(text_budget("PRIVMSG", &"#".repeat(1000), 100), MIN_BUDGET);
    }

    #[test]
    fn long_lines_split_at_words() {
        let text = "lorem ipsum dolor sit amet ".repeat(40);
        let pieces = split_line(&text, 100);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text);
        for p in &pieces[..pieces.len() - 1] {
            assert!(p.len() <= 100);
            assert!(p.ends_with(' '), "{p:?} does not end at a word");
        }
    }

    #[test]
    fn long_words_split_on_char_boundaries() {
        let text = "é".repeat(100) + &"🦀".repeat(50);
        let pieces = split_line(&text, 33);
        assert_eq!(pieces.concat(), text);
        for p in &pieces {
            assert!(p.len() <= 33 && !p.is_empty());
        }
        // A budget smaller than one character still makes progress.
        assert_eq!(split_line("🦀🦀", 1), ["🦀", "🦀"]);
    }

    #[test]
    fn a_thousand_bytes_become_several_lines() {
        let text = "word ".repeat(200);
        let budget = text_budget("PRIVMSG", "#chan", CONSERVATIVE_PREFIX_BYTES);
        let pieces = split_body(&text, budget);
        assert!(pieces.len() >= 3);
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn empty_lines_are_left_out() {
        assert_eq!(split_body("\n\r\n\0", 50), Vec::<String>::new());
        assert_eq!(split_body("", 50), Vec::<String>::new());
        assert_eq!(split_body("  ", 50), ["  "]);
    }

    #[test]
    fn me_and_ctcp() {
        assert_eq!(
            parse_me("/me waves", MessageKind::Normal),
            (MessageKind::Action, "waves")
        );
        assert_eq!(
            parse_me("/mew", MessageKind::Normal),
            (MessageKind::Normal, "/mew")
        );
        assert_eq!(ctcp_action("waves"), "\x01ACTION waves\x01");
        assert_eq!(
            parse_ctcp("\x01ACTION waves"),
            Some(Ctcp {
                command: "ACTION",
                args: "waves"
            })
        );
        assert_eq!(parse_ctcp("\x01\x01"), None);
        assert_eq!(parse_ctcp("\x01"), None);
        let v = Ctcp {
            command: "VERSION",
            args: "",
        };
        assert_eq!(
            ctcp_reply(&v, "Estuary 0.1", 0).as_deref(),
            Some("\x01VERSION Estuary 0.1\x01")
        );
        let p = Ctcp {
            command: "PING",
            args: "123\r\n\x00456",
        };
        assert_eq!(
            ctcp_reply(&p, "", 0).as_deref(),
            Some("\x01PING 123 456\x01")
        );
        let t = Ctcp {
            command: "time",
            args: "",
        };
        assert_eq!(ctcp_reply(&t, "", 42).as_deref(), Some("\x01TIME 42\x01"));
        let x = Ctcp {
            command: "DCC",
            args: "SEND x",
        };
        assert_eq!(ctcp_reply(&x, "", 0), None);
    }

    /// The fuzz target's invariants on pseudo-random input, so they hold in every test run
    /// (see `bridges/irc/fuzz/` for the real fuzzer).
    #[test]
    fn split_invariants_on_random_input() {
        let alphabet: Vec<char> = "ab \r\n\0\x01\x02\x03\t:é🦀,# x".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 600) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let budget = (next() % 300) as usize;
            let clean = sanitize(&text);
            let lines = split_body(&text, budget);
            let mut expected = Vec::new();
            for source in clean.split('\n') {
                let pieces = split_line(source, budget);
                assert_eq!(pieces.concat(), source);
                expected.extend(pieces);
            }
            assert_eq!(lines, expected);
            for l in &lines {
                assert!(!l.is_empty() && l.len() <= budget.max(4));
                assert!(!l.contains(['\r', '\n', '\0', '\x01']));
            }
            let styled = irc_to_styled(&text);
            assert!(
                !styled
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
            );
        }
    }
}
