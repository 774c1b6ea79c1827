//! RFC 6962 log entries: `MerkleTreeLeaf` (`leaf_input`) plus `extra_data`, decoded into borrowed slices
//! without copying a certificate (docs/ct-protocols.md §1.3–1.4). Also the shared `TimestampedEntry` reader the
//! static-ct-api data tiles use.

use std::fmt;

use super::reader::Reader;

/// What kind of certificate a log entry holds (`LogEntryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `x509_entry` (0): a final certificate.
    X509,
    /// `precert_entry` (1): a pre-certificate.
    Precert,
}

/// One decoded log entry; every byte slice borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<'a> {
    /// The entry's timestamp (= SCT timestamp), milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Final certificate or pre-certificate.
    pub entry_type: EntryType,
    /// X509: the certificate DER. Precert: the TBSCertificate DER from the leaf (poison removed).
    pub leaf: &'a [u8],
    /// Precert only: issuer_key_hash.
    pub issuer_key_hash: Option<&'a [u8; 32]>,
    /// Precert only: the full pre-certificate DER (extra_data's PrecertChainEntry, or the TileLeaf's).
    pub pre_certificate: Option<&'a [u8]>,
    /// The issuer chain, issuer first.
    pub chain: Chain<'a>,
}

/// An entry's issuer chain, issuer first (possibly without the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain<'a> {
    /// RFC 6962: the DER certificates themselves.
    Certificates(Vec<&'a [u8]>),
    /// Static CT: SHA-256 fingerprints, resolved through the log's `issuer/<hex>` endpoint.
    Fingerprints(Vec<[u8; 32]>),
}

/// Which input a [`DecodeError`] offset refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// An RFC 6962 `leaf_input` (`MerkleTreeLeaf`).
    LeafInput,
    /// An RFC 6962 `extra_data` (certificate chain or `PrecertChainEntry`).
    ExtraData,
    /// A static-ct-api data tile (concatenated `TileLeaf` records).
    DataTile,
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Buffer::LeafInput => "leaf_input",
            Buffer::ExtraData => "extra_data",
            Buffer::DataTile => "data tile",
        })
    }
}

/// What was wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// A fixed-size field (or a length prefix) needs more bytes than are left.
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the enclosing structure.
        available: usize,
    },
    /// A length prefix declares more bytes than are left in the enclosing structure.
    LengthPastEnd {
        /// The declared length.
        declared: u64,
        /// Bytes left in the enclosing structure.
        available: usize,
    },
    /// Bytes left over after the declared structure.
    TrailingBytes {
        /// How many bytes are left over.
        count: usize,
    },
    /// `MerkleTreeLeaf.version` is not v1 (0). RFC 6962 §4.6: skip and count, not fatal.
    UnknownVersion(u8),
    /// `MerkleLeafType` is not `timestamped_entry` (0). RFC 6962 §4.6: skip and count, not fatal.
    UnknownLeafType(u8),
    /// `LogEntryType` is neither x509 (0) nor precert (1). RFC 6962 §4.6: skip and count, not fatal.
    UnknownEntryType(u16),
    /// An `ASN.1Cert` of length zero (the type is `opaque<1..2^24-1>`).
    EmptyCertificate,
    /// A data tile record's `leaf_index` extension differs from its position in the log.
    LeafIndexMismatch {
        /// `256 · tile_index + position`.
        expected: u64,
        /// The `leaf_index` the record carries.
        found: u64,
    },
    /// A data tile record has no `leaf_index` extension.
    MissingLeafIndex,
    /// A data tile record has more than one `leaf_index` extension.
    DuplicateLeafIndex,
    /// A data tile record's fingerprints byte length is not a multiple of 32.
    FingerprintsLength(usize),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            DecodeErrorKind::LengthPastEnd {
                declared,
                available,
            } => {
                write!(
                    f,
                    "declared length {declared} runs past the end ({available} bytes left)"
                )
            }
            DecodeErrorKind::TrailingBytes { count } => write!(f, "{count} trailing bytes"),
            DecodeErrorKind::UnknownVersion(v) => write!(f, "unknown MerkleTreeLeaf version {v}"),
            DecodeErrorKind::UnknownLeafType(t) => write!(f, "unknown MerkleLeafType {t}"),
            DecodeErrorKind::UnknownEntryType(t) => write!(f, "unknown LogEntryType {t}"),
            DecodeErrorKind::EmptyCertificate => f.write_str("empty certificate"),
            DecodeErrorKind::LeafIndexMismatch { expected, found } => {
                write!(f, "leaf_index {found}, expected {expected}")
            }
            DecodeErrorKind::MissingLeafIndex => f.write_str("no leaf_index extension"),
            DecodeErrorKind::DuplicateLeafIndex => {
                f.write_str("more than one leaf_index extension")
            }
            DecodeErrorKind::FingerprintsLength(len) => {
                write!(f, "fingerprints length {len} is not a multiple of 32")
            }
        }
    }
}

/// A malformed log entry: which input, which field, at which byte offset of that input, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The input the offset refers to.
    pub buffer: Buffer,
    /// The field being read, e.g. `"certificate_chain"`.
    pub field: &'static str,
    /// Byte offset of the field (or its length prefix) in `buffer`.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// True for an unknown version, leaf type or entry type: RFC 6962 §4.6 says a client must skip and count
    /// such entries rather than treat them as fatal.
    pub fn is_unknown_type(&self) -> bool {
        matches!(
            self.kind,
            DecodeErrorKind::UnknownVersion(_)
                | DecodeErrorKind::UnknownLeafType(_)
                | DecodeErrorKind::UnknownEntryType(_)
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at byte {}: {}",
            self.buffer, self.field, self.offset, self.kind
        )
    }
}

impl std::error::Error for DecodeError {}

/// The parts of a `TimestampedEntry`, shared by RFC 6962 leaves and data tile records.
pub(crate) struct TimestampedEntry<'a> {
    pub(crate) timestamp_ms: u64,
    pub(crate) entry_type: EntryType,
    /// Possibly empty: see [`TimestampedEntry::check_leaf`].
    pub(crate) leaf: &'a [u8],
    /// Offset of the leaf's length prefix.
    leaf_at: usize,
    pub(crate) issuer_key_hash: Option<&'a [u8; 32]>,
    /// The `CtExtensions` contents, as a reader so errors inside keep absolute offsets.
    pub(crate) extensions: Reader<'a>,
}

impl TimestampedEntry<'_> {
    /// The leaf is an `ASN.1Cert` (`opaque<1..2^24-1>`): empty is an error. Checked apart from the reading so a
    /// data tile can tell a bad record (skipped alone) from broken framing.
    pub(crate) fn check_leaf(&self, r: &Reader<'_>) -> Result<(), DecodeError> {
        if !self.leaf.is_empty() {
            return Ok(());
        }
        let field = match self.entry_type {
            EntryType::X509 => "certificate",
            EntryType::Precert => "tbs_certificate",
        };
        Err(r.error(field, self.leaf_at, DecodeErrorKind::EmptyCertificate))
    }
}

/// Reads a `TimestampedEntry` (docs/ct-protocols.md §1.3); the caller checks the leaf with
/// [`TimestampedEntry::check_leaf`].
pub(crate) fn read_timestamped_entry<'a>(
    r: &mut Reader<'a>,
) -> Result<TimestampedEntry<'a>, DecodeError> {
    let timestamp_ms = r.u64("timestamp")?;
    let at = r.position();
    let entry_type = match r.u16("entry_type")? {
        0 => EntryType::X509,
        1 => EntryType::Precert,
        other => return Err(r.error("entry_type", at, DecodeErrorKind::UnknownEntryType(other))),
    };
    let (leaf_at, leaf, issuer_key_hash) = match entry_type {
        EntryType::X509 => (r.position(), r.vector(3, "certificate")?, None),
        EntryType::Precert => {
            let issuer_key_hash = r.array::<32>("issuer_key_hash")?;
            let at = r.position();
            (at, r.vector(3, "tbs_certificate")?, Some(issuer_key_hash))
        }
    };
    let extensions = r.sub(2, "extensions")?;
    Ok(TimestampedEntry {
        timestamp_ms,
        entry_type,
        leaf,
        leaf_at,
        issuer_key_hash,
        extensions,
    })
}

/// Reads a `certificate_chain` (`ASN.1Cert<0..2^24-1>`): the certificates must exactly fill the declared total.
fn read_certificate_chain<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a [u8]>, DecodeError> {
    let mut chain = r.sub(3, "certificate_chain")?;
    // Real chains hold 1–3 certificates; 4 avoids a regrowth for nearly all of them.
    let mut certificates = Vec::with_capacity(4);
    while !chain.is_empty() {
        certificates.push(chain.certificate("certificate_chain.certificate")?);
    }
    Ok(certificates)
}

/// RFC 6962 get-entries item: MerkleTreeLeaf (version 0, leaf_type 0, TimestampedEntry) + extra_data
/// (x509: certificate_chain; precert: PrecertChainEntry).
///
/// `CtExtensions` are opaque in RFC 6962 and accepted whatever they hold. Errors for which
/// [`DecodeError::is_unknown_type`] is true should be counted and skipped, not treated as log failures.
pub fn decode_rfc6962<'a>(
    leaf_input: &'a [u8],
    extra_data: &'a [u8],
) -> Result<LogEntry<'a>, DecodeError> {
    let mut leaf = Reader::new(leaf_input, Buffer::LeafInput);
    match leaf.u8("version")? {
        0 => {}
        other => return Err(leaf.error("version", 0, DecodeErrorKind::UnknownVersion(other))),
    }
    match leaf.u8("leaf_type")? {
        0 => {}
        other => return Err(leaf.error("leaf_type", 1, DecodeErrorKind::UnknownLeafType(other))),
    }
    let entry = read_timestamped_entry(&mut leaf)?;
    entry.check_leaf(&leaf)?;
    leaf.finish("leaf_input")?;

    let mut extra = Reader::new(extra_data, Buffer::ExtraData);
    let pre_certificate = match entry.entry_type {
        EntryType::X509 => None,
        EntryType::Precert => Some(extra.certificate("pre_certificate")?),
    };
    let chain = read_certificate_chain(&mut extra)?;
    extra.finish("extra_data")?;

    Ok(LogEntry {
        timestamp_ms: entry.timestamp_ms,
        entry_type: entry.entry_type,
        leaf: entry.leaf,
        issuer_key_hash: entry.issuer_key_hash,
        pre_certificate,
        chain: Chain::Certificates(chain),
    })
}
