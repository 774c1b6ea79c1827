//! Blocking HTTP/1.1 over 127.0.0.1 for tests: one client (every request goes through [`exchange`]: `raw_request`,
//! `request`, `http_get`, `http_request`, `send_get`), one scripted server ([`ScriptedServer`]) that answers with
//! handler-built responses or hands over the raw connection, and certstream's own client set up for the pollers'
//! tests ([`loopback_poller_client`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------------------------
// The client

/// Bound of every read of the test client.
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `request` on `stream` and reads the response until the server closes, each read waiting at most
/// `timeout`: what arrived, and whether the write and the read went through (a server that refuses or resets
/// still leaves what arrived before).
pub fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> (Vec<u8>, io::Result<usize>) {
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    let sent = stream.write_all(request);
    let mut response = Vec::new();
    let ended = stream.read_to_end(&mut response);
    (response, sent.and(ended))
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): the raw response, read to EOF; empty when
/// the server closes without answering (a reset mid-read still leaves what arrived).
pub fn raw_request(addr: &str, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut stream = TcpStream::connect(addr).expect("connect");
    exchange(&mut stream, &request, CLIENT_IO_TIMEOUT).0
}

/// One HTTP/1.1 request on a fresh connection, read to EOF: status (0 when none) and body, de-chunked.
pub fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let raw = raw_request(addr, method, path, body);
    let Some((head, mut body)) = parse_response(&raw) else {
        return (0, Vec::new());
    };
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status_of(&head).unwrap_or(0), body)
}

/// A blocking HTTP GET; returns status, head and body (the server closes after each response).
pub fn http_get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    http_request(addr, &get_request(target))
}

/// A minimal GET request head for `target`.
pub fn get_request(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Sends a GET of `target` on `stream` and returns the stream with the response unread (a client that asks and
/// never reads).
pub fn send_get(mut stream: TcpStream, target: &str) -> TcpStream {
    stream
        .write_all(get_request(target).as_bytes())
        .expect("send request");
    stream
}

/// Sends a raw request and reads the whole response until the server closes.
pub fn http_request(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    http_request_on(TcpStream::connect(addr).expect("connect"), request)
}

/// As [`http_request`], on a stream already connected (e.g. from another source address).
pub fn http_request_on(mut stream: TcpStream, request: &str) -> (u16, String, Vec<u8>) {
    let (response, ended) = exchange(&mut stream, request.as_bytes(), CLIENT_IO_TIMEOUT);
    ended.expect("send the request and read the response");
    split_response(&response)
}

/// Splits a response into status, head and body.
pub fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let (head, body) = parse_response(response).expect("complete response head");
    (status_of(&head).expect("status code"), head, body)
}

/// Head (without the blank line) and body of a response, if its head is complete.
fn parse_response(response: &[u8]) -> Option<(String, Vec<u8>)> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    Some((head, response[end + 4..].to_vec()))
}

/// The status code of a response head.
fn status_of(head: &str) -> Option<u16> {
    head.split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// The data of a chunked body (stops at the last chunk or where the body is cut).
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 || raw.len() < line_end + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[(line_end + 4 + size).min(raw.len())..];
    }
    out
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Connects to `addr` from the IPv4 address `source` (another loopback address, e.g. 127.0.0.2: another client
/// as far as the server's per-address limit is concerned).
pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(addr) = addr else {
        panic!("connect_from is IPv4 only: {addr}")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket owned by the returned stream; bind and connect get pointers to live sockaddr_in values.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(source, 0);
        let remote = sockaddr(*addr.ip(), addr.port());
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0,
            "connect from {source}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// Whether the peer closed `stream` (EOF or reset), without waiting.
pub fn closed_by_peer(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

// ---------------------------------------------------------------------------------------------------------------
// The scripted server

/// Bound of every socket read and write of a [`ScriptedServer`] connection, so no server thread outlives its
/// test by much.
pub const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a [`ScriptedServer`] saw of one request.
pub struct Request {
    /// The request target, e.g. `/log/ct/v1/get-sth`.
    pub path: String,
    /// The raw request head, lowercased.
    pub head: String,
}

/// What a handler tells the connection loop to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next request on this connection.
    KeepOpen,
    /// Close the connection.
    Close,
}

/// Answers one request by writing to the connection (a whole response, part of one, or garbage).
pub type Handler = dyn Fn(&Request, &mut dyn Write) -> After + Send + Sync;

/// A local HTTP/1.1 test server on 127.0.0.1: each connection on its own thread, handled by a script. It counts
/// accepted connections so tests can see reuse, and stops accepting when dropped.
pub struct ScriptedServer {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

impl ScriptedServer {
    /// Serves keep-alive HTTP/1.1 with `handler`, one request at a time per connection.
    pub fn serve(
        handler: impl Fn(&Request, &mut dyn Write) -> After + Send + Sync + 'static,
    ) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        Self::accept(move |_, stream| serve_requests(stream, &*handler))
    }

    /// Hands each accepted connection (numbered from 0, read and write timeouts set) to `on_connection`, on its
    /// own thread: for servers that misbehave below HTTP, wrap the stream (TLS) or relay it.
    pub fn accept(on_connection: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (counter, stop) = (accepted.clone(), stopped.clone());
        let on_connection = Arc::new(on_connection);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                let number = counter.fetch_add(1, Ordering::SeqCst);
                let on_connection = on_connection.clone();
                thread::spawn(move || {
                    stream.set_read_timeout(Some(SERVER_IO_TIMEOUT)).ok();
                    stream.set_write_timeout(Some(SERVER_IO_TIMEOUT)).ok();
                    stream.set_nodelay(true).ok();
                    on_connection(number, stream);
                });
            }
        });
        Self {
            addr,
            accepted,
            stopped,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads requests from `stream` and answers each with `handler` until it says close or the client leaves.
pub fn serve_requests(mut stream: impl Read + Write, handler: &Handler) {
    let mut pending = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut pending) else {
            return;
        };
        let after = handler(&request, &mut stream);
        if stream.flush().is_err() || after == After::Close {
            return;
        }
    }
}

/// Reads one request head (bytes past it stay in `pending`); `None` at EOF, on an error or a head without a
/// target.
pub fn read_request(stream: &mut impl Read, pending: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            pending.drain(..end + 4);
            let path = head.split(' ').nth(1)?.to_string();
            return Some(Request {
                path,
                head: head.to_ascii_lowercase(),
            });
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Writes a whole response in one write (two small writes would meet Nagle + delayed ACK); `extra_headers` are
/// whole lines, each ending in CRLF. Write errors are ignored: the client may have gone.
pub fn respond(w: &mut dyn Write, status: u16, extra_headers: &str, body: &[u8]) {
    let reason = if status == 200 { "OK" } else { "Scripted" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    let _ = w.write_all(&out);
}

// ---------------------------------------------------------------------------------------------------------------
// certstream's own client, as the pollers' tests use it

/// certstream's HTTP client with its defaults but no web PKI roots: the scripted logs are plain HTTP on
/// 127.0.0.1, and nothing may reach out.
pub fn loopback_poller_client() -> certstream::http::HttpClient {
    let config = certstream::http::HttpClientConfig {
        use_webpki_roots: false,
        ..certstream::http::HttpClientConfig::default()
    };
    certstream::http::HttpClient::new(config).expect("certstream's HTTP client")
}
