//! RFC 6455 WebSocket layer, independent of certstream: frame encoding (server → client, unmasked, so one
//! encoded frame serves every client), a sans-I/O decoder for client frames, the opening handshake, and the
//! sans-I/O session (close, ping/pong, control-frame budget, message deadline) shared by every user of the layer.

pub mod decode;
pub mod frame;
pub mod handshake;
pub mod session;
