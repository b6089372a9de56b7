//! A channel's members as one IRC connection knows them: by folded nick, the nick as shown
//! and the prefix modes held.
//!
//! A sorted vector rather than a map: every XMPP user has their own connection, whose
//! channels mostly hold few members as far as an idle puppet is concerned (a hash map
//! keeps room for several entries, a B-tree a whole node), and lookups are binary searches.

/// Members by folded nick: `(nick as shown, prefix modes)`.
#[derive(Debug, Default)]
pub struct ChanMembers(Vec<(String, (String, String))>);

impl ChanMembers {
    fn find(&self, folded: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(f, _)| f.as_str().cmp(folded))
    }

    /// Forgets everyone (the connection was lost).
    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }

    /// The folded nicks, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(f, _)| f)
    }

    /// The members, by folded nick.
    pub fn values(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter().map(|(_, m)| m)
    }

    /// The member with this folded nick.
    pub fn get(&self, folded: &str) -> Option<&(String, String)> {
        self.find(folded).ok().map(|i| &self.0[i].1)
    }

    /// The member with this folded nick, to change.
    pub fn get_mut(&mut self, folded: &str) -> Option<&mut (String, String)> {
        self.find(folded).ok().map(|i| &mut self.0[i].1)
    }

    /// Adds or replaces a member; returns the one replaced.
    pub fn insert(&mut self, folded: String, member: (String, String)) -> Option<(String, String)> {
        match self.find(&folded) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, member)),
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (folded, member));
                None
            }
        }
    }

    /// Removes a member.
    pub fn remove(&mut self, folded: &str) -> Option<(String, String)> {
        let removed = self.find(folded).ok().map(|i| self.0.remove(i).1);
        if self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(nick: &str, modes: &str) -> (String, String) {
        (nick.to_owned(), modes.to_owned())
    }

    #[test]
    fn members_by_folded_nick() {
        let mut ms = ChanMembers::default();
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
}
