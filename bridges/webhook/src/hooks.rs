//! The live set of hooks, shared by the HTTP server, the connector and the clients.
//!
//! Hooks come from the config at start and can be added or removed at run time (for the
//! core's admin and user ad-hoc commands) through [`HookSet::insert`] and
//! [`HookSet::remove`].

use crate::config::HookConfig;
use crate::ratelimit::RateLimiter;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One hook as it runs: its config and its rate limiter.
#[derive(Debug)]
pub struct Hook {
    /// The hook's config.
    pub config: HookConfig,
    limiter: Mutex<RateLimiter>,
}

impl Hook {
    /// A running hook for `config`.
    pub fn new(config: HookConfig) -> Self {
        Self {
            limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_minute)),
            config,
        }
    }

    /// Counts one request against the rate limit; `Err` holds the wait before the next.
    pub fn admit(&self) -> Result<(), Duration> {
        match self.limiter.lock() {
            Ok(mut limiter) => limiter.try_acquire(),
            // A panic elsewhere poisoned the lock: keep serving without a limit.
            Err(poisoned) => poisoned.into_inner().try_acquire(),
        }
    }
}

/// The hooks by name.
#[derive(Debug, Default)]
pub struct HookSet {
    hooks: RwLock<BTreeMap<String, Arc<Hook>>>,
}

impl HookSet {
    /// A set holding these hooks (names are assumed unique, as the config checks).
    pub fn new(hooks: impl IntoIterator<Item = HookConfig>) -> Self {
        let set = Self::default();
        for h in hooks {
            set.insert(h);
        }
        set
    }

    /// The hook with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Hook>> {
        self.read().get(name).cloned()
    }

    /// Adds or replaces a hook; returns the one it replaced.
    pub fn insert(&self, hook: HookConfig) -> Option<Arc<Hook>> {
        let name = hook.name.clone();
        self.write().insert(name, Arc::new(Hook::new(hook)))
    }

    /// Removes a hook; returns it.
    pub fn remove(&self, name: &str) -> Option<Arc<Hook>> {
        self.write().remove(name)
    }

    /// The names of all hooks, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Hook>>> {
        self.hooks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Hook>>> {
        self.hooks.write().unwrap_or_else(|p| p.into_inner())
    }
}
