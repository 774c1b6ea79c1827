//! static-ct-api data tiles (docs/ct-protocols.md §2.3–2.4): `TileLeaf` records, Merkle leaf hashes and tile paths.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use super::entry::{Buffer, Chain, DecodeError, DecodeErrorKind, LogEntry, read_timestamped_entry};
use super::reader::Reader;

/// Entries in a full tile (static-ct-api: a data tile holds 256 entries).
pub const TILE_WIDTH: u64 = 256;
/// `ExtensionType` of the static-ct-api `leaf_index` extension.
const LEAF_INDEX_EXTENSION: u8 = 0;

/// One record of a data tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileEntry<'a> {
    /// The entry's index in the log, checked against the record's `leaf_index` extension.
    pub index: u64,
    /// The decoded entry; its chain is [`Chain::Fingerprints`].
    pub entry: LogEntry<'a>,
    /// the TimestampedEntry bytes (for the leaf hash)
    pub timestamped_entry: &'a [u8],
}

/// Why a data tile record was not yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TileError {
    /// The record at `index` was located (every length prefix of it fits) but is invalid: an empty certificate, a
    /// missing or repeated `leaf_index`, a fingerprint list that is not whole fingerprints. It costs only itself:
    /// the records after it are read on.
    Record {
        /// The record's index in the log.
        index: u64,
        /// What was wrong.
        error: DecodeError,
    },
    /// The tile's framing is broken (a length past the end, an unknown entry type whose shape is unknown, more
    /// than 256 records), or a record's `leaf_index` is not its position (this is not the tile asked for):
    /// nothing from here on can be trusted. The iterator stops.
    Framing(DecodeError),
}

impl TileError {
    /// The decoding error, wherever it was.
    pub fn decode_error(&self) -> &DecodeError {
        match self {
            Self::Record { error, .. } | Self::Framing(error) => error,
        }
    }
}

impl fmt::Display for TileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record { index, error } => write!(f, "record {index}: {error}"),
            Self::Framing(error) => write!(f, "broken framing: {error}"),
        }
    }
}

impl std::error::Error for TileError {}

/// Iterates the TileLeaf records of data tile number `tile_index` (full: 256 entries; partial: fewer); each record's
/// leaf_index extension must equal 256*tile_index + position. A bad record whose boundaries are known is yielded as
/// [`TileError::Record`] and the records after it follow; after a [`TileError::Framing`] the iterator stops
/// (records cannot be resynchronised).
///
/// An empty input yields nothing; comparing the count with the expected width is the caller's job.
pub fn data_tile_entries(
    tile: &[u8],
    tile_index: u64,
) -> impl Iterator<Item = Result<TileEntry<'_>, TileError>> {
    DataTileEntries {
        reader: Reader::new(tile, Buffer::DataTile),
        // Saturates for absurd tile numbers: no uint40 leaf_index can equal u64::MAX, so such records
        // are reported as mismatches rather than overflowing.
        first_index: tile_index.saturating_mul(TILE_WIDTH),
        position: 0,
        failed: false,
    }
}

struct DataTileEntries<'a> {
    reader: Reader<'a>,
    first_index: u64,
    position: u64,
    failed: bool,
}

impl<'a> Iterator for DataTileEntries<'a> {
    type Item = Result<TileEntry<'a>, TileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = self.read_record();
        self.failed = matches!(result, Err(TileError::Framing(_)));
        self.position += 1;
        Some(result)
    }
}

impl<'a> DataTileEntries<'a> {
    fn read_record(&mut self) -> Result<TileEntry<'a>, TileError> {
        let index = self.first_index.saturating_add(self.position);
        let r = &mut self.reader;
        // Framing: every length prefix of the record, so that its end is known.
        if self.position >= TILE_WIDTH {
            r.finish("data_tile (more than 256 entries)")
                .map_err(TileError::Framing)?;
        }
        let start = r.position();
        let entry = read_timestamped_entry(r).map_err(TileError::Framing)?;
        let timestamped_entry = r
            .read_since(start, "timestamped_entry")
            .map_err(TileError::Framing)?;
        let pre_certificate_at = r.position();
        let pre_certificate = match entry.issuer_key_hash {
            Some(_) => Some(r.vector(3, "pre_certificate").map_err(TileError::Framing)?),
            None => None,
        };
        let fingerprints_at = r.position();
        let fingerprint_bytes = r.vector(2, "fingerprints").map_err(TileError::Framing)?;

        // The record is located: whatever is wrong inside it from here on costs this record only.
        let bad = |error| TileError::Record { index, error };
        entry.check_leaf(r).map_err(bad)?;
        if pre_certificate.is_some_and(<[u8]>::is_empty) {
            let kind = DecodeErrorKind::EmptyCertificate;
            return Err(bad(r.error("pre_certificate", pre_certificate_at, kind)));
        }
        let extensions_at = entry.extensions.position();
        let found = read_leaf_index(entry.extensions).map_err(bad)?;
        if found != index {
            let kind = DecodeErrorKind::LeafIndexMismatch {
                expected: index,
                found,
            };
            return Err(TileError::Framing(r.error(
                "leaf_index",
                extensions_at,
                kind,
            )));
        }
        // The length prefix counts bytes, not fingerprints (docs/ct-protocols.md §2.4).
        let (fingerprints, rest) = fingerprint_bytes.as_chunks::<32>();
        if !rest.is_empty() {
            let kind = DecodeErrorKind::FingerprintsLength(fingerprint_bytes.len());
            return Err(bad(r.error("fingerprints", fingerprints_at, kind)));
        }

        Ok(TileEntry {
            index,
            entry: LogEntry {
                timestamp_ms: entry.timestamp_ms,
                entry_type: entry.entry_type,
                leaf: entry.leaf,
                issuer_key_hash: entry.issuer_key_hash,
                pre_certificate,
                chain: Chain::Fingerprints(fingerprints.to_vec()),
            },
            timestamped_entry,
        })
    }
}

/// Finds the one `leaf_index` extension (`00 0005 <uint40>`) among well-formed `Extension`s; other
/// extension types are skipped so a log adding one does not break decoding.
fn read_leaf_index(mut extensions: Reader<'_>) -> Result<u64, DecodeError> {
    let start = extensions.position();
    let mut leaf_index = None;
    while !extensions.is_empty() {
        let at = extensions.position();
        let extension_type = extensions.u8("extension_type")?;
        let mut data = extensions.sub(2, "extension_data")?;
        if extension_type == LEAF_INDEX_EXTENSION {
            if leaf_index.is_some() {
                return Err(extensions.error(
                    "leaf_index",
                    at,
                    DecodeErrorKind::DuplicateLeafIndex,
                ));
            }
            leaf_index = Some(data.u40("leaf_index")?);
            data.finish("leaf_index")?;
        }
    }
    leaf_index
        .ok_or_else(|| extensions.error("extensions", start, DecodeErrorKind::MissingLeafIndex))
}

/// Merkle leaf hash SHA-256(0x00 ‖ 0x00 0x00 ‖ timestamped_entry): the RFC 6962 leaf hash of the
/// `MerkleTreeLeaf` (version v1, leaf type timestamped_entry) around it.
pub fn leaf_hash(timestamped_entry: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8, 0, 0]);
    hasher.update(timestamped_entry);
    hasher.finalize().into()
}

/// Tile path segment: 5 → "005", 1000 → "x001/000", 1234067 → "x001/x234/067"; with a partial width: "…/067.p/10".
///
/// `partial_width` is written as given; the spec allows 1..=255 (a full tile has no `.p/` suffix).
pub fn tile_path(tile_index: u64, partial_width: Option<u8>) -> String {
    // u64::MAX has 7 groups of three digits.
    let mut groups = [0u16; 7];
    let mut count = 0;
    let mut rest = tile_index;
    for group in groups.iter_mut() {
        *group = (rest % 1000) as u16;
        count += 1;
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut path = String::with_capacity(4 * count + 6);
    for (i, group) in groups.iter().take(count).rev().enumerate() {
        let prefix = if i + 1 < count { "x" } else { "" };
        let separator = if i + 1 < count { "/" } else { "" };
        // Writing to a String cannot fail.
        let _ = write!(path, "{prefix}{group:03}{separator}");
    }
    if let Some(width) = partial_width {
        let _ = write!(path, ".p/{width}");
    }
    path
}
