//! RFC 6455 WebSocket layer, independent of certstream: frame encoding (server → client, unmasked, so one
//! encoded frame serves every client), a sans-I/O decoder for client frames, the opening handshake, and the
//! sans-I/O session (close, ping/pong, control-frame budget, message deadline) shared by every user of the layer.
//!
//! The I/O stays with the caller: it reads bytes into [`decode::Decoder`], feeds the results to
//! [`session::Session`], and writes the frames and actions the session returns, with its own deadlines.

#![warn(missing_docs, unreachable_pub)]

pub mod decode;
pub mod frame;
pub mod handshake;
pub mod session;
