//! End to end against logs that attack the HTTP client: mock CT logs → the real `certstream` binary → a
//! WebSocket client. A hostile log beside a well-behaved one on the same host:port (the mock serves every log on
//! one port) may only ever hurt itself: absurd `Retry-After` values make it wait (capped) instead of killing the
//! process; forged responses (after a short Content-Length, or unsolicited) never reach another log's stream;
//! huge bodies of tiny entries are refused or cut to what was asked for, and never freeze the reactor.

use std::time::{Duration, Instant};

use certstream_testkit::{
    Certstream, Collector, Expected, ListFile, Mock, collect_windows, cpu_time,
    memory_high_water_kib,
};
use serde_json::Value;

/// Entries per log in the window.
const WINDOW: u64 = 300;
/// Size of every mock log (`--rate 0`: they do not grow, so the window is known).
const SIZE: u64 = 1200;
const COLLECT_TIMEOUT: Duration = Duration::from_secs(45);

/// `rfc6962` + `tiled` non-growing mock logs with `faults` (`--fault` specs) and `args`.
fn mock(rfc6962: usize, tiled: usize, faults: &[&str], args: &[&str]) -> Mock {
    Mock::fixed(rfc6962, tiled, SIZE, faults, args)
}

/// The binary with a connected client, following the mock's logs from [`WINDOW`] back.
fn follow(mock: &Mock, args: &[&str]) -> (Certstream, Collector, ListFile) {
    let (server, collector, list) =
        certstream_testkit::start_listening("/", WINDOW, args, &[], None);
    list.write(&serde_json::to_vec(&mock.list()).expect("list JSON"));
    (server, collector, list)
}

fn windows(mock: &Mock, logs: &[&str]) -> Vec<(String, Vec<Expected>)> {
    logs.iter()
        .map(|log| (log.to_string(), mock.expected(log, SIZE - WINDOW, SIZE)))
        .collect()
}

fn counter(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

#[test]
fn absurd_retry_after_makes_a_log_wait_and_never_stops_the_process() {
    // Each hostile log answers 429 on one endpoint with, in turn: "-5", garbage, year 300000000000, 2^64−1 s.
    let mock = mock(
        3,
        1,
        &[
            "absurd-429@r1,endpoint=get-sth",
            "absurd-429@r2,endpoint=get-entries",
            "absurd-429@t0,endpoint=checkpoint",
        ],
        &[],
    );
    let (mut server, mut collector, _list) = follow(&mock, &[]);
    let hostile = ["r1", "r2", "t0"];
    // Three 429s each (the third is the far-future date), then the capped pause.
    server.wait_stats(
        "every hostile log rate limited thrice",
        COLLECT_TIMEOUT,
        |s| {
            hostile.iter().all(|log| {
                let description = format!("Mock '{log}' log");
                s["logs"].as_array().is_some_and(|logs| {
                    logs.iter().any(|l| {
                        l["description"] == description.as_str() && counter(&l["rate_limited"]) >= 3
                    })
                })
            })
        },
    );
    collect_windows(
        &server,
        &mut collector,
        &windows(&mock, &["r0"]),
        COLLECT_TIMEOUT,
    );
    // The hostile logs now wait: no request reaches them for a while.
    let before: Vec<u64> = hostile.iter().map(|log| mock.requests(log)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = hostile.iter().map(|log| mock.requests(log)).collect();
    assert_eq!(before, after, "the rate-limited logs kept asking");
    for log in hostile {
        let stats = server.log_stats(log);
        assert_eq!(counter(&stats["rate_limited"]), 3, "{log}: {stats}");
        assert!(
            counter(&mock.stats()["logs"][log]["faults"]["absurd-429"]) >= 3,
            "{log}: the mock sent its 429s"
        );
    }
    assert!(server.running(), "the process survived");
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn forged_responses_never_reach_another_logs_stream() {
    // r1: a forged get-entries answer (r1's own certificates) rides behind every response (its Content-Length
    // is shorter than what was sent); r2: the same, 20 ms after every response. r0 and r3 share their host:port.
    let mock = mock(
        4,
        0,
        &["trailing@r1", "unsolicited@r2,ms=20"],
        &["--page-cap", "16"],
    );
    let (server, mut collector, _list) = follow(&mock, &[]);
    // r1 always reads its real answer first, so it delivers exactly too; r2 may read its own forgery.
    collect_windows(
        &server,
        &mut collector,
        &windows(&mock, &["r0", "r3", "r1"]),
        COLLECT_TIMEOUT,
    );
    let http = &server.stats()["http"];
    assert!(
        counter(&http["connections_closed_leftover"]) > 0
            && counter(&http["connections_closed_unsolicited"]) > 0,
        "desynced connections were closed and counted: {http}"
    );
    let stats = mock.stats();
    for (log, kind) in [("r1", "trailing"), ("r2", "unsolicited")] {
        assert!(
            counter(&stats["logs"][log]["faults"][kind]) > 10,
            "{log}: {kind} barely triggered"
        );
    }
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8(metrics).expect("metrics text");
    assert!(
        metrics.contains("certstream_http_connections_closed_desync_total{reason=\"unsolicited\"}"),
        "{metrics}"
    );
}

/// `/health` round trips, sampled every 10 ms for `period`: (p50, p99, max).
fn health_latency(server: &Certstream, period: Duration) -> (Duration, Duration, Duration) {
    let mut samples = Vec::new();
    let end = Instant::now() + period;
    while Instant::now() < end {
        let started = Instant::now();
        assert_eq!(server.get("/health").0, 200);
        samples.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// Four logs answering every get-entries with the requested entries plus 1.5 M tiny ones (~60 MB), beside a
/// well-behaved log. By default such a body is refused from its Content-Length (it is far larger than what was
/// asked for allows) and counted; memory stays low and the well-behaved log delivers its exact window.
#[test]
fn huge_bodies_of_tiny_entries_are_refused_and_memory_stays_low() {
    let mock = mock(
        5,
        0,
        &[
            "tiny-entries@r1",
            "tiny-entries@r2",
            "tiny-entries@r3",
            "tiny-entries@r4",
        ],
        &[],
    );
    let (server, mut collector, _list) = follow(&mock, &[]);
    let (p50, p99, max) = health_latency(&server, Duration::from_secs(4));
    eprintln!(
        "/health with 4 tiny-entries logs (bodies refused): p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    collect_windows(
        &server,
        &mut collector,
        &windows(&mock, &["r0"]),
        COLLECT_TIMEOUT,
    );
    for log in ["r1", "r2", "r3", "r4"] {
        let delivered = collector.by_log.get(log).map_or(0, Vec::len);
        assert_eq!(
            delivered, 0,
            "{log}: every body was refused, nothing delivered"
        );
    }
    let peak_mib = memory_high_water_kib(server.pid()) / 1024;
    eprintln!("peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < 100,
        "peak RSS {peak_mib} MiB: the huge bodies were read and decoded"
    );
    let refused = counter(&server.stats()["http"]["bodies_too_large"]);
    assert!(
        refused >= 4,
        "every hostile log's bodies were refused: {refused}"
    );
}

/// The same logs serving whole requested ranges (a page cap above the window) with the limit raised so the
/// bodies are accepted: only the requested entries are read, so each hostile log delivers exactly its own window
/// too, and the 1.5 M tiny entries behind them are never decoded.
#[test]
fn huge_bodies_of_tiny_entries_cost_only_the_requested_entries() {
    let mock = mock(
        5,
        0,
        &[
            "tiny-entries@r1",
            "tiny-entries@r2",
            "tiny-entries@r3",
            "tiny-entries@r4",
        ],
        &["--page-cap", "1000"],
    );
    let (server, mut collector, _list) =
        follow(&mock, &["--get-entries-bytes-per-entry", "1048576"]);
    let (p50, p99, max) = health_latency(&server, Duration::from_secs(4));
    eprintln!(
        "/health with 4 tiny-entries logs (bodies accepted): p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    collect_windows(
        &server,
        &mut collector,
        &windows(&mock, &["r0", "r1", "r2", "r3", "r4"]),
        COLLECT_TIMEOUT,
    );
    // One 60 MB answer per hostile log: decoding its 1.5 M entries took 0.5–1.7 s of CPU each; reading it (and
    // decoding the 300 asked for) takes a fraction of that.
    let cpu = cpu_time(server.pid());
    eprintln!("certstream CPU time: {cpu:?}");
    assert!(
        cpu < Duration::from_millis(1500),
        "{cpu:?} of CPU: entries beyond the request were decoded"
    );
    let stats = server.stats();
    assert_eq!(counter(&stats["http"]["bodies_too_large"]), 0);
    for log in stats["logs"].as_array().expect("logs") {
        assert_eq!(
            counter(&log["skipped"]),
            0,
            "nothing beyond the request was decoded: {log}"
        );
    }
}
