//! A minimal blocking WebSocket client that can also misbehave (unmasked frames, raw bytes), and frame encoders.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A frame received by [`WsClient`].
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The frame's opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// The unmasked payload.
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
    /// The connection (tests write raw bytes or tune the socket through it).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Connects and completes the opening handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::handshake(TcpStream::connect(addr).expect("connect"), path)
    }

    /// Completes the opening handshake on `path` over a stream already connected.
    pub fn handshake(stream: TcpStream, path: &str) -> Self {
        Self::handshake_with(stream, path, "")
    }

    /// [`handshake`](Self::handshake) with extra request header lines (each ending in `\r\n`).
    pub fn handshake_with(mut stream: TcpStream, path: &str, extra_headers: &str) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream
            .write_all(upgrade_request(path, extra_headers).as_bytes())
            .unwrap();
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

/// The opening handshake's request for `path`, with `extra_headers` (each line ending in `\r\n`): to send it
/// where the answer may be a refusal rather than a `101`.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// Makes a client's receive window tiny so the server's socket buffers fill quickly.
pub fn shrink_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    let (fd, len) = (stream.as_raw_fd(), size_of_val(&size) as libc::socklen_t);
    let value = (&raw const size).cast();
    // SAFETY: setsockopt on an open socket with a pointer to a live c_int.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value, len) };
    assert_eq!(rc, 0);
}

/// Opcode, header length and payload length of the server frame at the start of `buf`, if its header is complete
/// (server frames are never masked).
pub fn parse_header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (header, len) = match b1 & 0x7F {
        126 => (
            4,
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    Some((b0 & 0x0F, header, len))
}
