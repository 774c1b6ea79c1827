//! The HTTP/1.1 side of a connection: reading a bounded request head, routing its path, building responses.

use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::Shared;
use super::guard::Reason;
use crate::message::StreamKind;

/// Largest request head accepted (request line and headers); a longer one gets `431`.
pub(crate) const MAX_REQUEST_HEAD_LEN: usize = 8 * 1024;

/// Most headers accepted in one request; more get `431`.
pub(crate) const MAX_REQUEST_HEADERS: usize = 64;

/// What the server serves at a path (docs/wire-format.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A stream (`/`, `/full-stream`, `/domains-only`): WebSocket on an upgrade, server-sent events or NDJSON when
    /// the `Accept` header asks for them; `/` with none of these is the live page.
    Stream(StreamKind),
    /// A stream as server-sent events (`<stream>/sse`: `/sse`, `/full-stream/sse`, `/domains-only/sse`).
    Sse(StreamKind),
    /// A stream as newline-delimited JSON (`<stream>/ndjson`).
    Ndjson(StreamKind),
    /// The latest message of a stream, pretty-printed.
    Example(StreamKind),
    /// `/latest.json`.
    Latest,
    /// `/stats`.
    Stats,
    /// `/metrics`.
    Metrics,
    /// `/health`.
    Health,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Routes a request target: the query string is ignored, one trailing `/` is accepted, matching is
    /// case-sensitive.
    pub fn of(target: &str) -> Self {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        match path {
            "/" => Self::Stream(StreamKind::Lite),
            "/full-stream" => Self::Stream(StreamKind::Full),
            "/domains-only" => Self::Stream(StreamKind::DomainsOnly),
            "/sse" => Self::Sse(StreamKind::Lite),
            "/full-stream/sse" => Self::Sse(StreamKind::Full),
            "/domains-only/sse" => Self::Sse(StreamKind::DomainsOnly),
            "/ndjson" => Self::Ndjson(StreamKind::Lite),
            "/full-stream/ndjson" => Self::Ndjson(StreamKind::Full),
            "/domains-only/ndjson" => Self::Ndjson(StreamKind::DomainsOnly),
            "/example.json" => Self::Example(StreamKind::Lite),
            "/full-stream/example.json" => Self::Example(StreamKind::Full),
            "/domains-only/example.json" => Self::Example(StreamKind::DomainsOnly),
            "/latest.json" => Self::Latest,
            "/stats" => Self::Stats,
            "/metrics" => Self::Metrics,
            "/health" => Self::Health,
            _ => Self::NotFound,
        }
    }
}

impl Route {
    /// Whether a request to this route needs an access token when tokens are on (`--auth-tokens`): the streams
    /// and the latest messages always, `/stats` and `/metrics` with `protect_metrics` (`--auth-metrics`),
    /// `/health` never. `streaming`: the request asks for a stream (a WebSocket upgrade, or any other stream
    /// framing); a stream path that serves no stream (the live page at `/`, or a `426`) stays open.
    pub fn needs_token(self, streaming: bool, protect_metrics: bool) -> bool {
        match self {
            Self::Stream(_) => streaming,
            Self::Sse(_) | Self::Ndjson(_) | Self::Example(_) | Self::Latest => true,
            Self::Stats | Self::Metrics => protect_metrics,
            Self::Health | Self::NotFound => false,
        }
    }
}

/// Why no request head could be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RequestHeadError {
    /// The peer closed or the socket failed before a complete head: nothing to answer.
    Gone,
    /// The head is not HTTP/1.x.
    Malformed,
    /// The head is longer than [`MAX_REQUEST_HEAD_LEN`] or has more than [`MAX_REQUEST_HEADERS`] headers.
    TooLarge,
    /// The head did not arrive within the deadline.
    Timeout,
}

impl RequestHeadError {
    /// The response to send before closing, if any.
    pub(crate) fn response(&self) -> Option<Vec<u8>> {
        match self {
            Self::Gone => None,
            Self::Malformed => Some(response(400, "text/plain", b"bad request\n")),
            Self::TooLarge => Some(response(
                431,
                "text/plain",
                b"request header fields too large\n",
            )),
            Self::Timeout => Some(response(408, "text/plain", b"request timeout\n")),
        }
    }
}

/// Reads until a complete request head is buffered. Returns the buffer (which may hold bytes after the head: the
/// first WebSocket frames) and the head's length.
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    deadline: Duration,
) -> Result<(Vec<u8>, usize), RequestHeadError> {
    match monoio::time::timeout(deadline, read_head_unbounded(stream)).await {
        Ok(result) => result,
        Err(_) => Err(RequestHeadError::Timeout),
    }
}

async fn read_head_unbounded(stream: &mut TcpStream) -> Result<(Vec<u8>, usize), RequestHeadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_REQUEST_HEAD_LEN {
                return Err(RequestHeadError::TooLarge);
            }
            buf.reserve_exact(MAX_REQUEST_HEAD_LEN - buf.len());
        }
        // Append after what is already buffered (a plain `Vec` would be overwritten from its start).
        let start = buf.len();
        let (result, slice) = stream.read(buf.slice_mut(start..)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) | Err(_) => return Err(RequestHeadError::Gone),
            Ok(_) => {}
        }
        if let Some(len) = head_len(&buf)? {
            return Ok((buf, len));
        }
    }
}

/// The head's length once `buf` holds a complete one.
fn head_len(buf: &[u8]) -> Result<Option<usize>, RequestHeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(RequestHeadError::TooLarge),
        Err(_) => Err(RequestHeadError::Malformed),
    }
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    }
}

/// A complete response with a body; the connection is closed after it (one request per connection).
pub(crate) fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    response_with(status, content_type, "", body)
}

/// As [`response`], with extra header lines (each ending in `\r\n`).
pub(crate) fn response_with(
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n{extra_headers}\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Writes a response within `--http-write-timeout` (a client that does not read cannot pin the response's memory;
/// counted when it bites), then closes politely: our side is shut down and what the client still sends is read and
/// discarded (bounded), so the kernel does not answer it with a reset that could destroy the response in flight.
pub(crate) async fn respond_and_close(
    mut stream: TcpStream,
    response: bytes::Bytes,
    shared: &Shared,
) {
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 4 << 20;
    let deadline = shared.config.http_write_timeout;
    match monoio::time::timeout(deadline, stream.write_all(response)).await {
        Ok((Ok(_), _)) => {}
        Ok((Err(_), _)) => return,
        Err(_) => {
            shared.rules.guard.count(Reason::HttpWriteTimeout);
            reset_on_close(&stream);
            return;
        }
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut total = 0;
        while total < LINGER_BYTES {
            buf.clear();
            let (result, returned) = stream.read(buf).await;
            buf = returned;
            match result {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = monoio::time::timeout(LINGER, drain).await;
}

/// Makes closing the socket send a reset: the unsent rest of an abandoned response is discarded by the kernel
/// instead of being kept (and trickled to a client that does not read) after the connection is gone.
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a pointer to a live `linger`.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_accept_trailing_slash_and_query_and_are_case_sensitive() {
        assert_eq!(Route::of("/"), Route::Stream(StreamKind::Lite));
        assert_eq!(Route::of("/?x=1"), Route::Stream(StreamKind::Lite));
        assert_eq!(Route::of("/full-stream/"), Route::Stream(StreamKind::Full));
        assert_eq!(
            Route::of("/domains-only?a"),
            Route::Stream(StreamKind::DomainsOnly)
        );
        assert_eq!(
            Route::of("/full-stream/example.json"),
            Route::Example(StreamKind::Full)
        );
        assert_eq!(
            Route::of("/example.json/?q"),
            Route::Example(StreamKind::Lite)
        );
        assert_eq!(
            Route::of("/sse?last_event_id=1"),
            Route::Sse(StreamKind::Lite)
        );
        assert_eq!(Route::of("/full-stream/sse/"), Route::Sse(StreamKind::Full));
        assert_eq!(
            Route::of("/domains-only/ndjson"),
            Route::Ndjson(StreamKind::DomainsOnly)
        );
        assert_eq!(Route::of("/ndjson"), Route::Ndjson(StreamKind::Lite));
        assert_eq!(Route::of("/latest.json"), Route::Latest);
        assert_eq!(Route::of("/stats/"), Route::Stats);
        assert_eq!(Route::of("/health?verbose"), Route::Health);
        for other in [
            "/Full-Stream",
            "/full-stream//",
            "/x",
            "",
            "*",
            "/metrics.txt",
            "/SSE",
            "/sse/x",
            "/example.json/sse",
        ] {
            assert_eq!(Route::of(other), Route::NotFound, "{other}");
        }
    }

    #[test]
    fn head_length_limits() {
        assert_eq!(
            head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nxyz"),
            Ok(Some(27))
        );
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(
            head_len(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(RequestHeadError::Malformed)
        );
        let many: String = (0..MAX_REQUEST_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        let request = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            head_len(request.as_bytes()),
            Err(RequestHeadError::TooLarge)
        );
    }

    #[test]
    fn responses_carry_length_and_close() {
        let text = String::from_utf8(response(404, "text/plain", b"nope")).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 4\r\n") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nnope"));
    }
}
