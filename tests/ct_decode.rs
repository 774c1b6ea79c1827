//! CT entry decoding against real log data (`tests/corpus`): 40 RFC 6962
//! get-entries items and 1,034 static-ct-api tile records, whose leaf hashes are checked against the log's own
//! level-0 Merkle tiles; then one test per malformation, truncation at every offset, and property tests.

use certstream_ct::entry::{
    Buffer, Chain, DecodeError, DecodeErrorKind, EntryType, LogEntry, decode_rfc6962,
};
use certstream_ct::get_entries::{GetEntriesError, RawEntry, parse_get_entries};
use certstream_ct::tile::{TileEntry, TileError, data_tile_entries, leaf_hash, tile_path};
use certstream_testkit::corpus;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The 40 live get-entries items, base64-decoded (read once per test binary).
fn live_entries() -> &'static [RawEntry] {
    static LIVE: LazyLock<Vec<RawEntry>> = LazyLock::new(|| {
        corpus::live_entries()
            .into_iter()
            .map(|live| RawEntry {
                leaf_input: live.leaf_input,
                extra_data: live.extra_data,
            })
            .collect()
    });
    &LIVE
}

/// A get-entries body holding the live entries, exactly as a log would serve it.
fn live_get_entries_body() -> &'static str {
    static BODY: LazyLock<String> = LazyLock::new(|| corpus::live_get_entries_body(40));
    &BODY
}

fn decode_tile(tile: &[u8], tile_index: u64) -> Vec<TileEntry<'_>> {
    data_tile_entries(tile, tile_index)
        .collect::<Result<_, _>>()
        .expect("real tile decodes")
}

/// The first record of data tile 000 (2,715 bytes: a precert) and its parts, split at the offsets of the worked
/// example in docs/ct-protocols.md §2.4.
struct FirstRecord {
    bytes: Vec<u8>,
}

impl FirstRecord {
    const EXTENSIONS_AT: usize = 1190;
    const PRE_CERTIFICATE_AT: usize = 1200;
    const FINGERPRINTS_AT: usize = 2649;
    const LEN: usize = 2715;

    fn load() -> Self {
        let tile = corpus::navigli_data_tile("000");
        FirstRecord {
            bytes: tile[..Self::LEN].to_vec(),
        }
    }

    /// The record with its extensions replaced by `extensions` (length prefix included).
    fn with_extensions(&self, extensions: &[u8]) -> Vec<u8> {
        [
            &self.bytes[..Self::EXTENSIONS_AT],
            extensions,
            &self.bytes[Self::PRE_CERTIFICATE_AT..],
        ]
        .concat()
    }
}

/// A leaf_index extension list (with its u16 length prefix) for `index`.
fn leaf_index_extensions(index: u64) -> Vec<u8> {
    let mut ext = vec![0, 8, 0, 0, 5];
    ext.extend_from_slice(&index.to_be_bytes()[3..]);
    ext
}

fn u24(len: usize) -> [u8; 3] {
    let b = (len as u32).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A static-ct TileLeaf for an x509 entry (the tile corpus only holds precerts), built from a live RFC 6962
/// x509 entry: same timestamp and certificate, the chain as SHA-256 fingerprints.
fn x509_tile_record(entry: &LogEntry<'_>, index: u64) -> Vec<u8> {
    let Chain::Certificates(chain) = &entry.chain else {
        panic!("RFC 6962 entries carry certificates")
    };
    let mut record = entry.timestamp_ms.to_be_bytes().to_vec();
    record.extend_from_slice(&[0, 0]);
    record.extend_from_slice(&u24(entry.leaf.len()));
    record.extend_from_slice(entry.leaf);
    record.extend_from_slice(&leaf_index_extensions(index));
    record.extend_from_slice(&((chain.len() * 32) as u16).to_be_bytes());
    for cert in chain {
        record.extend_from_slice(&Sha256::digest(cert));
    }
    record
}

fn first_x509(entries: &[RawEntry]) -> &RawEntry {
    entries
        .iter()
        .find(|e| e.leaf_input[10..12] == [0, 0])
        .expect("an x509 entry")
}

fn first_precert(entries: &[RawEntry]) -> &RawEntry {
    entries
        .iter()
        .find(|e| e.leaf_input[10..12] == [0, 1])
        .expect("a precert entry")
}

fn is_der_sequence(der: &[u8]) -> bool {
    der.first() == Some(&0x30)
}

// ---------------------------------------------------------------------------------------------------------
// RFC 6962

#[test]
fn all_live_rfc6962_entries_decode() {
    let entries = live_entries();
    assert_eq!(entries.len(), 40);
    let (mut x509, mut precert) = (0, 0);
    for (i, raw) in entries.iter().enumerate() {
        let entry = decode_rfc6962(&raw.leaf_input, &raw.extra_data)
            .unwrap_or_else(|e| panic!("entry {i}: {e}"));
        // 2026-01-01 ≤ timestamp < 2027-01-01
        assert!(
            (1_767_225_600_000..1_798_761_600_000).contains(&entry.timestamp_ms),
            "entry {i}: timestamp {}",
            entry.timestamp_ms
        );
        assert!(is_der_sequence(entry.leaf), "entry {i}: leaf");
        let Chain::Certificates(chain) = &entry.chain else {
            panic!("entry {i}: RFC 6962 chain must be certificates")
        };
        assert!(
            (2..=3).contains(&chain.len()),
            "entry {i}: chain length {}",
            chain.len()
        );
        assert!(
            chain.iter().all(|c| is_der_sequence(c)),
            "entry {i}: chain certificate"
        );
        let (_, issuer) = X509Certificate::from_der(chain[0]).expect("issuer parses");
        match entry.entry_type {
            EntryType::X509 => {
                x509 += 1;
                assert_eq!((entry.issuer_key_hash, entry.pre_certificate), (None, None));
                // The leaf is a whole certificate whose issuer is chain[0]: the chain is issuer first.
                let (_, cert) = X509Certificate::from_der(entry.leaf).expect("leaf parses");
                assert_eq!(cert.issuer(), issuer.subject(), "entry {i}: chain order");
            }
            EntryType::Precert => {
                precert += 1;
                let pre_certificate = entry.pre_certificate.expect("precert has pre_certificate");
                assert!(
                    is_der_sequence(pre_certificate),
                    "entry {i}: pre_certificate"
                );
                // issuer_key_hash = SHA-256 of the issuer's SubjectPublicKeyInfo: proves its 32 bytes were
                // taken from the right place.
                let expected: [u8; 32] = Sha256::digest(issuer.public_key().raw).into();
                assert_eq!(
                    entry.issuer_key_hash,
                    Some(&expected),
                    "entry {i}: issuer_key_hash"
                );
                // The leaf TBS is (up to the poison extension) the pre-certificate's TBS: same serial.
                let (_, pre) = X509Certificate::from_der(pre_certificate).expect("precert parses");
                let serial = pre.tbs_certificate.raw_serial();
                assert!(
                    entry.leaf.windows(serial.len()).any(|w| w == serial),
                    "entry {i}: TBS does not hold the pre-certificate's serial"
                );
            }
        }
    }
    assert_eq!((x509, precert), (26, 14));
}

#[test]
fn get_entries_parsers_agree_with_the_base64_fields() {
    let expected = live_entries();
    let body = live_get_entries_body();
    assert_eq!(parse_get_entries(body.as_bytes()), Ok(expected.to_vec()));

    // Some servers escape '/' as "\/": the strings are then not borrowable, the results must not change.
    let escaped = body.replace('/', "\\/");
    assert_ne!(escaped, body);
    assert_eq!(parse_get_entries(escaped.as_bytes()), Ok(expected.to_vec()));
}

#[test]
fn get_entries_rejects_bad_bodies() {
    let parse = |body: &str| parse_get_entries(body.as_bytes());
    for body in [
        "",
        "not json",
        "{}",
        r#"{"entries":{}}"#,
        r#"{"entries":[{"leaf_input":"AA=="}]}"#,
        r#"{"entries":[{"leaf_input":1,"extra_data":"AA=="}]}"#,
    ] {
        let parsed = parse(body);
        assert!(
            matches!(parsed, Err(GetEntriesError::Json(_))),
            "{body}: {parsed:?}"
        );
    }

    let body = r#"{"entries":[{"leaf_input":"AA==","extra_data":"AA=="},
                              {"leaf_input":"AAE=","extra_data":"not base64!"}]}"#;
    let parsed = parse(body);
    let Err(GetEntriesError::Base64 { entry, field, .. }) = parsed else {
        panic!("expected a base64 error, got {parsed:?}")
    };
    assert_eq!((entry, field), (1, "extra_data"));

    // An empty page is not a parse error; the poller decides what it means.
    assert_eq!(parse(r#"{"entries":[]}"#), Ok(vec![]));
    // Unknown fields are ignored.
    assert_eq!(
        parse(r#"{"entries":[{"leaf_input":"AAE=","extra_data":"","x":1}],"y":2}"#),
        Ok(vec![RawEntry {
            leaf_input: vec![0, 1],
            extra_data: vec![]
        }])
    );
}

// ---------------------------------------------------------------------------------------------------------
// Static CT data tiles

#[test]
fn all_tile_entries_decode_and_hash_to_the_level0_tiles() {
    let mut decoded = 0;
    for (name, tile_index, width) in [
        ("000", 0, 256),
        ("001", 1, 256),
        ("002", 2, 256),
        ("003", 3, 256),
        ("003.p/10", 3, 10),
    ] {
        let tile = corpus::navigli_data_tile(name);
        let hashes =
            certstream_testkit::corpus::read(&format!("tiled/navigli2025h2/tile/0/{name}"));
        assert_eq!(hashes.len(), 32 * width);
        let entries = decode_tile(&tile, tile_index);
        assert_eq!(entries.len(), width, "tile {name}");
        for (i, (entry, hash)) in entries.iter().zip(hashes.chunks(32)).enumerate() {
            assert_eq!(entry.index, 256 * tile_index + i as u64);
            assert_eq!(
                leaf_hash(entry.timestamped_entry),
                hash,
                "tile {name} entry {i}"
            );
            assert!(is_der_sequence(entry.entry.leaf));
            assert!(entry.entry.pre_certificate.is_some_and(is_der_sequence));
            assert!(matches!(&entry.entry.chain, Chain::Fingerprints(f) if f.len() == 2));
        }
        decoded += entries.len();
    }
    assert_eq!(decoded, 1034);
}

#[test]
fn first_tile_entry_matches_the_worked_example() {
    let tile = corpus::navigli_data_tile("000");
    let first = data_tile_entries(&tile, 0)
        .next()
        .expect("one entry")
        .expect("decodes");
    assert_eq!(first.index, 0);
    let entry = &first.entry;
    assert_eq!(entry.timestamp_ms, 1_746_292_399_101);
    assert_eq!(entry.entry_type, EntryType::Precert);
    assert_eq!(
        entry.issuer_key_hash.map(|h| &h[..4]),
        Some(&[0xb3, 0xe4, 0x9a, 0xc8][..])
    );
    assert_eq!(entry.leaf.len(), 1145);
    assert_eq!(entry.pre_certificate.map(<[u8]>::len), Some(1446));
    // TimestampedEntry = everything before the pre_certificate.
    assert_eq!(
        first.timestamped_entry,
        &tile[..FirstRecord::PRE_CERTIFICATE_AT]
    );
    let Chain::Fingerprints(fingerprints) = &entry.chain else {
        panic!("tile chains are fingerprints")
    };
    assert_eq!(fingerprints.len(), 2);
    assert_eq!(
        fingerprints[1][..],
        tile[FirstRecord::LEN - 32..FirstRecord::LEN]
    );
}

#[test]
fn x509_tile_record_decodes() {
    let live = live_entries();
    let raw = first_x509(live);
    let rfc = decode_rfc6962(&raw.leaf_input, &raw.extra_data).expect("decodes");
    let record = x509_tile_record(&rfc, 5 * 256);
    let entries = decode_tile(&record, 5);
    assert_eq!(entries.len(), 1);
    let tiled = &entries[0];
    assert_eq!(tiled.index, 1280);
    assert_eq!(tiled.entry.entry_type, EntryType::X509);
    assert_eq!(tiled.entry.leaf, rfc.leaf);
    assert_eq!(
        (tiled.entry.issuer_key_hash, tiled.entry.pre_certificate),
        (None, None)
    );
    // The TimestampedEntry of a tile record is the RFC 6962 leaf_input minus version and leaf_type, with the
    // (here empty) extensions replaced by the leaf_index.
    let leaf_without_extensions = &raw.leaf_input[2..raw.leaf_input.len() - 2];
    assert_eq!(raw.leaf_input[raw.leaf_input.len() - 2..], [0, 0]);
    assert_eq!(
        tiled.timestamped_entry,
        [leaf_without_extensions, &leaf_index_extensions(1280)].concat()
    );
    let Chain::Certificates(chain) = &rfc.chain else {
        panic!("certificates")
    };
    let expected: Vec<[u8; 32]> = chain.iter().map(|c| Sha256::digest(c).into()).collect();
    assert_eq!(tiled.entry.chain, Chain::Fingerprints(expected));
}

#[test]
fn tile_extensions_other_than_leaf_index_are_skipped() {
    let record = FirstRecord::load();
    let mut extensions = vec![0, 12, 7, 0, 1, 0xaa];
    extensions.extend_from_slice(&leaf_index_extensions(0)[2..]);
    let bytes = record.with_extensions(&extensions);
    let entries = decode_tile(&bytes, 0);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].index, 0);
}

#[test]
fn tile_paths() {
    assert_eq!(tile_path(0, None), "000");
    assert_eq!(tile_path(5, None), "005");
    assert_eq!(tile_path(999, None), "999");
    assert_eq!(tile_path(1000, None), "x001/000");
    assert_eq!(tile_path(1234067, None), "x001/x234/067");
    assert_eq!(tile_path(1234067, Some(10)), "x001/x234/067.p/10");
    assert_eq!(tile_path(3, Some(10)), "003.p/10");
    assert_eq!(tile_path(8_751_768, None), "x008/x751/768");
    assert_eq!(
        tile_path(u64::MAX, Some(255)),
        "x018/x446/x744/x073/x709/x551/615.p/255"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Malformed input: one test per error kind

/// The first item a tile yields, which must be an error; after broken framing the iterator must stop.
fn single_tile_error(tile: &[u8], tile_index: u64) -> DecodeError {
    let mut items = data_tile_entries(tile, tile_index);
    let error = match items.next() {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    if let TileError::Framing(_) = error {
        assert!(
            items.next().is_none(),
            "the iterator must stop after broken framing"
        );
    }
    let error = error.decode_error().clone();
    assert_eq!(error.buffer, Buffer::DataTile);
    error
}

/// A bad record whose boundaries are known costs only itself: the records after it are read on. (Before, an
/// empty certificate made the whole rest of the tile undecodable.)
#[test]
fn a_bad_record_costs_only_itself() {
    let live = live_entries();
    let raw = first_x509(live);
    let good = decode_rfc6962(&raw.leaf_input, &raw.extra_data).expect("decodes");
    let empty = LogEntry {
        leaf: &[],
        ..good.clone()
    };
    let mut tile = Vec::new();
    for index in 0..7 {
        let record = match index {
            2 => x509_tile_record(&empty, index),
            // A record of another index: not the tile asked for, nothing after it is trusted.
            5 => x509_tile_record(&good, 99),
            _ => x509_tile_record(&good, index),
        };
        tile.extend_from_slice(&record);
    }
    let items: Vec<_> = data_tile_entries(&tile, 0).collect();
    assert_eq!(items.len(), 6, "the iterator stops at the wrong leaf_index");
    for (index, item) in items.iter().enumerate() {
        match (index, item) {
            (2, Err(TileError::Record { index: 2, error })) => {
                assert_eq!(error.kind, DecodeErrorKind::EmptyCertificate);
            }
            (5, Err(TileError::Framing(error))) => assert!(
                matches!(
                    error.kind,
                    DecodeErrorKind::LeafIndexMismatch { found: 99, .. }
                ),
                "{error}"
            ),
            (_, Ok(entry)) => assert_eq!(entry.index, index as u64),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let live = live_entries();
    for raw in [first_x509(live), first_precert(live)] {
        for len in 0..raw.leaf_input.len() {
            let e = decode_rfc6962(&raw.leaf_input[..len], &raw.extra_data)
                .expect_err("truncated leaf_input");
            assert_eq!(e.buffer, Buffer::LeafInput);
            assert!(e.offset <= len, "{e}");
        }
        for len in 0..raw.extra_data.len() {
            let e = decode_rfc6962(&raw.leaf_input, &raw.extra_data[..len])
                .expect_err("truncated extra_data");
            assert_eq!(e.buffer, Buffer::ExtraData);
            assert!(e.offset <= len, "{e}");
        }
    }

    let x509 = decode_rfc6962(&first_x509(live).leaf_input, &first_x509(live).extra_data)
        .expect("decodes");
    for record in [FirstRecord::load().bytes, x509_tile_record(&x509, 0)] {
        // 0 bytes is an empty tile (no records), not a truncated one.
        for len in 1..record.len() {
            let e = single_tile_error(&record[..len], 0);
            assert!(e.offset <= len, "{e}");
        }
    }
}

#[test]
fn truncated_field() {
    let e = decode_rfc6962(&[0, 0, 1, 2, 3], &[]).expect_err("short");
    assert_eq!(
        (e.buffer, e.field, e.offset),
        (Buffer::LeafInput, "timestamp", 2)
    );
    assert_eq!(
        e.kind,
        DecodeErrorKind::Truncated {
            needed: 8,
            available: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "leaf_input: timestamp at byte 2: truncated: needs 8 bytes, 3 left"
    );
    assert!(!e.is_unknown_type());
}

#[test]
fn length_past_end() {
    let live = live_entries();
    let raw = first_x509(live);
    let mut extra = raw.extra_data.clone();
    extra[2] = extra[2].wrapping_add(1); // certificate_chain total one byte longer than the data
    let e = decode_rfc6962(&raw.leaf_input, &extra).expect_err("too long");
    assert_eq!(
        (e.buffer, e.field, e.offset),
        (Buffer::ExtraData, "certificate_chain", 0)
    );
    assert!(matches!(
        e.kind,
        DecodeErrorKind::LengthPastEnd { available, .. } if available == extra.len() - 3
    ));
}

#[test]
fn chain_certificates_must_exactly_fill_the_declared_total() {
    let live = live_entries();
    let raw = first_x509(live);
    let total = raw.extra_data.len() - 3;

    // Declared total one byte short: the last certificate runs past the chain's end, even though the
    // bytes are there in extra_data.
    let mut short = raw.extra_data.clone();
    short[..3].copy_from_slice(&u24(total - 1));
    let e = decode_rfc6962(&raw.leaf_input, &short).expect_err("short total");
    assert_eq!(
        (e.buffer, e.field),
        (Buffer::ExtraData, "certificate_chain.certificate")
    );
    assert!(
        matches!(e.kind, DecodeErrorKind::LengthPastEnd { .. }),
        "{e}"
    );

    // Declared total covers only the first certificate: the rest are trailing bytes.
    let first_len = u32::from_be_bytes([0, short[3], short[4], short[5]]) as usize;
    let mut partial = raw.extra_data.clone();
    partial[..3].copy_from_slice(&u24(3 + first_len));
    let e = decode_rfc6962(&raw.leaf_input, &partial).expect_err("trailing certs");
    assert_eq!((e.field, e.offset), ("extra_data", 6 + first_len));
    assert_eq!(
        e.kind,
        DecodeErrorKind::TrailingBytes {
            count: total - 3 - first_len
        }
    );
}

#[test]
fn trailing_bytes() {
    let live = live_entries();
    let raw = first_precert(live);
    let mut leaf = raw.leaf_input.clone();
    leaf.push(0);
    let e = decode_rfc6962(&leaf, &raw.extra_data).expect_err("trailing");
    assert_eq!(
        (e.buffer, e.field, e.offset, e.kind),
        (
            Buffer::LeafInput,
            "leaf_input",
            raw.leaf_input.len(),
            DecodeErrorKind::TrailingBytes { count: 1 }
        )
    );
    let mut extra = raw.extra_data.clone();
    extra.extend_from_slice(&[1, 2]);
    let e = decode_rfc6962(&raw.leaf_input, &extra).expect_err("trailing");
    assert_eq!(
        (e.buffer, e.offset, e.kind),
        (
            Buffer::ExtraData,
            raw.extra_data.len(),
            DecodeErrorKind::TrailingBytes { count: 2 }
        )
    );
}

#[test]
fn unknown_version_and_leaf_type() {
    let live = live_entries();
    let raw = first_x509(live);
    let mut leaf = raw.leaf_input.clone();
    leaf[0] = 1;
    let e = decode_rfc6962(&leaf, &raw.extra_data).expect_err("v2");
    assert_eq!(
        (e.field, e.offset, e.kind.clone()),
        ("version", 0, DecodeErrorKind::UnknownVersion(1))
    );
    assert!(e.is_unknown_type());

    let mut leaf = raw.leaf_input.clone();
    leaf[1] = 7;
    let e = decode_rfc6962(&leaf, &raw.extra_data).expect_err("leaf type");
    assert_eq!(
        (e.field, e.offset, e.kind.clone()),
        ("leaf_type", 1, DecodeErrorKind::UnknownLeafType(7))
    );
    assert!(e.is_unknown_type());
}

#[test]
fn unknown_entry_type() {
    let live = live_entries();
    let raw = first_x509(live);
    let mut leaf = raw.leaf_input.clone();
    leaf[11] = 2;
    let e = decode_rfc6962(&leaf, &raw.extra_data).expect_err("entry type 2");
    assert_eq!(
        (e.buffer, e.field, e.offset, e.kind.clone()),
        (
            Buffer::LeafInput,
            "entry_type",
            10,
            DecodeErrorKind::UnknownEntryType(2)
        )
    );
    assert!(e.is_unknown_type());

    // In a tile an unknown entry type cannot be skipped: its length is unknown.
    let mut tile = corpus::navigli_data_tile("000");
    tile[FirstRecord::LEN + 8..FirstRecord::LEN + 10].copy_from_slice(&[0x12, 0x34]);
    let mut items = data_tile_entries(&tile, 0);
    assert!(matches!(items.next(), Some(Ok(_))));
    let e = items
        .next()
        .expect("second item")
        .expect_err("unknown type");
    let TileError::Framing(e) = e else {
        panic!("an unknown entry type breaks the framing: {e}")
    };
    assert_eq!(
        (e.offset, e.kind),
        (
            FirstRecord::LEN + 8,
            DecodeErrorKind::UnknownEntryType(0x1234)
        )
    );
    assert!(items.next().is_none());
}

#[test]
fn empty_certificate() {
    let live = live_entries();
    let raw = first_x509(live);
    let e = decode_rfc6962(&raw.leaf_input, &[0, 0, 3, 0, 0, 0]).expect_err("empty cert");
    assert_eq!(
        (e.buffer, e.field, e.offset, e.kind),
        (
            Buffer::ExtraData,
            "certificate_chain.certificate",
            3,
            DecodeErrorKind::EmptyCertificate
        )
    );
    // An empty chain is allowed (roots may be omitted, and a root entry has no issuer).
    let entry = decode_rfc6962(&raw.leaf_input, &[0, 0, 0]).expect("empty chain");
    assert_eq!(entry.chain, Chain::Certificates(vec![]));
}

#[test]
fn leaf_index_mismatch_reports_both_indices() {
    let tile = corpus::navigli_data_tile("001");
    let e = single_tile_error(&tile, 2);
    assert_eq!(e.field, "leaf_index");
    assert_eq!(
        e.kind,
        DecodeErrorKind::LeafIndexMismatch {
            expected: 512,
            found: 256
        }
    );
    let message = e.to_string();
    assert!(
        message.contains("512") && message.contains("256"),
        "{message}"
    );

    // An absurd tile number cannot overflow; it is just a mismatch.
    let e = single_tile_error(&tile, u64::MAX);
    assert_eq!(
        e.kind,
        DecodeErrorKind::LeafIndexMismatch {
            expected: u64::MAX,
            found: 256
        }
    );
}

#[test]
fn missing_and_duplicate_leaf_index() {
    let record = FirstRecord::load();
    let e = single_tile_error(&record.with_extensions(&[0, 0]), 0);
    assert_eq!(
        (e.field, e.offset, e.kind),
        (
            "extensions",
            FirstRecord::EXTENSIONS_AT + 2,
            DecodeErrorKind::MissingLeafIndex
        )
    );

    let mut twice = vec![0, 16];
    twice.extend_from_slice(&leaf_index_extensions(0)[2..]);
    twice.extend_from_slice(&leaf_index_extensions(0)[2..]);
    let e = single_tile_error(&record.with_extensions(&twice), 0);
    assert_eq!(
        (e.offset, e.kind),
        (
            FirstRecord::EXTENSIONS_AT + 2 + 8,
            DecodeErrorKind::DuplicateLeafIndex
        )
    );

    // leaf_index data must be exactly a uint40.
    let e = single_tile_error(
        &record.with_extensions(&[0, 9, 0, 0, 6, 0, 0, 0, 0, 0, 0]),
        0,
    );
    assert_eq!(
        (e.field, e.kind),
        ("leaf_index", DecodeErrorKind::TrailingBytes { count: 1 })
    );
}

#[test]
fn fingerprints_length_not_a_multiple_of_32() {
    let record = FirstRecord::load();
    let mut bytes = record.bytes[..FirstRecord::FINGERPRINTS_AT].to_vec();
    bytes.extend_from_slice(&[0, 33]);
    bytes.extend_from_slice(&[0xab; 33]);
    let e = single_tile_error(&bytes, 0);
    assert_eq!(
        (e.field, e.offset, e.kind),
        (
            "fingerprints",
            FirstRecord::FINGERPRINTS_AT,
            DecodeErrorKind::FingerprintsLength(33)
        )
    );
}

#[test]
fn more_than_256_records_in_a_tile() {
    let tile0 = corpus::navigli_data_tile("000");
    let tile1 = corpus::navigli_data_tile("001");
    // Tile 001's first record has leaf_index 256, which is also 256·0 + 256: only the width limit catches it.
    let mut tile = tile0.clone();
    tile.extend_from_slice(&tile1);
    let items: Vec<_> = data_tile_entries(&tile, 0).collect();
    assert_eq!(items.len(), 257);
    assert!(items[..256].iter().all(Result::is_ok));
    let Err(TileError::Framing(e)) = items[256].clone() else {
        panic!("the 257th record breaks the framing")
    };
    assert_eq!(
        (e.offset, e.kind.clone()),
        (
            tile0.len(),
            DecodeErrorKind::TrailingBytes { count: tile1.len() }
        )
    );
}

// ---------------------------------------------------------------------------------------------------------
// Property tests: no input makes a decoder panic, and errors point inside their input.

fn check_rfc6962(leaf_input: &[u8], extra_data: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = decode_rfc6962(leaf_input, extra_data) {
        let len = match e.buffer {
            Buffer::LeafInput => leaf_input.len(),
            Buffer::ExtraData => extra_data.len(),
            Buffer::DataTile => return Err(TestCaseError::fail("RFC 6962 error names a tile")),
        };
        prop_assert!(e.offset <= len, "{e}");
    }
    Ok(())
}

fn check_tile(tile: &[u8], tile_index: u64) -> Result<(), TestCaseError> {
    let mut framing_errors = 0;
    for item in data_tile_entries(tile, tile_index) {
        prop_assert_eq!(framing_errors, 0, "items after broken framing");
        if let Err(e) = item {
            prop_assert!(e.decode_error().offset <= tile.len(), "{e}");
            framing_errors += u32::from(matches!(e, TileError::Framing(_)));
        }
    }
    Ok(())
}

fn check_get_entries(body: &[u8]) -> Result<(), TestCaseError> {
    // Any body: an entry list or an error, never a panic.
    let _ = parse_get_entries(body);
    Ok(())
}

/// Applies `(position, byte)` overwrites (positions taken modulo the length), then truncates to `keep` of the
/// length (when given).
fn mutate(bytes: &[u8], edits: &[(usize, u8)], keep: Option<prop::sample::Index>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        for &(pos, byte) in edits {
            let len = out.len();
            out[pos % len] = byte;
        }
    }
    if let Some(keep) = keep {
        out.truncate(keep.index(bytes.len() + 1));
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        a in prop::collection::vec(any::<u8>(), 0..600),
        b in prop::collection::vec(any::<u8>(), 0..600),
        tile_index in any::<u64>(),
    ) {
        check_rfc6962(&a, &b)?;
        check_tile(&a, tile_index)?;
        check_get_entries(&a)?;
    }

    #[test]
    fn mutated_real_entries_never_panic(
        which in any::<prop::sample::Index>(),
        leaf_edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        extra_edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        keep in prop::option::of(any::<prop::sample::Index>()),
        tile_index in 0u64..3,
    ) {
        let live = live_entries();
        let raw = &live[which.index(live.len())];
        check_rfc6962(&mutate(&raw.leaf_input, &leaf_edits, keep), &mutate(&raw.extra_data, &extra_edits, None))?;
        check_rfc6962(&mutate(&raw.leaf_input, &leaf_edits, None), &mutate(&raw.extra_data, &extra_edits, keep))?;

        let tile = corpus::navigli_data_tile("000");
        // About three records: enough to reach the second and third record after a mutated length.
        let tile_prefix = &tile[..FirstRecord::LEN * 3];
        check_tile(&mutate(tile_prefix, &leaf_edits, keep), tile_index)?;

        let body = live_get_entries_body();
        check_get_entries(&mutate(&body.as_bytes()[..2000], &extra_edits, keep))?;
        check_get_entries(&mutate(body.as_bytes(), &extra_edits, None))?;
    }
}
