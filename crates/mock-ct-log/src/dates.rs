//! Civil-date formatting for the two date forms the mock sends: RFC 3339 (log list) and HTTP-date (Retry-After).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second, weekday 0 = Thursday 1970-01-01) of a Unix time.
fn civil(unix_seconds: u64) -> (u64, u64, u64, u64, u64, u64, u64) {
    let days = unix_seconds / 86400;
    let secs = unix_seconds % 86400;
    // Howard Hinnant's days-to-civil, for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        days % 7,
    )
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// `2026-05-17T06:40:00Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix_seconds(at));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// IMF-fixdate, e.g. `Sun, 17 May 2026 06:40:00 GMT`.
pub fn http_date(at: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(unix_seconds(at));
    let weekday = WEEKDAYS[(wd % 7) as usize];
    let month = MONTHS[((mo + 11) % 12) as usize];
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_python_email_utils_and_isoformat() {
        // (Unix seconds, RFC 3339, HTTP-date) as Python's datetime / email.utils.formatdate print them.
        let cases = [
            (0, "1970-01-01T00:00:00Z", "Thu, 01 Jan 1970 00:00:00 GMT"),
            (
                951_782_400,
                "2000-02-29T00:00:00Z",
                "Tue, 29 Feb 2000 00:00:00 GMT",
            ),
            (
                1_779_000_000,
                "2026-05-17T06:40:00Z",
                "Sun, 17 May 2026 06:40:00 GMT",
            ),
            (
                4_102_444_799,
                "2099-12-31T23:59:59Z",
                "Thu, 31 Dec 2099 23:59:59 GMT",
            ),
        ];
        for (seconds, rfc, http) in cases {
            let at = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(rfc3339(at), rfc);
            assert_eq!(http_date(at), http);
        }
    }
}
