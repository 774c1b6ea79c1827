//! End to end over loopback: the mock CT logs (RFC 6962 and tiled) → the real `certstream` binary → a WebSocket
//! client. For every log, every index of a known window (`--start-back`) arrives exactly once, in order, with the
//! fingerprint the mock announces — with no fault, with each fault on its own log, and with faults on every log.
//! A down log delivers nothing and holds nobody up; unparseable certificates are counted as skipped.
//!
//! The binary starts on an empty log list file; once the client is connected the test writes the mock's list
//! into it, and the next refresh starts the pollers, so no message can go out before the client listens.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use certstream_testkit::{
    Certstream, Collector, Expected, ListFile, Mock, assert_window, closed_by_peer,
};
use serde_json::{Value, json};

/// Entries per log in the window.
const WINDOW: u64 = 300;
/// Size of every growing mock log (`--rate 0`: they do not grow, so the window is known).
const SIZE: u64 = 1200;
/// Final size of the read-only log `ro0`.
const READONLY_SIZE: u64 = 700;
/// Bound on collecting every window.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(45);

/// The mock with `rfc6962` + `tiled` logs and `ro0`, not growing, with `faults` (`--fault` specs).
fn mock(rfc6962: usize, tiled: usize, faults: &[&str]) -> Mock {
    let readonly = READONLY_SIZE.to_string();
    Mock::fixed(
        rfc6962,
        tiled,
        SIZE,
        faults,
        &["--readonly-final", &readonly],
    )
}

/// Every log's name (`r0`, `t0`, `ro0`, …) in the mock's list.
fn log_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .flat_map(|op| {
            let logs = op["logs"].as_array().into_iter().flatten();
            logs.chain(op["tiled_logs"].as_array().into_iter().flatten())
        })
        .map(|log| {
            let url = log["url"].as_str().or(log["submission_url"].as_str());
            certstream_testkit::mock_name(url.expect("log URL"))
        })
        .collect();
    names.sort();
    names
}

/// A certstream following the list file (empty for now), with a client on `path` already connected, with extra
/// environment `env`.
fn start_listening(path: &str, env: &[(&str, &str)]) -> (Certstream, Collector, ListFile) {
    certstream_testkit::start_listening(path, WINDOW, &[], env, None)
}

/// The window of `log`: the last [`WINDOW`] entries of its (fixed) size.
fn window(mock: &Mock, log: &str) -> Vec<Expected> {
    let size = if log == "ro0" { READONLY_SIZE } else { SIZE };
    mock.expected(log, size - WINDOW, size)
}

/// Collects until every log of `logs` has its whole window (parseable entries), then checks each exactly.
fn collect_windows(mock: &Mock, server: &Certstream, collector: &mut Collector, logs: &[String]) {
    let windows: Vec<(String, Vec<Expected>)> = logs
        .iter()
        .map(|log| (log.clone(), window(mock, log)))
        .collect();
    certstream_testkit::collect_windows(server, collector, &windows, COLLECT_TIMEOUT);
}

#[test]
fn every_entry_of_every_log_once_in_order_then_graceful_shutdown() {
    let mock = mock(2, 2, &[]);
    let (server, mut collector, list) = start_listening("/full-stream", &[]);
    let mock_list = mock.list();
    list.write(&serde_json::to_vec(&mock_list).expect("list JSON"));
    let logs = log_names(&mock_list);
    assert_eq!(logs, ["r0", "r1", "ro0", "t0", "t1"]);
    collect_windows(&mock, &server, &mut collector, &logs);
    for log in &logs {
        let stats = server.log_stats(log);
        assert_eq!(stats["published"], WINDOW, "{log}: {stats}");
        assert_eq!(stats["delivered"], WINDOW, "{log}: {stats}");
        assert_eq!(stats["skipped"], 0, "{log}: {stats}");
        assert_eq!(stats["lag"], 0, "{log}: {stats}");
        let kind = if log.starts_with('t') {
            "tiled"
        } else {
            "rfc6962"
        };
        assert_eq!(stats["kind"], kind, "{log}: {stats}");
    }
    assert_eq!(server.log_stats("ro0")["state"], "readonly");
    let stats = server.stats();
    assert_eq!(stats["messages_published"], 5 * WINDOW);
    assert_eq!(stats["messages"]["built"], 5 * WINDOW);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).expect("metrics text");
    assert!(
        metrics.contains("certstream_log_published_total{log=\"Mock 't0' log\",url=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("certstream_logs_followed 5\n"),
        "{metrics}"
    );
    // As `main` wires the components: each family declared once, before its samples.
    let mut declared = std::collections::HashSet::new();
    for line in metrics.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
            assert!(declared.insert(name), "{name} declared twice:\n{metrics}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        } else if !line.starts_with("# HELP ") {
            let name = line.split(['{', ' ']).next().expect("a sample line");
            assert!(declared.contains(name), "{line}: no # TYPE before it");
        }
    }
    assert_eq!(server.get("/health").0, 200);

    let (clean_exit, took) = server.terminate();
    assert!(clean_exit, "exit status after SIGTERM");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(
        collector.client().read_close(),
        Some(1001),
        "clients get close 1001"
    );
}

/// Checks the per-log outcome of a run with faults: windows exact, unparseable entries counted as skipped.
fn check_fault_run(mock: &Mock, server: &Certstream, collector: &mut Collector, logs: &[String]) {
    collect_windows(mock, server, collector, logs);
    for log in logs {
        let unparseable = window(mock, log).iter().filter(|e| e.2).count() as u64;
        let stats = server.log_stats(log);
        assert_eq!(stats["skipped"], unparseable, "{log}: {stats}");
        assert_eq!(stats["published"], WINDOW - unparseable, "{log}: {stats}");
    }
}

#[test]
fn each_fault_on_its_own_log_only_delays_it() {
    // One fault per log, all at once; r6 is down for the whole run.
    let faults = [
        "429@r0,every=3,retry_after=1",
        "500@r1,p=0.3",
        "slow@r2,ms=300,p=0.5",
        "truncate@r3,p=0.3",
        "garbage@r4,p=0.3",
        "reset@r5,p=0.3",
        "down@r6",
        "backwards@r7,every=2,by=50",
        "unparseable@r8,every=7",
        "429@t0,every=3,retry_after=1",
        "truncate@t1,p=0.3",
        "reset@t2,p=0.3",
        "garbage@t3,p=0.3",
        "backwards@t4,every=2,by=50",
        "unparseable@t5,every=5",
        "500@ro0,p=0.3",
    ];
    let mock = mock(9, 6, &faults);
    let (server, mut collector, list) = start_listening("/", &[]);
    let mock_list = mock.list();
    list.write(&serde_json::to_vec(&mock_list).expect("list JSON"));
    let healthy: Vec<String> = log_names(&mock_list)
        .into_iter()
        .filter(|log| log != "r6")
        .collect();
    assert_eq!(healthy.len(), 15);
    check_fault_run(&mock, &server, &mut collector, &healthy);
    assert!(
        !collector.by_log.contains_key("r6"),
        "the down log delivered nothing"
    );
    let down = server.log_stats("r6");
    assert!(down["errors"].as_u64() > Some(0), "{down}");
    assert!(
        down["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{down}"
    );
    let limited = server.log_stats("r0");
    assert!(limited["rate_limited"].as_u64() > Some(0), "{limited}");
    // Each fault really happened.
    let stats = mock.stats();
    for (log, kind) in [
        ("r0", "429"),
        ("r1", "500"),
        ("r2", "slow"),
        ("r3", "truncate"),
        ("r4", "garbage"),
        ("r5", "reset"),
        ("r6", "down"),
        ("r7", "backwards"),
        ("t0", "429"),
        ("t1", "truncate"),
        ("t2", "reset"),
        ("t3", "garbage"),
        ("t4", "backwards"),
    ] {
        let count = &stats["logs"][log]["faults"][kind];
        assert!(
            count.as_u64() > Some(0),
            "{log}: {kind} never triggered ({count})"
        );
    }
    let mut server = server;
    assert!(server.running(), "the server never exits on faults");
}

#[test]
fn faults_on_every_log_at_once_only_delay() {
    let mock = mock(3, 2, &[]);
    mock.set_faults(
        &json!([
            // About one request in four fails: enough to hit every log, not so many that error backoffs
            // (1 s, 2 s, 4 s … on failures in a row) stretch the run.
            {"kind": "429", "p": 0.05, "retry_after": 1},
            {"kind": "500", "p": 0.05},
            {"kind": "truncate", "p": 0.05},
            {"kind": "reset", "p": 0.05},
            {"kind": "garbage", "p": 0.05},
            {"kind": "slow", "p": 0.05, "ms": 200},
            {"kind": "unparseable", "every": 11},
        ])
        .to_string(),
    );
    let (server, mut collector, list) = start_listening("/", &[]);
    let mock_list = mock.list();
    list.write(&serde_json::to_vec(&mock_list).expect("list JSON"));
    let logs = log_names(&mock_list);
    check_fault_run(&mock, &server, &mut collector, &logs);
    let errors: u64 = server.stats()["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["errors"].as_u64().unwrap_or(0) + l["rate_limited"].as_u64().unwrap_or(0))
        .sum();
    assert!(errors > 0, "the faults reached the pollers");
    let stats = mock.stats();
    for kind in ["429", "500", "truncate", "reset", "garbage", "slow"] {
        let triggered: u64 = logs
            .iter()
            .filter_map(|log| stats["logs"][log]["faults"][kind].as_u64())
            .sum();
        assert!(triggered > 0, "{kind} never triggered: {stats}");
    }
}

/// Clients hammer the server at its open-files limit (unfinished connections, refused ones coming back at once):
/// the descriptors reserved for the logs keep the list reload and the log connections working, and the client
/// already connected keeps receiving.
#[test]
fn the_logs_are_reached_while_clients_hammer_the_open_files_limit() {
    const OPEN_FILES: u64 = 256;
    const HAMMER: usize = 400;
    let mock = mock(1, 0, &[]);
    let (server, mut collector, list) = certstream_testkit::start_listening(
        "/",
        WINDOW,
        &["--fd-reserve", "64", "--max-connections-per-ip", "100000"],
        &[],
        Some(OPEN_FILES),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (stop, addr) = (stop.clone(), server.addr);
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut connects = 0u64;
            while !stop.load(Ordering::Relaxed) {
                held.retain(|stream| !closed_by_peer(stream));
                // At most 100 new connections per round: a steady hammer, not an ephemeral-port exhaustion.
                let missing = HAMMER.saturating_sub(held.len()).min(100);
                held.extend((0..missing).filter_map(|_| TcpStream::connect(addr).ok()));
                connects += missing as u64;
                std::thread::sleep(Duration::from_millis(50));
            }
            connects
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    list.write_only(&mock.list(), &["r0"]);
    // Well within the 10 s the held connections get to send a request head.
    let complete = collector.read_until(Duration::from_secs(8), |by_log| {
        by_log.get("r0").map_or(0, Vec::len) >= WINDOW as usize
    });
    stop.store(true, Ordering::Relaxed);
    let connects = hammer.join().expect("hammer thread");
    assert!(
        complete,
        "r0 delivered {} of {WINDOW} entries while {connects} connections hammered the server; log tail:\n{}",
        collector.by_log.get("r0").map_or(0, Vec::len),
        server.log_tail(30)
    );
    collector.drain_for(Duration::from_millis(300));
    assert_window("r0", &collector.by_log["r0"], &window(&mock, "r0"));
    let connections = server.stats()["connections"].clone();
    assert!(
        connections["rejected_descriptors"].as_u64() > Some(0),
        "{connections}"
    );
    assert_eq!(connections["accept_errors"], 0, "{connections}");
    let refusal_lines = server
        .log_tail(10_000)
        .matches("refusing connections at accept")
        .count();
    assert!(
        refusal_lines <= 2,
        "refusals are logged at most once per 10 s: {refusal_lines} lines"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile logs: bad records, oversized certificates and chains, implausible tree heads. Each runs beside
// well-behaved logs that must see no effect.

/// Starts the mock's list in `server` and returns every log name.
fn follow_mock(mock: &Mock, list: &ListFile) -> Vec<String> {
    let mock_list = mock.list();
    list.write(&serde_json::to_vec(&mock_list).expect("list JSON"));
    log_names(&mock_list)
}

/// A record with an empty certificate (u24 length 0) costs only itself, in a data tile as in a get-entries page:
/// the valid entries after it in the same tile arrive, with no retry and no error. So does a get-entries item
/// whose `leaf_input` is not base64.
#[test]
fn bad_records_are_skipped_alone_in_tiles_and_pages() {
    let faults = [
        "empty_cert@r0,every=13",
        "bad_base64@r0,every=17",
        "empty_cert@t0,every=13",
        "unparseable@t0,every=29",
    ];
    let mock = mock(2, 2, &faults);
    let (server, mut collector, list) = start_listening("/", &[]);
    let logs = follow_mock(&mock, &list);
    check_fault_run(&mock, &server, &mut collector, &logs);
    for log in ["r0", "t0"] {
        let stats = server.log_stats(log);
        assert!(stats["skipped"].as_u64() >= Some(20), "{log}: {stats}");
        assert_eq!(
            stats["errors"], 0,
            "{log}: no retry for a bad record: {stats}"
        );
    }
    assert_eq!(server.log_stats("t0")["broken_tiles"], 0);
    for log in ["r1", "t1", "ro0"] {
        assert_eq!(server.log_stats(log)["skipped"], 0, "{log}");
    }
}

/// Certificates, chain certificates and issuers over their byte budgets are refused unparsed and counted: an
/// oversized leaf skips its entry (counted `oversized`), an oversized chain certificate or issuer is left out of
/// the chain. Every other entry arrives.
#[test]
fn oversized_certificates_chains_and_issuers_are_refused_and_counted() {
    let faults = [
        "huge_cert@r0,every=11,bytes=300000",
        "huge_chain@r0,every=7,bytes=100000",
        "huge_chain@t0,every=100,bytes=100000",
    ];
    let mock = mock(2, 2, &faults);
    let (server, mut collector, list) = start_listening("/", &[]);
    let logs = follow_mock(&mock, &list);
    check_fault_run(&mock, &server, &mut collector, &logs);
    let r0 = server.log_stats("r0");
    let huge = window(&mock, "r0").iter().filter(|e| e.2).count() as u64;
    assert_eq!(r0["oversized"], huge, "{r0}");
    assert_eq!(r0["unparseable"], 0, "refused before parsing: {r0}");
    let messages = &server.stats()["messages"];
    assert!(
        messages["oversized_chain_certificates"].as_u64() >= Some(300 / 7 - huge),
        "{messages}"
    );
    assert_eq!(messages["oversized_certificates"], huge, "{messages}");
    let t0 = server.log_stats("t0");
    assert!(t0["incomplete_chains"].as_u64() >= Some(2), "{t0}");
    for log in ["r1", "t1", "ro0"] {
        let stats = server.log_stats(log);
        assert_eq!(
            (&stats["skipped"], &stats["incomplete_chains"]),
            (&json!(0), &json!(0)),
            "{log}: {stats}"
        );
    }
}

/// A log whose signed tree head jumps to a billion entries is logged, counted and followed at the capped rate
/// (here 100 entries per second, 10 s of it at once), not as fast as it serves; the other logs see no effect.
#[test]
fn an_implausible_tree_head_is_followed_at_the_capped_rate() {
    const CLAIM: u64 = 1_000_000_000;
    const RATE: u64 = 100;
    let faults = [
        format!("jump@r0,every=2,to={CLAIM}"),
        format!("jump@t0,every=2,to={CLAIM}"),
    ];
    let faults: Vec<&str> = faults.iter().map(String::as_str).collect();
    let mock = mock(2, 2, &faults);
    let started = std::time::Instant::now();
    let (server, mut collector, list) =
        start_listening("/", &[("CERTSTREAM_MAX_LOG_GROWTH", "100")]);
    let logs = follow_mock(&mock, &list);
    let healthy: Vec<String> = logs
        .iter()
        .filter(|log| !["r0", "t0"].contains(&log.as_str()))
        .cloned()
        .collect();
    collect_windows(&mock, &server, &mut collector, &healthy);
    std::thread::sleep(Duration::from_secs(2));
    let allowed = WINDOW + RATE * (10 + started.elapsed().as_secs() + 5);
    for log in ["r0", "t0"] {
        let stats = server.log_stats(log);
        let published = stats["published"].as_u64().expect("published");
        assert!(
            published <= allowed,
            "{log}: {published} messages, at most {allowed} allowed: {stats}"
        );
        assert_eq!(stats["claimed_tree_size"], CLAIM, "{log}: {stats}");
        assert!(
            stats["implausible_heads"].as_u64() >= Some(1),
            "{log}: {stats}"
        );
        assert!(
            stats["lag"].as_u64() < Some(10_000),
            "{log}: lag is against the followed size: {stats}"
        );
    }
    for log in &healthy {
        let stats = server.log_stats(log);
        assert_eq!(stats["implausible_heads"], 0, "{log}: {stats}");
    }
}
