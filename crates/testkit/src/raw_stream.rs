//! What a stream client was sent, byte for byte: every message by its cursor and, for `certificate_update`s, by
//! mock log name and index; anything received twice fails the test. [`RawCollector`] fills one from a WebSocket,
//! [`HttpCollector`] from server-sent events or NDJSON.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::certstream::{Certstream, update_position};
use crate::event_stream::{HttpStreamClient, SseEvent};
use crate::mock::mock_name;
use crate::ws::WsClient;

/// Bound on every wait of a [`RawCollector`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The cursor of a message read from JetStream: its first key, `{"cursor":N,…` (docs/wire-format.md §10).
pub fn cursor_of(message: &[u8]) -> Option<u64> {
    let rest = message.strip_prefix(b"{\"cursor\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// A line of a stream message's payload as clients receive it: with the message's cursor as its first key.
pub fn with_cursor(line: &[u8], cursor: u64) -> Vec<u8> {
    let mut out = format!("{{\"cursor\":{cursor},").into_bytes();
    out.extend_from_slice(&line[1..]);
    out
}

/// Checks that each log's indexes are one unbroken range (`who` names whose they are in a failure); returns each
/// log's first and last index.
pub fn assert_each_log_unbroken<V>(
    who: &str,
    by_log: &BTreeMap<String, BTreeMap<u64, V>>,
) -> BTreeMap<String, (u64, u64)> {
    by_log
        .iter()
        .map(|(log, indexes)| {
            let first = *indexes.keys().next().expect("indexes");
            let last = *indexes.keys().last().expect("indexes");
            assert_eq!(
                indexes.len() as u64,
                last - first + 1,
                "{who}: {log} indexes {first}..={last} have gaps"
            );
            (log.clone(), (first, last))
        })
        .collect()
}

/// The messages a client received, each payload as sent.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Every message that carries a cursor, by cursor.
    pub by_cursor: BTreeMap<u64, Vec<u8>>,
    /// Every `certificate_update`, by mock log name and index.
    pub by_log: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    /// The last cursor received.
    pub last_cursor: Option<u64>,
}

impl Delivered {
    /// Records one message: a cursor must follow the one before (stream order, none twice), an index must be
    /// new for its log.
    pub fn record(&mut self, payload: Vec<u8>) {
        let cursor = cursor_of(&payload);
        let position = update_position(&payload).map(|(url, index)| {
            let url: String = serde_json::from_slice(url).expect("source.url");
            (mock_name(&url), index)
        });
        assert!(
            cursor.is_some() || position.is_some(),
            "neither a cursor nor a certificate_update: {}",
            String::from_utf8_lossy(&payload)
        );
        if let Some((log, index)) = position {
            let again = self
                .by_log
                .entry(log.clone())
                .or_default()
                .insert(index, payload.clone());
            assert!(again.is_none(), "{log} index {index} received twice");
        }
        if let Some(cursor) = cursor {
            assert!(
                self.last_cursor < Some(cursor),
                "cursor {cursor} after {:?}: out of order or twice",
                self.last_cursor
            );
            self.last_cursor = Some(cursor);
            self.by_cursor.insert(cursor, payload);
        }
    }

    /// Records a server-sent event carrying a message: its `id:` is the message's cursor.
    pub fn record_event(&mut self, event: SseEvent) {
        let payload = event.data.into_bytes();
        let cursor = cursor_of(&payload).map(|cursor| cursor.to_string());
        assert_eq!(event.id, cursor, "the event's id is its message's cursor");
        self.record(payload);
    }

    /// How many indexes of `log` arrived.
    pub fn count(&self, log: &str) -> usize {
        self.by_log.get(log).map_or(0, BTreeMap::len)
    }
}

/// A WebSocket client keeping every message's bytes ([`Delivered`]), answering pings.
pub struct RawCollector {
    /// The connection (to send pings or close frames).
    pub client: WsClient,
    /// What arrived.
    pub delivered: Delivered,
    /// Pongs received.
    pub pongs: u64,
    /// The server's close frame arrived.
    pub closed: bool,
    /// Its status code.
    pub close_code: Option<u16>,
    /// The connection ended (EOF or reset), with or without a close frame.
    pub ended: bool,
}

impl RawCollector {
    /// Connects to `path` (`/`, `/full-stream`, `/domains-only`, a query string allowed) on `server`.
    pub fn connect(server: &Certstream, path: &str) -> RawCollector {
        RawCollector::handshake(server.connect(), path)
    }

    /// Completes the handshake on `path` over `stream`, already connected.
    pub fn handshake(stream: TcpStream, path: &str) -> RawCollector {
        let client = WsClient::handshake(stream, path);
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        RawCollector {
            client,
            delivered: Delivered::default(),
            pongs: 0,
            closed: false,
            close_code: None,
            ended: false,
        }
    }

    /// Reads until `done` holds, at most [`READ_TIMEOUT`] (fails the test then, or when the stream ends first).
    pub fn read_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        self.read_until_within(what, READ_TIMEOUT, done);
    }

    /// [`read_until`](Self::read_until) with another bound than [`READ_TIMEOUT`].
    pub fn read_until_within(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({timeout:?})"
            );
            assert!(
                !self.closed && !self.ended,
                "the server closed the stream (close code {:?}) before {what}",
                self.close_code
            );
            self.read_once();
        }
    }

    /// Reads what is left until the server's close frame (after a SIGTERM).
    pub fn read_to_close(&mut self) {
        self.read_until("the close frame", |c| c.closed);
    }

    /// Reads what is left until the connection ends, close frame or not (the server was killed).
    pub fn read_to_end(&mut self) {
        let deadline = Instant::now() + READ_TIMEOUT;
        while !self.ended {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the end of the connection"
            );
            self.read_once();
        }
    }

    /// Reads for `duration`.
    pub fn read_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until && !self.ended {
            self.read_once();
        }
    }

    fn read_once(&mut self) {
        match self.client.read_frame() {
            Ok(frame) if frame.opcode == 1 => self.delivered.record(frame.payload),
            Ok(frame) if frame.opcode == 9 => self.client.send(10, &frame.payload, true),
            Ok(frame) if frame.opcode == 10 => self.pongs += 1,
            Ok(frame) if frame.opcode == 8 => {
                self.closed = true;
                self.close_code = frame.close_code();
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if self.closed || is_end(e.kind()) => self.ended = true,
            Err(e) => panic!("stream read failed: {e}"),
        }
    }

    /// How many indexes of `log` arrived.
    pub fn count(&self, log: &str) -> usize {
        self.delivered.count(log)
    }
}

/// Whether a read error is the peer's end of the connection.
fn is_end(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// A server-sent events or NDJSON client keeping every message's bytes ([`Delivered`]).
pub struct HttpCollector {
    /// The response being read.
    pub client: HttpStreamClient,
    /// What arrived.
    pub delivered: Delivered,
    /// Server-sent events (else NDJSON lines).
    events: bool,
}

impl HttpCollector {
    /// `GET target` (a `…/sse` or `…/ndjson` route, a query string allowed) with `headers`; the response must be
    /// a `200`.
    pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> HttpCollector {
        let client = HttpStreamClient::get(addr, target, headers);
        assert_eq!(client.status, 200, "{target}: {}", client.head);
        let path = target.split('?').next().unwrap_or_default();
        HttpCollector {
            client,
            delivered: Delivered::default(),
            events: path.trim_end_matches('/').ends_with("/sse"),
        }
    }

    /// Reads one message; false once the body ended or the connection closed.
    fn read_once(&mut self) -> bool {
        if self.events {
            let Some(event) = self.client.next_data_event() else {
                return false;
            };
            self.delivered.record_event(event);
        } else {
            let Some(line) = self.client.next_line() else {
                return false;
            };
            self.delivered.record(line.into_bytes());
        }
        true
    }

    /// Reads until `done` holds for what arrived (each read bounded by the client's I/O timeout); fails if the
    /// stream ends first.
    pub fn read_until(&mut self, what: &str, done: impl Fn(&Delivered) -> bool) {
        while !done(&self.delivered) {
            assert!(self.read_once(), "the stream ended before {what}");
        }
    }

    /// Reads what is left until the body ends or the connection closes.
    pub fn read_to_end(&mut self) {
        while self.read_once() {}
    }
}
