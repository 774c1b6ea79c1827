//! Resume after a restart, end to end: the mock CT logs → the real `certstream` binary with `--state-file` → a
//! WebSocket client, over two runs of the binary. After SIGTERM every index arrives exactly once across the runs;
//! after `kill -9` none is missing and only the last save intervals repeat; a corrupt state file stops the start
//! (or, with `--ignore-bad-state-file`, is replaced); a log removed and added again continues where it was; a
//! saved index too far behind starts at the log's current size, the skip logged and counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use certstream_testkit::{
    Certstream, Collector, ListFile, Mock, SeenEntry, assert_window, certstream_binary,
    start_listening_to,
};
use serde_json::{Value, json};

/// Entries each log starts behind its size in the first run.
const START_BACK: u64 = 50;
/// Saves often, so that the tests are short; the crash bound below is in these intervals.
const SAVE_INTERVAL: &str = "200ms";
/// Bound on every wait for entries.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The state file beside the list file (in its private temporary directory).
fn state_path(list: &ListFile) -> PathBuf {
    list.path.with_file_name("state.json")
}

/// A run of the binary with the state file, following `logs` of the mock from [`START_BACK`] entries back, with a
/// client connected; `args` are added.
fn run(mock: &Mock, list: &ListFile, logs: &[&str], args: &[&str]) -> (Certstream, Collector) {
    let state = state_path(list);
    let mut all = vec![
        "--state-file",
        state.to_str().expect("UTF-8 path"),
        "--state-save-interval",
        SAVE_INTERVAL,
    ];
    all.extend_from_slice(args);
    let (server, collector) = start_listening_to(list, "/", START_BACK, &all, &[], None);
    list.write_only(&mock.list(), logs);
    (server, collector)
}

/// Reads until every one of `logs` has at least `count` entries.
fn collect(server: &Certstream, collector: &mut Collector, logs: &[&str], count: usize) {
    let done = collector.read_until(TIMEOUT, |by_log| {
        logs.iter()
            .all(|log| by_log.get(*log).map_or(0, Vec::len) >= count)
    });
    assert!(
        done,
        "fewer than {count} entries per log: {:?}\n{}",
        counts(collector),
        server.log_tail(30)
    );
}

fn counts(collector: &Collector) -> Vec<(String, usize)> {
    collector
        .by_log
        .iter()
        .map(|(log, seen)| (log.clone(), seen.len()))
        .collect()
}

/// Checks that `received` is exactly the mock's entries from its first index to its last, once each, in order.
fn assert_contiguous(mock: &Mock, log: &str, received: &[SeenEntry]) {
    let (first, last) = (received[0].0, received[received.len() - 1].0);
    assert_window(log, received, &mock.expected(log, first, last + 1));
}

/// SIGTERM: the server stops ingesting, saves, lets the client have what it was sent, closes; the next run starts
/// exactly where the first one stopped.
#[test]
fn sigterm_then_restart_delivers_every_index_exactly_once() {
    let logs = ["r0", "t0"];
    let mock = Mock::with_logs(1, 1, 40, &["--start-size", "30000"]);
    let list = ListFile::new();
    // Stopped while catching up 25,000 entries a log (more than the socket buffers hold), with a client that
    // paused reading for less than `--slow-client-grace` (it keeps up): it has messages queued at the SIGTERM,
    // which must reach it before the close frame.
    let (server, mut first) = run(&mock, &list, &logs, &["--start-back", "25000"]);
    collect(&server, &mut first, &logs, 80);
    std::thread::sleep(Duration::from_millis(300));
    let queued = server.stats()["queued_frames"].as_u64().expect("queued");
    server.send_sigterm();
    assert_eq!(first.read_until_closed(TIMEOUT), Some(1001));
    let (ok, _) = server.wait_exit(TIMEOUT);
    assert!(ok, "exit status after SIGTERM");
    assert!(queued > 0, "the test needs messages queued at the SIGTERM");
    // The logs grow while the server is down.
    std::thread::sleep(Duration::from_millis(500));

    let (server, mut second) = run(&mock, &list, &logs, &[]);
    collect(&server, &mut second, &logs, 80);
    second.drain_for(Duration::from_millis(500));
    for log in logs {
        let mut both = first.by_log[log].clone();
        let stopped_at = both.last().expect("entries").0;
        assert_eq!(
            second.by_log[log][0].0,
            stopped_at + 1,
            "{log}: the second run starts right after the first"
        );
        both.extend(second.by_log[log].iter().cloned());
        assert_contiguous(&mock, log, &both);
        let stats = server.log_stats(log);
        assert_eq!(stats["resumed_from"], stopped_at + 1, "{stats}");
        assert_eq!(stats["resume_skipped"], 0);
    }
    let stats = server.stats();
    assert!(
        stats["state_file"]["saves"].as_u64() >= Some(1),
        "{}",
        stats["state_file"]
    );
    assert_eq!(stats["state_file"]["save_failures"], 0);
}

/// `kill -9`: nothing is missing; what repeats was published at most about two save intervals before the kill.
#[test]
fn kill_9_then_restart_misses_nothing_and_repeats_only_the_last_save_intervals() {
    let logs = ["r0", "t0"];
    let mock = Mock::with_logs(1, 1, 40, &["--start-size", "600"]);
    let list = ListFile::new();
    let (server, mut first) = run(&mock, &list, &logs, &[]);
    collect(&server, &mut first, &logs, 80);
    // What had arrived 1 s (five save intervals) before the kill is saved for sure: the save written last before
    // the kill recorded its positions at most two intervals (and a write) earlier.
    let received_long_before: BTreeMap<String, u64> = logs
        .iter()
        .map(|log| {
            (
                log.to_string(),
                first.by_log[*log].last().expect("entries").0,
            )
        })
        .collect();
    first.drain_for(Duration::from_secs(1));
    drop(server); // SIGKILL
    // What the kernel still had for the socket.
    first.read_until_closed(Duration::from_millis(500));

    let (server, mut second) = run(&mock, &list, &logs, &[]);
    collect(&server, &mut second, &logs, 80);
    second.drain_for(Duration::from_millis(500));
    for log in logs {
        let last_of_first = first.by_log[log].last().expect("entries").0;
        let restart = second.by_log[log][0].0;
        assert!(
            restart <= last_of_first + 1,
            "{log}: a gap: the first run ended at {last_of_first}, the second started at {restart}"
        );
        assert!(
            restart > received_long_before[log],
            "{log}: the second run repeats from {restart}, before what had arrived 1 s before the kill ({})",
            received_long_before[log]
        );
        assert_contiguous(&mock, log, &second.by_log[log]);
        let first_part: Vec<SeenEntry> = first.by_log[log]
            .iter()
            .filter(|(index, _)| *index < restart)
            .cloned()
            .collect();
        let mut both = first_part;
        both.extend(second.by_log[log].iter().cloned());
        assert_contiguous(&mock, log, &both);
    }
}

/// A state file that is not one stops the start with the path and the reason; `--ignore-bad-state-file` starts
/// fresh and replaces it.
#[test]
fn a_corrupt_state_file_is_a_clear_error_unless_told_to_start_fresh() {
    let list = ListFile::new();
    list.write(br#"{"version":"0","operators":[]}"#);
    let state = state_path(&list);
    std::fs::write(&state, b"{\"version\":1,\"logs\":{\"abc\":").expect("write state");
    let output = Command::new(certstream_binary())
        .args(["--listen", "127.0.0.1:0", "--log-list", list.location()])
        .arg("--state-file")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run certstream");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a state file"), "{stderr}");
    assert!(stderr.contains("--ignore-bad-state-file"), "{stderr}");
    assert_eq!(
        std::fs::read(&state).expect("state"),
        b"{\"version\":1,\"logs\":{\"abc\":",
        "the bad file is left for the operator"
    );

    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--state-file",
            state.to_str().expect("UTF-8 path"),
            "--ignore-bad-state-file",
        ],
        &[],
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
    assert_eq!(saved, json!({"version": 1, "logs": {}}));
    assert!(
        server.log_tail(20).contains("state file unusable"),
        "{}",
        server.log_tail(20)
    );
}

/// A log that leaves the list and comes back continues at its next index: nothing missed, nothing repeated.
#[test]
fn a_log_removed_and_added_again_resumes_where_it_was() {
    let mock = Mock::with_logs(1, 1, 40, &["--start-size", "600"]);
    let list = ListFile::new();
    let (server, mut collector) = run(&mock, &list, &["r0", "t0"], &[]);
    collect(&server, &mut collector, &["r0", "t0"], 60);
    list.write_only(&mock.list(), &["t0"]);
    server.wait_stats("r0 to leave", TIMEOUT, |s| {
        s["logs"].as_array().is_some_and(|l| l.len() == 1)
    });
    let before = collector.by_log["r0"].len();
    // r0 grows while it is out of the list.
    collector.drain_for(Duration::from_secs(1));
    list.write_only(&mock.list(), &["r0", "t0"]);
    collect(&server, &mut collector, &["r0"], before + 60);
    collector.drain_for(Duration::from_millis(500));
    assert_contiguous(&mock, "r0", &collector.by_log["r0"]);
    assert_contiguous(&mock, "t0", &collector.by_log["t0"]);
}

/// A saved index further behind than `--max-resume-backlog` starts at the log's current size (warning with the
/// log and the count, `resume_skipped` in `/stats`); one within it resumes there.
#[test]
fn a_saved_index_beyond_the_backlog_limit_starts_at_the_current_size() {
    const SIZE: u64 = 1200;
    let mock = Mock::fixed(2, 0, SIZE, &[], &[]);
    let list = ListFile::new();
    let ids = mock.log_ids();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let saved = json!({"version": 1, "logs": {
        ids["r0"].as_str(): {"next_index": 0, "saved_at": now, "listed_at": now},
        ids["r1"].as_str(): {"next_index": SIZE - 200, "saved_at": now, "listed_at": now},
    }});
    std::fs::write(state_path(&list), saved.to_string()).expect("write state");
    let (server, mut collector) = run(
        &mock,
        &list,
        &["r0", "r1"],
        &["--max-resume-backlog", "500"],
    );
    collect(&server, &mut collector, &["r1"], 200);
    collector.drain_for(Duration::from_millis(500));
    assert_window(
        "r1",
        &collector.by_log["r1"],
        &mock.expected("r1", SIZE - 200, SIZE),
    );
    assert!(
        !collector.by_log.contains_key("r0"),
        "r0 starts at its size: nothing to deliver"
    );
    let r0 = server.log_stats("r0");
    assert_eq!(
        (r0["resumed_from"].clone(), r0["resume_skipped"].clone()),
        (json!(0), json!(SIZE)),
        "{r0}"
    );
    assert_eq!(r0["next_index"], SIZE);
    let r1 = server.log_stats("r1");
    assert_eq!(
        (r1["resumed_from"].clone(), r1["resume_skipped"].clone()),
        (json!(SIZE - 200), json!(0)),
        "{r1}"
    );
    let warning = server.log_tail(60);
    assert!(
        warning
            .lines()
            .any(|line| line.contains("too far behind") && line.contains("skipped=1200")),
        "{warning}"
    );
    let metrics = String::from_utf8(server.get("/metrics").1).expect("UTF-8");
    assert!(
        metrics.contains("certstream_log_resume_skipped_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certstream_state_age_seconds "),
        "{metrics}"
    );
}
