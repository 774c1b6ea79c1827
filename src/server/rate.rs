//! A token bucket for the expensive operational routes: each route serves at most `rate` requests per second
//! server-wide (with a burst of two seconds' worth), so a flood of `/metrics` or `/latest.json` requests cannot take
//! the reactor from the streams. Server-wide rather than per address: an address map would be one more table for an
//! attacker to grow, and the budget protects the reactor, not fairness between clients.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Seconds of requests a bucket holds when full.
const BURST_SECONDS: f64 = 2.0;

/// One route's budget of requests.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: Cell<f64>,
    refilled: Cell<Instant>,
}

impl TokenBucket {
    /// `per_second` requests a second, full at creation.
    pub(crate) fn new(per_second: usize, now: Instant) -> Self {
        let per_second = per_second.max(1) as f64;
        let capacity = per_second * BURST_SECONDS;
        Self {
            per_second,
            capacity,
            tokens: Cell::new(capacity),
            refilled: Cell::new(now),
        }
    }

    /// Takes one request's token; when none is left, how long until one is (for `Retry-After`).
    pub(crate) fn take(&self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled.get())
            .as_secs_f64();
        let tokens = (self.tokens.get() + elapsed * self.per_second).min(self.capacity);
        self.refilled.set(now);
        if tokens >= 1.0 {
            self.tokens.set(tokens - 1.0);
            Ok(())
        } else {
            self.tokens.set(tokens);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(10, t0);
        for _ in 0..20 {
            assert!(bucket.take(t0).is_ok());
        }
        let wait = bucket.take(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && !wait.is_zero(),
            "{wait:?}"
        );
        let t1 = t0 + Duration::from_millis(100);
        assert!(bucket.take(t1).is_ok(), "one token back after 1/rate");
        assert!(bucket.take(t1).is_err());
        let later = t1 + Duration::from_secs(60);
        for _ in 0..20 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(
            bucket.take(later).is_err(),
            "the burst never exceeds 2 s worth"
        );
    }
}
