//! A bounded cache of immutable response bodies (full data tiles, full aligned get-entries pages).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Cached bytes above which the cache starts over (crude, but the hot set is the newest pages and tiles, which
/// are rebuilt on the next request anyway).
const MAX_BYTES: usize = 256 << 20;

/// (fault generation, log number, first entry index): a log serves either pages or tiles, never both.
type Key = (u64, usize, u64);

/// Immutable bodies by key.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    bodies: HashMap<Key, Arc<[u8]>>,
    bytes: usize,
}

impl Cache {
    /// The cached body for `key`, built (outside the lock) on a miss.
    pub fn get_or_build(&self, key: Key, build: impl FnOnce() -> Vec<u8>) -> Arc<[u8]> {
        if let Some(body) = self.lock().bodies.get(&key) {
            return Arc::clone(body);
        }
        let body: Arc<[u8]> = build().into();
        let mut inner = self.lock();
        if inner.bytes + body.len() > MAX_BYTES {
            inner.bodies.clear();
            inner.bytes = 0;
        }
        inner.bytes += body.len();
        if let Some(old) = inner.bodies.insert(key, Arc::clone(&body)) {
            inner.bytes -= old.len();
        }
        body
    }

    /// Drops everything (after the faults changed what entries look like).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.bodies.clear();
        inner.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
