//! Multi-line server answers gathered into one readable message for the server's JID.
//!
//! A `WHOIS` is answered by half a dozen numerics (311, 312, 317, 319, 330, …, ended by
//! 318) and `LUSERS` (also sent at every connection) by up to seven (251–255, 265, 266).
//! Passed on one by one they became a burst of messages with the raw numerics' parameters
//! ("bob ~bob 127.0.0.1 * Bob"). Here each answer becomes one message, a line per numeric,
//! in words. Pure code: [`Gathering`] takes numerics and says when the message is complete.

use chrono::DateTime;

/// What kind of answer a numeric belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An answer to `WHOIS`, ended by 318.
    Whois,
    /// An answer to `LUSERS` (also sent after the welcome), ended by 266 or by the first
    /// line that is not part of it.
    Lusers,
}

/// The most lines one answer keeps; a server that sends more gets the rest as a count.
pub const MAX_LINES: usize = 32;

/// The numerics that are part of a `WHOIS` answer (besides 318, its end).
const WHOIS: &[u16] = &[
    301, 307, 310, 311, 312, 313, 317, 319, 320, 330, 335, 338, 378, 379, 671, 276,
];
/// The end of a `WHOIS` answer.
pub const END_OF_WHOIS: u16 = 318;
/// The numerics of a `LUSERS` answer.
const LUSERS: &[u16] = &[251, 252, 253, 254, 255, 265, 266];
/// The last numeric of a `LUSERS` answer, when the server sends it.
const END_OF_LUSERS: u16 = 266;

/// The kind of answer `code` is part of, if any. 301 (away) is part of a `WHOIS` only
/// while one is being gathered (it also answers a message to someone away).
pub fn kind_of(code: u16) -> Option<Kind> {
    if WHOIS.contains(&code) || code == END_OF_WHOIS {
        Some(Kind::Whois)
    } else if LUSERS.contains(&code) {
        Some(Kind::Lusers)
    } else {
        None
    }
}

/// One answer being gathered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gathering {
    kind: Kind,
    lines: Vec<String>,
    left_out: usize,
}

impl Gathering {
    /// A new, empty answer of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            lines: Vec::new(),
            left_out: 0,
        }
    }

    /// The kind of answer.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Adds numeric `code` with its parameters (the first is our own nick); true when
    /// the answer is complete.
    pub fn add(&mut self, code: u16, params: &[String]) -> bool {
        if let Some(line) = line(code, params) {
            if self.lines.len() < MAX_LINES {
                self.lines.push(line);
            } else {
                self.left_out += 1;
            }
        }
        match self.kind {
            Kind::Whois => code == END_OF_WHOIS,
            Kind::Lusers => code == END_OF_LUSERS,
        }
    }

    /// The message: one line per numeric; `None` when nothing was worth saying.
    pub fn into_text(self) -> Option<String> {
        let mut text = self.lines.join("\n");
        if self.left_out > 0 {
            text.push_str(&format!("\n({} more line(s) left out)", self.left_out));
        }
        Some(text).filter(|t| !t.trim().is_empty())
    }
}

/// One numeric of an answer in words; `None` for one that says nothing (318's "End of
/// /WHOIS list").
pub fn line(code: u16, params: &[String]) -> Option<String> {
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    let trailing = params.last().map(String::as_str).unwrap_or("");
    let nick = p(1);
    let text = match code {
        END_OF_WHOIS => return None,
        311 => format!("{nick} is {}@{} ({trailing})", p(2), p(3)),
        312 => format!("{nick} is connected to {} ({trailing})", p(2)),
        317 => {
            let mut text = format!("{nick} has been idle {}", duration(p(2)));
            if let Some(since) = p(3).parse::<i64>().ok().and_then(utc) {
                text.push_str(&format!(", connected since {since}"));
            }
            text
        }
        319 => format!("{nick} is in {trailing}"),
        330 => format!("{nick} is logged in as {}", p(2)),
        301 => format!("{nick} is away: {trailing}"),
        338 if params.len() > 3 => format!("{nick} is actually connecting from {}", p(2)),
        _ if WHOIS.contains(&code) => {
            if params.len() > 2 {
                format!("{nick} {trailing}")
            } else {
                trailing.to_owned()
            }
        }
        // LUSERS and anything else: the parameters after our nick, as the server wrote them
        // (`2 operator(s) online`).
        _ => params.get(1..).unwrap_or_default().join(" "),
    };
    Some(text)
}

/// Seconds in words: `45 s`, `3 min 5 s`, `2 h 10 min`, `4 days 2 h`.
fn duration(secs: &str) -> String {
    let Ok(s) = secs.parse::<u64>() else {
        return format!("{secs} s");
    };
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min {secs} s"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, h, _) => format!("1 day {h} h"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

/// A Unix time as `2026-12-07 17:30 UTC`; `None` outside what a date can hold.
fn utc(unix: i64) -> Option<String> {
    DateTime::from_timestamp(unix, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(line: &str) -> Vec<String> {
        let (head, trailing) = line.split_once(" :").unwrap_or((line, ""));
        let mut out: Vec<String> = head.split_whitespace().map(str::to_owned).collect();
        out.push(trailing.to_owned());
        out
    }

    #[test]
    fn a_whois_answer_becomes_one_message_in_words() {
        // As InspIRCd 3 answers `WHOIS bob` (captured here, numbers of our own).
        let lines = [
            (311, "me bob ~bob 127.0.0.1 * :Bob Example"),
            (379, "me bob :is using modes +ix"),
            (378, "me bob :is connecting from ~bob@localhost 127.0.0.1"),
            (319, "me bob :@#estuary #other"),
            (312, "me bob irc.test :Test server"),
            (330, "me bob bobacc :is logged in as"),
            (671, "me bob :is using a secure connection"),
            (317, "me bob 65 1796657400 :seconds idle, signon time"),
        ];
        let mut g = Gathering::new(Kind::Whois);
        for (code, line) in lines {
            assert!(!g.add(code, &params(line)), "{code} does not end it");
        }
        assert!(g.add(END_OF_WHOIS, &params("me bob :End of /WHOIS list.")));
        assert_eq!(
            g.into_text().as_deref(),
            Some(
                "bob is ~bob@127.0.0.1 (Bob Example)\n\
                 bob is using modes +ix\n\
                 bob is connecting from ~bob@localhost 127.0.0.1\n\
                 bob is in @#estuary #other\n\
                 bob is connected to irc.test (Test server)\n\
                 bob is logged in as bobacc\n\
                 bob is using a secure connection\n\
                 bob has been idle 1 min 5 s, connected since 2026-12-07 15:30 UTC"
            )
        );
    }

    #[test]
    fn a_lusers_answer_becomes_one_message() {
        let lines = [
            (251, "me :There are 3 users and 0 invisible on 1 servers"),
            (252, "me 1 :operator(s) online"),
            (254, "me 2 :channels formed"),
            (255, "me :I have 3 clients and 0 servers"),
            (265, "me :Current local users: 3  Max: 5"),
        ];
        let mut g = Gathering::new(Kind::Lusers);
        for (code, line) in lines {
            assert_eq!(kind_of(code), Some(Kind::Lusers));
            assert!(!g.add(code, &params(line)));
        }
        assert!(g.add(266, &params("me :Current global users: 3  Max: 5")));
        assert_eq!(
            g.into_text().as_deref(),
            Some(
                "There are 3 users and 0 invisible on 1 servers\n\
                 1 operator(s) online\n\
                 2 channels formed\n\
                 I have 3 clients and 0 servers\n\
                 Current local users: 3  Max: 5\n\
                 Current global users: 3  Max: 5"
            )
        );
    }

    #[test]
    fn odd_parameters_never_panic_and_long_answers_are_cut() {
        let mut g = Gathering::new(Kind::Whois);
        for code in WHOIS.iter().chain([&END_OF_WHOIS]) {
            for p in [vec![], vec!["me".to_owned()], params("me bob x y z :")] {
                let _ = line(*code, &p);
            }
        }
        assert_eq!(
            line(317, &params("me bob lots never :x")).as_deref(),
            Some("bob has been idle lots s")
        );
        assert_eq!(
            line(317, &params("me bob 1 99999999999999999 :x")).as_deref(),
            Some("bob has been idle 1 s")
        );
        for _ in 0..MAX_LINES + 3 {
            g.add(319, &params("me bob :#a"));
        }
        let text = g.into_text().unwrap_or_default();
        assert_eq!(text.lines().count(), MAX_LINES + 1);
        assert!(text.ends_with("(3 more line(s) left out)"), "{text}");
        assert_eq!(Gathering::new(Kind::Whois).into_text(), None);
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration("45"), "45 s");
        assert_eq!(duration("7265"), "2 h 1 min");
        assert_eq!(duration("90000"), "1 day 1 h");
        assert_eq!(duration("200000"), "2 days 7 h");
    }
}
