//! certstream: follows Certificate Transparency logs and streams every new entry, as certstream JSON over
//! WebSocket, from one single-threaded monoio reactor.
//!
//! Data flows one way, one module per stage: `ingest` (pollers, over the project's own `http` client) feeds
//! `ct` (log entries, decoded without I/O) → `cert` (X.509 → cert model) → `message` (serialize once, frame once)
//! → `hub` (per-client rings of shared frames) → `server` (HTTP routes, WebSocket connections) over `ws` (RFC 6455).
//!
//! Every component's counters are described once, as [`metrics`] descriptors, and rendered from them to both
//! `/stats` (JSON) and `/metrics` (Prometheus).

// What only this crate uses is `pub(crate)`, so the dead-code lint sees it.
#![warn(unreachable_pub)]
// The server's documentation is for its contributors (`cargo doc --document-private-items`): module docs link
// to the private constants and functions that hold their rules.
#![allow(rustdoc::private_intra_doc_links)]

pub mod broker;
pub mod cert;
pub mod config;
pub mod cursor;
pub mod filter;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod log_throttle;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod operator_input;
pub mod panic_boundary;
pub mod publish;
pub mod redact;
pub mod runtime;
pub mod server;
