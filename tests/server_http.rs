//! The plain-HTTP routes of the real server over 127.0.0.1 (docs/wire-format.md §2).

use certstream_testkit::{TestServer, http_get, http_request, message, upgrade_request};

#[test]
fn latest_messages_before_and_after_publishing() {
    let server = TestServer::start(|_| {});
    for path in [
        "/example.json",
        "/full-stream/example.json",
        "/domains-only/example.json/",
    ] {
        let (status, head, body) = http_get(server.addr, path);
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"null"[..]),
            "{path} before the first message"
        );
        assert!(head.contains("Content-Type: application/json"), "{head}");
    }
    let (_, _, body) = http_get(server.addr, "/latest.json");
    assert_eq!(body, br#"{"messages":[]}"#);

    for n in 0..30 {
        server.publish(message(n));
    }
    // Publishing goes through the server thread's command queue: wait until the last one is visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.stats()["messages_published"] != 30 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let latest = message(29);
    for (path, frame) in [
        ("/example.json?pretty", &latest.lite),
        ("/full-stream/example.json", &latest.full),
        ("/domains-only/example.json", &latest.domains),
    ] {
        let (status, _, body) = http_get(server.addr, path);
        assert_eq!(status, 200);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            text.starts_with("{\n  \"data\": "),
            "pretty-printed: {text}"
        );
        let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let want: serde_json::Value = serde_json::from_slice(frame.payload()).unwrap();
        assert_eq!(got, want, "{path}");
    }
    let (status, _, body) = http_get(server.addr, "/latest.json");
    assert_eq!(status, 200);
    let mut want = b"{\"messages\":[".to_vec();
    for (i, n) in (5..30).rev().enumerate() {
        if i > 0 {
            want.push(b',');
        }
        want.extend_from_slice(message(n).lite.payload());
    }
    want.extend_from_slice(b"]}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(want).unwrap(),
        "last 25 lite, newest first"
    );
}

#[test]
fn cross_origin_reads_only_for_public_data() {
    let server = TestServer::start(|_| {});
    let cors = "access-control-allow-origin: *";
    for path in ["/example.json", "/full-stream/example.json", "/latest.json"] {
        let (status, head, _) = http_get(server.addr, path);
        assert_eq!(status, 200, "{path}");
        assert!(head.to_ascii_lowercase().contains(cors), "{path}: {head}");
    }
    for path in [
        "/stats",
        "/metrics",
        "/health",
        "/",
        "/nope",
        "/full-stream",
    ] {
        let (_, head, _) = http_get(server.addr, path);
        assert!(
            !head.to_ascii_lowercase().contains("access-control"),
            "{path} is readable cross-origin: {head}"
        );
    }
}

#[test]
fn counters_page_health_and_errors() {
    let server = TestServer::start(|_| {});
    let mut client = certstream_testkit::WsClient::connect(server.addr, "/full-stream");
    server.wait_for_clients(1);
    server.publish(message(1));
    assert_eq!(client.read_data(), message(1).full.payload());

    let (status, _, body) = http_get(server.addr, "/stats/");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        !text.contains("127.0.0.1"),
        "/stats never shows client addresses: {text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("host"),
        "/stats never shows headers: {text}"
    );
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["clients"]["full"], 1);
    assert_eq!(stats["messages_published"], 1);
    assert!(stats["uptime_seconds"].as_f64().unwrap() >= 0.0);

    let (status, head, body) = http_get(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("certstream_clients{stream=\"full\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certstream_messages_published_total 1\n"),
        "{metrics}"
    );

    assert_eq!(http_get(server.addr, "/health").0, 200);
    assert_eq!(http_get(server.addr, "/health?verbose").2, b"ok");

    let (status, head, body) = http_get(server.addr, "/");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8(body).unwrap();
    assert!(
        page.contains("new WebSocket(") && page.contains("/stats"),
        "the live page streams and shows counters"
    );

    let (status, head, body) =
        http_request(server.addr, "HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((status, body.len()), (200, 0));
    assert!(head.contains("Content-Length: 2"), "{head}");

    for path in ["/nope", "/Full-Stream", "/stats.json", "/example.json/x"] {
        assert_eq!(http_get(server.addr, path).0, 404, "{path}");
    }
    assert_eq!(
        http_get(server.addr, "/full-stream").0,
        426,
        "a stream path without an upgrade"
    );
    assert_eq!(
        http_request(server.addr, "POST /stats HTTP/1.1\r\nHost: t\r\n\r\n").0,
        405
    );

    // An upgrade to a path that serves no WebSocket gets a plain HTTP error, never 101.
    for (path, status) in [
        ("/stats", 400),
        ("/example.json", 400),
        ("/health", 400),
        ("/nope", 404),
    ] {
        let (got, head, _) = http_request(server.addr, &upgrade_request(path, ""));
        assert_eq!(got, status, "{path}: {head}");
    }
    // A broken upgrade on a stream path: 400 (no key) or 426 (wrong version), never 101.
    let no_key = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http_request(server.addr, no_key).0, 400);
    let old = upgrade_request("/", "").replace("Version: 13", "Version: 8");
    assert_eq!(http_request(server.addr, &old).0, 426);
}
