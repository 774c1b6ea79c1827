//! The log list end to end, with the real `certstream` binary: offline start on the compiled-in snapshot (Chrome's
//! list unreachable, a custom list unreachable, a custom list whose signature does not verify, a "list" that is
//! endless or a FIFO nobody writes to), a refreshed list file that adds and removes logs, with the previous list
//! kept when the file turns bad or disappears, a log whose URL changes in the list, and what `/stats` and
//! `/metrics` may show of the list's location.
//!
//! Every snapshot log host and list host is pinned to a closed port on 127.0.0.1 with `--resolve` (see
//! `certstream_testkit::Certstream::start`), so nothing leaves loopback.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certstream_ct::log_list::LogList;
use certstream_testkit::http::ScriptedServer;
use certstream_testkit::{
    Certstream, Collector, ListFile, Mock, assert_window, closed_port, followed_in, only_logs,
};

/// `/health` must answer within this while the list is being read.
const PROMPT: Duration = Duration::from_millis(500);

/// The descriptions of the logs the snapshot selects.
fn snapshot_logs() -> BTreeSet<String> {
    let snapshot = LogList::compiled_in().expect("snapshot parses");
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
    server.wait_stats(
        &format!("following exactly {names:?}"),
        Duration::from_secs(15),
        |stats| followed_in(stats) == names,
    );
}

/// A certstream following `list`, re-read every 200 ms, polling every 100 ms.
fn follow_refreshed(list: &ListFile) -> Certstream {
    Certstream::start(
        &[
            "--log-list",
            list.location(),
            "--log-list-refresh",
            "200ms",
            "--poll-interval",
            "100ms",
        ],
        &[],
    )
}

#[test]
fn refresh_adds_and_removes_logs_and_keeps_the_list_on_failure() {
    let mock = Mock::with_logs(2, 1, 20, &[]);
    let full = mock.list();
    let list = ListFile::new();
    list.write_only(&full, &["r0"]);
    let server = follow_refreshed(&list);
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
        let output = std::process::Command::new(certstream_testkit::certstream_binary())
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
        "--log-list-max-size",
        "--log-list-timeout",
        "--log-buffer",
        "RUST_LOG",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
    assert_eq!(
        run("--version").trim(),
        format!("certstream {}", env!("CARGO_PKG_VERSION"))
    );
    let refused = std::process::Command::new(certstream_testkit::certstream_binary())
        .args(["--start-back", "many"])
        .output()
        .expect("run certstream");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--start-back"));
}

#[test]
fn unreachable_apple_list_leaves_the_primary_list_in_use() {
    let mock = Mock::with_logs(1, 0, 0, &[]);
    let list = ListFile::new();
    list.write_only(&mock.list(), &["r0"]);
    let server = Certstream::start(&["--log-list", list.location(), "--apple-log-list"], &[]);
    server.wait_stats("the Apple list failure", Duration::from_secs(20), |s| {
        s["log_list"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("valid.apple.com"))
    });
    wait_following(&server, &["r0"]);
    assert_eq!(
        server.stats()["log_list"]["source"],
        "log_list.json",
        "a file is shown by its name only"
    );
}

/// Makes `list`'s path a FIFO.
fn make_fifo(list: &ListFile) {
    let path = std::ffi::CString::new(list.location()).expect("path");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn endless_or_silent_list_files_neither_fill_memory_nor_hold_the_server() {
    // Endless: read up to the size cap, then refused.
    let server = Certstream::start(&["--log-list", "/dev/zero"], &[]);
    assert!(server.health_within(PROMPT).is_some(), "/health is slow");
    assert_on_snapshot(&server, "larger than the 4194304-byte cap");
    drop(server);

    // A FIFO without a writer reads as empty: not a list.
    let fifo = ListFile::new();
    make_fifo(&fifo);
    let server = Certstream::start(&["--log-list", fifo.location()], &[]);
    assert!(server.health_within(PROMPT).is_some(), "/health is slow");
    assert_on_snapshot(&server, "not a v3 log list");
    drop(server);

    // A FIFO whose writer never writes: given up at the deadline (set through the environment, which older
    // binaries ignore, rather than a flag they would refuse).
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo.path)
        .expect("open the FIFO for reading");
    let _writer = OpenOptions::new()
        .write(true)
        .open(&fifo.path)
        .expect("open the FIFO for writing");
    let server = Certstream::start(
        &["--log-list", fifo.location()],
        &[("CERTSTREAM_LOG_LIST_TIMEOUT", "1s")],
    );
    assert!(server.health_within(PROMPT).is_some(), "/health is slow");
    assert_on_snapshot(&server, "not read within 1000 ms");
}

/// A TCP relay to `upstream` that records the bytes clients send (request heads), to see which address a log is
/// read at.
struct Relay {
    server: ScriptedServer,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (record, upstream) = (sent.clone(), upstream.to_owned());
        let server = ScriptedServer::accept(move |_, mut client| {
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut client_back, mut server_back) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_back, &mut client_back);
                let _ = client_back.shutdown(std::net::Shutdown::Both);
            });
            let mut buf = [0; 16 * 1024];
            while let Ok(n) = client.read(&mut buf) {
                if n == 0 || server.write_all(&buf[..n]).is_err() {
                    break;
                }
                record.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
            let _ = server.shutdown(std::net::Shutdown::Both);
        });
        Relay { server, sent }
    }

    /// Requests received so far whose path starts with `prefix`.
    fn requests(&self, prefix: &str) -> usize {
        let sent = self.sent.lock().expect("lock");
        let needle = format!("GET {prefix}");
        String::from_utf8_lossy(&sent).matches(&needle).count()
    }
}

/// `list` with the read URLs of its logs (RFC 6962 `url`, tiled `monitoring_url`) pointing at `relay`.
fn read_through(list: &serde_json::Value, mock: &Mock, relay: &Relay) -> Vec<u8> {
    let text = serde_json::to_string(list).expect("list JSON");
    let (from, to) = (
        format!("http://{}", mock.addr),
        format!("http://{}", relay.server.addr),
    );
    text.replace(&format!("{from}/rfc6962/"), &format!("{to}/rfc6962/"))
        .replace(&format!("{from}/monitor/"), &format!("{to}/monitor/"))
        .into_bytes()
}

#[test]
fn a_log_whose_url_changes_is_read_at_the_new_url_without_gap_or_duplicate() {
    let mock = Mock::with_logs(1, 1, 100, &[]);
    let (old, new) = (Relay::start(&mock.addr), Relay::start(&mock.addr));
    let logs = only_logs(&mock.list(), &["r0", "t0"]);
    let list = ListFile::new();
    list.write(&read_through(&logs, &mock, &old));
    let server = follow_refreshed(&list);
    let mut stream = Collector::connect(&server, "/");
    let at_least = |n: usize| {
        move |by_log: &std::collections::BTreeMap<String, Vec<(u64, String)>>| {
            ["r0", "t0"]
                .iter()
                .all(|log| by_log.get(*log).is_some_and(|got| got.len() >= n))
        }
    };
    assert!(
        stream.read_until(Duration::from_secs(15), at_least(1)),
        "both logs deliver: {:?}\n{}",
        stream.by_log.keys(),
        server.log_tail(20)
    );
    assert_eq!(new.requests("/"), 0);

    list.write(&read_through(&logs, &mock, &new));
    let deadline = Instant::now() + Duration::from_secs(10);
    while new.requests("/rfc6962/r0/") == 0 || new.requests("/monitor/t0/") == 0 {
        assert!(
            Instant::now() < deadline,
            "the logs are not read at their new URL\n{}",
            server.log_tail(20)
        );
        stream.drain_for(Duration::from_millis(50));
    }
    // Requests to the old URL stop (one in flight at the change may still land).
    stream.drain_for(Duration::from_millis(300));
    let (r0_old, t0_old) = (old.requests("/rfc6962/r0/"), old.requests("/monitor/t0/"));
    let delivered: Vec<usize> = ["r0", "t0"]
        .iter()
        .map(|l| stream.by_log[*l].len())
        .collect();
    // Both logs go on delivering from where they were: a full tile of t0 (2.56 s at 100/s) and more of r0.
    assert!(
        stream.read_until(Duration::from_secs(15), |by_log| {
            by_log["r0"].len() > delivered[0] + 100 && by_log["t0"].len() > delivered[1] + 100
        }),
        "the logs stopped delivering after the change\n{}",
        server.log_tail(20)
    );
    assert_eq!(
        old.requests("/rfc6962/r0/"),
        r0_old,
        "r0 still read at its old URL"
    );
    assert_eq!(
        old.requests("/monitor/t0/"),
        t0_old,
        "t0 still read at its old URL"
    );
    stream.drain_for(Duration::from_millis(300));
    for log in ["r0", "t0"] {
        let received = &stream.by_log[log];
        let (first, last) = (received[0].0, received[received.len() - 1].0);
        assert_window(log, received, &mock.expected(log, first, last + 1));
    }
}

#[test]
fn stats_and_metrics_never_show_list_credentials_queries_or_paths() {
    let leaks = ["hunter2", "s3cr3t", "alice", "private-dir"];
    let assert_no_leak = |server: &Certstream| {
        for path in ["/stats", "/metrics"] {
            let (status, body) = server.get(path);
            assert_eq!(status, 200);
            let text = String::from_utf8_lossy(&body);
            for secret in leaks {
                assert!(!text.contains(secret), "{path} shows {secret:?}:\n{text}");
            }
        }
    };

    // Credentials (refused by the HTTP client, whose error quotes the URL) and a token in the query.
    let port = closed_port();
    let url = format!("http://alice:hunter2@127.0.0.1:{port}/list.json?token=s3cr3t");
    let server = Certstream::start(&["--log-list", &url], &[]);
    assert_on_snapshot(
        &server,
        &format!("http://***@127.0.0.1:{port}/list.json?***"),
    );
    assert_no_leak(&server);
    drop(server);

    // A list that loads, from a URL with a token, and its logs.
    let mock = Mock::with_logs(1, 0, 0, &[]);
    let url = format!("{}?token=s3cr3t", mock.list_url());
    let server = Certstream::start(&["--log-list", &url], &[]);
    wait_following(&server, &["r0"]);
    assert_eq!(
        server.stats()["log_list"]["source"],
        format!("{}?***", mock.list_url())
    );
    assert_no_leak(&server);
    drop(server);

    // A file path, and a signature path, that do not exist: only their file names are shown.
    let dir = std::env::temp_dir().join(format!("private-dir-{}", std::process::id()));
    let list = dir.join("list.json");
    let signature = dir.join("list.sig");
    let server = Certstream::start(
        &[
            "--log-list",
            list.to_str().expect("path"),
            "--log-list-signature",
            signature.to_str().expect("path"),
        ],
        &[],
    );
    assert_on_snapshot(&server, "cannot read list.json");
    assert_eq!(server.stats()["log_list"]["source"], "compiled-in snapshot");
    assert_no_leak(&server);
}
