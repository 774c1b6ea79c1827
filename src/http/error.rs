//! The one error type of the HTTP client: every failure a CT poller must tell apart.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why an HTTP request failed. A response with a non-2xx status is *not* an error: the caller gets it as a
/// [`super::Response`] (a poller needs the 429 and its `Retry-After`).
#[derive(Debug)]
pub enum HttpError {
    /// The URL is not an absolute `http://` or `https://` URL this client can fetch.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A caller-supplied request header cannot be sent (CR/LF or a byte HTTP forbids).
    InvalidHeader {
        /// The header name as given.
        name: String,
    },
    /// The host name did not resolve to any address.
    Dns {
        /// The host that was looked up.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every resolved address refused or failed the TCP connection.
    Connect {
        /// The host being connected to.
        host: String,
        /// How many addresses were tried.
        tried: usize,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// The TLS handshake failed (unknown issuer, name mismatch, protocol alert, ...).
    Tls {
        /// The host of the handshake.
        host: String,
        /// The handshake error (wraps the `rustls::Error` when there is one).
        source: io::Error,
    },
    /// Reading or writing the established connection failed.
    Io(io::Error),
    /// The whole request (DNS, connect, TLS, request, full body) did not finish within its deadline.
    Timeout(Duration),
    /// The server's response is not valid HTTP/1.1 (bad status line, headers, chunk framing, early close).
    Protocol(String),
    /// The body (as received, or once decompressed) is larger than the configured cap.
    BodyTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The body claims gzip but does not decompress.
    Decompress(io::Error),
    /// The body uses a content encoding this client does not decode.
    UnsupportedEncoding(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            Self::InvalidHeader { name } => write!(f, "invalid request header {name:?}"),
            Self::Dns { host, source } => write!(f, "DNS lookup of {host} failed: {source}"),
            Self::Connect {
                host,
                tried,
                source,
            } => {
                write!(
                    f,
                    "cannot connect to {host} ({tried} address(es) tried): {source}"
                )
            }
            Self::Tls { host, source } => write!(f, "TLS handshake with {host} failed: {source}"),
            Self::Io(e) => write!(f, "connection error: {e}"),
            Self::Timeout(d) => write!(f, "request timed out after {} ms", d.as_millis()),
            Self::Protocol(msg) => write!(f, "malformed HTTP response: {msg}"),
            Self::BodyTooLarge { limit } => write!(f, "response body exceeds the {limit}-byte cap"),
            Self::Decompress(e) => write!(f, "gzip body does not decompress: {e}"),
            Self::UnsupportedEncoding(enc) => write!(f, "unsupported Content-Encoding {enc:?}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Dns { source, .. } | Self::Connect { source, .. } | Self::Tls { source, .. } => {
                Some(source)
            }
            Self::Io(e) | Self::Decompress(e) => Some(e),
            _ => None,
        }
    }
}
