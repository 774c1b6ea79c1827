//! The project's own HTTP/1.1 client for CT logs, on monoio + rustls (ring).
//!
//! Why not monoio-http-client: its pool reuses connections whose request failed or was cancelled (wrong bodies,
//! panics over TLS). Here each request future owns its connection, so a timeout or a dropped future drops the
//! connection with it; only a cleanly finished keep-alive exchange returns it to the single idle slot of its
//! origin (and pool partition), and only a connection nothing arrived on since is taken from there.

mod client;
mod connection;
mod dns;
mod error;
mod response;
mod status;
mod url;
mod wire;

pub use client::{
    DEFAULT_TIMEOUT, DEFAULT_USER_AGENT, Header, HttpClient, HttpClientConfig, HttpCounts,
};
pub use error::HttpError;
pub use response::Response;
pub use url::Target;
