//! WebSocket behaviour of the real server over 127.0.0.1: fan-out with exact bytes on the three streams, control
//! frames, slow clients, misbehaving clients and connection storms, limits, graceful shutdown (also of the real
//! binary on SIGTERM). Run on both monoio drivers (`MONOIO_FORCE_LEGACY_DRIVER=1`, see tests/run.sh).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use certstream::message::EncodedMessage;
use certstream_testkit::http::exchange;
use certstream_testkit::{
    Certstream, TestServer, WsClient, encode_client_frame, http_request, message,
    shrink_receive_buffer, split_response, upgrade_request,
};
use certstream_ws::frame::Frame;

#[test]
fn every_stream_gets_every_message_with_the_exact_bytes() {
    let server = TestServer::start(|_| {});
    let mut lite = WsClient::connect(server.addr, "/");
    let mut full = WsClient::connect(server.addr, "/full-stream/");
    let mut domains = WsClient::connect(server.addr, "/domains-only?dedup=0");
    server.wait_for_clients(3);
    for n in 0..200 {
        server.publish(message(n));
    }
    for n in 0..200 {
        let expected = message(n);
        assert_eq!(lite.read_data(), expected.lite.payload(), "lite #{n}");
        assert_eq!(full.read_data(), expected.full.payload(), "full #{n}");
        assert_eq!(
            domains.read_data(),
            expected.domains.payload(),
            "domains #{n}"
        );
    }
    let elapsed = server.stop();
    for client in [&mut lite, &mut full, &mut domains] {
        assert_eq!(client.read_close(), Some(1001), "shutdown closes with 1001");
    }
    assert!(
        elapsed < Duration::from_secs(2),
        "shutdown took {elapsed:?}"
    );
}

#[test]
fn pings_pongs_and_the_closing_handshake() {
    let server = TestServer::start(|config| config.ping_interval = Duration::from_millis(200));
    // The first frame travels in the same packet as the handshake request: it must still be read.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = upgrade_request("/", "").into_bytes();
    request.extend(encode_client_frame(0x9, b"early", true, true));
    stream.write_all(&request).unwrap();
    let mut response = vec![0u8; 4096];
    let mut got = 0;
    while !response[..got].ends_with(b"early") {
        let n = stream.read(&mut response[got..]).unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&response[..got])
        );
        got += n;
    }
    let text = String::from_utf8_lossy(&response[..got]);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        response[..got].ends_with(&[0x8A, 5, b'e', b'a', b'r', b'l', b'y']),
        "pong echoes the early ping"
    );

    let mut client = WsClient::connect(server.addr, "/");
    let started = Instant::now();
    let ping = client.read_frame().unwrap();
    assert_eq!(ping.opcode, 0x9, "the server pings");
    assert!(started.elapsed() < Duration::from_secs(5));
    client.send(0xA, b"", true); // the pong
    client.send(0x1, b"hello, ignored", true);
    client.send(0x9, b"p1", true);
    assert_eq!(next_non_ping(&mut client), (0xA, b"p1".to_vec()));
    client.send(0x8, &1000u16.to_be_bytes(), true);
    let close = next_non_ping(&mut client);
    assert_eq!(
        close,
        (0x8, 1000u16.to_be_bytes().to_vec()),
        "the close code is echoed"
    );
    assert!(
        client.wait_closed(),
        "the server closes TCP after the closing handshake"
    );
}

fn next_non_ping(client: &mut WsClient) -> (u8, Vec<u8>) {
    loop {
        let frame = client.read_frame().expect("frame");
        if frame.opcode != 0x9 {
            return (frame.opcode, frame.payload);
        }
    }
}

#[test]
fn a_slow_client_loses_its_oldest_messages_and_nobody_else_does() {
    const READERS: usize = 50;
    const MESSAGES: u64 = 2000;
    // 4 KiB messages, so the slow client's kernel buffers (up to 4 MiB) fill and its ring overflows.
    let big = |n: u64| {
        let text = format!("{n:>4096}");
        let frame = Frame::text(text.as_bytes());
        EncodedMessage {
            lite: frame.clone(),
            full: frame.clone(),
            domains: frame,
        }
    };
    let server = TestServer::start(|_| {});
    let slow = TcpStream::connect(server.addr).unwrap();
    shrink_receive_buffer(&slow);
    let mut slow = slow;
    slow.write_all(upgrade_request("/", "").as_bytes()).unwrap();
    let expected: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..MESSAGES)
            .map(|n| big(n).lite.payload().to_vec())
            .collect(),
    );
    // Each reader reports its progress, so publishing can wait for the readers (drop-oldest is the specified
    // behaviour for clients that fall 256 messages behind; these must not, even on a loaded machine).
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..READERS).map(|_| AtomicU64::new(0)).collect());
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let mut client = WsClient::connect(server.addr, "/");
            let expected = expected.clone();
            let progress = progress.clone();
            std::thread::spawn(move || {
                for (n, want) in expected.iter().enumerate() {
                    assert_eq!(&client.read_data(), want, "message #{n}");
                    progress[i].store(n as u64 + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    server.wait_for_clients(READERS as u64 + 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    for n in 0..MESSAGES {
        server.publish(big(n));
        while progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
            + 100
            < n
        {
            assert!(
                Instant::now() < deadline,
                "the readers stopped making progress"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for reader in readers {
        reader
            .join()
            .expect("a reader missed or reordered a message");
    }
    let stats = server.stats();
    let dropped = stats["messages_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "the slow client's drops are counted: {stats}");
    assert!(dropped <= MESSAGES, "only the slow client dropped: {stats}");
    assert!(
        stats["max_client_queue"].as_u64().unwrap() <= 256,
        "the ring bounds memory: {stats}"
    );
    let (_, _, metrics) = certstream_testkit::http_get(server.addr, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains(&format!("certstream_messages_dropped_total {dropped}\n")),
        "{metrics}"
    );
    drop(slow);
}

#[test]
fn misbehaving_clients_are_closed_and_the_others_keep_receiving() {
    let server = TestServer::start(|config| {
        config.request_head_timeout = Duration::from_millis(500);
        config.max_connections_per_ip = 100_000; // the storm comes from 127.0.0.1 too
    });
    let mut good = WsClient::connect(server.addr, "/");
    server.wait_for_clients(1);
    let mut published = 0;
    let mut publish_some = |server: &TestServer| {
        for _ in 0..10 {
            server.publish(message(published));
            published += 1;
        }
    };

    publish_some(&server);
    let (status, _, _) = http_request(server.addr, "\x16\x03\x01\x02\x00garbage, not HTTP\r\n\r\n");
    assert_eq!(status, 400, "garbage gets 400");

    publish_some(&server);
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    request.resize(1 << 20, b'a');
    // The server may stop reading early: what it answered counts, whatever the write and read say.
    let mut huge = TcpStream::connect(server.addr).unwrap();
    let (response, _) = exchange(&mut huge, &request, Duration::from_secs(10));
    assert_eq!(split_response(&response).0, 431, "a 1 MiB header gets 431");

    publish_some(&server);
    let started = Instant::now();
    let (status, _, _) = http_request(server.addr, "GET / HTTP/1.1\r\nHost: t\r\n");
    assert_eq!(status, 408, "an unfinished request head times out");
    assert!(started.elapsed() < Duration::from_secs(5));

    for (what, frame, code) in [
        (
            "unmasked frame",
            encode_client_frame(0x1, b"hi", false, true),
            1002,
        ),
        (
            "invalid UTF-8",
            encode_client_frame(0x1, b"ok \xC3\x28 bad", true, true),
            1007,
        ),
        (
            "oversize message",
            encode_client_frame(0x2, &vec![7u8; 70 * 1024], true, true),
            1009,
        ),
        (
            "reserved opcode",
            encode_client_frame(0x3, b"", true, true),
            1002,
        ),
    ] {
        publish_some(&server);
        let mut bad = WsClient::connect(server.addr, "/full-stream");
        bad.stream.write_all(&frame).unwrap();
        assert_eq!(bad.read_close(), Some(code), "{what}");
        assert!(bad.wait_closed(), "{what}: the connection is closed");
    }

    publish_some(&server);
    // A storm: 5,000 connections, half upgraded, half stuck mid-request, all dropped at once.
    let mut storm = Vec::with_capacity(5000);
    let upgrade = upgrade_request("/domains-only", "");
    for i in 0..5000 {
        let mut stream = TcpStream::connect(server.addr).expect("storm connect");
        let request: &[u8] = if i % 2 == 0 {
            upgrade.as_bytes()
        } else {
            b"GET /stats HTTP/1.1\r\n"
        };
        stream.write_all(request).unwrap();
        storm.push(stream);
    }
    publish_some(&server);
    drop(storm);
    publish_some(&server);

    for n in 0..published {
        assert_eq!(
            good.read_data(),
            message(n).lite.payload(),
            "the well-behaved client got message #{n}"
        );
    }
    server.wait_stats("the storm clients gone", Duration::from_secs(20), |stats| {
        stats["clients"]["total"] == 1
    });
    server.stop();
    assert_eq!(good.read_close(), Some(1001));
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_zero() {
    let server = Certstream::start(&[], &[]);
    let addr = server.addr;
    let mut clients: Vec<WsClient> = ["/", "/full-stream", "/domains-only"]
        .iter()
        .cycle()
        .take(30)
        .map(|path| WsClient::connect(addr, path))
        .collect();
    // The handshakes are answered before the hub registers the clients: wait until all 30 are counted.
    server.wait_stats("30 clients counted", Duration::from_secs(10), |stats| {
        stats["clients"]["total"] == 30
    });
    let started = Instant::now();
    server.send_sigterm();
    for client in &mut clients {
        assert_eq!(client.read_close(), Some(1001));
        client.send(0x8, &1001u16.to_be_bytes(), true);
    }
    let (success, _) = server.wait_exit(Duration::from_secs(5));
    assert!(success, "exit status not 0");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_close_overtakes_the_frames_not_yet_written() {
    let server = TestServer::start(|_| {});
    let mut client = WsClient::connect(server.addr, "/full-stream");
    server.wait_for_clients(1);
    // 200 frames of 64 KiB (12.8 MB) to a client that does not read yet: the writer takes them in one batch and
    // the kernel accepts only a few MB of it.
    let big = Frame::text(&vec![b'x'; 64 * 1024]);
    for _ in 0..200 {
        server.publish(EncodedMessage {
            lite: big.clone(),
            full: big.clone(),
            domains: big.clone(),
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    client.send(0x8, &1000u16.to_be_bytes(), true);
    let mut data_frames = 0;
    let code = loop {
        let frame = client.read_frame().expect("a frame");
        match frame.opcode {
            1 => data_frames += 1,
            8 => break frame.close_code(),
            _ => {}
        }
    };
    assert_eq!(code, Some(1000));
    // What the kernel buffers already held still arrives, then the close: not the rest of the batch.
    assert!(
        data_frames < 150,
        "{data_frames} data frames were sent after the client's close"
    );
}
