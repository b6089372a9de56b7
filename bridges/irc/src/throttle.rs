//! Outgoing flood control: a token bucket per IRC connection. Lines wait for a token; none
//! is ever dropped, and they leave in the order they were queued.

use crate::config::Throttle;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `burst` tokens at most, refilled at `lines_per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens per second (`f32`: every connection holds a bucket, and no throttle needs
    /// more than its seven digits).
    rate: f32,
    capacity: f32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(throttle: Throttle) -> Self {
        // `as`: a burst beyond f32's exact integers (16 million lines) is as good as
        // unlimited, and the rate is clamped to what f32 holds.
        let capacity = throttle.burst.max(1) as f32;
        Self {
            rate: throttle.lines_per_second.clamp(0.001, f64::from(f32::MAX)) as f32,
            capacity,
            tokens: f64::from(capacity),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let rate = f64::from(self.rate);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.capacity));
        self.last = now;
    }

    /// Takes a token if there is one; false when there is none yet ([`Self::next_token`]
    /// says when).
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        let there = self.tokens >= 1.0;
        if there {
            self.tokens -= 1.0;
        }
        there
    }

    /// When the next token will be there, if the bucket is empty now (as of the last
    /// [`Self::try_take`]).
    pub fn next_token(&self) -> Option<Instant> {
        (self.tokens < 1.0).then(|| {
            self.last + Duration::from_secs_f64((1.0 - self.tokens) / f64::from(self.rate))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(Throttle {
            lines_per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        let wait = b.next_token().expect("empty") - t0;
        assert!(wait <= Duration::from_millis(500) && wait > Duration::from_millis(400));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
        assert!(b.next_token().is_some());
    }

    #[test]
    fn a_bucket_with_tokens_waits_for_none() {
        let mut b = TokenBucket::new(Throttle {
            lines_per_second: 1.0,
            burst: 2,
        });
        assert_eq!(b.next_token(), None);
        assert!(b.try_take(Instant::now()));
        assert_eq!(b.next_token(), None, "one token left");
    }
}
