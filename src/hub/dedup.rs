//! The deduplication window: the latest publication of each certificate fingerprint seen lately, one table for
//! the whole hub.
//!
//! A client that asked for `dedup` skips a message whose certificate was already published after it joined: it
//! was offered that copy then (a filter gives the same answer for the same certificate; a copy dropped from its
//! ring counts as offered). So each client costs one compare per message, and the table is bounded by bytes, not
//! by clients: entries leave in insertion order, after `window` or when the table is over its byte budget
//! (counted as evicted).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// What one fingerprint costs in the table: its map slot (key, value, control byte, load-factor room) and its
/// place in the eviction queue.
pub(crate) const ENTRY_BYTES: usize = 64;

pub(crate) struct DedupTable {
    /// Keyed per process: which fingerprints collide in 64 bits cannot be chosen from outside.
    hasher: RandomState,
    window: Duration,
    max_entries: usize,
    /// Fingerprint hash → sequence number of its latest publication.
    latest: HashMap<u64, u64>,
    /// Fingerprint hashes in insertion order, with the time of their first publication.
    order: VecDeque<(u64, Instant)>,
    evicted: u64,
}

impl DedupTable {
    pub(crate) fn new(window: Duration, bytes: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            window,
            max_entries: (bytes / ENTRY_BYTES).max(1),
            latest: HashMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Records publication `seq` of `fingerprint`; returns the sequence number of the previous publication still
    /// in the window. A message without a fingerprint is never a repeat.
    pub(crate) fn record(&mut self, fingerprint: &str, seq: u64, now: Instant) -> Option<u64> {
        if fingerprint.is_empty() {
            return None;
        }
        while let Some(&(key, first)) = self.order.front() {
            if now.duration_since(first) < self.window {
                break;
            }
            self.order.pop_front();
            self.latest.remove(&key);
        }
        let key = self.hasher.hash_one(fingerprint);
        if let Some(previous) = self.latest.insert(key, seq) {
            return Some(previous);
        }
        self.order.push_back((key, now));
        if self.order.len() > self.max_entries
            && let Some((oldest, _)) = self.order.pop_front()
        {
            self.latest.remove(&oldest);
            self.evicted += 1;
        }
        None
    }

    /// Forgets everything (no client deduplicates any more).
    pub(crate) fn clear(&mut self) {
        self.latest = HashMap::new();
        self.order = VecDeque::new();
    }

    /// Fingerprints held.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Fingerprints evicted before the end of their window, for room.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_returns_the_previous_publication() {
        let mut table = DedupTable::new(Duration::from_secs(10), 1 << 20);
        let t0 = Instant::now();
        assert_eq!(table.record("AA", 1, t0), None);
        assert_eq!(table.record("BB", 2, t0), None);
        assert_eq!(table.record("AA", 3, t0), Some(1));
        assert_eq!(table.record("AA", 4, t0), Some(3), "the latest publication");
        assert_eq!(table.record("", 5, t0), None);
        assert_eq!(table.record("", 6, t0), None, "no fingerprint, no repeat");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(table.record("AA", 7, later), None, "the window is over");
        assert_eq!((table.len(), table.evicted()), (1, 0));
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_and_counts_it() {
        let mut table = DedupTable::new(Duration::from_secs(600), 2 * ENTRY_BYTES);
        let now = Instant::now();
        for (seq, fingerprint) in ["AA", "BB", "CC"].into_iter().enumerate() {
            table.record(fingerprint, seq as u64 + 1, now);
        }
        assert_eq!((table.len(), table.evicted()), (2, 1));
        assert_eq!(table.record("AA", 4, now), None, "evicted");
        assert_eq!(table.record("CC", 5, now), Some(3));
    }
}
