//! Ingestion: one poller task per CT log (RFC 6962 or static-ct-api), each delivering every entry of its log
//! exactly once and in index order to an [`EntrySink`] (the publish step, [`crate::publish`]). Errors, 429s and
//! regressions only delay a log; they never skip an index.
//!
//! A poller is a [`follower`] (the log's position and fetch plan, without I/O) run by the [`shell`] (requests,
//! timers, stop, delivery); [`rfc6962`] and [`tiled`] hold only what differs between the two kinds of log.

mod follower;
pub mod growth;
pub mod issuers;
pub mod pacing;
pub mod politeness;
pub mod resume;
pub mod rfc6962;
mod shell;
pub mod supervisor;
pub mod tiled;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::config::IngestConfig;
use crate::http::HttpClient;
use crate::log_throttle::LogThrottle;
use crate::message::LogSource;
use crate::panic_boundary::catch;
use crate::publish::EntrySink;
use certstream_ct::entry::LogEntry;
use certstream_ct::log_key::LogKey;

/// The largest get-sth or checkpoint body read: a signed tree head is well under 1 KiB; this leaves room for long
/// origins and many cosignatures, and keeps a hostile log from making us read (and hold) megabytes per poll.
pub(crate) const MAX_TREE_HEAD_BYTES: usize = 64 * 1024;

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

/// Where a follower starts, decided at the log's first verified tree head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the log's size minus `start_back`.
    Head,
    /// At the next index of a poller that stopped or panicked (or of the log before its URL changed). What lies
    /// between it and the head is growth like any other: a restart must not lift the growth cap.
    Continue(u64),
    /// At an index an earlier process saved ([`resume`]): from the head instead when that is more than
    /// `max_backlog` entries behind (the skip logged and counted). The backlog, so bounded, is read at once.
    Saved {
        /// The saved next index.
        index: u64,
        /// `--max-resume-backlog`.
        max_backlog: u64,
    },
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
    /// A get-entries body may hold this many bytes per entry asked for.
    pub get_entries_bytes_per_entry: usize,
    /// Entries per second a log's tree may grow before its heads count as implausible ([`growth`]).
    pub max_growth_per_second: u64,
}

impl Default for PollOptions {
    /// What the default configuration gives ([`IngestConfig::poll_options`], where every value is defined).
    fn default() -> Self {
        IngestConfig::default().poll_options()
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
    /// Entries whose building panicked (skipped, logged with their index).
    pub panicked: u64,
    /// Times the poller panicked and was restarted.
    pub restarts: u64,
    /// Tiled logs: tile answers whose framing was broken (records could not be located), retried.
    pub broken_tiles: u64,
    /// Tree heads that grew implausibly fast (followed at the capped rate, see [`growth`]).
    pub implausible_heads: u64,
    /// The size the latest verified tree head claims (`tree_size` is what is followed of it).
    pub claimed_tree_size: u64,
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
    /// The index the state file held when the log started, if any (`/stats`: `resumed_from`).
    pub resumed_from: Option<u64>,
    /// Entries skipped at start because that index was more than `--max-resume-backlog` behind.
    pub resume_skipped: u64,
}

impl LogStatus {
    /// Entries the log has that have not been delivered yet.
    pub(crate) fn lag(&self) -> u64 {
        self.tree_size.saturating_sub(self.next_index)
    }
}

/// A log's status, shared between its poller and the stats endpoints.
pub type SharedStatus = Rc<RefCell<LogStatus>>;

/// Hands entry `index` to the sink inside the per-entry panic boundary: a panic while building it (x509-parser,
/// the formatter, the chain cache on hostile DER) skips that entry only, counted in `panicked` and logged
/// (rate-limited) with the log and index. True when the sink took the entry without panicking.
pub(crate) fn deliver_entry(
    ctx: &PollerContext,
    target: &LogTarget,
    status: &SharedStatus,
    index: u64,
    entry: &LogEntry<'_>,
    chain: &[&[u8]],
) -> bool {
    let Err(panicked) = catch(|| ctx.sink.deliver(&target.source, index, entry, chain)) else {
        return true;
    };
    status.borrow_mut().panicked += 1;
    thread_local! {
        static PANIC_WARNINGS: LogThrottle = const { LogThrottle::new(Duration::from_secs(1)) };
    }
    if let Some(held_back) = PANIC_WARNINGS.with(|throttle| throttle.allow(Instant::now())) {
        tracing::error!(log = %target.read_url, index, %panicked, held_back, "building an entry panicked; entry skipped");
    }
    false
}

/// Asks a poller to stop (its log left the list, or the server is shutting down). Waiting on it costs nothing
/// until the stop: [`StopToken::stopped`] registers a waker instead of polling on a timer.
#[derive(Clone, Default)]
pub struct StopToken(Rc<StopState>);

#[derive(Default)]
struct StopState {
    stopped: Cell<bool>,
    /// Wakers of the pending [`StopWait`] futures, by their id (removed when a future is dropped).
    waiters: RefCell<HashMap<u64, Waker>>,
    next_id: Cell<u64>,
}

impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StopToken")
            .field(&self.is_stopped())
            .finish()
    }
}

impl StopToken {
    /// Requests the stop and wakes everything waiting for it.
    pub fn stop(&self) {
        self.0.stopped.set(true);
        let waiters = std::mem::take(&mut *self.0.waiters.borrow_mut());
        for waker in waiters.into_values() {
            waker.wake();
        }
    }

    /// True once a stop was requested.
    pub(crate) fn is_stopped(&self) -> bool {
        self.0.stopped.get()
    }

    /// Completes once a stop is requested (to race against a request or a wait).
    pub(crate) fn stopped(&self) -> StopWait {
        StopWait {
            state: self.0.clone(),
            id: None,
        }
    }

    /// Sleeps for `duration`, waking at once when a stop is requested. Returns false if stopped.
    pub async fn sleep(&self, duration: Duration) -> bool {
        if self.is_stopped() {
            return false;
        }
        monoio::select! {
            _ = monoio::time::sleep(duration) => !self.is_stopped(),
            _ = self.stopped() => false,
        }
    }
}

/// Stops its token when dropped, so tasks spawned on behalf of one owner (a poller's fetches) end with it rather
/// than run detached (monoio detaches the task of a dropped `JoinHandle`).
pub(crate) struct StopOnDrop(pub(crate) StopToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The future of [`StopToken::stopped`].
pub struct StopWait {
    state: Rc<StopState>,
    id: Option<u64>,
}

impl Future for StopWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.stopped.get() {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let state = &this.state;
        let id = *this.id.get_or_insert_with(|| {
            let id = state.next_id.get();
            state.next_id.set(id + 1);
            id
        });
        state.waiters.borrow_mut().insert(id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StopWait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.state.waiters.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_wakes_sleepers_at_once_and_leaves_no_waiters() {
        crate::runtime::block_on(async {
            let stop = StopToken::default();
            let sleeper = monoio::spawn({
                let stop = stop.clone();
                async move {
                    let started = std::time::Instant::now();
                    let finished = stop.sleep(Duration::from_secs(3600)).await;
                    (finished, started.elapsed())
                }
            });
            // A waiter that gives up before the stop must not stay registered.
            let _ = monoio::time::timeout(Duration::from_millis(5), stop.stopped()).await;
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(stop.0.waiters.borrow().len(), 1, "only the sleeper waits");
            stop.stop();
            let (finished, waited) = sleeper.await;
            assert!(!finished);
            assert!(
                waited < Duration::from_millis(500),
                "woken by the stop, not the timer: {waited:?}"
            );
            assert!(stop.0.waiters.borrow().is_empty());
            assert!(
                !stop.sleep(Duration::from_secs(1)).await,
                "sleeping after a stop returns at once"
            );
        })
        .unwrap();
    }
}
