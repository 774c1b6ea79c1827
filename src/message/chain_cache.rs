use std::collections::HashMap;
use std::rc::Rc;

/// Chain certificates repeat in almost every entry (a few hundred intermediates serve the whole firehose), so
/// their full-stream JSON is serialized once and reused. Bounded in bytes (what a log sends decides the size of
/// an entry, not the count): two generations of at most half the budget each, the older one dropped whole when the
/// newer fills, so recently used certificates survive and memory stays below `budget` bytes.
pub(crate) struct ChainCache {
    current: HashMap<ChainKey, CachedCert>,
    previous: HashMap<ChainKey, CachedCert>,
    /// Bytes held by `current` (`previous` holds at most `generation_bytes`).
    current_bytes: usize,
    generation_bytes: usize,
    /// Certificates dropped to stay within the budget (or never kept: larger than a generation).
    evicted: u64,
}

/// What a cached certificate costs besides its DER and JSON: the key, the map slot, two allocations.
const ENTRY_OVERHEAD: usize = 128;

/// A certificate's DER ends with its signature, whose last bytes are as good as random: length plus the last 32
/// bytes make a cheap key, and a hit is confirmed by comparing the whole DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ChainKey {
    len: usize,
    tail: [u8; 32],
}

impl ChainKey {
    fn of(der: &[u8]) -> Self {
        let mut tail = [0u8; 32];
        let take = der.len().min(32);
        tail[..take].copy_from_slice(&der[der.len() - take..]);
        Self {
            len: der.len(),
            tail,
        }
    }
}

struct CachedCert {
    der: Box<[u8]>,
    /// The serialized cert object, or `None` when the certificate does not parse (negative cache).
    json: Option<Rc<[u8]>>,
}

impl CachedCert {
    fn bytes(&self) -> usize {
        self.der.len() + self.json.as_ref().map_or(0, |json| json.len()) + ENTRY_OVERHEAD
    }
}

impl ChainCache {
    /// A cache holding at most `budget` bytes of certificates and their JSON.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            current_bytes: 0,
            generation_bytes: budget / 2,
            evicted: 0,
        }
    }

    /// Certificates dropped (or never kept) to stay within the budget.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The cached JSON of `der`: `Some(Some(json))` when known to parse, `Some(None)` when known not to parse,
    /// `None` when not cached.
    pub(crate) fn get(&mut self, der: &[u8]) -> Option<Option<Rc<[u8]>>> {
        let key = ChainKey::of(der);
        if let Some(hit) = self.current.get(&key).filter(|cached| *cached.der == *der) {
            return Some(hit.json.clone());
        }
        let promoted = self
            .previous
            .remove(&key)
            .filter(|cached| *cached.der == *der)?;
        let json = promoted.json.clone();
        self.insert_cached(key, promoted);
        Some(json)
    }

    /// Remembers the JSON (or the parse failure) of `der`.
    pub(crate) fn insert(&mut self, der: &[u8], json: Option<Rc<[u8]>>) {
        self.insert_cached(
            ChainKey::of(der),
            CachedCert {
                der: der.into(),
                json,
            },
        );
    }

    fn insert_cached(&mut self, key: ChainKey, cached: CachedCert) {
        let bytes = cached.bytes();
        if bytes > self.generation_bytes {
            self.evicted += 1;
            return;
        }
        if self.current_bytes + bytes > self.generation_bytes {
            self.evicted += self.previous.len() as u64;
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        if let Some(replaced) = self.current.insert(key, cached) {
            self.current_bytes -= replaced.bytes();
        }
        self.current_bytes += bytes;
    }

    /// Bytes held now (at most the budget).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.current_bytes + self.previous.values().map(CachedCert::bytes).sum::<usize>()
    }

    /// Number of cached certificates.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(n: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
            .collect()
    }

    #[test]
    fn hits_misses_and_negative_entries() {
        let mut cache = ChainCache::new(1 << 20);
        let a = der(1, 100);
        assert!(cache.get(&a).is_none());
        cache.insert(&a, Some(Rc::from(&b"{}"[..])));
        assert_eq!(cache.get(&a).unwrap().as_deref(), Some(&b"{}"[..]));
        let bad = der(2, 10);
        cache.insert(&bad, None);
        assert_eq!(cache.get(&bad), Some(None));
    }

    #[test]
    fn same_key_different_der_is_a_miss() {
        let mut cache = ChainCache::new(1 << 20);
        let a = der(1, 100);
        let mut b = a.clone();
        b[0] ^= 0xFF; // same length and tail, different certificate
        cache.insert(&a, Some(Rc::from(&b"a"[..])));
        assert!(cache.get(&b).is_none());
    }

    #[test]
    fn stays_within_its_byte_budget_and_keeps_recent_entries() {
        let budget = 10 * (64 + 1 + ENTRY_OVERHEAD);
        let mut cache = ChainCache::new(budget);
        for n in 0..100u8 {
            cache.insert(&der(n, 64), Some(Rc::from(&[n][..])));
            assert!(cache.len() <= 10);
            assert!(cache.bytes() <= budget);
        }
        assert!(cache.evicted() >= 90);
        assert_eq!(
            cache.get(&der(99, 64)).unwrap().as_deref(),
            Some(&[99u8][..])
        );
        assert!(cache.get(&der(0, 64)).is_none());
    }

    #[test]
    fn huge_garbage_certificates_cost_bytes_not_slots() {
        // 256 KiB unparseable "chain certificates", each new: the cache must not keep gigabytes of them.
        let budget = 1 << 20;
        let mut cache = ChainCache::new(budget);
        for n in 0..64u8 {
            cache.insert(&der(n, 256 << 10), None);
            assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
        }
        assert!(cache.evicted() > 0);
    }
}
