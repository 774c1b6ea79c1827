//! Reading the stream back (relays, and the ingester's own clients with `--nats-url`): every message clients see
//! comes from the stream, so every instance serves the same bytes with the same cursors.
//!
//! Each reader of the stream is an ephemeral JetStream pull consumer on the broker's thread, without
//! acknowledgements, from a [`ReplayStart`]. It decodes each message there ([`wire::decode`]: the reactor gets ready
//! frames) and hands it over through a [`Replay`], bounded in bytes. It asks the broker for a batch only while the
//! reactor's end has room, and only as many messages as that room holds (at the largest size seen lately), so a
//! slow reader slows its consumer instead of growing a queue anywhere. The reader keeps the order itself (not the
//! client library): a consumer sequence that jumps (a batch lost with a connection) or a failed request ends the
//! consumer, and a new one starts after the last message handed over; a message at or before that one is never
//! handed over again. So there is no gap and no duplicate, however long the broker is away.
//!
//! The hub's live feed ([`StreamReader::feed`]) is one reader, from the stream's end as it was at start; each
//! client that starts from a cursor has its own ([`ReplaySource::open`]), at most `--nats-max-replays` at once.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use serde_json::Value;

use super::{NatsConfig, RETRY_PAUSE, lock, wire};
use crate::cursor::{Replay, ReplayFeeder, ReplaySource, ReplayStart, replay_channel};
use crate::hub::Hub;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Fact, Metric, Report, StatusReporter};

/// Bytes of decoded messages the hub's live feed holds ahead of the hub (about a second of the firehose).
const LIVE_FEED_BYTES: usize = 16 << 20;

/// Bytes of decoded messages a client's replay holds ahead of that client's queue.
const REPLAY_BYTES: usize = 1 << 20;

/// Messages one pull asks for at most; fewer when the room left would not hold them ([`Reader::batch_size`]).
const BATCH_MESSAGES: usize = 256;

/// What a message is taken to weigh before the reader has seen any (the firehose's are about 12 KB).
const FIRST_MESSAGE_ESTIMATE: usize = 16 << 10;

/// How long one pull waits on the broker for messages before it is asked again (a quiet stream costs one request
/// per this; a dead connection is noticed by the next request).
const BATCH_EXPIRES: Duration = Duration::from_secs(2);

/// A consumer the broker has not heard from for this long is deleted by the broker (a reader that could not
/// delete its own: its client left while the broker was away).
const CONSUMER_INACTIVE: Duration = Duration::from_secs(30);

/// The stream's readers: opens them on the broker's thread, and counts what they read.
pub struct StreamReader {
    runtime: tokio::runtime::Handle,
    context: jetstream::Context,
    stream: String,
    subject: String,
    /// The stream's last sequence when it was checked at start: the live feed starts after it.
    start_after: u64,
    max_replays: usize,
    counts: Arc<ReaderCounts>,
}

#[derive(Default)]
struct ReaderCounts {
    /// Messages the live feed published to the hub, and the cursor of the last one.
    received: AtomicU64,
    cursor: AtomicU64,
    /// Messages in the stream after the live feed's last one, as the broker last said.
    pending: AtomicU64,
    /// Stream sequences the live feed jumped over: removed by the stream's limits before it read them.
    skipped: AtomicU64,
    consumer_restarts: AtomicU64,
    undecodable: AtomicU64,
    /// The stream was deleted and created again under a reader (its sequences went back).
    stream_resets: AtomicU64,
    /// Replays whose cursor was older than the stream's first message (the stream's limits removed the rest).
    replays_truncated: AtomicU64,
    /// Client replays reading now (the live feed not included).
    replays: AtomicUsize,
    last_error: Mutex<Option<String>>,
    warnings: Mutex<Option<LogThrottle>>,
}

impl ReaderCounts {
    /// Keeps `error` as the readers' last one and logs it, at most once every ten seconds.
    fn note_error(&self, error: &str) {
        *lock(&self.last_error) = Some(error.to_owned());
        let mut warnings = lock(&self.warnings);
        let throttle = warnings.get_or_insert_with(|| LogThrottle::new(Duration::from_secs(10)));
        if let Some(held_back) = throttle.allow(Instant::now()) {
            tracing::warn!(%error, also_since_last_warning = held_back, "reading the JetStream stream");
        }
    }
}

impl StreamReader {
    pub(super) fn new(
        runtime: tokio::runtime::Handle,
        context: jetstream::Context,
        config: &NatsConfig,
        start_after: u64,
    ) -> Self {
        Self {
            runtime,
            context,
            stream: config.stream.clone(),
            subject: wire::subject(&config.subject_prefix),
            start_after,
            max_replays: config.max_replays,
            counts: Arc::default(),
        }
    }

    /// Publishes the stream to `hub`, message by message as the hub's admission allows (clients that keep up are
    /// never out-run; the stream holds what waits), until `stop` is set or the broker's thread is gone (`false`).
    pub async fn feed(&self, hub: Hub, stop: Rc<std::cell::Cell<bool>>) -> bool {
        let mut replay = self.start(ReplayStart::After(self.start_after), Role::Feed);
        hub.feed_starts_after(self.start_after);
        let gate = hub.gate();
        loop {
            gate.admitted().await;
            if stop.get() {
                return true;
            }
            let Some(message) = replay.next().await else {
                return false;
            };
            if stop.get() {
                return true;
            }
            let cursor = message.meta.cursor.unwrap_or_default();
            hub.publish(&Rc::new(message));
            self.counts.received.fetch_add(1, Ordering::Relaxed);
            self.counts.cursor.store(cursor, Ordering::Relaxed);
        }
    }

    /// The cursor of the last message the live feed published.
    pub fn cursor(&self) -> u64 {
        self.counts.cursor.load(Ordering::Relaxed)
    }

    /// A reader from `start` on the broker's thread.
    fn start(&self, start: ReplayStart, role: Role) -> Replay {
        let budget = match role {
            Role::Feed => LIVE_FEED_BYTES,
            Role::Replay => REPLAY_BYTES,
        };
        let (feeder, replay) = replay_channel(budget);
        let reader = Reader {
            context: self.context.clone(),
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            // The feed's start is the stream's own end; a client's cursor is only what the client says.
            last: match (role, start) {
                (Role::Feed, ReplayStart::After(cursor)) => Some(cursor),
                _ => None,
            },
            start,
            role,
            message_estimate: FIRST_MESSAGE_ESTIMATE,
            feeder,
            counts: self.counts.clone(),
        };
        let counted = (role == Role::Replay).then(|| ReplaySlot(self.counts.clone()));
        self.runtime.spawn(async move {
            let _slot = counted;
            reader.run().await;
        });
        replay
    }
}

/// Gives a client replay's slot back when its reader ends, however it ends.
struct ReplaySlot(Arc<ReaderCounts>);

impl Drop for ReplaySlot {
    fn drop(&mut self) {
        self.0.replays.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReplaySource for StreamReader {
    fn open(&self, start: ReplayStart) -> Result<Replay, String> {
        let replays = &self.counts.replays;
        if replays.fetch_add(1, Ordering::Relaxed) >= self.max_replays {
            replays.fetch_sub(1, Ordering::Relaxed);
            return Err(format!(
                "{} clients are reading history already (--nats-max-replays)",
                self.max_replays
            ));
        }
        Ok(self.start(start, Role::Replay))
    }
}

/// What a reader is for: what it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The hub's live feed: counts what it skips, jumps over and how far behind it is.
    Feed,
    /// One client's catch-up (what it reads was counted when the feed read it).
    Replay,
}

/// One reader's life on the broker's thread.
struct Reader {
    context: jetstream::Context,
    stream: String,
    subject: String,
    /// Where the reader started, while it has handed nothing over.
    start: ReplayStart,
    /// The last stream sequence handed over (or, for the feed, the stream's end at start): a new consumer starts
    /// after it, and nothing at or before it is handed over again. A client's start cursor is not one: a cursor
    /// past the stream's end (a client of another instance, ahead of this one) is no sign of a reset.
    last: Option<u64>,
    role: Role,
    /// What a message weighs, as far as the reader knows: the largest seen lately (it decays slowly).
    message_estimate: usize,
    feeder: ReplayFeeder,
    counts: Arc<ReaderCounts>,
}

impl Reader {
    /// Reads until the reactor's end is gone, creating a consumer again after each failure: at once after one
    /// that had read something, then after pauses that grow while failures go on.
    async fn run(mut self) {
        let mut pause = RETRY_PAUSE.0;
        loop {
            let before = self.last;
            match self.consume().await {
                Ok(()) => return,
                Err(error) => {
                    self.counts
                        .consumer_restarts
                        .fetch_add(1, Ordering::Relaxed);
                    self.counts
                        .note_error(&format!("stream {}: {error}", self.stream));
                }
            }
            if self.feeder.is_closed() {
                return;
            }
            if self.last != before {
                pause = RETRY_PAUSE.0;
                continue;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE.1);
        }
    }

    /// Where a new consumer starts.
    fn next(&self) -> ReplayStart {
        self.last.map_or(self.start, ReplayStart::After)
    }

    /// One consumer, until it fails (`Err`) or the reactor's end is gone (`Ok`); the consumer is deleted after.
    async fn consume(&mut self) -> Result<(), String> {
        let mut stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let state = stream
            .info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .clone();
        if let Some(last) = self.last
            && last > state.last_sequence
        {
            // Deleted and created again: its sequences start over. Old cursors name nothing now.
            self.counts.stream_resets.fetch_add(1, Ordering::Relaxed);
            self.counts.note_error(&format!(
                "the stream's last sequence is {}, before {last} already read: it was deleted and created \
                 again; reading it from its start",
                state.last_sequence
            ));
            self.last = Some(state.first_sequence.saturating_sub(1));
        }
        let mut consumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.subject.clone(),
                deliver_policy: deliver_policy(self.next()),
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: CONSUMER_INACTIVE,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let read = self.read(&mut consumer).await;
        let name = consumer.cached_info().name.clone();
        // Best effort (the broker may be away): else it deletes the consumer after CONSUMER_INACTIVE.
        let _ = tokio::time::timeout(RETRY_PAUSE.1, stream.delete_consumer(&name)).await;
        read
    }

    /// Pulls batches while the reactor's end has room, and hands the messages over in order.
    async fn read(&mut self, consumer: &mut consumer::PullConsumer) -> Result<(), String> {
        let mut delivered = 0;
        loop {
            if !self.feeder.room().await {
                return Ok(());
            }
            // A pull's own byte bound (`max_bytes`) is not used: the broker may end such a pull without a word, and
            // the client then waits for its expiry.
            let mut batch = consumer
                .batch()
                .max_messages(self.batch_size())
                .expires(BATCH_EXPIRES)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut received = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| e.to_string())?;
                received += 1;
                self.weigh(message.payload.len());
                let info = message.info().map_err(|e| e.to_string())?;
                // Without acknowledgements a delivered message is gone for this consumer: one that was lost on
                // the way (a connection dropped mid-batch) shows as a jump, and only a new consumer gets it again.
                if info.consumer_sequence != delivered + 1 {
                    return Err(format!(
                        "the consumer's delivery {} follows {delivered}: messages were lost on the way",
                        info.consumer_sequence
                    ));
                }
                delivered = info.consumer_sequence;
                let sequence = info.stream_sequence;
                if self.floor().is_some_and(|floor| sequence <= floor) {
                    continue;
                }
                self.note_jump(sequence);
                if self.role == Role::Feed {
                    self.counts.pending.store(info.pending, Ordering::Relaxed);
                }
                let decoded = wire::decode(message.headers.as_ref(), &message.payload, sequence);
                self.last = Some(sequence);
                match decoded {
                    Ok(decoded) => {
                        if !self.feeder.send(decoded) {
                            return Ok(());
                        }
                    }
                    Err(error) if self.role == Role::Feed => {
                        self.counts.undecodable.fetch_add(1, Ordering::Relaxed);
                        self.counts.note_error(&format!(
                            "stream message {sequence} skipped, not a certstream message: {error}"
                        ));
                    }
                    // Counted and logged when the live feed read it.
                    Err(_) => {}
                }
            }
            if self.feeder.is_closed() {
                return Ok(());
            }
            if received == 0 {
                // A pull to a consumer the broker no longer has (deleted with its stream, or after a restart) may
                // just expire, with no error: ask for the consumer, so that its loss ends it.
                consumer
                    .info()
                    .await
                    .map_err(|e| format!("the consumer: {e}"))?;
            }
        }
    }

    /// Messages the next pull asks for: as many as the room left holds at the estimated weight (at least one).
    fn batch_size(&self) -> usize {
        (self.feeder.room_bytes() / self.message_estimate).clamp(1, BATCH_MESSAGES)
    }

    /// Learns from a message of `bytes`: the estimate jumps to a larger message and decays by 1/64 per message.
    fn weigh(&mut self, bytes: usize) {
        let decayed = self.message_estimate - self.message_estimate / 64;
        self.message_estimate = decayed.max(bytes).max(1 << 10);
    }

    /// What was handed over already, or is the client's already: the last sequence read, else the start cursor.
    fn floor(&self) -> Option<u64> {
        match (self.last, self.start) {
            (Some(last), _) | (None, ReplayStart::After(last)) => Some(last),
            (None, ReplayStart::Since(_)) => None,
        }
    }

    /// Counts the sequences between the last message handed over and `sequence` (the stream removed them before
    /// they were read: its age and byte limits). A replay's are counted, not logged nor kept as the last error:
    /// any client can ask for a cursor the stream no longer holds.
    fn note_jump(&self, sequence: u64) {
        let Some(last) = self.floor() else {
            return;
        };
        let jumped = sequence - last - 1;
        if jumped == 0 {
            return;
        }
        match self.role {
            Role::Feed => {
                self.counts.skipped.fetch_add(jumped, Ordering::Relaxed);
                self.counts.note_error(&format!(
                    "{jumped} stream messages after {last} were removed by the stream's limits before they were \
                     read: raise --nats-max-bytes or --nats-max-age"
                ));
            }
            Role::Replay => {
                self.counts
                    .replays_truncated
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn deliver_policy(start: ReplayStart) -> consumer::DeliverPolicy {
    match start {
        ReplayStart::After(cursor) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: cursor.saturating_add(1),
        },
        ReplayStart::Since(time) => {
            let nanos = time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            // A time past what JetStream can name (after the year 9999) has no message yet: from now on.
            match i128::try_from(nanos).map(time::OffsetDateTime::from_unix_timestamp_nanos) {
                Ok(Ok(start_time)) => consumer::DeliverPolicy::ByStartTime { start_time },
                _ => consumer::DeliverPolicy::New,
            }
        }
    }
}

/// The counters at one moment.
struct ReaderStats {
    received: u64,
    cursor: u64,
    pending: u64,
    skipped: u64,
    consumer_restarts: u64,
    undecodable: u64,
    stream_resets: u64,
    replays_truncated: u64,
    replays: u64,
    last_error: Option<String>,
}

const METRICS: &[Metric<ReaderStats>] = &[
    Metric::counter(
        "certstream_stream_received_total",
        "stream.received",
        "Messages read from the JetStream stream and published to this instance's clients.",
        |s| s.received,
    ),
    Metric::gauge(
        "certstream_stream_cursor",
        "stream.cursor",
        "The cursor (stream sequence) of the last message published to this instance's clients.",
        |s| s.cursor,
    ),
    Metric::gauge(
        "certstream_stream_pending",
        "stream.pending",
        "Messages in the stream after the last one this instance read (how far behind the stream it is).",
        |s| s.pending,
    ),
    Metric::counter(
        "certstream_stream_skipped_total",
        "stream.skipped",
        "Stream messages removed by the stream's limits before this instance read them (lost to its clients).",
        |s| s.skipped,
    ),
    Metric::counter(
        "certstream_stream_consumer_restarts_total",
        "stream.consumer_restarts",
        "Stream consumers created again after a failure, after the last message they handed over.",
        |s| s.consumer_restarts,
    ),
    Metric::counter(
        "certstream_stream_undecodable_total",
        "stream.undecodable",
        "Stream messages skipped because they are not certstream messages.",
        |s| s.undecodable,
    ),
    Metric::counter(
        "certstream_stream_resets_total",
        "stream.resets",
        "Times the stream's sequences went back under a reader (the stream was deleted and created again).",
        |s| s.stream_resets,
    ),
    Metric::counter(
        "certstream_stream_replays_truncated_total",
        "stream.replays_truncated",
        "Replays that jumped over messages the stream no longer holds (a cursor older than its first message, or \
         messages removed by its limits during the replay).",
        |s| s.replays_truncated,
    ),
    Metric::gauge(
        "certstream_stream_replays",
        "stream.replays",
        "Stream consumers reading history for clients now (at most --nats-max-replays).",
        |s| s.replays,
    ),
];

const FACTS: &[Fact<ReaderStats>] = &[Fact {
    stats: "stream.last_error",
    read: |s| s.last_error.as_deref().map_or(Value::Null, Value::from),
}];

impl StatusReporter for StreamReader {
    fn report(&self, out: &mut Report<'_>) {
        let counts = &self.counts;
        let stats = ReaderStats {
            received: counts.received.load(Ordering::Relaxed),
            cursor: counts.cursor.load(Ordering::Relaxed),
            pending: counts.pending.load(Ordering::Relaxed),
            skipped: counts.skipped.load(Ordering::Relaxed),
            consumer_restarts: counts.consumer_restarts.load(Ordering::Relaxed),
            undecodable: counts.undecodable.load(Ordering::Relaxed),
            stream_resets: counts.stream_resets.load(Ordering::Relaxed),
            replays_truncated: counts.replays_truncated.load(Ordering::Relaxed),
            replays: counts.replays.load(Ordering::Relaxed) as u64,
            last_error: lock(&counts.last_error).clone(),
        };
        out.metrics(METRICS, &stats);
        out.facts(FACTS, &stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn a_start_names_the_first_message_wanted() {
        assert_eq!(
            deliver_policy(ReplayStart::After(0)),
            consumer::DeliverPolicy::ByStartSequence { start_sequence: 1 }
        );
        assert_eq!(
            deliver_policy(ReplayStart::After(u64::MAX)),
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: u64::MAX
            }
        );
        let since = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(
            deliver_policy(ReplayStart::Since(since)),
            consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                    1_700_000_000_500_000_000
                )
                .unwrap()
            }
        );
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 * 31_557_600);
        assert_eq!(
            deliver_policy(ReplayStart::Since(far)),
            consumer::DeliverPolicy::New,
            "after the year 9999: nothing yet, not everything"
        );
    }
}
