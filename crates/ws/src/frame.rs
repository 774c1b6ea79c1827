//! Server → client frame encoding. Server frames are never masked (RFC 6455 §5.1), so a frame is encoded once
//! and the same bytes are written to every client.

use bytes::{BufMut, Bytes, BytesMut};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// A later fragment of a message.
    Continuation = 0x0,
    /// A UTF-8 text message (or its first fragment).
    Text = 0x1,
    /// A binary message (or its first fragment).
    Binary = 0x2,
    /// The closing handshake.
    Close = 0x8,
    /// A liveness probe; the peer answers with a pong.
    Ping = 0x9,
    /// The answer to a ping (or an unsolicited heartbeat).
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a 4-bit wire value, `None` for the reserved values.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Control frames (close, ping, pong) have the high opcode bit set.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Length of the header of an unmasked frame carrying `payload_len` bytes (minimal length encoding).
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends the header of a final (FIN=1), unmasked frame to `out`.
pub fn put_header(out: &mut impl BufMut, opcode: OpCode, payload_len: usize) {
    out.put_u8(0x80 | opcode as u8);
    match payload_len {
        0..=125 => out.put_u8(payload_len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(payload_len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(payload_len as u64);
        }
    }
}

/// A complete encoded server frame (header and payload in one shared buffer), cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    wire: Bytes,
    header_len: usize,
}

impl Frame {
    /// Encodes one final frame.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Self {
        let header_len = header_len(payload.len());
        let mut buf = BytesMut::with_capacity(header_len + payload.len());
        put_header(&mut buf, opcode, payload.len());
        buf.extend_from_slice(payload);
        Self {
            wire: buf.freeze(),
            header_len,
        }
    }

    /// A text frame. `payload` must be UTF-8 (the callers serialize JSON).
    pub fn text(payload: &[u8]) -> Self {
        Self::new(OpCode::Text, payload)
    }

    /// A text frame whose payload is the concatenation of `parts`, built in one allocation.
    pub fn text_from_parts(parts: &[&[u8]]) -> Self {
        let payload_len = parts.iter().map(|part| part.len()).sum();
        let header_len = header_len(payload_len);
        let mut buf = BytesMut::with_capacity(header_len + payload_len);
        put_header(&mut buf, OpCode::Text, payload_len);
        for part in parts {
            buf.extend_from_slice(part);
        }
        Self {
            wire: buf.freeze(),
            header_len,
        }
    }

    /// A close frame with a status code and a reason (truncated so the payload stays within 125 bytes).
    pub fn close(code: u16, reason: &str) -> Self {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = Vec::with_capacity(2 + cut);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        Self::new(OpCode::Close, &payload)
    }

    /// A ping frame. `payload` must be at most 125 bytes (control frame limit).
    pub fn ping(payload: &[u8]) -> Self {
        Self::new(OpCode::Ping, payload)
    }

    /// A pong frame answering a ping with the same (at most 125-byte) payload.
    pub fn pong(payload: &[u8]) -> Self {
        Self::new(OpCode::Pong, payload)
    }

    /// The bytes to write to the socket.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The payload alone (for example the JSON of a text frame).
    pub fn payload(&self) -> &[u8] {
        &self.wire[self.header_len..]
    }

    /// The frame's opcode (a server that carries frames over another framing, such as server-sent events, tells
    /// messages from control frames by it).
    pub fn opcode(&self) -> OpCode {
        // Every constructor writes a valid opcode in the first byte's low bits.
        OpCode::from_u8(self.wire[0] & 0x0F).unwrap_or(OpCode::Continuation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_minimal_encoding() {
        for (len, expect_header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let payload = vec![b'a'; len];
            let frame = Frame::text(&payload);
            assert_eq!(frame.wire().len(), expect_header + len, "len {len}");
            assert_eq!(frame.payload(), &payload[..]);
            assert_eq!(frame.wire()[0], 0x81);
        }
        assert_eq!(&Frame::text(&[b'x'; 126]).wire()[..4], &[0x81, 126, 0, 126]);
        assert_eq!(
            &Frame::text(&[b'x'; 65536]).wire()[..10],
            &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn parts_make_the_same_frame_as_one_payload() {
        let parts: [&[u8]; 3] = [b"{\"a\":", &[b'1'; 200], b"}"];
        assert_eq!(Frame::text_from_parts(&parts), Frame::text(&parts.concat()));
    }

    #[test]
    fn a_frame_tells_its_opcode() {
        assert_eq!(Frame::text(b"{}").opcode(), OpCode::Text);
        assert_eq!(Frame::ping(b"").opcode(), OpCode::Ping);
        assert_eq!(Frame::pong(b"x").opcode(), OpCode::Pong);
        assert_eq!(Frame::close(1001, "bye").opcode(), OpCode::Close);
    }

    #[test]
    fn close_frame_carries_code_and_bounded_reason() {
        let frame = Frame::close(1001, "going away");
        assert_eq!(&frame.wire()[..4], &[0x88, 12, 0x03, 0xE9]);
        let long = "é".repeat(100);
        let frame = Frame::close(1000, &long);
        assert!(frame.payload().len() <= 125);
        assert!(std::str::from_utf8(&frame.payload()[2..]).is_ok());
    }
}
