//! Starting from a cursor or a time (docs/wire-format.md §10) through the real server: `?cursor=` on WebSocket, a
//! numeric `Last-Event-ID` on server-sent events, `?since=` on NDJSON, replayed from an in-memory stream at the
//! client's speed and then live with no gap or duplicate at the seam; the refusals (`400`, `503`) and the end of a
//! replay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certstream::cursor::ReplayStart;
use certstream::message::Message;
use certstream_testkit::replay::MemoryStream;
use certstream_testkit::{
    HttpStreamClient, TestServer, WsClient, http_get, http_request, message, upgrade_request,
};

/// When message `n` was stored in the test stream.
fn stored(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n)
}

/// A stream holding messages 1..=`stored_up_to`, a server replaying from it, and its hub fed (as the live feed
/// would) with the messages from `live_from` on.
fn server_following(stored_up_to: u64, live_from: u64) -> (TestServer, MemoryStream) {
    let stream = MemoryStream::default();
    let server = TestServer::start_with_replay(|_| {}, stream.clone());
    for n in 1..=stored_up_to {
        let message = stream.append(n, message(n), stored(n));
        if n >= live_from {
            server.publish(message);
        }
    }
    let published = stored_up_to + 1 - live_from;
    server.wait_stats("the live feed", Duration::from_secs(10), |stats| {
        stats["messages_published"] == published
    });
    (server, stream)
}

/// Stores message `n` and feeds it to the hub.
fn append_live(server: &TestServer, stream: &MemoryStream, n: u64) -> Message {
    let message = stream.append(n, message(n), stored(n));
    server.publish(message.clone());
    message
}

fn lite(n: u64) -> Vec<u8> {
    message(n).lite.payload().to_vec()
}

fn wait_caught_up(server: &TestServer, n: u64) -> serde_json::Value {
    server.wait_stats("caught up", Duration::from_secs(10), |stats| {
        stats["replays"]["caught_up"] == n && stats["replays"]["catching_up"] == 0
    })
}

#[test]
fn a_websocket_client_after_a_cursor_gets_every_message_once_in_order_then_live() {
    let (server, stream) = server_following(30, 21);
    let mut client = WsClient::connect(server.addr, "/?cursor=5");
    for n in 6..=30 {
        assert_eq!(client.read_data(), lite(n), "message {n}");
    }
    let stats = wait_caught_up(&server, 1);
    assert_eq!(stats["replays"]["started"], 1);
    assert_eq!(stats["replays"]["messages"], 25);
    append_live(&server, &stream, 31);
    assert_eq!(client.read_data(), lite(31), "live after the seam");
    assert_eq!(stream.opened(), [ReplayStart::After(5)]);
    let metrics = String::from_utf8(http_get(server.addr, "/metrics").2).unwrap();
    assert!(metrics.contains("certstream_replays_caught_up_total 1\n"));
}

#[test]
fn an_sse_client_with_a_numeric_last_event_id_resumes_from_the_stream_and_ids_are_cursors() {
    let (server, stream) = server_following(20, 11);
    let mut live = HttpStreamClient::get(server.addr, "/sse", &[]);
    let mut resumed = HttpStreamClient::get(server.addr, "/sse", &[("Last-Event-ID", "3")]);
    assert_eq!(resumed.status, 200);
    for n in 4..=20 {
        let event = resumed.next_data_event().expect("an event");
        assert_eq!(event.id.as_deref(), Some(n.to_string().as_str()));
        assert_eq!(event.data.as_bytes(), lite(n));
    }
    wait_caught_up(&server, 1);
    append_live(&server, &stream, 21);
    // `EventSource` reconnects to the same URL with its last id: the header wins over the query's cursor.
    let mut reconnected =
        HttpStreamClient::get(server.addr, "/sse?cursor=1", &[("Last-Event-ID", "18")]);
    for n in 19..=20 {
        let event = reconnected.next_data_event().expect("an event");
        assert_eq!(event.id.as_deref(), Some(n.to_string().as_str()));
    }
    wait_caught_up(&server, 2);
    assert_eq!(
        stream.opened(),
        [ReplayStart::After(3), ReplayStart::After(18)]
    );
    for client in [&mut resumed, &mut reconnected, &mut live] {
        let event = client.next_data_event().expect("a live event");
        assert_eq!(
            event.id.as_deref(),
            Some("21"),
            "the cursor, valid at any relay"
        );
        assert_eq!(event.data.as_bytes(), lite(21));
    }
}

#[test]
fn a_cursor_in_the_replay_history_is_served_from_it_without_opening_a_replay() {
    let (server, stream) = server_following(0, 1);
    // A server-sent events reader keeps the history filling.
    let mut reader = HttpStreamClient::get(server.addr, "/sse", &[]);
    server.wait_for_clients(1);
    for n in 1..=10 {
        append_live(&server, &stream, n);
    }
    for _ in 1..=10 {
        reader.next_data_event().expect("an event");
    }
    let mut client = WsClient::connect(server.addr, "/?cursor=7");
    for n in 8..=10 {
        assert_eq!(client.read_data(), lite(n));
    }
    assert!(stream.opened().is_empty(), "served from the history");
    assert_eq!(server.stats()["resumes"]["served"], 1);
}

#[test]
fn an_ndjson_client_since_a_time_gets_the_messages_stored_from_then_then_live() {
    let (server, stream) = server_following(30, 25);
    let mut client = HttpStreamClient::get(server.addr, "/ndjson?since=1700000010.5", &[]);
    assert_eq!(client.status, 200);
    for n in 11..=30 {
        assert_eq!(client.next_line().expect("a line").as_bytes(), lite(n));
    }
    wait_caught_up(&server, 1);
    append_live(&server, &stream, 31);
    assert_eq!(
        client.next_line().expect("a live line").as_bytes(),
        lite(31)
    );
    assert_eq!(
        stream.opened(),
        [ReplayStart::Since(
            UNIX_EPOCH + Duration::from_millis(1_700_000_010_500)
        )]
    );
}

#[test]
fn a_replay_that_ends_closes_the_client_so_it_reconnects_from_its_last_cursor() {
    // The hub's feed has published nothing: the clients cannot go live, and their replays end at the stream's end.
    let (server, stream) = server_following(5, 6);
    stream.end_replays();
    let mut websocket = WsClient::connect(server.addr, "/?cursor=2");
    for n in 3..=5 {
        assert_eq!(websocket.read_data(), lite(n));
    }
    assert_eq!(websocket.read_close(), Some(1011));
    let mut sse = HttpStreamClient::get(server.addr, "/sse?cursor=4", &[]);
    assert_eq!(
        sse.next_data_event().expect("an event").id.as_deref(),
        Some("5")
    );
    assert!(sse.next_data_event().is_none());
    assert!(
        sse.ended,
        "the body ends: EventSource reconnects with Last-Event-ID 5"
    );
    let stats = server.wait_stats("ended", Duration::from_secs(10), |stats| {
        stats["replays"]["ended"] == 2
    });
    assert_eq!(stats["replays"]["caught_up"], 0);
}

/// The response to `GET target`: its status and body.
fn answer(server: &TestServer, target: &str) -> (u16, String) {
    let (status, _, body) = http_get(server.addr, target);
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn malformed_conflicting_or_unservable_starts_are_refused_with_their_reason() {
    let (server, stream) = server_following(3, 1);
    for (target, reason) in [
        ("/?cursor=abc", "cursor: expected"),
        ("/sse?cursor=-1", "cursor: expected"),
        (
            "/ndjson?cursor=99999999999999999999",
            "cursor: out of range",
        ),
        ("/sse?since=NaN", "since: expected"),
        ("/ndjson?since=-5", "since: expected"),
        // The year 300,000,000,000.
        ("/ndjson?since=9467085600000000000", "since: out of range"),
        (
            "/sse?cursor=1&since=2",
            "cursor and since: give one of them",
        ),
        (
            "/sse?cursor=1&last_event_id=5",
            "cursor or since with last_event_id",
        ),
        ("/?cursor=1&cursor=2", "cursor: given more than once"),
    ] {
        let (status, body) = answer(&server, target);
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.starts_with(reason), "{target}: {body}");
        assert_eq!(body.lines().count(), 1, "{target}: one line");
    }
    stream.refuse_replays();
    let (status, body) = answer(&server, "/sse?cursor=0");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refuses replays"), "{body}");
    let (status, _, body) = http_request(server.addr, &upgrade_request("/?cursor=0", ""));
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let stats = server.stats();
    assert_eq!(stats["replays"]["refused"], 2);
    assert_eq!(
        stats["clients"]["total"], 0,
        "a refused client is not registered"
    );
}

#[test]
fn without_jetstream_a_start_is_refused_and_ids_are_unchanged() {
    let server = TestServer::start(|_| {});
    for target in ["/?cursor=1", "/sse?since=1700000000", "/ndjson?cursor=0"] {
        let (status, body) = answer(&server, target);
        assert_eq!(status, 400, "{target}");
        assert_eq!(body, "cursor and since need JetStream (--nats-url)\n");
    }
    // A numeric Last-Event-ID is no id of this server's: it starts live, as any unknown id.
    let mut sse = HttpStreamClient::get(server.addr, "/sse", &[("Last-Event-ID", "3")]);
    assert_eq!(sse.status, 200);
    let start: Vec<_> = (0..2)
        .map(|_| sse.next_event().expect("the first chunk"))
        .collect();
    assert_eq!(start[1].comments, ["resume unavailable"], "{start:?}");
    server.publish(message(1));
    let event = sse.next_data_event().expect("a live event");
    assert!(event.id.is_some_and(|id| id.contains('-')), "boot-prefixed");
}
