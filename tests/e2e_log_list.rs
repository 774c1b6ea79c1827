//! The log list end to end, with the real `certstream` binary: offline start on the compiled-in snapshot (Chrome's
//! list unreachable, a custom list unreachable, a custom list whose signature does not verify), and a refreshed
//! list file that adds and removes logs, with the previous list kept when the file turns bad or disappears.
//!
//! Every snapshot log host and list host is pinned to a closed port on 127.0.0.1 with `--resolve` (see
//! `e2e_support::Certstream::start`), so nothing leaves loopback.

mod e2e_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use certstream::ct::log_list::LogList;
use e2e_support::{Certstream, ListFile, Mock, closed_port};

/// The descriptions of the logs the snapshot selects.
fn snapshot_logs() -> BTreeSet<String> {
    let snapshot = LogList::snapshot().expect("snapshot parses");
    snapshot
        .selected(false)
        .map(|log| log.description.clone())
        .collect()
}

/// Checks that `server` serves and follows exactly the snapshot's logs, having failed to load its list.
fn assert_on_snapshot(server: &Certstream, error_mentions: &str) {
    let expected = snapshot_logs();
    assert!(
        expected.len() > 10,
        "the snapshot selects {} logs",
        expected.len()
    );
    server.wait_stats("the snapshot", Duration::from_secs(20), |s| {
        s["log_list"]["source"] == "compiled-in snapshot"
    });
    assert_eq!(server.get("/health").0, 200);
    let stats = server.stats();
    let followed: BTreeSet<String> = stats["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["description"].as_str().expect("description").to_owned())
        .collect();
    assert_eq!(followed, expected);
    let list = &stats["log_list"];
    assert!(list["failures"].as_u64() >= Some(1), "{list}");
    let error = list["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(error_mentions), "{error}");
}

#[test]
fn offline_start_follows_the_compiled_in_snapshot() {
    // Chrome's list (the default) unreachable.
    let server = Certstream::start(&[], &[]);
    assert_on_snapshot(&server, "www.gstatic.com");
    drop(server);

    // A custom list URL unreachable.
    let url = format!("http://127.0.0.1:{}/log_list.json", closed_port());
    let server = Certstream::start(&["--log-list", &url], &[]);
    assert_on_snapshot(&server, &url);
    drop(server);

    // A custom list whose detached signature does not verify is not used.
    let list = ListFile::new();
    list.write(br#"{"version":"1","operators":[]}"#);
    let signature = ListFile::new();
    signature.write(&[0u8; 512]);
    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--log-list-signature",
            signature.location(),
        ],
        &[],
    );
    assert_on_snapshot(&server, "signature");
}

/// Waits until `server` follows exactly `names`.
fn wait_following(server: &Certstream, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let followed = server.followed();
        if followed == names {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "following {followed:?}, expected {names:?}\n{}",
            server.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refresh_adds_and_removes_logs_and_keeps_the_list_on_failure() {
    let mock = Mock::start(&["--rfc6962", "2", "--tiled", "1", "--rate", "20"]);
    let full = mock.list();
    let list = ListFile::new();
    list.write_only(&full, &["r0"]);
    let server = Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--log-list-refresh",
            "200ms",
            "--poll-interval",
            "100ms",
        ],
        &[],
    );
    wait_following(&server, &["r0"]);

    list.write_only(&full, &["r0", "r1", "t0"]);
    wait_following(&server, &["r0", "r1", "t0"]);
    server.wait_stats("the new logs delivering", Duration::from_secs(15), |s| {
        s["logs"]
            .as_array()
            .is_some_and(|l| l.iter().all(|l| l["delivered"].as_u64() > Some(0)))
    });

    list.write_only(&full, &["r1", "t0"]);
    wait_following(&server, &["r1", "t0"]);
    // r0's poller stopped: the mock sees no more requests for it (one in flight may still land).
    std::thread::sleep(Duration::from_millis(300));
    let before = mock.requests("r0");
    let r1_before = mock.requests("r1");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mock.requests("r0"), before, "r0 is still polled");
    assert!(mock.requests("r1") > r1_before, "r1 is polled");

    // A list that does not parse, then no list at all: the previous list stays, pollers keep going.
    let loads = server.stats()["log_list"]["loads"].as_u64().expect("loads");
    list.write(b"{ not json");
    server.wait_stats("a failed load", Duration::from_secs(10), |s| {
        s["log_list"]["failures"].as_u64() >= Some(1)
    });
    let error = server.stats()["log_list"]["last_error"].clone();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("not a v3 log list")),
        "{error}"
    );
    list.remove();
    server.wait_stats("another failed load", Duration::from_secs(10), |s| {
        s["log_list"]["failures"].as_u64() >= Some(2)
            && s["log_list"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot read"))
    });
    assert_eq!(server.followed(), ["r1", "t0"]);
    assert_eq!(server.stats()["log_list"]["loads"], loads, "nothing loaded");
    let delivered = server.log_stats("r1")["delivered"].as_u64();
    server.wait_stats("r1 to keep delivering", Duration::from_secs(10), |s| {
        s["logs"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["description"] == "Mock 'r1' log"))
            .is_some_and(|l| l["delivered"].as_u64() > delivered)
    });

    // A good list again is picked up.
    list.write_only(&full, &["r0"]);
    wait_following(&server, &["r0"]);
}

#[test]
fn help_names_the_log_list_options_and_version_prints() {
    let run = |arg: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_certstream"))
            .arg(arg)
            .output()
            .expect("run certstream");
        assert!(output.status.success(), "{arg}: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let help = run("--help");
    for option in [
        "--log-list",
        "CUSTOM_LOG_LIST",
        "--start-back",
        "--log-list-refresh",
        "RUST_LOG",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
    assert_eq!(
        run("--version").trim(),
        format!("certstream {}", env!("CARGO_PKG_VERSION"))
    );
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_certstream"))
        .args(["--start-back", "many"])
        .output()
        .expect("run certstream");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--start-back"));
}

#[test]
fn unreachable_apple_list_leaves_the_primary_list_in_use() {
    let mock = Mock::start(&["--rfc6962", "1", "--tiled", "0", "--rate", "0"]);
    let list = ListFile::new();
    list.write_only(&mock.list(), &["r0"]);
    let server = Certstream::start(&["--log-list", list.location(), "--apple-log-list"], &[]);
    server.wait_stats("the Apple list failure", Duration::from_secs(20), |s| {
        s["log_list"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("valid.apple.com"))
    });
    wait_following(&server, &["r0"]);
    assert_eq!(server.stats()["log_list"]["source"], list.location());
}
