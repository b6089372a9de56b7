//! A server's channel prefix modes, from ISUPPORT `PREFIX=(qaohv)~&@%+`: which channel
//! mode each NAMES prefix character (`@`, `+`, …) stands for, highest first.
//!
//! Kept inline (no allocation): every user's session has one, and servers announce five at
//! most in practice.

/// How many prefix modes are kept; a server announcing more keeps its highest ones.
pub const MAX_PREFIXES: usize = 8;

/// Prefix modes and their characters, highest first. ASCII only: a `PREFIX` with anything
/// else is not read (the previous prefixes stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefixes {
    modes: [u8; MAX_PREFIXES],
    chars: [u8; MAX_PREFIXES],
    len: u8,
}

impl Default for Prefixes {
    /// RFC 1459's: `(ov)@+`.
    fn default() -> Self {
        Self::from_pairs(b"ov", b"@+")
    }
}

impl Prefixes {
    fn from_pairs(modes: &[u8], chars: &[u8]) -> Self {
        let len = modes.len().min(chars.len()).min(MAX_PREFIXES);
        let mut p = Self {
            modes: [0; MAX_PREFIXES],
            chars: [0; MAX_PREFIXES],
            len: len as u8,
        };
        p.modes[..len].copy_from_slice(&modes[..len]);
        p.chars[..len].copy_from_slice(&chars[..len]);
        p
    }

    /// Reads an ISUPPORT `PREFIX` value such as `(qaohv)~&@%+`; `None` when it is not one
    /// (no parentheses, counts that differ, non-ASCII).
    pub fn parse(value: &str) -> Option<Self> {
        let inner = value.strip_prefix('(')?;
        let (modes, chars) = inner.split_once(')')?;
        let usable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if modes.len() != chars.len() || !usable(modes) || !usable(chars) {
            return None;
        }
        Some(Self::from_pairs(modes.as_bytes(), chars.as_bytes()))
    }

    /// `(mode, prefix character)` pairs, highest first.
    pub fn iter(&self) -> impl Iterator<Item = (char, char)> + '_ {
        let len = usize::from(self.len);
        self.modes[..len]
            .iter()
            .zip(&self.chars[..len])
            .map(|(&m, &c)| (char::from(m), char::from(c)))
    }

    /// The channel modes in mode order (highest first), e.g. `qaohv`.
    pub fn modes(&self) -> impl Iterator<Item = char> + '_ {
        self.iter().map(|(m, _)| m)
    }

    /// Splits a NAMES entry (`@+nick`, or `@nick!user@host` with `userhost-in-names`) into
    /// the nick and the modes its prefixes stand for.
    pub fn split(&self, entry: &str) -> (String, String) {
        let mut modes = String::new();
        let mut rest = entry;
        while let Some(c) = rest.chars().next() {
            match self.iter().find(|(_, p)| *p == c) {
                Some((m, _)) => {
                    modes.push(m);
                    rest = &rest[c.len_utf8()..];
                }
                None => break,
            }
        }
        let nick = rest.split('!').next().unwrap_or(rest);
        (nick.to_owned(), modes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_entries_are_split_into_nick_and_modes() {
        let p = Prefixes::parse("(qaohv)~&@%+").unwrap();
        assert_eq!(p.split("@+alice"), ("alice".into(), "ov".into()));
        assert_eq!(p.split("~bob!u@h"), ("bob".into(), "q".into()));
        assert_eq!(p.split("carol"), ("carol".into(), "".into()));
        assert_eq!(p.modes().collect::<String>(), "qaohv");
    }

    #[test]
    fn the_default_is_op_and_voice() {
        let p = Prefixes::default();
        assert_eq!(p.iter().collect::<Vec<_>>(), [('o', '@'), ('v', '+')]);
        assert_eq!(p.split("%dave"), ("%dave".into(), "".into()));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in ["(ov)@", "ov@+", "(ov@+", "(oé)@+", "(ov)@ ", ""] {
            assert_eq!(Prefixes::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Prefixes::parse("()").map(|p| p.iter().count()),
            Some(0),
            "a server may announce no prefix modes"
        );
    }

    #[test]
    fn a_long_list_keeps_its_highest_modes() {
        let p = Prefixes::parse("(abcdefghij)!\"#$%&'()*").unwrap();
        assert_eq!(p.modes().collect::<String>(), "abcdefgh");
        assert_eq!(p.split("!*x"), ("*x".into(), "a".into()));
    }
}
