//! Fan-out: every published message reaches every connected client as a shared, already-encoded frame.
//!
//! Single-threaded by design (one monoio thread): `Rc`, `RefCell` and `Cell`, no locks and no atomics on the
//! publish path. Publishing a message costs, per client, one `Rc` clone pushed onto that client's bounded ring and,
//! when the client's writer is parked, one wake-up; the frame bytes are never copied.
//!
//! Every client ring is bounded twice: in frames and in bytes (frames of the full stream can weigh megabytes). All
//! rings end at the newest frame, so together they hold at most about one budget of distinct frames per stream.
//!
//! Clients live in an `Rc`-swapped slab: joins and leaves only record the change; the next publish (or ping, or
//! shutdown) rebuilds one new `Rc<[…]>` snapshot, so a burst of thousands of connects or disconnects costs one
//! rebuild, and the publish loop iterates an immutable snapshot.
//!
//! Every published message gets the next sequence number (from 1), which travels with its frames in the rings: the
//! server-sent events stream shows it as the event's `id:` ([`EventIds`]), or the message's cursor when it has one
//! (JetStream: a client may start from a cursor or a time, [`catch_up`]). The hub keeps the last published messages
//! in a replay history bounded in bytes (`--replay-bytes`), so a client that reconnects with the id of the last
//! message it got can be filled with the ones it missed before it continues live ([`Hub::join_resuming`]). The
//! history is kept only while it can serve someone: while a resumable client is connected, and for
//! [`REPLAY_KEPT_AFTER_LAST_CLIENT`] after the last one left (time to reconnect); a server nobody reads over
//! server-sent events holds no history.
//!
//! Ingestion asks the hub's [`Gate`] before publishing: see [`admission`] for the rule that keeps pollers from
//! out-running the writers of clients that keep up.
//!
//! Which clients get a message: a client may hold a filter ([`crate::filter`]) and ask for deduplication
//! ([`dedup`]). The hub's filter registry evaluates every distinct filter once per message (not at all while no
//! client has one) and the dedup window is looked up once per message (while a client asked for it); each client
//! then costs one compare for each.

pub mod admission;
mod catch_up;
mod dedup;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::filter::{FilterStats, Registry, Selection, SpecMatcher};
use crate::message::{EncodedMessage, Message, StreamKind};
use certstream_ws::frame::Frame;

use admission::{Admission, Backlog, Standing};
pub use admission::{AdmissionStats, Gate};
pub(crate) use catch_up::CatchUp;
pub use catch_up::ReplayStats;

/// How long the replay history is kept filling after the last resumable client left.
pub(crate) const REPLAY_KEPT_AFTER_LAST_CLIENT: std::time::Duration =
    std::time::Duration::from_secs(60);

/// How often [`Hub::flushed`] looks at the clients' queues.
const FLUSH_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(2);

/// How many lite messages `/latest.json` shows.
pub(crate) const RECENT_LEN: usize = 25;

/// Bytes of data frames a writer takes per batch at most (at least one frame): a client that stops reading holds
/// its ring and one batch, so the batch must be bounded in bytes like the ring.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The byte bounds of the hub.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ByteBudget {
    /// Bytes of frames queued per client before the oldest is dropped.
    pub client_queue: usize,
    /// Messages larger than this are left out of [`Hub::latest`] and [`Hub::recent`], which together hold at
    /// most about this much per stream.
    pub latest: usize,
    /// Bytes of the published messages (all three variants) kept for resuming clients; 0 keeps none.
    pub replay: usize,
}

impl Default for ByteBudget {
    fn default() -> Self {
        let config = crate::config::Config::default();
        Self {
            client_queue: config.client_queue_bytes,
            latest: config.max_latest_bytes,
            replay: config.replay_bytes,
        }
    }
}

/// The fan-out hub. Cheap to clone (a handle to shared state); it is the publish entry point for the pollers and tests.
#[derive(Clone)]
pub struct Hub {
    state: Rc<HubState>,
}

struct HubState {
    ring_size: usize,
    budget: ByteBudget,
    started: Instant,
    event_ids: EventIds,
    /// The snapshot publish iterates; may still hold clients that left (flagged) until the next rebuild.
    slab: RefCell<Rc<[Rc<Client>]>>,
    joined: RefCell<Vec<Rc<Client>>>,
    left_since_rebuild: Cell<usize>,
    clients: [Cell<usize>; 3],
    /// Messages published since start: the sequence number of the last one.
    published: Cell<u64>,
    /// The last published messages, oldest first (their sequence numbers run up to `published`), at most
    /// `budget.replay` bytes together.
    history: RefCell<VecDeque<Rc<Message>>>,
    history_bytes: Cell<usize>,
    /// Connected clients that joined through [`Hub::join_resuming`] or [`Hub::join_from`] (they have event ids or
    /// cursors to resume from).
    resumable_clients: Cell<usize>,
    /// The cursor of the last published message that had one (JetStream).
    last_cursor: Cell<Option<u64>>,
    /// Clients started from a cursor or a time ([`Hub::join_from`]).
    replays: catch_up::ReplayCounters,
    /// Compiled size allowed to one regex (a resuming client's own filter is compiled within it).
    regex_size_limit: usize,
    /// When the last resumable client left (`None` before any did).
    last_resumable_left: Cell<Option<Instant>>,
    resumes_served: Cell<u64>,
    resumes_unavailable: Cell<u64>,
    dropped: Cell<u64>,
    /// Of `dropped`, the frames dropped because the ring was over its byte budget (not its frame count).
    dropped_for_bytes: Cell<u64>,
    /// Messages left out of `latest`/`recent` for being larger than the budget.
    latest_skipped: Cell<u64>,
    /// Latest message per stream, for `/example.json` and friends.
    latest: RefCell<[Option<Frame>; 3]>,
    /// The last [`RECENT_LEN`] lite messages, oldest first, at most `budget.latest` bytes together.
    recent: RefCell<VecDeque<Frame>>,
    recent_bytes: Cell<usize>,
    ping: Rc<Frame>,
    /// Woken when the last client leaves (graceful shutdown waits on it).
    empty_waker: RefCell<Option<Waker>>,
    admission: Rc<Admission>,
    /// The distinct filters of the clients.
    filters: Registry,
    /// Clients holding a filter, and clients that deduplicate.
    filtered_clients: Cell<usize>,
    dedup_clients: Cell<usize>,
    dedup: RefCell<dedup::DedupTable>,
    /// Messages not queued for a deduplicating client because it was offered the certificate already (summed
    /// over clients).
    duplicates_skipped: Cell<u64>,
}

/// What the hub lets clients ask for: filter limits and the deduplication window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// The bounds of client filters.
    pub filter_limits: crate::filter::Limits,
    /// How long a certificate's first publication is remembered for deduplicating clients.
    pub dedup_window: std::time::Duration,
    /// Bytes the deduplication table may hold (the oldest fingerprints leave first).
    pub dedup_bytes: usize,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        crate::config::Config::default().subscriptions
    }
}

/// Counters of the hub, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connected clients (every transport) per stream, in [`StreamKind::ALL`] order.
    pub clients: [usize; 3],
    /// Messages published since start.
    pub published: u64,
    /// Reconnecting clients filled from the replay history.
    pub resumes_served: u64,
    /// Reconnecting clients whose last event was not in the replay history (they start live).
    pub resumes_unavailable: u64,
    /// Messages in the replay history.
    pub history_messages: usize,
    /// Bytes of the messages in the replay history (three variants each).
    pub history_bytes: usize,
    /// Messages dropped from full client rings since start (summed over clients).
    pub dropped: u64,
    /// Of `dropped`, those dropped because a ring was over its byte budget.
    pub dropped_for_bytes: u64,
    /// Messages left out of `/latest.json` and the example routes for their size.
    pub latest_skipped: u64,
    /// Frames currently waiting in client rings (bounded by clients × ring size).
    pub queued: usize,
    /// The largest ring among connected clients.
    pub max_queued: usize,
    /// Bytes of frames waiting in client rings (summed over clients; frames shared between clients count once
    /// per client).
    pub queued_bytes: usize,
    /// The largest ring among connected clients, in bytes.
    pub max_queued_bytes: usize,
    /// Clients holding a filter.
    pub filtered_clients: usize,
    /// Clients that asked for deduplication.
    pub dedup_clients: usize,
    /// Messages skipped for deduplicating clients as repeats of a certificate (summed over clients).
    pub duplicates_skipped: u64,
    /// Fingerprints in the deduplication window.
    pub dedup_fingerprints: usize,
    /// Fingerprints evicted from the deduplication window early, for room.
    pub dedup_evicted: u64,
    /// The filter registry's counters.
    pub filters: FilterStats,
    /// Clients started from a cursor or a time.
    pub replays: ReplayStats,
}

/// The sequence number of what is not a published message (heartbeats, control frames): no event id.
pub(crate) const NO_SEQ: u64 = 0;

/// One entry of a client's ring: a shared frame, the sequence number of the message it carries ([`NO_SEQ`] for a
/// heartbeat, a control frame or a message replayed from the stream) and the message's cursor (JetStream).
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub frame: Rc<Frame>,
    pub seq: u64,
    pub cursor: Option<u64>,
}

impl Queued {
    fn control(frame: Rc<Frame>) -> Self {
        Self {
            frame,
            seq: NO_SEQ,
            cursor: None,
        }
    }

    /// Whether the entry is a message with an event id (its cursor, else its sequence number).
    pub(crate) fn has_id(&self) -> bool {
        self.cursor.is_some() || self.seq != NO_SEQ
    }
}

/// How a client that gave the id of the last event it got ([`Hub::join_resuming`]) was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// It gave no id: a new client, live.
    Live,
    /// Its ring was filled with the messages it missed (possibly none) before live ones.
    Replayed,
    /// Its last event is not in the replay history (too old, from before a restart, or not an id of ours): live.
    Unavailable,
}

/// The ids of the events of this process: a message's cursor in decimal when it has one (the same at every relay
/// and across restarts), else `<boot>-<seq>`, where `boot` is the start of the hub in Unix milliseconds, base 36,
/// so the ids of an earlier run (whose sequence numbers restart at 1) are never taken for this one's.
pub(crate) struct EventIds {
    boot: Box<str>,
}

impl EventIds {
    fn of_this_boot() -> Self {
        // A clock set before 1970 makes boot 0: still one value for this process.
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        Self {
            boot: base36(millis).into(),
        }
    }

    /// Writes the id of a queued message ([`Queued::has_id`]; into memory: it cannot fail but for lack of room,
    /// which the caller sizes).
    pub(crate) fn write(&self, queued: &Queued, out: &mut impl std::io::Write) {
        let _ = match queued.cursor {
            Some(cursor) => write!(out, "{cursor}"),
            None => write!(out, "{}-{}", self.boot, queued.seq),
        };
    }

    /// The sequence number an id of this process names; `None` for any other text.
    fn seq_of(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.split_once('-')?;
        if boot != &*self.boot || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        seq.parse().ok()
    }
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

fn kind_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Lite => 0,
        StreamKind::Full => 1,
        StreamKind::DomainsOnly => 2,
    }
}

impl Hub {
    /// A hub whose clients each queue at most `ring_size` frames, within the default byte budget and with the
    /// default slow-client grace period.
    pub fn new(ring_size: usize) -> Self {
        Self::with_budget(
            ring_size,
            ByteBudget::default(),
            admission::DEFAULT_SLOW_CLIENT_GRACE,
        )
    }

    /// The hub `config` describes (ring size, byte budgets, slow-client grace period).
    pub fn configured(config: &crate::config::Config) -> Self {
        let budget = ByteBudget {
            client_queue: config.client_queue_bytes,
            latest: config.max_latest_bytes,
            replay: config.replay_bytes,
        };
        Self::build(
            config.ring_size,
            budget,
            config.slow_client_grace,
            config.subscriptions,
        )
    }

    /// A hub whose clients each queue at most `ring_size` frames and `budget.client_queue` bytes; ingestion waits
    /// up to `grace` for a client whose socket is full before it stops waiting for it ([`admission`]).
    pub(crate) fn with_budget(
        ring_size: usize,
        budget: ByteBudget,
        grace: std::time::Duration,
    ) -> Self {
        Self::build(ring_size, budget, grace, SubscriptionConfig::default())
    }

    fn build(
        ring_size: usize,
        budget: ByteBudget,
        grace: std::time::Duration,
        subscriptions: SubscriptionConfig,
    ) -> Self {
        Self {
            state: Rc::new(HubState {
                ring_size: ring_size.max(1),
                budget,
                started: Instant::now(),
                event_ids: EventIds::of_this_boot(),
                slab: RefCell::new(Rc::from(Vec::new())),
                joined: RefCell::new(Vec::new()),
                left_since_rebuild: Cell::new(0),
                clients: Default::default(),
                published: Cell::new(0),
                history: RefCell::new(VecDeque::new()),
                history_bytes: Cell::new(0),
                resumable_clients: Cell::new(0),
                last_cursor: Cell::new(None),
                replays: catch_up::ReplayCounters::new(),
                last_resumable_left: Cell::new(None),
                resumes_served: Cell::new(0),
                resumes_unavailable: Cell::new(0),
                dropped: Cell::new(0),
                dropped_for_bytes: Cell::new(0),
                latest_skipped: Cell::new(0),
                latest: RefCell::new([None, None, None]),
                recent: RefCell::new(VecDeque::with_capacity(RECENT_LEN)),
                recent_bytes: Cell::new(0),
                ping: Rc::new(Frame::ping(b"")),
                empty_waker: RefCell::new(None),
                admission: Rc::new(Admission::new(grace)),
                filters: Registry::new(subscriptions.filter_limits),
                regex_size_limit: subscriptions.filter_limits.regex_size_limit,
                filtered_clients: Cell::new(0),
                dedup_clients: Cell::new(0),
                dedup: RefCell::new(dedup::DedupTable::new(
                    subscriptions.dedup_window,
                    subscriptions.dedup_bytes,
                )),
                duplicates_skipped: Cell::new(0),
            }),
        }
    }

    /// Ingestion's view of the hub: whether it may publish now (see [`admission`]).
    pub fn gate(&self) -> Gate {
        Gate::new(self.clone())
    }

    /// Publishes one message: queues its frame for every client of each stream whose filter it matches (and that
    /// was not offered its certificate already, for clients that deduplicate), records it as the latest and keeps
    /// it in the replay history.
    pub fn publish(&self, message: &Rc<Message>) {
        let state = &self.state;
        let seq = state.published.get() + 1;
        // First: clients that left release their filters before the evaluation.
        let slab = self.client_slab();
        if state.filtered_clients.get() > 0 {
            state.filters.evaluate(&message.meta, seq);
        }
        let now = Instant::now();
        let previous = self.previous_publication(&message.meta.fingerprint, seq, now);
        let frames = &message.frames;
        let cursor = message.meta.cursor;
        if cursor.is_some() && cursor < state.last_cursor.get() {
            self.stream_started_over(&slab);
        }
        let shared = StreamKind::ALL.map(|kind| Rc::new(frames.get(kind).clone()));
        for client in slab.iter() {
            if !client.selects(seq) || !client.takes_live(cursor) {
                continue;
            }
            if client.dedup && previous.is_some_and(|previous| previous > client.joined_at) {
                state
                    .duplicates_skipped
                    .set(state.duplicates_skipped.get() + 1);
                continue;
            }
            let frame = shared[kind_index(client.kind)].clone();
            client.push(Queued { frame, seq, cursor }, state, now);
        }
        state.published.set(seq);
        if cursor.is_some() {
            state.last_cursor.set(cursor);
        }
        self.keep_latest(frames);
        self.keep_for_replay(message, now);
    }

    /// Where the stream's feed starts: after this cursor (the stream's end when it was checked). Until the feed
    /// publishes, a client at or past it can go live at once.
    pub fn feed_starts_after(&self, cursor: u64) {
        let last = &self.state.last_cursor;
        if last.get().is_none() {
            last.set(Some(cursor));
        }
    }

    /// The stream's cursors went back (it was deleted and created again, and is read from its new start): the cursors the
    /// clients went live after and the history's name the old stream, so they are forgotten.
    fn stream_started_over(&self, clients: &[Rc<Client>]) {
        for client in clients {
            client.after.set(0);
        }
        self.state.history.borrow_mut().clear();
        self.state.history_bytes.set(0);
    }

    /// Appends the message to the replay history and forgets the oldest beyond its byte budget (a message over the
    /// whole budget is not kept, and neither is anything before it: the history stays a gapless run).
    fn keep_for_replay(&self, message: &Rc<Message>, now: Instant) {
        let state = &self.state;
        if state.budget.replay == 0 {
            return;
        }
        let mut history = state.history.borrow_mut();
        let in_use = state.resumable_clients.get() > 0
            || state.replays.catching_up.get() > 0
            || state
                .last_resumable_left
                .get()
                .is_some_and(|left| now.duration_since(left) < REPLAY_KEPT_AFTER_LAST_CLIENT);
        if !in_use {
            history.clear();
            state.history_bytes.set(0);
            return;
        }
        let mut bytes = state.history_bytes.get() + message.weight();
        history.push_back(message.clone());
        while bytes > state.budget.replay {
            match history.pop_front() {
                Some(old) => bytes -= old.weight(),
                None => break,
            }
        }
        state.history_bytes.set(bytes);
    }

    /// The sequence number of the previous publication of this certificate within the deduplication window,
    /// recording this one; nothing is kept while no client deduplicates.
    fn previous_publication(&self, fingerprint: &str, seq: u64, now: Instant) -> Option<u64> {
        let mut table = self.state.dedup.borrow_mut();
        if self.state.dedup_clients.get() == 0 {
            if table.len() > 0 {
                table.clear();
            }
            return None;
        }
        table.record(fingerprint, seq, now)
    }

    /// The filters of this hub's clients: stream requests intern theirs here ([`Selection::from_query`]).
    pub fn filters(&self) -> &Registry {
        &self.state.filters
    }

    /// Records the message for `/latest.json` and the example routes, leaving out the streams' variants that are
    /// over the byte budget (counted): those pages show the most recent messages that fit, never a huge one.
    fn keep_latest(&self, message: &EncodedMessage) {
        let state = &self.state;
        let limit = state.budget.latest;
        let mut skipped = false;
        let mut latest = state.latest.borrow_mut();
        for kind in StreamKind::ALL {
            let frame = message.get(kind);
            if frame.payload().len() <= limit {
                latest[kind_index(kind)] = Some(frame.clone());
            } else {
                skipped = true;
            }
        }
        let lite = &message.lite;
        if lite.payload().len() <= limit {
            let mut recent = state.recent.borrow_mut();
            let mut bytes = state.recent_bytes.get() + lite.payload().len();
            while recent.len() >= RECENT_LEN || (bytes > limit && !recent.is_empty()) {
                if let Some(old) = recent.pop_front() {
                    bytes -= old.payload().len();
                }
            }
            recent.push_back(lite.clone());
            state.recent_bytes.set(bytes);
        }
        if skipped {
            state.latest_skipped.set(state.latest_skipped.get() + 1);
        }
    }

    /// Queues the same frame for every client of every stream (heartbeats); not recorded as a latest message, and
    /// without a sequence number (not resumable). Not for clients catching up: their rings are kept for the
    /// replay, which never drops (and shows they are alive).
    pub(crate) fn broadcast(&self, frame: Frame) {
        let frame = Rc::new(frame);
        let now = Instant::now();
        for client in self.client_slab().iter() {
            if !client.catching_up.get() {
                client.push(Queued::control(frame.clone()), &self.state, now);
            }
        }
    }

    /// Asks every client's writer to send a ping, and frees the ring memory of clients with nothing queued: a burst
    /// grows a ring up to the ring size, and without this every client would keep that capacity for good.
    pub(crate) fn ping_all_and_shrink_idle_rings(&self) {
        for client in self.client_slab().iter() {
            client.queue_control(Control::Ping(self.state.ping.clone()));
            let mut ring = client.ring.borrow_mut();
            if ring.is_empty() {
                ring.shrink_to_fit();
            }
        }
    }

    /// Resolves once no client that keeps up has data frames queued or being written: at shutdown, once ingestion
    /// has stopped, what such clients were sent reaches them before the close frame (which discards the queue).
    /// Lagging clients are not waited for; the caller bounds the wait.
    pub async fn flushed(&self) {
        loop {
            // Not the clients catching up: their replays keep refilling them (they resume from their cursor).
            let pending = self.client_slab().iter().any(|client| {
                !(client.left.get()
                    || client.closing.get()
                    || client.catching_up.get()
                    || client.standing.is_lagging())
                    && (!client.ring.borrow().is_empty() || client.in_flight.get().frames > 0)
            });
            if !pending {
                return;
            }
            monoio::time::sleep(FLUSH_CHECK_EVERY).await;
        }
    }

    /// Queues the close frame (shutdown) for every client that has none queued yet: it is sent after any control
    /// frame already queued, and queued data is discarded.
    pub(crate) fn close_all(&self, close: Frame) {
        let close = Rc::new(close);
        for client in self.client_slab().iter() {
            client.queue_close_frame(close.clone());
        }
    }

    /// Registers a client of `kind` that resumes after the event `last_event_id` (its `Last-Event-ID`; `None`: a
    /// new client). When that event is in the replay history, the client's ring is first filled with the messages
    /// published after it, in the same step as the join: nothing can be published in between, so the client then
    /// continues live with no gap and no duplicate (a gap larger than the ring's budgets loses its oldest messages,
    /// counted as drops). Otherwise it starts live, and the answer says so (counted).
    pub(crate) fn join_resuming(
        &self,
        kind: StreamKind,
        selection: Selection,
        last_event_id: Option<&str>,
    ) -> (ClientHandle, Resume) {
        let client = self.join_resumable(kind, selection);
        let state = &self.state;
        let Some(id) = last_event_id else {
            return (client, Resume::Live);
        };
        let history = state.history.borrow();
        let published = state.published.get();
        let oldest = published + 1 - history.len() as u64;
        // The first message missed (`after + 1`) must be in the history, unless nothing was missed (`oldest` is at
        // least 1; an id beyond `published` is not ours).
        let Some(after) =
            (state.event_ids.seq_of(id)).filter(|&after| after >= oldest - 1 && after <= published)
        else {
            bump(&state.resumes_unavailable);
            return (client, Resume::Unavailable);
        };
        drop(history);
        let Ok(matcher) = self.matcher_of(&client) else {
            bump(&state.resumes_unavailable);
            return (client, Resume::Unavailable);
        };
        self.fill_from_history(&client, (after + 1 - oldest) as usize, matcher.as_ref());
        bump(&state.resumes_served);
        (client, Resume::Replayed)
    }

    /// Registers a client that can resume (it has event ids or cursors): while one is connected, and for a while
    /// after, the replay history is kept.
    fn join_resumable(&self, kind: StreamKind, selection: Selection) -> ClientHandle {
        let client = self.join(kind, selection);
        client.resumable.set(true);
        let resumable = &self.state.resumable_clients;
        resumable.set(resumable.get() + 1);
        client
    }

    /// The matcher of a client's own filter (`None`: no filter), for messages published before it joined.
    /// Missed messages are filtered like live ones, by the client's own filter alone (evaluating every client's
    /// filters per missed message would cost the whole registry, regex set included, thousands of times over).
    /// Deduplication starts afresh (docs/wire-format.md §7.7). `Err` when it does not compile: it did when
    /// interned, within the same limit, so not expected, but never a silent gap.
    fn matcher_of(&self, client: &Client) -> Result<Option<SpecMatcher>, ()> {
        match &client.filter {
            None => Ok(None),
            Some(filter) => SpecMatcher::new(filter.spec(), self.state.regex_size_limit)
                .map(Some)
                .ok_or(()),
        }
    }

    /// Queues for `client` the history's messages from position `from` on that `matcher` selects (a run larger
    /// than the ring's budgets loses its oldest messages, counted as drops).
    fn fill_from_history(&self, client: &Client, from: usize, matcher: Option<&SpecMatcher>) {
        let state = &self.state;
        let history = state.history.borrow();
        let oldest = state.published.get() + 1 - history.len() as u64;
        let now = Instant::now();
        for (message, seq) in history.range(from..).zip(oldest + from as u64..) {
            if matcher.is_some_and(|matcher| !matcher.matches(&message.meta)) {
                continue;
            }
            let frame = Rc::new(message.frames.get(client.kind).clone());
            let cursor = message.meta.cursor;
            client.push(Queued { frame, seq, cursor }, state, now);
        }
    }

    /// The ids of this process's events (the `id:` of server-sent events).
    pub(crate) fn event_ids(&self) -> &EventIds {
        &self.state.event_ids
    }

    /// Registers a client of `kind` that gets the messages `selection` selects; it leaves when the returned handle
    /// is dropped.
    pub fn join(&self, kind: StreamKind, selection: Selection) -> ClientHandle {
        let state = &self.state;
        if selection.filter.is_some() {
            state.filtered_clients.set(state.filtered_clients.get() + 1);
        }
        if selection.dedup {
            state.dedup_clients.set(state.dedup_clients.get() + 1);
        }
        let client = Rc::new(Client {
            kind,
            filter: selection.filter,
            dedup: selection.dedup,
            joined_at: state.published.get(),
            capacity: self.state.ring_size,
            ring: RefCell::new(VecDeque::new()),
            ring_bytes: Cell::new(0),
            control: RefCell::new(ControlQueue::default()),
            closing: Cell::new(false),
            dropped: Cell::new(0),
            left: Cell::new(false),
            resumable: Cell::new(false),
            catching_up: Cell::new(false),
            after: Cell::new(0),
            waker: Cell::new(None),
            room_waker: Cell::new(None),
            in_flight: Cell::new(Backlog::default()),
            standing: Standing::new(self.state.ring_size, self.state.budget.client_queue),
            admission: self.state.admission.clone(),
        });
        self.state.joined.borrow_mut().push(client.clone());
        let count = &self.state.clients[kind_index(kind)];
        count.set(count.get() + 1);
        ClientHandle {
            hub: self.clone(),
            client,
        }
    }

    /// Connected clients, all streams together.
    pub fn client_count(&self) -> usize {
        self.state.clients.iter().map(Cell::get).sum()
    }

    /// Resolves once no client is connected.
    pub(crate) async fn all_left(&self) {
        poll_fn(|cx| {
            if self.client_count() == 0 {
                Poll::Ready(())
            } else {
                *self.state.empty_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The latest message of a stream, `None` before the first.
    pub(crate) fn latest(&self, kind: StreamKind) -> Option<Frame> {
        self.state.latest.borrow()[kind_index(kind)].clone()
    }

    /// Messages published since start (cheap: a counter; `/latest.json` caches its body per value).
    pub fn published(&self) -> u64 {
        self.state.published.get()
    }

    /// The last [`RECENT_LEN`] lite messages that fit the byte budget, newest first.
    pub(crate) fn recent(&self) -> Vec<Frame> {
        self.state.recent.borrow().iter().rev().cloned().collect()
    }

    /// Time since the hub was created.
    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.state.started.elapsed()
    }

    /// Current counters (walks the clients for the queue gauges: meant for `/stats`, not for hot paths).
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats {
            clients: self.state.clients.each_ref().map(Cell::get),
            published: self.state.published.get(),
            resumes_served: self.state.resumes_served.get(),
            resumes_unavailable: self.state.resumes_unavailable.get(),
            history_messages: self.state.history.borrow().len(),
            history_bytes: self.state.history_bytes.get(),
            dropped: self.state.dropped.get(),
            dropped_for_bytes: self.state.dropped_for_bytes.get(),
            latest_skipped: self.state.latest_skipped.get(),
            filtered_clients: self.state.filtered_clients.get(),
            dedup_clients: self.state.dedup_clients.get(),
            duplicates_skipped: self.state.duplicates_skipped.get(),
            dedup_fingerprints: self.state.dedup.borrow().len(),
            dedup_evicted: self.state.dedup.borrow().evicted(),
            filters: self.state.filters.stats(),
            replays: self.state.replays.stats(),
            ..HubStats::default()
        };
        for client in self.client_slab().iter().filter(|c| !c.left.get()) {
            let queued = client.ring.borrow().len();
            stats.queued += queued;
            stats.max_queued = stats.max_queued.max(queued);
            let bytes = client.ring_bytes.get();
            stats.queued_bytes += bytes;
            stats.max_queued_bytes = stats.max_queued_bytes.max(bytes);
        }
        stats
    }

    /// The current client slab, rebuilt first if clients joined or left since the last rebuild.
    fn client_slab(&self) -> Rc<[Rc<Client>]> {
        let state = &self.state;
        let joined = state.joined.borrow().len();
        if joined > 0 || state.left_since_rebuild.get() > 0 {
            let old = state.slab.borrow().clone();
            let mut next: Vec<Rc<Client>> = Vec::with_capacity(old.len() + joined);
            next.extend(old.iter().filter(|c| !c.left.get()).cloned());
            next.extend(
                state
                    .joined
                    .borrow_mut()
                    .drain(..)
                    .filter(|c| !c.left.get()),
            );
            *state.slab.borrow_mut() = Rc::from(next);
            state.left_since_rebuild.set(0);
        }
        state.slab.borrow().clone()
    }

    fn leave(&self, client: &Client) {
        if client.left.replace(true) {
            return;
        }
        client.clear_ring();
        client.standing.release(Instant::now(), &client.admission);
        client.waker.take();
        client.wake_room();
        let state = &self.state;
        if client.catching_up.replace(false) {
            let catching_up = &state.replays.catching_up;
            catching_up.set(catching_up.get() - 1);
        }
        state
            .left_since_rebuild
            .set(state.left_since_rebuild.get() + 1);
        let count = &state.clients[kind_index(client.kind)];
        count.set(count.get().saturating_sub(1));
        if client.resumable.get() {
            state
                .resumable_clients
                .set(state.resumable_clients.get().saturating_sub(1));
            state.last_resumable_left.set(Some(Instant::now()));
        }
        if client.filter.is_some() {
            state.filtered_clients.set(state.filtered_clients.get() - 1);
        }
        if client.dedup {
            state.dedup_clients.set(state.dedup_clients.get() - 1);
        }
        if client.dropped.get() > 0 {
            tracing::info!(dropped = client.dropped.get(), stream = ?client.kind, "slow client left after drops");
        }
        if self.client_count() == 0
            && let Some(waker) = state.empty_waker.borrow_mut().take()
        {
            waker.wake();
        }
    }
}

/// A connected client's membership; dropping it removes the client from the hub (also on panic or cancellation).
pub struct ClientHandle {
    hub: Hub,
    client: Rc<Client>,
}

impl std::ops::Deref for ClientHandle {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl ClientHandle {
    /// Leaves the hub before the connection ends (its close frame is out and only the peer's reply is awaited):
    /// graceful shutdown waits for members only.
    pub(crate) fn leave(&self) {
        self.hub.leave(&self.client);
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.hub.leave(&self.client);
    }
}

/// Control frames waiting to be sent, coalesced so a client that floods pings cannot grow memory.
#[derive(Default)]
struct ControlQueue {
    pong: Option<Rc<Frame>>,
    ping: Option<Rc<Frame>>,
    close: Option<Rc<Frame>>,
}

enum Control {
    Pong(Rc<Frame>),
    Ping(Rc<Frame>),
}

/// One stream client (WebSocket, server-sent events or NDJSON) as the hub sees it: a ring of shared frames bounded
/// in frames and in bytes, pending control frames (an HTTP stream's writer turns a ping into its keep-alive and the
/// close into the end of its body), and the waker of its writer task.
pub struct Client {
    kind: StreamKind,
    /// The client's filter (`None`: every message).
    filter: Option<Rc<crate::filter::Filter>>,
    /// Whether it skips certificates it was offered already.
    dedup: bool,
    /// Messages published when it joined: a later publication was offered to it.
    joined_at: u64,
    capacity: usize,
    ring: RefCell<VecDeque<Queued>>,
    /// Wire bytes of the frames in `ring`.
    ring_bytes: Cell<usize>,
    control: RefCell<ControlQueue>,
    /// A close frame is queued or sent: nothing more is queued (the handshake itself is the session's, `ws::session`).
    closing: Cell<bool>,
    dropped: Cell<u64>,
    left: Cell<bool>,
    /// Joined through [`Hub::join_resuming`] or [`Hub::join_from`]: while such a client is connected the replay
    /// history is kept.
    resumable: Cell<bool>,
    /// Served by its own replay ([`CatchUp`]), not yet live: live publishes skip it.
    catching_up: Cell<bool>,
    /// The last cursor its replay delivered: live publishes skip messages up to it (the replay may have run ahead
    /// of the hub's own feed).
    after: Cell<u64>,
    waker: Cell<Option<Waker>>,
    /// The replay of a catching-up client, waiting for room in its ring.
    room_waker: Cell<Option<Waker>>,
    /// Data frames (and their bytes) taken by the writer and not yet completely written.
    in_flight: Cell<Backlog>,
    standing: Standing,
    admission: Rc<Admission>,
}

impl Client {
    /// The stream this client subscribed to.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Whether a live message with `cursor` is for this client: not while it catches up, nor a message its replay
    /// delivered already.
    #[inline]
    fn takes_live(&self, cursor: Option<u64>) -> bool {
        !self.catching_up.get() && cursor.is_none_or(|cursor| cursor > self.after.get())
    }

    /// Whether this client's filter selected message `seq` (no filter: every message).
    fn selects(&self, seq: u64) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(seq))
    }

    /// Messages dropped for this client because its ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Whether a close frame is queued or sent.
    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Queues a pong (replacing an unsent one: only the latest ping needs an answer, RFC 6455 §5.5.3).
    pub(crate) fn queue_pong(&self, pong: Frame) {
        self.queue_control(Control::Pong(Rc::new(pong)));
    }

    /// Queues a close frame; the queued data is discarded and nothing is queued after it. Ignored when a close is
    /// already queued (whichever close goes out first completes the handshake).
    pub(crate) fn queue_close(&self, close: Frame) {
        self.queue_close_frame(Rc::new(close));
    }

    fn queue_close_frame(&self, close: Rc<Frame>) {
        if self.closing.replace(true) {
            return;
        }
        self.control.borrow_mut().close = Some(close);
        self.clear_ring();
        self.standing.release(Instant::now(), &self.admission);
        self.wake();
        self.wake_room();
    }

    fn queue_control(&self, control: Control) {
        if self.closing.get() {
            return;
        }
        let mut queue = self.control.borrow_mut();
        match control {
            Control::Pong(frame) => queue.pong = Some(frame),
            Control::Ping(frame) => queue.ping = Some(frame),
        }
        drop(queue);
        self.wake();
    }

    /// Pushes a data frame; a ring over its frame count or byte budget drops its oldest frames (a frame larger
    /// than the whole budget still goes out, alone) and counts them here and in the hub's totals.
    #[inline]
    fn push(&self, queued: Queued, hub: &HubState, now: Instant) {
        if self.left.get() || self.closing.get() {
            return;
        }
        let len = queued.frame.wire().len();
        let mut ring = self.ring.borrow_mut();
        let mut bytes = self.ring_bytes.get() + len;
        while !ring.is_empty() && (ring.len() >= self.capacity || bytes > hub.budget.client_queue) {
            if ring.len() < self.capacity {
                hub.dropped_for_bytes.set(hub.dropped_for_bytes.get() + 1);
            }
            if let Some(old) = ring.pop_front() {
                bytes -= old.frame.wire().len();
            }
            self.dropped.set(self.dropped.get() + 1);
            hub.dropped.set(hub.dropped.get() + 1);
        }
        ring.push_back(queued);
        self.ring_bytes.set(bytes);
        let in_flight = self.in_flight.get();
        let backlog = Backlog {
            frames: ring.len() + in_flight.frames,
            bytes: bytes + in_flight.bytes,
        };
        drop(ring);
        self.standing.update(backlog, now, &self.admission);
        self.wake();
    }

    fn clear_ring(&self) {
        self.ring.borrow_mut().clear();
        self.ring_bytes.set(0);
    }

    #[inline]
    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn wake_room(&self) {
        if let Some(waker) = self.room_waker.take() {
            waker.wake();
        }
    }

    fn has_work(&self) -> bool {
        let control = self.control.borrow();
        control.close.is_some()
            || control.pong.is_some()
            || control.ping.is_some()
            || !self.ring.borrow().is_empty()
    }

    /// Resolves when there is something to write (the writer task parks here).
    pub(crate) async fn work(&self) {
        poll_fn(|cx| {
            if self.has_work() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Moves the next frames to write into `out`: control frames first (pong, ping, close), then up to `max_data`
    /// data frames and [`MAX_BATCH_BYTES`] (at least one frame), whole frames only. Returns `true` when a close
    /// frame was taken (nothing may follow it).
    pub(crate) fn take_batch(&self, out: &mut Vec<Queued>, max_data: usize) -> bool {
        let mut control = self.control.borrow_mut();
        out.extend(control.pong.take().map(Queued::control));
        out.extend(control.ping.take().map(Queued::control));
        if let Some(close) = control.close.take() {
            out.push(Queued::control(close));
            return true;
        }
        drop(control);
        let mut ring = self.ring.borrow_mut();
        let (mut n, mut taken) = (0, 0);
        for queued in ring.iter().take(max_data) {
            let len = queued.frame.wire().len();
            if n > 0 && taken + len > MAX_BATCH_BYTES {
                break;
            }
            n += 1;
            taken += len;
        }
        self.ring_bytes.set(self.ring_bytes.get() - taken);
        out.extend(ring.drain(..n));
        self.in_flight.set(Backlog {
            frames: n,
            bytes: taken,
        });
        self.standing.write_started(Instant::now());
        false
    }

    /// The writer finished writing the batch it took; `whole` when it went out in one write (the socket took it
    /// all), which tells admission whether the socket or the reactor paces this client.
    pub(crate) fn batch_written(&self, whole: bool) {
        self.in_flight.set(Backlog::default());
        let backlog = Backlog {
            frames: self.ring.borrow().len(),
            bytes: self.ring_bytes.get(),
        };
        self.standing
            .write_finished(whole, backlog, Instant::now(), &self.admission);
        self.wake_room();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u32) -> EncodedMessage {
        EncodedMessage {
            lite: Frame::text(format!("lite {n}").as_bytes()),
            full: Frame::text(format!("full {n}").as_bytes()),
            domains: Frame::text(format!("domains {n}").as_bytes()),
        }
    }

    fn drain(client: &Client) -> Vec<String> {
        let mut out = Vec::new();
        client.take_batch(&mut out, usize::MAX);
        out.iter()
            .map(|q| String::from_utf8_lossy(q.frame.payload()).into_owned())
            .collect()
    }

    #[test]
    fn each_client_gets_its_stream_and_shares_the_frame() {
        let hub = Hub::new(8);
        let lite = hub.join(StreamKind::Lite, Selection::default());
        let lite2 = hub.join(StreamKind::Lite, Selection::default());
        let full = hub.join(StreamKind::Full, Selection::default());
        let domains = hub.join(StreamKind::DomainsOnly, Selection::default());
        hub.publish(&frames(1).into());
        assert_eq!(drain(&lite), ["lite 1"]);
        assert_eq!(drain(&full), ["full 1"]);
        assert_eq!(drain(&domains), ["domains 1"]);
        hub.publish(&frames(2).into());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        lite.take_batch(&mut a, 10);
        lite2.take_batch(&mut b, 10);
        assert!(
            Rc::ptr_eq(&a[0].frame, &b[1].frame),
            "the same frame object reaches both lite clients"
        );
        assert_eq!(hub.stats().clients, [2, 1, 1]);
    }

    /// Shutdown waits for this before the close frames, which discard what is queued.
    #[test]
    fn flushed_waits_until_clients_that_keep_up_have_written_what_they_were_sent() {
        crate::runtime::block_on(async {
            let hub = Hub::new(8);
            let client = hub.join(StreamKind::Lite, Selection::default());
            hub.publish(&frames(1).into());
            let soon = std::time::Duration::from_millis(50);
            assert!(
                monoio::time::timeout(soon, hub.flushed()).await.is_err(),
                "queued"
            );
            let mut batch = Vec::new();
            client.take_batch(&mut batch, usize::MAX);
            assert!(
                monoio::time::timeout(soon, hub.flushed()).await.is_err(),
                "being written"
            );
            client.batch_written(true);
            assert!(monoio::time::timeout(soon, hub.flushed()).await.is_ok());
            hub.publish(&frames(2).into());
            client.queue_close(Frame::close(1001, ""));
            assert!(
                monoio::time::timeout(soon, hub.flushed()).await.is_ok(),
                "a closing client is not waited for"
            );
        })
        .unwrap();
    }

    #[test]
    fn a_full_ring_drops_its_oldest_frames_and_counts_them() {
        let hub = Hub::new(3);
        let slow = hub.join(StreamKind::Lite, Selection::default());
        let fast = hub.join(StreamKind::Lite, Selection::default());
        for n in 0..10 {
            hub.publish(&frames(n).into());
            drain(&fast);
        }
        assert_eq!(drain(&slow), ["lite 7", "lite 8", "lite 9"]);
        assert_eq!((slow.dropped(), fast.dropped()), (7, 0));
        assert_eq!(hub.stats().dropped, 7);
        assert_eq!(hub.stats().published, 10);
    }

    fn sized(lite: usize, full: usize) -> EncodedMessage {
        EncodedMessage {
            lite: Frame::text(&vec![b'l'; lite]),
            full: Frame::text(&vec![b'f'; full]),
            domains: Frame::text(b"d"),
        }
    }

    #[test]
    fn a_ring_over_its_byte_budget_drops_its_oldest_frames_and_counts_them() {
        let budget = ByteBudget {
            client_queue: 10_000,
            latest: 1 << 20,
            replay: 0,
        };
        let hub = Hub::with_budget(256, budget, admission::DEFAULT_SLOW_CLIENT_GRACE);
        let slow = hub.join(StreamKind::Full, Selection::default());
        let reader = hub.join(StreamKind::Full, Selection::default());
        for _ in 0..10 {
            hub.publish(&sized(10, 3_000).into());
            let mut out = Vec::new();
            reader.take_batch(&mut out, usize::MAX);
            assert_eq!(out.len(), 1, "a reading client gets every frame");
        }
        let stats = hub.stats();
        assert_eq!(
            slow.ring.borrow().len(),
            3,
            "3 frames of 3,004 bytes fit in 10,000"
        );
        assert_eq!(stats.max_queued_bytes, 3 * 3_004);
        assert_eq!((stats.dropped, stats.dropped_for_bytes), (7, 7));
        assert_eq!(slow.dropped(), 7);
        hub.publish(&sized(10, 50_000).into());
        assert_eq!(
            slow.ring.borrow().len(),
            1,
            "a frame over the whole budget goes out alone"
        );
        let mut out = Vec::new();
        slow.take_batch(&mut out, usize::MAX);
        reader.take_batch(&mut out, usize::MAX);
        assert_eq!((out.len(), hub.stats().queued_bytes), (2, 0));
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_but_takes_at_least_one_frame() {
        let hub = Hub::with_budget(
            256,
            ByteBudget {
                client_queue: 64 << 20,
                latest: 16,
                replay: 0,
            },
            admission::DEFAULT_SLOW_CLIENT_GRACE,
        );
        let client = hub.join(StreamKind::Full, Selection::default());
        for _ in 0..3 {
            hub.publish(&sized(1, MAX_BATCH_BYTES / 2 - 100).into());
        }
        hub.publish(&sized(1, 2 * MAX_BATCH_BYTES).into());
        let mut sizes = Vec::new();
        loop {
            let mut out = Vec::new();
            client.take_batch(&mut out, usize::MAX);
            if out.is_empty() {
                break;
            }
            sizes.push(out.len());
        }
        assert_eq!(sizes, [2, 1, 1]);
        assert_eq!(hub.stats().queued_bytes, 0);
    }

    #[test]
    fn messages_over_the_latest_budget_are_left_out_of_latest_and_recent() {
        let hub = Hub::with_budget(
            8,
            ByteBudget {
                client_queue: 1 << 20,
                latest: 1_000,
                replay: 0,
            },
            admission::DEFAULT_SLOW_CLIENT_GRACE,
        );
        hub.publish(&sized(100, 100).into());
        hub.publish(&sized(5_000, 5_000).into());
        assert_eq!(hub.latest(StreamKind::Lite).unwrap().payload().len(), 100);
        assert_eq!(hub.latest(StreamKind::DomainsOnly).unwrap().payload(), b"d");
        assert_eq!(hub.recent().len(), 1);
        assert_eq!(hub.stats().latest_skipped, 1);
        for _ in 0..20 {
            hub.publish(&sized(300, 10).into());
        }
        let recent = hub.recent();
        assert_eq!(recent.len(), 3, "at most 1,000 bytes of messages are kept");
        assert_eq!(hub.published(), 22);
    }

    #[test]
    fn control_frames_come_first_and_close_ends_the_batch() {
        let hub = Hub::new(8);
        let client = hub.join(StreamKind::Lite, Selection::default());
        hub.publish(&frames(1).into());
        client.queue_pong(Frame::pong(b"a"));
        client.queue_pong(Frame::pong(b"b"));
        hub.ping_all_and_shrink_idle_rings();
        let mut out = Vec::new();
        assert!(!client.take_batch(&mut out, 10));
        let payloads: Vec<&[u8]> = out.iter().map(|q| q.frame.payload()).collect();
        assert_eq!(payloads, [&b"b"[..], b"", b"lite 1"]);
        hub.publish(&frames(2).into());
        hub.close_all(Frame::close(1001, "bye"));
        assert!(client.is_closing());
        client.queue_close(Frame::close(1000, "")); // ignored: a close is already queued
        hub.publish(&frames(3).into());
        out.clear();
        assert!(client.take_batch(&mut out, 10), "the close frame is taken");
        assert_eq!(
            out.len(),
            1,
            "queued data is discarded once closing: {out:?}"
        );
        assert_eq!(&out[0].frame.payload()[..2], &1001u16.to_be_bytes());
    }

    #[test]
    fn pinging_frees_the_ring_memory_of_drained_clients() {
        let hub = Hub::new(64);
        let drained = hub.join(StreamKind::Lite, Selection::default());
        let behind = hub.join(StreamKind::Lite, Selection::default());
        for n in 0..40 {
            hub.publish(&frames(n).into());
        }
        drain(&drained);
        assert!(drained.ring.borrow().capacity() >= 40);
        hub.ping_all_and_shrink_idle_rings();
        assert_eq!(drained.ring.borrow().capacity(), 0);
        assert_eq!(behind.ring.borrow().len(), 40, "queued frames are kept");
    }

    fn drain_queued(client: &Client) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        client.take_batch(&mut out, usize::MAX);
        out.iter()
            .map(|q| {
                (
                    q.seq,
                    String::from_utf8_lossy(q.frame.payload()).into_owned(),
                )
            })
            .collect()
    }

    fn id(hub: &Hub, seq: u64) -> String {
        let mut out = Vec::new();
        let queued = Queued {
            frame: hub.state.ping.clone(),
            seq,
            cursor: None,
        };
        hub.event_ids().write(&queued, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn messages_carry_their_sequence_number_and_heartbeats_none() {
        let hub = Hub::new(8);
        let client = hub.join(StreamKind::DomainsOnly, Selection::default());
        hub.publish(&frames(1).into());
        hub.broadcast(Frame::text(b"beat"));
        hub.publish(&frames(2).into());
        assert_eq!(
            drain_queued(&client),
            [
                (1, "domains 1".to_owned()),
                (NO_SEQ, "beat".to_owned()),
                (2, "domains 2".to_owned())
            ]
        );
    }

    #[test]
    fn a_resuming_client_gets_exactly_what_it_missed_then_live() {
        let hub = Hub::new(64);
        let _reader = hub.join_resuming(StreamKind::Full, Selection::default(), None);
        for n in 1..=10 {
            hub.publish(&frames(n).into());
        }
        let (client, resume) =
            hub.join_resuming(StreamKind::Full, Selection::default(), Some(&id(&hub, 7)));
        assert_eq!(resume, Resume::Replayed);
        hub.publish(&frames(11).into());
        let got: Vec<u64> = drain_queued(&client).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(got, [8, 9, 10, 11]);
        assert_eq!(drain(&client), Vec::<String>::new());
        let (up_to_date, resume) =
            hub.join_resuming(StreamKind::Lite, Selection::default(), Some(&id(&hub, 11)));
        assert_eq!(resume, Resume::Replayed, "nothing missed is a resume too");
        assert!(drain(&up_to_date).is_empty());
        let (new, resume) = hub.join_resuming(StreamKind::Lite, Selection::default(), None);
        assert_eq!(resume, Resume::Live);
        assert!(drain(&new).is_empty());
        let stats = hub.stats();
        assert_eq!((stats.resumes_served, stats.resumes_unavailable), (2, 0));
        assert_eq!(stats.history_messages, 11);
    }

    #[test]
    fn ids_of_another_boot_unknown_text_and_the_future_start_live_counted() {
        let hub = Hub::new(64);
        for n in 1..=3 {
            hub.publish(&frames(n).into());
        }
        let other_boot = format!("x{}", id(&hub, 2));
        for unknown in [
            other_boot.as_str(),
            "2",
            "",
            "abc-",
            "-2",
            "x-y",
            &id(&hub, 4),
        ] {
            let (client, resume) =
                hub.join_resuming(StreamKind::Lite, Selection::default(), Some(unknown));
            assert_eq!(resume, Resume::Unavailable, "{unknown}");
            assert!(drain(&client).is_empty(), "{unknown}: starts live");
        }
        assert_eq!(hub.stats().resumes_unavailable, 7);
        // The last sequence number there is: no overflow past it.
        let (_, resume) = hub.join_resuming(
            StreamKind::Lite,
            Selection::default(),
            Some(&id(&hub, u64::MAX)),
        );
        assert_eq!(resume, Resume::Unavailable);
    }

    #[test]
    fn the_replay_history_is_bounded_in_bytes_and_older_ids_are_unavailable() {
        // Each message weighs 3 frames of 12 bytes (2 header + 10 payload): 36 bytes; 100 bytes keep 2.
        let budget = ByteBudget {
            client_queue: 1 << 20,
            latest: 1 << 20,
            replay: 100,
        };
        let hub = Hub::with_budget(64, budget, admission::DEFAULT_SLOW_CLIENT_GRACE);
        let _reader = hub.join_resuming(StreamKind::Lite, Selection::default(), None);
        let ten = |n: u8| EncodedMessage {
            lite: Frame::text(&[n; 10]),
            full: Frame::text(&[n; 10]),
            domains: Frame::text(&[n; 10]),
        };
        for n in 1..=5 {
            hub.publish(&ten(n).into());
        }
        let stats = hub.stats();
        assert_eq!((stats.history_messages, stats.history_bytes), (2, 72));
        let (_, resume) =
            hub.join_resuming(StreamKind::Lite, Selection::default(), Some(&id(&hub, 2)));
        assert_eq!(resume, Resume::Unavailable, "message 3 is forgotten");
        let (client, resume) =
            hub.join_resuming(StreamKind::Lite, Selection::default(), Some(&id(&hub, 3)));
        assert_eq!(resume, Resume::Replayed);
        assert_eq!(drain_queued(&client).len(), 2);
        let off = Hub::with_budget(
            64,
            ByteBudget {
                replay: 0,
                ..budget
            },
            admission::DEFAULT_SLOW_CLIENT_GRACE,
        );
        let _reader = off.join_resuming(StreamKind::Lite, Selection::default(), None);
        off.publish(&ten(1).into());
        assert_eq!(off.stats().history_messages, 0);
    }

    #[test]
    fn the_replay_history_is_kept_only_while_a_resumable_client_is_or_was_just_connected() {
        let hub = Hub::new(64);
        let websocket = hub.join(StreamKind::Lite, Selection::default());
        hub.publish(&frames(1).into());
        assert_eq!(hub.stats().history_messages, 0, "nobody could resume");
        let (reader, _) = hub.join_resuming(StreamKind::Lite, Selection::default(), None);
        hub.publish(&frames(2).into());
        drop(reader);
        hub.publish(&frames(3).into());
        assert_eq!(hub.stats().history_messages, 2, "kept for a reconnect");
        let (back, resume) =
            hub.join_resuming(StreamKind::Lite, Selection::default(), Some(&id(&hub, 2)));
        assert_eq!(resume, Resume::Replayed);
        assert_eq!(drain(&back), ["lite 3"]);
        drop(back);
        // Long after the last one left, the history is let go.
        let long_ago =
            Instant::now() - REPLAY_KEPT_AFTER_LAST_CLIENT - std::time::Duration::from_secs(1);
        hub.state.last_resumable_left.set(Some(long_ago));
        hub.publish(&frames(4).into());
        let stats = hub.stats();
        assert_eq!((stats.history_messages, stats.history_bytes), (0, 0));
        drop(websocket);
    }

    #[test]
    fn a_gap_larger_than_the_ring_loses_its_oldest_counted() {
        let hub = Hub::new(3);
        let _reader = hub.join_resuming(StreamKind::Lite, Selection::default(), None);
        for n in 1..=10 {
            hub.publish(&frames(n).into());
        }
        let (client, resume) =
            hub.join_resuming(StreamKind::Lite, Selection::default(), Some(&id(&hub, 2)));
        assert_eq!(resume, Resume::Replayed);
        assert_eq!(drain(&client), ["lite 8", "lite 9", "lite 10"]);
        assert_eq!(client.dropped(), 5);
    }

    fn certificate(names: &[&str], fingerprint: &str, n: u32) -> Rc<Message> {
        Rc::new(Message {
            meta: crate::message::MessageMeta {
                fingerprint: fingerprint.into(),
                all_domains: names.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            },
            frames: frames(n),
        })
    }

    fn selection(hub: &Hub, query: &[(&str, &str)]) -> Selection {
        Selection::from_query(query.iter().copied(), hub.filters()).unwrap()
    }

    #[test]
    fn a_filtered_client_gets_the_matching_messages_only() {
        let hub = Hub::new(16);
        let all = hub.join(StreamKind::Lite, Selection::default());
        let example = hub.join(
            StreamKind::Lite,
            selection(&hub, &[("domain", "example.com")]),
        );
        let example_too = hub.join(
            StreamKind::DomainsOnly,
            selection(&hub, &[("domain", "EXAMPLE.com")]),
        );
        let pay = hub.join(StreamKind::Full, selection(&hub, &[("keyword", "pay")]));
        hub.publish(&certificate(&["www.example.com"], "A", 1));
        hub.publish(&certificate(&["paypal.example.net"], "B", 2));
        hub.publish(&frames(3).into());
        assert_eq!(drain(&all), ["lite 1", "lite 2", "lite 3"]);
        assert_eq!(drain(&example), ["lite 1"]);
        assert_eq!(drain(&example_too), ["domains 1"]);
        assert_eq!(drain(&pay), ["full 2"]);
        let stats = hub.stats();
        assert_eq!((stats.filtered_clients, stats.filters.filters), (3, 2));
        drop((example, example_too));
        hub.publish(&frames(4).into());
        assert_eq!(
            hub.stats().filters.filters,
            1,
            "the filter left with its clients"
        );
    }

    #[test]
    fn a_filtered_client_that_resumes_gets_the_matching_missed_messages_only() {
        let hub = Hub::new(16);
        // Another client holds the same filter throughout: its stamps of the first run must not leak into the
        // replay.
        let (_other, _) = hub.join_resuming(
            StreamKind::Lite,
            selection(&hub, &[("domain", "example.com")]),
            None,
        );
        let (reader, _) = hub.join_resuming(
            StreamKind::Lite,
            selection(&hub, &[("domain", "example.com")]),
            None,
        );
        hub.publish(&certificate(&["www.example.com"], "A", 1));
        assert_eq!(drain(&reader), ["lite 1"]);
        drop(reader);
        hub.publish(&certificate(&["paypal.example.net"], "B", 2));
        hub.publish(&certificate(&["example.com"], "C", 3));
        hub.publish(&certificate(&["other.example"], "D", 4));
        let (back, resume) = hub.join_resuming(
            StreamKind::Lite,
            selection(&hub, &[("domain", "example.com")]),
            Some(&id(&hub, 1)),
        );
        assert_eq!(resume, Resume::Replayed);
        hub.publish(&certificate(&["a.example.com"], "E", 5));
        assert_eq!(drain(&back), ["lite 3", "lite 5"]);
        // A new filter, interned after the messages were published, is evaluated on the replayed ones too.
        let (keyword, _) = hub.join_resuming(
            StreamKind::Lite,
            selection(&hub, &[("keyword", "pay")]),
            Some(&id(&hub, 1)),
        );
        assert_eq!(drain(&keyword), ["lite 2"]);
    }

    #[test]
    fn a_dedup_client_skips_a_certificate_it_was_offered_since_it_joined() {
        let hub = Hub::new(16);
        let early = hub.join(StreamKind::Lite, selection(&hub, &[("dedup", "1")]));
        let plain = hub.join(StreamKind::Lite, Selection::default());
        hub.publish(&certificate(&["a.example"], "AA", 1));
        let late = hub.join(StreamKind::Lite, selection(&hub, &[("dedup", "true")]));
        hub.publish(&certificate(&["a.example"], "AA", 2)); // a second log
        hub.publish(&certificate(&["b.example"], "BB", 3));
        hub.publish(&certificate(&["a.example"], "AA", 4)); // a third
        assert_eq!(drain(&early), ["lite 1", "lite 3"]);
        assert_eq!(drain(&plain), ["lite 1", "lite 2", "lite 3", "lite 4"]);
        assert_eq!(
            drain(&late),
            ["lite 2", "lite 3"],
            "it had not been offered copy 1"
        );
        let stats = hub.stats();
        assert_eq!(
            (
                stats.duplicates_skipped,
                stats.dedup_clients,
                stats.dedup_fingerprints
            ),
            (3, 2, 2)
        );
        drop((early, late));
        hub.publish(&certificate(&["a.example"], "AA", 5));
        assert_eq!(
            hub.stats().dedup_fingerprints,
            0,
            "nothing kept without dedup clients"
        );
    }

    #[test]
    fn leaving_removes_the_client_and_latest_messages_are_kept() {
        let hub = Hub::new(4);
        assert!(hub.latest(StreamKind::Lite).is_none());
        let client = hub.join(StreamKind::Full, Selection::default());
        assert_eq!(hub.client_count(), 1);
        drop(client);
        assert_eq!(hub.client_count(), 0);
        for n in 0..30 {
            hub.publish(&frames(n).into());
        }
        assert_eq!(hub.client_slab().len(), 0);
        assert_eq!(
            hub.latest(StreamKind::DomainsOnly).unwrap().payload(),
            b"domains 29"
        );
        let recent = hub.recent();
        assert_eq!(recent.len(), RECENT_LEN);
        assert_eq!(recent[0].payload(), b"lite 29");
        assert_eq!(recent[RECENT_LEN - 1].payload(), b"lite 5");
    }
}
