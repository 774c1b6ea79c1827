//! The HTTP streams (docs/wire-format.md §2, §8): server-sent events read by a real SSE client library (PyPI
//! `httpx-sse`) with `Last-Event-ID` resume, NDJSON read by `curl -N`, the slow-client policy, the end of the body
//! at shutdown, and the routing (paths, `Accept` headers, the live page).

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

use certstream::message::EncodedMessage;
use certstream_testkit::python::{Client, script};
use certstream_testkit::{
    HttpStreamClient, TestServer, http_request, message, shrink_receive_buffer, upgrade_request,
};
use certstream_ws::frame::Frame;

fn http_url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

/// `<boot>-<seq>` → (boot, seq).
fn split_id(id: &str) -> (String, u64) {
    let (boot, seq) = id.split_once('-').unwrap_or_else(|| panic!("id {id:?}"));
    (boot.to_owned(), seq.parse().expect("a sequence number"))
}

/// An `sse_receive.py` client of `path` that prints `count` events, resuming after `last_event_id` if given.
fn sse_client(
    python: &str,
    server: &TestServer,
    path: &str,
    count: usize,
    last: Option<&str>,
) -> Client {
    let mut command = Command::new(python);
    command
        .arg(script("sse_receive.py"))
        .arg(http_url(server, path))
        .arg(count.to_string());
    command.args(last);
    let mut client = Client::spawn(&format!("httpx-sse {path}"), &mut command);
    assert_eq!(client.take(1), ["OPEN"], "{path}");
    client
}

/// The `(id, data)` of the next `n` events a client printed.
fn events(client: &mut Client, n: usize) -> Vec<(String, String)> {
    client
        .take(n)
        .into_iter()
        .map(|line| {
            let (id, data) = line.split_once('\t').expect("id<TAB>data");
            (id.to_owned(), data.to_owned())
        })
        .collect()
}

#[test]
fn an_sse_library_gets_every_message_with_increasing_ids_and_resumes_without_gap_or_duplicate() {
    let python = certstream_testkit::python::interpreter();
    let server = TestServer::start(|_| {});
    // `/` with httpx-sse's `Accept: text/event-stream`; the other streams by their explicit paths.
    let mut lite = sse_client(&python, &server, "/", 5, None);
    let mut full = sse_client(&python, &server, "/full-stream/sse", 5, None);
    let mut domains = sse_client(&python, &server, "/domains-only/sse", 5, None);
    server.wait_for_clients(3);
    for n in 0..5 {
        server.publish(message(n));
    }
    let mut last_id = String::new();
    for (client, pick) in [(&mut lite, 0), (&mut full, 1), (&mut domains, 2)] {
        let got = events(client, 5);
        let boot = split_id(&got[0].0).0;
        for (n, (id, data)) in got.iter().enumerate() {
            let frames = message(n as u64);
            let want = [&frames.lite, &frames.full, &frames.domains][pick].payload();
            assert_eq!(data.as_bytes(), want, "{} message #{n}", client.name);
            assert_eq!(
                split_id(id),
                (boot.clone(), n as u64 + 1),
                "{}",
                client.name
            );
        }
        last_id = got[4].0.clone();
    }
    drop((lite, full, domains));
    server.wait_for_clients(0);

    // Three messages published while no one listens; the reconnecting client gets exactly those, then live.
    for n in 5..8 {
        server.publish(message(n));
    }
    let mut resumed = sse_client(&python, &server, "/sse", 5, Some(&last_id));
    server.wait_for_clients(1);
    let missed = events(&mut resumed, 3);
    for n in 8..10 {
        server.publish(message(n));
    }
    let live = events(&mut resumed, 2);
    for (i, (id, data)) in missed.iter().chain(&live).enumerate() {
        let n = 5 + i as u64;
        assert_eq!(data.as_bytes(), message(n).lite.payload(), "message #{n}");
        assert_eq!(split_id(id).1, n + 1);
    }
    drop(resumed);
    server.wait_for_clients(0);

    // An id this server never gave (another boot): live only, counted.
    let (boot, _) = split_id(&last_id);
    let other_boot = format!("{boot}x-3");
    let mut stranger = sse_client(&python, &server, "/sse", 1, Some(&other_boot));
    server.wait_for_clients(1);
    server.publish(message(10));
    let got = events(&mut stranger, 1);
    assert_eq!(got[0].1.as_bytes(), message(10).lite.payload());
    let stats = server.stats();
    assert_eq!(
        stats["resumes"],
        serde_json::json!({"served": 1, "unavailable": 1}),
        "{stats}"
    );
    assert_eq!(stats["replay_history"]["messages"], 11);
}

/// Runs `curl -N` on `url` (with `headers`) in the background.
fn curl(url: &str, headers: &[&str]) -> std::process::Child {
    let mut command = Command::new("curl");
    command.args(["-N", "-sS", "--max-time", "60"]);
    for header in headers {
        command.args(["-H", header]);
    }
    command
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl (Debian's curl package)")
}

#[test]
fn curl_reads_ndjson_of_every_stream_and_exits_cleanly_at_shutdown_after_the_queued_messages() {
    const MESSAGES: u64 = 50;
    let server = TestServer::start(|_| {});
    let clients = [
        (curl(&http_url(&server, "/ndjson"), &[]), 0),
        (curl(&http_url(&server, "/full-stream/ndjson/"), &[]), 1),
        (
            curl(
                &http_url(&server, "/domains-only"),
                &["Accept: application/x-ndjson"],
            ),
            2,
        ),
    ];
    server.wait_for_clients(3);
    assert_eq!(server.stats()["clients_by_transport"]["ndjson"], 3);
    for n in 0..MESSAGES {
        server.publish(message(n));
    }
    // NDJSON clients cannot resume: they keep no replay history filling.
    let published = |stats: &serde_json::Value| stats["messages_published"] == MESSAGES;
    let stats = server.wait_stats(
        "the messages published",
        std::time::Duration::from_secs(10),
        published,
    );
    assert_eq!(stats["replay_history"]["messages"], 0, "{stats}");
    // Right away: the messages still queued are flushed, then every body ends with its last chunk.
    server.stop();
    for (child, pick) in clients {
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("curl ran");
        assert!(
            status.success(),
            "curl exits 0 (a complete chunked body): {status}, {}",
            String::from_utf8_lossy(&stderr)
        );
        let lines: Vec<&[u8]> = stdout.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len() as u64, MESSAGES + 1, "one line per message");
        assert_eq!(lines[MESSAGES as usize], b"", "the last line ends with \\n");
        for (n, line) in lines[..MESSAGES as usize].iter().enumerate() {
            let frames = message(n as u64);
            let want = [&frames.lite, &frames.full, &frames.domains][pick].payload();
            assert_eq!(*line, want, "stream {pick}, message #{n}");
            serde_json::from_slice::<serde_json::Value>(line).expect("a JSON object per line");
        }
    }
}

/// Message `n` with a lite variant of `size` bytes (starting with `n`).
fn big_lite(n: u64, size: usize) -> EncodedMessage {
    let mut payload = format!("{{\"n\":{n:08},\"pad\":\"").into_bytes();
    payload.resize(size - 2, b'a');
    payload.extend_from_slice(b"\"}");
    EncodedMessage {
        lite: Frame::text(&payload),
        ..message(n)
    }
}

#[test]
fn a_slow_sse_client_loses_its_oldest_messages_counted_while_a_fast_one_gets_all() {
    const MESSAGES: u64 = 300;
    const SIZE: usize = 64 * 1024;
    let server = TestServer::start(|config| {
        config.ring_size = 8;
        config.client_queue_bytes = 1 << 20;
    });
    let slow = TcpStream::connect(server.addr).unwrap();
    shrink_receive_buffer(&slow);
    (&slow)
        .write_all(b"GET /sse HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut fast = HttpStreamClient::get(server.addr, "/sse", &[]);
    assert_eq!(fast.status, 200);
    server.wait_for_clients(2);
    assert_eq!(server.stats()["clients_by_transport"]["sse"], 2);
    for n in 0..MESSAGES {
        server.publish(big_lite(n, SIZE));
        let event = fast
            .next_data_event()
            .expect("the fast client gets every message");
        assert_eq!(event.data.len(), SIZE);
        assert!(
            event.data.starts_with(&format!("{{\"n\":{n:08}")),
            "in order"
        );
        assert_eq!(split_id(event.id.as_deref().unwrap()).1, n + 1);
    }
    let stats = server.stats();
    let dropped = stats["messages_dropped"].as_u64().unwrap();
    eprintln!("slow SSE client: {dropped} of {MESSAGES} messages dropped");
    assert!(dropped > 0, "the slow client lost its oldest: {stats}");
    assert!(
        dropped < MESSAGES,
        "only the slow client's are dropped: {stats}"
    );
    drop(slow);
    drop(fast);
    server.wait_for_clients(0);
}

#[test]
fn an_sse_body_ends_cleanly_at_shutdown_after_the_queued_messages() {
    let server = TestServer::start(|_| {});
    let mut client = HttpStreamClient::get(server.addr, "/full-stream/sse", &[]);
    server.wait_for_clients(1);
    for n in 0..20 {
        server.publish(message(n));
    }
    server.stop();
    for n in 0..20 {
        let event = client.next_data_event().expect("queued messages first");
        assert_eq!(event.data.as_bytes(), message(n).full.payload());
    }
    assert_eq!(client.next_event(), None);
    assert!(client.ended, "the terminating chunk arrived");
}

#[test]
fn streams_are_routed_by_path_and_accept_header_and_the_live_page_stays_at_root() {
    let server = TestServer::start(|_| {});
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, head, body) = http_request(
        server.addr,
        &format!("GET / HTTP/1.1\r\nHost: t\r\nAccept: {browser}\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<html"));

    let mut sse = HttpStreamClient::get(server.addr, "/", &[("Accept", "text/event-stream")]);
    assert_eq!(sse.status, 200);
    assert!(
        sse.has_header("Content-Type", "text/event-stream"),
        "{}",
        sse.head
    );
    assert!(sse.has_header("Transfer-Encoding", "chunked"));
    assert_eq!(sse.next_event().unwrap().fields, ["retry: 2000"]);
    let mut ndjson = HttpStreamClient::get(
        server.addr,
        "/full-stream",
        &[("Accept", "application/x-ndjson")],
    );
    assert!(ndjson.has_header("Content-Type", "application/x-ndjson"));
    server.wait_for_clients(2);
    let stats = server.stats();
    assert_eq!(
        stats["clients_by_transport"],
        serde_json::json!({"websocket": 0, "sse": 1, "ndjson": 1})
    );
    server.publish(message(1));
    assert_eq!(
        sse.next_data_event().unwrap().data.as_bytes(),
        message(1).lite.payload()
    );
    assert_eq!(
        ndjson.next_line().unwrap().as_bytes(),
        message(1).full.payload()
    );
    // A client that goes away is noticed (its read side sees the EOF) and leaves the hub.
    drop((sse, ndjson));
    server.wait_for_clients(0);

    // A Last-Event-ID that cannot be served (here by the query parameter): said at the start, counted.
    let mut stale =
        HttpStreamClient::get(server.addr, "/domains-only/sse?last_event_id=old-7", &[]);
    assert_eq!(stale.next_event().unwrap().fields, ["retry: 2000"]);
    assert_eq!(stale.next_event().unwrap().comments, ["resume unavailable"]);
    assert_eq!(server.stats()["resumes"]["unavailable"], 1);
    drop(stale);

    let answer = |request: &str| http_request(server.addr, request).0;
    assert_eq!(
        answer("GET /sse HTTP/1.0\r\n\r\n"),
        505,
        "chunked needs HTTP/1.1"
    );
    assert_eq!(
        answer("POST /ndjson HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        405
    );
    assert_eq!(answer("HEAD /full-stream/sse HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(answer("GET /sse?last_event_id=%zz HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(
        answer(&upgrade_request("/sse", "")),
        400,
        "not a WebSocket endpoint"
    );
    server.wait_for_clients(0);
}
