//! Admission: ingestion publishes only as fast as the clients that keep up can take it.
//!
//! Why: everything runs on one monoio thread, and monoio reaps I/O completions only between rounds of its run
//! queue. Pollers with a backlog are always ready to run, so under overload they kept the queue busy, the writers'
//! completions waited, the rings filled and dropped their oldest frames: the CPU went to building messages that
//! nobody received (issue 7, item 7: 33,000 entries/s fetched, 18,700/s received).
//!
//! The rule, decided here and nowhere else:
//! - A client's *backlog* is what its ring holds plus what its writer took and has not finished writing. The client
//!   is *behind* while its backlog is at or above its *mark* in frames ([`mark_for`]: ¾ of its ring, at most
//!   [`MAX_MARK`]) or in bytes (¾ of its byte budget, so big messages hold ingestion before the ring drops any).
//! - Ingestion publishes while no client that keeps up is behind ([`Gate::admits`], checked before every message);
//!   otherwise it waits ([`Gate::admitted`]) until the writers bring such clients back under their mark. A client
//!   that keeps up therefore never holds more than its mark and never loses a frame.
//! - A client whose **socket** holds its writes back (a batch that needed more than one write: the kernel's send
//!   buffer was full) for the grace period (`--slow-client-grace`) while it is behind does not keep up: it becomes
//!   *lagging*; ingestion stops waiting for it and its ring drops its oldest frames when full, counted, as for any
//!   slow client. A write that stays in flight for a grace period counts the same (a socket that takes no more:
//!   a client that never reads, whose batches therefore never finish). When the reactor is what delays a writer, its writes go out whole and it is never
//!   declared lagging: that is the overload this rule is for.
//! - A lagging client is waited for again only once its backlog is under the mark, its last batch went out whole,
//!   and [`LAGGING_MIN`] has passed; so one client holds ingestion back for at most one grace period per
//!   [`LAGGING_MIN`].

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::Hub;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Kind, Metric, Read, Report, StatusReporter};

/// The default of `--slow-client-grace`.
pub const DEFAULT_SLOW_CLIENT_GRACE: Duration = Duration::from_millis(500);

/// A backlog mark never above this many frames, however large the ring: more buys latency, not throughput (a writer
/// sends at most a few hundred frames per system call).
pub(crate) const MAX_MARK: usize = 1024;

/// A lagging client stays lagging at least this long.
pub(crate) const LAGGING_MIN: Duration = Duration::from_secs(30);

/// The backlog at which a client of a ring of `ring_size` frames is behind.
pub(crate) fn mark_for(ring_size: usize) -> usize {
    (ring_size - ring_size / 4).clamp(1, MAX_MARK)
}

/// What a client has queued plus what its writer took and has not finished writing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Backlog {
    pub frames: usize,
    pub bytes: usize,
}

/// The hub-wide side: how many clients that keep up are behind, and the pollers waiting for none to be.
pub(super) struct Admission {
    grace: Duration,
    /// Clients that keep up and are behind: ingestion publishes only while this is 0.
    behind: Cell<usize>,
    /// Clients currently lagging (gauge).
    lagging: Cell<usize>,
    /// Clients declared lagging since start.
    declared_lagging: Cell<u64>,
    /// Since when ingestion has been held back, and for how long in total before that.
    held_since: Cell<Option<Instant>>,
    held_total: Cell<Duration>,
    /// Pollers waiting for admission; all are woken when the last client that holds them gets under its mark.
    waiters: RefCell<Vec<Waker>>,
    warnings: LogThrottle,
}

impl Admission {
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            behind: Cell::new(0),
            lagging: Cell::new(0),
            declared_lagging: Cell::new(0),
            held_since: Cell::new(None),
            held_total: Cell::new(Duration::ZERO),
            waiters: RefCell::new(Vec::new()),
            warnings: LogThrottle::new(Duration::from_secs(10)),
        }
    }

    fn admits(&self) -> bool {
        self.behind.get() == 0
    }

    fn hold(&self, now: Instant) {
        if self.behind.get() == 0 {
            self.held_since.set(Some(now));
        }
        self.behind.set(self.behind.get() + 1);
    }

    fn unhold(&self, now: Instant) {
        self.behind.set(self.behind.get().saturating_sub(1));
        if self.behind.get() == 0 {
            if let Some(since) = self.held_since.take() {
                self.held_total
                    .set(self.held_total.get() + now.saturating_duration_since(since));
            }
            for waker in self.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    fn wait_here(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// Time ingestion has been held back since start.
    fn held(&self, now: Instant) -> Duration {
        let current = self
            .held_since
            .get()
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.held_total.get() + current
    }
}

/// Where one client stands with admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Under its mark (or not waited for: left, closing).
    Ahead,
    /// At or above its mark, and waited for.
    Behind,
    /// Does not keep up, since then: not waited for.
    Lagging(Instant),
    /// Left or closing: never counted again.
    Released,
}

/// One client's side: its mark, its state, and what its writes have shown about its socket.
pub(super) struct Standing {
    mark: usize,
    mark_bytes: usize,
    state: Cell<State>,
    /// Since when the client's batches have needed more than one write (its send buffer was full); `None` once a
    /// batch goes out whole.
    socket_full_since: Cell<Option<Instant>>,
    /// Since when the batch being written has been in flight.
    writing_since: Cell<Option<Instant>>,
}

impl Standing {
    /// A client of a ring of `ring_size` frames and `queue_bytes` bytes.
    pub(super) fn new(ring_size: usize, queue_bytes: usize) -> Self {
        Self {
            mark: mark_for(ring_size),
            mark_bytes: queue_bytes - queue_bytes / 4,
            state: Cell::new(State::Ahead),
            socket_full_since: Cell::new(None),
            writing_since: Cell::new(None),
        }
    }

    /// Whether `backlog` is at or above the mark, in frames or in bytes.
    fn at_mark(&self, backlog: Backlog) -> bool {
        backlog.frames >= self.mark || backlog.bytes >= self.mark_bytes
    }

    /// Whether `backlog` is under the mark: a catching-up client's replay fills its ring up to here, so it never
    /// holds ingestion back nor loses a frame.
    pub(super) fn under_mark(&self, backlog: Backlog) -> bool {
        !self.at_mark(backlog)
    }

    /// The backlog changed to `backlog`.
    pub(super) fn update(&self, backlog: Backlog, now: Instant, admission: &Admission) {
        let next = match self.state.get() {
            State::Ahead if self.at_mark(backlog) => {
                admission.hold(now);
                State::Behind
            }
            State::Behind if !self.at_mark(backlog) => {
                admission.unhold(now);
                State::Ahead
            }
            State::Lagging(since)
                if !self.at_mark(backlog)
                    && self.socket_full_since.get().is_none()
                    && now.saturating_duration_since(since) >= LAGGING_MIN =>
            {
                admission
                    .lagging
                    .set(admission.lagging.get().saturating_sub(1));
                State::Ahead
            }
            same => same,
        };
        self.state.set(next);
    }

    /// The writer took frames and starts writing them.
    pub(super) fn write_started(&self, now: Instant) {
        self.writing_since.set(Some(now));
    }

    /// The writer finished a batch; `whole` when it went out in one write. `backlog` is what is left queued.
    pub(super) fn write_finished(
        &self,
        whole: bool,
        backlog: Backlog,
        now: Instant,
        admission: &Admission,
    ) {
        self.writing_since.set(None);
        let full_since = if whole {
            None
        } else {
            Some(self.socket_full_since.get().unwrap_or(now))
        };
        self.socket_full_since.set(full_since);
        self.update(backlog, now, admission);
    }

    /// Declares the client lagging if it is behind and its socket has held its writes back for the grace period;
    /// true if it did.
    pub(super) fn expire(&self, now: Instant, admission: &Admission) -> bool {
        if self.state.get() != State::Behind {
            return false;
        }
        let grace = admission.grace;
        let socket_full = self
            .socket_full_since
            .get()
            .is_some_and(|since| now.saturating_duration_since(since) >= grace);
        let stuck = self
            .writing_since
            .get()
            .is_some_and(|since| now.saturating_duration_since(since) >= grace);
        if !(socket_full || stuck) {
            return false;
        }
        self.state.set(State::Lagging(now));
        admission.lagging.set(admission.lagging.get() + 1);
        admission
            .declared_lagging
            .set(admission.declared_lagging.get() + 1);
        admission.unhold(now);
        if let Some(held_back) = admission.warnings.allow(now) {
            tracing::warn!(
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                also_since_last_warning = held_back,
                "a client does not keep up (its socket stays full): ingestion no longer waits for it, its oldest \
                 messages are dropped when its queue is full"
            );
        }
        true
    }

    /// Whether the client does not keep up (nothing waits for it).
    pub(super) fn is_lagging(&self) -> bool {
        matches!(self.state.get(), State::Lagging(_))
    }

    /// The client left or is closing: it never counts again.
    pub(super) fn release(&self, now: Instant, admission: &Admission) {
        match self.state.replace(State::Released) {
            State::Behind => admission.unhold(now),
            State::Lagging(_) => admission
                .lagging
                .set(admission.lagging.get().saturating_sub(1)),
            State::Ahead | State::Released => {}
        }
    }
}

/// Ingestion's view of the hub: whether it may publish, and waiting until it may. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    hub: Hub,
}

/// Admission counters, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Clients that keep up and are behind right now (ingestion waits while this is not 0).
    pub behind: usize,
    /// Clients lagging right now (not waited for).
    pub lagging: usize,
    /// Clients declared lagging since start.
    pub declared_lagging: u64,
    /// Milliseconds ingestion was held back for clients that keep up, since start.
    pub held_ms: u64,
}

impl Gate {
    pub(super) fn new(hub: Hub) -> Self {
        Self { hub }
    }

    fn admission(&self) -> &Admission {
        &self.hub.state.admission
    }

    /// True while ingestion may publish (no client that keeps up is behind). Checked before every message.
    pub(crate) fn admits(&self) -> bool {
        self.admission().admits()
    }

    /// Resolves once ingestion may publish. While it waits, it checks every quarter of the grace period for
    /// clients whose socket holds them back, and stops waiting for them.
    pub(crate) async fn admitted(&self) {
        let check_every = (self.admission().grace / 4).max(Duration::from_millis(1));
        while !self.admits() {
            let mut registered = false;
            let woken = poll_fn(|cx| {
                if registered {
                    Poll::Ready(())
                } else {
                    registered = true;
                    self.admission().wait_here(cx.waker());
                    Poll::Pending
                }
            });
            monoio::select! {
                _ = woken => {}
                _ = monoio::time::sleep(check_every) => self.expire(Instant::now()),
            }
        }
    }

    /// Declares lagging every behind client whose socket has held it back for the grace period.
    pub(crate) fn expire(&self, now: Instant) {
        let admission = self.admission();
        for client in self.hub.client_slab().iter() {
            if admission.admits() {
                return;
            }
            client.standing.expire(now, admission);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> AdmissionStats {
        let admission = self.admission();
        AdmissionStats {
            behind: admission.behind.get(),
            lagging: admission.lagging.get(),
            declared_lagging: admission.declared_lagging.get(),
            held_ms: u64::try_from(admission.held(Instant::now()).as_millis()).unwrap_or(u64::MAX),
        }
    }
}

const METRICS: &[Metric<AdmissionStats>] = &[
    Metric::gauge(
        "certstream_admission_clients_behind",
        "admission.clients_behind",
        "Clients that keep up whose queue is at its mark: ingestion waits for them.",
        |s| s.behind as u64,
    ),
    Metric::gauge(
        "certstream_admission_clients_lagging",
        "admission.clients_lagging",
        "Clients that do not keep up (socket full for the grace period): ingestion does not wait for them.",
        |s| s.lagging as u64,
    ),
    Metric::counter(
        "certstream_admission_clients_declared_lagging_total",
        "admission.clients_declared_lagging",
        "Clients declared lagging since start.",
        |s| s.declared_lagging,
    ),
    Metric {
        name: "certstream_admission_ingestion_held_seconds_total",
        kind: Kind::Counter,
        help: "Time ingestion waited for clients that keep up to drain their queues.",
        stats: "admission.ingestion_held_ms",
        read: Read::Millis(|s| s.held_ms),
    },
];

impl StatusReporter for Gate {
    fn report(&self, out: &mut Report<'_>) {
        out.metrics(METRICS, &self.stats());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(frames: usize) -> Backlog {
        Backlog { frames, bytes: 0 }
    }

    const GRACE: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_mark_is_three_quarters_of_the_ring_within_bounds() {
        assert_eq!(mark_for(256), 192);
        assert_eq!(mark_for(1), 1);
        assert_eq!(mark_for(3), 3);
        assert_eq!(mark_for(1_000_000), MAX_MARK);
    }

    #[test]
    fn a_client_at_its_mark_holds_ingestion_until_its_writer_brings_it_under() {
        let admission = Admission::new(GRACE);
        let standing = Standing::new(8, usize::MAX); // mark 6
        let t0 = Instant::now();
        standing.update(frames(5), t0, &admission);
        assert!(admission.admits());
        standing.update(frames(6), t0, &admission);
        assert!(!admission.admits());
        // A writer delayed by the reactor (not by its socket) finishes within the grace period: never lagging.
        standing.write_started(t0);
        assert!(!standing.expire(t0 + GRACE - ms(100), &admission));
        standing.write_finished(true, frames(0), t0 + GRACE - ms(50), &admission);
        assert!(admission.admits());
        assert_eq!(admission.held(t0 + ms(5000)), GRACE - ms(50));
    }

    #[test]
    fn a_full_socket_for_the_grace_period_makes_a_client_lagging_until_it_caught_up_and_served_its_time()
     {
        let admission = Admission::new(GRACE);
        let standing = Standing::new(8, usize::MAX);
        let t0 = Instant::now();
        standing.write_started(t0);
        standing.write_finished(false, frames(6), t0 + ms(10), &admission);
        assert!(!admission.admits());
        assert!(
            !standing.expire(t0 + ms(400), &admission),
            "within the grace period"
        );
        assert!(standing.expire(t0 + ms(510), &admission));
        assert!(admission.admits(), "no longer waited for");
        assert_eq!(admission.lagging.get(), 1);
        // More frames and even a whole write within LAGGING_MIN change nothing.
        standing.update(frames(8), t0 + ms(600), &admission);
        standing.write_finished(true, frames(0), t0 + ms(700), &admission);
        assert!(admission.admits());
        assert_eq!(standing.state.get(), State::Lagging(t0 + ms(510)));
        // Caught up after LAGGING_MIN: waited for again.
        standing.update(frames(1), t0 + LAGGING_MIN + ms(600), &admission);
        assert_eq!(standing.state.get(), State::Ahead);
        assert_eq!(admission.lagging.get(), 0);
        assert_eq!(admission.declared_lagging.get(), 1);
    }

    #[test]
    fn big_messages_reach_the_mark_in_bytes_before_the_ring_is_full() {
        let admission = Admission::new(GRACE);
        let standing = Standing::new(256, 4 << 20); // marks: 192 frames, 3 MiB
        let t0 = Instant::now();
        let big = |frames| Backlog {
            frames,
            bytes: frames << 20,
        };
        standing.update(big(2), t0, &admission);
        assert!(admission.admits());
        standing.update(big(3), t0, &admission);
        assert!(!admission.admits(), "3 MiB queued in 3 frames is the mark");
        standing.write_finished(true, big(0), t0 + ms(5), &admission);
        assert!(admission.admits());
    }

    #[test]
    fn a_write_stuck_for_a_grace_period_counts_as_a_full_socket() {
        let admission = Admission::new(GRACE);
        let standing = Standing::new(8, usize::MAX);
        let t0 = Instant::now();
        standing.update(frames(6), t0, &admission);
        standing.write_started(t0);
        assert!(!standing.expire(t0 + GRACE - ms(1), &admission));
        assert!(standing.expire(t0 + GRACE, &admission));
        assert!(admission.admits());
    }

    #[test]
    fn leaving_releases_whatever_the_client_held() {
        let admission = Admission::new(GRACE);
        let (behind, lagging) = (Standing::new(4, usize::MAX), Standing::new(4, usize::MAX));
        let t0 = Instant::now();
        behind.update(frames(3), t0, &admission);
        lagging.write_finished(false, frames(3), t0, &admission);
        lagging.expire(t0 + GRACE, &admission);
        assert_eq!((admission.behind.get(), admission.lagging.get()), (1, 1));
        behind.release(t0 + GRACE, &admission);
        lagging.release(t0 + GRACE, &admission);
        assert_eq!((admission.behind.get(), admission.lagging.get()), (0, 0));
        behind.update(frames(4), t0 + GRACE, &admission);
        assert!(admission.admits(), "a released client never counts again");
    }
}
