//! Publishing to NATS JetStream, end to end: the mock CT logs → the real `certstream` binary with `--nats-url` → a
//! real `nats-server -js` (started by the test) → the stream read back with `async-nats`. Every index of every log
//! is in the stream exactly once, with the message ID `<log_id>:<index>` and the very bytes the WebSocket clients of
//! the same process received; a broker killed and restarted mid-stream, or an ingester killed with SIGKILL and
//! restarted, loses and repeats nothing; a broker that cannot be used stops the start with a clear error.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use certstream::broker::wire;
use certstream_testkit::nats::{
    NatsServer, StoredEntry, assert_refuses_wrong_credentials, create_stream, stream_contents,
};
use certstream_testkit::{
    Certstream, ListFile, Mock, RawCollector, assert_each_log_unbroken, closed_port, cursor_of,
    refused_start, start_listening_to, with_cursor,
};
use serde_json::Value;

/// Bound on every wait.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The stream's entries by mock log name and index; fails on an index stored twice.
fn by_log_and_index<'a>(
    mock: &Mock,
    stored: &'a [StoredEntry],
) -> BTreeMap<String, BTreeMap<u64, &'a StoredEntry>> {
    let names: BTreeMap<String, String> = mock
        .log_ids()
        .into_iter()
        .map(|(name, id)| (id, name))
        .collect();
    let mut out: BTreeMap<String, BTreeMap<u64, &StoredEntry>> = BTreeMap::new();
    for entry in stored {
        let name = names.get(&entry.log_id).expect("a mock log's ID").clone();
        assert_eq!(
            entry.message_id,
            format!("{}:{}", entry.log_id, entry.index),
            "Nats-Msg-Id"
        );
        let again = out
            .entry(name.clone())
            .or_default()
            .insert(entry.index, entry);
        assert!(again.is_none(), "{name} index {} stored twice", entry.index);
    }
    out
}

/// Checks that a client got one unbroken run of the stream from cursor `from`: consecutive cursors, each message
/// with the bytes the stream holds at that cursor, none twice.
fn assert_client_got_a_run_of_the_stream(
    client: &RawCollector,
    stored: &[StoredEntry],
    from: u64,
    what: &str,
) {
    let mut cursors: Vec<(u64, &[u8])> = client
        .delivered
        .by_log
        .values()
        .flat_map(|entries| entries.values())
        .map(|payload| (cursor_of(payload).expect("a cursor"), &payload[..]))
        .collect();
    cursors.sort_by_key(|(cursor, _)| *cursor);
    let (first, last) = (cursors[0].0, cursors[cursors.len() - 1].0);
    assert_eq!(first, from, "{what}: the first cursor");
    assert_eq!(
        cursors.len() as u64,
        last - first + 1,
        "{what}: cursors {first}..={last} have gaps or repeats"
    );
    for (cursor, payload) in cursors {
        let entry = &stored[(cursor - 1) as usize];
        assert_eq!(entry.sequence, cursor);
        let [full_line, ..] = wire::split(&entry.payload).expect("three lines");
        assert_eq!(
            payload,
            with_cursor(full_line, cursor),
            "{what}: cursor {cursor}"
        );
    }
}

/// A certstream publishing to `nats`, following `logs` of `mock`, with raw clients on the full and lite streams.
fn run(
    nats: &NatsServer,
    mock: &Mock,
    list: &ListFile,
    logs: &[&str],
    start_back: u64,
    args: &[&str],
) -> (Certstream, RawCollector, RawCollector) {
    let url = nats.url();
    let mut all = vec!["--nats-url", &url];
    all.extend_from_slice(args);
    let (server, collector) = start_listening_to(list, "/full-stream", start_back, &all, &[], None);
    drop(collector);
    let full = RawCollector::connect(&server, "/full-stream");
    let lite = RawCollector::connect(&server, "/");
    server.wait_stats("the clients", TIMEOUT, |s| s["clients"]["total"] == 2);
    list.write_only(&mock.list(), logs);
    (server, full, lite)
}

/// SIGTERM, and a clean exit within the timeout.
/// Stops the server with SIGTERM while `client` reads to the close frame (the clients are sent what the broker
/// acknowledged before the close: a client that stopped reading would not get its close frame).
fn stop(server: Certstream, client: &mut RawCollector) {
    server.send_sigterm();
    client.read_to_close();
    let (ok, _) = server.wait_exit(TIMEOUT);
    assert!(ok, "exit status after SIGTERM");
}

#[test]
fn every_index_is_in_the_stream_once_with_the_websocket_bytes() {
    const SIZE: u64 = 300;
    let logs = ["r0", "t0"];
    let nats = NatsServer::start(&[]);
    let mock = Mock::fixed(1, 1, SIZE, &[], &[]);
    let list = ListFile::new();
    let (server, mut full, mut lite) = run(&nats, &mock, &list, &logs, SIZE, &[]);
    let whole = |c: &RawCollector| logs.iter().all(|log| c.count(log) as u64 == SIZE);
    full.read_until("every entry on /full-stream", whole);
    lite.read_until("every entry on /", whole);
    server.wait_stats("every message acknowledged", TIMEOUT, |s| {
        s["nats"]["acked"] == 2 * SIZE && s["nats"]["buffered_messages"] == 0
    });
    let stats = server.stats();
    assert_eq!(stats["nats"]["connected"], 1, "{}", stats["nats"]);
    assert_eq!(stats["nats"]["publish_failures"], 0, "{}", stats["nats"]);
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
    for line in [
        format!("certstream_nats_acked_total {}\n", 2 * SIZE),
        "certstream_nats_buffered_bytes 0\n".to_owned(),
        "certstream_nats_connected 1\n".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} in /metrics");
    }
    stop(server, &mut full);

    let stored = stream_contents(&nats.url());
    assert_eq!(stored.len() as u64, 2 * SIZE);
    let by_log = by_log_and_index(&mock, &stored);
    for (log, range) in assert_each_log_unbroken("the stream", &by_log) {
        assert_eq!(range, (0, SIZE - 1), "{log}");
    }
    for log in logs {
        for (index, entry) in &by_log[log] {
            let [full_line, lite_line, domains_line] =
                wire::split(&entry.payload).expect("three lines");
            // The ingester's own clients are served from the stream too: its lines, with the cursor.
            assert_eq!(
                with_cursor(full_line, entry.sequence),
                full.delivered.by_log[log][index],
                "{log} {index} full"
            );
            assert_eq!(
                with_cursor(lite_line, entry.sequence),
                lite.delivered.by_log[log][index],
                "{log} {index} lite"
            );
            let full_json: Value = serde_json::from_slice(full_line).expect("JSON");
            let domains: Value = serde_json::from_slice(domains_line).expect("JSON");
            assert_eq!(domains["message_type"], "dns_entries");
            assert_eq!(
                domains["data"],
                full_json["data"]["leaf_cert"]["all_domains"]
            );
            assert_eq!(
                entry.entry_type,
                full_json["data"]["update_type"]
                    .as_str()
                    .expect("update_type")
            );
        }
    }
}

#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_and_repeats_nothing() {
    let logs = ["r0", "t0"];
    let mut nats = NatsServer::start(&[]);
    let mock = Mock::with_logs(1, 1, 100, &["--start-size", "1000"]);
    let list = ListFile::new();
    // A small buffer: it fills at once while the broker is down.
    let (server, mut full, mut lite) = run(
        &nats,
        &mock,
        &list,
        &logs,
        200,
        &["--nats-buffer-bytes", "64KiB"],
    );
    full.read_until("entries before the kill", |c| {
        logs.iter().all(|log| c.count(log) >= 100)
    });

    nats.kill();
    server.wait_stats("the broker seen down and ingestion waiting", TIMEOUT, |s| {
        s["nats"]["connected"] == 0 && s["nats"]["ingestion_waited_ms"].as_u64() > Some(500)
    });
    // Ingestion waits; the reactor does not: the clients stay connected and their pings are answered. (They are
    // served from the stream: nothing new reaches them until it is back.)
    let before = full.count("r0") + full.count("t0");
    for client in [&mut full, &mut lite] {
        for _ in 0..3 {
            let pongs = client.pongs;
            client.client.send(9, b"still there?", true);
            client.read_until("a pong while the broker is down", |c| c.pongs > pongs);
        }
    }
    full.read_for(Duration::from_secs(1));
    assert!(
        full.count("r0") + full.count("t0") <= before + 40,
        "ingestion waits once the buffer is full"
    );
    let waiting = server.stats()["nats"].clone();
    assert!(
        waiting["buffered_bytes"].as_u64() >= Some(48 << 10),
        "{waiting}"
    );

    // Down longer than the acknowledgement timeout: what was in flight is sent again after the restart.
    server.wait_stats("publishes not acknowledged in time", TIMEOUT, |s| {
        s["nats"]["publish_failures"].as_u64() >= Some(1)
    });
    nats.resume();
    let after = full.count("r0") + full.count("t0");
    full.read_until("entries after the restart", |c| {
        c.count("r0") + c.count("t0") >= after + 200
    });
    let stats = server.stats();
    assert!(stats["nats"]["last_error"].is_string(), "{}", stats["nats"]);
    stop(server, &mut full);

    let stored = stream_contents(&nats.url());
    let by_log = by_log_and_index(&mock, &stored);
    assert_each_log_unbroken("the stream", &by_log);
    assert_client_got_a_run_of_the_stream(&full, &stored, 1, "across the broker's restart");
}

/// How the ingester is stopped while the broker is down.
enum Stop {
    /// `kill -9`.
    Kill,
    /// SIGTERM: the drain waits `--nats-drain-timeout` (1 s) in vain, then the state is saved.
    Term,
}

#[test]
fn an_ingester_killed_and_restarted_leaves_every_index_once_in_the_stream() {
    restart_while_the_broker_is_down(Stop::Kill);
}

#[test]
fn an_ingester_stopped_while_the_broker_is_down_saves_only_what_was_acknowledged() {
    restart_while_the_broker_is_down(Stop::Term);
}

/// The broker goes down, ingestion waits with entries sent to the clients and not acknowledged, the ingester is
/// stopped (`how`); broker and ingester come back: every index is in the stream once, those entries included.
fn restart_while_the_broker_is_down(how: Stop) {
    let logs = ["r0", "t0"];
    let mut nats = NatsServer::start(&[]);
    let mock = Mock::with_logs(1, 1, 100, &["--start-size", "1000"]);
    let list = ListFile::new();
    let state = list.path.with_file_name("state.json");
    let state = state.to_str().expect("UTF-8 path");
    let args = [
        "--state-file",
        state,
        "--state-save-interval",
        "200ms",
        "--nats-buffer-bytes",
        "256KiB",
        "--nats-drain-timeout",
        "1s",
    ];
    let (server, mut first_run, _lite) = run(&nats, &mock, &list, &logs, 300, &args);
    first_run.read_until("entries before the kill", |c| {
        logs.iter().all(|log| c.count(log) >= 150)
    });
    // The broker goes down first: what is published from then on is not acknowledged, and several state saves
    // pass before the ingester is killed. Those entries must not be saved as done.
    nats.kill();
    server.wait_stats("ingestion waiting for the broker", TIMEOUT, |s| {
        s["nats"]["ingestion_waited_ms"].as_u64() > Some(1000)
    });
    let unacked = server.stats()["nats"]["buffered_messages"].as_u64();
    assert!(unacked > Some(5), "entries published, not acknowledged");
    match how {
        Stop::Kill => {
            server.send_signal(libc::SIGKILL);
            let _ = server.wait_exit(TIMEOUT);
        }
        Stop::Term => {
            server.send_sigterm();
            first_run.read_to_close();
            let (ok, took) = server.wait_exit(TIMEOUT);
            assert!(ok, "exit status after SIGTERM");
            assert!(
                took < Duration::from_secs(5),
                "the drain is bounded: {took:?}"
            );
        }
    }
    nats.resume();

    let (server, mut full, _lite) = run(&nats, &mock, &list, &logs, 300, &args);
    full.read_until("entries after the restart", |c| {
        logs.iter().all(|log| c.count(log) >= 100)
    });
    let resumed: BTreeMap<&str, u64> = logs
        .iter()
        .map(|log| {
            (
                *log,
                *full.delivered.by_log[*log].keys().next().expect("entries"),
            )
        })
        .collect();
    stop(server, &mut full);

    let stored = stream_contents(&nats.url());
    let by_log = by_log_and_index(&mock, &stored);
    assert_client_got_a_run_of_the_stream(&first_run, &stored, 1, "the first run");
    // The second run's clients start after what the stream held when it started.
    let second_from = full
        .delivered
        .by_log
        .values()
        .flat_map(|entries| entries.values())
        .map(|payload| cursor_of(payload).expect("a cursor"))
        .min()
        .expect("entries");
    assert!(
        second_from > 1,
        "the second run starts after the first run's messages"
    );
    assert_client_got_a_run_of_the_stream(&full, &stored, second_from, "the second run");
    for (log, (first, last)) in assert_each_log_unbroken("the stream", &by_log) {
        // The second run started at or before where the stream was complete.
        assert!(resumed[log.as_str()] <= last, "{log}");
        assert!(
            first < resumed[log.as_str()],
            "{log}: the first run's entries are there"
        );
        for index in first_run.delivered.by_log[&log].keys() {
            assert!(
                by_log[&log].contains_key(index),
                "{log} {index}: sent to the first run's clients, not in the stream"
            );
        }
    }
}

/// Runs an ingester with `args` and an empty log list, expecting it to refuse to start; returns its stderr.
fn refused_ingester_start(args: &[&str]) -> String {
    let list = ListFile::new();
    list.write(br#"{"version":"0","operators":[]}"#);
    let mut all = vec!["--listen", "127.0.0.1:0", "--log-list", list.location()];
    all.extend_from_slice(args);
    refused_start(&all).0
}

#[test]
fn a_broker_that_cannot_take_the_messages_stops_the_start_with_a_clear_error() {
    let refused = format!("nats://127.0.0.1:{}", closed_port());
    let error = refused_ingester_start(&["--nats-url", &refused]);
    assert!(error.contains(&format!("NATS at {refused}")), "{error}");

    let unknown = "nats://no-such-host.invalid:4222";
    let error = refused_ingester_start(&["--nats-url", unknown]);
    assert!(error.contains(&format!("NATS at {unknown}")), "{error}");

    assert_refuses_wrong_credentials(|url| refused_ingester_start(&["--nats-url", url]));

    let nats = NatsServer::start(&[]);
    create_stream(
        &nats.url(),
        &["other.>"],
        jetstream::stream::RetentionPolicy::Limits,
    );
    let error = refused_ingester_start(&["--nats-url", &nats.url()]);
    assert!(error.contains("not certstream.entries"), "{error}");

    let nats = NatsServer::start(&[]);
    create_stream(
        &nats.url(),
        &["certstream.>"],
        jetstream::stream::RetentionPolicy::WorkQueue,
    );
    let error = refused_ingester_start(&["--nats-url", &nats.url()]);
    assert!(error.contains("not by limits"), "{error}");
}
