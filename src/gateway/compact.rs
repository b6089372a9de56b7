//! A sorted, vector-backed collection for the per-room state every joined user keeps.
//!
//! A gateway holds one [`Room`](super::session::Room) per user and joined room, and most of
//! them are small (one resource, a handful of members). A B-tree allocates a whole node
//! (11 slots) for its first entry, which for members cost about 1 KiB per room; this keeps
//! exactly what it holds, sorted by key so that iteration order stays stable (presence
//! order, tests), with lookups by binary search. Inserts and removals move the tail, which
//! is cheap for the sizes rooms have.

use estuary_bridge_api::Member;
use estuary_bridge_api::small_map::{insert_exact, remove_shrinking};

/// What an item of a [`Sorted`] collection is known by.
pub trait Keyed {
    /// The key: each key is in a collection at most once.
    fn key(&self) -> &str;
}

impl Keyed for String {
    fn key(&self) -> &str {
        self
    }
}

impl Keyed for Member {
    fn key(&self) -> &str {
        &self.nick
    }
}

/// Items sorted by their key, each key once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sorted<T>(Vec<T>);

/// A room's occupants by nick (the user included).
pub type Members = Sorted<Member>;

/// A room's joined resources (full JIDs).
pub type StringSet = Sorted<String>;

impl<T> Default for Sorted<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Keyed> Sorted<T> {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|item| item.key().cmp(key))
    }

    /// The item with this key.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.find(key).ok().map(|i| &self.0[i])
    }

    /// Whether an item has this key.
    pub fn contains(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Adds `item`, or replaces the one with its key; returns the one replaced.
    pub fn insert(&mut self, item: T) -> Option<T> {
        match self.find(item.key()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i], item)),
            Err(i) => {
                insert_exact(&mut self.0, i, item);
                None
            }
        }
    }

    /// Removes the item with this key; the room it leaves is given back once less than
    /// half is used (all of it when the collection is emptied).
    pub fn remove(&mut self, key: &str) -> Option<T> {
        let i = self.find(key).ok()?;
        Some(remove_shrinking(&mut self.0, i))
    }

    /// The items, by key.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Keyed> FromIterator<T> for Sorted<T> {
    /// Collects items; of two with one key, the later wins.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v: Vec<T> = iter.into_iter().collect();
        // Stable: equal keys keep their order, so dedup keeps the last after reversing.
        v.reverse();
        v.sort_by(|a, b| a.key().cmp(b.key()));
        v.dedup_by(|later, earlier| later.key() == earlier.key());
        v.shrink_to_fit();
        Self(v)
    }
}

impl<'a, T> IntoIterator for &'a Sorted<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> IntoIterator for Sorted<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
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
        let nicks: Vec<&str> = ms.iter().map(|m| m.nick.as_str()).collect();
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
        assert!(s.insert("b".into()).is_none());
        assert!(s.insert("a".into()).is_none());
        assert!(s.insert("a".into()).is_some(), "already there");
        assert_eq!(s.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert!(s.contains("b"));
        assert!(s.remove("a").is_some() && s.remove("b").is_some());
        assert!(s.remove("b").is_none());
        assert!(s.is_empty());
        assert_eq!(s.0.capacity(), 0);
    }
}
