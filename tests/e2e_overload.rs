//! Overload end to end (issue 7, item 7): the mock CT logs hold far more than the server can deliver at once, and
//! one WebSocket client reads the stream as fast as it can with the server's default queue (256 messages). Every
//! index of every log must reach it exactly once, in order: ingestion slows down to what the client's writer can
//! send instead of dropping messages from its queue. Before the admission gate the pollers starved the writer and
//! the queue dropped thousands of messages here.

use std::time::Duration;

use certstream_testkit::{Certstream, Collector, Expected, ListFile, Mock, assert_window};

/// Entries each log is behind when the server starts following it.
const BACKLOG: u64 = 3000;
/// Fixed size of every mock log (`--rate 0`).
const SIZE: u64 = 20_000;
const RFC6962_LOGS: usize = 4;
const TILED_LOGS: usize = 4;
/// Bound on collecting everything (a few seconds on an idle machine; CI has 2 cores shared with other jobs).
const COLLECT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_reading_client_loses_nothing_when_logs_are_far_ahead() {
    let mock = Mock::fixed(RFC6962_LOGS, TILED_LOGS, SIZE, &[], &["--page-cap", "256"]);
    // The list is written only once the client listens, so every message is published after its upgrade.
    let list = ListFile::new();
    list.write(br#"{"version":"0","operators":[]}"#);
    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--log-list-refresh",
            "200ms",
            "--start-back",
            &BACKLOG.to_string(),
        ],
        // A generous grace: a test client descheduled on a busy CI machine must not count as slow. (Given in the
        // environment, so the same test runs against builds without the option.)
        &[("CERTSTREAM_SLOW_CLIENT_GRACE", "5s"), ("RUST_LOG", "warn")],
    );
    let mut collector = Collector::connect(&server, "/");
    server.wait_stats("the client", Duration::from_secs(10), |s| {
        s["clients"]["total"] == 1
    });
    let mock_list = mock.list();
    list.write(&serde_json::to_vec(&mock_list).expect("list JSON"));

    let logs: Vec<String> = (0..RFC6962_LOGS)
        .map(|i| format!("r{i}"))
        .chain((0..TILED_LOGS).map(|i| format!("t{i}")))
        .collect();
    let windows: Vec<(String, Vec<Expected>)> = logs
        .iter()
        .map(|log| (log.clone(), mock.expected(log, SIZE - BACKLOG, SIZE)))
        .collect();
    let complete = collector.read_until(COLLECT_TIMEOUT, |by_log| {
        windows
            .iter()
            .all(|(log, expected)| by_log.get(log).map_or(0, Vec::len) >= expected.len())
    });
    let stats = server.stats();
    let counts: Vec<(&String, usize)> = collector
        .by_log
        .iter()
        .map(|(log, received)| (log, received.len()))
        .collect();
    assert_eq!(
        stats["messages_dropped"], 0,
        "the reading client lost messages from its queue; received {counts:?}\n/stats: {stats}"
    );
    assert!(
        complete,
        "not everything arrived in time: {counts:?}\n/stats: {stats}\nlog tail:\n{}",
        server.log_tail(30)
    );
    collector.drain_for(Duration::from_millis(300));
    for (log, expected) in &windows {
        let received = collector.by_log.get(log).map_or(&[][..], Vec::as_slice);
        assert_window(log, received, expected);
    }
    assert!(
        stats["admission"]["ingestion_held_ms"].as_u64() > Some(0),
        "ingestion waited for the client: {}",
        stats["admission"]
    );
    assert_eq!(stats["admission"]["clients_declared_lagging"], 0);
}
