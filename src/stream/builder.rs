use std::fmt;
use std::io::Write as _;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cert::{self, Cert, CertError, CertJson};
use crate::ct::entry::{EntryType, LogEntry};
use crate::ws::frame::Frame;

use super::Frames;
use super::chain_cache::ChainCache;
use super::source::{LogSource, write_f64};

/// Why an entry produced no message. The caller logs it with the log and index, and counts it.
#[derive(Debug)]
pub enum BuildError {
    /// Neither the certificate nor (for precerts) the TBS fallback could be parsed.
    Leaf(CertError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Leaf(err) => write!(f, "leaf certificate rejected: {err}"),
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
    /// Precert entries whose pre-certificate did not parse, emitted from the leaf's TBS instead.
    pub precert_tbs_fallbacks: u64,
    /// Fields rendered lossily or degraded (bad strings, bad extensions).
    pub degraded_fields: u64,
    /// Chain certificates left out of `data.chain` because they did not parse.
    pub chain_rejected: u64,
    /// Chain certificates served from / added to the chain cache.
    pub chain_cache_hits: u64,
    pub chain_cache_misses: u64,
}

/// Turns decoded log entries into [`Frames`]: each variant serialized once and framed once.
pub struct MessageBuilder {
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
    /// A builder whose chain cache holds up to `chain_cache_capacity` certificates (0 disables the cache).
    pub fn new(chain_cache_capacity: usize) -> Self {
        Self {
            chain_cache: (chain_cache_capacity > 0).then(|| ChainCache::new(chain_cache_capacity)),
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
    pub fn counters(&self) -> &BuildCounters {
        &self.counters
    }

    /// Builds the three frames of entry `index` of `source`. `chain` is the issuer chain, issuer first (for RFC 6962
    /// entries the certificates of `extra_data`; for tiled entries the issuers resolved from their fingerprints).
    /// `seen` is the time the entry was parsed, in Unix seconds.
    pub fn build(
        &mut self,
        source: &LogSource,
        index: u64,
        entry: &LogEntry<'_>,
        chain: &[&[u8]],
        seen: f64,
    ) -> Result<Frames, BuildError> {
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

        self.counters.built += 1;
        Ok(Frames {
            lite: Frame::text_from_parts(&[
                &self.head,
                b"\"leaf_cert\":",
                &self.leaf_lite,
                &self.tail,
            ]),
            full: Frame::text_from_parts(&[
                &self.head,
                b"\"chain\":",
                &self.chain,
                b",\"leaf_cert\":",
                &self.leaf_full,
                &self.tail,
            ]),
            domains: Frame::text_from_parts(&[
                b"{\"data\":",
                &self.all_domains,
                b",\"message_type\":\"dns_entries\"}",
            ]),
        })
    }

    /// The leaf and the DER it was parsed from. Precert entries use the full pre-certificate (FORMAT.md §2), and
    /// fall back to the leaf's TBSCertificate only when there is no usable pre-certificate.
    fn parse_leaf<'e>(&mut self, entry: &LogEntry<'e>) -> Result<(Cert, &'e [u8]), BuildError> {
        match entry.entry_type {
            EntryType::X509 => cert::parse_certificate(entry.leaf)
                .map(|c| (c, entry.leaf))
                .map_err(BuildError::Leaf),
            EntryType::Precert => {
                if let Some(cert) = entry
                    .pre_certificate
                    .and_then(|der| cert::parse_certificate(der).ok())
                {
                    // `and_then` above only yields Some when pre_certificate is Some.
                    return Ok((cert, entry.pre_certificate.unwrap_or_default()));
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
        out.resize(
            start + base64::encoded_len(der.len(), true).unwrap_or_default(),
            0,
        );
        let written = STANDARD
            .encode_slice(der, &mut out[start..])
            .unwrap_or_default();
        out.truncate(start + written);
        out.extend_from_slice(b"\",");
    }
    // `body` is `{"extensions":…}`: everything after its opening brace.
    out.extend_from_slice(body.get(1..).unwrap_or_default());
}

fn serialize_cert(out: &mut Vec<u8>, cert: &CertJson<'_>) {
    out.clear();
    // Serializing into a Vec cannot fail: every field is a string, number, bool or a collection of them.
    let _ = serde_json::to_writer(&mut *out, cert);
}

/// `seen` for an entry parsed now: Unix seconds with microseconds, as CaliDog stamps it.
pub fn seen_now() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as f64 / 1_000_000.0
}
