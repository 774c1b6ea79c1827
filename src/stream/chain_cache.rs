use std::collections::HashMap;
use std::rc::Rc;

/// Chain certificates repeat in almost every entry (a few hundred intermediates serve the whole firehose), so
/// their full-stream JSON is serialized once and reused. Bounded: two generations, the older one dropped whole when
/// the newer fills, so recently used certificates survive and memory stays below `capacity` entries.
pub struct ChainCache {
    current: HashMap<ChainKey, CachedCert>,
    previous: HashMap<ChainKey, CachedCert>,
    generation_size: usize,
}

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

impl ChainCache {
    /// A cache holding at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        let generation_size = (capacity / 2).max(1);
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation_size,
        }
    }

    /// The cached JSON of `der`: `Some(Some(json))` when known to parse, `Some(None)` when known not to parse,
    /// `None` when not cached.
    pub fn get(&mut self, der: &[u8]) -> Option<Option<Rc<[u8]>>> {
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
    pub fn insert(&mut self, der: &[u8], json: Option<Rc<[u8]>>) {
        self.insert_cached(
            ChainKey::of(der),
            CachedCert {
                der: der.into(),
                json,
            },
        );
    }

    fn insert_cached(&mut self, key: ChainKey, cached: CachedCert) {
        if self.current.len() >= self.generation_size {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, cached);
    }

    /// Number of cached certificates.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let mut cache = ChainCache::new(8);
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
        let mut cache = ChainCache::new(8);
        let a = der(1, 100);
        let mut b = a.clone();
        b[0] ^= 0xFF; // same length and tail, different certificate
        cache.insert(&a, Some(Rc::from(&b"a"[..])));
        assert!(cache.get(&b).is_none());
    }

    #[test]
    fn stays_bounded_and_keeps_recent_entries() {
        let mut cache = ChainCache::new(10);
        for n in 0..100u8 {
            cache.insert(&der(n, 64), Some(Rc::from(&[n][..])));
            assert!(cache.len() <= 10);
        }
        assert_eq!(
            cache.get(&der(99, 64)).unwrap().as_deref(),
            Some(&[99u8][..])
        );
        assert!(cache.get(&der(0, 64)).is_none());
    }
}
