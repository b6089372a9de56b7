//! Counting numbered messages at a receiver: what arrived live, what a rejoin's history or the
//! archive brought, what the sender was told failed, and from that what is missing, what
//! came twice (as sent, and after de-duplication by stanza-id) and what came out of order.
//! Used by the fault suite (`fault_suite`), whose senders number their messages 0..n.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The number in a message text `"<tag> <seq>"` (words after the number are allowed), or
/// `None` for any other text.
pub fn parse_seq(text: &str, tag: &str) -> Option<usize> {
    let rest = text.strip_prefix(tag)?.strip_prefix(' ')?;
    rest.split(' ').next()?.parse().ok()
}

/// What one receiver saw of messages numbered `0..n`.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Live receptions per number (duplicates included).
    live: Vec<u32>,
    /// Receptions per number that a de-duplicating client keeps (stanza-id not seen before,
    /// or no stanza-id), live and history together.
    kept: Vec<u32>,
    /// Receptions per number, live and history together (what a client without
    /// de-duplication shows).
    raw: Vec<u32>,
    /// Received in a rejoin's history.
    history: Vec<bool>,
    /// Found in the archive (MAM), with how many times.
    archive: Vec<u32>,
    /// The sender was told this one failed.
    errors: Vec<bool>,
    stanza_ids: HashSet<String>,
    highest_live: Option<usize>,
    out_of_order: usize,
    last_live_at: Option<Instant>,
    max_gap: Duration,
    /// Numbers outside 0..n (should never happen; counted, not stored).
    foreign: usize,
}

/// A receiver's figures for one direction of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages the sender wrote.
    pub sent: usize,
    /// Distinct numbers received live.
    pub live: usize,
    /// Distinct numbers first received in a rejoin's history (not live).
    pub history: usize,
    /// Distinct numbers found in the archive.
    pub archive: usize,
    /// Distinct numbers only in the archive (neither live, nor history, nor an error).
    pub archive_only: usize,
    /// Numbers below `sent` with no trace at all: neither received, nor archived, nor an
    /// error told to the sender (silent losses).
    pub missing: usize,
    /// Receptions beyond the first of a number, live and history together.
    pub dup_raw: usize,
    /// The same, after dropping receptions whose stanza-id was seen before.
    pub dup_dedup: usize,
    /// Receptions beyond the first of a number in the archive.
    pub dup_archive: usize,
    /// Live first receptions of a number lower than one already received live.
    pub out_of_order: usize,
    /// Distinct numbers the sender got an error for.
    pub errors: usize,
    /// Of those, how many were delivered all the same (live or history).
    pub errors_delivered: usize,
    /// The longest time between two live receptions.
    pub max_gap: Duration,
    /// Receptions with a number outside `0..n`.
    pub foreign: usize,
}

impl Tally {
    /// A receiver of messages numbered `0..n`.
    pub fn new(n: usize) -> Tally {
        Tally {
            live: vec![0; n],
            kept: vec![0; n],
            raw: vec![0; n],
            history: vec![false; n],
            archive: vec![0; n],
            errors: vec![false; n],
            stanza_ids: HashSet::new(),
            highest_live: None,
            out_of_order: 0,
            last_live_at: None,
            max_gap: Duration::ZERO,
            foreign: 0,
        }
    }

    fn index(&mut self, seq: usize) -> Option<usize> {
        if seq < self.live.len() {
            Some(seq)
        } else {
            self.foreign += 1;
            None
        }
    }

    /// Counts one reception; a de-duplicating client keeps it unless its stanza-id was seen.
    fn keep(&mut self, seq: usize, stanza_id: Option<&str>) {
        let new = stanza_id.is_none_or(|id| self.stanza_ids.insert(id.to_string()));
        if new {
            self.kept[seq] += 1;
        }
        self.raw[seq] += 1;
    }

    /// Message `seq` received live at `at`, with its stanza-id if it had one.
    pub fn live(&mut self, seq: usize, stanza_id: Option<&str>, at: Instant) {
        if let Some(last) = self.last_live_at {
            self.max_gap = self.max_gap.max(at.saturating_duration_since(last));
        }
        self.last_live_at = Some(at);
        let Some(seq) = self.index(seq) else { return };
        if self.live[seq] == 0 {
            match self.highest_live {
                Some(h) if seq < h => self.out_of_order += 1,
                _ => self.highest_live = Some(seq),
            }
        }
        self.live[seq] += 1;
        self.keep(seq, stanza_id);
    }

    /// Message `seq` received in the history a room sends on joining.
    pub fn history(&mut self, seq: usize, stanza_id: Option<&str>) {
        let Some(seq) = self.index(seq) else { return };
        self.history[seq] = true;
        self.keep(seq, stanza_id);
    }

    /// Message `seq` found in the archive.
    pub fn archived(&mut self, seq: usize) {
        let Some(seq) = self.index(seq) else { return };
        self.archive[seq] += 1;
    }

    /// The sender was told that message `seq` failed.
    pub fn error(&mut self, seq: usize) {
        let Some(seq) = self.index(seq) else { return };
        self.errors[seq] = true;
    }

    /// Whether every number below `sent` was received (live or history) or reported failed.
    pub fn settled(&self, sent: usize) -> bool {
        (0..sent.min(self.live.len())).all(|i| self.raw[i] > 0 || self.errors[i])
    }

    /// When the last live reception was.
    pub fn last_live_at(&self) -> Option<Instant> {
        self.last_live_at
    }

    /// Numbers below `sent` that left no trace (see [`Summary::missing`]).
    pub fn missing(&self, sent: usize) -> Vec<usize> {
        (0..sent.min(self.live.len()))
            .filter(|&i| self.raw[i] == 0 && !self.errors[i] && self.archive[i] == 0)
            .collect()
    }

    /// Numbers found only in the archive (see [`Summary::archive_only`]).
    pub fn archive_only(&self) -> Vec<usize> {
        (0..self.live.len())
            .filter(|&i| self.raw[i] == 0 && !self.errors[i] && self.archive[i] > 0)
            .collect()
    }

    /// Numbers the sender got an error for.
    pub fn errored(&self) -> Vec<usize> {
        (0..self.live.len()).filter(|&i| self.errors[i]).collect()
    }

    /// Numbers received (live or history) but absent from the archive.
    pub fn delivered_not_archived(&self) -> Vec<usize> {
        (0..self.live.len())
            .filter(|&i| self.raw[i] > 0 && self.archive[i] == 0)
            .collect()
    }

    /// Numbers received more than once by a de-duplicating client.
    pub fn duplicated(&self) -> Vec<usize> {
        (0..self.live.len()).filter(|&i| self.kept[i] > 1).collect()
    }

    /// The figures, for a sender that wrote numbers `0..sent`.
    pub fn summary(&self, sent: usize) -> Summary {
        let sent = sent.min(self.live.len());
        let mut s = Summary {
            sent,
            out_of_order: self.out_of_order,
            max_gap: self.max_gap,
            foreign: self.foreign,
            ..Summary::default()
        };
        let extra = |c: u32| c.saturating_sub(1) as usize;
        for i in 0..self.live.len() {
            let delivered = self.raw[i] > 0;
            s.live += usize::from(self.live[i] > 0);
            s.history += usize::from(self.live[i] == 0 && self.history[i]);
            s.archive += usize::from(self.archive[i] > 0);
            s.archive_only += usize::from(!delivered && !self.errors[i] && self.archive[i] > 0);
            s.errors += usize::from(self.errors[i]);
            s.errors_delivered += usize::from(self.errors[i] && delivered);
            s.dup_raw += extra(self.raw[i]);
            s.dup_dedup += extra(self.kept[i]);
            s.dup_archive += extra(self.archive[i]);
            if i < sent && !delivered && !self.errors[i] && self.archive[i] == 0 {
                s.missing += 1;
            }
        }
        s
    }
}

/// Sorted numbers as ranges: `[1, 2, 3, 7, 9, 10]` → `"1-3, 7, 9-10"`; empty: `"none"`.
pub fn ranges(seqs: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_ranges() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[]), "none");
    }

    #[test]
    fn each_class_lists_its_numbers() {
        let mut t = Tally::new(6);
        let now = Instant::now();
        t.live(0, Some("a"), now);
        t.archived(0);
        t.live(1, Some("b"), now);
        t.history(1, Some("c"));
        t.error(2);
        t.archived(3);
        assert_eq!(t.missing(6), [4, 5]);
        assert_eq!(t.archive_only(), [3]);
        assert_eq!(t.errored(), [2]);
        assert_eq!(t.delivered_not_archived(), [1]);
        assert_eq!(t.duplicated(), [1]);
    }

    #[test]
    fn numbers_are_read_after_their_tag_only() {
        assert_eq!(parse_seq("i2x 42", "i2x"), Some(42));
        assert_eq!(parse_seq("i2x 7 padding", "i2x"), Some(7));
        assert_eq!(parse_seq("x2i 7", "i2x"), None);
        assert_eq!(parse_seq("i2x7", "i2x"), None);
        assert_eq!(parse_seq("i2x -1", "i2x"), None);
        assert_eq!(parse_seq("", "i2x"), None);
    }

    #[test]
    fn a_clean_run_has_nothing_missing_twice_or_late() {
        let mut t = Tally::new(3);
        let t0 = Instant::now();
        for i in 0..3 {
            t.live(
                i,
                Some(&format!("s{i}")),
                t0 + Duration::from_millis(10 * i as u64),
            );
            t.archived(i);
        }
        let s = t.summary(3);
        assert_eq!((s.sent, s.live, s.archive, s.missing), (3, 3, 3, 0));
        assert_eq!(
            (s.dup_raw, s.dup_dedup, s.out_of_order, s.errors),
            (0, 0, 0, 0)
        );
        assert_eq!(s.max_gap, Duration::from_millis(10));
        assert!(t.settled(3));
    }

    #[test]
    fn history_repeating_a_live_message_is_a_raw_duplicate_only() {
        let mut t = Tally::new(2);
        let now = Instant::now();
        t.live(0, Some("a"), now);
        t.history(0, Some("a"));
        t.history(1, Some("b"));
        let s = t.summary(2);
        assert_eq!((s.live, s.history), (1, 1));
        assert_eq!((s.dup_raw, s.dup_dedup), (1, 0));
        // The same number under a new stanza-id is a duplicate a client shows.
        t.history(1, Some("c"));
        assert_eq!(t.summary(2).dup_dedup, 1);
    }

    #[test]
    fn missing_counts_only_what_left_no_trace() {
        let mut t = Tally::new(5);
        t.live(0, None, Instant::now());
        t.error(1);
        t.archived(2);
        let s = t.summary(5);
        assert_eq!(s.missing, 2, "3 and 4");
        assert_eq!((s.errors, s.archive_only), (1, 1));
        assert!(!t.settled(5));
        assert!(t.settled(2), "0 delivered, 1 reported");
        // Only what was sent can be missing.
        assert_eq!(t.summary(3).missing, 0);
    }

    #[test]
    fn late_first_arrivals_are_out_of_order_and_repeats_are_not() {
        let mut t = Tally::new(5);
        let now = Instant::now();
        for i in [0, 2, 1, 2, 3, 4] {
            t.live(i, None, now);
        }
        let s = t.summary(5);
        assert_eq!(s.out_of_order, 1, "1 after 2");
        assert_eq!((s.dup_raw, s.dup_dedup), (1, 1), "2 twice, no stanza-id");
    }

    #[test]
    fn foreign_numbers_are_counted_not_stored() {
        let mut t = Tally::new(2);
        t.live(9, None, Instant::now());
        t.archived(9);
        t.error(9);
        let s = t.summary(2);
        assert_eq!((s.foreign, s.live, s.errors, s.missing), (3, 0, 0, 2));
    }

    #[test]
    fn errors_for_delivered_messages_are_counted_apart() {
        let mut t = Tally::new(1);
        t.live(0, None, Instant::now());
        t.error(0);
        let s = t.summary(1);
        assert_eq!((s.errors, s.errors_delivered, s.missing), (1, 1, 0));
    }
}
