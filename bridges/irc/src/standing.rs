//! Role and affiliation changes asked through muc#admin (XEP-0045 §8 voice and moderator,
//! §9 affiliations) said as IRC channel prefix modes.
//!
//! The gateway shows prefix modes as (see `remote`): `q` owner, `a`/`o` admin, `h`
//! moderator, `v` member with voice, none a participant (a visitor in a `+m` channel). A
//! change is planned the other way round: the member gets the mode that gives what is
//! asked, and loses every mode above it that they hold, in one `MODE` line, as Biboumi
//! does (making an op a member is `+v-o nick nick`).
//!
//! | asked | mode set | modes taken away |
//! | --- | --- | --- |
//! | role `visitor`, affiliation `none` | — | every prefix mode held |
//! | role `participant`, affiliation `member` | `v` | those above `v` |
//! | role `moderator` | `o`, unless `h` or higher is held | — |
//! | affiliation `admin` | `o` | those above `o` (`a`, `q`) |
//! | affiliation `owner` | `q` (refused where the server has none) | — |
//!
//! Biboumi sets `+h` for the moderator role and `+a` for the owner affiliation; `h` is
//! missing on many servers (RFC 1459's `PREFIX` is `(ov)`), and this gateway reads `a` as
//! admin, so a change here is always read back as what was asked.
//!
//! A change that would change nothing is answered at once when the user is op there;
//! otherwise [`reassert`] gives the `MODE` to send anyway, so that the server's refusal
//! (482) is the answer, as Biboumi does.
//!
//! Pure planning, no I/O: the session sends the line and waits for the server's `MODE`.

use crate::prefixes::Prefixes;
use estuary_bridge_api::{Affiliation, BridgeError, Role, StandingChange};

/// A `MODE` change for one member: the mode string (`+v-o`) and how many times the nick
/// follows it (once per mode letter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeChange {
    /// The modes, e.g. `+v-o` or `-v`.
    pub modes: String,
    /// Mode letters in it: the nick is given this many times after it.
    pub letters: usize,
}

impl ModeChange {
    /// The `MODE` arguments after the channel: the mode string, then the nick per letter.
    pub fn args(&self, nick: &str) -> Vec<String> {
        std::iter::once(self.modes.clone())
            .chain(std::iter::repeat_n(nick.to_owned(), self.letters))
            .collect()
    }
}

/// The modes that turn a member holding `held` (prefix mode letters) into what `change`
/// asks, with the server's `offered` prefix modes; `None` when nothing needs to change.
/// Refused (`not-acceptable`) when the server has no mode for what is asked.
pub fn plan(
    change: StandingChange,
    held: &str,
    offered: &Prefixes,
) -> Result<Option<ModeChange>, BridgeError> {
    let rank = |m: char| offered.modes().position(|o| o == m);
    let target = match change {
        StandingChange::Role(Role::Visitor) | StandingChange::Affiliation(Affiliation::None) => {
            None
        }
        StandingChange::Role(Role::Participant)
        | StandingChange::Affiliation(Affiliation::Member) => Some('v'),
        StandingChange::Role(Role::Moderator) => {
            // Any mode above voice already makes a moderator: keep it as it is.
            let voice = rank('v').unwrap_or(usize::MAX);
            if held.chars().any(|m| rank(m).is_some_and(|r| r < voice)) {
                return Ok(None);
            }
            Some('o')
        }
        StandingChange::Affiliation(Affiliation::Admin) => Some('o'),
        StandingChange::Affiliation(Affiliation::Owner) => Some('q'),
    };
    let target_rank = match target {
        Some(mode) => Some(rank(mode).ok_or_else(|| {
            BridgeError::not_acceptable(format!(
                "This IRC server has no channel mode +{mode} for that."
            ))
        })?),
        None => None,
    };
    let mut modes = String::new();
    let mut letters = 0;
    if let Some(mode) = target.filter(|m| !held.contains(*m)) {
        modes.push('+');
        modes.push(mode);
        letters += 1;
    }
    let above: Vec<char> = offered
        .modes()
        .filter(|m| held.contains(*m))
        .filter(|m| target_rank.is_none_or(|t| rank(*m).is_some_and(|r| r < t)))
        .collect();
    if !above.is_empty() {
        modes.push('-');
        modes.extend(above.iter());
        letters += above.len();
    }
    Ok((letters > 0).then_some(ModeChange { modes, letters }))
}

/// The `MODE` that asks again for what `change` gives, for a member who already has it:
/// sent where the user may not be op, so that the server says whether they are. Giving a
/// mode is `+mode`; taking every mode away is `-` and the lowest mode (`-v`).
pub fn reassert(change: StandingChange, offered: &Prefixes) -> ModeChange {
    let modes = match change {
        StandingChange::Role(Role::Visitor) | StandingChange::Affiliation(Affiliation::None) => {
            format!("-{}", offered.modes().last().unwrap_or('v'))
        }
        StandingChange::Role(Role::Participant)
        | StandingChange::Affiliation(Affiliation::Member) => "+v".to_owned(),
        StandingChange::Role(Role::Moderator) | StandingChange::Affiliation(Affiliation::Admin) => {
            "+o".to_owned()
        }
        StandingChange::Affiliation(Affiliation::Owner) => "+q".to_owned(),
    };
    ModeChange { modes, letters: 1 }
}

/// Whether prefix modes `held` let their holder change others' modes: any mode above
/// voice (halfop, op and higher).
pub fn may_change_modes(held: &str, offered: &Prefixes) -> bool {
    let rank = |m: char| offered.modes().position(|o| o == m);
    let voice = rank('v').unwrap_or(usize::MAX);
    held.chars().any(|m| rank(m).is_some_and(|r| r < voice))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Prefixes {
        Prefixes::parse("(qaohv)~&@%+").unwrap()
    }

    fn modes(change: StandingChange, held: &str, offered: &Prefixes) -> Option<String> {
        plan(change, held, offered).unwrap().map(|c| c.modes)
    }

    #[test]
    fn voice_is_granted_and_revoked() {
        let p = Prefixes::default();
        let voice = StandingChange::Role(Role::Participant);
        let mute = StandingChange::Role(Role::Visitor);
        assert_eq!(modes(voice, "", &p).as_deref(), Some("+v"));
        assert_eq!(modes(voice, "v", &p), None, "already voiced");
        assert_eq!(modes(mute, "v", &p).as_deref(), Some("-v"));
        assert_eq!(modes(mute, "", &p), None);
    }

    #[test]
    fn moderator_is_op_unless_already_above_voice() {
        let mod_ = StandingChange::Role(Role::Moderator);
        assert_eq!(modes(mod_, "", &full()).as_deref(), Some("+o"));
        assert_eq!(modes(mod_, "v", &full()).as_deref(), Some("+o"));
        assert_eq!(modes(mod_, "h", &full()), None, "a halfop is a moderator");
        assert_eq!(modes(mod_, "q", &full()), None);
    }

    #[test]
    fn a_lower_standing_takes_the_higher_modes_away() {
        let member = StandingChange::Affiliation(Affiliation::Member);
        let c = plan(member, "ov", &full()).unwrap().unwrap();
        assert_eq!(c.modes, "-o");
        let c = plan(member, "o", &full()).unwrap().unwrap();
        assert_eq!((c.modes.as_str(), c.letters), ("+v-o", 2));
        assert_eq!(c.args("bob"), ["+v-o", "bob", "bob"]);
        let none = StandingChange::Affiliation(Affiliation::None);
        assert_eq!(modes(none, "qohv", &full()).as_deref(), Some("-qohv"));
        let admin = StandingChange::Affiliation(Affiliation::Admin);
        assert_eq!(modes(admin, "qv", &full()).as_deref(), Some("+o-q"));
    }

    #[test]
    fn a_change_to_nothing_is_asked_again_as_the_mode_that_gives_it() {
        let p = full();
        let again = |c| reassert(c, &p).args("bob");
        assert_eq!(again(StandingChange::Role(Role::Visitor)), ["-v", "bob"]);
        assert_eq!(
            again(StandingChange::Role(Role::Participant)),
            ["+v", "bob"]
        );
        assert_eq!(
            again(StandingChange::Affiliation(Affiliation::Admin)),
            ["+o", "bob"]
        );
        assert!(may_change_modes("h", &p));
        assert!(may_change_modes("vo", &p));
        assert!(!may_change_modes("v", &p));
        assert!(!may_change_modes("", &p));
    }

    #[test]
    fn a_mode_the_server_lacks_is_refused() {
        let owner = StandingChange::Affiliation(Affiliation::Owner);
        let err = plan(owner, "", &Prefixes::default()).unwrap_err();
        assert!(err.to_string().contains("+q"), "{err}");
        assert_eq!(modes(owner, "", &full()).as_deref(), Some("+q"));
    }
}
