//! RFC 6455 WebSocket layer, independent of certstream: frame encoding (server → client, unmasked, so one
//! encoded frame serves every client), a sans-I/O decoder for client frames, and the opening handshake.

pub mod decode;
pub mod frame;
pub mod handshake;
