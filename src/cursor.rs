//! Cursors: with JetStream, every message clients see was read from the stream, and its stream sequence is its
//! cursor (`MessageMeta::cursor`, shown to clients as the message's `cursor` field and as the server-sent events
//! `id:`). A client may start from one (`?cursor=`, `?since=`, `Last-Event-ID`): the messages after it are read
//! from the stream at catch-up speed, then it continues live (docs/wire-format.md §10).
//!
//! This module is the seam between the broker's thread, which reads the stream, and the reactor, which serves the
//! messages: a [`Replay`] is an ordered run of decoded messages, bounded in bytes, that a [`ReplaySource`] opens
//! from a [`ReplayStart`]. The hub's live feed is one (from [`ReplayStart::Live`]); a catching-up client has its
//! own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::message::Message;

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayStart {
    /// The messages after this cursor (a client's last one).
    After(u64),
    /// The messages the stream stored at or after this time.
    Since(SystemTime),
}

/// Opens replays (the broker; `None` where the server has no stream, and then clients cannot start from a
/// cursor).
pub trait ReplaySource {
    /// A replay from `start`; `Err` (answered `503`, counted) when no more replays can run at once or the broker
    /// cannot be asked.
    fn open(&self, start: ReplayStart) -> Result<Replay, String>;
}

/// The reactor's end of a replay: the messages in stream order, each with its cursor.
pub struct Replay {
    messages: flume::Receiver<Message>,
    queued: Arc<AtomicUsize>,
}

/// The broker thread's end of a replay: what it decoded, in order, while the reactor's end holds fewer than its
/// byte budget.
pub struct ReplayFeeder {
    messages: flume::Sender<Message>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// A replay whose queue holds at most about `budget` bytes of messages (and at least one message).
pub fn replay_channel(budget: usize) -> (ReplayFeeder, Replay) {
    let (sender, receiver) = flume::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ReplayFeeder {
            messages: sender,
            queued: queued.clone(),
            budget,
        },
        Replay {
            messages: receiver,
            queued,
        },
    )
}

/// What a queued message counts for: its three frames.
fn weight(message: &Message) -> usize {
    let frames = &message.frames;
    frames.full.wire().len() + frames.lite.wire().len() + frames.domains.wire().len()
}

impl Replay {
    /// The next message; `None` once the feeder is gone (the stream could not be read further: a client's replay
    /// ends its connection, so it reconnects from its last cursor).
    pub async fn next(&mut self) -> Option<Message> {
        let message = self.messages.recv_async().await.ok()?;
        self.queued.fetch_sub(weight(&message), Ordering::Relaxed);
        Some(message)
    }

    /// The next message if one is queued.
    pub fn try_next(&mut self) -> Option<Message> {
        let message = self.messages.try_recv().ok()?;
        self.queued.fetch_sub(weight(&message), Ordering::Relaxed);
        Some(message)
    }
}

impl ReplayFeeder {
    /// Whether the reactor's end has room for more (the feeder waits while it has none, so a client that reads
    /// slowly slows its replay down instead of growing it).
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.budget
    }

    /// Queues `message`; false once the reactor's end is gone (the client left).
    pub fn send(&self, message: Message) -> bool {
        self.queued.fetch_add(weight(&message), Ordering::Relaxed);
        self.messages.send(message).is_ok()
    }

    /// Whether the reactor's end is gone.
    pub fn is_closed(&self) -> bool {
        self.messages.is_disconnected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::EncodedMessage;
    use certstream_ws::frame::Frame;

    fn message(cursor: u64, bytes: usize) -> Message {
        let mut message = Message::from(EncodedMessage {
            lite: Frame::text_from_parts(&[&vec![b'l'; bytes]]),
            full: Frame::text_from_parts(&[b"{}"]),
            domains: Frame::text_from_parts(&[b"{}"]),
        });
        message.meta.cursor = Some(cursor);
        message
    }

    #[test]
    fn the_feeder_has_room_until_the_queue_reaches_its_byte_budget() {
        let (feeder, mut replay) = replay_channel(1000);
        assert!(feeder.has_room());
        assert!(feeder.send(message(1, 600)));
        assert!(feeder.has_room(), "under the budget");
        assert!(feeder.send(message(2, 600)));
        assert!(!feeder.has_room(), "over it: the feeder waits");
        assert_eq!(replay.try_next().and_then(|m| m.meta.cursor), Some(1));
        assert!(feeder.has_room(), "taking one makes room");
        assert_eq!(replay.try_next().and_then(|m| m.meta.cursor), Some(2));
        assert!(replay.try_next().is_none());
        drop(replay);
        assert!(feeder.is_closed());
        assert!(!feeder.send(message(3, 1)));
    }
}
