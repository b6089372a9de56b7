//! A per-hook token bucket: `rate_limit_per_minute` requests, refilled evenly.

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
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0; // tokens per second
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.per_minute));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
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

    #[test]
    fn zero_means_unlimited() {
        let mut rl = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(rl.try_acquire().is_ok());
        }
    }
}
