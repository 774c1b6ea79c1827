//! The entries every mock log serves: a deterministic function of (seed, log, index), built from the corpus, and
//! their two encodings (RFC 6962 `leaf_input`/`extra_data`, static-ct-api `TileLeaf`).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::entry::EntryType;
use sha1::{Digest, Sha1};

use crate::corpus::{Corpus, CorpusEntry};
use crate::faults::EntryFaults;

/// Timestamp of entry 0 (2026-05-17T06:40:00Z); entry i is `i` ms later, so timestamps increase with the index.
const BASE_TIMESTAMP_MS: u64 = 1_779_000_000_000;

/// SplitMix64 over a sequence of words: the mock's only source of "randomness", so everything it serves
/// follows from the seed.
pub fn mix(words: &[u64]) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for word in words {
        state = state
            .wrapping_add(*word)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

/// A uniform number in [0, 1) from [`mix`].
pub fn unit(words: &[u64]) -> f64 {
    (mix(words) >> 11) as f64 / (1u64 << 53) as f64
}

/// One generated entry.
pub struct Entry<'c> {
    /// Its index in the log.
    pub index: u64,
    /// Entry timestamp, ms.
    pub timestamp_ms: u64,
    /// The corpus entry it derives from (type, TBS, chain).
    pub source: &'c CorpusEntry,
    /// X509: the certificate; precert: the pre-certificate. Unique per (log, index); garbage, empty or huge
    /// under entry faults.
    pub cert: Vec<u8>,
    /// True when `cert` (and a precert's TBS) were replaced by bytes no X.509 parser accepts (garbage, empty or
    /// huge), or the get-entries item is not base64: the entry must produce no message.
    pub unparseable: bool,
    /// A `bad_base64` fault: the get-entries item's `leaf_input` is not base64.
    pub bad_base64: bool,
    /// A `huge_chain` fault's extra chain certificate (tiled logs: issuer), after the real chain.
    pub extra_chain: Option<Vec<u8>>,
}

/// `len` bytes of DER-framed garbage (a SEQUENCE no X.509 parser accepts), different for every `tag`.
pub fn der_garbage(len: usize, tag: &[u8]) -> Vec<u8> {
    let len = len.max(16);
    let content = len - 5;
    let mut out = vec![0x30, 0x83];
    out.extend_from_slice(&(content as u32).to_be_bytes()[1..]);
    out.resize(len - tag.len(), 0x5A);
    out.extend_from_slice(tag);
    out
}

/// The entry at `index` of log number `log`, as `faults` make it.
pub fn generate(
    corpus: &Corpus,
    seed: u64,
    log: usize,
    index: u64,
    faults: EntryFaults,
) -> Entry<'_> {
    let unparseable = faults.unparseable;
    let pick = mix(&[seed, log as u64, index]) % corpus.entries.len() as u64;
    let source = &corpus.entries[pick as usize];
    // Unique per (log, index) for indices below 2^48.
    let tag = ((log as u64) << 48 | (index & 0xFFFF_FFFF_FFFF)).to_be_bytes();
    let cert = if faults.empty_cert {
        Vec::new()
    } else if let Some(len) = faults.huge_cert {
        der_garbage(len, &tag)
    } else if unparseable {
        // A SEQUENCE holding an OCTET STRING: well-formed DER, but neither a Certificate nor a TBSCertificate.
        let mut garbage = vec![0x30, 0x0A, 0x04, 0x08];
        garbage.extend_from_slice(&tag);
        garbage
    } else {
        // The last element of a Certificate is the signature BIT STRING, so its last 8 bytes are the DER's:
        // overwriting them keeps the DER valid (signatures are never verified).
        let mut cert = source.cert.clone();
        let at = cert.len().saturating_sub(tag.len());
        cert[at..].copy_from_slice(&tag);
        cert
    };
    Entry {
        index,
        timestamp_ms: BASE_TIMESTAMP_MS + index,
        source,
        cert,
        unparseable: unparseable
            || faults.huge_cert.is_some()
            || faults.empty_cert
            || faults.bad_base64,
        bad_base64: faults.bad_base64,
        extra_chain: faults.huge_chain.map(|len| der_garbage(len, &tag)),
    }
}

impl Entry<'_> {
    /// certstream's `update_type`.
    pub fn update_type(&self) -> &'static str {
        match self.source.entry_type {
            EntryType::X509 => "X509LogEntry",
            EntryType::Precert => "PrecertLogEntry",
        }
    }

    /// certstream's leaf `fingerprint`: SHA-1 of the certificate (x509) or pre-certificate (precert) DER,
    /// uppercase hex pairs joined by `:`.
    pub fn sha1_fingerprint(&self) -> String {
        let digest = Sha1::digest(&self.cert);
        let mut out = String::with_capacity(digest.len() * 3);
        for (i, byte) in digest.iter().enumerate() {
            let separator = if i == 0 { "" } else { ":" };
            let _ = write!(out, "{separator}{byte:02X}");
        }
        out
    }

    /// SHA-256 of every chain certificate, issuer first, then the extra one.
    pub fn chain_fingerprints(&self) -> Vec<[u8; 32]> {
        let mut fingerprints = self.source.chain_fingerprints.clone();
        if let Some(extra) = &self.extra_chain {
            fingerprints.push(sha2::Sha256::digest(extra).into());
        }
        fingerprints
    }

    /// The precert's TBS as served in the leaf (garbage too when unparseable, so no TBS fallback can parse it).
    fn tbs(&self) -> &[u8] {
        if self.unparseable {
            &self.cert
        } else {
            &self.source.tbs
        }
    }

    /// `TimestampedEntry` with the given `CtExtensions` contents.
    fn put_timestamped_entry(&self, out: &mut Vec<u8>, extensions: &[u8]) {
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        match self.source.entry_type {
            EntryType::X509 => {
                out.extend_from_slice(&[0, 0]);
                put_u24_vector(out, &self.cert);
            }
            EntryType::Precert => {
                out.extend_from_slice(&[0, 1]);
                out.extend_from_slice(&self.source.issuer_key_hash);
                put_u24_vector(out, self.tbs());
            }
        }
        put_u16_vector(out, extensions);
    }

    /// RFC 6962 `leaf_input` (MerkleTreeLeaf v1, timestamped_entry, no extensions).
    pub fn put_leaf_input(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0]);
        self.put_timestamped_entry(out, &[]);
    }

    /// RFC 6962 `extra_data`: the chain (x509) or `PrecertChainEntry` (precert).
    pub fn put_extra_data(&self, out: &mut Vec<u8>) {
        if self.source.entry_type == EntryType::Precert {
            put_u24_vector(out, &self.cert);
        }
        let chain: Vec<&[u8]> = self
            .source
            .chain
            .iter()
            .map(Vec::as_slice)
            .chain(self.extra_chain.as_deref())
            .collect();
        let total: usize = chain.iter().map(|c| 3 + c.len()).sum();
        put_u24(out, total);
        for cert in chain {
            put_u24_vector(out, cert);
        }
    }

    /// One `{"leaf_input":…,"extra_data":…}` object of a get-entries response; `scratch` is reused.
    pub fn put_json_item(&self, out: &mut String, scratch: &mut Vec<u8>) {
        scratch.clear();
        self.put_leaf_input(scratch);
        out.push_str("{\"leaf_input\":\"");
        if self.bad_base64 {
            // Outside the base64 alphabet, yet a plain JSON string.
            out.push('!');
        }
        BASE64.encode_string(&scratch[..], out);
        scratch.clear();
        self.put_extra_data(scratch);
        out.push_str("\",\"extra_data\":\"");
        BASE64.encode_string(&scratch[..], out);
        out.push_str("\"}");
    }

    /// A static-ct-api `TileLeaf`: the entry with its `leaf_index` extension, the pre-certificate, and the
    /// chain's fingerprints.
    pub fn put_tile_leaf(&self, out: &mut Vec<u8>) {
        let index = self.index.to_be_bytes();
        // leaf_index extension: type 0, length 5, uint40.
        let mut extension = [0u8, 0, 5, 0, 0, 0, 0, 0];
        extension[3..].copy_from_slice(&index[3..]);
        self.put_timestamped_entry(out, &extension);
        if self.source.entry_type == EntryType::Precert {
            put_u24_vector(out, &self.cert);
        }
        let fingerprints = self.chain_fingerprints();
        put_u16(out, fingerprints.len() * 32);
        for fingerprint in &fingerprints {
            out.extend_from_slice(fingerprint);
        }
    }
}

fn put_u16(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u16).to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

fn put_u16_vector(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u16(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_u24_vector(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u24(out, bytes.len());
    out.extend_from_slice(bytes);
}
