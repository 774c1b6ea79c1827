//! Shared by the server tests: an in-process server on its own monoio thread with a publish handle, numbered
//! certstream-shaped messages, a minimal blocking WebSocket client and an HTTP GET helper (all over 127.0.0.1).
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use certstream::config::Config;
use certstream::message::EncodedMessage;
use certstream::server::{self, Server};
use certstream_ws::frame::Frame;
use serde_json::json;

enum Command {
    Publish(EncodedMessage),
    Shutdown,
}

/// A real server on a background thread (its own monoio runtime), listening on 127.0.0.1 on a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the default configuration changed by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let _ = server::raise_open_files_limit();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            // The tests poll `/stats` freely; the rate limit has its own test (which sets it).
            ops_rate: 100_000,
            ..Config::default()
        };
        tweak(&mut config);
        let (commands, inbox) = mpsc::channel();
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            certstream::runtime::block_on(async move {
                let server = Server::bind(config).expect("bind");
                addr_tx
                    .send(server.local_addr().expect("local addr"))
                    .unwrap();
                let hub = server.hub();
                // The test thread cannot touch the single-threaded hub: it sends commands, polled here.
                let control = async move {
                    loop {
                        match inbox.try_recv() {
                            Ok(Command::Publish(frames)) => hub.publish(&frames),
                            Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return,
                            Err(mpsc::TryRecvError::Empty) => {
                                monoio::time::sleep(Duration::from_millis(1)).await
                            }
                        }
                    }
                };
                server.run(control).await;
            })
            .expect("runtime");
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Self {
            addr,
            commands,
            thread: Some(thread),
        }
    }

    pub fn publish(&self, frames: EncodedMessage) {
        self.commands
            .send(Command::Publish(frames))
            .expect("server thread gone");
    }

    /// `ws://127.0.0.1:port<path>`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The `/stats` document.
    pub fn stats(&self) -> serde_json::Value {
        let (status, _, body) = http_get(self.addr, "/stats");
        assert_eq!(status, 200, "/stats: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("/stats is JSON")
    }

    /// Waits until `/stats` reports `n` connected WebSocket clients.
    pub fn wait_for_clients(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.stats()["clients"]["total"].as_u64().unwrap();
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} clients, the server has {now}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful shutdown (close 1001 to every client), waiting for the server thread to finish.
    pub fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Message number `n` in the three stream variants, certstream-shaped (docs/wire-format.md §3), with non-ASCII text
/// in it.
pub fn message(n: u64) -> EncodedMessage {
    let domain = format!("host-{n}.example.com");
    let domains = json!([domain.clone(), format!("www.{domain}")]);
    let mut leaf = json!({
        "all_domains": domains,
        "extensions": {"basicConstraints": "CA:FALSE", "subjectAltName": format!("DNS:www.{domain}, DNS:{domain}")},
        "fingerprint": "AB:CD:EF",
        "is_ca": false,
        "issuer": {"C": "FR", "CN": "Autorité de test €", "L": null, "O": "Test", "OU": null, "ST": null,
                   "aggregated": "/C=FR/CN=Autorité de test €/O=Test", "emailAddress": null},
        "not_after": 1_800_000_000u64,
        "not_before": 1_700_000_000u64,
        "serial_number": format!("{n:X}"),
        "sha1": "AB:CD:EF",
        "sha256": "01:23:45",
        "signature_algorithm": "sha256, rsa",
        "subject": {"C": null, "CN": domain, "L": null, "O": null, "OU": null, "ST": null,
                    "aggregated": format!("/CN={domain}"), "emailAddress": null},
    });
    let data = |leaf: serde_json::Value, chain: Option<serde_json::Value>| {
        let mut data = json!({
            "cert_index": n,
            "cert_link": format!("https://ct.example.net/log/ct/v1/get-entries?start={n}&end={n}"),
            "leaf_cert": leaf,
            "seen": 1_732_000_000.125 + n as f64,
            "source": {"name": "Test log", "timestamp": 1_731_999_999.5, "type": "rfc6962",
                       "url": "https://ct.example.net/log/"},
            "update_type": "X509LogEntry",
        });
        if let Some(chain) = chain {
            data["chain"] = chain;
        }
        json!({"data": data, "message_type": "certificate_update"})
    };
    let lite = data(leaf.clone(), None);
    leaf["as_der"] = json!(format!("TUlJ{n}"));
    let full = data(leaf, Some(json!([])));
    let domains_only = json!({"data": domains, "message_type": "dns_entries"});
    let frame = |value: &serde_json::Value| Frame::text(&serde_json::to_vec(value).unwrap());
    EncodedMessage {
        lite: frame(&lite),
        full: frame(&full),
        domains: frame(&domains_only),
    }
}

/// A blocking HTTP GET; returns status, head and body (the server closes after each response).
pub fn http_get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    http_request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"),
    )
}

/// Sends a raw request and reads the whole response until the server closes.
pub fn http_request(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    http_request_on(TcpStream::connect(addr).expect("connect"), request)
}

/// As [`http_request`], on a stream already connected (e.g. from another source address).
pub fn http_request_on(mut stream: TcpStream, request: &str) -> (u16, String, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    split_response(&response)
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

/// Splits a response into status, head and body.
pub fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head, response[end + 4..].to_vec())
}

/// A frame received by [`WsClient`].
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Received {
    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A minimal blocking WebSocket client that can also misbehave (unmasked frames, raw bytes).
pub struct WsClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Connects and completes the opening handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::handshake(TcpStream::connect(addr).expect("connect"), path)
    }

    /// Completes the opening handshake on `path` over a stream already connected.
    pub fn handshake(mut stream: TcpStream, path: &str) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut client = Self {
            stream,
            buf: Vec::new(),
        };
        let head = client.read_until_head_end();
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        client
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_until_head_end(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().expect("response head");
        }
    }

    /// Reads the next frame (the server never fragments or masks).
    pub fn read_frame(&mut self) -> std::io::Result<Received> {
        loop {
            if self.buf.len() >= 2 {
                let (len, header) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
                if len != usize::MAX && self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0F;
                    assert_eq!(self.buf[0] & 0x80, 0x80, "server frames are final");
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Ok(Received { opcode, payload });
                }
            }
            self.fill()?;
        }
    }

    /// Reads frames until a data frame arrives, answering nothing (pings are skipped).
    pub fn read_data(&mut self) -> Vec<u8> {
        loop {
            let frame = self.read_frame().expect("a frame");
            match frame.opcode {
                1 => return frame.payload,
                9 | 10 => continue,
                other => panic!(
                    "unexpected frame opcode {other}: {:?}",
                    String::from_utf8_lossy(&frame.payload)
                ),
            }
        }
    }

    /// Reads until the close frame, skipping data and pings; returns its status code.
    pub fn read_close(&mut self) -> Option<u16> {
        loop {
            let frame = self.read_frame().expect("a close frame");
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
    }

    /// Sends one frame, masked (as clients must) or not.
    pub fn send(&mut self, opcode: u8, payload: &[u8], masked: bool) {
        self.stream
            .write_all(&encode_client_frame(opcode, payload, masked, true))
            .expect("send");
    }

    /// True once the server has closed the TCP connection (EOF or reset), after draining what it sent.
    pub fn wait_closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

/// Encodes a client frame with an optional mask.
pub fn encode_client_frame(opcode: u8, payload: &[u8], masked: bool, fin: bool) -> Vec<u8> {
    let first_byte = if fin { 0x80 } else { 0 } | opcode;
    raw_client_frame(
        first_byte,
        payload,
        masked.then_some([0x12, 0x34, 0x56, 0x78]),
    )
}

/// A client frame exactly as given: `first_byte` is FIN/RSV/opcode as sent, the length uses the minimal encoding,
/// and the payload is masked with `mask` when there is one.
pub fn raw_client_frame(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Makes a client's receive window tiny so the server's socket buffers fill quickly.
pub fn shrink_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a pointer to a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}
