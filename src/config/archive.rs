//! `[archive]`: how much room history (MAM) the gateway keeps, and how its pruner runs.

use super::{Problem, problem};
use crate::db::RetentionPolicy;
use crate::retention::PrunerConfig;
use serde::Deserialize;
use std::time::Duration;

/// The largest `prune_batch`: a bigger batch would hold SQLite's one writer too long.
pub const MAX_PRUNE_BATCH: u64 = 100_000;

/// `[archive]`: retention of the room archive. Both limits are optional and apply together
/// (a message goes when either says so); without them everything is kept, as before.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Messages older than this many days are removed (and message-map rows as old).
    pub max_age_days: Option<u32>,
    /// At most this many of the newest messages are kept per room of each user.
    pub max_messages_per_room: Option<u64>,
    /// Seconds between pruning passes (the first runs at start). Default 3600.
    pub prune_interval_secs: u64,
    /// Most rows one deletion removes. Default 1000.
    pub prune_batch: u64,
    /// Milliseconds the pruner waits between two batches. Default 10.
    pub prune_pause_ms: u64,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            max_age_days: None,
            max_messages_per_room: None,
            prune_interval_secs: 3600,
            prune_batch: 1000,
            prune_pause_ms: 10,
        }
    }
}

impl ArchiveSettings {
    /// What to keep.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age_ms: self
                .max_age_days
                .map(|days| i64::from(days) * 24 * 3600 * 1000),
            max_per_room: self.max_messages_per_room,
        }
    }

    /// How the pruner runs.
    pub fn pruner(&self) -> PrunerConfig {
        PrunerConfig {
            policy: self.policy(),
            interval: Duration::from_secs(self.prune_interval_secs),
            batch: self.prune_batch,
            pause: Duration::from_millis(self.prune_pause_ms),
        }
    }

    pub(super) fn validate(&self, problems: &mut Vec<Problem>) {
        if self.max_age_days == Some(0) {
            problems.push(problem(
                "archive.max_age_days",
                "must be at least 1 (leave it out to keep messages whatever their age)",
            ));
        }
        if self.max_messages_per_room == Some(0) {
            problems.push(problem(
                "archive.max_messages_per_room",
                "must be at least 1 (leave it out to keep any number of messages per room)",
            ));
        }
        if self.prune_interval_secs < 10 {
            problems.push(problem(
                "archive.prune_interval_secs",
                "must be at least 10 (seconds between pruning passes; default 3600)",
            ));
        }
        if !(1..=MAX_PRUNE_BATCH).contains(&self.prune_batch) {
            problems.push(problem(
                "archive.prune_batch",
                &format!(
                    "must be between 1 and {MAX_PRUNE_BATCH} (rows per deletion; default 1000)"
                ),
            ));
        }
        if self.prune_pause_ms > 60_000 {
            problems.push(problem(
                "archive.prune_pause_ms",
                "must be at most 60000 (milliseconds between two batches; default 10)",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_everything() {
        let s = ArchiveSettings::default();
        assert!(s.policy().keeps_everything());
        let mut problems = Vec::new();
        s.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn days_become_milliseconds() {
        let s = ArchiveSettings {
            max_age_days: Some(30),
            max_messages_per_room: Some(5000),
            ..ArchiveSettings::default()
        };
        let p = s.policy();
        assert_eq!(p.max_age_ms, Some(30 * 86_400_000));
        assert_eq!(p.max_per_room, Some(5000));
    }

    #[test]
    fn zero_and_out_of_range_values_are_problems() {
        let s = ArchiveSettings {
            max_age_days: Some(0),
            max_messages_per_room: Some(0),
            prune_interval_secs: 1,
            prune_batch: 0,
            prune_pause_ms: 61_000,
        };
        let mut problems = Vec::new();
        s.validate(&mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "archive.max_age_days",
                "archive.max_messages_per_room",
                "archive.prune_interval_secs",
                "archive.prune_batch",
                "archive.prune_pause_ms"
            ]
        );
    }

    const BASE: &str = "[bridges.fake]\ndomain = \"fake.localhost\"\nsecret = \"s\"\n";

    #[test]
    fn a_file_sets_the_limits() {
        let text = format!("[archive]\nmax_age_days = 90\nmax_messages_per_room = 500\n{BASE}");
        let s = crate::config::Settings::from_toml(&text, "t", false).expect("valid");
        assert_eq!(s.archive.max_age_days, Some(90));
        assert_eq!(s.archive.max_messages_per_room, Some(500));
        assert_eq!(s.archive.prune_batch, 1000);
        let none = crate::config::Settings::from_toml(BASE, "t", false).expect("valid");
        assert!(none.archive.policy().keeps_everything());
    }

    #[test]
    fn check_config_names_the_key_and_line() {
        let problems = |text: String| {
            crate::config::Settings::from_toml(&text, "t", false)
                .expect_err("problems")
                .to_string()
        };
        let zero = problems(format!("[archive]\nmax_age_days = 0\n{BASE}"));
        assert!(zero.contains("line 2: archive.max_age_days"), "{zero}");
        let typo = problems(format!("[archive]\n\nmax_mesages_per_room = 5\n{BASE}"));
        assert!(
            typo.contains("line 3: archive.max_mesages_per_room"),
            "{typo}"
        );
    }
}
