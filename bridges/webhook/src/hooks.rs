//! The live set of hooks, shared by the HTTP server, the connector and the clients.
//!
//! Hooks come from the config at start ([`HookOrigin::Config`], read-only) and are added or
//! removed at run time by the bridge's ad-hoc commands ([`crate::commands`]); those carry the
//! user who added them ([`HookOrigin::Command`]), on whose login they are stored.

use crate::config::HookConfig;
use crate::ratelimit::RateLimiter;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Where a hook comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookOrigin {
    /// `[[bridges.webhook.hooks]]`: read-only at run time.
    Config,
    /// Added by an ad-hoc command; stored in the metadata of `owner`'s login.
    Command {
        /// The bare JID of the user who added it.
        owner: String,
    },
}

impl HookOrigin {
    /// The user who added the hook by command, if it was.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Self::Config => None,
            Self::Command { owner } => Some(owner),
        }
    }
}

/// One hook as it runs: its config, where it comes from and its rate limiter.
#[derive(Debug)]
pub struct Hook {
    /// The hook's config.
    pub config: HookConfig,
    /// Where it comes from.
    pub origin: HookOrigin,
    limiter: Mutex<RateLimiter>,
}

impl Hook {
    /// A running hook for `config`.
    pub fn new(config: HookConfig, origin: HookOrigin) -> Self {
        Self {
            limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_minute)),
            config,
            origin,
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
    /// A set holding these config hooks (names are assumed unique, as the config checks).
    pub fn new(hooks: impl IntoIterator<Item = HookConfig>) -> Self {
        let set = Self::default();
        for h in hooks {
            set.insert(h, HookOrigin::Config);
        }
        set
    }

    /// The hook with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Hook>> {
        self.read().get(name).cloned()
    }

    /// Adds or replaces a hook; returns the one it replaced.
    pub fn insert(&self, hook: HookConfig, origin: HookOrigin) -> Option<Arc<Hook>> {
        let name = hook.name.clone();
        self.write().insert(name, Arc::new(Hook::new(hook, origin)))
    }

    /// Adds a hook unless its name is taken; returns the hook holding the name if it is.
    pub fn insert_new(&self, hook: HookConfig, origin: HookOrigin) -> Result<(), Arc<Hook>> {
        let mut hooks = self.write();
        if let Some(existing) = hooks.get(&hook.name) {
            return Err(existing.clone());
        }
        hooks.insert(hook.name.clone(), Arc::new(Hook::new(hook, origin)));
        Ok(())
    }

    /// Every hook, by name.
    pub fn all(&self) -> Vec<Arc<Hook>> {
        self.read().values().cloned().collect()
    }

    /// The hooks `owner` added by command, by name.
    pub fn owned_by(&self, owner: &str) -> Vec<Arc<Hook>> {
        self.read()
            .values()
            .filter(|h| h.origin.owner() == Some(owner))
            .cloned()
            .collect()
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
