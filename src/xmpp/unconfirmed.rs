//! The stanzas written on the component link that the server has not confirmed yet,
//! kept as their XML text, back to back in one buffer.

use std::collections::VecDeque;

/// Past this many bytes of room, an emptied buffer is let go rather than kept for the next
/// burst.
const KEEP_ROOM: usize = 16 * 1024;

/// Stanzas written and not yet confirmed, oldest first, as the XML written.
///
/// One buffer for all of them: a burst of joins writes hundreds of stanzas that wait here
/// about a second for the server's confirmation; one small allocation each left them
/// scattered among the users' long-lived state, and the allocator's pages part empty
/// once they were gone (docs/performance.md).
#[derive(Debug, Default)]
pub struct Unconfirmed {
    text: String,
    /// Where each stanza ends in `text`.
    ends: VecDeque<usize>,
}

impl Unconfirmed {
    /// Keeps one more written stanza.
    pub fn push(&mut self, xml: &str) {
        self.text.push_str(xml);
        self.ends.push_back(self.text.len());
    }

    /// How many stanzas wait for confirmation.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The server confirmed the oldest `n`: forgets them. Returns how many were forgotten
    /// (fewer than `n` when fewer were kept).
    pub fn confirm(&mut self, n: usize) -> usize {
        let n = n.min(self.ends.len());
        if n == self.ends.len() {
            self.clear();
            return n;
        }
        if n > 0 {
            let cut = self.ends[n - 1];
            self.ends.drain(..n);
            self.text.drain(..cut);
            for end in &mut self.ends {
                *end -= cut;
            }
        }
        n
    }

    /// Takes every stanza, oldest first, leaving none.
    pub fn take_all(&mut self) -> Vec<String> {
        let mut start = 0;
        let all = self
            .ends
            .iter()
            .map(|&end| {
                let xml = self.text[start..end].to_owned();
                start = end;
                xml
            })
            .collect();
        self.clear();
        all
    }

    fn clear(&mut self) {
        if self.text.capacity() > KEEP_ROOM {
            *self = Self::default();
        } else {
            self.text.clear();
            self.ends.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(stanzas: &[&str]) -> Unconfirmed {
        let mut u = Unconfirmed::default();
        for s in stanzas {
            u.push(s);
        }
        u
    }

    #[test]
    fn stanzas_come_back_whole_and_in_order() {
        let mut u = with(&["<a/>", "<message>é</message>", "<b x='1'/>"]);
        assert_eq!(u.len(), 3);
        assert_eq!(u.take_all(), ["<a/>", "<message>é</message>", "<b x='1'/>"]);
        assert!(u.is_empty());
        assert!(u.take_all().is_empty());
    }

    #[test]
    fn a_confirmation_forgets_the_oldest() {
        let mut u = with(&["<one/>", "<two/>", "<three/>"]);
        assert_eq!(u.confirm(2), 2);
        assert_eq!(u.len(), 1);
        u.push("<four/>");
        assert_eq!(u.confirm(0), 0);
        assert_eq!(u.take_all(), ["<three/>", "<four/>"]);
    }

    #[test]
    fn confirming_more_than_kept_forgets_all() {
        let mut u = with(&["<one/>"]);
        assert_eq!(u.confirm(5), 1);
        assert!(u.is_empty());
        assert_eq!(u.confirm(1), 0);
    }

    #[test]
    fn a_burst_s_room_is_let_go_once_confirmed() {
        let big = "x".repeat(KEEP_ROOM);
        let mut u = with(&[&big, "<y/>"]);
        u.confirm(2);
        assert_eq!(u.text.capacity(), 0, "no room kept after a burst");
        let mut small = with(&["<z/>"]);
        small.confirm(1);
        assert!(small.text.capacity() > 0, "small room is kept for reuse");
    }
}
