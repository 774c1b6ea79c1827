use std::fmt;
use std::io::Write as _;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cert::{self, Cert, CertError, CertJson};
use certstream_ct::entry::{EntryType, LogEntry};
use certstream_ws::frame::Frame;

use super::chain_cache::ChainCache;
use super::source::{LogSource, write_f64};
use super::{EncodedMessage, Message, MessageMeta};

// The fixed parts of the three messages around the serialized pieces.
const LITE_LEAF: &[u8] = b"\"leaf_cert\":";
const FULL_CHAIN: &[u8] = b"\"chain\":";
const FULL_LEAF: &[u8] = b",\"leaf_cert\":";
const DOMAINS_HEAD: &[u8] = b"{\"data\":";
const DOMAINS_TAIL: &[u8] = b",\"message_type\":\"dns_entries\"}";

/// Byte budgets of message building: what one log entry may cost, whatever a log sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildLimits {
    /// Chain cache budget (certificates and their JSON); 0 disables the cache.
    pub chain_cache_bytes: usize,
    /// Largest leaf certificate (or pre-certificate, or TBS) accepted; a larger entry is skipped unparsed.
    pub max_certificate_bytes: usize,
    /// Largest chain certificate accepted; a larger one is left out of `data.chain` unparsed and uncached.
    pub max_chain_certificate_bytes: usize,
    /// Largest message (any of the three frames' payload) published; an entry above it is skipped.
    pub max_message_bytes: usize,
}

impl Default for BuildLimits {
    /// Real certificates are 1–8 KiB (a few with thousands of names reach ~100 KiB), intermediates 1–2 KiB, full
    /// messages ~3.7× their certificate; the budgets leave that room many times over while one hostile log can
    /// cost no more than a few MiB (README, "Budgets").
    fn default() -> Self {
        Self {
            chain_cache_bytes: 8 << 20,
            max_certificate_bytes: 256 << 10,
            max_chain_certificate_bytes: 64 << 10,
            max_message_bytes: 1 << 20,
        }
    }
}

/// Why an entry produced no message. The caller logs it with the log and index, and counts it.
#[derive(Debug)]
pub enum BuildError {
    /// Neither the certificate nor (for precerts) the TBS fallback could be parsed.
    Leaf(CertError),
    /// The certificate or the message is larger than its budget.
    Oversized {
        /// "certificate" or "message".
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Leaf(err) => write!(f, "leaf certificate rejected: {err}"),
            BuildError::Oversized { what, bytes, limit } => {
                write!(f, "{what} of {bytes} bytes is over the {limit}-byte budget")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// What happened while building messages, for `/stats` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildCounters {
    /// Entries turned into messages.
    pub built: u64,
    /// Entries skipped because the leaf did not parse.
    pub leaf_rejected: u64,
    /// Entries skipped because the certificate was over `max_certificate_bytes`.
    pub oversized_certificates: u64,
    /// Entries skipped because a message was over `max_message_bytes`.
    pub oversized_messages: u64,
    /// Chain certificates left out because they were over `max_chain_certificate_bytes`.
    pub oversized_chain_certificates: u64,
    /// Precert entries whose pre-certificate did not parse, emitted from the leaf's TBS instead.
    pub precert_tbs_fallbacks: u64,
    /// Fields rendered lossily or degraded (bad strings, bad extensions).
    pub degraded_fields: u64,
    /// Chain certificates left out of `data.chain` because they did not parse.
    pub chain_rejected: u64,
    /// Chain certificates served from / added to the chain cache.
    pub chain_cache_hits: u64,
    pub chain_cache_misses: u64,
    /// Chain certificates dropped from the cache (or never kept) to stay within its byte budget.
    pub chain_cache_evicted: u64,
}

/// Turns decoded log entries into [`Message`]s: each variant serialized once and framed once.
pub struct MessageBuilder {
    limits: BuildLimits,
    chain_cache: Option<ChainCache>,
    counters: BuildCounters,
    head: Vec<u8>,
    tail: Vec<u8>,
    leaf_lite: Vec<u8>,
    leaf_full: Vec<u8>,
    chain: Vec<u8>,
    /// The leaf's cert object without `all_domains` and `as_der`.
    body: Vec<u8>,
    /// The leaf's `all_domains` JSON array (also the whole `data` of the domains-only message).
    all_domains: Vec<u8>,
}

impl MessageBuilder {
    /// A builder within `limits`.
    pub fn new(limits: BuildLimits) -> Self {
        Self {
            limits,
            chain_cache: (limits.chain_cache_bytes > 0)
                .then(|| ChainCache::new(limits.chain_cache_bytes)),
            counters: BuildCounters::default(),
            head: Vec::with_capacity(256),
            tail: Vec::with_capacity(512),
            leaf_lite: Vec::with_capacity(4096),
            leaf_full: Vec::with_capacity(8192),
            chain: Vec::with_capacity(16384),
            body: Vec::with_capacity(4096),
            all_domains: Vec::with_capacity(512),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> BuildCounters {
        BuildCounters {
            chain_cache_evicted: self.chain_cache.as_ref().map_or(0, ChainCache::evicted),
            ..self.counters.clone()
        }
    }

    /// Builds the three frames (and the metadata) of entry `index` of `source`. `chain` is the issuer chain, issuer first (for RFC 6962
    /// entries the certificates of `extra_data`; for tiled entries the issuers resolved from their fingerprints).
    /// `seen` is the time the entry was parsed, in Unix seconds.
    pub fn build(
        &mut self,
        source: &LogSource,
        index: u64,
        entry: &LogEntry<'_>,
        chain: &[&[u8]],
        seen: f64,
    ) -> Result<Message, BuildError> {
        let certificate_bytes = entry
            .leaf
            .len()
            .max(entry.pre_certificate.map_or(0, <[u8]>::len));
        if certificate_bytes > self.limits.max_certificate_bytes {
            self.counters.oversized_certificates += 1;
            return Err(BuildError::Oversized {
                what: "certificate",
                bytes: certificate_bytes,
                limit: self.limits.max_certificate_bytes,
            });
        }
        let (leaf, leaf_der) = self
            .parse_leaf(entry)
            .inspect_err(|_| self.counters.leaf_rejected += 1)?;
        self.counters.degraded_fields += u64::from(leaf.degraded_fields);

        self.head.clear();
        self.head.extend_from_slice(b"{\"data\":{\"cert_index\":");
        let _ = write!(self.head, "{index}");
        self.head.extend_from_slice(b",\"cert_link\":");
        source.write_cert_link(&mut self.head, index);
        self.head.push(b',');

        self.tail.clear();
        self.tail.extend_from_slice(b",\"seen\":");
        write_f64(&mut self.tail, seen);
        self.tail.extend_from_slice(b",\"source\":");
        source.write_json(&mut self.tail, entry.timestamp_ms);
        self.tail.extend_from_slice(match entry.entry_type {
            EntryType::X509 => {
                b",\"update_type\":\"X509LogEntry\"},\"message_type\":\"certificate_update\"}"
            }
            EntryType::Precert => {
                b",\"update_type\":\"PrecertLogEntry\"},\"message_type\":\"certificate_update\"}"
            }
        });

        // The cert object is serialized once without `all_domains` and `as_der`; the lite and full leaves are that
        // body with those keys put in front (both sort before `extensions`), so the formatter runs once per entry.
        serialize_cert(
            &mut self.body,
            &CertJson {
                cert: &leaf,
                as_der: None,
                all_domains: false,
            },
        );
        self.all_domains.clear();
        let _ = serde_json::to_writer(&mut self.all_domains, &leaf.all_domains);
        compose_cert(
            &mut self.leaf_lite,
            Some(&self.all_domains),
            None,
            &self.body,
        );
        compose_cert(
            &mut self.leaf_full,
            Some(&self.all_domains),
            Some(leaf_der),
            &self.body,
        );
        self.serialize_chain(chain);

        // Payload sizes of the three frames below (same parts), checked before any is assembled.
        let shared = self.head.len() + self.tail.len();
        let lite = shared + LITE_LEAF.len() + self.leaf_lite.len();
        let full =
            shared + FULL_CHAIN.len() + self.chain.len() + FULL_LEAF.len() + self.leaf_full.len();
        let domains = DOMAINS_HEAD.len() + self.all_domains.len() + DOMAINS_TAIL.len();
        let largest = lite.max(full).max(domains);
        if largest > self.limits.max_message_bytes {
            self.counters.oversized_messages += 1;
            return Err(BuildError::Oversized {
                what: "message",
                bytes: largest,
                limit: self.limits.max_message_bytes,
            });
        }

        self.counters.built += 1;
        let frames = EncodedMessage {
            lite: Frame::text_from_parts(&[&self.head, LITE_LEAF, &self.leaf_lite, &self.tail]),
            full: Frame::text_from_parts(&[
                &self.head,
                FULL_CHAIN,
                &self.chain,
                FULL_LEAF,
                &self.leaf_full,
                &self.tail,
            ]),
            domains: Frame::text_from_parts(&[DOMAINS_HEAD, &self.all_domains, DOMAINS_TAIL]),
        };
        // The leaf is serialized: its fields move into the metadata without a copy.
        let meta = MessageMeta {
            log_id: source.log_id(),
            index,
            entry_type: entry.entry_type,
            fingerprint: leaf.sha256.into_boxed_str(),
            issuer: leaf.issuer.aggregated.into_boxed_str(),
            all_domains: leaf.all_domains.into_boxed_slice(),
            cursor: None,
        };
        Ok(Message { meta, frames })
    }

    /// The leaf and the DER it was parsed from. Precert entries use the full pre-certificate
    /// (docs/wire-format.md §3.4), and fall back to the leaf's TBSCertificate only when there is no usable one.
    fn parse_leaf<'e>(&mut self, entry: &LogEntry<'e>) -> Result<(Cert, &'e [u8]), BuildError> {
        match entry.entry_type {
            EntryType::X509 => cert::parse_certificate(entry.leaf)
                .map(|c| (c, entry.leaf))
                .map_err(BuildError::Leaf),
            EntryType::Precert => {
                if let Some(der) = entry.pre_certificate
                    && let Ok(cert) = cert::parse_certificate(der)
                {
                    return Ok((cert, der));
                }
                self.counters.precert_tbs_fallbacks += 1;
                cert::parse_tbs_certificate(entry.leaf)
                    .map(|c| (c, entry.leaf))
                    .map_err(BuildError::Leaf)
            }
        }
    }

    /// `[cert, cert, …]` for the full stream, from the cache where possible.
    fn serialize_chain(&mut self, chain: &[&[u8]]) {
        self.chain.clear();
        self.chain.push(b'[');
        let mut first = true;
        for der in chain {
            if der.len() > self.limits.max_chain_certificate_bytes {
                // Not parsed, not cached: a log could otherwise fill memory and the cache with huge garbage.
                self.counters.oversized_chain_certificates += 1;
                continue;
            }
            let Some(json) = self.chain_cert_json(der) else {
                self.counters.chain_rejected += 1;
                continue;
            };
            if !first {
                self.chain.push(b',');
            }
            first = false;
            self.chain.extend_from_slice(&json);
        }
        self.chain.push(b']');
    }

    fn chain_cert_json(&mut self, der: &[u8]) -> Option<Rc<[u8]>> {
        if let Some(cached) = self.chain_cache.as_mut().and_then(|cache| cache.get(der)) {
            self.counters.chain_cache_hits += 1;
            return cached;
        }
        self.counters.chain_cache_misses += 1;
        let json = cert::parse_certificate(der).ok().map(|cert| {
            self.counters.degraded_fields += u64::from(cert.degraded_fields);
            serialize_cert(
                &mut self.body,
                &CertJson {
                    cert: &cert,
                    as_der: None,
                    all_domains: false,
                },
            );
            let mut out = Vec::with_capacity(self.body.len() + der.len() * 4 / 3 + 16);
            compose_cert(&mut out, None, Some(der), &self.body);
            Rc::<[u8]>::from(out)
        });
        if let Some(cache) = self.chain_cache.as_mut() {
            cache.insert(der, json.clone());
        }
        json
    }
}

/// A cert object from its `body` (serialized without `all_domains` and `as_der`) with those keys put back in front,
/// in key order. Base64 needs no JSON escaping, so `as_der` is encoded straight into the output.
fn compose_cert(out: &mut Vec<u8>, all_domains: Option<&[u8]>, as_der: Option<&[u8]>, body: &[u8]) {
    out.clear();
    out.push(b'{');
    if let Some(all_domains) = all_domains {
        out.extend_from_slice(b"\"all_domains\":");
        out.extend_from_slice(all_domains);
        out.push(b',');
    }
    if let Some(der) = as_der {
        out.extend_from_slice(b"\"as_der\":\"");
        let start = out.len();
        // Padded base64 length; no overflow for the length of a slice.
        out.resize(start + der.len().div_ceil(3) * 4, 0);
        // Cannot fail, the output is sized above; a panic here is caught and counted by the entry's boundary.
        let written = STANDARD
            .encode_slice(der, &mut out[start..])
            .expect("base64 output sized for the input");
        out.truncate(start + written);
        out.extend_from_slice(b"\",");
    }
    // `body` is `{"extensions":…}`: everything after its opening brace.
    out.extend_from_slice(&body[1..]);
}

fn serialize_cert(out: &mut Vec<u8>, cert: &CertJson<'_>) {
    out.clear();
    // Serializing into a Vec cannot fail: every field is a string, number, bool or a collection of them.
    let _ = serde_json::to_writer(&mut *out, cert);
}

/// `seen` for an entry parsed now: Unix seconds with microseconds, as CaliDog stamps it.
pub(crate) fn seen_now() -> f64 {
    // A clock set before 1970 stamps 0.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as f64 / 1_000_000.0
}
