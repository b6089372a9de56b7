//! Benchmarks of Estuary against real servers on loopback, run by hand (never by `cargo test`):
//!
//! - `irc_vs_biboumi`: Estuary's IRC bridge and Biboumi side by side behind one Prosody and one
//!   InspIRCd — relay throughput and latency both ways, and memory per joined user;
//! - `webhook_e2e`: Estuary's webhook bridge, from HTTP POST to an XMPP client;
//! - `fault_suite`: numbered messages both ways through one channel while a server or the
//!   gateway is restarted or killed, or poison input is sent, counting what was lost,
//!   duplicated or reordered (`docs/reliability.md`).
//!
//! The load clients are deliberately small and raw (plain TCP, a byte-level XML splitter, IRC
//! lines), so that the load client costs little CPU next to the servers it measures. See
//! `docs/performance.md` for how to run them and what they measured.

pub mod irc;
pub mod pg_cluster;
pub mod procs;
pub mod servers;
pub mod stats;
pub mod tally;
pub mod xmpp;

use std::sync::OnceLock;
use std::time::Instant;

/// The instant all timestamps in message bodies count from (the sender and the receiver are
/// the same process, so a monotonic clock can be shared).
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`origin`].
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Nanoseconds since [`origin`] at `at`.
pub fn ns_at(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_nanos() as u64
}
