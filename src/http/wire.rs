//! HTTP/1.1 response framing read from a [`Connection`]: status line and headers, then a body delimited by
//! Content-Length, chunked transfer coding, or the end of the connection.

use std::io::{self, Read};

use super::HttpError;
use super::connection::Connection;

/// Largest response head accepted (status line plus headers).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most headers accepted in one response.
const MAX_RESPONSE_HEADERS: usize = 96;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed response head and what it implies for the body and the connection.
pub(crate) struct Head {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    framing: Framing,
    gzip: bool,
    /// Whether the connection may carry another request once this body is read.
    pub keep_alive: bool,
}

/// Why reading a head failed; `Closed` (no response byte at all) makes a reused connection stale, not broken.
pub(crate) enum ResponseHeadError {
    /// The peer closed or reset the connection before sending any byte of a response.
    Closed(io::Error),
    /// Anything else.
    Failed(HttpError),
}

impl From<HttpError> for ResponseHeadError {
    fn from(e: HttpError) -> Self {
        Self::Failed(e)
    }
}

/// Reads the response head (skipping 1xx interim responses) and decides the body framing.
pub(crate) async fn read_head(
    conn: &mut Connection,
    max_body: usize,
) -> Result<Head, ResponseHeadError> {
    let mut received_any = false;
    loop {
        if let Some(head) = parse_head(conn, max_body)? {
            return Ok(head);
        }
        if conn.buffered().len() > MAX_RESPONSE_HEAD {
            return Err(HttpError::Protocol(format!(
                "response head larger than {MAX_RESPONSE_HEAD} bytes"
            ))
            .into());
        }
        let closed = |e: io::Error| {
            if received_any {
                ResponseHeadError::Failed(HttpError::Io(e))
            } else {
                ResponseHeadError::Closed(e)
            }
        };
        match conn.fill().await {
            Ok(0) if received_any => {
                return Err(HttpError::Protocol(
                    "connection closed inside the response head".into(),
                )
                .into());
            }
            Ok(0) => {
                return Err(closed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                )));
            }
            Ok(_) => received_any = true,
            Err(e) => return Err(closed(e)),
        }
    }
}

/// Parses a complete head from the buffer and consumes it; `None` if more bytes are needed.
fn parse_head(conn: &mut Connection, max_body: usize) -> Result<Option<Head>, HttpError> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let len = match parsed.parse(conn.buffered()) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(HttpError::Protocol(format!(
                    "bad status line or header: {e}"
                )));
            }
        };
        let status = parsed.code.unwrap_or(0);
        let version = parsed.version.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        conn.consume(len);
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(HttpError::Protocol(
                    "unexpected 101 Switching Protocols".into(),
                ));
            }
            continue; // interim response (100 Continue, 103 Early Hints): the real one follows
        }
        return head_from(status, version, headers, max_body).map(Some);
    }
}

fn head_from(
    status: u16,
    version: u8,
    headers: Vec<(String, String)>,
    max_body: usize,
) -> Result<Head, HttpError> {
    let values = |name: &'static str| header_values(&headers, name);
    let has_token = |name: &'static str, token: &str| {
        values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };

    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else if values("transfer-encoding").next().is_some() {
        let codings: Vec<&str> = values("transfer-encoding")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let only_chunked = codings
            .iter()
            .all(|c| c.eq_ignore_ascii_case("chunked") || c.eq_ignore_ascii_case("identity"));
        if !only_chunked || !codings.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
            return Err(HttpError::UnsupportedEncoding(format!(
                "Transfer-Encoding: {}",
                codings.join(", ")
            )));
        }
        Framing::Chunked
    } else if let Some(first) = values("content-length").next() {
        if values("content-length").any(|v| v != first) {
            return Err(HttpError::Protocol(
                "conflicting Content-Length headers".into(),
            ));
        }
        let len: u64 = first
            .parse()
            .map_err(|_| HttpError::Protocol(format!("bad Content-Length {first:?}")))?;
        match usize::try_from(len) {
            Ok(len) if len <= max_body => Framing::Length(len),
            _ => return Err(HttpError::BodyTooLarge { limit: max_body }),
        }
    } else {
        Framing::UntilClose
    };

    let gzip = match values("content-encoding").next() {
        None => false,
        Some(enc) if enc.is_empty() || enc.eq_ignore_ascii_case("identity") => false,
        Some(enc) if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") => true,
        Some(enc) => return Err(HttpError::UnsupportedEncoding(enc.to_string())),
    };

    let keep_alive =
        version == 1 && framing != Framing::UntilClose && !has_token("connection", "close");
    Ok(Head {
        status,
        headers,
        framing,
        gzip,
        keep_alive,
    })
}

fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the body `head` announces, then undoes gzip. Both the received and the decoded size are capped.
pub(crate) async fn read_body(
    conn: &mut Connection,
    head: &Head,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    match head.framing {
        Framing::Empty => {}
        Framing::Length(len) => {
            if !conn
                .read_exact_into(&mut body, len)
                .await
                .map_err(HttpError::Io)?
            {
                let got = body.len();
                return Err(HttpError::Protocol(format!(
                    "connection closed after {got} of {len} body bytes"
                )));
            }
        }
        Framing::Chunked => read_chunked(conn, &mut body, max_body).await?,
        Framing::UntilClose => read_until_close(conn, &mut body, max_body).await?,
    }
    if head.gzip && !body.is_empty() {
        gunzip(&body, max_body)
    } else {
        Ok(body)
    }
}

async fn read_chunked(
    conn: &mut Connection,
    body: &mut Vec<u8>,
    max_body: usize,
) -> Result<(), HttpError> {
    loop {
        let size = loop {
            match httparse::parse_chunk_size(conn.buffered()) {
                Ok(httparse::Status::Complete((used, size))) => {
                    conn.consume(used);
                    break size;
                }
                Ok(httparse::Status::Partial) => fill_or_truncated(conn, "a chunk size").await?,
                Err(_) => return Err(HttpError::Protocol("bad chunk size line".into())),
            }
        };
        if size == 0 {
            return skip_trailers(conn).await;
        }
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(body.len()))
            .filter(|&e| e <= max_body);
        let end = end.ok_or(HttpError::BodyTooLarge { limit: max_body })?;
        if !conn
            .read_exact_into(body, end)
            .await
            .map_err(HttpError::Io)?
        {
            return Err(HttpError::Protocol(
                "connection closed inside a chunk".into(),
            ));
        }
        while conn.buffered().len() < 2 {
            fill_or_truncated(conn, "a chunk").await?;
        }
        if conn.buffered().get(..2) != Some(b"\r\n") {
            return Err(HttpError::Protocol(
                "chunk data not followed by CRLF".into(),
            ));
        }
        conn.consume(2);
    }
}

/// Skips trailer fields up to and including the empty line that ends a chunked body.
async fn skip_trailers(conn: &mut Connection) -> Result<(), HttpError> {
    let mut trailer_bytes = 0usize;
    loop {
        match conn.buffered().windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                conn.consume(2);
                return Ok(());
            }
            Some(line) => {
                trailer_bytes += line + 2;
                conn.consume(line + 2);
            }
            None => fill_or_truncated(conn, "the trailers").await?,
        }
        if trailer_bytes > MAX_RESPONSE_HEAD {
            return Err(HttpError::Protocol("trailers too large".into()));
        }
    }
}

async fn read_until_close(
    conn: &mut Connection,
    body: &mut Vec<u8>,
    max_body: usize,
) -> Result<(), HttpError> {
    loop {
        body.extend_from_slice(conn.buffered());
        let n = conn.buffered().len();
        conn.consume(n);
        if body.len() > max_body {
            return Err(HttpError::BodyTooLarge { limit: max_body });
        }
        match conn.fill().await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // A TLS peer that closes without close_notify: the body's end is the close itself in this framing.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(HttpError::Io(e)),
        }
    }
}

async fn fill_or_truncated(conn: &mut Connection, inside: &str) -> Result<(), HttpError> {
    match conn.fill().await.map_err(HttpError::Io)? {
        0 => Err(HttpError::Protocol(format!(
            "connection closed inside {inside}"
        ))),
        _ => Ok(()),
    }
}

/// Decodes a (possibly multi-member) gzip body, refusing output larger than `max_body`.
fn gunzip(data: &[u8], max_body: usize) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max_body));
    let limit = u64::try_from(max_body)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(HttpError::Decompress)?;
    if out.len() > max_body {
        return Err(HttpError::BodyTooLarge { limit: max_body });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let head = head_from(200, 1, h(&[("content-length", "5")]), 10)
            .ok()
            .unwrap();
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(5), true));
        let head = head_from(
            200,
            1,
            h(&[("transfer-encoding", "chunked"), ("content-length", "5")]),
            10,
        )
        .ok()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let head = head_from(200, 1, h(&[]), 10).ok().unwrap();
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );
        let head = head_from(200, 0, h(&[("content-length", "5")]), 10)
            .ok()
            .unwrap();
        assert!(!head.keep_alive, "HTTP/1.0 is not reused");
        let head = head_from(
            200,
            1,
            h(&[("content-length", "5"), ("connection", "Keep-Alive, Close")]),
            10,
        )
        .ok()
        .unwrap();
        assert!(!head.keep_alive);
        let head = head_from(304, 1, h(&[("content-length", "5")]), 10)
            .ok()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn bad_heads_are_typed_errors() {
        let err = |pairs: &[(&str, &str)]| head_from(200, 1, h(pairs), 10).err().unwrap();
        assert!(matches!(
            err(&[("content-length", "11")]),
            HttpError::BodyTooLarge { limit: 10 }
        ));
        assert!(matches!(
            err(&[("content-length", "-1")]),
            HttpError::Protocol(_)
        ));
        assert!(matches!(
            err(&[("content-length", "1"), ("content-length", "2")]),
            HttpError::Protocol(_)
        ));
        assert!(matches!(
            err(&[("transfer-encoding", "gzip, chunked")]),
            HttpError::UnsupportedEncoding(_)
        ));
        assert!(matches!(
            err(&[("content-encoding", "br")]),
            HttpError::UnsupportedEncoding(_)
        ));
    }

    #[test]
    fn gunzip_caps_output() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 1000).ok().unwrap(), vec![b'a'; 1000]);
        assert!(matches!(
            gunzip(&gz, 999),
            Err(HttpError::BodyTooLarge { limit: 999 })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 1000),
            Err(HttpError::Decompress(_))
        ));
    }
}
