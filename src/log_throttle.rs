//! Rate-limited warnings: a fault that repeats (a hostile log, a flood of bad clients) is logged at most once per
//! interval, with the number of occurrences held back since the previous line, so logs stay readable and cheap.
//! The occurrences themselves are always counted elsewhere (`/stats`, `/metrics`); this only decides what is printed.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// One kind of repeated warning.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    interval: Duration,
    last: Cell<Option<Instant>>,
    held_back: Cell<u64>,
}

impl LogThrottle {
    /// At most one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Cell::new(None),
            held_back: Cell::new(0),
        }
    }

    /// Called on every occurrence: `Some(held_back)` when this one should be logged (with how many were not since
    /// the last logged one), `None` when it is held back.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            self.last.set(Some(now));
            Some(self.held_back.replace(0))
        } else {
            self.held_back.set(self.held_back.get() + 1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(10)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
