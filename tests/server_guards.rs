//! The deadlines and budgets that protect the server from its clients (issue 13 items 2, 3 and 6), each against
//! its attack with a well-behaved client beside it that must see no effect: unread HTTP responses (write
//! deadline), unfinished WebSocket messages (message deadline, server-wide byte budget), control-frame floods
//! (budget, close 1008), and TCP keepalive on silent clients (set, and silent clients stay). Run on both monoio
//! drivers (`MONOIO_FORCE_LEGACY_DRIVER=1`, see tests/run.sh).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use certstream::message::EncodedMessage;
use certstream_testkit::http::send_get;
use certstream_testkit::wait::wait_until;
use certstream_testkit::{
    TestServer, WsClient, encode_client_frame, http_get, message, raw_client_frame,
    shrink_receive_buffer,
};
use certstream_ws::frame::Frame;

/// Waits until `/stats` → `protective_closes` → `reason` reaches `at_least`; returns the `/stats` document.
fn wait_for_closes(server: &TestServer, reason: &str, at_least: u64) -> serde_json::Value {
    server.wait_stats(reason, Duration::from_secs(10), |stats| {
        stats["protective_closes"][reason].as_u64().unwrap_or(0) >= at_least
    })
}

/// A well-behaved client: receives the next published message exactly and gets its ping answered.
fn still_served(server: &TestServer, good: &mut WsClient, n: u64) {
    server.publish(message(n));
    assert_eq!(good.read_data(), message(n).lite.payload(), "message #{n}");
    good.send(0x9, b"still there?", true);
    loop {
        let frame = good.read_frame().expect("a pong");
        match frame.opcode {
            0xA => {
                assert_eq!(frame.payload, b"still there?");
                return;
            }
            0x9 => continue,
            other => panic!("unexpected opcode {other}"),
        }
    }
}

#[test]
fn http_responses_that_are_not_read_are_dropped_at_the_write_deadline() {
    let server = TestServer::start(|config| {
        config.http_write_timeout = Duration::from_millis(500);
        config.max_latest_bytes = 16 << 20;
    });
    // `/latest.json` carries the last 25 lite messages: make it ~10 MB, more than the socket buffers hold (the
    // server's send buffer grows up to 4 MiB).
    let filler = "x".repeat(400_000);
    for n in 0..25 {
        let json =
            format!("{{\"message_type\":\"certificate_update\",\"n\":{n},\"pad\":\"{filler}\"}}");
        let frame = Frame::text(json.as_bytes());
        server.publish(EncodedMessage {
            lite: frame.clone(),
            full: frame.clone(),
            domains: frame,
        });
    }
    // Publishing goes through the server thread's command queue: the well-behaved client joins only after it, so
    // its first message is the one `still_served` publishes.
    server.wait_stats(
        "the 25 messages published",
        Duration::from_secs(10),
        |stats| stats["messages_published"].as_u64() >= Some(25),
    );
    let mut good = WsClient::connect(server.addr, "/");
    server.wait_for_clients(1);
    let attackers: Vec<TcpStream> = (0..20)
        .map(|_| {
            let stream = TcpStream::connect(server.addr).unwrap();
            shrink_receive_buffer(&stream);
            send_get(stream, "/latest.json")
        })
        .collect();
    let (status, _, body) = http_get(server.addr, "/latest.json");
    assert_eq!(status, 200);
    assert!(body.len() > 10_000_000, "a reading client gets it all");
    let stats = wait_for_closes(&server, "http_write_timeout", 20);
    assert_eq!(
        stats["connections"]["open"],
        1 + 1,
        "the WebSocket client and the /stats request"
    );
    for mut stream in attackers {
        // The rest of the response was discarded (reset), not kept in the kernel for a client that does not read.
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut chunk = vec![0; 1 << 20];
        let mut received = 0;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received += n,
                Err(error) => {
                    assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock, "still open");
                    break;
                }
            }
        }
        assert!(received < 10_000_000, "the unread response was cut off");
    }
    still_served(&server, &mut good, 1000);
}

#[test]
fn unfinished_messages_hit_the_byte_budget_then_the_deadline() {
    let server = TestServer::start(|config| {
        config.message_timeout = Duration::from_millis(800);
        config.partial_message_budget = 512 * 1024;
    });
    let mut good = WsClient::connect(server.addr, "/");
    server.wait_for_clients(1);
    // The attack: a declared 65,536-byte binary frame, 65,535 bytes of it sent, never finished.
    let frame = raw_client_frame(0x82, &vec![7u8; 65_536], Some([1, 2, 3, 4]));
    // Every attacker connects first, then all start their messages back to back: on a slow machine the handshakes
    // could otherwise outlast the deadline, and early attackers time out before the budget bites.
    let mut attackers: Vec<WsClient> = (0..20)
        .map(|_| WsClient::connect(server.addr, "/"))
        .collect();
    server.wait_for_clients(21);
    for client in &mut attackers {
        client.stream.write_all(&frame[..frame.len() - 1]).unwrap();
    }
    let stats = wait_for_closes(&server, "partial_message_budget", 1);
    let held = stats["partial_message_bytes"].as_u64().unwrap();
    assert!(held <= 512 * 1024 + 128 * 1024, "the budget holds: {stats}");
    for client in &mut attackers {
        assert_eq!(client.read_close(), Some(1008), "every attacker is closed");
    }
    let stats = server.stats();
    let closes = &stats["protective_closes"];
    let budget = closes["partial_message_budget"].as_u64().unwrap();
    let timeout = closes["message_timeout"].as_u64().unwrap();
    assert!(
        budget >= 10,
        "most are refused at once by the budget: {stats}"
    );
    assert!(timeout >= 1, "those within the budget time out: {stats}");
    assert_eq!(budget + timeout, 20, "{stats}");
    // A message sent slowly but finished within the deadline is fine.
    let small = encode_client_frame(0x1, b"hello, slowly", true, true);
    good.stream.write_all(&small[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    good.stream.write_all(&small[5..]).unwrap();
    still_served(&server, &mut good, 1);
    server.wait_stats(
        "no partial message bytes",
        Duration::from_secs(5),
        |stats| stats["partial_message_bytes"] == 0,
    );
}

#[test]
fn a_control_frame_flood_is_closed_with_1008_and_a_steady_pinger_is_not() {
    let server = TestServer::start(|config| config.control_frames_per_second = 10);
    let mut good = WsClient::connect(server.addr, "/");
    let mut flooder = WsClient::connect(server.addr, "/");
    server.wait_for_clients(2);
    let flood: Vec<u8> = (0..500)
        .flat_map(|_| encode_client_frame(0x9, b"flood", true, true))
        .collect();
    let _ = flooder.stream.write_all(&flood); // the server may close before reading it all
    assert_eq!(flooder.read_close(), Some(1008));
    assert!(flooder.wait_closed());
    wait_for_closes(&server, "control_frame_flood", 1);
    // Five pings a second for two seconds is within the budget.
    for n in 0..10 {
        still_served(&server, &mut good, n);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        server.stats()["protective_closes"]["control_frame_flood"],
        1
    );
}

#[test]
fn silent_clients_get_tcp_keepalive_and_are_never_kicked() {
    let server = TestServer::start(|config| config.tcp_keepalive = Some(Duration::from_secs(1)));
    let mut silent = WsClient::connect(server.addr, "/domains-only");
    server.wait_for_clients(1);
    // The server's end of the connection runs the keepalive timer (/proc/net/tcp: `tr` 2); the probes are
    // answered by our kernel, so the silent client stays.
    let port = format!(":{:04X}", server.addr.port());
    wait_until(
        "a keepalive timer on the server's socket",
        Duration::from_secs(5),
        || std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp"),
        |table| {
            table.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 5
                    && fields[1].ends_with(&port)
                    && fields[3] == "01"
                    && fields[5].starts_with("02:")
            })
        },
        |table| format!("/proc/net/tcp:\n{table}"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.stats()["clients"]["total"], 1);
    server.publish(message(7));
    assert_eq!(silent.read_data(), message(7).domains.payload());
}
