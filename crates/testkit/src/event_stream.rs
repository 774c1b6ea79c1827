//! A blocking client of the server's HTTP streams (server-sent events and NDJSON over a chunked response): it
//! sends the request, reads the head, then de-chunks the body as it arrives and hands out events or lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::http::CLIENT_IO_TIMEOUT;

/// One server-sent event as the wire carried it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines, joined by `\n` (as `EventSource` does).
    pub data: String,
    /// Comment lines (`: …`), without the colon.
    pub comments: Vec<String>,
    /// Other fields (`retry: 2000`), as `name: value`.
    pub fields: Vec<String>,
}

/// A stream response being read.
pub struct HttpStreamClient {
    stream: TcpStream,
    /// The response status.
    pub status: u16,
    /// The response head (status line and headers).
    pub head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// The terminating chunk (`0\r\n\r\n`) arrived.
    pub ended: bool,
}

impl HttpStreamClient {
    /// Sends `GET target` (HTTP/1.1) with `headers` and reads the response head.
    pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(CLIENT_IO_TIMEOUT))
            .expect("read timeout");
        stream.write_all(request.as_bytes()).expect("send request");
        let mut client = Self {
            stream,
            status: 0,
            head: String::new(),
            raw: Vec::new(),
            body: Vec::new(),
            ended: false,
        };
        let end = loop {
            if let Some(end) = client.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(client.read_more(), "closed before a response head");
        };
        client.head = String::from_utf8_lossy(&client.raw[..end]).into_owned();
        client.raw.drain(..end + 4);
        client.status = client
            .head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        client
    }

    /// Whether the head has this header line (case-insensitive name, exact value).
    pub fn has_header(&self, name: &str, value: &str) -> bool {
        self.head.lines().any(|line| {
            line.split_once(':')
                .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
        })
    }

    /// The next event (up to its blank line); `None` once the body ended or the connection closed.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let block = self.next_until(b"\n\n")?;
        let mut event = SseEvent::default();
        let mut data = Vec::new();
        for line in block.lines() {
            match line.split_once(':') {
                Some(("", comment)) => event.comments.push(comment.trim_start().to_owned()),
                Some(("id", id)) => event.id = Some(id.trim_start().to_owned()),
                Some(("data", value)) => data.push(value.strip_prefix(' ').unwrap_or(value)),
                _ => event.fields.push(line.to_owned()),
            }
        }
        event.data = data.join("\n");
        Some(event)
    }

    /// The next event that carries data (skipping comments and `retry:`).
    pub fn next_data_event(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next_event()?;
            if !event.data.is_empty() {
                return Some(event);
            }
        }
    }

    /// The next line (NDJSON), without its `\n`.
    pub fn next_line(&mut self) -> Option<String> {
        self.next_until(b"\n")
    }

    /// The body up to (without) the next `separator`, de-chunked.
    fn next_until(&mut self, separator: &[u8]) -> Option<String> {
        loop {
            if let Some(at) = self
                .body
                .windows(separator.len())
                .position(|w| w == separator)
            {
                let text = String::from_utf8_lossy(&self.body[..at]).into_owned();
                self.body.drain(..at + separator.len());
                return Some(text);
            }
            if self.ended || !self.dechunk_or_read() {
                return None;
            }
        }
    }

    /// Moves the complete chunks received into the body, reading more first when none is complete; `false` when
    /// the connection closed.
    fn dechunk_or_read(&mut self) -> bool {
        let mut progressed = false;
        while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            let total = line_end + 2 + size + 2;
            if self.raw.len() < total {
                break;
            }
            assert_eq!(&self.raw[total - 2..total], b"\r\n", "chunk end");
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..total);
            progressed = true;
            if size == 0 {
                self.ended = true;
                return true;
            }
        }
        progressed || self.read_more()
    }

    fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }
}
