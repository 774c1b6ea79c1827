//! Fan-out: every published message reaches every connected client as a shared, already-encoded frame.
//!
//! Single-threaded by design (one monoio thread): `Rc`, `RefCell` and `Cell`, no locks and no atomics on the
//! publish path. Publishing a message costs, per client, one `Rc` clone pushed onto that client's bounded ring and,
//! when the client's writer is parked, one wake-up; the frame bytes are never copied.
//!
//! Clients live in an `Rc`-swapped slab: joins and leaves only record the change; the next publish (or ping, or
//! shutdown) rebuilds one new `Rc<[…]>` snapshot, so a burst of thousands of connects or disconnects costs one
//! rebuild, and the publish loop iterates an immutable snapshot.
//!
//! Ingestion asks the hub's [`Gate`] before publishing: see [`admission`] for the rule that keeps pollers from
//! out-running the writers of clients that keep up.

pub mod admission;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::stream::{Frames, StreamKind};
use crate::ws::frame::Frame;

use admission::{Admission, Standing};
pub use admission::{AdmissionStats, Gate};

/// How many lite messages `/latest.json` shows.
pub const RECENT_LEN: usize = 25;

/// The fan-out hub. Cheap to clone (a handle to shared state); it is the publish entry point for the pollers and tests.
#[derive(Clone)]
pub struct Hub {
    state: Rc<HubState>,
}

struct HubState {
    ring_size: usize,
    started: Instant,
    /// The snapshot publish iterates; may still hold clients that left (flagged) until the next rebuild.
    slab: RefCell<Rc<[Rc<Client>]>>,
    joined: RefCell<Vec<Rc<Client>>>,
    left_since_rebuild: Cell<usize>,
    clients: [Cell<usize>; 3],
    published: Cell<u64>,
    dropped: Cell<u64>,
    /// Latest message per stream, for `/example.json` and friends.
    latest: RefCell<[Option<Frame>; 3]>,
    /// The last [`RECENT_LEN`] lite messages, oldest first.
    recent: RefCell<VecDeque<Frame>>,
    ping: Rc<Frame>,
    /// Woken when the last client leaves (graceful shutdown waits on it).
    empty_waker: RefCell<Option<Waker>>,
    admission: Rc<Admission>,
}

/// Counters of the hub, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connected WebSocket clients per stream, in [`StreamKind::ALL`] order.
    pub clients: [usize; 3],
    /// Messages published since start.
    pub published: u64,
    /// Messages dropped from full client rings since start (summed over clients).
    pub dropped: u64,
    /// Frames currently waiting in client rings (bounded by clients × ring size).
    pub queued: usize,
    /// The largest ring among connected clients.
    pub max_queued: usize,
}

fn kind_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Lite => 0,
        StreamKind::Full => 1,
        StreamKind::DomainsOnly => 2,
    }
}

impl Hub {
    /// A hub whose clients each queue at most `ring_size` frames, with the default slow-client grace period.
    pub fn new(ring_size: usize) -> Self {
        Self::with_slow_client_grace(ring_size, admission::DEFAULT_SLOW_CLIENT_GRACE)
    }

    /// A hub whose clients each queue at most `ring_size` frames; ingestion waits up to `grace` for a client whose
    /// socket is full before it stops waiting for it ([`admission`]).
    pub fn with_slow_client_grace(ring_size: usize, grace: std::time::Duration) -> Self {
        Self {
            state: Rc::new(HubState {
                ring_size: ring_size.max(1),
                started: Instant::now(),
                slab: RefCell::new(Rc::from(Vec::new())),
                joined: RefCell::new(Vec::new()),
                left_since_rebuild: Cell::new(0),
                clients: Default::default(),
                published: Cell::new(0),
                dropped: Cell::new(0),
                latest: RefCell::new([None, None, None]),
                recent: RefCell::new(VecDeque::with_capacity(RECENT_LEN)),
                ping: Rc::new(Frame::ping(b"")),
                empty_waker: RefCell::new(None),
                admission: Rc::new(Admission::new(grace)),
            }),
        }
    }

    /// Ingestion's view of the hub: whether it may publish now (see [`admission`]).
    pub fn gate(&self) -> Gate {
        Gate::new(self.clone())
    }

    /// Publishes one message: queues its frame for every client of each stream and records it as the latest.
    pub fn publish(&self, frames: &Frames) {
        let shared = StreamKind::ALL.map(|kind| Rc::new(frames.get(kind).clone()));
        let now = Instant::now();
        for client in self.snapshot().iter() {
            client.push(&shared[kind_index(client.kind)], &self.state.dropped, now);
        }
        let state = &self.state;
        state.published.set(state.published.get() + 1);
        *state.latest.borrow_mut() = StreamKind::ALL.map(|kind| Some(frames.get(kind).clone()));
        let mut recent = state.recent.borrow_mut();
        if recent.len() == RECENT_LEN {
            recent.pop_front();
        }
        recent.push_back(frames.lite.clone());
    }

    /// Queues the same frame for every client of every stream (heartbeats); not recorded as a latest message.
    pub fn broadcast(&self, frame: Frame) {
        let frame = Rc::new(frame);
        let now = Instant::now();
        for client in self.snapshot().iter() {
            client.push(&frame, &self.state.dropped, now);
        }
    }

    /// Asks every client's writer to send a ping, and frees the ring memory of clients with nothing queued: a burst
    /// grows a ring up to the ring size, and without this every client would keep that capacity for good.
    pub fn ping_all(&self) {
        for client in self.snapshot().iter() {
            client.queue_control(Control::Ping(self.state.ping.clone()));
            let mut ring = client.ring.borrow_mut();
            if ring.is_empty() {
                ring.shrink_to_fit();
            }
        }
    }

    /// Starts the closing handshake with every client: the frame (a close frame) is sent after any control frame
    /// already queued, and queued data is discarded.
    pub fn close_all(&self, close: Frame) {
        let close = Rc::new(close);
        for client in self.snapshot().iter() {
            client.start_close(close.clone());
        }
    }

    /// Registers a client of `kind`; it leaves when the returned handle is dropped.
    pub fn join(&self, kind: StreamKind) -> ClientHandle {
        let client = Rc::new(Client {
            kind,
            capacity: self.state.ring_size,
            ring: RefCell::new(VecDeque::new()),
            control: RefCell::new(ControlQueue::default()),
            close: Cell::new(CloseState::Open),
            dropped: Cell::new(0),
            left: Cell::new(false),
            waker: Cell::new(None),
            in_flight: Cell::new(0),
            standing: Standing::new(self.state.ring_size),
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
    pub async fn all_left(&self) {
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
    pub fn latest(&self, kind: StreamKind) -> Option<Frame> {
        self.state.latest.borrow()[kind_index(kind)].clone()
    }

    /// The last [`RECENT_LEN`] lite messages, newest first.
    pub fn recent(&self) -> Vec<Frame> {
        self.state.recent.borrow().iter().rev().cloned().collect()
    }

    /// Time since the hub was created.
    pub fn uptime(&self) -> std::time::Duration {
        self.state.started.elapsed()
    }

    /// Current counters (walks the clients for the queue gauges: meant for `/stats`, not for hot paths).
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats {
            clients: self.state.clients.each_ref().map(Cell::get),
            published: self.state.published.get(),
            dropped: self.state.dropped.get(),
            ..HubStats::default()
        };
        for client in self.snapshot().iter().filter(|c| !c.left.get()) {
            let queued = client.ring.borrow().len();
            stats.queued += queued;
            stats.max_queued = stats.max_queued.max(queued);
        }
        stats
    }

    /// The current client slab, rebuilt first if clients joined or left since the last rebuild.
    fn snapshot(&self) -> Rc<[Rc<Client>]> {
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
        client.left.set(true);
        client.ring.borrow_mut().clear();
        client.standing.release(Instant::now(), &client.admission);
        client.waker.take();
        let state = &self.state;
        state
            .left_since_rebuild
            .set(state.left_since_rebuild.get() + 1);
        let count = &state.clients[kind_index(client.kind)];
        count.set(count.get().saturating_sub(1));
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

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.hub.leave(&self.client);
    }
}

/// Where a client is in the closing handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    /// Streaming.
    Open,
    /// The server started the closing handshake (shutdown): a close frame is queued or sent, the peer's reply is awaited.
    ServerInitiated,
    /// The connection ends after the queued close frame: the peer closed first, or violated the protocol.
    Final,
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

/// One WebSocket client as the hub sees it: a bounded ring of shared frames, pending control frames, and the waker
/// of its writer task.
pub struct Client {
    kind: StreamKind,
    capacity: usize,
    ring: RefCell<VecDeque<Rc<Frame>>>,
    control: RefCell<ControlQueue>,
    close: Cell<CloseState>,
    dropped: Cell<u64>,
    left: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// Data frames taken by the writer and not yet completely written.
    in_flight: Cell<usize>,
    standing: Standing,
    admission: Rc<Admission>,
}

impl Client {
    /// The stream this client subscribed to.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Messages dropped for this client because its ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// The closing-handshake state.
    pub fn close_state(&self) -> CloseState {
        self.close.get()
    }

    /// Queues a pong (replacing an unsent one: only the latest ping needs an answer, RFC 6455 §5.5.3).
    pub fn queue_pong(&self, pong: Frame) {
        self.queue_control(Control::Pong(Rc::new(pong)));
    }

    /// Queues the final close frame (a reply to the peer's close, or a protocol error); the connection ends once it
    /// is written. Ignored when a close is already queued.
    pub fn close_final(&self, close: Frame) {
        if self.close.get() == CloseState::Open {
            self.set_close(Rc::new(close), CloseState::Final);
        }
    }

    fn start_close(&self, close: Rc<Frame>) {
        if self.close.get() == CloseState::Open {
            self.set_close(close, CloseState::ServerInitiated);
        }
    }

    fn set_close(&self, close: Rc<Frame>, state: CloseState) {
        self.close.set(state);
        self.control.borrow_mut().close = Some(close);
        self.ring.borrow_mut().clear();
        self.standing.release(Instant::now(), &self.admission);
        self.wake();
    }

    fn queue_control(&self, control: Control) {
        if self.close.get() != CloseState::Open {
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

    /// Pushes a data frame; a full ring drops its oldest frame and counts it here and in `total_dropped`.
    #[inline]
    fn push(&self, frame: &Rc<Frame>, total_dropped: &Cell<u64>, now: Instant) {
        if self.left.get() || self.close.get() != CloseState::Open {
            return;
        }
        let mut ring = self.ring.borrow_mut();
        if ring.len() >= self.capacity {
            ring.pop_front();
            self.dropped.set(self.dropped.get() + 1);
            total_dropped.set(total_dropped.get() + 1);
        }
        ring.push_back(frame.clone());
        let backlog = ring.len() + self.in_flight.get();
        drop(ring);
        self.standing.update(backlog, now, &self.admission);
        self.wake();
    }

    #[inline]
    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
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
    pub async fn work(&self) {
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
    /// data frames, whole frames only. Returns `true` when a close frame was taken (nothing may follow it).
    pub fn take_batch(&self, out: &mut Vec<Rc<Frame>>, max_data: usize) -> bool {
        let mut control = self.control.borrow_mut();
        out.extend(control.pong.take());
        out.extend(control.ping.take());
        if let Some(close) = control.close.take() {
            out.push(close);
            return true;
        }
        drop(control);
        let mut ring = self.ring.borrow_mut();
        let n = ring.len().min(max_data);
        out.extend(ring.drain(..n));
        self.in_flight.set(n);
        self.standing.write_started(Instant::now());
        false
    }

    /// The writer finished writing the batch it took; `whole` when it went out in one write (the socket took it
    /// all), which tells admission whether the socket or the reactor paces this client.
    pub fn batch_written(&self, whole: bool) {
        self.in_flight.set(0);
        let backlog = self.ring.borrow().len();
        self.standing
            .write_finished(whole, backlog, Instant::now(), &self.admission);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u32) -> Frames {
        Frames {
            lite: Frame::text(format!("lite {n}").as_bytes()),
            full: Frame::text(format!("full {n}").as_bytes()),
            domains: Frame::text(format!("domains {n}").as_bytes()),
        }
    }

    fn drain(client: &Client) -> Vec<String> {
        let mut out = Vec::new();
        client.take_batch(&mut out, usize::MAX);
        out.iter()
            .map(|f| String::from_utf8_lossy(f.payload()).into_owned())
            .collect()
    }

    #[test]
    fn each_client_gets_its_stream_and_shares_the_frame() {
        let hub = Hub::new(8);
        let lite = hub.join(StreamKind::Lite);
        let lite2 = hub.join(StreamKind::Lite);
        let full = hub.join(StreamKind::Full);
        let domains = hub.join(StreamKind::DomainsOnly);
        hub.publish(&frames(1));
        assert_eq!(drain(&lite), ["lite 1"]);
        assert_eq!(drain(&full), ["full 1"]);
        assert_eq!(drain(&domains), ["domains 1"]);
        hub.publish(&frames(2));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        lite.take_batch(&mut a, 10);
        lite2.take_batch(&mut b, 10);
        assert!(
            Rc::ptr_eq(&a[0], &b[1]),
            "the same frame object reaches both lite clients"
        );
        assert_eq!(hub.stats().clients, [2, 1, 1]);
    }

    #[test]
    fn a_full_ring_drops_its_oldest_frames_and_counts_them() {
        let hub = Hub::new(3);
        let slow = hub.join(StreamKind::Lite);
        let fast = hub.join(StreamKind::Lite);
        for n in 0..10 {
            hub.publish(&frames(n));
            drain(&fast);
        }
        assert_eq!(drain(&slow), ["lite 7", "lite 8", "lite 9"]);
        assert_eq!((slow.dropped(), fast.dropped()), (7, 0));
        assert_eq!(hub.stats().dropped, 7);
        assert_eq!(hub.stats().published, 10);
    }

    #[test]
    fn control_frames_come_first_and_close_ends_the_batch() {
        let hub = Hub::new(8);
        let client = hub.join(StreamKind::Lite);
        hub.publish(&frames(1));
        client.queue_pong(Frame::pong(b"a"));
        client.queue_pong(Frame::pong(b"b"));
        hub.ping_all();
        let mut out = Vec::new();
        assert!(!client.take_batch(&mut out, 10));
        let payloads: Vec<&[u8]> = out.iter().map(|f| f.payload()).collect();
        assert_eq!(payloads, [&b"b"[..], b"", b"lite 1"]);
        hub.publish(&frames(2));
        hub.close_all(Frame::close(1001, "bye"));
        assert_eq!(client.close_state(), CloseState::ServerInitiated);
        hub.publish(&frames(3));
        out.clear();
        assert!(client.take_batch(&mut out, 10), "the close frame is taken");
        assert_eq!(
            out.len(),
            1,
            "queued data is discarded once closing: {out:?}"
        );
        assert_eq!(&out[0].payload()[..2], &1001u16.to_be_bytes());
    }

    #[test]
    fn pinging_frees_the_ring_memory_of_drained_clients() {
        let hub = Hub::new(64);
        let drained = hub.join(StreamKind::Lite);
        let behind = hub.join(StreamKind::Lite);
        for n in 0..40 {
            hub.publish(&frames(n));
        }
        drain(&drained);
        assert!(drained.ring.borrow().capacity() >= 40);
        hub.ping_all();
        assert_eq!(drained.ring.borrow().capacity(), 0);
        assert_eq!(behind.ring.borrow().len(), 40, "queued frames are kept");
    }

    #[test]
    fn leaving_removes_the_client_and_latest_messages_are_kept() {
        let hub = Hub::new(4);
        assert!(hub.latest(StreamKind::Lite).is_none());
        let client = hub.join(StreamKind::Full);
        assert_eq!(hub.client_count(), 1);
        drop(client);
        assert_eq!(hub.client_count(), 0);
        for n in 0..30 {
            hub.publish(&frames(n));
        }
        assert_eq!(hub.snapshot().len(), 0);
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
