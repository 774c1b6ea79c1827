//! The process log cannot stop the server (issue 7 item 10), with the real `certstream` binary: its stdout and
//! stderr (`2>&1 | …`) are a pipe whose reader is gone (every write fails with `EPIPE`), or a pipe nobody reads
//! (full after a few KiB).
//! Either way `/health` answers promptly, the lost lines are counted in `/stats` and `/metrics`, and SIGTERM ends
//! the process promptly with status 0.
//!
//! The server starts offline (every list and log host pinned to a closed port), so its log is busy: one line per
//! snapshot log followed, and a warning per failed request.

use std::io::pipe;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use certstream_testkit::Certstream;

/// `/health` must answer within this, every time.
const PROMPT: Duration = Duration::from_millis(500);

/// Checks that the server answers `/health` promptly, several times over `period`.
fn assert_serves_promptly(server: &Certstream, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(
            server.health_within(PROMPT).is_some(),
            "/health did not answer within {PROMPT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `/stats` and `/metrics` both count dropped log lines; returns the `/stats` count.
fn wait_dropped_lines(server: &Certstream) -> u64 {
    server.wait_stats("dropped log lines", Duration::from_secs(10), |s| {
        s["log_lines_dropped"].as_u64() > Some(0)
    });
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("certstream_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped-lines metric:\n{metrics}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("number");
    assert!(value > 0.0, "{line}");
    server.stats()["log_lines_dropped"].as_u64().expect("count")
}

#[test]
fn a_log_reader_that_went_away_neither_kills_nor_stops_the_server() {
    let (reader, writer) = pipe().expect("pipe");
    // The reader is gone before the first line (like `certstream | head -c 100` once head has exited).
    drop(reader);
    let server = Certstream::start_logging_to(&[], &[], writer);
    assert_serves_promptly(&server, Duration::from_secs(1));
    wait_dropped_lines(&server);
    let (success, took) = server.terminate();
    assert!(success, "SIGTERM must end the server with status 0");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn a_log_reader_that_stalls_neither_blocks_the_server_nor_its_shutdown() {
    let (reader, writer) = pipe().expect("pipe");
    // The smallest pipe the kernel allows (a page): the log fills it at once.
    // SAFETY: fcntl on a descriptor this test owns.
    let resized = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(resized >= 4096, "F_SETPIPE_SZ failed");
    // A small log buffer, set through the environment (a flag unknown to older binaries would end them at start).
    let server = Certstream::start_logging_to(&[], &[("CERTSTREAM_LOG_BUFFER", "4096")], writer);
    let dropped = wait_dropped_lines(&server);
    assert_serves_promptly(&server, Duration::from_secs(1));
    server.wait_stats("more dropped lines", Duration::from_secs(10), |s| {
        s["log_lines_dropped"].as_u64() > Some(dropped)
    });
    let (success, took) = server.terminate();
    assert!(success, "SIGTERM must end the server with status 0");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    drop(reader);
}
