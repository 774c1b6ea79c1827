//! Sans-I/O WebSocket session (server side): the rules of a connection after the opening handshake, written once
//! and used by the server and by the Autobahn echo example alike.
//!
//! The caller feeds received bytes ([`Session::receive`]), pulls [`Action`]s ([`Session::next_action`]) and reports
//! when the close frame it queued has been written ([`Session::close_sent`]). The session decides:
//! - pings are answered with pongs, until a close frame has been sent (nothing may follow it, RFC 6455 §5.5.1);
//! - the peer's close is answered with the same status code, unless our close already went out (then the handshake
//!   is complete);
//! - a protocol violation fails the connection with its close code (1002/1007/1009);
//! - control frames (pings and pongs) beyond a budget close the connection with 1008: answering a flood costs a
//!   pong write per ping, and a legitimate client never needs more than a few per second;
//! - a message (or frame) that was started must be finished within a deadline ([`Session::deadline`]), so a client
//!   cannot pin a partial message's buffer forever.

use std::time::{Duration, Instant};

use super::decode::{Decoder, Event};
use super::frame::{Frame, OpCode};

/// Close code: the peer broke a rule of this server (a budget or a deadline).
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// The per-connection rules a session enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest message accepted (payload bytes); longer ones fail with 1009.
    pub max_message_len: usize,
    /// Control frames accepted per second on average, and in a burst (token bucket of this size, refilled at this
    /// rate).
    pub control_frames_per_second: u32,
    /// Time allowed to finish a message once its first byte arrived.
    pub message_timeout: Duration,
}

/// Why the session closes the connection (for counters and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer sent a close frame; ours answers it.
    PeerClosed,
    /// The peer violated RFC 6455.
    ProtocolError,
    /// The peer sent more control frames than the budget allows.
    ControlFlood,
    /// The peer did not finish a message within the deadline.
    MessageTimeout,
    /// A limit the caller enforces (e.g. a server-wide budget), through [`Session::fail`].
    ServerLimit,
}

/// What the caller must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// A complete text (validated UTF-8) or binary message for the application.
    Message {
        /// [`OpCode::Text`] or [`OpCode::Binary`].
        opcode: OpCode,
        /// The reassembled payload.
        payload: Vec<u8>,
    },
    /// Send this pong (before any data frame queued after it).
    Pong(Frame),
    /// Send this close frame, then nothing more; the connection ends once it is written (report it with
    /// [`Session::close_sent`]).
    Close {
        /// The close frame to write.
        frame: Frame,
        /// Why the connection closes.
        cause: CloseCause,
    },
    /// The peer answered our close: the closing handshake is complete, the connection can end.
    Closed,
}

/// One connection's WebSocket state. See the module documentation.
#[derive(Debug)]
pub struct Session {
    decoder: Decoder,
    limits: SessionLimits,
    /// Control-frame tokens left, and when they were last refilled.
    tokens: f32,
    refilled: Instant,
    /// When the message (or frame) in progress started, `None` between messages.
    message_started: Option<Instant>,
    close_received: bool,
    close_sent: bool,
    /// A close frame was handed to the caller (ours or the reply): nothing more is produced.
    closing: bool,
}

impl Session {
    /// A session whose decoder already holds `initial` (the bytes that followed the request head).
    pub fn new(limits: SessionLimits, initial: &[u8], now: Instant) -> Self {
        let mut session = Self {
            decoder: Decoder::new(limits.max_message_len),
            limits,
            tokens: limits.control_frames_per_second as f32,
            refilled: now,
            message_started: None,
            close_received: false,
            close_sent: false,
            closing: false,
        };
        session.receive(initial, now);
        session
    }

    /// Appends received bytes.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if !data.is_empty() && self.message_started.is_none() {
            self.message_started = Some(now);
        }
        self.decoder.extend(data);
    }

    /// The next thing to do, `None` when more bytes are needed (or once the connection is closing).
    pub fn next_action(&mut self, now: Instant) -> Option<Action> {
        if self.closing {
            return self.wait_for_close_reply();
        }
        let action = match self.decoder.next_event() {
            Ok(None) => {
                if !self.decoder.in_progress() {
                    self.message_started = None;
                }
                return None;
            }
            Ok(Some(Event::Text(payload))) => Action::Message {
                opcode: OpCode::Text,
                payload,
            },
            Ok(Some(Event::Binary(payload))) => Action::Message {
                opcode: OpCode::Binary,
                payload,
            },
            Ok(Some(Event::Ping(payload))) => {
                if !self.take_control_token(now) {
                    return Some(self.fail(CloseCause::ControlFlood, "too many control frames"));
                }
                Action::Pong(Frame::pong(&payload))
            }
            Ok(Some(Event::Pong(_))) => {
                if !self.take_control_token(now) {
                    return Some(self.fail(CloseCause::ControlFlood, "too many control frames"));
                }
                return self.next_action(now);
            }
            Ok(Some(Event::Close(close))) => {
                self.close_received = true;
                self.message_started = None;
                if self.close_sent {
                    self.closing = true;
                    return Some(Action::Closed);
                }
                // Echo the peer's status code (RFC 6455 §5.5.1); an empty close gets an empty close.
                let frame = match close {
                    Some(close) => Frame::close(close.code, ""),
                    None => Frame::new(OpCode::Close, b""),
                };
                self.closing = true;
                Action::Close {
                    frame,
                    cause: CloseCause::PeerClosed,
                }
            }
            Err(error) => {
                self.closing = true;
                self.message_started = None;
                return Some(Action::Close {
                    frame: Frame::close(error.close_code(), &error.to_string()),
                    cause: CloseCause::ProtocolError,
                });
            }
        };
        // The deadline runs from a message's first byte: a finished message restarts it for the bytes after it,
        // while control frames do not (pings must not keep an unfinished message alive).
        if !self.decoder.in_progress() {
            self.message_started = None;
        } else if matches!(action, Action::Message { .. }) {
            self.message_started = Some(now);
        }
        Some(action)
    }

    /// Once a close frame was produced, only the peer's close matters: data, pings and pongs are read and dropped
    /// (no pong may follow a close), a violation counts as its close. The handshake is complete when both closes
    /// are through: [`Action::Closed`] if ours was written first, else [`Session::close_sent`] says so.
    fn wait_for_close_reply(&mut self) -> Option<Action> {
        if self.close_received {
            return None;
        }
        loop {
            match self.decoder.next_event() {
                Ok(None) => return None,
                Ok(Some(Event::Close(_))) | Err(_) => {
                    self.close_received = true;
                    return self.close_sent.then_some(Action::Closed);
                }
                Ok(Some(_)) => {}
            }
        }
    }

    /// Reports that a close frame was written: the reply the session produced, or one the caller decided on its own
    /// (shutdown), after which only the peer's reply is awaited. Returns `true` when the handshake is complete
    /// (the peer's close came first), `false` when the peer's reply is still to come.
    pub fn close_sent(&mut self) -> bool {
        self.close_sent = true;
        self.closing = true;
        self.close_received
    }

    /// Whether a close frame has been produced (by either side): no data or pong may be queued any more.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// When the message in progress must be finished, `None` when no message is in progress.
    pub fn deadline(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        self.message_started
            .map(|started| started + self.limits.message_timeout)
    }

    /// Fails the connection if the message in progress missed its deadline (call when the deadline passed).
    pub fn check_deadline(&mut self, now: Instant) -> Option<Action> {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                Some(self.fail(CloseCause::MessageTimeout, "message not finished in time"))
            }
            _ => None,
        }
    }

    /// Fails the connection with close 1008 and `reason` (a deadline, a budget).
    pub fn fail(&mut self, cause: CloseCause, reason: &str) -> Action {
        self.closing = true;
        self.message_started = None;
        self.decoder.release();
        Action::Close {
            frame: Frame::close(CLOSE_POLICY_VIOLATION, reason),
            cause,
        }
    }

    /// Bytes the decoder holds for unfinished frames and messages (buffer capacities).
    pub fn buffered_bytes(&self) -> usize {
        self.decoder.buffered_bytes()
    }

    /// Takes one control-frame token; `false` when the budget is exhausted.
    fn take_control_token(&mut self, now: Instant) -> bool {
        let rate = self.limits.control_frames_per_second as f32;
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f32();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        max_message_len: 1024,
        control_frames_per_second: 5,
        message_timeout: Duration::from_secs(10),
    };

    fn client_frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        assert!(payload.len() < 126);
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn drain(session: &mut Session, now: Instant) -> Vec<Action> {
        std::iter::from_fn(|| session.next_action(now)).collect()
    }

    #[test]
    fn pings_get_pongs_and_the_peer_close_is_echoed() {
        let now = Instant::now();
        let mut bytes = client_frame(0x9, b"hi", true);
        bytes.extend(client_frame(0x1, b"text", true));
        bytes.extend(client_frame(0x8, &[0x03, 0xE8], true));
        bytes.extend(client_frame(0x9, b"late", true));
        let mut session = Session::new(LIMITS, &bytes, now);
        let actions = drain(&mut session, now);
        assert_eq!(actions.len(), 3, "{actions:?}");
        assert_eq!(actions[0], Action::Pong(Frame::pong(b"hi")));
        assert!(matches!(&actions[1], Action::Message { payload, .. } if payload == b"text"));
        assert_eq!(
            actions[2],
            Action::Close {
                frame: Frame::close(1000, ""),
                cause: CloseCause::PeerClosed
            }
        );
        assert!(
            session.close_sent(),
            "the handshake is complete once the reply is written"
        );
    }

    #[test]
    fn our_close_first_then_only_the_reply_counts() {
        let now = Instant::now();
        let mut session = Session::new(LIMITS, &[], now);
        assert!(!session.close_sent(), "the reply is still to come");
        assert!(session.is_closing());
        let mut bytes = client_frame(0x9, b"ping after our close", true);
        bytes.extend(client_frame(0x8, &[0x03, 0xE9], true));
        session.receive(&bytes, now);
        assert_eq!(
            drain(&mut session, now),
            [Action::Closed],
            "no pong after our close"
        );
    }

    #[test]
    fn the_peer_close_crossing_ours_completes_the_handshake() {
        let now = Instant::now();
        let mut session = Session::new(LIMITS, &client_frame(0x8, &[], true), now);
        // Our close (shutdown) was queued; the peer's close is read before ours is written: no second reply.
        assert_eq!(
            drain(&mut session, now),
            [Action::Close {
                frame: Frame::new(OpCode::Close, b""),
                cause: CloseCause::PeerClosed
            }]
        );
        assert!(
            session.close_sent(),
            "whichever close is written completes the handshake"
        );
        assert_eq!(drain(&mut session, now), []);
    }

    #[test]
    fn a_control_flood_closes_with_1008_and_a_steady_rate_does_not() {
        let t0 = Instant::now();
        let mut session = Session::new(LIMITS, &[], t0);
        for second in 0..10 {
            let now = t0 + Duration::from_secs(second);
            for _ in 0..5 {
                session.receive(&client_frame(0x9, b"", true), now);
            }
            let actions = drain(&mut session, now);
            assert!(
                actions.iter().all(|a| matches!(a, Action::Pong(_))),
                "{actions:?}"
            );
        }
        let now = t0 + Duration::from_secs(10);
        for _ in 0..6 {
            session.receive(&client_frame(0xA, b"", true), now);
        }
        let actions = drain(&mut session, now);
        assert_eq!(
            actions,
            [Action::Close {
                frame: Frame::close(1008, "too many control frames"),
                cause: CloseCause::ControlFlood
            }]
        );
    }

    #[test]
    fn an_unfinished_message_has_a_deadline() {
        let t0 = Instant::now();
        let mut session = Session::new(LIMITS, &[], t0);
        assert_eq!(session.deadline(), None, "an idle connection has none");
        let whole = client_frame(0x1, b"0123456789", true);
        session.receive(&whole[..8], t0);
        assert_eq!(drain(&mut session, t0), []);
        assert_eq!(session.deadline(), Some(t0 + LIMITS.message_timeout));
        assert!(session.buffered_bytes() > 0);
        let later = t0 + Duration::from_secs(3);
        session.receive(&whole[8..], later);
        assert_eq!(drain(&mut session, later).len(), 1);
        assert_eq!(session.deadline(), None, "finished in time");

        session.receive(&whole[..8], later);
        assert_eq!(drain(&mut session, later), []);
        assert_eq!(session.check_deadline(later + Duration::from_secs(9)), None);
        let action = session.check_deadline(later + LIMITS.message_timeout);
        assert_eq!(
            action,
            Some(Action::Close {
                frame: Frame::close(1008, "message not finished in time"),
                cause: CloseCause::MessageTimeout
            })
        );
        assert_eq!(session.buffered_bytes(), 0, "the partial message is freed");
    }

    #[test]
    fn a_protocol_error_fails_the_connection() {
        let now = Instant::now();
        let unmasked = [0x81, 0x01, b'x'];
        let mut session = Session::new(LIMITS, &unmasked, now);
        let actions = drain(&mut session, now);
        assert!(matches!(
            &actions[..],
            [Action::Close { cause: CloseCause::ProtocolError, frame }] if frame.payload()[..2] == 1002u16.to_be_bytes()
        ));
    }
}
