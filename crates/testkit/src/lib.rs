//! The one test kit of the certstream workspace. Every integration test and benchmark takes its scaffolding from
//! here instead of keeping its own copy:
//!
//! - [`corpus`]: the test corpus (`tests/corpus`);
//! - [`runtime`]: the monoio runtime;
//! - [`http`]: the blocking HTTP/1.1 test client and the scripted test HTTP server;
//! - [`signing`]: log keys, signed tree heads and checkpoints;
//! - [`mock`]: the mock CT log in this process;
//! - [`certstream`]: the real `certstream` binary (ingester or relay) as a child process, log list files, a stream
//!   collector;
//! - [`raw_stream`]: what a stream client was sent, byte for byte, by cursor and by log and index;
//! - [`server`]: the server in this process, with a publish handle;
//! - [`replay`]: an in-memory JetStream stream the server can replay clients from;
//! - [`ws`]: the blocking WebSocket test client;
//! - [`load`]: many WebSocket load clients on one thread, counting what they receive;
//! - [`event_stream`]: the blocking client of the server-sent events and NDJSON streams;
//! - [`nats`]: a real `nats-server` with JetStream, started, killed and restarted by the test, and its stream read;
//! - [`process`]: CPU time and memory of a child process, which process holds a connection;
//! - [`wait`]: polling for a condition, bounded;
//! - [`der`], [`examples`], [`python`]: certificates built in the test, reference messages, the Python clients.
#![warn(missing_docs)]

pub mod certstream;
pub mod corpus;
pub mod der;
pub mod event_stream;
pub mod examples;
pub mod http;
pub mod load;
pub mod mock;
pub mod nats;
pub mod process;
pub mod python;
pub mod raw_stream;
pub mod replay;
pub mod runtime;
pub mod server;
pub mod signing;
pub mod wait;
pub mod ws;

pub use certstream::{
    Certstream, Collector, ListFile, STARTUP_TIMEOUT, SeenEntry, assert_window, certstream_binary,
    collect_windows, followed_in, only_logs, refused_start, start_listening, start_listening_to,
    update_position,
};
pub use event_stream::{HttpStreamClient, SseEvent};
pub use http::{
    closed_by_peer, closed_port, connect_from, http_get, http_request, http_request_on,
    raw_request, request, split_response,
};
pub use mock::{Expected, Mock, mock_name};
pub use process::{cpu_time, memory_high_water_kib};
pub use raw_stream::{
    Delivered, HttpCollector, RawCollector, assert_each_log_unbroken, cursor_of, with_cursor,
};
pub use server::{TestServer, message};
pub use ws::{
    Received, WsClient, encode_client_frame, raw_client_frame, shrink_receive_buffer,
    upgrade_request,
};
