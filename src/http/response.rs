//! What a request yields: status, the headers a poller needs, and the (decoded) body.

use bytes::Bytes;

/// A complete HTTP response; the body is fully read and already gzip-decoded.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (any code: a 429 or 404 is a response, not an error).
    pub status: u16,
    /// Header names lowercased, values as received (non-UTF-8 bytes replaced), in order.
    pub headers: Vec<(String, String)>,
    /// The body, after undoing `Content-Encoding: gzip`.
    pub body: Bytes,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw `Retry-After` value (delay-seconds or an HTTP-date: the poller decides).
    pub fn retry_after(&self) -> Option<&str> {
        self.header("retry-after")
    }
}
