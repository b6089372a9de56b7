//! What every user's connection to one IRC server has in common (the server's name, where
//! and how to reach it, flood control, the CTCP VERSION answer), kept once per server
//! instead of once per connection.
//!
//! A gateway holds one connection per user and server, so whatever a connection keeps is
//! multiplied by the number of users: [`Profiles`] hands every connection with the same
//! [`ServerProfile`] the same [`Arc`]. A user whose own settings change a profile's field
//! (a port, TLS, a throttle of their own) gets a profile of their own.

use crate::config::{Endpoint, Throttle};
use estuary_bridge_api::OutboundPolicy;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How to reach one IRC server and behave there, the same for every user who has not
/// changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerProfile {
    /// The server's host name.
    pub server: String,
    /// The endpoints to try, in order.
    pub endpoints: Vec<Endpoint>,
    /// Whether to check the certificate.
    pub verify_certificate: bool,
    /// Flood control.
    pub throttle: Throttle,
    /// The CTCP VERSION answer.
    pub version: String,
    /// How long to stay connected with no channel joined.
    pub idle_disconnect: Duration,
    /// Where connections may go (the core's `[outbound]` policy, one for the bridge).
    pub outbound: Arc<OutboundPolicy>,
    /// The bridge-wide limit on connections being opened at once.
    pub opening: Opening,
}

/// How long a connection waits for its turn to open before it gives up.
pub const OPENING_WAIT: Duration = Duration::from_secs(20);

/// The bridge-wide limit on connections being opened (resolved, connected, TLS handshake)
/// at once (`limits.opening_connections`): one is opened once a turn is free, so that a
/// restart with every user reconnecting, or a user opening many servers, does not open
/// them all at once. Shared by every profile; equal only to itself.
#[derive(Clone, Debug)]
pub struct Opening {
    turns: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
}

impl Opening {
    /// `limit` connections may be opening at once; one waits at most `wait` for its turn.
    pub fn new(limit: usize, wait: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            wait,
        }
    }

    /// Waits for a turn to open a connection; the turn ends when the permit is dropped.
    /// A text for the user when no turn came in time.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, String> {
        let busy = || {
            format!(
                "the gateway is busy opening {} other connection(s); try again in a minute",
                self.limit
            )
        };
        match tokio::time::timeout(self.wait, self.turns.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }
}

impl Default for Opening {
    /// The default limit, with the default wait.
    fn default() -> Self {
        Self::new(
            crate::config::Limits::default().opening_connections,
            OPENING_WAIT,
        )
    }
}

impl PartialEq for Opening {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.turns, &other.turns)
    }
}

/// The profiles in use, each once (an interner). Profiles no connection uses any more are
/// dropped the next time one is added.
#[derive(Debug, Default)]
pub struct Profiles {
    known: Mutex<Vec<Arc<ServerProfile>>>,
}

impl Profiles {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `profile`: an existing equal one, else `profile` itself, now
    /// shared.
    pub fn intern(&self, profile: ServerProfile) -> Arc<ServerProfile> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(same) = known.iter().find(|p| ***p == profile) {
            return Arc::clone(same);
        }
        // Only this set holds it: no connection uses it any more.
        known.retain(|p| Arc::strong_count(p) > 1);
        let shared = Arc::new(profile);
        known.push(Arc::clone(&shared));
        shared
    }

    /// How many profiles are kept.
    pub fn len(&self) -> usize {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether no profile is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One set of turns for all the profiles of a test, as a bridge has.
    fn shared_opening() -> Opening {
        static OPENING: std::sync::OnceLock<Opening> = std::sync::OnceLock::new();
        OPENING.get_or_init(Opening::default).clone()
    }

    fn profile(server: &str, port: u16) -> ServerProfile {
        ServerProfile {
            server: server.into(),
            endpoints: vec![Endpoint { port, tls: false }],
            verify_certificate: true,
            throttle: Throttle::default(),
            version: "Estuary".into(),
            idle_disconnect: Duration::from_secs(60),
            outbound: Arc::default(),
            opening: shared_opening(),
        }
    }

    #[test]
    fn equal_profiles_are_shared() {
        let profiles = Profiles::new();
        let a = profiles.intern(profile("irc.example.org", 6667));
        let b = profiles.intern(profile("irc.example.org", 6667));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(profiles.len(), 1);
    }

    #[test]
    fn a_changed_field_makes_a_profile_of_its_own() {
        let profiles = Profiles::new();
        let a = profiles.intern(profile("irc.example.org", 6667));
        let b = profiles.intern(profile("irc.example.org", 7000));
        let c = profiles.intern(profile("irc.other.org", 6667));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(profiles.len(), 3);
    }

    #[test]
    fn unused_profiles_are_dropped_when_one_is_added() {
        let profiles = Profiles::new();
        let kept = profiles.intern(profile("irc.example.org", 6667));
        drop(profiles.intern(profile("irc.gone.org", 6667)));
        assert_eq!(profiles.len(), 2);
        let _new = profiles.intern(profile("irc.new.org", 6667));
        assert_eq!(profiles.len(), 2, "the unused one went");
        assert!(Arc::ptr_eq(
            &kept,
            &profiles.intern(profile("irc.example.org", 6667))
        ));
    }

    #[tokio::test]
    async fn opening_turns_are_limited_and_waited_for() {
        let opening = Opening::new(1, Duration::from_millis(50));
        let first = opening.turn().await.expect("a free turn");
        let busy = opening.turn().await.unwrap_err();
        assert!(busy.contains("busy opening 1 other"), "{busy}");
        drop(first);
        assert!(opening.turn().await.is_ok(), "the turn is free again");
        let other = Opening::new(1, Duration::from_millis(50));
        assert_eq!(opening, opening.clone());
        assert_ne!(opening, other, "equal only to itself");
    }
}
