//! How fast a log may grow: the one rule, for both log kinds, against tree heads that jump implausibly far (a
//! hostile or broken log announcing 2^63 entries would otherwise be followed as fast as it serves, flooding every
//! stream and showing a lag of 9.2e18 forever).
//!
//! A verified tree head is *claimed*; what is *followed* of it grows through a token bucket: `rate` entries per
//! second, up to [`BURST_SECONDS`] of them saved. A head within the saved allowance is followed at once (every
//! real log: the busiest grow by a few hundred entries per second, a few tenths of the default); a head beyond it
//! is implausible: counted, logged, and followed at `rate` until reached. Nothing is skipped: an honest log that
//! really jumped (back after a long outage) is only delayed. The first head is followed at once: where to start
//! is the operator's choice (`--start-back`).

use std::time::{Duration, Instant};

/// Seconds of growth a log may save up and use at once.
pub(crate) const BURST_SECONDS: f64 = 10.0;
/// Default `--max-log-growth`: entries per second per log (real logs stay far below; see the module docs).
pub const DEFAULT_MAX_GROWTH_PER_SECOND: u64 = 2_000;

/// One log's claimed and followed tree sizes.
#[derive(Debug, Clone)]
pub(crate) struct FollowedSize {
    rate: f64,
    burst: f64,
    claimed: u64,
    followed: u64,
    tokens: f64,
    refilled_at: Option<Instant>,
    /// A claim is being caught up with at the capped rate.
    capped: bool,
}

/// What a new tree head did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Not larger than what was claimed before.
    NoGrowth,
    /// Followed at once.
    Plausible,
    /// Beyond the allowance: followed at the capped rate. `first` for the head that started the episode.
    Implausible { first: bool },
}

impl FollowedSize {
    /// Growth capped at `per_second` entries per second (at least 1).
    pub(crate) fn new(per_second: u64) -> Self {
        let rate = per_second.max(1) as f64;
        Self {
            rate,
            burst: rate * BURST_SECONDS,
            claimed: 0,
            followed: 0,
            tokens: rate * BURST_SECONDS,
            refilled_at: None,
            capped: false,
        }
    }

    /// The first verified head: followed at once, unless a restarted poller resumes at `resume` below it: then
    /// what lies between is growth like any other (a restart must not lift the cap).
    pub(crate) fn start(&mut self, size: u64, resume: Option<u64>, now: Instant) -> Observed {
        let base = resume.map_or(size, |at| at.min(size));
        self.claimed = base;
        self.followed = base;
        self.refilled_at = Some(now);
        self.observe(size, now)
    }

    /// A later verified head of `size`. Smaller or equal heads change nothing (stale replicas).
    pub(crate) fn observe(&mut self, size: u64, now: Instant) -> Observed {
        if size <= self.claimed {
            return Observed::NoGrowth;
        }
        self.claimed = size;
        self.followed(now);
        if self.followed == self.claimed {
            return Observed::Plausible;
        }
        let first = !self.capped;
        self.capped = true;
        Observed::Implausible { first }
    }

    /// The size that may be read up to now.
    pub(crate) fn followed(&mut self, now: Instant) -> u64 {
        let elapsed = self
            .refilled_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.refilled_at = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        let wanted = self.claimed - self.followed;
        // Whole entries only; `tokens` ≤ burst, so the conversion cannot overflow.
        let step = wanted.min(self.tokens as u64);
        self.followed += step;
        self.tokens -= step as f64;
        if self.followed == self.claimed {
            self.capped = false;
        }
        self.followed
    }

    /// How long until `size` (≤ the claim) may be read; zero when it may now.
    pub(crate) fn time_until(&mut self, size: u64, now: Instant) -> Duration {
        let missing = size.min(self.claimed).saturating_sub(self.followed(now));
        if missing == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(((missing as f64 - self.tokens) / self.rate).max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_growth_is_followed_at_once() {
        let t0 = Instant::now();
        let mut size = FollowedSize::new(2_000);
        assert_eq!(size.start(1_000_000, None, t0), Observed::NoGrowth);
        for step in 1..=100u64 {
            // 500 entries/s, polled every 2 s: a busy real log.
            let now = t0 + Duration::from_secs(2 * step);
            let head = 1_000_000 + 1_000 * step;
            assert_eq!(size.observe(head, now), Observed::Plausible);
            assert_eq!(size.followed(now), head);
        }
        // A saved-up burst is fine too: 10 s of allowance after a quiet minute.
        let later = t0 + Duration::from_secs(300);
        assert_eq!(size.observe(1_100_000 + 20_000, later), Observed::Plausible);
    }

    #[test]
    fn a_jump_to_2_pow_63_is_followed_at_the_capped_rate() {
        let t0 = Instant::now();
        let mut size = FollowedSize::new(2_000);
        size.start(1_000, None, t0);
        let huge = 1 << 63;
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            size.observe(huge, t1),
            Observed::Implausible { first: true }
        );
        // The saved allowance (10 s' worth) at once, then 2,000 entries per second.
        assert_eq!(size.followed(t1), 1_000 + 20_000);
        assert_eq!(size.followed(t1 + Duration::from_secs(5)), 1_000 + 30_000);
        assert_eq!(size.claimed, huge);
        assert_eq!(
            size.observe(huge + 1, t1 + Duration::from_secs(6)),
            Observed::Implausible { first: false },
            "one episode is logged once"
        );
        let wait = size.time_until(1_000 + 40_000, t1 + Duration::from_secs(6));
        assert_eq!(wait.as_secs_f64().round(), 4.0);
        // Smaller heads change nothing.
        assert_eq!(size.observe(5, t1), Observed::NoGrowth);
    }

    #[test]
    fn a_restart_does_not_lift_the_cap() {
        let t0 = Instant::now();
        let mut size = FollowedSize::new(2_000);
        assert_eq!(
            size.start(1 << 63, Some(1_000), t0),
            Observed::Implausible { first: true }
        );
        assert_eq!(size.followed(t0), 21_000);
        let mut fresh = FollowedSize::new(2_000);
        assert_eq!(fresh.start(5_000, Some(4_000), t0), Observed::Plausible);
        assert_eq!(fresh.followed(t0), 5_000);
    }

    #[test]
    fn an_episode_ends_when_the_claim_is_reached() {
        let t0 = Instant::now();
        let mut size = FollowedSize::new(100);
        size.start(0, None, t0);
        assert_eq!(
            size.observe(3_000, t0),
            Observed::Implausible { first: true }
        );
        assert_eq!(size.followed(t0 + Duration::from_secs(10)), 2_000);
        assert_eq!(size.followed(t0 + Duration::from_secs(20)), 3_000);
        assert_eq!(
            size.observe(10_000, t0 + Duration::from_secs(20)),
            Observed::Implausible { first: true }
        );
    }
}
