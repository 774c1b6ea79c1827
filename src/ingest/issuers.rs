//! The process-wide cache of static-ct-api issuer certificates (docs/ct-protocols.md §2.5), shared by every tiled
//! poller on the thread: SHA-256 fingerprint → DER. A miss is fetched once from `<monitoring>issuer/<hex>`, even
//! when several entries or logs ask at the same time, and kept only if its SHA-256 matches the fingerprint.
//! Failures are not cached: the next request for that fingerprint fetches again. Bounded in bytes: an issuer
//! larger than the largest chain certificate accepted is refused, and the cache drops issuers (any, counted in
//! `evicted`) to stay within its budget.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::http::{HttpClient, HttpError};

/// A SHA-256 fingerprint of a DER certificate.
pub type Fingerprint = [u8; 32];

/// Default `--issuer-cache-bytes`: real issuers are a few hundred certificates of 1–2 KiB (under 1 MiB in all);
/// the budget only guards against a log that invents fingerprints or serves huge issuers.
pub const DEFAULT_BUDGET_BYTES: usize = 4 << 20;
/// What an issuer costs besides its DER: the key, the map slot, the allocation.
const ENTRY_OVERHEAD: usize = 96;

/// Why an issuer could not be resolved. Cloneable: every caller waiting on the same fetch gets the same error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerError {
    /// The request failed (connection, timeout, malformed HTTP...).
    Fetch {
        /// The issuer asked for.
        fingerprint: Fingerprint,
        /// The HTTP client's error, as text.
        reason: String,
    },
    /// The log answered with a status other than 200.
    Status {
        /// The issuer asked for.
        fingerprint: Fingerprint,
        /// The HTTP status.
        status: u16,
        /// The raw `Retry-After` value of a 429 or 503, if any.
        retry_after: Option<String>,
    },
    /// The body is larger than the largest chain certificate accepted (found while it was read).
    TooLarge {
        /// The issuer asked for.
        fingerprint: Fingerprint,
        /// The largest chain certificate accepted.
        limit: usize,
    },
    /// The body's SHA-256 is not the fingerprint it was fetched for.
    Mismatch {
        /// The issuer asked for.
        fingerprint: Fingerprint,
        /// SHA-256 of what was served.
        served: Fingerprint,
    },
}

impl IssuerError {
    /// The fingerprint whose fetch failed.
    pub(crate) fn fingerprint(&self) -> &Fingerprint {
        match self {
            Self::Fetch { fingerprint, .. }
            | Self::Status { fingerprint, .. }
            | Self::TooLarge { fingerprint, .. }
            | Self::Mismatch { fingerprint, .. } => fingerprint,
        }
    }
}

impl fmt::Display for IssuerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch {
                fingerprint,
                reason,
            } => write!(f, "issuer {} fetch failed: {reason}", hex(fingerprint)),
            Self::Status {
                fingerprint,
                status,
                ..
            } => write!(f, "issuer {} answered HTTP {status}", hex(fingerprint)),
            Self::TooLarge { fingerprint, limit } => write!(
                f,
                "issuer {} is over the {limit}-byte chain certificate budget",
                hex(fingerprint)
            ),
            Self::Mismatch {
                fingerprint,
                served,
            } => write!(
                f,
                "issuer {} served a certificate whose SHA-256 is {}",
                hex(fingerprint),
                hex(served)
            ),
        }
    }
}

impl std::error::Error for IssuerError {}

type FetchResult = Result<Bytes, IssuerError>;

/// Issuer certificates by fingerprint, for one thread (share it with `Rc`).
pub struct IssuerCache {
    known: RefCell<HashMap<Fingerprint, Bytes>>,
    /// Fetches in progress: the callers waiting for each one's result.
    in_flight: RefCell<HashMap<Fingerprint, Vec<flume::Sender<FetchResult>>>>,
    /// Bytes held by `known`, and the budget.
    bytes: Cell<usize>,
    budget: usize,
    /// Largest issuer accepted.
    max_issuer_bytes: usize,
    /// Issuers dropped to stay within the budget.
    evicted: Cell<u64>,
}

impl Default for IssuerCache {
    fn default() -> Self {
        Self::new(
            DEFAULT_BUDGET_BYTES,
            crate::message::BuildLimits::default().max_chain_certificate_bytes,
        )
    }
}

impl IssuerCache {
    /// An empty cache holding at most `budget` bytes of issuers, each at most `max_issuer_bytes`.
    pub fn new(budget: usize, max_issuer_bytes: usize) -> Self {
        Self {
            known: RefCell::new(HashMap::new()),
            in_flight: RefCell::new(HashMap::new()),
            bytes: Cell::new(0),
            budget,
            max_issuer_bytes,
            evicted: Cell::new(0),
        }
    }

    /// Bytes held now (at most the budget).
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Issuers dropped to stay within the budget.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.get()
    }

    /// The DER of every fingerprint, in order, when all are cached (the common case: no future, no fetch).
    pub fn cached(&self, fingerprints: &[Fingerprint]) -> Option<Vec<Bytes>> {
        let known = self.known.borrow();
        fingerprints
            .iter()
            .map(|fp| known.get(fp).cloned())
            .collect()
    }

    /// The DER of every fingerprint, in order, fetching misses from `monitoring_url` (with its trailing `/`)
    /// under `timeout` each. Fails with the first issuer that cannot be had; nothing is cached for it.
    pub async fn resolve(
        &self,
        http: &HttpClient,
        monitoring_url: &str,
        fingerprints: &[Fingerprint],
        timeout: Duration,
    ) -> Result<Vec<Bytes>, IssuerError> {
        let mut chain = Vec::with_capacity(fingerprints.len());
        for fingerprint in fingerprints {
            chain.push(
                self.resolve_one(http, monitoring_url, fingerprint, timeout)
                    .await?,
            );
        }
        Ok(chain)
    }

    async fn resolve_one(
        &self,
        http: &HttpClient,
        monitoring_url: &str,
        fingerprint: &Fingerprint,
        timeout: Duration,
    ) -> FetchResult {
        loop {
            if let Some(der) = self.known.borrow().get(fingerprint).cloned() {
                return Ok(der);
            }
            let waiter = match self.in_flight.borrow_mut().entry(*fingerprint) {
                Entry::Occupied(mut waiting) => {
                    let (tx, rx) = flume::bounded(1);
                    waiting.get_mut().push(tx);
                    Some(rx)
                }
                Entry::Vacant(slot) => {
                    slot.insert(Vec::new());
                    None
                }
            };
            match waiter {
                // Another task's fetch; if that task was dropped mid-fetch the channel closes: try again.
                Some(rx) => {
                    if let Ok(result) = rx.recv_async().await {
                        return result;
                    }
                }
                None => {
                    let guard = InFlightGuard {
                        cache: self,
                        fingerprint: *fingerprint,
                    };
                    let result = fetch(
                        http,
                        monitoring_url,
                        fingerprint,
                        timeout,
                        self.max_issuer_bytes,
                    )
                    .await;
                    if let Ok(der) = &result {
                        self.insert(*fingerprint, der.clone());
                    }
                    guard.finish(&result);
                    return result;
                }
            }
        }
    }

    fn insert(&self, fingerprint: Fingerprint, der: Bytes) {
        let cost = |der: &Bytes| der.len() + ENTRY_OVERHEAD;
        let mut known = self.known.borrow_mut();
        let mut bytes = self.bytes.get();
        if let Some(replaced) = known.remove(&fingerprint) {
            bytes -= cost(&replaced);
        }
        // Any victim will do: a real log's issuers fit many times over, so this only trims invented ones.
        while bytes + cost(&der) > self.budget {
            let Some(victim) = known.keys().next().copied() else {
                break;
            };
            if let Some(removed) = known.remove(&victim) {
                bytes -= cost(&removed);
                self.evicted.set(self.evicted.get() + 1);
            }
        }
        if bytes + cost(&der) <= self.budget {
            bytes += cost(&der);
            known.insert(fingerprint, der);
        }
        self.bytes.set(bytes);
    }
}

/// Ends an in-flight fetch: hands the result to the waiters, or (when the fetching future is dropped) just
/// closes their channels so one of them fetches again.
struct InFlightGuard<'a> {
    cache: &'a IssuerCache,
    fingerprint: Fingerprint,
}

impl InFlightGuard<'_> {
    fn finish(self, result: &FetchResult) {
        let waiters = self
            .cache
            .in_flight
            .borrow_mut()
            .remove(&self.fingerprint)
            .unwrap_or_default(); // No entry: no one is waiting.
        for waiter in waiters {
            // A waiter that went away (its poller stopped) does not matter.
            let _ = waiter.send(result.clone());
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.in_flight.borrow_mut().remove(&self.fingerprint);
    }
}

async fn fetch(
    http: &HttpClient,
    monitoring_url: &str,
    fingerprint: &Fingerprint,
    timeout: Duration,
    max_issuer_bytes: usize,
) -> FetchResult {
    let url = format!("{monitoring_url}issuer/{}", hex(fingerprint));
    // Capped while it is read: an issuer over the chain-element budget is neither held nor hashed.
    let response = http
        .get_limited(&url, &[], timeout, max_issuer_bytes)
        .await
        .map_err(|e| match e {
            HttpError::BodyTooLarge { limit } => IssuerError::TooLarge {
                fingerprint: *fingerprint,
                limit,
            },
            e => IssuerError::Fetch {
                fingerprint: *fingerprint,
                reason: e.to_string(),
            },
        })?;
    if response.status != 200 {
        return Err(IssuerError::Status {
            fingerprint: *fingerprint,
            status: response.status,
            retry_after: response.retry_after().map(str::to_string),
        });
    }
    let served: Fingerprint = Sha256::digest(&response.body).into();
    if served != *fingerprint {
        return Err(IssuerError::Mismatch {
            fingerprint: *fingerprint,
            served,
        });
    }
    Ok(response.body)
}

/// Lowercase hex, as the issuer URL wants it.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0]), "00ab0ff0");
        assert_eq!(hex(&[0xff; 32]).len(), 64);
    }

    #[test]
    fn the_byte_budget_holds() {
        let cache = IssuerCache::new(2 * (3 + ENTRY_OVERHEAD), 1024);
        for i in 0..5u8 {
            cache.insert([i; 32], Bytes::from_static(b"der"));
        }
        assert_eq!(cache.known.borrow().len(), 2);
        assert_eq!(cache.evicted(), 3);
        assert!(cache.cached(&[[4; 32]]).is_some(), "the newest is kept");
        // 128 KiB issuers: a budget of 1 MiB holds a handful, never gigabytes.
        let cache = IssuerCache::new(1 << 20, 256 << 10);
        for i in 0..64u8 {
            cache.insert([i; 32], Bytes::from(vec![i; 128 << 10]));
            assert!(cache.bytes() <= 1 << 20);
        }
        assert_eq!(cache.known.borrow().len(), 7);
    }
}
