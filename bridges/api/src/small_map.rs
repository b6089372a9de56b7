//! [`SmallMap`]: a map for the handful of entries a user's state keeps per kind (the rooms
//! of a gateway session, the channels of an IRC connection).
//!
//! Every user holds such maps for as long as they are connected, so what an almost empty
//! map costs is memory per user: a hash map with one entry keeps a 48-byte header and a
//! table of four buckets (about 150 bytes); this keeps a 24-byte header and grows one entry
//! at a time, giving room back once less than half is used (all of it when emptied); the
//! gateway's `compact::Sorted` keeps the same policy through [`insert_exact`] and
//! [`remove_shrinking`]. Lookups are binary searches, which for a few entries
//! are as fast; inserts and removals move the tail, cheap at the sizes these maps have.

use std::borrow::Borrow;

/// Inserts `item` at `at` growing the vector by exactly one slot: the growth policy of
/// [`SmallMap`], shared with other sorted vectors kept per user.
pub fn insert_exact<T>(items: &mut Vec<T>, at: usize, item: T) {
    items.reserve_exact(1);
    items.insert(at, item);
}

/// Removes the item at `at`, giving room back once less than half is used (all of it when
/// the vector is emptied): the shrink policy of [`SmallMap`], shared likewise.
pub fn remove_shrinking<T>(items: &mut Vec<T>, at: usize) -> T {
    let removed = items.remove(at);
    if items.len() * 2 < items.capacity() {
        items.shrink_to_fit();
    }
    removed
}

/// A map kept as a vector sorted by key, allocated to its exact length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value for `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets the value for `key`; returns the one it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                insert_exact(&mut self.entries, i, (key, value));
                None
            }
        }
    }

    /// The value for `key`, made with `make` first if there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                insert_exact(&mut self.entries, i, (key, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Takes the value for `key` out; the room it leaves is given back once less than half
    /// is used (all of it when the map is emptied).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        Some(remove_shrinking(&mut self.entries, i).1)
    }

    /// Forgets every entry and gives back their room.
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The values, in key order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// The values, in key order, taken out.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.entries.into_iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V: Default> SmallMap<K, V> {
    /// The value for `key`, a default one first if there is none.
    pub fn get_or_default(&mut self, key: K) -> &mut V {
        self.get_or_insert_with(key, V::default)
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_unique() {
        let mut m: SmallMap<String, u32> = SmallMap::new();
        assert_eq!(m.insert("#b".into(), 1), None);
        assert_eq!(m.insert("#a".into(), 2), None);
        assert_eq!(m.insert("#b".into(), 3), Some(1));
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["#a", "#b"]
        );
        assert_eq!(m.get("#b"), Some(&3));
        assert!(m.contains_key("#a") && !m.contains_key("#c"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn grows_one_entry_at_a_time_and_gives_room_back_under_half() {
        let mut m: SmallMap<String, u64> = SmallMap::new();
        assert_eq!(m.entries.capacity(), 0, "an empty map allocates nothing");
        m.insert("#one".into(), 1);
        assert_eq!(m.entries.capacity(), 1);
        m.insert("#two".into(), 2);
        m.insert("#three".into(), 3);
        assert_eq!(m.entries.capacity(), 3);
        assert_eq!(m.remove("#one"), Some(1));
        assert_eq!(m.entries.capacity(), 3, "two of three used: kept");
        assert_eq!(m.remove("#one"), None);
        assert_eq!(m.remove("#two"), Some(2));
        assert_eq!(m.entries.capacity(), 1, "one of three used: given back");
        assert_eq!(m.remove("#three"), Some(3));
        assert!(m.is_empty());
        assert_eq!(m.entries.capacity(), 0);
        m.insert("#four".into(), 4);
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.entries.capacity(), 0, "cleared: nothing kept");
    }

    /// An IRC channel's members by folded nick: `(nick as shown, prefix modes)`.
    #[test]
    fn members_by_folded_nick() {
        fn m(nick: &str, modes: &str) -> (String, String) {
            (nick.to_owned(), modes.to_owned())
        }
        let mut ms: SmallMap<String, (String, String)> = SmallMap::default();
        assert!(ms.insert("zed".into(), m("Zed", "")).is_none());
        assert!(ms.insert("amy".into(), m("Amy", "o")).is_none());
        assert_eq!(ms.insert("zed".into(), m("ZED", "v")), Some(m("Zed", "")));
        assert_eq!(ms.keys().collect::<Vec<_>>(), ["amy", "zed"]);
        ms.get_mut("amy").expect("there").1.push('v');
        assert_eq!(ms.get("amy"), Some(&m("Amy", "ov")));
        assert_eq!(ms.values().count(), 2);
        assert_eq!(ms.remove("amy"), Some(m("Amy", "ov")));
        assert_eq!(ms.remove("amy"), None);
        ms.clear();
        assert!(ms.get("zed").is_none());
    }

    #[test]
    fn get_or_insert_makes_once_and_changes_in_place() {
        let mut m: SmallMap<String, Vec<u8>> = SmallMap::new();
        m.get_or_default("#r".into()).push(1);
        m.get_or_insert_with("#r".into(), || panic!("exists"))
            .push(2);
        *m.get_mut("#r").unwrap() = vec![9];
        for v in m.values_mut() {
            v.push(10);
        }
        assert_eq!(m.values().collect::<Vec<_>>(), [&vec![9, 10]]);
        assert_eq!(m.into_values().collect::<Vec<_>>(), [vec![9, 10]]);
    }
}
