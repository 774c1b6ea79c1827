//! The publish step behind the pollers: each delivered entry is stamped with the time it was seen, built once into
//! a [`Message`] (metadata and three frames, [`MessageBuilder`]) and handed to every [`Output`]: the [`Hub`] that
//! serves the clients, and any other output `main` adds.
//!
//! One [`Publisher`] (one builder, so one chain cache) serves every log; each log's poller gets its own [`LogSink`],
//! which counts what that log published and what it lost to certificates that do not parse.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::hub::{self, Hub};
use crate::log_throttle::LogThrottle;
use crate::message::{
    BuildCounters, BuildError, BuildLimits, LogSource, Message, MessageBuilder, seen_now,
};
use crate::metrics::{Metric, Report, StatusReporter};
use certstream_ct::entry::LogEntry;

/// Where pollers deliver entries.
pub trait EntrySink {
    /// Entry `index` of `log`, delivered exactly once and in index order per log. `chain` is the issuer chain as
    /// DER, issuer first (from `extra_data`, or the issuers a tiled log's fingerprints resolved to).
    fn deliver(&self, log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]);

    /// The gate pollers pass before delivering (see [`crate::ingest::pacing`]): `None` for a sink that never falls
    /// behind. No default: a sink that wraps another must pass its gate on, or ingestion would stop waiting for
    /// clients.
    fn gate(&self) -> Option<Gate>;
}

/// A consumer of every published message (the hub; later a broker). Called on the reactor for every message: it
/// must not block, and it bounds by bytes whatever it keeps.
pub trait Output {
    /// Takes one message; the `Rc` may be kept (no copy of the frames).
    fn publish(&self, message: &Rc<Message>);
}

impl Output for Hub {
    fn publish(&self, message: &Rc<Message>) {
        Hub::publish(self, message);
    }
}

/// An output with a bounded buffer (the broker): ingestion waits while it has no room.
pub trait Room {
    /// Whether another message may be published (checked before every message).
    fn has_room(&self) -> bool;

    /// How often a waiting poller looks again (the room is made on another thread, which cannot wake the reactor).
    fn check_every(&self) -> Duration;
}

/// Where an output has made each log durable: the state file saves, per log, at most this position.
pub trait DurablePositions {
    /// The position to save for `log_id`, whose entries before `next_index` were published: at most `next_index`.
    fn durable(&self, log_id: &str, next_index: u64) -> u64;
}

/// What pollers pass before delivering: the hub's admission (clients that keep up are not behind) and, when an
/// output has a bounded buffer, room in it. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    hub: hub::Gate,
    room: Option<Rc<dyn Room>>,
}

impl Gate {
    /// Waits for the hub's admission only.
    pub fn new(hub: hub::Gate) -> Self {
        Self { hub, room: None }
    }

    /// Also waits for room in `room`.
    pub fn with_room(self, room: Rc<dyn Room>) -> Self {
        Self {
            room: Some(room),
            ..self
        }
    }

    /// True while ingestion may publish. Checked before every message.
    pub(crate) fn admits(&self) -> bool {
        self.hub.admits() && self.room.as_ref().is_none_or(|room| room.has_room())
    }

    /// Resolves once ingestion may publish.
    pub(crate) async fn admitted(&self) {
        loop {
            if !self.hub.admits() {
                self.hub.admitted().await;
            }
            match &self.room {
                Some(room) if !room.has_room() => monoio::time::sleep(room.check_every()).await,
                _ if self.hub.admits() => return,
                _ => {}
            }
        }
    }
}

impl From<hub::Gate> for Gate {
    fn from(hub: hub::Gate) -> Self {
        Self::new(hub)
    }
}

/// Builds and publishes messages for every log.
pub struct Publisher {
    builder: RefCell<MessageBuilder>,
    outputs: Vec<Rc<dyn Output>>,
    /// What pollers wait on before delivering (the hub's admission: see [`crate::hub::admission`]).
    gate: Option<Gate>,
}

impl Publisher {
    /// Publishes to each of `outputs`, building messages within `limits`; pollers pass `gate` before delivering.
    pub fn new(limits: BuildLimits, outputs: Vec<Rc<dyn Output>>, gate: Option<Gate>) -> Self {
        Self {
            builder: RefCell::new(MessageBuilder::new(limits)),
            outputs,
            gate,
        }
    }

    /// Publishes to `hub` only, and waits on its gate (what the unit tests of the publish step's users need).
    #[cfg(test)]
    pub(crate) fn to_hub(hub: &Hub, limits: BuildLimits) -> Self {
        Self::new(limits, vec![Rc::new(hub.clone())], Some(hub.gate().into()))
    }

    /// A sink for one log's poller, named `log` in warnings.
    pub fn sink(self: &Rc<Self>, log: &str) -> LogSink {
        LogSink {
            publisher: self.clone(),
            log: log.to_owned(),
            counts: Rc::default(),
            skip_warnings: LogThrottle::new(Duration::from_secs(1)),
        }
    }
}

/// What one log's entries became.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Messages published.
    pub published: Cell<u64>,
    /// Entries whose certificate could not be parsed (no message; logged).
    pub rejected: Cell<u64>,
    /// Entries whose certificate or message was over its byte budget (no message; logged).
    pub oversized: Cell<u64>,
}

/// One log's entrance to the [`Publisher`].
pub struct LogSink {
    publisher: Rc<Publisher>,
    log: String,
    counts: Rc<SinkCounts>,
    /// Skipped entries are logged at most once a second.
    skip_warnings: LogThrottle,
}

impl LogSink {
    /// This log's counters, shared for `/stats`.
    pub fn counts(&self) -> Rc<SinkCounts> {
        self.counts.clone()
    }

    /// The same sink counting into `counts` (a restarted poller's log keeps its totals).
    pub(crate) fn with_counts(self, counts: Rc<SinkCounts>) -> Self {
        Self { counts, ..self }
    }
}

impl EntrySink for LogSink {
    fn deliver(&self, log: &LogSource, index: u64, entry: &LogEntry<'_>, chain: &[&[u8]]) {
        let seen = seen_now();
        let built = self
            .publisher
            .builder
            .borrow_mut()
            .build(log, index, entry, chain, seen);
        match built {
            Ok(message) => {
                let message = Rc::new(message);
                // One output's panic must not keep the message from the others (the broker's saved positions promise
                // durability); it is raised again once all had it, so the entry's panic boundary logs and counts it.
                let mut panicked = None;
                for output in &self.publisher.outputs {
                    let publish = AssertUnwindSafe(|| output.publish(&message));
                    if let Err(payload) = std::panic::catch_unwind(publish) {
                        panicked.get_or_insert(payload);
                    }
                }
                if let Some(payload) = panicked {
                    std::panic::resume_unwind(payload);
                }
                bump(&self.counts.published);
            }
            Err(error) => {
                if let Some(held_back) = self.skip_warnings.allow(Instant::now()) {
                    tracing::warn!(log = %self.log, index, %error, held_back, "entry skipped");
                }
                bump(match error {
                    BuildError::Leaf(_) => &self.counts.rejected,
                    BuildError::Oversized { .. } => &self.counts.oversized,
                });
            }
        }
    }

    fn gate(&self) -> Option<Gate> {
        self.publisher.gate.clone()
    }
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

const METRICS: &[Metric<BuildCounters>] = &[
    Metric::counter(
        "certstream_messages_built_total",
        "messages.built",
        "Log entries turned into messages.",
        |c| c.built,
    ),
    Metric::counter(
        "certstream_leaf_rejected_total",
        "messages.leaf_rejected",
        "Log entries skipped because their certificate did not parse.",
        |c| c.leaf_rejected,
    ),
    Metric::counter(
        "certstream_oversized_certificates_total",
        "messages.oversized_certificates",
        "Log entries skipped because their certificate was over --max-certificate-bytes.",
        |c| c.oversized_certificates,
    ),
    Metric::counter(
        "certstream_oversized_messages_total",
        "messages.oversized_messages",
        "Log entries skipped because a message was over --max-message-bytes.",
        |c| c.oversized_messages,
    ),
    Metric::counter(
        "certstream_oversized_chain_certificates_total",
        "messages.oversized_chain_certificates",
        "Chain certificates left out because they were over --max-chain-certificate-bytes.",
        |c| c.oversized_chain_certificates,
    ),
    Metric::counter(
        "certstream_chain_cache_evicted_total",
        "messages.chain_cache_evicted",
        "Chain certificates dropped from the cache to stay within --chain-cache-bytes.",
        |c| c.chain_cache_evicted,
    ),
    Metric::counter(
        "certstream_precert_tbs_fallbacks_total",
        "messages.precert_tbs_fallbacks",
        "Precertificates emitted from the leaf's TBS because the pre-certificate did not parse.",
        |c| c.precert_tbs_fallbacks,
    ),
    Metric::counter(
        "certstream_degraded_fields_total",
        "messages.degraded_fields",
        "Certificate fields rendered lossily or left out.",
        |c| c.degraded_fields,
    ),
    Metric::counter(
        "certstream_chain_rejected_total",
        "messages.chain_rejected",
        "Chain certificates left out because they did not parse.",
        |c| c.chain_rejected,
    ),
    Metric::counter(
        "certstream_chain_cache_hits_total",
        "messages.chain_cache_hits",
        "Chain certificates served from the cache.",
        |c| c.chain_cache_hits,
    ),
    Metric::counter(
        "certstream_chain_cache_misses_total",
        "messages.chain_cache_misses",
        "Chain certificates parsed and added to the cache.",
        |c| c.chain_cache_misses,
    ),
];

impl StatusReporter for Publisher {
    fn report(&self, out: &mut Report<'_>) {
        out.metrics(METRICS, &self.builder.borrow().counters());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::message::SourceKind;
    use crate::metrics::tests::{assert_both_outputs_agree, stats_of, text_of};
    use certstream_ct::entry::{Chain, EntryType};

    fn entry(leaf: &[u8]) -> LogEntry<'_> {
        LogEntry {
            timestamp_ms: 1_700_000_000_000,
            entry_type: EntryType::X509,
            leaf,
            issuer_key_hash: None,
            pre_certificate: None,
            chain: Chain::Certificates(Vec::new()),
        }
    }

    #[test]
    fn unparseable_entries_are_counted_not_published() {
        let hub = Hub::new(8);
        let publisher = Rc::new(Publisher::to_hub(&hub, BuildLimits::default()));
        let sink = publisher.sink("test log");
        let source = LogSource::new("test log", "https://log.example/", SourceKind::Rfc6962);
        sink.deliver(&source, 7, &entry(b"not a certificate"), &[]);
        let counts = sink.counts();
        assert_eq!((counts.published.get(), counts.rejected.get()), (0, 1));
        assert_eq!(hub.stats().published, 0);
        assert_eq!(stats_of(&*publisher)["messages"]["leaf_rejected"], 1);
        assert!(text_of(&*publisher).contains("certstream_leaf_rejected_total 1\n"));
        assert_both_outputs_agree(&[&*publisher]);
    }

    #[test]
    fn certificates_and_messages_over_their_budgets_are_skipped_and_counted() {
        // 2,000 names: a valid ~50 KiB certificate whose full message is ~4× that.
        let names: Vec<String> = (0..2_000)
            .map(|i| format!("host-{i:05}.many-names.example"))
            .collect();
        let big = rcgen::generate_simple_self_signed(names).unwrap();
        let der = big.cert.der().to_vec();
        let small = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let small = small.cert.der().to_vec();
        let source = LogSource::new("test log", "https://log.example/", SourceKind::Rfc6962);
        for (limits, oversized) in [
            (
                BuildLimits {
                    max_certificate_bytes: der.len() - 1,
                    ..BuildLimits::default()
                },
                "oversized_certificates",
            ),
            (
                BuildLimits {
                    max_message_bytes: 2 * der.len(),
                    ..BuildLimits::default()
                },
                "oversized_messages",
            ),
        ] {
            let hub = Hub::new(8);
            let publisher = Rc::new(Publisher::to_hub(&hub, limits));
            let sink = publisher.sink("test log");
            sink.deliver(&source, 1, &entry(&der), &[]);
            sink.deliver(&source, 2, &entry(&small), &[]);
            let counts = sink.counts();
            assert_eq!(
                (
                    counts.published.get(),
                    counts.oversized.get(),
                    counts.rejected.get()
                ),
                (1, 1, 0),
                "{oversized}"
            );
            assert_eq!(
                stats_of(&*publisher)["messages"][oversized],
                1,
                "{oversized}"
            );
            assert!(text_of(&*publisher).contains(&format!("certstream_{oversized}_total 1\n")));
        }
    }

    #[test]
    fn certificates_are_published_once_per_entry() {
        let hub = Hub::new(8);
        let publisher = Rc::new(Publisher::to_hub(&hub, BuildLimits::default()));
        let sink = publisher.sink("test log");
        let source = LogSource::new("test log", "https://log.example/", SourceKind::Rfc6962);
        let cert = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let der = cert.cert.der().to_vec();
        sink.deliver(&source, 41, &entry(&der), &[]);
        sink.deliver(&source, 42, &entry(&der), &[]);
        assert_eq!(sink.counts().published.get(), 2);
        assert_eq!(hub.stats().published, 2);
        let latest = hub.latest(crate::message::StreamKind::Lite).unwrap();
        let message: Value = serde_json::from_slice(latest.payload()).unwrap();
        assert_eq!(message["data"]["cert_index"], 42);
        assert_eq!(
            message["data"]["leaf_cert"]["all_domains"],
            json!(["a.example", "rcgen self signed cert"])
        );
    }

    /// A buffer whose room the test sets.
    struct Switch(Cell<bool>);

    impl Room for Switch {
        fn has_room(&self) -> bool {
            self.0.get()
        }

        fn check_every(&self) -> Duration {
            Duration::from_millis(1)
        }
    }

    #[test]
    fn the_gate_waits_for_room_as_well_as_for_the_hub() {
        crate::runtime::block_on(async {
            let hub = Hub::new(8);
            assert!(
                Gate::new(hub.gate()).admits(),
                "without a room: the hub's admission"
            );
            let room = Rc::new(Switch(Cell::new(false)));
            let gate = Gate::new(hub.gate()).with_room(room.clone());
            assert!(!gate.admits());
            let waiting = monoio::spawn({
                let gate = gate.clone();
                async move {
                    gate.admitted().await;
                    Instant::now()
                }
            });
            monoio::time::sleep(Duration::from_millis(20)).await;
            let made = Instant::now();
            room.0.set(true);
            assert!(waiting.await >= made, "admitted only once there is room");
            assert!(gate.admits());
        })
        .unwrap();
    }

    /// An output that keeps what it was given.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<Rc<Message>>>);

    impl Output for Recorder {
        fn publish(&self, message: &Rc<Message>) {
            self.0.borrow_mut().push(message.clone());
        }
    }

    /// An output that panics on every message.
    struct Panicking;

    impl Output for Panicking {
        fn publish(&self, _: &Rc<Message>) {
            panic!("a bug in an output");
        }
    }

    #[test]
    fn a_panicking_output_does_not_keep_the_message_from_the_others() {
        let recorder = Rc::new(Recorder::default());
        let outputs: Vec<Rc<dyn Output>> = vec![Rc::new(Panicking), recorder.clone()];
        let publisher = Rc::new(Publisher::new(BuildLimits::default(), outputs, None));
        let sink = publisher.sink("test log");
        let source = LogSource::new("test log", "https://log.example/", SourceKind::Rfc6962);
        let cert = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let delivered =
            crate::panic_boundary::catch(|| sink.deliver(&source, 3, &entry(cert.cert.der()), &[]));
        assert!(
            delivered.is_err(),
            "the panic still reaches the entry's boundary"
        );
        assert_eq!(
            recorder.0.borrow().len(),
            1,
            "the next output got the message"
        );
        assert_eq!(sink.counts().published.get(), 0);
    }

    #[test]
    fn every_output_gets_the_message_with_its_metadata() {
        let hub = Hub::new(8);
        let recorders = [Rc::new(Recorder::default()), Rc::new(Recorder::default())];
        let outputs: Vec<Rc<dyn Output>> = vec![
            recorders[0].clone(),
            Rc::new(hub.clone()),
            recorders[1].clone(),
        ];
        let publisher = Rc::new(Publisher::new(BuildLimits::default(), outputs, None));
        let sink = publisher.sink("test log");
        assert!(sink.gate().is_none(), "the gate is the one given");
        let source = LogSource::new("test log", "https://log.example/", SourceKind::Rfc6962)
            .with_log_id("bG9nIGlk");
        let cert = rcgen::generate_simple_self_signed(vec!["B.example".to_owned()]).unwrap();
        sink.deliver(&source, 9, &entry(cert.cert.der()), &[]);
        let [first, second] = recorders.map(|r| r.0.take());
        assert_eq!((first.len(), second.len(), hub.published()), (1, 1, 1));
        assert!(Rc::ptr_eq(&first[0], &second[0]), "one message, shared");
        let message = &first[0];
        let json: Value = serde_json::from_slice(message.frames.full.payload()).unwrap();
        let leaf = &json["data"]["leaf_cert"];
        let meta = &message.meta;
        assert_eq!(&*meta.log_id, "bG9nIGlk");
        assert_eq!(meta.index, 9);
        assert_eq!(meta.entry_type, EntryType::X509);
        assert_eq!(json!(meta.all_domains), leaf["all_domains"]);
        assert_eq!(json!(meta.issuer), leaf["issuer"]["aggregated"]);
        assert_eq!(json!(meta.fingerprint), leaf["sha256"]);
    }
}
