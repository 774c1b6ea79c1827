//! Ingestion: one poller task per CT log (RFC 6962 or static-ct-api), each delivering every entry of its log
//! exactly once and in index order to an [`EntrySink`] (the message pipeline). Errors, 429s and regressions only
//! delay a log; they never skip an index.

pub mod issuers;
pub mod pipeline;
pub mod politeness;
pub mod rfc6962;
pub mod supervisor;
pub mod tiled;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::ct::checkpoint::LogKey;
use crate::ct::entry::LogEntry;
use crate::http::HttpClient;
use crate::stream::LogSource;

/// Where pollers deliver entries.
pub trait EntrySink {
    /// Entry `index` of `log`, delivered exactly once and in index order per log. `chain` is the issuer chain as
    /// DER, issuer first (from `extra_data`, or the issuers a tiled log's fingerprints resolved to).
    fn entry(&self, log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]);
}

/// One log to follow.
pub struct LogTarget {
    /// Identity and URLs as they appear in messages (`source`, `cert_link`).
    pub source: LogSource,
    /// Where reads go: the RFC 6962 log URL, or a tiled log's monitoring prefix; with a trailing `/`.
    pub read_url: String,
    /// A tiled log's checkpoint origin (its submission prefix without scheme and trailing `/`).
    pub origin: String,
    /// The log's public key from the list, to verify tree heads and checkpoints.
    pub key: LogKey,
    /// Read-only logs stop growing at this size.
    pub final_tree_size: Option<u64>,
}

/// Tuning shared by every poller.
#[derive(Clone, Debug)]
pub struct PollOptions {
    /// Start this many entries before the log's current size (0: only new entries).
    pub start_back: u64,
    /// How often a caught-up log's tree head / checkpoint is polled.
    pub poll_interval: Duration,
    /// Deadline of each HTTP request.
    pub request_timeout: Duration,
    /// At most this many get-entries requests in flight per log while it is behind.
    pub max_in_flight: usize,
    /// A tiled log's partial tip tile is fetched only once new entries have waited this long in it (the spec's
    /// SHOULD avoid partial data tiles, against latency; busy logs fill their tiles sooner anyway).
    pub partial_tile_min_age: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            start_back: 0,
            poll_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 4,
            partial_tile_min_age: Duration::from_secs(3),
        }
    }
}

/// What every poller shares.
#[derive(Clone)]
pub struct PollerContext {
    pub http: Rc<HttpClient>,
    pub sink: Rc<dyn EntrySink>,
    pub options: PollOptions,
}

/// One log's state, shown per log in `/stats` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStatus {
    /// Latest verified tree size (RFC 6962 STH or checkpoint).
    pub tree_size: u64,
    /// The next index to deliver.
    pub next_index: u64,
    /// Entries delivered to the sink.
    pub delivered: u64,
    /// Entries that could not be decoded (logged and counted, never silent).
    pub skipped: u64,
    /// Entries delivered with a shortened chain because an issuer stayed unavailable (tiled logs).
    pub incomplete_chains: u64,
    /// Failed requests or bad responses.
    pub errors: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// The current politeness delay between requests, in milliseconds.
    pub delay_ms: u64,
    /// The current error backoff, in milliseconds (0 when healthy).
    pub backoff_ms: u64,
    /// The latest error, for operators.
    pub last_error: Option<String>,
}

impl LogStatus {
    /// Entries the log has that have not been delivered yet.
    pub fn lag(&self) -> u64 {
        self.tree_size.saturating_sub(self.next_index)
    }
}

/// A log's status, shared between its poller and the stats endpoints.
pub type SharedStatus = Rc<RefCell<LogStatus>>;

/// Asks a poller to stop (its log left the list, or the server is shutting down). Pollers check it between
/// requests and while waiting.
#[derive(Clone, Debug, Default)]
pub struct StopToken(Rc<Cell<bool>>);

impl StopToken {
    /// Requests the stop.
    pub fn stop(&self) {
        self.0.set(true);
    }

    /// True once a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.get()
    }

    /// Sleeps for `duration`, waking early (within 100 ms) when a stop is requested. Returns false if stopped.
    pub async fn sleep(&self, duration: Duration) -> bool {
        let step = Duration::from_millis(100);
        let mut left = duration;
        while !self.is_stopped() && !left.is_zero() {
            let now = left.min(step);
            monoio::time::sleep(now).await;
            left -= now;
        }
        !self.is_stopped()
    }
}
