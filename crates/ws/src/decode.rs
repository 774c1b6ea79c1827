//! Sans-I/O decoder for client → server frames (RFC 6455 §5). The caller appends the bytes it read with
//! [`Decoder::extend`] and pulls [`Event`]s with [`Decoder::next_event`].
//!
//! Data-frame payloads are unmasked straight into the message being assembled as soon as their bytes arrive, so a
//! frame is never buffered twice, an oversized message is refused from its header alone (close 1009), and invalid
//! UTF-8 in a text message is reported at the first bad byte received (close 1007), not at the end of the message.

use std::fmt;

use super::frame::OpCode;

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: a text message (or close reason) that is not valid UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code: a message larger than the decoder accepts.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Input buffer capacity kept between frames; a larger one is freed once drained.
const SPARE_INPUT: usize = 4096;

/// Longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One complete thing received from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text message; the bytes are validated UTF-8.
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong (unsolicited ones are allowed and may be ignored).
    Pong(Vec<u8>),
    /// A close frame, already validated. After it the decoder yields nothing more.
    Close(Option<CloseFrame>),
}

/// The payload of a close frame that carried a status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (already checked to be one a peer may send).
    pub code: u16,
    /// The reason, possibly empty.
    pub reason: String,
}

/// What was wrong with the client's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A client frame without the mask bit.
    Unmasked,
    /// RSV1-3 set although no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 reserves (3-7, B-F).
    ReservedOpcode(u8),
    /// A control frame with FIN=0.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A continuation frame while no fragmented message is in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still in progress.
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set.
    LengthMsbSet,
    /// The message would exceed the decoder's limit.
    MessageTooBig,
    /// A text message that is not valid UTF-8.
    InvalidUtf8,
    /// A close frame whose payload is a single byte.
    CloseTooShort,
    /// A close frame with a status code a peer may not send.
    InvalidCloseCode(u16),
    /// A close frame whose reason is not valid UTF-8.
    InvalidCloseReason,
}

/// A protocol violation: the connection must be failed with [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    kind: ErrorKind,
}

impl ProtocolError {
    fn new(kind: ErrorKind) -> Self {
        Self { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The close code to fail the connection with: 1002, 1007 or 1009.
    pub fn close_code(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidUtf8 | ErrorKind::InvalidCloseReason => CLOSE_INVALID_PAYLOAD,
            ErrorKind::MessageTooBig => CLOSE_MESSAGE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Unmasked => f.write_str("client frame not masked"),
            ErrorKind::ReservedBits => f.write_str("reserved bits set"),
            ErrorKind::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ErrorKind::FragmentedControl => f.write_str("fragmented control frame"),
            ErrorKind::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            ErrorKind::UnexpectedContinuation => {
                f.write_str("continuation frame without a message")
            }
            ErrorKind::ExpectedContinuation => {
                f.write_str("new message inside a fragmented message")
            }
            ErrorKind::LengthMsbSet => {
                f.write_str("64-bit length with the most significant bit set")
            }
            ErrorKind::MessageTooBig => f.write_str("message too big"),
            ErrorKind::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            ErrorKind::CloseTooShort => f.write_str("close payload of one byte"),
            ErrorKind::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ErrorKind::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// True for the close codes a peer may put on the wire: 1000-1003, 1007-1011 and the application range
/// 3000-4999 (1004-1006 and 1015 are reserved, the rest of 1000-2999 is unassigned for this server).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The frame whose header has been read and whose payload is still (partly) to come.
#[derive(Clone, Copy, Debug)]
struct FrameState {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes not yet received.
    remaining: u64,
    /// Payload bytes already received, modulo 4 (the masking key position).
    phase: usize,
}

/// The kind of the data message being assembled.
#[derive(Clone, Copy, Debug)]
enum MessageKind {
    /// Text, with the length of the payload prefix that is known to be valid UTF-8 (a sequence cut by a fragment
    /// or read boundary stays unvalidated until its remaining bytes arrive).
    Text {
        validated: usize,
    },
    Binary,
}

/// Incremental decoder of client frames. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    max_message_len: usize,
    input: Vec<u8>,
    /// Bytes of `input` already consumed (never more than `input.len()`).
    pos: usize,
    frame: Option<FrameState>,
    message: Option<MessageKind>,
    /// Unmasked payload of the data message in progress.
    payload: Vec<u8>,
    /// Unmasked payload of the control frame in progress.
    control: Vec<u8>,
    /// Set once a close frame was decoded: nothing after it is read.
    closed: bool,
    /// Set on the first error, which every later call repeats.
    failed: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder that accepts messages of up to `max_message_len` payload bytes (longer ones fail with 1009).
    pub fn new(max_message_len: usize) -> Self {
        Self {
            max_message_len,
            input: Vec::new(),
            pos: 0,
            frame: None,
            message: None,
            payload: Vec::new(),
            control: Vec::new(),
            closed: false,
            failed: None,
        }
    }

    /// Appends received bytes. Bytes after a close frame or an error are dropped.
    pub fn extend(&mut self, data: &[u8]) {
        if !self.closed && self.failed.is_none() {
            self.input.extend_from_slice(data);
        }
    }

    /// The next complete event, `Ok(None)` when more bytes are needed (or after a close). After an `Err` the
    /// connection must be failed with the error's close code and the decoder not used again (it repeats the error).
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.closed {
            return Ok(None);
        }
        let result = self.decode();
        match &result {
            Err(error) => {
                self.failed = Some(error.clone());
                self.release_input();
            }
            Ok(Some(Event::Close(_))) => self.release_input(),
            // Everything available was consumed except at most an incomplete frame header: move it to the front.
            Ok(None) => {
                self.input.drain(..self.pos);
                self.pos = 0;
                // A large read (a big message) must not stay allocated for the connection's lifetime.
                if self.input.is_empty() && self.input.capacity() > SPARE_INPUT {
                    self.input = Vec::new();
                }
            }
            // The caller keeps draining events, so compacting waits for the Ok(None) that ends the batch.
            Ok(Some(_)) => {}
        }
        result
    }

    /// Whether a frame or message has started and is not complete (including a partial frame header).
    pub fn in_progress(&self) -> bool {
        self.frame.is_some() || self.message.is_some() || self.pos < self.input.len()
    }

    /// Bytes held for an unfinished frame or message (buffer capacities: what it costs in memory); 0 between
    /// messages (the small input buffer kept then is part of every connection's fixed cost).
    pub fn buffered_bytes(&self) -> usize {
        if !self.in_progress() {
            return 0;
        }
        self.input.capacity() + self.payload.capacity() + self.control.capacity()
    }

    /// Frees every buffer and ignores all further input (the connection is being failed).
    pub fn release(&mut self) {
        self.closed = true;
        self.frame = None;
        self.message = None;
        self.payload = Vec::new();
        self.control = Vec::new();
        self.release_input();
    }

    /// Frees the input buffer once nothing more will be decoded.
    fn release_input(&mut self) {
        self.input = Vec::new();
        self.pos = 0;
    }

    fn decode(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => match self.read_header()? {
                    Some(frame) => frame,
                    None => return Ok(None),
                },
            };
            self.take_payload(&mut frame)?;
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok(None);
            }
            self.frame = None;
            if frame.opcode.is_control() {
                return self.control_event(frame.opcode).map(Some);
            }
            if frame.fin {
                return self.finish_message().map(Some);
            }
        }
    }

    /// Parses the next frame header if it is complete, checking everything that can be checked from it.
    fn read_header(&mut self) -> Result<Option<FrameState>, ProtocolError> {
        let buf = &self.input[self.pos..];
        let &[b0, b1, ref after_first_two @ ..] = buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::new(ErrorKind::ReservedBits));
        }
        let opcode = OpCode::from_u8(b0 & 0x0F)
            .ok_or(ProtocolError::new(ErrorKind::ReservedOpcode(b0 & 0x0F)))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::new(ErrorKind::Unmasked));
        }
        if opcode.is_control() && !fin {
            return Err(ProtocolError::new(ErrorKind::FragmentedControl));
        }
        let (len, rest) = match (b1 & 0x7F, after_first_two) {
            (126, [a, b, rest @ ..]) => (u64::from(u16::from_be_bytes([*a, *b])), rest),
            (127, [a, b, c, d, e, f, g, h, rest @ ..]) => {
                (u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]), rest)
            }
            (126 | 127, _) => return Ok(None),
            (len, rest) => (u64::from(len), rest),
        };
        if len >> 63 != 0 {
            return Err(ProtocolError::new(ErrorKind::LengthMsbSet));
        }
        if opcode.is_control() {
            if len > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::new(ErrorKind::ControlTooLong));
            }
        } else {
            self.check_data_frame(opcode, len)?;
        }
        let [m0, m1, m2, m3, ..] = *rest else {
            return Ok(None);
        };
        self.pos = self.input.len() - (rest.len() - 4);
        if !opcode.is_control() && opcode != OpCode::Continuation {
            self.message = Some(match opcode {
                OpCode::Text => MessageKind::Text { validated: 0 },
                _ => MessageKind::Binary,
            });
        }
        Ok(Some(FrameState {
            opcode,
            fin,
            mask: [m0, m1, m2, m3],
            remaining: len,
            phase: 0,
        }))
    }

    /// Checks that a data frame fits the message sequence and the size limit.
    fn check_data_frame(&self, opcode: OpCode, len: u64) -> Result<(), ProtocolError> {
        match (opcode, self.message.is_some()) {
            (OpCode::Continuation, false) => {
                return Err(ProtocolError::new(ErrorKind::UnexpectedContinuation));
            }
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(ProtocolError::new(ErrorKind::ExpectedContinuation));
            }
            _ => {}
        }
        if (self.payload.len() as u64).saturating_add(len) > self.max_message_len as u64 {
            return Err(ProtocolError::new(ErrorKind::MessageTooBig));
        }
        Ok(())
    }

    /// Moves the payload bytes that have arrived for `frame` into the message or control buffer, unmasked, and
    /// validates new text bytes.
    fn take_payload(&mut self, frame: &mut FrameState) -> Result<(), ProtocolError> {
        let available = self.input.len() - self.pos;
        let take = usize::try_from(frame.remaining)
            .map_or(available, |remaining| remaining.min(available));
        let chunk = &self.input[self.pos..self.pos + take];
        let dest = if frame.opcode.is_control() {
            &mut self.control
        } else {
            &mut self.payload
        };
        let start = dest.len();
        dest.extend_from_slice(chunk);
        unmask(&mut dest[start..], frame.mask, frame.phase);
        self.pos += take;
        frame.remaining -= take as u64;
        frame.phase = (frame.phase + take) & 3;
        if let (false, Some(MessageKind::Text { validated })) =
            (frame.opcode.is_control(), &mut self.message)
        {
            *validated = validate_utf8_prefix(&self.payload, *validated)?;
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Result<Event, ProtocolError> {
        let payload = std::mem::take(&mut self.payload);
        match self.message.take() {
            Some(MessageKind::Text { validated }) if validated == payload.len() => {
                Ok(Event::Text(payload))
            }
            Some(MessageKind::Text { .. }) => Err(ProtocolError::new(ErrorKind::InvalidUtf8)),
            _ => Ok(Event::Binary(payload)),
        }
    }

    fn control_event(&mut self, opcode: OpCode) -> Result<Event, ProtocolError> {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OpCode::Ping => Ok(Event::Ping(payload)),
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => {
                let close = parse_close(payload)?;
                self.closed = true;
                Ok(Event::Close(close))
            }
        }
    }
}

/// Validates a close frame's payload: empty, or a valid code followed by a UTF-8 reason.
fn parse_close(payload: Vec<u8>) -> Result<Option<CloseFrame>, ProtocolError> {
    let (code, reason) = match payload.as_slice() {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::new(ErrorKind::CloseTooShort)),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(ProtocolError::new(ErrorKind::InvalidCloseCode(code)));
    }
    let reason = std::str::from_utf8(reason)
        .map_err(|_| ProtocolError::new(ErrorKind::InvalidCloseReason))?;
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}

/// Validates `text[validated..]` and returns the new length of the valid prefix. A multi-byte sequence cut at the
/// end is accepted as pending only while it is still a valid prefix, so an impossible byte fails at once.
fn validate_utf8_prefix(text: &[u8], validated: usize) -> Result<usize, ProtocolError> {
    let tail = &text[validated..];
    match std::str::from_utf8(tail) {
        Ok(_) => Ok(text.len()),
        Err(error) if error.error_len().is_none() => Ok(validated + error.valid_up_to()),
        Err(_) => Err(ProtocolError::new(ErrorKind::InvalidUtf8)),
    }
}

/// XORs `data` with the masking key, `data[0]` being payload byte number `phase` (mod 4). Eight bytes at a time.
pub fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let key: [u8; 4] = std::array::from_fn(|i| mask[(phase + i) & 3]);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (words, tail) = data.as_chunks_mut::<8>();
    for chunk in words {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    for (byte, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}
