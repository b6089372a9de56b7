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

    fn profile(server: &str, port: u16) -> ServerProfile {
        ServerProfile {
            server: server.into(),
            endpoints: vec![Endpoint { port, tls: false }],
            verify_certificate: true,
            throttle: Throttle::default(),
            version: "Estuary".into(),
            idle_disconnect: Duration::from_secs(60),
            outbound: Arc::default(),
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
}
