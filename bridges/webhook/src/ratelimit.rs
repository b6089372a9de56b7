//! Token buckets: one per hook for `rate_limit_per_minute` requests, and one per client
//! address for `auth_failures_per_minute` failed authentications ([`AuthFailures`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket holding up to one minute's allowance.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A full bucket for `per_minute` requests a minute; 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        Self::new_at(per_minute, Instant::now())
    }

    fn new_at(per_minute: u32, now: Instant) -> Self {
        Self {
            per_minute,
            tokens: f64::from(per_minute),
            updated: now,
        }
    }

    /// Takes one request's token, or says how long until one is available.
    pub fn try_acquire(&mut self) -> Result<(), Duration> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&mut self, now: Instant) -> Result<(), Duration> {
        self.check_at(now)?;
        if self.per_minute > 0 {
            self.tokens -= 1.0;
        }
        Ok(())
    }

    /// Whether a token is available at `now`, without taking it; `Err` holds the wait.
    fn check_at(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0; // tokens per second
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.per_minute));
        self.updated = now;
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether the bucket has refilled completely by `now` (it then remembers nothing).
    fn is_full_at(&mut self, now: Instant) -> bool {
        let _ = self.check_at(now);
        self.tokens >= f64::from(self.per_minute)
    }
}

/// The default number of client addresses [`AuthFailures`] remembers.
pub const AUTH_FAILURE_ADDRESSES: usize = 4096;

/// Failed authentications per client address: each address may fail `per_minute` times,
/// refilled evenly; past that its requests are refused before their credentials are looked
/// at. IPv6 addresses count per /64 (one host usually has a whole /64).
///
/// The table is bounded: when it holds `capacity` addresses, those that have not failed
/// for a minute are forgotten first, then the one that failed longest ago. An attacker with
/// many addresses thus cannot grow it, only push other addresses out early.
#[derive(Debug)]
pub struct AuthFailures {
    per_minute: u32,
    capacity: usize,
    by_address: Mutex<HashMap<IpAddr, RateLimiter>>,
}

impl AuthFailures {
    /// A table allowing `per_minute` failures per address (0 = no limit), remembering at
    /// most `capacity` addresses (at least 1).
    pub fn new(per_minute: u32, capacity: usize) -> Self {
        Self {
            per_minute,
            capacity: capacity.max(1),
            by_address: Mutex::default(),
        }
    }

    /// Whether `ip` may still try; `Err` holds the wait until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    /// Counts one failed authentication from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        self.record_failure_at(ip, Instant::now());
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        match self.lock().get_mut(&address_key(ip)) {
            Some(bucket) => bucket.check_at(now),
            None => Ok(()),
        }
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let key = address_key(ip);
        let mut map = self.lock();
        if !map.contains_key(&key) && map.len() >= self.capacity {
            map.retain(|_, bucket| !bucket.is_full_at(now));
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.updated)
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let bucket = map
            .entry(key)
            .or_insert_with(|| RateLimiter::new_at(self.per_minute, now));
        // An empty bucket stays empty: the failure is already being refused.
        let _ = bucket.try_acquire_at(now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, RateLimiter>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The address failures are counted under: IPv4 as is (also when mapped into IPv6), IPv6
/// by its /64 prefix.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_evenly() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new_at(3, t0);
        for _ in 0..3 {
            assert!(rl.try_acquire_at(t0).is_ok());
        }
        let wait = rl.try_acquire_at(t0).unwrap_err();
        assert!((19..=20).contains(&wait.as_secs()), "{wait:?}");
        assert!(rl.try_acquire_at(t0 + Duration::from_secs(20)).is_ok());
        assert!(rl.try_acquire_at(t0 + Duration::from_secs(21)).is_err());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_are_counted_per_address_then_refused_until_refilled() {
        let t0 = Instant::now();
        let f = AuthFailures::new(3, 16);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(f.check_at(a, t0).is_ok());
            f.record_failure_at(a, t0);
        }
        let wait = f.check_at(a, t0).unwrap_err();
        assert!((19..=20).contains(&wait.as_secs()), "{wait:?}");
        // Another address is not affected.
        assert!(f.check_at(ip("192.0.2.2"), t0).is_ok());
        // Failing again while refused does not dig the hole deeper.
        f.record_failure_at(a, t0);
        assert!(f.check_at(a, t0 + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let t0 = Instant::now();
        let f = AuthFailures::new(1, 16);
        f.record_failure_at(ip("2001:db8::1"), t0);
        assert!(f.check_at(ip("2001:db8::ffff:1"), t0).is_err());
        assert!(f.check_at(ip("2001:db8:0:1::1"), t0).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_quiet_addresses_first() {
        let t0 = Instant::now();
        let f = AuthFailures::new(2, 4);
        let noisy = ip("198.51.100.1");
        f.record_failure_at(noisy, t0);
        f.record_failure_at(noisy, t0);
        // Many addresses, each failing once, a second apart.
        for i in 0..1000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            f.record_failure_at(a, t0 + Duration::from_secs(1 + u64::from(i) / 100));
            assert!(f.len() <= 4, "{} addresses remembered", f.len());
        }
        assert_eq!(f.len(), 4);

        // Quiet addresses (full buckets) go before one still refused.
        let g = AuthFailures::new(2, 2);
        g.record_failure_at(ip("198.51.100.2"), t0);
        let later = t0 + Duration::from_secs(30);
        g.record_failure_at(noisy, later - Duration::from_secs(1));
        g.record_failure_at(noisy, later - Duration::from_secs(1));
        g.record_failure_at(ip("198.51.100.3"), later);
        assert!(
            g.check_at(noisy, later).is_err(),
            "the noisy address is kept"
        );
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn zero_failures_per_minute_means_unlimited_and_remembers_nothing() {
        let f = AuthFailures::new(0, 4);
        for _ in 0..100 {
            f.record_failure(ip("192.0.2.1"));
        }
        assert!(f.check(ip("192.0.2.1")).is_ok());
        assert!(f.is_empty());
    }

    #[test]
    fn zero_means_unlimited() {
        let mut rl = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(rl.try_acquire().is_ok());
        }
    }
}
