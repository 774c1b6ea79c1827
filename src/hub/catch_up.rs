//! Starting a client from a cursor or a time (JetStream; docs/wire-format.md §10).
//!
//! The rule, decided here and nowhere else:
//! - A client that starts after cursor `N` whose next message is in the replay history (or `N` is the cursor the
//!   hub published last) is filled from the history in the same step as its join, then is live: exactly as a
//!   server-sent events client that resumes ([`Hub::join_resuming`]).
//! - Otherwise its own [`Replay`] is opened from the stream and the client joins *catching up*: live publishes
//!   skip it; its [`CatchUp`] queues each replayed message its filter selects, waiting while its backlog is at the
//!   admission mark (a catch-up never drops and never holds ingestion back: it goes at the speed the client
//!   reads). After each message, in one step with no await, it goes live when the hub can take over without a
//!   gap: the history holds the message after the last one delivered (its first cursor is at most that one), or
//!   the hub's feed is not past it. The history's messages after it are queued, and live publishes skip every
//!   cursor up to it (the replay may have run ahead of the hub's feed): no gap, no duplicate at the seam.
//! - A replay that ends (the stream cannot be read further) closes the client (WebSocket close 1011; the end of an
//!   HTTP stream's body): it reconnects from its last cursor. The replay history is kept while a client catches
//!   up, so it can go live.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::admission::Backlog;
use super::{Client, ClientHandle, Hub, NO_SEQ, Queued, bump};
use crate::cursor::{Replay, ReplaySource, ReplayStart};
use crate::filter::{Selection, SpecMatcher};
use crate::log_throttle::LogThrottle;
use crate::message::StreamKind;
use certstream_ws::frame::Frame;

/// Counters of the clients started from a cursor or a time, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Replays opened from the stream for a client.
    pub started: u64,
    /// Of those, the clients that caught up and went live.
    pub caught_up: u64,
    /// Of those, the replays that ended before (the client was closed, to reconnect from its last cursor).
    pub ended: u64,
    /// Replays the source could not open (answered `503`).
    pub refused: u64,
    /// Clients catching up now.
    pub catching_up: usize,
    /// Replayed messages queued for clients.
    pub messages: u64,
}

/// The hub's side of [`ReplayStats`].
pub(super) struct ReplayCounters {
    started: Cell<u64>,
    caught_up: Cell<u64>,
    ended: Cell<u64>,
    refused: Cell<u64>,
    pub(super) catching_up: Cell<usize>,
    messages: Cell<u64>,
    ended_warnings: LogThrottle,
}

impl ReplayCounters {
    pub(super) fn new() -> Self {
        Self {
            started: Cell::new(0),
            caught_up: Cell::new(0),
            ended: Cell::new(0),
            refused: Cell::new(0),
            catching_up: Cell::new(0),
            messages: Cell::new(0),
            ended_warnings: LogThrottle::new(Duration::from_secs(60)),
        }
    }

    pub(super) fn stats(&self) -> ReplayStats {
        ReplayStats {
            started: self.started.get(),
            caught_up: self.caught_up.get(),
            ended: self.ended.get(),
            refused: self.refused.get(),
            catching_up: self.catching_up.get(),
            messages: self.messages.get(),
        }
    }
}

/// The close a client whose replay ended gets.
const REPLAY_ENDED: &str = "replay ended: reconnect from your last cursor";

impl Hub {
    /// Registers a client of `kind` that starts from `start` (after a cursor, or at a time): live at once when
    /// the replay history can serve it, else catching up from its own replay, which the returned [`CatchUp`] runs
    /// (the caller runs it alongside the connection: dropping it drops the replay). `Err`: the reason the source
    /// could not open a replay (counted; the client is not registered).
    pub(crate) fn join_from(
        &self,
        kind: StreamKind,
        selection: Selection,
        start: ReplayStart,
        source: &dyn ReplaySource,
    ) -> Result<(ClientHandle, Option<CatchUp>), String> {
        let state = &self.state;
        // It started from a cursor: it will reconnect with one, which the history may serve.
        let client = self.join_resumable(kind, selection);
        let Ok(matcher) = self.matcher_of(&client) else {
            bump(&state.replays.refused);
            return Err("the stream filter could not be compiled".into());
        };
        let after = match start {
            ReplayStart::After(cursor) => Some(cursor),
            _ => None,
        };
        if let Some(after) = after
            && self.go_live(&client, after, matcher.as_ref())
        {
            bump(&state.resumes_served);
            return Ok((client, None));
        }
        let replay = source
            .open(start)
            .inspect_err(|_| bump(&state.replays.refused))?;
        client.catching_up.set(true);
        let catching_up = &state.replays.catching_up;
        catching_up.set(catching_up.get() + 1);
        bump(&state.replays.started);
        let catch_up = CatchUp {
            hub: self.clone(),
            client: client.client.clone(),
            replay,
            matcher,
            delivered: after,
        };
        Ok((client, Some(catch_up)))
    }

    /// Makes `client` live after cursor `delivered` if the hub can take over from there without a gap (module
    /// docs): queues the history's messages after it, and skips live ones up to it. Not while the history's rest
    /// would not fit under the client's mark (it would lose some: the client catches up from the stream instead).
    fn go_live(&self, client: &Client, delivered: u64, matcher: Option<&SpecMatcher>) -> bool {
        let state = &self.state;
        let Some(last) = state.last_cursor.get() else {
            // The hub's feed has not started: where it will start is unknown.
            return false;
        };
        let history = state.history.borrow();
        // At or past the feed's last cursor, the feed itself delivers what follows (skipping up to `delivered`).
        let covered = delivered >= last
            || (history.front())
                .is_some_and(|first| first.meta.cursor.is_some_and(|first| first <= delivered));
        if !covered {
            return false;
        }
        let from =
            history.partition_point(|message| message.meta.cursor.is_none_or(|c| c <= delivered));
        let rest = history.len() - from;
        if rest > 0 {
            let bytes = (history.range(from..))
                .map(|message| message.frames.get(client.kind).wire().len())
                .sum();
            if !client.has_room(rest, bytes) {
                return false;
            }
        }
        drop(history);
        self.fill_from_history(client, from, matcher);
        client.after.set(delivered);
        if client.catching_up.replace(false) {
            let catching_up = &state.replays.catching_up;
            catching_up.set(catching_up.get() - 1);
            bump(&state.replays.caught_up);
        }
        true
    }
}

impl Client {
    /// Whether `frames` more frames of `bytes` keep this client's backlog under its admission mark (one frame
    /// always fits an empty backlog, however large).
    fn has_room(&self, frames: usize, bytes: usize) -> bool {
        let backlog = self.backlog();
        (frames == 1 && backlog.frames == 0)
            || self.standing.under_mark(Backlog {
                frames: backlog.frames + frames,
                bytes: backlog.bytes + bytes,
            })
    }

    /// What its ring holds and its writer has not finished writing.
    fn backlog(&self) -> Backlog {
        let in_flight = self.in_flight.get();
        Backlog {
            frames: self.ring.borrow().len() + in_flight.frames,
            bytes: self.ring_bytes.get() + in_flight.bytes,
        }
    }

    /// Whether the client is gone or closing: nothing more is queued for it.
    fn is_done(&self) -> bool {
        self.left.get() || self.closing.get()
    }
}

/// A catching-up client's replay: queues the replayed messages for it at the speed it reads, until it goes live
/// or its replay ends (module docs).
pub(crate) struct CatchUp {
    hub: Hub,
    client: Rc<Client>,
    replay: Replay,
    matcher: Option<SpecMatcher>,
    /// The last cursor delivered (`None` before the first, for a start at a time).
    delivered: Option<u64>,
}

impl CatchUp {
    /// Runs until the client is live, gone or closing, or the replay ends (then the client is closed).
    pub(crate) async fn run(mut self) {
        let reason = loop {
            let Some(message) = self.replay.next().await else {
                break "the stream could not be read further";
            };
            if self.client.is_done() {
                return;
            }
            let Some(cursor) = message.meta.cursor else {
                break "a replayed message had no cursor";
            };
            if self.delivered.is_some_and(|delivered| cursor <= delivered) {
                continue;
            }
            let selected =
                (self.matcher.as_ref()).is_none_or(|matcher| matcher.matches(&message.meta));
            if selected {
                let frame = Rc::new(message.frames.get(self.client.kind).clone());
                if !self.room_for(frame.wire().len()).await {
                    return;
                }
                let state = &self.hub.state;
                let queued = Queued {
                    frame,
                    seq: NO_SEQ,
                    cursor: Some(cursor),
                };
                self.client.push(queued, state, Instant::now());
                bump(&state.replays.messages);
            }
            self.delivered = Some(cursor);
            if (self.hub).go_live(&self.client, cursor, self.matcher.as_ref()) {
                return;
            }
        };
        let replays = &self.hub.state.replays;
        bump(&replays.ended);
        if let Some(held_back) = replays.ended_warnings.allow(Instant::now()) {
            tracing::warn!(
                reason,
                delivered = self.delivered,
                held_back,
                "a client's replay ended before it caught up; the client is closed to reconnect from its last cursor"
            );
        }
        // What was queued goes out first: the client reconnects after the last cursor it got.
        self.drained().await;
        self.client.queue_close(Frame::close(1011, REPLAY_ENDED));
    }

    /// Waits until the client has written everything queued for it (bounded by its writer's stall deadline), or is
    /// gone or closing.
    async fn drained(&self) {
        let client = &self.client;
        poll_fn(|cx| {
            if client.is_done() || client.backlog().frames == 0 {
                Poll::Ready(())
            } else {
                client.room_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until a frame of `bytes` fits the client's backlog; false once the client is gone or closing.
    async fn room_for(&self, bytes: usize) -> bool {
        let client = &self.client;
        poll_fn(|cx| {
            if client.is_done() {
                Poll::Ready(false)
            } else if client.has_room(1, bytes) {
                Poll::Ready(true)
            } else {
                client.room_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::cursor::{ReplayFeeder, replay_channel};
    use crate::hub::{ByteBudget, admission};
    use crate::message::{EncodedMessage, Message, MessageMeta};

    /// A source whose one replay the test feeds by hand (through the returned feeder), recording where it was asked
    /// to start.
    struct Prepared {
        replay: RefCell<Option<Replay>>,
        asked: RefCell<Vec<ReplayStart>>,
    }

    impl Prepared {
        fn new() -> (Self, ReplayFeeder) {
            let (feeder, replay) = replay_channel(1 << 20);
            let source = Self {
                replay: RefCell::new(Some(replay)),
                asked: RefCell::new(Vec::new()),
            };
            (source, feeder)
        }

        fn refusing() -> Self {
            Self {
                replay: RefCell::new(None),
                asked: RefCell::new(Vec::new()),
            }
        }
    }

    impl ReplaySource for Prepared {
        fn open(&self, start: ReplayStart) -> Result<Replay, String> {
            self.asked.borrow_mut().push(start);
            self.replay
                .borrow_mut()
                .take()
                .ok_or_else(|| "too many replays".to_owned())
        }
    }

    /// Message `cursor`: its frames' payloads are the cursor; its one name is `name`.
    fn message(cursor: u64, name: &str) -> Message {
        let text = cursor.to_string();
        Message {
            meta: MessageMeta {
                cursor: Some(cursor),
                fingerprint: text.clone().into(),
                all_domains: [name.to_owned()].into(),
                ..MessageMeta::default()
            },
            frames: EncodedMessage {
                lite: Frame::text(text.as_bytes()),
                full: Frame::text(text.as_bytes()),
                domains: Frame::text(text.as_bytes()),
            },
        }
    }

    fn publish(hub: &Hub, cursors: impl IntoIterator<Item = u64>) {
        for cursor in cursors {
            hub.publish(&Rc::new(message(cursor, "a.example")));
        }
    }

    fn feed(feeder: &ReplayFeeder, cursors: impl IntoIterator<Item = u64>) {
        for cursor in cursors {
            assert!(feeder.send(message(cursor, "a.example")));
        }
    }

    /// What the client's writer takes and writes now: the cursors of the data frames (each frame's payload must
    /// be its own cursor, which is its event id).
    fn read(client: &Client) -> Vec<u64> {
        let mut out = Vec::new();
        client.take_batch(&mut out, usize::MAX);
        client.batch_written(true);
        out.iter()
            .filter(|queued| queued.has_id())
            .map(|queued| {
                let cursor = queued
                    .cursor
                    .expect("a message from the stream has its cursor");
                assert_eq!(queued.frame.payload(), cursor.to_string().as_bytes());
                cursor
            })
            .collect()
    }

    /// Lets the spawned catch-up run.
    async fn settle() {
        for _ in 0..3 {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn all() -> Selection {
        Selection::default()
    }

    /// A hub with a resumable reader, so its replay history fills.
    fn hub_with_history() -> (Hub, ClientHandle) {
        let hub = Hub::new(64);
        let (reader, _) = hub.join_resuming(StreamKind::Lite, all(), None);
        (hub, reader)
    }

    #[test]
    fn a_cursor_in_the_history_is_served_from_it_then_live_without_a_replay() {
        let (hub, _reader) = hub_with_history();
        // Cursors have gaps (15 is missing).
        publish(&hub, (10..=14).chain(16..=20));
        let source = Prepared::refusing();
        let (client, catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(12), &source)).unwrap();
        assert!(catch_up.is_none(), "live at once");
        publish(&hub, [21]);
        assert_eq!(read(&client), [13, 14, 16, 17, 18, 19, 20, 21]);
        let (last, catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(21), &source)).unwrap();
        assert!(catch_up.is_none(), "the hub's last cursor: nothing missed");
        publish(&hub, [22]);
        assert_eq!(read(&last), [22]);
        let (gap, catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(15), &source)).unwrap();
        assert!(catch_up.is_none(), "a cursor in a gap of the history");
        assert_eq!(read(&gap), [16, 17, 18, 19, 20, 21, 22]);
        assert!(source.asked.borrow().is_empty());
        let stats = hub.stats();
        assert_eq!((stats.resumes_served, stats.replays.started), (3, 0));
    }

    #[test]
    fn a_cursor_before_the_history_and_a_time_open_a_replay() {
        let (hub, _reader) = hub_with_history();
        publish(&hub, 10..=20);
        for start in [
            ReplayStart::After(8),
            ReplayStart::Since(std::time::UNIX_EPOCH),
        ] {
            let (source, _feeder) = Prepared::new();
            let (client, catch_up) = hub
                .join_from(StreamKind::Lite, all(), start, &source)
                .unwrap();
            assert!(catch_up.is_some(), "{start:?}");
            assert!(client.catching_up.get());
            assert_eq!(*source.asked.borrow(), [start]);
        }
        let stats = hub.stats().replays;
        assert_eq!((stats.started, stats.catching_up), (2, 0), "they left");
    }

    #[test]
    fn a_cursor_past_the_feeds_last_is_live_at_once_and_gets_what_follows_it() {
        // A client of another instance that is ahead of this one: this feed delivers what follows its cursor.
        let hub = Hub::new(64);
        hub.feed_starts_after(20);
        let source = Prepared::refusing();
        let (client, catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(23), &source)).unwrap();
        assert!(catch_up.is_none(), "live at once, no replay");
        publish(&hub, 21..=25);
        assert_eq!(read(&client), [24, 25], "nothing twice");
        assert!(source.asked.borrow().is_empty());
    }

    #[test]
    fn a_history_rest_over_the_clients_mark_is_read_from_the_stream_instead() {
        let (hub, _reader) = hub_with_history();
        publish(&hub, 1..=200);
        let (source, _feeder) = Prepared::new();
        let (client, catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(1), &source)).unwrap();
        assert!(
            catch_up.is_some(),
            "199 missed messages do not fit a 64-frame ring"
        );
        assert!(client.catching_up.get());
        assert_eq!(client.dropped(), 0);
    }

    #[test]
    fn a_source_that_cannot_open_a_replay_refuses_counted_and_nobody_joins() {
        let hub = Hub::new(8);
        let refused = hub.join_from(
            StreamKind::Lite,
            all(),
            ReplayStart::After(1),
            &Prepared::refusing(),
        );
        assert_eq!(refused.err().as_deref(), Some("too many replays"));
        assert_eq!((hub.client_count(), hub.stats().replays.refused), (0, 1));
    }

    #[test]
    fn an_old_cursor_catches_up_while_live_messages_keep_coming_each_exactly_once_in_order() {
        crate::runtime::block_on(async {
            let (hub, _reader) = hub_with_history();
            publish(&hub, 101..=105);
            let (source, feeder) = Prepared::new();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(50), &source)).unwrap();
            monoio::spawn(catch_up.unwrap().run());
            let mut got = Vec::new();
            // The stream is replayed in steps while the hub's feed goes on: the catch-up meets the history at 101.
            for (replayed, live) in [
                (51..=70, 106..=107),
                (71..=100, 108..=108),
                (101..=104, 109..=110),
            ] {
                feed(&feeder, replayed);
                publish(&hub, live);
                settle().await;
                got.extend(read(&client));
            }
            assert!(!client.catching_up.get(), "live");
            assert!(feeder.is_closed(), "its replay is dropped once live");
            publish(&hub, [111]);
            got.extend(read(&client));
            assert_eq!(got, (51..=111).collect::<Vec<_>>());
            assert_eq!(client.dropped(), 0);
            let stats = hub.stats().replays;
            assert_eq!(
                (
                    stats.started,
                    stats.caught_up,
                    stats.catching_up,
                    stats.messages
                ),
                (1, 1, 0, 51)
            );
        })
        .unwrap();
    }

    #[test]
    fn a_catch_up_ahead_of_the_hubs_feed_goes_live_and_skips_what_it_delivered() {
        crate::runtime::block_on(async {
            // No history: the hub's feed is behind the replay (it published up to 90, the replay is at 95).
            let hub = Hub::with_budget(
                64,
                ByteBudget {
                    replay: 0,
                    ..ByteBudget::default()
                },
                admission::DEFAULT_SLOW_CLIENT_GRACE,
            );
            publish(&hub, 89..=90);
            let (source, feeder) = Prepared::new();
            let since = ReplayStart::Since(std::time::UNIX_EPOCH);
            let (client, catch_up) = hub
                .join_from(StreamKind::Lite, all(), since, &source)
                .unwrap();
            monoio::spawn(catch_up.unwrap().run());
            feed(&feeder, 93..=95);
            settle().await;
            assert!(
                !client.catching_up.get(),
                "a delivered cursor past the hub's: live"
            );
            publish(&hub, 91..=97);
            assert_eq!(read(&client), [93, 94, 95, 96, 97]);
        })
        .unwrap();
    }

    #[test]
    fn without_history_a_catch_up_goes_live_at_the_hubs_last_cursor() {
        crate::runtime::block_on(async {
            let hub = Hub::new(64);
            let (source, feeder) = Prepared::new();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(0), &source)).unwrap();
            monoio::spawn(catch_up.unwrap().run());
            feed(&feeder, 1..=3);
            settle().await;
            assert!(
                client.catching_up.get(),
                "the hub's feed has published nothing: where it starts is unknown"
            );
            publish(&hub, 1..=5);
            assert_eq!(
                hub.stats().history_messages,
                5,
                "kept while a client catches up"
            );
            feed(&feeder, 4..=5);
            settle().await;
            assert!(!client.catching_up.get());
            publish(&hub, [6]);
            assert_eq!(read(&client), [1, 2, 3, 4, 5, 6]);
        })
        .unwrap();
    }

    #[test]
    fn the_clients_filter_applies_to_replayed_and_history_messages() {
        crate::runtime::block_on(async {
            let (hub, _reader) = hub_with_history();
            let name = |cursor: u64| {
                if cursor.is_multiple_of(2) {
                    "www.example.com"
                } else {
                    "other.example"
                }
            };
            for cursor in 11..=14 {
                hub.publish(&Rc::new(message(cursor, name(cursor))));
            }
            let (source, feeder) = Prepared::new();
            let selection =
                Selection::from_query([("domain", "example.com")], hub.filters()).unwrap();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Lite, selection, ReplayStart::After(2), &source))
                    .unwrap();
            monoio::spawn(catch_up.unwrap().run());
            for cursor in 3..=11 {
                assert!(feeder.send(message(cursor, name(cursor))));
            }
            settle().await;
            assert!(!client.catching_up.get());
            hub.publish(&Rc::new(message(15, name(15))));
            hub.publish(&Rc::new(message(16, name(16))));
            assert_eq!(read(&client), [4, 6, 8, 10, 12, 14, 16]);
        })
        .unwrap();
    }

    #[test]
    fn a_slow_client_slows_its_catch_up_down_and_loses_nothing() {
        crate::runtime::block_on(async {
            // A ring of 8 frames: its admission mark is 6.
            let hub = Hub::new(8);
            let (_reader, _) = hub.join_resuming(StreamKind::Lite, all(), None);
            let (source, feeder) = Prepared::new();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(0), &source)).unwrap();
            monoio::spawn(catch_up.unwrap().run());
            feed(&feeder, 1..=100);
            settle().await;
            assert_eq!(
                client.ring.borrow().len(),
                5,
                "filled up to under its mark, then it waits"
            );
            assert_eq!(
                hub.gate().stats().behind,
                0,
                "a catch-up never holds ingestion"
            );
            let mut got = Vec::new();
            while got.len() < 100 {
                let batch = read(&client);
                assert!(
                    !batch.is_empty(),
                    "the catch-up goes on as the client reads"
                );
                got.extend(batch);
                settle().await;
            }
            assert_eq!(got, (1..=100).collect::<Vec<_>>());
            assert_eq!((client.dropped(), hub.stats().dropped), (0, 0));
        })
        .unwrap();
    }

    #[test]
    fn a_catching_up_client_gets_no_live_message_or_heartbeat_but_pings_and_the_close() {
        let (hub, _reader) = hub_with_history();
        publish(&hub, 10..=12);
        let (source, _feeder) = Prepared::new();
        let (client, _catch_up) =
            (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(1), &source)).unwrap();
        publish(&hub, 13..=14);
        hub.broadcast(Frame::text(b"heartbeat"));
        hub.ping_all_and_shrink_idle_rings();
        let mut out = Vec::new();
        assert!(!client.take_batch(&mut out, usize::MAX));
        let opcodes: Vec<_> = out.iter().map(|queued| queued.frame.opcode()).collect();
        assert_eq!(opcodes, [certstream_ws::frame::OpCode::Ping]);
        hub.close_all(Frame::close(1001, "bye"));
        out.clear();
        assert!(
            client.take_batch(&mut out, usize::MAX),
            "the close reaches it"
        );
    }

    #[test]
    fn a_replay_that_ends_closes_its_client_to_reconnect_from_its_last_cursor() {
        crate::runtime::block_on(async {
            let hub = Hub::new(64);
            let (source, feeder) = Prepared::new();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Full, all(), ReplayStart::After(0), &source)).unwrap();
            monoio::spawn(catch_up.unwrap().run());
            feed(&feeder, 1..=2);
            drop(feeder);
            settle().await;
            assert!(!client.is_closing(), "what was queued goes out first");
            assert_eq!(read(&client), [1, 2]);
            settle().await;
            assert!(client.is_closing());
            let mut out = Vec::new();
            assert!(client.take_batch(&mut out, usize::MAX));
            assert_eq!(&out[0].frame.payload()[..2], &1011u16.to_be_bytes());
            assert_eq!(hub.stats().replays.ended, 1);
            drop(client);
            assert_eq!(hub.stats().replays.catching_up, 0);
        })
        .unwrap();
    }

    #[test]
    fn a_client_that_leaves_drops_its_replay() {
        crate::runtime::block_on(async {
            let hub = Hub::new(64);
            let (source, feeder) = Prepared::new();
            let (client, catch_up) =
                (hub.join_from(StreamKind::Lite, all(), ReplayStart::After(0), &source)).unwrap();
            let task = monoio::spawn(catch_up.unwrap().run());
            feed(&feeder, [1]);
            settle().await;
            drop(client);
            feed(&feeder, [2]);
            task.await;
            assert!(feeder.is_closed());
        })
        .unwrap();
    }
}
