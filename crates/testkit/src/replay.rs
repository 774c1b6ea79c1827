//! An in-memory JetStream stream for the server's replay tests: messages with their cursors and the time each was
//! stored. Each replay of it is fed on a std thread of its own, as the broker's thread feeds one, and waits while
//! the reactor's end is full ([`ReplayFeeder::has_room`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use certstream::cursor::{Replay, ReplayFeeder, ReplaySource, ReplayStart, replay_channel};
use certstream::message::{EncodedMessage, Message};

/// Bytes a replay's queue holds before its feeder waits (small: the tests see the waiting).
const REPLAY_BUDGET: usize = 64 * 1024;

/// How often a waiting feeder looks again.
const FEEDER_POLL: Duration = Duration::from_millis(1);

/// The stream; clones share it (one for the test, one for the server's thread).
#[derive(Clone, Default)]
pub struct MemoryStream {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The stored messages in cursor order, with when each was stored.
    messages: Vec<(SystemTime, Message)>,
    /// Replays end once they have sent what is stored (as when the broker is lost), instead of waiting for more.
    ending: bool,
    /// Replays cannot be opened (answered 503).
    refusing: bool,
    /// Replays opened, each with its start.
    opened: Vec<ReplayStart>,
}

impl MemoryStream {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `frames` as the message of `cursor`, stored at `stored`; returns the message (to publish it too).
    pub fn append(&self, cursor: u64, frames: EncodedMessage, stored: SystemTime) -> Message {
        let mut message = Message::from(frames);
        message.meta.cursor = Some(cursor);
        self.inner().messages.push((stored, message.clone()));
        message
    }

    /// From now on, replays end at the end of what is stored.
    pub fn end_replays(&self) {
        self.inner().ending = true;
    }

    /// From now on, replays cannot be opened.
    pub fn refuse_replays(&self) {
        self.inner().refusing = true;
    }

    /// The starts of the replays opened so far.
    pub fn opened(&self) -> Vec<ReplayStart> {
        self.inner().opened.clone()
    }

    /// The next stored message after cursor `after`, or (with no cursor yet) the first stored at or after `since`.
    fn next(&self, after: Option<u64>, since: SystemTime) -> Result<Option<Message>, ()> {
        let inner = self.inner();
        let next = inner.messages.iter().find(|(stored, message)| match after {
            Some(after) => message.meta.cursor.is_some_and(|cursor| cursor > after),
            None => *stored >= since,
        });
        match next {
            Some((_, message)) => Ok(Some(message.clone())),
            None if inner.ending => Err(()),
            None => Ok(None),
        }
    }

    /// Feeds one replay until its reactor's end is gone or (ending) the stream's end.
    fn feed(&self, feeder: ReplayFeeder, mut after: Option<u64>, since: SystemTime) {
        while !feeder.is_closed() {
            match self.next(after, since) {
                Err(()) => return,
                Ok(None) => std::thread::sleep(FEEDER_POLL),
                Ok(Some(message)) => {
                    while !feeder.has_room() {
                        if feeder.is_closed() {
                            return;
                        }
                        std::thread::sleep(FEEDER_POLL);
                    }
                    after = message.meta.cursor;
                    if !feeder.send(message) {
                        return;
                    }
                }
            }
        }
    }
}

impl ReplaySource for MemoryStream {
    fn open(&self, start: ReplayStart) -> Result<Replay, String> {
        let mut inner = self.inner();
        if inner.refusing {
            return Err("the test stream refuses replays".into());
        }
        inner.opened.push(start);
        drop(inner);
        let after = match start {
            ReplayStart::After(cursor) => Some(cursor),
            _ => None,
        };
        let since = match start {
            ReplayStart::Since(since) => since,
            _ => SystemTime::UNIX_EPOCH,
        };
        let (feeder, replay) = replay_channel(REPLAY_BUDGET);
        let stream = self.clone();
        std::thread::spawn(move || stream.feed(feeder, after, since));
        Ok(replay)
    }
}
