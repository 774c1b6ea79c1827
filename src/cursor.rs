//! Cursors: with JetStream, every message clients see was read from the stream, and its stream sequence is its
//! cursor (`MessageMeta::cursor`, shown to clients as the message's `cursor` field and as the server-sent events
//! `id:`). A client may start from one (`?cursor=`, `?since=`, `Last-Event-ID`): the messages after it are read
//! from the stream at catch-up speed, then it continues live (docs/wire-format.md §10).
//!
//! This module is the seam between the broker's thread, which reads the stream, and the reactor, which serves the
//! messages: a [`Replay`] is an ordered run of decoded messages, bounded in bytes, that a [`ReplaySource`] opens
//! from a [`ReplayStart`]. The hub's live feed is one; a catching-up client has its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use tokio::sync::Notify;

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
    queue: Arc<Queue>,
}

/// What both ends share: the bytes queued, and the wake-up of a feeder waiting for room.
#[derive(Default)]
struct Queue {
    bytes: AtomicUsize,
    /// Set when the reactor's end is dropped, before the feeder is woken (the channel's own disconnection comes
    /// only after `Drop::drop` returns: a feeder woken first would wait again, forever).
    closed: AtomicBool,
    /// Notified when a message is taken and when the reactor's end is dropped (any runtime may wait on it).
    changed: Notify,
}

/// The broker thread's end of a replay: what it decoded, in order, while the reactor's end holds fewer than its
/// byte budget.
pub struct ReplayFeeder {
    messages: flume::Sender<Message>,
    queue: Arc<Queue>,
    budget: usize,
}

/// A replay whose queue holds at most about `budget` bytes of messages (and at least one message).
pub fn replay_channel(budget: usize) -> (ReplayFeeder, Replay) {
    let (sender, receiver) = flume::unbounded();
    let queue = Arc::new(Queue::default());
    (
        ReplayFeeder {
            messages: sender,
            queue: queue.clone(),
            budget,
        },
        Replay {
            messages: receiver,
            queue,
        },
    )
}

impl Replay {
    /// The next message; `None` once the feeder is gone (the stream could not be read further: a client's replay
    /// ends its connection, so it reconnects from its last cursor).
    pub async fn next(&mut self) -> Option<Message> {
        let message = self.messages.recv_async().await.ok()?;
        self.queue
            .bytes
            .fetch_sub(message.weight(), Ordering::Relaxed);
        self.queue.changed.notify_one();
        Some(message)
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        // A feeder waiting for room learns that nobody will make any.
        self.queue.closed.store(true, Ordering::Release);
        self.queue.changed.notify_one();
    }
}

impl ReplayFeeder {
    /// Whether the reactor's end has room for more (the feeder waits while it has none, so a client that reads
    /// slowly slows its replay down instead of growing it).
    pub fn has_room(&self) -> bool {
        self.queue.bytes.load(Ordering::Relaxed) < self.budget
    }

    /// Bytes the reactor's end may still take before it is full.
    pub fn room_bytes(&self) -> usize {
        self.budget
            .saturating_sub(self.queue.bytes.load(Ordering::Relaxed))
    }

    /// Waits until the reactor's end has room (true) or is gone (false), woken by the reactor's end itself.
    pub async fn room(&self) -> bool {
        loop {
            if self.is_closed() {
                return false;
            }
            if self.has_room() {
                return true;
            }
            // A wake-up between the checks and this wait is not lost: `notify_one` keeps it for the next wait.
            self.queue.changed.notified().await;
        }
    }

    /// Queues `message`; false once the reactor's end is gone (the client left).
    pub fn send(&self, message: Message) -> bool {
        self.queue
            .bytes
            .fetch_add(message.weight(), Ordering::Relaxed);
        self.messages.send(message).is_ok()
    }

    /// Whether the reactor's end is gone.
    pub fn is_closed(&self) -> bool {
        self.queue.closed.load(Ordering::Acquire) || self.messages.is_disconnected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::EncodedMessage;
    use certstream_ws::frame::Frame;
    use futures_util::FutureExt as _;

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
        assert!(feeder.room().now_or_never().is_none(), "waiting for room");
        let next = |replay: &mut Replay| replay.next().now_or_never().flatten();
        assert_eq!(next(&mut replay).and_then(|m| m.meta.cursor), Some(1));
        assert!(feeder.has_room(), "taking one makes room");
        assert_eq!(feeder.room().now_or_never(), Some(true));
        assert_eq!(next(&mut replay).and_then(|m| m.meta.cursor), Some(2));
        assert!(next(&mut replay).is_none());
        assert!(feeder.send(message(3, 2000)));
        assert!(feeder.room().now_or_never().is_none(), "full again");
        drop(replay);
        assert_eq!(
            feeder.room().now_or_never(),
            Some(false),
            "the reactor's end is gone"
        );
        assert!(feeder.is_closed());
        assert!(!feeder.send(message(4, 1)));
    }
}
