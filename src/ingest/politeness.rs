//! Per-log politeness: an adaptive delay between requests (+50 ms per 429, −1 ms per certificate processed),
//! `Retry-After` honoured, and exponential backoff with jitter on errors and down logs.

use std::time::{Duration, SystemTime};

/// Added to the delay on every 429.
const RATE_LIMIT_STEP: Duration = Duration::from_millis(50);
/// Taken off the delay for every certificate processed.
const PER_CERT_RELIEF: Duration = Duration::from_millis(1);
/// The adaptive delay never exceeds this.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// First and largest error backoff.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One log's politeness state.
#[derive(Clone, Debug, Default)]
pub struct Politeness {
    delay: Duration,
    backoff: Duration,
    /// A server-imposed pause (Retry-After), consumed by the next wait.
    retry_after: Option<Duration>,
}

impl Politeness {
    /// A 429: slow down by 50 ms, and wait at least `retry_after` before the next request.
    pub(crate) fn on_rate_limited(&mut self, retry_after: Option<Duration>) {
        self.delay = (self.delay + RATE_LIMIT_STEP).min(MAX_DELAY);
        self.retry_after = retry_after.map(|d| d.min(BACKOFF_MAX));
    }

    /// `count` certificates processed: speed up by 1 ms each.
    pub(crate) fn on_processed(&mut self, count: u64) {
        let relief = PER_CERT_RELIEF.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX));
        self.delay = self.delay.saturating_sub(relief);
    }

    /// A failed request or bad response: back off exponentially (1 s, 2 s, 4 s … 5 min).
    pub(crate) fn on_error(&mut self) {
        self.backoff = if self.backoff.is_zero() {
            BACKOFF_START
        } else {
            (self.backoff * 2).min(BACKOFF_MAX)
        };
    }

    /// A successful exchange ends the error backoff.
    pub(crate) fn on_success(&mut self) {
        self.backoff = Duration::ZERO;
    }

    /// The adaptive delay between requests.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The current error backoff (zero when healthy).
    pub(crate) fn backoff(&self) -> Duration {
        self.backoff
    }

    /// How long to wait before the next request: the delay, or the (jittered) backoff or Retry-After pause when
    /// longer. `jitter` in [0, 1) spreads retries of many logs apart. Consumes the Retry-After pause.
    pub(crate) fn next_wait(&mut self, jitter: f64) -> Duration {
        let backoff = self.backoff.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5);
        let retry_after = self.retry_after.take().unwrap_or(Duration::ZERO);
        self.delay.max(backoff).max(retry_after)
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`),
/// relative to `now`. A date in the past means no wait. Any value a log sends yields a finite duration without
/// overflow (absurd ones saturate); [`Politeness::on_rate_limited`] caps what is honoured.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "wait as long as you may".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i128::from(d.as_secs()));
    let ahead = at.saturating_sub(now).max(0);
    Some(Duration::from_secs(
        u64::try_from(ahead).unwrap_or(u64::MAX),
    ))
}

/// Seconds since the Unix epoch of an IMF-fixdate, in i128 so that no year a log may write overflows.
fn parse_imf_fixdate(value: &str) -> Option<i128> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let mut parts = value.split_whitespace();
    let _weekday = parts.next()?;
    let day: i128 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<i128>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    let in_range = |v: i128, max: i128| (0..=max).contains(&v);
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || !(1..=31).contains(&day)
        || !in_range(h, 23)
        || !in_range(m, 59)
        || !in_range(s, 60)
    {
        return None;
    }
    Some(days_from_civil(i128::from(year), month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); i128 cannot overflow for
/// any i64 year.
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_slow_down_and_certificates_speed_up() {
        let mut p = Politeness::default();
        p.on_rate_limited(None);
        p.on_rate_limited(None);
        assert_eq!(p.delay(), Duration::from_millis(100));
        p.on_processed(30);
        assert_eq!(p.delay(), Duration::from_millis(70));
        p.on_processed(1000);
        assert_eq!(p.delay(), Duration::ZERO);
        for _ in 0..10_000 {
            p.on_rate_limited(None);
        }
        assert_eq!(p.delay(), MAX_DELAY);
    }

    #[test]
    fn retry_after_is_honoured_once() {
        let mut p = Politeness::default();
        p.on_rate_limited(Some(Duration::from_secs(7)));
        assert_eq!(p.next_wait(0.0), Duration::from_secs(7));
        assert_eq!(p.next_wait(0.0), Duration::from_millis(50));
    }

    #[test]
    fn errors_back_off_exponentially_until_success() {
        let mut p = Politeness::default();
        let waits: Vec<u64> = (0..12)
            .map(|_| {
                p.on_error();
                p.backoff().as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(
            p.next_wait(0.5),
            Duration::from_secs(375),
            "jitter stretches the backoff by up to 50 %"
        );
        p.on_success();
        assert_eq!(p.next_wait(0.9), Duration::ZERO);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 23:00:00 GMT", SystemTime::UNIX_EPOCH),
            Some(Duration::from_secs(1_796_166_000))
        );
        for bad in [
            "",
            "soon",
            "-5",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 GMT trailing",
            "Sun, 06 Nov 1994 -1:49:37 GMT",
            "Sun, 06 Nov 99999999999999999999 08:49:37 GMT",
            "+5",
            "5.5",
            "\u{0}",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    /// Hostile values never panic: far-future dates and huge delay-seconds saturate and the pause honoured is
    /// capped; negative or garbage values are ignored.
    #[test]
    fn absurd_retry_after_values_are_capped_not_fatal() {
        let now = SystemTime::now();
        for huge in [
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 23:59:60 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "18446744073709551615",
            "99999999999999999999999999",
        ] {
            let pause = parse_retry_after(huge, now);
            assert!(
                pause.is_some_and(|p| p > BACKOFF_MAX),
                "{huge:?}: {pause:?}"
            );
            let mut p = Politeness::default();
            p.on_rate_limited(pause);
            assert_eq!(p.next_wait(0.0), BACKOFF_MAX, "{huge:?}");
        }
        for past in [
            "Sun, 06 Nov -300000000000 08:49:37 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            assert_eq!(
                parse_retry_after(past, now),
                Some(Duration::ZERO),
                "{past:?}"
            );
        }
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 300000000000 08:49:37 GMT",
                SystemTime::UNIX_EPOCH
            ),
            Some(Duration::from_secs(9_467_085_537_859_596_577)),
            "exact far-future arithmetic"
        );
        for garbage in [
            "-1",
            "-18446744073709551615",
            "1e9",
            "Sun, 06 Nov 3e11 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }
}
