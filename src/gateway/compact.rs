//! Sorted, vector-backed collections for the per-room state every joined user keeps.
//!
//! A gateway holds one [`Room`](super::session::Room) per user and joined room, and most of
//! them are small (one resource, a handful of members). A B-tree allocates a whole node
//! (11 slots) for its first entry, which for members cost about 1 KiB per room; these keep
//! exactly what they hold, sorted so that iteration order stays stable (presence order,
//! tests), with lookups by binary search. Inserts and removals move the tail, which is
//! cheap for the sizes rooms have.

use estuary_bridge_api::Member;

/// A room's occupants by nick (the user included), sorted by nick; each nick once.
#[derive(Debug, Default, Clone)]
pub struct Members(Vec<Member>);

impl Members {
    fn find(&self, nick: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|m| m.nick.as_str().cmp(nick))
    }

    /// The member with this nick.
    pub fn get(&self, nick: &str) -> Option<&Member> {
        self.find(nick).ok().map(|i| &self.0[i])
    }

    /// Whether someone has this nick.
    pub fn contains(&self, nick: &str) -> bool {
        self.find(nick).is_ok()
    }

    /// Adds or replaces the member with `member.nick`; returns the one replaced.
    pub fn insert(&mut self, member: Member) -> Option<Member> {
        match self.find(&member.nick) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i], member)),
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, member);
                None
            }
        }
    }

    /// Removes the member with this nick.
    pub fn remove(&mut self, nick: &str) -> Option<Member> {
        let removed = self.find(nick).ok().map(|i| self.0.remove(i));
        if self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
        removed
    }

    /// The members, by nick.
    pub fn values(&self) -> impl Iterator<Item = &Member> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is nobody.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Member> for Members {
    /// Collects members; of two with one nick, the later wins.
    fn from_iter<I: IntoIterator<Item = Member>>(iter: I) -> Self {
        let mut v: Vec<Member> = iter.into_iter().collect();
        // Stable: equal nicks keep their order, so dedup keeps the last after reversing.
        v.reverse();
        v.sort_by(|a, b| a.nick.cmp(&b.nick));
        v.dedup_by(|later, earlier| later.nick == earlier.nick);
        v.shrink_to_fit();
        Self(v)
    }
}

/// A sorted set of strings (a room's joined resources), each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StringSet(Vec<String>);

impl StringSet {
    /// Whether `s` is in.
    pub fn contains(&self, s: &str) -> bool {
        self.0.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
    }

    /// Adds `s`; false when it was there already.
    pub fn insert(&mut self, s: String) -> bool {
        match self.0.binary_search(&s) {
            Ok(_) => false,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, s);
                true
            }
        }
    }

    /// Removes `s`; false when it was not there.
    pub fn remove(&mut self, s: &str) -> bool {
        match self.0.binary_search_by(|x| x.as_str().cmp(s)) {
            Ok(i) => {
                self.0.remove(i);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The strings, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a StringSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for StringSet {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_bridge_api::Role;

    fn m(nick: &str, role: Role) -> Member {
        let mut m = Member::participant(nick);
        m.role = role;
        m
    }

    #[test]
    fn members_stay_sorted_and_unique() {
        let mut ms: Members = [m("zed", Role::Participant), m("amy", Role::Visitor)]
            .into_iter()
            .collect();
        assert!(ms.insert(m("kim", Role::Participant)).is_none());
        let old = ms.insert(m("amy", Role::Moderator)).expect("replaced");
        assert_eq!(old.role, Role::Visitor);
        let nicks: Vec<&str> = ms.values().map(|m| m.nick.as_str()).collect();
        assert_eq!(nicks, ["amy", "kim", "zed"]);
        assert_eq!(ms.get("amy").map(|m| m.role), Some(Role::Moderator));
        assert!(ms.remove("kim").is_some());
        assert!(ms.remove("kim").is_none());
        assert!(!ms.contains("kim") && ms.contains("zed"));
        assert_eq!(ms.len(), 2);
    }

    #[test]
    fn members_collected_with_a_repeated_nick_keep_the_last() {
        let ms: Members = [
            m("a", Role::Visitor),
            m("b", Role::Visitor),
            m("a", Role::Moderator),
        ]
        .into_iter()
        .collect();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms.get("a").map(|m| m.role), Some(Role::Moderator));
        assert_eq!(ms.0.capacity(), 2, "no spare room kept");
    }

    #[test]
    fn string_set_is_sorted_and_frees_when_empty() {
        let mut s = StringSet::default();
        assert!(s.insert("b".into()));
        assert!(s.insert("a".into()));
        assert!(!s.insert("a".into()));
        assert_eq!(s.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert!(s.contains("b"));
        assert!(s.remove("a") && s.remove("b"));
        assert!(!s.remove("b"));
        assert!(s.is_empty());
        assert_eq!(s.0.capacity(), 0);
    }
}
