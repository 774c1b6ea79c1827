//! Relay mode and replay from a cursor, end to end: the mock CT logs → the real `certstream` ingester with
//! `--nats-url` → a real `nats-server -js` → `certstream relay` processes (two sharing one port) → WebSocket,
//! server-sent events and NDJSON clients. Every client gets every index of every log exactly once, each message
//! byte for byte what the ingester's own clients got (same `cursor`), through a broker killed and restarted, an
//! ingester killed with SIGKILL and restarted, a relay killed and restarted (its clients come back with their last
//! cursor); `?since=` serves the history from a time; a stream deleted and created again under a relay is read
//! from its start; `--nats-max-replays` answers `503` to clients beyond it until one leaves; a relay that cannot use
//! the broker or its stream does not start, saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certstream::broker::wire;
use certstream_testkit::nats::{
    NatsServer, assert_refuses_wrong_credentials, create_stream, delete_stream, last_sequence,
    stream_contents,
};
use certstream_testkit::wait::wait_until;
use certstream_testkit::{
    Certstream, Delivered, HttpCollector, ListFile, Mock, RawCollector, assert_each_log_unbroken,
    closed_port, cursor_of, http_request_on, refused_start, shrink_receive_buffer,
    start_listening_to, upgrade_request, with_cursor,
};
use serde_json::Value;

/// Bound on every wait.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How soon after the broker's restart relay clients get messages again (the broker is back at once, the
/// ingester reconnects and publishes within about a second).
const BACK_AFTER_BROKER_RESTART: Duration = Duration::from_secs(8);

/// The two logs every test follows.
const LOGS: [&str; 2] = ["r0", "t0"];

/// Options of every relay: its clients must never lose a message to their queue limit.
const RELAY_ARGS: [&str; 2] = ["--ring-size", "100000"];

/// A `nats-server`, the mock logs and an ingester publishing to it (its log list still empty: nothing is
/// published before the test writes the list).
struct Pipeline {
    nats: NatsServer,
    mock: Mock,
    list: ListFile,
    ingester: Certstream,
}

impl Pipeline {
    /// Starts the broker and an ingester following `mock` from `start_back` entries back, with `args` added.
    fn start(mock: Mock, start_back: u64, args: &[&str]) -> Pipeline {
        let nats = NatsServer::start(&[]);
        let list = ListFile::new();
        let ingester = start_ingester(&nats, &list, start_back, args);
        Pipeline {
            nats,
            mock,
            list,
            ingester,
        }
    }

    /// A relay of this pipeline's stream, on `port` (which other relays may share) or a port of its own.
    fn relay(&self, port: Option<u16>) -> Certstream {
        let url = self.nats.url();
        let mut args = vec!["--nats-url", &url];
        args.extend(RELAY_ARGS);
        match port {
            Some(port) => Certstream::start_relay_on(port, &args, &[]),
            None => Certstream::start_relay(&args, &[]),
        }
    }

    /// Starts ingestion: the list names `logs`.
    fn follow(&self, logs: &[&str]) {
        self.list.write_only(&self.mock.list(), logs);
    }

    /// Waits until the stream holds `messages` messages (all the ingester publishes of what it follows).
    fn wait_for_stream(&self, messages: u64) {
        let url = self.nats.url();
        wait_until(
            "the messages in the stream",
            TIMEOUT,
            || last_sequence(&url),
            |&last| last == messages,
            |last| format!("last sequence {last}, waiting for {messages}"),
        );
    }

    /// Stops the ingester cleanly (SIGTERM: what it sent is acknowledged first) and returns the stream's last
    /// sequence: everything a relay client must end with.
    fn stop_ingester(self) -> (NatsServer, Mock, u64) {
        let (ok, _) = self.ingester.terminate();
        assert!(ok, "the ingester's exit status after SIGTERM");
        let last = last_sequence(&self.nats.url());
        (self.nats, self.mock, last)
    }
}

/// An ingester publishing to `nats`, following the list file `list` (emptied first) from `start_back` entries back.
fn start_ingester(
    nats: &NatsServer,
    list: &ListFile,
    start_back: u64,
    args: &[&str],
) -> Certstream {
    let url = nats.url();
    let mut all = vec!["--nats-url", &url];
    all.extend_from_slice(args);
    let (ingester, collector) =
        start_listening_to(list, "/full-stream", start_back, &all, &[], None);
    drop(collector);
    ingester.wait_stats("the first client gone", TIMEOUT, |s| {
        s["clients"]["total"] == 0
    });
    ingester
}

/// The three streams, one client each.
const PATHS: [&str; 3] = ["/full-stream", "/", "/domains-only"];

/// One client per stream on `server` (on a port shared by relays, connections this process accepted).
fn clients_of(server: &Certstream) -> Vec<RawCollector> {
    PATHS
        .iter()
        .map(|path| RawCollector::connect(server, path))
        .collect()
}

/// Reads `collector` (on `path`) until it has every index `0..size` of every log of [`LOGS`].
fn read_everything(collector: &mut RawCollector, path: &str, size: u64) {
    let total = LOGS.len() as u64 * size;
    if path == "/domains-only" {
        // No log or index in a dns_entries message: its cursors count.
        collector.read_until("every message on /domains-only", |c| {
            c.delivered.by_cursor.len() as u64 == total
        });
    } else {
        collector.read_until(&format!("every index on {path}"), |c| {
            LOGS.iter().all(|log| c.count(log) as u64 == size)
        });
    }
    // Anything more (an index twice, a stray message) would arrive right behind.
    collector.read_for(Duration::from_millis(300));
}

/// Checks that `delivered` holds exactly the cursors `1..=last` and, per log, one unbroken run of indexes; returns
/// each log's first and last index.
fn assert_everything_once(
    who: &str,
    delivered: &Delivered,
    last: u64,
) -> BTreeMap<String, (u64, u64)> {
    let received = delivered.by_cursor.len();
    if let Some(missing) = (1..=last).find(|cursor| !delivered.by_cursor.contains_key(cursor)) {
        panic!("{who}: cursor {missing} of 1..={last} missing ({received} messages received)");
    }
    assert_eq!(received as u64, last, "{who}: cursors beyond {last}");
    assert_each_log_unbroken(who, &delivered.by_log)
}

/// Checks that `relay` and `reference` (the ingester's client of the same stream) got the same messages, byte for
/// byte, under the same cursors.
fn assert_same_bytes(who: &str, relay: &Delivered, reference: &Delivered) {
    if let Some(missing) = reference
        .by_cursor
        .keys()
        .find(|cursor| !relay.by_cursor.contains_key(cursor))
    {
        panic!("{who}: cursor {missing} missing");
    }
    assert_eq!(
        relay.by_cursor.len(),
        reference.by_cursor.len(),
        "{who}: messages"
    );
    for (cursor, bytes) in &relay.by_cursor {
        assert!(
            *bytes == reference.by_cursor[cursor],
            "{who}: cursor {cursor} differs from the ingester's:\n{}\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&reference.by_cursor[cursor])
        );
    }
}

/// A relay's `/stats` section `stream`.
fn stream_stats(relay: &Certstream) -> Value {
    relay.stats()["stream"].clone()
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[test]
fn two_relays_on_one_port_send_every_client_the_ingesters_bytes() {
    const SIZE: u64 = 150;
    let pipeline = Pipeline::start(Mock::fixed(1, 1, SIZE, &[], &[]), SIZE, &[]);
    let port = closed_port();
    let relays = [pipeline.relay(Some(port)), pipeline.relay(Some(port))];
    // Each relay gets a client of each stream (connections the kernel gave to it), and three more clients go
    // wherever the kernel sends them.
    let mut ingester_clients = clients_of(&pipeline.ingester);
    let mut relay_clients: Vec<Vec<RawCollector>> = relays.iter().map(clients_of).collect();
    let spread: Vec<RawCollector> = PATHS
        .iter()
        .map(|path| {
            RawCollector::handshake(TcpStream::connect(relays[0].addr).expect("connect"), path)
        })
        .collect();
    relay_clients.push(spread);
    pipeline
        .ingester
        .wait_stats("the ingester's clients", TIMEOUT, |s| {
            s["clients"]["total"] == 3
        });
    // Each relay's own /stats counts the clients it serves.
    wait_until(
        "the relays' clients",
        TIMEOUT,
        || {
            relays
                .iter()
                .map(|relay| relay.stats()["clients"]["total"].as_u64().unwrap_or(0))
                .collect::<Vec<_>>()
        },
        |per_relay| per_relay.iter().all(|&n| n >= 3) && per_relay.iter().sum::<u64>() == 9,
        |per_relay| format!("clients per relay {per_relay:?}"),
    );

    pipeline.follow(&LOGS);
    for (path, client) in PATHS.iter().zip(&mut ingester_clients) {
        read_everything(client, path, SIZE);
    }
    for clients in &mut relay_clients {
        for (path, client) in PATHS.iter().zip(clients.iter_mut()) {
            read_everything(client, path, SIZE);
        }
    }

    let last = last_sequence(&pipeline.nats.url());
    assert_eq!(
        last,
        LOGS.len() as u64 * SIZE,
        "one stream message per entry"
    );
    for (path, reference) in PATHS.iter().zip(&ingester_clients) {
        let ranges = assert_everything_once(
            &format!("the ingester's {path}"),
            &reference.delivered,
            last,
        );
        if *path != "/domains-only" {
            for log in LOGS {
                assert_eq!(ranges[log], (0, SIZE - 1), "{path} {log}");
            }
        }
    }
    for (n, clients) in relay_clients.iter().enumerate() {
        for ((path, client), reference) in PATHS.iter().zip(clients).zip(&ingester_clients) {
            assert_same_bytes(
                &format!("client {n} of {path}"),
                &client.delivered,
                &reference.delivered,
            );
        }
    }
    // The stream holds each message without its cursor (the stream assigns it): the payload lines are the
    // clients' messages with the `"cursor":N,` key taken out.
    for entry in stream_contents(&pipeline.nats.url()) {
        let lines = wire::split(&entry.payload).expect("three lines");
        // In the order of PATHS: full, lite, domains-only.
        for (line, client) in lines.iter().zip(&ingester_clients) {
            assert!(
                client.delivered.by_cursor[&entry.sequence] == with_cursor(line, entry.sequence),
                "cursor {}: the client's message is the stream's line with the cursor first",
                entry.sequence
            );
        }
    }
    for relay in &relays {
        let stats = stream_stats(relay);
        assert_eq!(stats["received"], last, "{stats}");
        assert_eq!(stats["cursor"], last, "{stats}");
        assert_eq!(stats["undecodable"], 0, "{stats}");
        let (_, metrics) = relay.get("/metrics");
        let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
        for line in [
            format!("certstream_stream_received_total {last}\n"),
            format!("certstream_stream_cursor {last}\n"),
            "certstream_stream_undecodable_total 0\n".to_owned(),
        ] {
            assert!(metrics.contains(&line), "{line} in a relay's /metrics");
        }
    }
}

#[test]
fn a_broker_killed_and_restarted_mid_stream_leaves_relay_clients_connected_and_whole() {
    let mut pipeline = Pipeline::start(
        Mock::with_logs(1, 1, 100, &["--start-size", "1000"]),
        200,
        &[],
    );
    let relay = pipeline.relay(None);
    let mut full = RawCollector::connect(&relay, "/full-stream");
    let mut domains = RawCollector::connect(&relay, "/domains-only");
    relay.wait_stats("the clients", TIMEOUT, |s| s["clients"]["total"] == 2);
    pipeline.follow(&LOGS);
    full.read_until("entries before the kill", |c| {
        LOGS.iter().all(|log| c.count(log) >= 100)
    });

    pipeline.nats.kill();
    relay.wait_stats("the relay seeing the broker down", TIMEOUT, |s| {
        s["nats"]["connected"] == 0
    });
    // Down long enough for the relay to notice (and the ingester to buffer): the clients stay connected and
    // their pings (a few a second, under the control frame limit) are answered.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(2) {
        for client in [&mut full, &mut domains] {
            let pongs = client.pongs;
            client.client.send(9, b"still there?", true);
            client.read_until("a pong while the broker is down", |c| c.pongs > pongs);
            client.read_for(Duration::from_millis(200));
        }
    }
    pipeline.nats.resume();
    // The ingester is back within about a second: the relay's clients must not wait much longer (the
    // relay's consumer is gone with the broker's memory and has to be created again).
    let before = full.delivered.by_cursor.len();
    full.read_until_within(
        "the first entry after the broker's restart",
        BACK_AFTER_BROKER_RESTART,
        |c| c.delivered.by_cursor.len() > before,
    );
    full.read_until("entries after the restart", |c| {
        c.delivered.by_cursor.len() >= before + 200
    });
    let (_nats, _mock, last) = pipeline.stop_ingester();
    for (name, client) in [("/full-stream", &mut full), ("/domains-only", &mut domains)] {
        client.read_until(&format!("the end of the stream on {name}"), |c| {
            c.delivered.last_cursor == Some(last)
        });
        client.read_for(Duration::from_millis(300));
        assert!(!client.ended, "{name}: still connected");
        assert_everything_once(name, &client.delivered, last);
    }
    let stats = relay.stats();
    assert_eq!(stats["stream"]["cursor"], last, "{stats}");
    assert_eq!(stats["nats"]["connected"], 1, "{stats}");
    assert!(stats["nats"]["last_error"].is_string(), "{stats}");
}

#[test]
fn an_ingester_killed_and_restarted_leaves_relay_clients_whole() {
    // The state file, in a private directory of its own.
    let state_dir = ListFile::new();
    let state = state_dir.path.with_file_name("state.json");
    let state = state.to_str().expect("UTF-8 path");
    let ingester_args = ["--state-file", state, "--state-save-interval", "200ms"];
    let mut pipeline = Pipeline::start(
        Mock::with_logs(1, 1, 100, &["--start-size", "1000"]),
        200,
        &ingester_args,
    );
    let relay = pipeline.relay(None);
    let mut full = RawCollector::connect(&relay, "/full-stream");
    relay.wait_stats("the client", TIMEOUT, |s| s["clients"]["total"] == 1);
    pipeline.follow(&LOGS);
    full.read_until("entries before the kill", |c| {
        LOGS.iter().all(|log| c.count(log) >= 150)
    });
    // At least one save of the state file: the restart resumes from it, a little behind the stream.
    std::thread::sleep(Duration::from_millis(500));
    pipeline.ingester.send_signal(libc::SIGKILL);
    let killed_at = full.delivered.last_cursor;

    // Replacing it reaps the killed one.
    pipeline.ingester = start_ingester(&pipeline.nats, &pipeline.list, 200, &ingester_args);
    pipeline.follow(&LOGS);
    full.read_until("entries after the restart", |c| {
        c.delivered.last_cursor >= killed_at.map(|cursor| cursor + 200)
    });
    let (_nats, _mock, last) = pipeline.stop_ingester();
    full.read_until("the end of the stream", |c| {
        c.delivered.last_cursor == Some(last)
    });
    full.read_for(Duration::from_millis(300));
    let ranges = assert_everything_once("/full-stream", &full.delivered, last);
    assert_eq!(ranges.len(), LOGS.len(), "{ranges:?}");
}

#[test]
fn clients_of_a_restarted_relay_resume_from_their_last_cursor() {
    let pipeline = Pipeline::start(
        Mock::with_logs(1, 1, 100, &["--start-size", "1000"]),
        100,
        &[],
    );
    let port = closed_port();
    let relay = pipeline.relay(Some(port));
    let mut ws = RawCollector::connect(&relay, "/full-stream");
    let mut sse = HttpCollector::get(relay.addr, "/sse", &[]);
    let mut ndjson = HttpCollector::get(relay.addr, "/domains-only/ndjson", &[]);
    relay.wait_stats("the clients", TIMEOUT, |s| s["clients"]["total"] == 3);
    pipeline.follow(&LOGS);
    ws.read_until("entries before the relay restart", |c| {
        LOGS.iter().all(|log| c.count(log) >= 50)
    });
    for http in [&mut sse, &mut ndjson] {
        http.read_until("messages before the relay restart", |d| {
            d.by_cursor.len() >= 100
        });
    }

    relay.send_signal(libc::SIGKILL);
    let _ = relay.wait_exit(TIMEOUT);
    ws.read_to_end();
    sse.read_to_end();
    ndjson.read_to_end();
    // Messages go by while no relay runs.
    let url = pipeline.nats.url();
    let stream_then = last_sequence(&url);
    wait_until(
        "messages published while the relay is down",
        TIMEOUT,
        || last_sequence(&url),
        |&last| last >= stream_then + 50,
        |last| format!("last sequence {last}"),
    );

    // Each client comes back with the cursor of the last message it got, and keeps what it had (a message
    // received again would fail the test).
    let relay = pipeline.relay(Some(port));
    let last_of = |delivered: &Delivered| delivered.last_cursor.expect("a cursor").to_string();
    let mut resumed = RawCollector::connect(
        &relay,
        &format!("/full-stream?cursor={}", last_of(&ws.delivered)),
    );
    resumed.delivered = std::mem::take(&mut ws.delivered);
    let last_event_id = last_of(&sse.delivered);
    let mut sse_resumed =
        HttpCollector::get(relay.addr, "/sse", &[("Last-Event-ID", &last_event_id)]);
    sse_resumed.delivered = std::mem::take(&mut sse.delivered);
    let ndjson_cursor = last_of(&ndjson.delivered);
    let mut ndjson_resumed = HttpCollector::get(
        relay.addr,
        &format!("/domains-only/ndjson?cursor={ndjson_cursor}"),
        &[],
    );
    ndjson_resumed.delivered = std::mem::take(&mut ndjson.delivered);
    resumed.read_until("entries after the restart", |c| {
        c.delivered.last_cursor >= Some(stream_then + 100)
    });

    let (_nats, _mock, last) = pipeline.stop_ingester();
    resumed.read_until("the end of the stream", |c| {
        c.delivered.last_cursor == Some(last)
    });
    for http in [&mut sse_resumed, &mut ndjson_resumed] {
        http.read_until("the end of the stream", |d| d.last_cursor == Some(last));
    }
    // What follows the last message (a duplicate would) arrives before the ends of the streams.
    let (ok, _) = relay.terminate();
    assert!(ok, "the relay's exit status after SIGTERM");
    resumed.read_to_close();
    sse_resumed.read_to_end();
    ndjson_resumed.read_to_end();
    assert_everything_once("WebSocket ?cursor=", &resumed.delivered, last);
    assert_everything_once(
        "server-sent events Last-Event-ID",
        &sse_resumed.delivered,
        last,
    );
    assert_everything_once("NDJSON ?cursor=", &ndjson_resumed.delivered, last);
}

#[test]
fn since_serves_the_history_from_that_time_then_live() {
    const SIZE: u64 = 60;
    let started = unix_now().floor() as u64 - 1;
    let pipeline = Pipeline::start(Mock::fixed(2, 1, SIZE, &[], &[]), SIZE, &[]);
    let relay = pipeline.relay(None);
    let mut live = RawCollector::connect(&relay, "/full-stream");
    relay.wait_stats("the client", TIMEOUT, |s| s["clients"]["total"] == 1);

    // r0 is stored before the second `since` names, t0 at or after it.
    pipeline.follow(&["r0"]);
    live.read_until("r0", |c| c.count("r0") as u64 == SIZE);
    let since = unix_now().floor() as u64 + 1;
    while unix_now() < since as f64 + 0.05 {
        std::thread::sleep(Duration::from_millis(20));
    }
    pipeline.follow(&["r0", "t0"]);
    live.read_until("t0", |c| c.count("t0") as u64 == SIZE);

    let mut from_since = RawCollector::connect(&relay, &format!("/full-stream?since={since}"));
    let mut from_start = RawCollector::connect(&relay, &format!("/full-stream?since={started}"));
    from_since.read_until("t0's history", |c| c.count("t0") as u64 == SIZE);
    from_start.read_until("the whole history", |c| {
        c.delivered.by_cursor.len() == live.delivered.by_cursor.len()
    });
    // Then live, with no gap and no duplicate at the seam.
    pipeline.follow(&["r0", "t0", "r1"]);
    for client in [&mut live, &mut from_since, &mut from_start] {
        client.read_until("r1, live", |c| c.count("r1") as u64 == SIZE);
        client.read_for(Duration::from_millis(300));
    }
    assert_eq!(from_since.count("r0"), 0, "nothing stored before {since}");
    assert_same_bytes("?since=<the start>", &from_start.delivered, &live.delivered);
    let r0: BTreeSet<u64> = live.delivered.by_log["r0"]
        .values()
        .filter_map(|message| cursor_of(message))
        .collect();
    let after_r0 = Delivered {
        by_cursor: live
            .delivered
            .by_cursor
            .iter()
            .filter(|(cursor, _)| !r0.contains(cursor))
            .map(|(cursor, message)| (*cursor, message.clone()))
            .collect(),
        ..Delivered::default()
    };
    assert_same_bytes(
        "?since=<between r0 and t0>",
        &from_since.delivered,
        &after_r0,
    );
    // The whole history is more than one pull's bytes: a full batch ends the batch, it is no failure.
    let stream = &relay.stats()["stream"];
    assert_eq!(stream["consumer_restarts"], 0, "{stream}");
}

#[test]
fn a_relay_that_cannot_use_the_broker_or_its_stream_does_not_start() {
    let relay = |url: &str, args: &[&str]| {
        let mut all = vec!["relay", "--listen", "127.0.0.1:0", "--nats-url", url];
        all.extend_from_slice(args);
        let (error, took) = refused_start(&all);
        assert!(
            took < Duration::from_secs(10),
            "{url}: refused after {took:?}: {error}"
        );
        error
    };

    let refused = format!("nats://127.0.0.1:{}", closed_port());
    let error = relay(&refused, &[]);
    assert!(error.contains(&format!("NATS at {refused}")), "{error}");

    let unknown = "nats://no-such-host.invalid:4222";
    let error = relay(unknown, &[]);
    assert!(error.contains(&format!("NATS at {unknown}")), "{error}");

    // Something that is not a NATS server answers there (an HTTP server: the mock CT log).
    let mock = Mock::fixed(1, 0, 1, &[], &[]);
    let not_nats = format!("nats://{}", mock.addr);
    let error = relay(&not_nats, &[]);
    assert!(error.contains(&format!("NATS at {not_nats}")), "{error}");

    // A broker without the stream: no ingester created it yet.
    let nats = NatsServer::start(&[]);
    let error = relay(&nats.url(), &[]);
    assert!(error.contains("CERTSTREAM"), "the stream is named: {error}");
    // The stream exists, under another name than the one asked for.
    create_stream(
        &nats.url(),
        &["certstream.>"],
        async_nats::jetstream::stream::RetentionPolicy::Limits,
    );
    let error = relay(&nats.url(), &["--nats-stream", "ELSEWHERE"]);
    assert!(error.contains("ELSEWHERE"), "the stream is named: {error}");
    // The stream does not take the subject the relay would read.
    let error = relay(&nats.url(), &["--nats-subject-prefix", "other"]);
    assert!(error.contains("not other.entries"), "{error}");

    assert_refuses_wrong_credentials(|url| relay(url, &[]));
}

/// How the relay's client in [`a_stream_reset_under_a_relay`] joined.
#[derive(Clone, Copy)]
enum Joined {
    /// Live, before anything was published.
    Live,
    /// From a cursor in the middle of the stream, once it was all published: it caught up, then went live.
    FromCursor,
}

/// Deletes the stream under a relay whose client read all of it, and has a fresh ingester create it again with
/// fewer messages (its sequences go back): the client, still connected, gets the new stream from its start, with
/// its cursors; the relay counts one reset.
fn a_stream_reset_under_a_relay(joined: Joined) {
    const OLD_SIZE: u64 = 100;
    const NEW_SIZE: u64 = 40;
    let pipeline = Pipeline::start(Mock::fixed(1, 1, OLD_SIZE, &[], &[]), OLD_SIZE, &[]);
    let relay = pipeline.relay(None);
    let mut live = match joined {
        Joined::Live => {
            let mut live = RawCollector::connect(&relay, "/full-stream");
            relay.wait_stats("the client", TIMEOUT, |s| s["clients"]["total"] == 1);
            pipeline.follow(&LOGS);
            read_everything(&mut live, "/full-stream", OLD_SIZE);
            live
        }
        Joined::FromCursor => {
            pipeline.follow(&LOGS);
            let total = LOGS.len() as u64 * OLD_SIZE;
            pipeline.wait_for_stream(total);
            relay.wait_stats("the relay at the stream's end", TIMEOUT, |s| {
                s["stream"]["cursor"] == total
            });
            let mut resumed =
                RawCollector::connect(&relay, &format!("/full-stream?cursor={}", total / 2));
            resumed.read_until("the old stream's second half", |c| {
                c.delivered.last_cursor == Some(total)
            });
            relay.wait_stats("the client live", TIMEOUT, |s| {
                s["replays"]["caught_up"] == 1
            });
            resumed
        }
    };
    let (nats, mock, old_last) = pipeline.stop_ingester();
    let first = match joined {
        Joined::Live => 1,
        Joined::FromCursor => old_last / 2 + 1,
    };
    // The cursors start over: what the client has is kept apart from what follows.
    let old = std::mem::take(&mut live.delivered);
    assert!(
        old.by_cursor.keys().copied().eq(first..=old_last),
        "the old stream: cursors {first}..={old_last}, each once"
    );

    let url = nats.url();
    delete_stream(&url);
    relay.wait_stats(
        "the relay failing to read the deleted stream",
        // A pull waits BATCH_EXPIRES (2 s) at most, the client library a little more, then the consumer is asked for.
        Duration::from_secs(15),
        |s| s["stream"]["consumer_restarts"].as_u64() >= Some(1),
    );
    // A fresh ingester (no state) creates the stream again and publishes from sequence 1.
    let list = ListFile::new();
    let pipeline = Pipeline {
        ingester: start_ingester(&nats, &list, NEW_SIZE, &[]),
        nats,
        mock,
        list,
    };
    pipeline.follow(&["r0"]);
    relay.wait_stats("the relay reading the new stream", TIMEOUT, |s| {
        s["stream"]["resets"] == 1 && s["stream"]["cursor"] == NEW_SIZE
    });
    live.read_until_within("the new stream", Duration::from_secs(5), |c| {
        c.count("r0") as u64 == NEW_SIZE
    });
    let url = pipeline.nats.url();
    let (_nats, _mock, new_last) = pipeline.stop_ingester();
    assert_eq!(new_last, NEW_SIZE, "one message per entry of r0");
    assert!(new_last < old_last, "the sequences went back");
    live.read_for(Duration::from_millis(300));
    assert!(!live.closed && !live.ended, "the client stayed connected");
    assert_everything_once("the new stream", &live.delivered, new_last);
    for entry in stream_contents(&url) {
        let lines = wire::split(&entry.payload).expect("three lines");
        assert!(
            live.delivered.by_cursor[&entry.sequence] == with_cursor(lines[0], entry.sequence),
            "cursor {}: the new stream's line with the cursor",
            entry.sequence
        );
    }

    let stats = stream_stats(&relay);
    assert_eq!(stats["resets"], 1, "{stats}");
    assert_eq!(stats["cursor"], new_last, "{stats}");
    assert_eq!(stats["skipped"], 0, "{stats}");
    let (_, metrics) = relay.get("/metrics");
    let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
    assert!(
        metrics.contains("certstream_stream_resets_total 1\n"),
        "certstream_stream_resets_total in a relay's /metrics"
    );
    // Logged too, but rate-limited with the reader's other errors: the consumer's deletion came just before.
    let error = stats["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("it was deleted and created again; reading it from its start"),
        "{stats}"
    );
}

#[test]
fn a_stream_deleted_and_created_again_under_a_relay_is_read_from_its_start() {
    a_stream_reset_under_a_relay(Joined::Live);
}

#[test]
fn a_client_joined_from_a_cursor_gets_the_stream_created_again() {
    a_stream_reset_under_a_relay(Joined::FromCursor);
}

#[test]
fn max_replays_refuses_more_clients_reading_history_until_one_leaves() {
    // History enough that a client which does not read stays catching up (its queue and socket buffers full).
    const SIZE: u64 = 1000;
    let pipeline = Pipeline::start(Mock::fixed(1, 1, SIZE, &[], &[]), SIZE, &[]);
    pipeline.follow(&LOGS);
    let url = pipeline.nats.url();
    let history = LOGS.len() as u64 * SIZE;
    pipeline.wait_for_stream(history);
    let relay = Certstream::start_relay(
        &[
            "--nats-url",
            &url,
            "--nats-max-replays",
            "1",
            "--ring-size",
            "16",
        ],
        &[],
    );

    // A `?cursor=0` client that does not read: its replay stays catching up, its queue full, its reader waiting
    // for room.
    let hold_the_slot = || {
        let stream = relay.connect();
        shrink_receive_buffer(&stream);
        let held = RawCollector::handshake(stream, "/full-stream?cursor=0");
        relay.wait_stats("a replay holding the slot", TIMEOUT, |s| {
            s["replays"]["catching_up"] == 1 && s["stream"]["replays"] == 1
        });
        std::thread::sleep(Duration::from_millis(300));
        let stats = relay.stats();
        assert_eq!(
            stats["replays"]["catching_up"], 1,
            "still catching up: {stats}"
        );
        held
    };
    // Its reader notices the client left and gives the slot back, within a few seconds.
    let leave = |held: RawCollector| {
        drop(held);
        relay.wait_stats("the slot given back", Duration::from_secs(5), |s| {
            s["stream"]["replays"] == 0
        });
    };

    let held = hold_the_slot();
    let (status, _, body) = http_request_on(
        relay.connect(),
        &upgrade_request("/full-stream?cursor=0", ""),
    );
    let body = String::from_utf8(body).expect("UTF-8 reason");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    assert!(body.contains("--nats-max-replays"), "{body}");
    let (status, body) = relay.get("/ndjson?cursor=0");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let stats = relay.stats();
    assert_eq!(stats["replays"]["refused"], 2, "{stats}");
    assert_eq!(stats["replays"]["started"], 1, "{stats}");
    let (_, metrics) = relay.get("/metrics");
    let metrics = String::from_utf8(metrics).expect("UTF-8 metrics");
    assert!(
        metrics.contains("certstream_replays_refused_total 2\n"),
        "certstream_replays_refused_total in /metrics"
    );
    leave(held);
    // Every time, not by luck: a slot lost now and then would end with every replay refused.
    for _ in 0..4 {
        leave(hold_the_slot());
    }

    let mut served = RawCollector::connect(&relay, "/full-stream?cursor=0");
    served.read_until("the whole history", |c| {
        c.delivered.last_cursor == Some(history)
    });
    assert_everything_once(
        "?cursor=0 after the slot came back",
        &served.delivered,
        history,
    );
    let stats = relay.stats();
    assert_eq!(stats["replays"]["refused"], 2, "{stats}");
}

#[test]
fn a_replay_longer_than_one_batch_restarts_no_consumer() {
    const SIZE: u64 = 200;
    let pipeline = Pipeline::start(Mock::fixed(1, 1, SIZE, &[], &[]), SIZE, &[]);
    pipeline.follow(&LOGS);
    let history = LOGS.len() as u64 * SIZE;
    pipeline.wait_for_stream(history);
    let relay = pipeline.relay(None);
    let mut client = RawCollector::connect(&relay, "/full-stream?cursor=0");
    client.read_until("the whole history", |c| {
        c.delivered.last_cursor == Some(history)
    });
    assert_everything_once("?cursor=0", &client.delivered, history);
    let stats = stream_stats(&relay);
    assert_eq!(stats["consumer_restarts"], 0, "nothing failed: {stats}");
    assert_eq!(stats["last_error"], Value::Null, "{stats}");
}
