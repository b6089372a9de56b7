//! XEP-0106 JID escaping: foreign ids that hold characters a JID local part may not.
//!
//! `alice@example.com` → `alice\40example.com`; `@bob:matrix.org` → `\40bob\3amatrix.org`.
//! Only the ten characters of XEP-0106 are escaped (space `"` `&` `'` `/` `:` `<` `>` `@` `\`),
//! and `\` only where it would otherwise read as an escape.

const ESCAPES: [(char, &str); 10] = [
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

fn escape_of(c: char) -> Option<&'static str> {
    ESCAPES.iter().find(|(ch, _)| *ch == c).map(|(_, e)| *e)
}

fn unescape_at(s: &str) -> Option<char> {
    let code = s.get(1..3)?;
    ESCAPES
        .iter()
        .find(|(_, e)| e[1..].eq_ignore_ascii_case(code))
        .map(|(c, _)| *c)
}

/// Escapes a foreign id for use as a JID local part.
pub fn escape_local(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.char_indices() {
        if c == '\\' {
            // A backslash is escaped only where it would start a valid escape sequence.
            if unescape_at(&raw[i..]).is_some() {
                out.push_str("\\5c");
            } else {
                out.push(c);
            }
        } else if let Some(e) = escape_of(c) {
            out.push_str(e);
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads an escaped local part back into the foreign id.
pub fn unescape_local(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match unescape_at(tail) {
            Some(c) => {
                out.push(c);
                rest = &tail[3..];
            }
            None => {
                out.push('\\');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_xep() {
        assert_eq!(escape_local("space cadet"), "space\\20cadet");
        assert_eq!(
            escape_local("call me \"ishmael\""),
            "call\\20me\\20\\22ishmael\\22"
        );
        assert_eq!(escape_local("at&t guy"), "at\\26t\\20guy");
        assert_eq!(escape_local("d'artagnan"), "d\\27artagnan");
        assert_eq!(escape_local("/.fanboy"), "\\2f.fanboy");
        assert_eq!(escape_local("::foo::"), "\\3a\\3afoo\\3a\\3a");
        assert_eq!(escape_local("<foo>"), "\\3cfoo\\3e");
        assert_eq!(escape_local("user@host"), "user\\40host");
        assert_eq!(escape_local("c:\\net"), "c\\3a\\net");
        assert_eq!(escape_local("c:\\\\net"), "c\\3a\\\\net");
        assert_eq!(escape_local("c:\\cool stuff"), "c\\3a\\cool\\20stuff");
        assert_eq!(escape_local("c:\\5commas"), "c\\3a\\5c5commas");
    }

    #[test]
    fn round_trips() {
        for raw in [
            "@alice:matrix.org",
            "alice@example.com",
            "#chan%irc.libera.chat",
            "c:\\5commas",
            "a\\b",
            "é ü",
        ] {
            assert_eq!(unescape_local(&escape_local(raw)), raw, "{raw}");
        }
    }

    #[test]
    fn unescape_is_case_insensitive_and_tolerant() {
        assert_eq!(unescape_local("\\3A\\40"), ":@");
        assert_eq!(unescape_local("trailing\\"), "trailing\\");
        assert_eq!(unescape_local("\\zz"), "\\zz");
    }
}
