//! The NATS JetStream output: every message is published to a stream, and nothing is lost between the logs and
//! the broker (README "NATS JetStream"; the wire contract in docs/wire-format.md §10).
//!
//! The rule, decided here:
//! - [`Broker::publish`] (on the reactor) never blocks: it hands the message to the client's thread
//!   ([`client`]) and counts it as *buffered* until the stream acknowledges it.
//! - While the buffered bytes reach `--nats-buffer-bytes`, the broker has no [`Room`]: ingestion waits (the
//!   pollers' [`Gate`](crate::publish::Gate)), so a broker that is down or slow holds the logs back instead of
//!   losing messages. The reactor keeps serving the clients meanwhile.
//! - A log's durable position ([`DurablePositions`]) is its lowest unacknowledged index: the state file never
//!   records an entry as done before the broker has it, so a crash re-reads it, and the stream's duplicate window
//!   drops the copies of those it did have.

mod client;
mod reader;
pub mod wire;

pub use reader::StreamReader;

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

use crate::config::Mode;
use crate::log_throttle::LogThrottle;
use crate::message::Message;
use crate::metrics::{Fact, Kind, Metric, Read, Report, StatusReporter};
use crate::publish::{DurablePositions, Output, Room};

/// The NATS options (`--nats-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server (`nats://` or `tls://`); `None`: no broker.
    pub url: Option<String>,
    /// A credentials file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates (PEM) the server's certificate is checked against; TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// Messages go to `<prefix>.entries`.
    pub subject_prefix: String,
    /// The JetStream stream.
    pub stream: String,
    /// Retention of a stream created at start, by age and by bytes.
    pub max_age: Duration,
    pub max_bytes: usize,
    /// The duplicate window of a stream created at start.
    pub duplicate_window: Duration,
    /// Bytes of messages not yet acknowledged before ingestion waits.
    pub buffer_bytes: usize,
    /// At shutdown, the longest wait for the last acknowledgements.
    pub drain_timeout: Duration,
    /// Clients reading history from the stream at once (`?cursor=`, `?since=`); more get `503`.
    pub max_replays: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            creds: None,
            tls_ca: None,
            subject_prefix: "certstream".to_owned(),
            stream: "CERTSTREAM".to_owned(),
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(120),
            buffer_bytes: 64 << 20,
            drain_timeout: Duration::from_secs(10),
            max_replays: 64,
        }
    }
}

/// Waits between attempts after failures (a publish sent again, a stream consumer created again): doubling from the
/// first to the last.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// While ingestion waits for room, it looks again this often (the acknowledgements arrive on another thread).
const ROOM_CHECK: Duration = Duration::from_millis(5);

/// One message on its way to the stream.
pub(crate) struct Outgoing {
    /// Its place in the order messages were handed over (what is sent again goes oldest first).
    sequence: u64,
    log_id: Arc<str>,
    index: u64,
    headers: HeaderMap,
    payload: Bytes,
    /// What it counts for in the buffer.
    bytes: usize,
}

/// What the reactor and the client's thread share: counters, and the indexes not acknowledged yet.
#[derive(Default)]
pub(crate) struct Shared {
    buffered: AtomicUsize,
    buffered_bytes: AtomicUsize,
    published: AtomicU64,
    acked: AtomicU64,
    /// The highest stream sequence acknowledged.
    last_acked_sequence: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Per log ID, the indexes handed over and not acknowledged.
    unacked: Mutex<HashMap<Arc<str>, BTreeSet<u64>>>,
    warnings: Mutex<Option<LogThrottle>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn acked(&self, message: &Outgoing, duplicate: bool, sequence: u64) {
        self.last_acked_sequence
            .fetch_max(sequence, Ordering::Relaxed);
        {
            let mut unacked = lock(&self.unacked);
            if let Some(indexes) = unacked.get_mut(&message.log_id) {
                indexes.remove(&message.index);
                if indexes.is_empty() {
                    unacked.remove(&message.log_id);
                }
            }
        }
        self.acked.fetch_add(1, Ordering::Relaxed);
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        self.buffered_bytes
            .fetch_sub(message.bytes, Ordering::Relaxed);
        self.buffered.fetch_sub(1, Ordering::Relaxed);
    }

    /// A message handed to the client's thread: buffered and unacknowledged until [`acked`](Self::acked).
    fn handed_over(&self, message: &Outgoing) {
        lock(&self.unacked)
            .entry(message.log_id.clone())
            .or_default()
            .insert(message.index);
        self.buffered.fetch_add(1, Ordering::Relaxed);
        self.buffered_bytes
            .fetch_add(message.bytes, Ordering::Relaxed);
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// `next_index`, or the lowest index of `log_id` not acknowledged if lower.
    fn durable(&self, log_id: &str, next_index: u64) -> u64 {
        lock(&self.unacked)
            .get(log_id)
            .and_then(|indexes| indexes.first())
            .map_or(next_index, |&first| first.min(next_index))
    }

    /// A publish failed or was not acknowledged in time (it is sent again).
    fn failed(&self, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.note_error(&format!("publish not acknowledged: {error}"));
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Keeps `error` as the last one and logs it, at most once every ten seconds.
    fn note_error(&self, error: &str) {
        *lock(&self.last_error) = Some(error.to_owned());
        let mut warnings = lock(&self.warnings);
        let throttle = warnings.get_or_insert_with(|| LogThrottle::new(Duration::from_secs(10)));
        if let Some(held_back) = throttle.allow(Instant::now()) {
            tracing::warn!(%error, also_since_last_warning = held_back, buffered = self.buffered.load(Ordering::Relaxed), "NATS");
        }
    }
}

/// The connection to the NATS server (its own thread): what the publisher and the readers are made from, and
/// the connection's own status.
pub struct Nats {
    connection: client::Connection,
    shared: Arc<Shared>,
    config: NatsConfig,
}

impl Nats {
    /// Connects to `config.url` (on the broker's own thread) and checks the stream: an ingester creates it if it
    /// is missing, a relay needs it; `None` without a URL. The error names the URL (without its credentials) and
    /// what went wrong: the server must not start.
    pub fn connect(config: &NatsConfig, mode: Mode) -> Result<Option<Nats>, String> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let shared = Arc::new(Shared::default());
        let connection = client::start(config, url, shared.clone(), mode == Mode::Ingest)?;
        Ok(Some(Nats {
            connection,
            shared,
            config: config.clone(),
        }))
    }

    /// The JetStream output of an ingester: it starts publishing what it is handed.
    pub fn publisher(&self) -> Broker {
        let (outgoing, receiver) = flume::unbounded();
        self.connection.runtime.spawn(client::publish(
            self.connection.context.clone(),
            wire::subject(&self.config.subject_prefix),
            receiver,
            self.shared.clone(),
        ));
        Broker {
            shared: self.shared.clone(),
            outgoing,
            buffer_bytes: self.config.buffer_bytes,
            drain_timeout: self.config.drain_timeout,
            next_sequence: Cell::new(0),
            waiting_since: Cell::new(None),
            waited: Cell::new(Duration::ZERO),
        }
    }

    /// The stream's reader: the hub's live feed (from the stream's end when it was checked at start) and the
    /// replays of clients that start from a cursor.
    pub fn reader(&self) -> StreamReader {
        StreamReader::new(
            self.connection.runtime.clone(),
            self.connection.context.clone(),
            &self.config,
            self.connection.last_sequence,
        )
    }
}

/// The JetStream output (on the reactor's side).
pub struct Broker {
    shared: Arc<Shared>,
    outgoing: flume::Sender<Outgoing>,
    buffer_bytes: usize,
    drain_timeout: Duration,
    next_sequence: Cell<u64>,
    /// Since when ingestion has found no room, and how long it waited before that.
    waiting_since: Cell<Option<Instant>>,
    waited: Cell<Duration>,
}

impl Broker {
    /// Waits until the broker has acknowledged everything it was handed, at most `--nats-drain-timeout`; false if
    /// some is left (it is not recorded as done, so a restart reads it again).
    pub async fn drained(&self) -> bool {
        let deadline = Instant::now() + self.drain_timeout;
        while self.shared.buffered.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            monoio::time::sleep(ROOM_CHECK).await;
        }
        true
    }

    /// The highest stream sequence the broker acknowledged: at shutdown the clients get up to it.
    pub fn last_acked_sequence(&self) -> u64 {
        self.shared.last_acked_sequence.load(Ordering::Relaxed)
    }

    fn waited(&self, now: Instant) -> Duration {
        let current = self
            .waiting_since
            .get()
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.waited.get() + current
    }
}

impl Output for Broker {
    fn publish(&self, message: &Rc<Message>) {
        let meta = &message.meta;
        let payload = wire::envelope(&message.frames);
        let headers = wire::headers(meta);
        let bytes = payload.len() + meta.log_id.len() + 128;
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence + 1);
        let outgoing = Outgoing {
            sequence,
            log_id: meta.log_id.clone(),
            index: meta.index,
            headers,
            payload,
            bytes,
        };
        self.shared.handed_over(&outgoing);
        if self.outgoing.send(outgoing).is_err() {
            // The client's thread is gone: the message stays buffered and unacknowledged, so ingestion stops once
            // the buffer is full and the state never records it as done.
            self.shared
                .note_error("the NATS client's thread has stopped");
        }
    }
}

impl Room for Broker {
    fn has_room(&self) -> bool {
        let room = self.shared.buffered_bytes.load(Ordering::Relaxed) < self.buffer_bytes;
        let now = Instant::now();
        match (room, self.waiting_since.get()) {
            (true, Some(since)) => {
                self.waited
                    .set(self.waited.get() + now.saturating_duration_since(since));
                self.waiting_since.set(None);
            }
            (false, None) => self.waiting_since.set(Some(now)),
            _ => {}
        }
        room
    }

    fn check_every(&self) -> Duration {
        ROOM_CHECK
    }
}

impl DurablePositions for Broker {
    fn durable(&self, log_id: &str, next_index: u64) -> u64 {
        self.shared.durable(log_id, next_index)
    }
}

/// The counters at one moment.
struct BrokerStats {
    published: u64,
    acked: u64,
    duplicates: u64,
    failures: u64,
    buffered: u64,
    buffered_bytes: u64,
    waited_ms: u64,
}

const METRICS: &[Metric<BrokerStats>] = &[
    Metric::counter(
        "certstream_nats_published_total",
        "nats.published",
        "Messages handed to the NATS client.",
        |s| s.published,
    ),
    Metric::counter(
        "certstream_nats_acked_total",
        "nats.acked",
        "Messages the JetStream stream acknowledged (duplicates included).",
        |s| s.acked,
    ),
    Metric::counter(
        "certstream_nats_duplicates_total",
        "nats.duplicates",
        "Acknowledged messages the stream already had (same Nats-Msg-Id within its duplicate window).",
        |s| s.duplicates,
    ),
    Metric::counter(
        "certstream_nats_publish_failures_total",
        "nats.publish_failures",
        "Publishes that failed or were not acknowledged in time; each is sent again with the same Nats-Msg-Id.",
        |s| s.failures,
    ),
    Metric::gauge(
        "certstream_nats_buffered_messages",
        "nats.buffered_messages",
        "Messages handed to the NATS client and not acknowledged yet.",
        |s| s.buffered,
    ),
    Metric::gauge(
        "certstream_nats_buffered_bytes",
        "nats.buffered_bytes",
        "Bytes of the messages not acknowledged yet (ingestion waits at --nats-buffer-bytes).",
        |s| s.buffered_bytes,
    ),
    Metric {
        name: "certstream_nats_ingestion_waited_seconds_total",
        kind: Kind::Counter,
        help: "Time ingestion waited for room in the NATS buffer.",
        stats: "nats.ingestion_waited_ms",
        read: Read::Millis(|s| s.waited_ms),
    },
];

/// The connection's status at one moment.
struct ConnectionStats {
    connected: u64,
    last_error: Option<String>,
}

const CONNECTION_METRICS: &[Metric<ConnectionStats>] = &[Metric::gauge(
    "certstream_nats_connected",
    "nats.connected",
    "1 while connected to the NATS server.",
    |s| s.connected,
)];

const CONNECTION_FACTS: &[Fact<ConnectionStats>] = &[Fact {
    stats: "nats.last_error",
    read: |s| s.last_error.as_deref().map_or(Value::Null, Value::from),
}];

impl StatusReporter for Nats {
    fn report(&self, out: &mut Report<'_>) {
        let stats = ConnectionStats {
            connected: u64::from(self.shared.connected.load(Ordering::Relaxed)),
            last_error: lock(&self.shared.last_error).clone(),
        };
        out.metrics(CONNECTION_METRICS, &stats);
        out.facts(CONNECTION_FACTS, &stats);
    }
}

impl StatusReporter for Broker {
    fn report(&self, out: &mut Report<'_>) {
        let shared = &self.shared;
        let stats = BrokerStats {
            published: shared.published.load(Ordering::Relaxed),
            acked: shared.acked.load(Ordering::Relaxed),
            duplicates: shared.duplicates.load(Ordering::Relaxed),
            failures: shared.failures.load(Ordering::Relaxed),
            buffered: shared.buffered.load(Ordering::Relaxed) as u64,
            buffered_bytes: shared.buffered_bytes.load(Ordering::Relaxed) as u64,
            waited_ms: u64::try_from(self.waited(Instant::now()).as_millis()).unwrap_or(u64::MAX),
        };
        out.metrics(METRICS, &stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(log_id: &str, index: u64) -> Outgoing {
        Outgoing {
            sequence: index,
            log_id: log_id.into(),
            index,
            headers: HeaderMap::new(),
            payload: Bytes::new(),
            bytes: 100,
        }
    }

    #[test]
    fn a_log_is_durable_up_to_its_lowest_unacknowledged_index() {
        let shared = Shared::default();
        let (five, six, other) = (outgoing("a", 5), outgoing("a", 6), outgoing("b", 1));
        for message in [&five, &six, &other] {
            shared.handed_over(message);
        }
        assert_eq!(shared.durable("a", 7), 5);
        assert_eq!(shared.durable("a", 4), 4, "never past what was published");
        assert_eq!(shared.durable("c", 9), 9, "nothing handed over");
        shared.acked(&six, false, 2);
        assert_eq!(shared.durable("a", 7), 5, "6 is acknowledged, 5 is not");
        shared.acked(&five, true, 1);
        assert_eq!(shared.durable("a", 7), 7);
        assert_eq!(shared.durable("b", 2), 1);
        assert_eq!(shared.buffered.load(Ordering::Relaxed), 1);
        assert_eq!(shared.buffered_bytes.load(Ordering::Relaxed), 100);
        assert_eq!(shared.duplicates.load(Ordering::Relaxed), 1);
    }
}
