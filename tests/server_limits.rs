//! Limits of the real server over 127.0.0.1, each under attack with a well-behaved client beside it: connections
//! counted per address at accept, byte-bounded client queues, a bounded and shared `/latest.json`, rate-limited
//! operational routes.

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certstream::message::EncodedMessage;
use certstream_testkit::http::send_get;
use certstream_testkit::process::memory_resident_kib;
use certstream_testkit::wait::wait_until;
use certstream_testkit::{
    TestServer, WsClient, closed_by_peer, connect_from, http_get, http_request_on, message,
    raw_request, split_response,
};
use certstream_ws::frame::Frame;

/// The tests run one at a time: two of them measure the process's memory, which the others would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident memory (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    memory_resident_kib(std::process::id())
}

#[test]
fn unfinished_connections_over_the_per_address_limit_are_closed_at_accept() {
    let _serial = serial();
    const LIMIT: usize = 100;
    const ATTACK: usize = 3_000;
    let server = TestServer::start(|config| config.max_connections_per_ip = LIMIT);
    let good = Ipv4Addr::new(127, 0, 0, 2);
    // 3,000 connections from 127.0.0.1 that never send a request head.
    let attack: Vec<TcpStream> = (0..ATTACK)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let held = wait_until(
        "the unfinished connections over the limit closed",
        Duration::from_secs(3),
        || attack.iter().filter(|s| !closed_by_peer(s)).count(),
        |held| *held <= LIMIT,
        |held| format!("{held} still open"),
    );
    assert!(
        held <= LIMIT,
        "{held} of {ATTACK} unfinished connections from one address are still open (limit {LIMIT})"
    );
    // A client from another address is served meanwhile: the stream and the counters.
    let mut client = WsClient::handshake(connect_from(good, server.addr), "/");
    server.publish(message(1));
    let frame = client
        .read_frame()
        .expect("the good client gets the message");
    assert_eq!(frame.payload, message(1).lite.payload());
    let (status, _, body) = http_request_on(
        connect_from(good, server.addr),
        "GET /stats HTTP/1.1\r\n\r\n",
    );
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let connections = &stats["connections"];
    assert_eq!(
        connections["rejected_per_ip"].as_u64(),
        Some((ATTACK - LIMIT) as u64),
        "{connections}"
    );
    assert_eq!(connections["rejected"], connections["rejected_per_ip"]);
    assert!(
        connections["open"].as_u64() <= Some(LIMIT as u64 + 2),
        "{connections}"
    );
}

#[test]
fn a_second_connection_over_the_limit_is_closed_and_the_slot_comes_back() {
    let _serial = serial();
    let server = TestServer::start(|config| config.max_connections_per_ip = 2);
    let _first = WsClient::connect(server.addr, "/");
    let second = WsClient::connect(server.addr, "/");
    let response = raw_request(&server.addr.to_string(), "GET", "/", b"");
    assert!(
        response.is_empty(),
        "closed without a response: {}",
        String::from_utf8_lossy(&response)
    );
    drop(second);
    // /stats itself is a connection: with one client left, it fits within the limit of two.
    let response = wait_until(
        "the second connection's slot released",
        Duration::from_secs(10),
        || raw_request(&server.addr.to_string(), "GET", "/stats", b""),
        |response| !response.is_empty(),
        |_| "/stats is still refused".into(),
    );
    let (status, _, body) = split_response(&response);
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        stats["connections"]["rejected_per_ip"].as_u64() >= Some(1),
        "{stats}"
    );
}

/// Message `n` with a full-stream frame of `full_len` bytes (the frame starts with `n`, 8 digits).
fn big_full(n: u64, full_len: usize) -> EncodedMessage {
    let mut full = format!("{n:08}").into_bytes();
    full.resize(full_len, b'x');
    EncodedMessage {
        full: Frame::text(&full),
        ..message(n)
    }
}

#[test]
fn a_never_reading_full_stream_client_stays_within_its_byte_budget() {
    let _serial = serial();
    const BUDGET: usize = 4 << 20;
    const FRAME: usize = 1 << 20;
    const MESSAGES: u64 = 150;
    // The replay history keeps the last messages too, within its own byte budget.
    const REPLAY: usize = 8 << 20;
    let server = TestServer::start(|config| {
        config.client_queue_bytes = BUDGET;
        config.replay_bytes = REPLAY;
    });
    let _never_reads = WsClient::connect(server.addr, "/full-stream");
    let mut reader = WsClient::connect(server.addr, "/full-stream");
    server.wait_for_clients(2);
    let before = rss_kib();
    let mut peak = before;
    for n in 0..MESSAGES {
        server.publish(big_full(n, FRAME));
        let frame = reader
            .read_frame()
            .expect("the reading client gets every frame");
        assert_eq!(frame.payload.len(), FRAME);
        assert_eq!(
            &frame.payload[..8],
            format!("{n:08}").as_bytes(),
            "in order"
        );
        peak = peak.max(rss_kib());
    }
    let growth_mib = (peak - before) as f64 / 1024.0;
    eprintln!(
        "slow reader, {MESSAGES} frames of 1 MiB, budget 4 MiB: RSS {before} KiB, high-water +{growth_mib:.1} MiB"
    );
    let stats = server.stats();
    assert!(
        stats["messages_dropped_for_bytes"].as_u64() > Some(100),
        "the byte budget drops for the slow client: {stats}"
    );
    assert!(
        stats["max_client_queue_bytes"].as_u64() <= Some(BUDGET as u64),
        "{stats}"
    );
    // The budget, one batch in flight, the frames on their way to the reader, the test's own buffers; and the
    // replay history.
    assert!(
        growth_mib < 40.0 + (REPLAY >> 20) as f64,
        "RSS grew by {growth_mib:.1} MiB for a 4 MiB budget and an 8 MiB replay history"
    );
    assert!(
        stats["replay_history"]["bytes"].as_u64() <= Some(REPLAY as u64),
        "{stats}"
    );
}

#[test]
fn concurrent_latest_json_requests_with_huge_messages_stay_small_shared_and_health_fast() {
    let _serial = serial();
    const CAP: usize = 256 << 10;
    let server = TestServer::start(|config| config.max_latest_bytes = CAP);
    // 13 messages of 1.2 MB (like a certificate with ~100,000 names) between 12 small ones.
    let mut small = Vec::new();
    for n in 0..25u64 {
        if n % 2 == 0 {
            let mut huge = format!("{{\"n\":{n},\"names\":\"").into_bytes();
            huge.resize(1_200_000, b'a');
            huge.extend_from_slice(b"\"}");
            server.publish(EncodedMessage {
                lite: Frame::text(&huge),
                ..message(n)
            });
        } else {
            server.publish(message(n));
            small.push(n);
        }
    }
    server.wait_stats("25 messages published", Duration::from_secs(10), |stats| {
        stats["messages_published"] == 25
    });
    let before = rss_kib();
    // Eight requests that never read their response.
    let pending: Vec<TcpStream> = (0..8)
        .map(|_| send_get(TcpStream::connect(server.addr).unwrap(), "/latest.json"))
        .collect();
    // Each answer has begun (its status line arrived): every response is built, and the rest stays unread.
    for stream in &pending {
        let mut stream = stream;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut status_line = [0; 12];
        stream.read_exact(&mut status_line).unwrap();
        assert_eq!(&status_line, b"HTTP/1.1 200");
    }
    // A sanity bound with room for a loaded machine: the latency itself is printed and tracked by benchmarks.
    let started = Instant::now();
    let (status, _, _) = http_get(server.addr, "/health");
    let health = started.elapsed();
    let growth_mib = (rss_kib().saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "8 pending /latest.json with 13 messages of 1.2 MB: RSS +{growth_mib:.1} MiB, /health in {health:?}"
    );
    assert_eq!(status, 200);
    assert!(health < Duration::from_secs(1), "/health took {health:?}");
    assert!(growth_mib < 16.0, "RSS grew by {growth_mib:.1} MiB");
    let (_, _, body) = http_get(server.addr, "/latest.json");
    assert!(body.len() <= CAP + 64, "{} bytes", body.len());
    let latest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let shown: Vec<u64> = latest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"]["cert_index"].as_u64().unwrap())
        .collect();
    small.reverse();
    assert_eq!(shown, small, "the small messages, newest first");
    let stats = server.stats();
    assert_eq!(stats["latest_skipped_messages"], 13, "{stats}");
    drop(pending);
}

#[test]
fn operational_routes_answer_429_over_their_rate_and_health_is_unaffected() {
    let _serial = serial();
    let server = TestServer::start(|config| config.ops_rate = 5);
    let mut limited = 0;
    for _ in 0..40 {
        let (status, head, _) = http_get(server.addr, "/metrics");
        match status {
            200 => {}
            429 => {
                limited += 1;
                assert!(head.contains("\r\nRetry-After: 1"), "{head}");
            }
            other => panic!("/metrics answered {other}"),
        }
    }
    assert!(limited >= 25, "only {limited} of 40 requests were limited");
    for _ in 0..20 {
        assert_eq!(
            http_get(server.addr, "/health").0,
            200,
            "/health has no limit"
        );
    }
    assert_eq!(
        http_get(server.addr, "/latest.json").0,
        200,
        "each route has its own budget"
    );
    assert_eq!(server.stats()["http_rate_limited"], limited);
}
