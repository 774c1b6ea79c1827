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
        let client = self.join(kind, selection);
        let Ok(matcher) = self.matcher_of(&client) else {
            bump(&state.replays.refused);
            return Err("the stream filter could not be compiled".into());
        };
        let after = match start {
            ReplayStart::After(cursor) => Some(cursor),
            ReplayStart::Since(_) | ReplayStart::Live => None,
        };
        if let Some(after) = after
            && self.go_live(&client, after, false, matcher.as_ref())
        {
            bump(&state.resumes_served);
            return Ok((client, None));
        }
        let replay = source.open(start).inspect_err(|_| bump(&state.replays.refused))?;
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
    /// docs): queues the history's messages after it, and skips live ones up to it. `ahead`: whether `delivered`
    /// may be past the hub's last cursor (a cursor the replay delivered exists; one a client gave may not).
    fn go_live(
        &self,
        client: &Client,
        delivered: u64,
        ahead: bool,
        matcher: Option<&SpecMatcher>,
    ) -> bool {
        let state = &self.state;
        let Some(last) = state.last_cursor.get() else {
            // The hub's feed has published nothing yet: where it will start is unknown.
            return false;
        };
        let history = state.history.borrow();
        let covered = if delivered > last {
            ahead
        } else {
            delivered == last
                || (history.front()).is_some_and(|first| {
                    first.meta.cursor.is_some_and(|first| first <= delivered)
                })
        };
        if !covered {
            return false;
        }
        let from =
            history.partition_point(|message| message.meta.cursor.is_none_or(|c| c <= delivered));
        // A catching-up client goes live only when the rest fits under its mark: the replay never drops.
        if ahead {
            let rest = history.len() - from;
            if rest > 0 {
                let bytes = (history.range(from..))
                    .map(|message| message.frames.get(client.kind).wire().len())
                    .sum();
                if !client.has_room(rest, bytes) {
                    return false;
                }
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
        let in_flight = self.in_flight.get();
        let backlog = Backlog {
            frames: self.ring.borrow().len() + in_flight.frames,
            bytes: self.ring_bytes.get() + in_flight.bytes,
        };
        (frames == 1 && backlog.frames == 0)
            || self.standing.under_mark(Backlog {
                frames: backlog.frames + frames,
                bytes: backlog.bytes + bytes,
            })
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
            let selected = (self.matcher.as_ref()).is_none_or(|matcher| matcher.matches(&message.meta));
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
            if (self.hub).go_live(&self.client, cursor, true, self.matcher.as_ref()) {
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
        self.client.queue_close(Frame::close(1011, REPLAY_ENDED));
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
