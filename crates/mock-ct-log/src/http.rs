//! A minimal blocking HTTP/1.1 server: one thread per connection, keep-alive and pipelining, Content-Length
//! bodies only (no chunked requests, no compression).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Largest request head plus body accepted.
const MAX_REQUEST: usize = 1 << 20;
/// Idle connections are closed after this long, so abandoned clients do not pin threads forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One parsed request.
pub struct Request {
    /// "GET", "POST"…
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query string without `?` (empty when absent).
    pub query: String,
    /// The body (Content-Length bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The raw value of query parameter `name` (the mock's parameters never need percent-decoding).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// A response body: generated, or shared from a cache.
pub enum Body {
    /// Built for this response.
    Owned(Vec<u8>),
    /// Cached and immutable.
    Shared(Arc<[u8]>),
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        match self {
            Body::Owned(v) => v,
            Body::Shared(v) => v,
        }
    }
}

/// A complete response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with no extra headers.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Owned(body.into()),
        }
    }

    /// A plain-text error.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        let mut body = message.into();
        body.push('\n');
        Self::new(status, "text/plain; charset=utf-8", body)
    }
}

/// What to do with the connection.
pub enum Reply {
    /// Send the response.
    Full(Response),
    /// Send the head (Content-Length of the whole body) and half the body, then close.
    Truncated(Response),
    /// Close without answering.
    Reset,
    /// Send the response, then after `delay_ms` these raw bytes (a forged response nobody asked for).
    Forged {
        /// The real response.
        response: Response,
        /// Milliseconds between the two (0: in the same write).
        delay_ms: u64,
        /// A complete HTTP response.
        forged: Vec<u8>,
    },
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// The reply to one request.
    fn handle(&self, request: &Request) -> Reply;
    /// Whether to print one line per request on stderr.
    fn verbose(&self) -> bool;
}

/// Whether the server is stopping, and its open connections (so stopping can end them too).
#[derive(Default)]
pub struct Connections {
    stopping: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl Connections {
    /// Stops accepting, and shuts every open connection down (their threads then end).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Ok(open) = self.open.lock() {
            for stream in open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Accepts connections until [`Connections::stop`], one thread each.
pub fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, connections: Arc<Connections>) {
    for stream in listener.incoming() {
        if connections.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        if let (Ok(clone), Ok(mut open)) = (stream.try_clone(), connections.open.lock()) {
            open.insert(id, clone);
        }
        let (handler, connections) = (Arc::clone(&handler), Arc::clone(&connections));
        thread::spawn(move || {
            if let Err(e) = connection(stream, &*handler)
                && handler.verbose()
            {
                eprintln!("connection ended: {e}");
            }
            if let Ok(mut open) = connections.open.lock() {
                open.remove(&id);
            }
        });
    }
}

fn connection(mut stream: TcpStream, handler: &impl Handler) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut buffer = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    loop {
        let Some((request, consumed, keep_alive)) =
            next_request(&mut stream, &mut buffer, &mut chunk)?
        else {
            return Ok(());
        };
        buffer.drain(..consumed);
        let reply = handler.handle(&request);
        if handler.verbose() {
            let status = match &reply {
                Reply::Full(r) => r.status.to_string(),
                Reply::Truncated(r) => format!("{} (truncated)", r.status),
                Reply::Reset => "reset".into(),
                Reply::Forged { response, .. } => format!("{} (+ forged)", response.status),
            };
            let query = if request.query.is_empty() { "" } else { "?" };
            eprintln!(
                "{} {}{query}{} -> {status}",
                request.method, request.path, request.query
            );
        }
        match reply {
            Reply::Full(response) => {
                write_response(
                    &mut stream,
                    &response,
                    keep_alive,
                    response.body.as_ref().len(),
                )?;
                if !keep_alive {
                    return stream.shutdown(Shutdown::Both);
                }
            }
            Reply::Truncated(response) => {
                write_response(
                    &mut stream,
                    &response,
                    false,
                    response.body.as_ref().len() / 2,
                )?;
                return stream.shutdown(Shutdown::Both);
            }
            Reply::Reset => return stream.shutdown(Shutdown::Both),
            Reply::Forged {
                response,
                delay_ms,
                forged,
            } => {
                let mut bytes = response_bytes(&response, keep_alive, response.body.as_ref().len());
                if delay_ms > 0 {
                    stream.write_all(&bytes)?;
                    bytes.clear();
                    thread::sleep(Duration::from_millis(delay_ms));
                }
                bytes.extend_from_slice(&forged);
                stream.write_all(&bytes)?;
            }
        }
    }
}

/// Reads until one whole request is buffered. `None` when the peer closed cleanly between requests.
fn next_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    chunk: &mut [u8],
) -> io::Result<Option<(Request, usize, bool)>> {
    loop {
        if let Some(parsed) = parse_request(buffer)? {
            return Ok(Some(parsed));
        }
        if buffer.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            ));
        }
        let n = stream.read(chunk)?;
        if n == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A request, the bytes it took and whether the connection stays open; `None` when more bytes are needed.
fn parse_request(buffer: &[u8]) -> io::Result<Option<(Request, usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let mut content_length = 0usize;
    let mut keep_alive = parsed.version == Some(1);
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let total = head_len.saturating_add(content_length);
    if total > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request too large",
        ));
    }
    let Some(body) = buffer.get(head_len..total) else {
        return Ok(None);
    };
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: parsed.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body: body.to_vec(),
    };
    Ok(Some((request, total, keep_alive)))
}

/// Writes the head (announcing the whole body) and the first `send` bytes of the body.
fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    send: usize,
) -> io::Result<()> {
    let body = response.body.as_ref();
    // One write for small responses (one segment), two for large ones (no copy of the body).
    if send <= 16384 {
        stream.write_all(&response_bytes(response, keep_alive, send))
    } else {
        stream.write_all(&response_bytes(response, keep_alive, 0))?;
        stream.write_all(body.get(..send).unwrap_or(body))
    }
}

/// The head (announcing the whole body) followed by the first `send` bytes of the body.
pub fn response_bytes(response: &Response, keep_alive: bool, send: usize) -> Vec<u8> {
    let body = response.body.as_ref();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.get(..send).unwrap_or(body));
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
