//! The server side of the opening handshake (RFC 6455 §4.2): validates an upgrade request and builds the
//! `101 Switching Protocols` response. No extension or subprotocol is ever accepted, so none is echoed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks.
const SUPPORTED_VERSION: &[u8] = b"13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key ‖ GUID)).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(sec_websocket_key);
    hasher.update(WEBSOCKET_GUID);
    STANDARD.encode(hasher.finalize())
}

/// An accepted upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value for the response.
    pub accept: String,
}

/// Why an upgrade request was refused, with the HTTP response that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    status: u16,
    reason: &'static str,
}

impl HandshakeError {
    fn bad_request(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }

    /// The HTTP status: 400, or 426 for a protocol version other than 13.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The complete HTTP response (head and a one-line text body); the connection is closed after it. A 426
    /// response carries `Sec-WebSocket-Version: 13` so the client can retry with that version.
    pub fn response(&self) -> Vec<u8> {
        let (status_line, extra) = match self.status {
            426 => (
                "426 Upgrade Required",
                "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n",
            ),
            _ => ("400 Bad Request", "Connection: close\r\n"),
        };
        format!(
            "HTTP/1.1 {status_line}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{}\n",
            self.reason.len() + 1,
            self.reason
        )
        .into_bytes()
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "websocket handshake refused ({}): {}",
            self.status, self.reason
        )
    }
}

impl std::error::Error for HandshakeError {}

/// The values of every header called `name` (case-insensitive), trimmed.
fn header_values<'a>(
    headers: &'a [httparse::Header<'_>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// The single value of header `name`; `None` when it is absent or repeated.
fn single_header<'a>(headers: &'a [httparse::Header<'_>], name: &'a str) -> Option<&'a [u8]> {
    let mut values = header_values(headers, name);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// True when some header `name` holds `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    header_values(headers, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// True when the request asks for a WebSocket upgrade at all (`Upgrade: websocket` present), so routing can decide.
pub fn wants_upgrade(headers: &[httparse::Header<'_>]) -> bool {
    has_token(headers, "upgrade", "websocket")
}

/// Validates an upgrade request given its method, HTTP minor version (`httparse::Request::version`, 1 for
/// HTTP/1.1) and headers. Any violation is a 400, except a `Sec-WebSocket-Version` other than 13, which is a 426.
pub fn check_upgrade(
    method: &str,
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<Upgrade, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::bad_request(
            "websocket upgrade requires GET",
        ));
    }
    if version < 1 {
        return Err(HandshakeError::bad_request(
            "websocket upgrade requires HTTP/1.1",
        ));
    }
    if single_header(headers, "host").is_none() {
        return Err(HandshakeError::bad_request(
            "missing or repeated Host header",
        ));
    }
    if !wants_upgrade(headers) {
        return Err(HandshakeError::bad_request("missing Upgrade: websocket"));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::bad_request("missing Connection: Upgrade"));
    }
    match single_header(headers, "sec-websocket-version") {
        None => {
            return Err(HandshakeError::bad_request(
                "missing or repeated Sec-WebSocket-Version",
            ));
        }
        Some(SUPPORTED_VERSION) => {}
        Some(_) => {
            return Err(HandshakeError {
                status: 426,
                reason: "only websocket version 13 is supported",
            });
        }
    }
    let key = single_header(headers, "sec-websocket-key").ok_or(HandshakeError::bad_request(
        "missing or repeated Sec-WebSocket-Key",
    ))?;
    match STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => Ok(Upgrade {
            accept: accept_key(key),
        }),
        _ => Err(HandshakeError::bad_request(
            "Sec-WebSocket-Key is not 16 base64-encoded bytes",
        )),
    }
}

/// The `101 Switching Protocols` response (no `Sec-WebSocket-Extensions`, no subprotocol).
pub fn switching_protocols(upgrade: &Upgrade) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        upgrade.accept
    )
    .into_bytes()
}
