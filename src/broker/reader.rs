//! Reading the stream back (relays, and the ingester's own clients with `--nats-url`): every message clients see
//! comes from the stream, so every instance serves the same bytes with the same cursors.
//!
//! Each reader of the stream is a JetStream ordered consumer on the broker's thread, from a [`ReplayStart`]; it
//! decodes each message there ([`wire::decode`]: the reactor gets ready frames) and hands it over through a
//! [`Replay`], bounded in bytes: while the reactor's end is full the consumer is not read, so a slow reader slows
//! the consumer instead of growing a queue. When the consumer fails (the broker is down, restarted, the consumer
//! deleted) it is created again from the last sequence handed over: no gap and no duplicate, however long the
//! outage.
//!
//! The hub's live feed ([`StreamReader::feed`]) is one reader, from the stream's end as it was at start; each
//! client that starts from a cursor has its own ([`ReplaySource::open`]), at most `--nats-max-replays` at once.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;

use super::{NatsConfig, Shared, wire};
use crate::cursor::{Replay, ReplayFeeder, ReplaySource, ReplayStart, replay_channel};
use crate::hub::Hub;
use crate::metrics::{Metric, Report, StatusReporter};

/// Bytes of decoded messages the hub's live feed holds ahead of the hub (about a second of the firehose).
const LIVE_FEED_BYTES: usize = 16 << 20;

/// Bytes of decoded messages a client's replay holds ahead of that client's queue.
const REPLAY_BYTES: usize = 1 << 20;

/// Messages a consumer asks the broker for at once: what the client library holds beyond the [`Replay`]'s budget
/// (about a megabyte at the firehose's typical 10 KB per message).
const CONSUMER_BATCH: i64 = 128;

/// While the reactor's end is full, the consumer looks again this often.
const ROOM_CHECK: Duration = Duration::from_millis(2);

/// A reader waiting for the next message looks this often whether its reactor's end is gone (the client left).
const CLOSED_CHECK: Duration = Duration::from_secs(1);

/// Waits before a failed consumer is created again: doubling from the first to the last.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

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
    shared: Arc<Shared>,
}

#[derive(Default)]
struct ReaderCounts {
    /// Messages the live feed published to the hub, and the cursor of the last one.
    received: AtomicU64,
    cursor: AtomicU64,
    consumer_restarts: AtomicU64,
    undecodable: AtomicU64,
    /// Replays whose cursor was older than the stream's first message (the stream's limits removed the rest).
    replays_truncated: AtomicU64,
    /// Client replays reading now (the live feed not included).
    replays: AtomicUsize,
}

impl StreamReader {
    pub(super) fn new(
        runtime: tokio::runtime::Handle,
        context: jetstream::Context,
        config: &NatsConfig,
        start_after: u64,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            runtime,
            context,
            stream: config.stream.clone(),
            subject: wire::subject(&config.subject_prefix),
            start_after,
            max_replays: config.max_replays,
            counts: Arc::default(),
            shared,
        }
    }

    /// Publishes the stream to `hub`, message by message as the hub's admission allows (clients that keep up are
    /// never out-run; the stream holds what waits). Returns only if the broker's thread is gone.
    pub async fn feed(&self, hub: Hub) {
        let mut replay = self.start(ReplayStart::After(self.start_after), LIVE_FEED_BYTES, None);
        let gate = hub.gate();
        loop {
            gate.admitted().await;
            let Some(message) = replay.next().await else {
                return;
            };
            let cursor = message.meta.cursor.unwrap_or_default();
            hub.publish(&Rc::new(message));
            self.counts.received.fetch_add(1, Ordering::Relaxed);
            self.counts.cursor.store(cursor, Ordering::Relaxed);
        }
    }

    /// A reader from `start` on the broker's thread; `replays` is decremented when it ends.
    fn start(
        &self,
        start: ReplayStart,
        budget: usize,
        replays: Option<Arc<ReaderCounts>>,
    ) -> Replay {
        let (feeder, replay) = replay_channel(budget);
        let reader = Reader {
            context: self.context.clone(),
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            next: start,
            feeder,
            counts: self.counts.clone(),
            shared: self.shared.clone(),
        };
        self.runtime.spawn(async move {
            reader.run().await;
            if let Some(counts) = replays {
                counts.replays.fetch_sub(1, Ordering::Relaxed);
            }
        });
        replay
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
        Ok(self.start(start, REPLAY_BYTES, Some(self.counts.clone())))
    }
}

/// One ordered consumer's life on the broker's thread.
struct Reader {
    context: jetstream::Context,
    stream: String,
    subject: String,
    /// Where the consumer (re)starts: after the last message handed over.
    next: ReplayStart,
    feeder: ReplayFeeder,
    counts: Arc<ReaderCounts>,
    shared: Arc<Shared>,
}

impl Reader {
    /// Reads until the reactor's end is gone, creating the consumer again after each failure: at once after one
    /// that had read something, then after pauses that grow while failures go on.
    async fn run(mut self) {
        let mut pause = RETRY_PAUSE.0;
        let mut first = true;
        loop {
            let before = self.next;
            match self.consume(first).await {
                Ok(()) => return,
                Err(error) => {
                    self.counts
                        .consumer_restarts
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .note_error(&format!("reading the stream {}: {error}", self.stream));
                }
            }
            first = false;
            if self.feeder.is_closed() {
                return;
            }
            if self.next != before {
                pause = RETRY_PAUSE.0;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE.1);
        }
    }

    /// One consumer, until it fails (`Err`) or the reactor's end is gone (`Ok`).
    async fn consume(&mut self, first: bool) -> Result<(), String> {
        let stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        if first && let ReplayStart::After(cursor) = self.next {
            let first_sequence = stream.cached_info().state.first_sequence;
            if cursor.saturating_add(1) < first_sequence && cursor > 0 {
                self.counts
                    .replays_truncated
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.note_error(&format!(
                    "a replay from cursor {cursor} starts at {first_sequence}: the stream no longer holds the \
                     messages between (its age and byte limits)"
                ));
            }
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: deliver_policy(self.next),
                max_batch: CONSUMER_BATCH,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            while !self.feeder.has_room() {
                if self.feeder.is_closed() {
                    return Ok(());
                }
                tokio::time::sleep(ROOM_CHECK).await;
            }
            let message = match tokio::time::timeout(CLOSED_CHECK, messages.next()).await {
                Err(_) if self.feeder.is_closed() => return Ok(()),
                Err(_) => continue,
                Ok(None) => return Err("the consumer ended".to_owned()),
                Ok(Some(Err(error))) => return Err(error.to_string()),
                Ok(Some(Ok(message))) => message,
            };
            let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
            match wire::decode(message.headers.as_ref(), &message.payload, sequence) {
                Ok(decoded) => {
                    if !self.feeder.send(decoded) {
                        return Ok(());
                    }
                }
                Err(error) => {
                    self.counts.undecodable.fetch_add(1, Ordering::Relaxed);
                    self.shared.note_error(&format!(
                        "stream message {sequence} skipped, not a certstream message: {error}"
                    ));
                }
            }
            self.next = ReplayStart::After(sequence);
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
    consumer_restarts: u64,
    undecodable: u64,
    replays_truncated: u64,
    replays: u64,
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
    Metric::counter(
        "certstream_stream_consumer_restarts_total",
        "stream.consumer_restarts",
        "Stream consumers created again after a failure, from the last message they handed over.",
        |s| s.consumer_restarts,
    ),
    Metric::counter(
        "certstream_stream_undecodable_total",
        "stream.undecodable",
        "Stream messages skipped because they are not certstream messages.",
        |s| s.undecodable,
    ),
    Metric::counter(
        "certstream_stream_replays_truncated_total",
        "stream.replays_truncated",
        "Replays from a cursor older than the stream's first message (the messages between were removed).",
        |s| s.replays_truncated,
    ),
    Metric::gauge(
        "certstream_stream_replays",
        "stream.replays",
        "Clients reading history from the stream now (at most --nats-max-replays).",
        |s| s.replays,
    ),
];

impl StatusReporter for StreamReader {
    fn report(&self, out: &mut Report<'_>) {
        let counts = &self.counts;
        let stats = ReaderStats {
            received: counts.received.load(Ordering::Relaxed),
            cursor: counts.cursor.load(Ordering::Relaxed),
            consumer_restarts: counts.consumer_restarts.load(Ordering::Relaxed),
            undecodable: counts.undecodable.load(Ordering::Relaxed),
            replays_truncated: counts.replays_truncated.load(Ordering::Relaxed),
            replays: counts.replays.load(Ordering::Relaxed) as u64,
        };
        out.metrics(METRICS, &stats);
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
