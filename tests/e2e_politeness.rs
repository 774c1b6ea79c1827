//! Politeness end to end: the real `certstream` binary following growing mock logs (list fetched over HTTP,
//! `CUSTOM_LOG_LIST`, default start position). Under sustained 429s the request rate each log sees falls, and it
//! recovers once they stop; a tiled log's partial tiles are never fetched twice for the same (tile, width).

use std::time::Duration;

use certstream_testkit::wait::wait_until;
use certstream_testkit::{Certstream, Mock};
use serde_json::Value;

/// Requests per second `log` receives over `period`.
fn request_rate(mock: &Mock, log: &str, period: Duration) -> f64 {
    let before = mock.requests(log);
    std::thread::sleep(period);
    (mock.requests(log) - before) as f64 / period.as_secs_f64()
}

fn follow(mock: &Mock) -> Certstream {
    let url = mock.list_url();
    Certstream::start(
        &["--poll-interval", "100ms"],
        &[("CUSTOM_LOG_LIST", url.as_str())],
    )
}

/// Waits until every log in `/stats` has delivered at least one entry.
fn wait_delivering(server: &Certstream, logs: usize) {
    server.wait_stats("every log delivering", Duration::from_secs(20), |s| {
        s["logs"]
            .as_array()
            .is_some_and(|l| l.len() == logs && l.iter().all(|l| l["delivered"].as_u64() > Some(0)))
    });
}

#[test]
fn request_rate_falls_under_sustained_429s_and_recovers() {
    let mock = Mock::with_logs(1, 1, 50, &["--start-size", "1000"]);
    let server = follow(&mock);
    wait_delivering(&server, 2);
    // Default start: the log's size when the poller started, nothing older.
    for log in ["r0", "t0"] {
        let stats = server.log_stats(log);
        let first =
            stats["next_index"].as_u64().unwrap_or(0) - stats["delivered"].as_u64().unwrap_or(0);
        assert!(
            first >= 1000,
            "{log} started at {first}, before the size at start-up: {stats}"
        );
    }

    let normal = request_rate(&mock, "r0", Duration::from_secs(2));
    mock.set_faults(r#"[{"kind":"429","p":1.0,"retry_after":1}]"#);
    // Let requests already in flight and the first 429s pass.
    std::thread::sleep(Duration::from_millis(1500));
    let limited = request_rate(&mock, "r0", Duration::from_secs(4));
    let tiled_limited = request_rate(&mock, "t0", Duration::from_secs(2));
    let stats = server.log_stats("r0");
    assert!(stats["rate_limited"].as_u64() > Some(0), "{stats}");
    assert!(
        stats["delay_ms"].as_u64() > Some(0),
        "the delay grew: {stats}"
    );
    assert!(
        normal >= 4.0 && limited <= 1.5 && limited < normal / 3.0,
        "r0: {normal:.1} req/s normally, {limited:.1} req/s under 429 with Retry-After: 1"
    );
    assert!(
        tiled_limited <= 1.5,
        "t0: {tiled_limited:.1} req/s under 429"
    );

    mock.set_faults("[]");
    // The delay shrinks by 1 ms per certificate processed: it is back to nothing within seconds at 50/s.
    server.wait_stats("the delay to recover", Duration::from_secs(20), |s| {
        s["logs"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["delay_ms"] == 0 && l["backoff_ms"] == 0))
    });
    let recovered = request_rate(&mock, "r0", Duration::from_secs(2));
    eprintln!(
        "r0 request rate: {normal:.1}/s normally, {limited:.1}/s under 429s, {recovered:.1}/s after"
    );
    assert!(
        recovered > limited * 3.0 && recovered >= 4.0,
        "r0: {recovered:.1} req/s after the 429s stopped (was {limited:.1}, normally {normal:.1})"
    );
    // Nothing was lost on the way: both logs catch up.
    server.wait_stats("both logs to catch up", Duration::from_secs(20), |s| {
        s["logs"].as_array().is_some_and(|l| {
            l.iter()
                .all(|l| l["lag"].as_u64() < Some(300) && l["skipped"] == 0)
        })
    });
}

#[test]
fn partial_tiles_are_never_fetched_twice_for_the_same_width() {
    let mock = Mock::with_logs(0, 2, 20, &["--start-size", "1000"]);
    let server = follow(&mock);
    wait_delivering(&server, 2);
    let partial_fetches = |stats: &Value, log: &str| -> Vec<(String, u64)> {
        stats["logs"][log]["partial_data_tiles"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Run until each log has fetched several partial tiles of its growing tip.
    wait_until(
        "several partial tiles fetched of each log",
        Duration::from_secs(40),
        || mock.stats(),
        |stats| {
            ["t0", "t1"]
                .iter()
                .all(|log| partial_fetches(stats, log).len() >= 3)
        },
        |stats| format!("{stats}"),
    );
    let stats = mock.stats();
    for log in ["t0", "t1"] {
        for (tile, count) in partial_fetches(&stats, log) {
            assert_eq!(count, 1, "{log}: partial tile {tile} fetched {count} times");
        }
        let followed = server.log_stats(log);
        assert_eq!(followed["errors"], 0, "{followed}");
        assert!(followed["lag"].as_u64() < Some(256), "{followed}");
    }
}
