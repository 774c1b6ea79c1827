//! One HTTP/1.1 connection (plain TCP or TLS) with its read buffer.
//!
//! A `Connection` is owned by exactly one request future at a time. If that future is dropped (timeout,
//! `select!`), the connection is dropped with it: monoio-rustls loses its internal buffer when a read is
//! cancelled, so a connection whose I/O was interrupted must never be used again.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{TlsConnector, TlsError};
use rustls::pki_types::ServerName;

use super::HttpError;
use super::url::Target;

/// Most bytes one body read copies: a read of many megabytes already waiting (copy and page faults) would hold
/// the reactor for milliseconds.
const BODY_READ_STEP: usize = 256 * 1024;

fn body_len_after_step(len: usize) -> usize {
    len.saturating_add(BODY_READ_STEP)
}

/// The TLS record content type of application data (RFC 8446 §5.1).
const TLS_APPLICATION_DATA: u8 = 23;

/// Read granularity: large enough for a typical CT response header plus a good part of its body.
const READ_CHUNK: usize = 16 * 1024;

enum Transport {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

/// An open connection plus the bytes read from it and not consumed yet.
pub(crate) struct Connection {
    transport: Transport,
    /// The TCP socket under the transport (also under TLS), for [`Connection::socket_state`].
    fd: RawFd,
    buf: Vec<u8>,
    pos: usize,
}

/// What sits on an idle connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketState {
    /// Nothing: the peer has sent nothing since the last response.
    Quiet,
    /// Bytes nobody asked for (under TLS, any record: a byte is a byte).
    Unsolicited,
    /// The peer closed, or the socket failed.
    Closed,
}

impl Connection {
    /// Connects to the first of `addrs` that accepts (each attempt bounded by `connect_timeout`), then does the
    /// TLS handshake when the target is `https`.
    pub(crate) async fn open(
        target: &Target,
        addrs: &[SocketAddr],
        connect_timeout: Duration,
        tls: &TlsConnector,
    ) -> Result<Self, HttpError> {
        let tcp = connect_any(&target.host, addrs, connect_timeout).await?;
        // Requests are written in one piece; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();
        let transport = if target.tls {
            let tls_error = |source| HttpError::Tls {
                host: target.host.clone(),
                source,
            };
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| tls_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| match e {
                TlsError::Io(e) => tls_error(e),
                TlsError::Rustls(e) => tls_error(io::Error::new(io::ErrorKind::InvalidData, e)),
            })?;
            Transport::Tls(Box::new(stream))
        } else {
            Transport::Plain(tcp)
        };
        Ok(Self {
            transport,
            fd,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        })
    }

    /// Writes the whole request.
    pub(crate) async fn write_all(&mut self, request: Vec<u8>) -> io::Result<()> {
        let (res, _) = match &mut self.transport {
            Transport::Plain(s) => s.write_all(request).await,
            Transport::Tls(s) => s.write_all(request).await,
        };
        res.map(|_| ())
    }

    /// Bytes received and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        // `consume` keeps `pos` within `buf`; `fill` resets both together (a `fill` cancelled while it holds the
        // buffer only happens when the exchange, which owns the connection, is dropped with it).
        &self.buf[self.pos..]
    }

    /// Marks `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        let buf = std::mem::take(&mut self.buf);
        let end = buf.capacity();
        let (res, buf) = self.read_into(buf, end).await;
        self.buf = buf;
        res
    }

    /// Moves buffered bytes into `body`, then reads from the socket straight into `body` until it holds `len`
    /// bytes; `Ok(false)` if the stream ended first. Skips the intermediate buffer for Content-Length bodies.
    pub(crate) async fn read_exact_into(
        &mut self,
        body: &mut Vec<u8>,
        len: usize,
    ) -> io::Result<bool> {
        let buffered = self.buffered();
        let take = buffered.len().min(len.saturating_sub(body.len()));
        body.extend_from_slice(&buffered[..take]);
        self.consume(take);
        body.reserve(len.saturating_sub(body.len()));
        while body.len() < len {
            let owned = std::mem::take(body);
            let end = len.min(body_len_after_step(owned.len()));
            let (res, filled) = self.read_into(owned, end).await;
            *body = filled;
            if res? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every received byte has been consumed (leftovers mean the peer sent more than one response).
    pub(crate) fn is_drained(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Looks at the socket without reading or waiting: whether anything arrived since the last response. Only
    /// bytes still in the kernel are seen; the caller checks [`Connection::is_drained`] for the buffered ones.
    pub(crate) fn socket_state(&self) -> SocketState {
        let mut probe = [0u8; 1];
        // SAFETY: `fd` is the socket owned by `self.transport`, open for as long as `self`; `probe` is a valid
        // one-byte buffer. MSG_PEEK leaves the byte for a later read, MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::recv(
                self.fd,
                probe.as_mut_ptr().cast(),
                probe.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => SocketState::Closed,
            // Under TLS the byte is a record's content type: only application data (23) is an answer nobody
            // asked for; an alert (a close_notify from a server timing the connection out) or a post-handshake
            // message is not, but the connection is not worth keeping either.
            _ if n > 0
                && matches!(self.transport, Transport::Tls(_))
                && probe[0] != TLS_APPLICATION_DATA =>
            {
                SocketState::Closed
            }
            n if n > 0 => SocketState::Unsolicited,
            _ => match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => SocketState::Quiet,
                _ => SocketState::Closed,
            },
        }
    }

    /// Appends one read to `buf`, never growing it past `end` (which must be within its capacity, and beyond
    /// its length): a body read must not swallow the bytes that follow it.
    async fn read_into(&mut self, buf: Vec<u8>, end: usize) -> (io::Result<usize>, Vec<u8>) {
        let start = buf.len();
        let spare = buf.slice_mut(start..end);
        let (res, spare) = match &mut self.transport {
            Transport::Plain(s) => s.read(spare).await,
            Transport::Tls(s) => s.read(spare).await,
        };
        (res, spare.into_inner())
    }
}

/// Tries every address in order; the error names how many were tried and the last failure.
async fn connect_any(
    host: &str,
    addrs: &[SocketAddr],
    per_address: Duration,
) -> Result<TcpStream, HttpError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses to try");
    for addr in addrs {
        match monoio::time::timeout(per_address, TcpStream::connect_addr(*addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr}: connect timed out"),
                )
            }
        }
        tracing::debug!(host, %addr, error = %last, "connect failed, trying the next address");
    }
    Err(HttpError::Connect {
        host: host.to_string(),
        tried: addrs.len(),
        source: last,
    })
}
