//! The HTTP streams: server-sent events (`text/event-stream`, what a browser's `EventSource` reads) and
//! newline-delimited JSON (`application/x-ndjson`, for `curl -N … | jq`), each a chunked HTTP/1.1 response that
//! lasts as long as the connection (docs/wire-format.md §2, §8).
//!
//! Their clients are hub clients like WebSocket ones: the same byte-bounded rings and drop-oldest policy, the same
//! admission standing, write-stall deadline, TCP keepalive and shutdown. Only the framing differs: each message's
//! JSON (the payload of the hub's WebSocket frame) is written between a few bytes of this framing with one `writev`,
//! never copied:
//!
//! - SSE: `<chunk size>\r\n` `id: <boot>-<seq>\ndata: ` *JSON* `\n\n\r\n`; heartbeats have no `id:`. The server's
//!   ping becomes a comment (`:\n\n`), so proxies and browsers see traffic on a quiet (filtered) stream; the first
//!   chunk sets the reconnection delay (`retry:`) and, when the client's `Last-Event-ID` could not be served, says
//!   `: resume unavailable`.
//! - NDJSON: `<chunk size>\r\n` *JSON* `\n\r\n`. Nothing at ping time: every line must be JSON for `jq` and line
//!   readers, and a dead peer is found by TCP keepalive and the write deadline; `--heartbeat` adds JSON heartbeat
//!   lines, as on WebSocket.
//!
//! The JSON is compact, so it never holds a raw line break; a payload that did anyway would still be framed
//! correctly (SSE: one `data:` line per line; NDJSON: line breaks written as spaces).
//!
//! At shutdown the hub's close frame ends the body (`0\r\n\r\n`, after what a client that keeps up was sent); a
//! client that closes its side is noticed by the read that waits for its EOF.

use std::cell::Cell;
use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::Shared;
use super::batch::{Batch, Piece, write_batch};
use super::guard::{Guard, Reason};
use super::limits::Slot;
use crate::hub::{ClientHandle, EventIds, Queued, Resume};
use certstream_ws::frame::OpCode;

/// An HTTP stream's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Server-sent events.
    Sse,
    /// Newline-delimited JSON.
    Ndjson,
}

impl Format {
    /// Every format, in the order of [`HttpStreamClients`]' counts.
    pub(crate) const ALL: [Format; 2] = [Format::Sse, Format::Ndjson];

    /// The `/stats` key and `/metrics` label of its clients.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Sse => "sse",
            Format::Ndjson => "ndjson",
        }
    }

    /// The format a request's `Accept` header asks for on a stream path, if it names one of ours.
    pub(crate) fn accepted(headers: &[httparse::Header<'_>]) -> Option<Self> {
        headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("accept"))
            .filter_map(|header| std::str::from_utf8(header.value).ok())
            .flat_map(|value| value.split(','))
            .find_map(|range| {
                let media = range.split(';').next().unwrap_or("").trim();
                if media.eq_ignore_ascii_case("text/event-stream") {
                    Some(Format::Sse)
                } else if media.eq_ignore_ascii_case("application/x-ndjson")
                    || media.eq_ignore_ascii_case("application/ndjson")
                {
                    Some(Format::Ndjson)
                } else {
                    None
                }
            })
    }
}

/// The reconnection delay an `EventSource` is told at the start.
const SSE_RETRY: Duration = Duration::from_secs(2);

/// Messages written per `writev` at most: each takes up to three `iovec`s, well under `IOV_MAX` = 1024.
const MAX_MESSAGES_PER_WRITE: usize = 256;

/// Bytes a client may send after its request (nothing is expected) before the connection is closed.
const MAX_IGNORED_CLIENT_BYTES: usize = 64 * 1024;

/// Read buffer size: the client sends nothing after its request.
const SMALL_READ: usize = 64;

/// Longest `id: …\ndata: ` (a base-36 millisecond time, a `u64`, the field names).
const MAX_FIELDS_LEN: usize = 64;

/// A `Last-Event-ID` longer than this is not one of ours (ours are under 40 bytes): treated as unknown.
pub(crate) const MAX_LAST_EVENT_ID_LEN: usize = 64;

/// Connected HTTP stream clients per format (`/stats` and `/metrics`; WebSocket clients are the hub's others).
#[derive(Default)]
pub(crate) struct HttpStreamClients([Cell<usize>; 2]);

impl HttpStreamClients {
    pub(crate) fn get(&self) -> [usize; 2] {
        self.0.each_ref().map(Cell::get)
    }

    /// Counts a client of `format` until the returned guard is dropped (also when its task panics).
    fn count(&self, format: Format) -> CountedClient<'_> {
        let count = &self.0[format as usize];
        count.set(count.get() + 1);
        CountedClient(count)
    }
}

struct CountedClient<'a>(&'a Cell<usize>);

impl Drop for CountedClient<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// The response head and first chunk of a stream, written before its task starts.
pub(crate) fn response_start(format: Format, resume: Resume) -> Vec<u8> {
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    // `X-Accel-Buffering`: a proxy (nginx) must pass each event on at once. The data is public, like
    // `/latest.json`: pages on other origins may read it.
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\nTransfer-Encoding: \
         chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\r\n"
    )
    .into_bytes();
    if format == Format::Sse {
        let mut first = format!("retry: {}\n\n", SSE_RETRY.as_millis());
        if resume == Resume::Unavailable {
            first.push_str(": resume unavailable\n\n");
        }
        push_chunk(&mut out, first.as_bytes());
    }
    out
}

/// Serves a stream whose response has started until the client leaves, a write stalls or the server stops.
pub(crate) fn serve(
    stream: TcpStream,
    format: Format,
    client: ClientHandle,
    shared: std::rc::Rc<Shared>,
    slot: Slot,
) -> impl Future<Output = ()> {
    shared.rules.keep_alive(&stream);
    let (mut reader, mut writer) = stream.into_split();
    async move {
        let _counted = shared.http_stream_clients.count(format);
        let stall = shared.rules.write_stall_timeout;
        let ids = shared.hub.event_ids();
        monoio::select! {
            _ = read_until_gone(&mut reader, &shared.rules.guard) => {}
            _ = write_loop(&mut writer, &client, format, ids, stall) => {}
        }
        drop(client);
        drop(slot);
    }
}

/// Reads (and ignores) what the client sends, until it closes its side or vanishes.
async fn read_until_gone(reader: &mut OwnedReadHalf<TcpStream>, guard: &Guard) {
    let mut buf = Vec::with_capacity(SMALL_READ);
    let mut ignored = 0;
    while ignored <= MAX_IGNORED_CLIENT_BYTES {
        buf.clear();
        let (result, returned) = reader.read(buf).await;
        buf = returned;
        match result {
            Ok(n) if n > 0 => ignored += n,
            Err(error) if error.raw_os_error() == Some(libc::ETIMEDOUT) => {
                guard.count(Reason::KeepaliveTimeout);
                return;
            }
            _ => return,
        }
    }
}

/// Waits for queued messages and writes them, many per system call, until the end of the body is out.
async fn write_loop(
    writer: &mut OwnedWriteHalf<TcpStream>,
    client: &ClientHandle,
    format: Format,
    ids: &EventIds,
    stall: Duration,
) {
    loop {
        client.work().await;
        // Boxed and built in a block, as the WebSocket writer's: neither the batch nor the in-flight write is part
        // of every idle client's task.
        let (closing, write) = {
            let mut batch = Batch::spare();
            let closing = client.take_batch(&mut batch.frames, MAX_MESSAGES_PER_WRITE);
            frame_batch(&mut batch, format, ids);
            batch.point_at_pieces();
            (closing, Box::pin(write_batch(writer, batch, None, stall)))
        };
        match write.await {
            Some((batch, whole)) => {
                client.batch_written(whole);
                batch.recycle();
            }
            None => return,
        }
        if closing {
            let _ = writer.shutdown().await;
            return;
        }
    }
}

/// Lays out a batch taken from the ring in `format`: the pieces to write, and the framing bytes they point into.
fn frame_batch(batch: &mut Batch, format: Format, ids: &EventIds) {
    let Batch {
        frames,
        framing,
        pieces,
        ..
    } = batch;
    for (n, queued) in frames.iter().enumerate() {
        match queued.frame.opcode() {
            OpCode::Text => push_message(framing, pieces, format, ids, n, queued),
            OpCode::Ping if format == Format::Sse => pieces.push(Piece::Static(b"3\r\n:\n\n\r\n")),
            // The end of the chunked body; nothing follows.
            OpCode::Close => pieces.push(Piece::Static(b"0\r\n\r\n")),
            // Pongs answer WebSocket pings: never queued here.
            _ => {}
        }
    }
}

/// One message as one chunk: its framing bytes around the shared payload, or, for a payload with a raw line
/// break (never built by this server), a reframed copy.
fn push_message(
    framing: &mut Vec<u8>,
    pieces: &mut Vec<Piece>,
    format: Format,
    ids: &EventIds,
    n: usize,
    queued: &Queued,
) {
    let payload = queued.frame.payload();
    let mut fields = [0u8; MAX_FIELDS_LEN];
    let fields_len = match format {
        Format::Sse => {
            let mut cursor = std::io::Cursor::new(&mut fields[..]);
            if queued.has_id() {
                let _ = cursor.write_all(b"id: ");
                ids.write(queued, &mut cursor);
                let _ = cursor.write_all(b"\n");
            }
            let _ = cursor.write_all(b"data: ");
            cursor.position() as usize
        }
        Format::Ndjson => 0,
    };
    let fields = &fields[..fields_len];
    let start = framing.len();
    if !payload.iter().any(|&b| b == b'\n' || b == b'\r') {
        let end: &'static [u8] = match format {
            Format::Sse => b"\n\n\r\n",
            Format::Ndjson => b"\n\r\n",
        };
        // The chunk ends with `\r\n`, which is not part of its size.
        let size = fields.len() + payload.len() + end.len() - 2;
        let _ = write!(framing, "{size:x}\r\n");
        framing.extend_from_slice(fields);
        pieces.extend([
            Piece::Framing(start..framing.len()),
            Piece::Payload(n),
            Piece::Static(end),
        ]);
        return;
    }
    let mut body = fields.to_vec();
    let mut bytes = payload.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match (format, byte) {
            (Format::Sse, b'\r' | b'\n') => {
                if byte == b'\r' && bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                body.extend_from_slice(b"\ndata: ");
            }
            (Format::Ndjson, b'\r' | b'\n') => body.push(b' '),
            _ => body.push(byte),
        }
    }
    body.extend_from_slice(match format {
        Format::Sse => b"\n\n",
        Format::Ndjson => b"\n",
    });
    push_chunk(framing, &body);
    pieces.push(Piece::Framing(start..framing.len()));
}

/// Appends `data` as one chunk of a chunked body.
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::hub::{Hub, NO_SEQ};
    use certstream_ws::frame::Frame;

    /// What a batch of `(payload, seq)` writes, laid out in `format` (control frames by their opcode).
    fn written(format: Format, ids: &EventIds, frames: Vec<Queued>) -> Vec<u8> {
        let mut batch = Batch::default();
        batch.frames = frames;
        frame_batch(&mut batch, format, ids);
        let mut out = Vec::new();
        for piece in &batch.pieces {
            out.extend_from_slice(match piece {
                Piece::Framing(range) => &batch.framing[range.clone()],
                Piece::Payload(n) => batch.frames[*n].frame.payload(),
                Piece::Static(bytes) => bytes,
            });
        }
        out
    }

    fn queued(frame: Frame, seq: u64) -> Queued {
        Queued {
            frame: Rc::new(frame),
            seq,
            cursor: None,
        }
    }

    /// Undoes the chunked encoding, checking each chunk's size.
    fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
                return (out, false);
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
            body = &body[line_end + 2..];
            if size == 0 {
                return (out, body == b"\r\n");
            }
            out.extend_from_slice(&body[..size]);
            assert_eq!(
                &body[size..size + 2],
                b"\r\n",
                "a chunk ends where its size says"
            );
            body = &body[size + 2..];
        }
    }

    #[test]
    fn sse_events_carry_ids_heartbeats_none_pings_are_comments_and_close_ends_the_body() {
        let hub = Hub::new(8);
        let ids = hub.event_ids();
        let mut id = Vec::new();
        ids.write(&queued(Frame::text(b""), 7), &mut id);
        let id = String::from_utf8(id).unwrap();
        let with_cursor = |seq, cursor| Queued {
            cursor: Some(cursor),
            ..queued(Frame::text(br#"{"c":1}"#), seq)
        };
        let out = written(
            Format::Sse,
            ids,
            vec![
                queued(Frame::pong(b""), NO_SEQ),
                queued(Frame::ping(b""), NO_SEQ),
                queued(Frame::text(br#"{"a":1}"#), 7),
                queued(Frame::text(br#"{"message_type":"heartbeat"}"#), NO_SEQ),
                // JetStream: the cursor is the id, published (a sequence number) or replayed (none).
                with_cursor(8, 41),
                with_cursor(NO_SEQ, 42),
                queued(Frame::close(1001, "bye"), NO_SEQ),
            ],
        );
        let (events, ended) = dechunk(&out);
        assert!(ended, "the body is terminated");
        assert_eq!(
            String::from_utf8(events).unwrap(),
            format!(
                ":\n\nid: {id}\ndata: {{\"a\":1}}\n\ndata: {{\"message_type\":\"heartbeat\"}}\n\n\
                 id: 41\ndata: {{\"c\":1}}\n\nid: 42\ndata: {{\"c\":1}}\n\n"
            )
        );
    }

    #[test]
    fn ndjson_is_one_line_per_message_and_nothing_at_ping_time() {
        let hub = Hub::new(8);
        let out = written(
            Format::Ndjson,
            hub.event_ids(),
            vec![
                queued(Frame::ping(b""), NO_SEQ),
                queued(Frame::text(br#"{"a":1}"#), 1),
                queued(Frame::text(br#"{"b":"\u00e9"}"#), 2),
            ],
        );
        let (lines, ended) = dechunk(&out);
        assert!(!ended);
        assert_eq!(lines, b"{\"a\":1}\n{\"b\":\"\\u00e9\"}\n");
    }

    #[test]
    fn a_payload_with_raw_line_breaks_is_still_framed_correctly() {
        let hub = Hub::new(8);
        let payload = b"{\"a\":\n1,\r\n\"b\":\r2}";
        let sse = written(
            Format::Sse,
            hub.event_ids(),
            vec![queued(Frame::text(payload), NO_SEQ)],
        );
        assert_eq!(
            dechunk(&sse).0,
            b"data: {\"a\":\ndata: 1,\ndata: \"b\":\ndata: 2}\n\n"
        );
        let ndjson = written(
            Format::Ndjson,
            hub.event_ids(),
            vec![queued(Frame::text(payload), NO_SEQ)],
        );
        assert_eq!(dechunk(&ndjson).0, b"{\"a\": 1,  \"b\": 2}\n");
    }

    #[test]
    fn the_start_sets_retry_and_says_when_a_resume_is_unavailable() {
        let start = String::from_utf8(response_start(Format::Sse, Resume::Unavailable)).unwrap();
        assert!(start.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(start.contains("Content-Type: text/event-stream\r\n"));
        assert!(start.contains("Transfer-Encoding: chunked\r\n"));
        let body = start.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            dechunk(body.as_bytes()).0,
            b"retry: 2000\n\n: resume unavailable\n\n"
        );
        let ndjson = response_start(Format::Ndjson, Resume::Live);
        assert!(ndjson.ends_with(b"application/x-ndjson\r\nCache-Control: no-store\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\r\n"));
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let accept = |value: &'static str| {
            Format::accepted(&[httparse::Header {
                name: "Accept",
                value: value.as_bytes(),
            }])
        };
        assert_eq!(accept("text/event-stream"), Some(Format::Sse));
        assert_eq!(accept("Text/Event-Stream; q=1"), Some(Format::Sse));
        assert_eq!(accept("application/x-ndjson"), Some(Format::Ndjson));
        assert_eq!(
            accept("text/plain, application/ndjson"),
            Some(Format::Ndjson)
        );
        assert_eq!(
            accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            None
        );
        assert_eq!(accept("*/*"), None);
    }
}
