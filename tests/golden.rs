//! Golden files: every real corpus entry (40 RFC 6962 entries, 1,034 data-tile entries) through decode → parse →
//! serialize → frame, all three stream variants, pinned byte for byte in `tests/golden/*.jsonl` (one payload per
//! line). `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review the diff before committing.
//!
//! Besides the byte comparison, every message is checked against facts computed independently of the cert
//! formatter: fingerprints against hashes of the DER, the lite/full/domains relationship, key order, cert_link.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certstream::message::{BuildLimits, EncodedMessage, LogSource, MessageBuilder, SourceKind};
use certstream_ct::entry::{Chain, EntryType, LogEntry, decode_rfc6962};
use certstream_ct::tile::data_tile_entries;
use certstream_testkit::corpus;
use serde_json::Value;
use sha1::Digest as _;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
/// A fixed `seen` so the output is reproducible.
const SEEN: f64 = 1_780_000_000.123456;

struct Built {
    frames: EncodedMessage,
    update_type: &'static str,
    cert_link: String,
}

fn list_description(url: &str) -> String {
    let text = String::from_utf8(certstream_testkit::corpus::read(
        "loglist/google_log_list_v3.json",
    ))
    .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    for operator in list["operators"].as_array().unwrap() {
        for log in operator["logs"].as_array().into_iter().flatten() {
            if log["url"] == url {
                return log["description"].as_str().unwrap().to_owned();
            }
        }
    }
    panic!("{url} is not in the corpus log list");
}

fn update_type(entry: &LogEntry<'_>) -> &'static str {
    match entry.entry_type {
        EntryType::X509 => "X509LogEntry",
        EntryType::Precert => "PrecertLogEntry",
    }
}

fn rfc6962_messages() -> Vec<Built> {
    let mut builder = MessageBuilder::new(BuildLimits::default());
    corpus::live_entries()
        .iter()
        .map(|live| {
            let url = live.log_url.as_str();
            let source = LogSource::new(&list_description(url), url, SourceKind::Rfc6962);
            let index = live.cert_index;
            let entry = decode_rfc6962(&live.leaf_input, &live.extra_data).unwrap();
            let Chain::Certificates(chain) = &entry.chain else {
                panic!("RFC 6962 chains are certificates")
            };
            let frames = builder
                .build(&source, index, &entry, chain, SEEN)
                .unwrap()
                .frames;
            Built {
                frames,
                update_type: update_type(&entry),
                cert_link: format!("{url}ct/v1/get-entries?start={index}&end={index}"),
            }
        })
        .collect()
}

/// The Navigli tiles are from Let's Encrypt's staging log; its issuers are not in the corpus, so the full stream's
/// chain is empty here (the tiled poller resolves issuers in production).
fn tiled_messages() -> Vec<Built> {
    let monitoring = "https://navigli2025h2.staging.ct.letsencrypt.org/";
    let source = LogSource::new(
        "Let's Encrypt 'Navigli2025h2' staging log",
        monitoring,
        SourceKind::Tiled {
            monitoring_url: monitoring.into(),
        },
    );
    let mut builder = MessageBuilder::new(BuildLimits::default());
    let mut out = Vec::new();
    for name in ["000", "001", "002", "003", "003.p/10"] {
        let tile = corpus::navigli_data_tile(name);
        let tile_index: u64 = name[..3].parse().unwrap();
        for entry in data_tile_entries(&tile, tile_index) {
            let entry = entry.unwrap();
            let frames = builder
                .build(&source, entry.index, &entry.entry, &[], SEEN)
                .unwrap()
                .frames;
            out.push(Built {
                frames,
                update_type: update_type(&entry.entry),
                cert_link: format!("{monitoring}tile/data/{}", &name[..3]),
            });
        }
    }
    out
}

fn check_golden(name: &str, built: &[Built]) {
    for (variant, pick) in [
        (
            "lite",
            (|f: &EncodedMessage| f.lite.clone()) as fn(&EncodedMessage) -> _,
        ),
        ("full", |f: &EncodedMessage| f.full.clone()),
        ("domains", |f: &EncodedMessage| f.domains.clone()),
    ] {
        let mut actual = Vec::new();
        for b in built {
            let frame = pick(&b.frames);
            actual.extend_from_slice(frame.payload());
            actual.push(b'\n');
        }
        let path = format!("{GOLDEN}/{name}.{variant}.jsonl");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_GOLDEN=1 creates it)"));
        for (line, (a, e)) in actual
            .split(|b| *b == b'\n')
            .zip(expected.split(|b| *b == b'\n'))
            .enumerate()
        {
            assert_eq!(
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(e),
                "{path} line {} differs",
                line + 1
            );
        }
        assert_eq!(
            actual.len(),
            expected.len(),
            "{path}: different number of lines"
        );
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Facts that hold for every message, checked without the cert formatter.
fn check_invariants(built: &[Built]) {
    for (i, b) in built.iter().enumerate() {
        let lite_bytes = b.frames.lite.payload();
        let full_bytes = b.frames.full.payload();
        // Compact JSON: each message is one NDJSON line and one SSE `data:` line as it is.
        for bytes in [lite_bytes, full_bytes, b.frames.domains.payload()] {
            assert!(
                !bytes.iter().any(|&b| b == b'\n' || b == b'\r'),
                "entry {i}: a raw line break"
            );
        }
        for bytes in [lite_bytes, full_bytes] {
            assert!(
                bytes.starts_with(b"{\"data\":{\"cert_index\":"),
                "entry {i}: key order"
            );
            assert!(
                bytes.ends_with(b"},\"message_type\":\"certificate_update\"}"),
                "entry {i}: key order"
            );
        }
        let lite: Value = serde_json::from_slice(lite_bytes).unwrap();
        let mut full: Value = serde_json::from_slice(full_bytes).unwrap();
        let domains: Value = serde_json::from_slice(b.frames.domains.payload()).unwrap();

        assert_eq!(full["data"]["update_type"], b.update_type, "entry {i}");
        assert_eq!(full["data"]["cert_link"], b.cert_link.as_str(), "entry {i}");
        assert!(full["data"]["seen"].as_f64().unwrap() == SEEN);

        // Hashes of the DER the message carries.
        let certs = std::iter::once(&full["data"]["leaf_cert"])
            .chain(full["data"]["chain"].as_array().unwrap());
        for cert in certs {
            let der = STANDARD.decode(cert["as_der"].as_str().unwrap()).unwrap();
            assert_eq!(
                cert["fingerprint"],
                colon_hex(&sha1::Sha1::digest(&der)),
                "entry {i}"
            );
            assert_eq!(cert["sha1"], cert["fingerprint"], "entry {i}");
            assert_eq!(
                cert["sha256"],
                colon_hex(&sha2::Sha256::digest(&der)),
                "entry {i}"
            );
            assert_eq!(cert["subject"].as_object().unwrap().len(), 8);
            assert_eq!(cert["issuer"].as_object().unwrap().len(), 8);
        }
        let leaf = &full["data"]["leaf_cert"];
        if b.update_type == "PrecertLogEntry" {
            assert_eq!(
                leaf["extensions"]["ctlPoisonByte"], true,
                "entry {i}: the leaf is the pre-certificate"
            );
        }
        let all_domains: Vec<&str> = leaf["all_domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(
            all_domains.windows(2).all(|w| w[0] < w[1]),
            "entry {i}: all_domains sorted, deduplicated"
        );
        assert_eq!(domains["data"], leaf["all_domains"], "entry {i}");
        assert_eq!(domains["message_type"], "dns_entries");

        // lite = full without data.chain and leaf_cert.as_der.
        full["data"].as_object_mut().unwrap().remove("chain");
        full["data"]["leaf_cert"]
            .as_object_mut()
            .unwrap()
            .remove("as_der");
        assert_eq!(lite, full, "entry {i}: lite is full minus chain and as_der");
    }
}

#[test]
fn rfc6962_corpus_matches_golden_files() {
    let built = rfc6962_messages();
    assert_eq!(built.len(), 40);
    assert_eq!(
        built
            .iter()
            .filter(|b| b.update_type == "PrecertLogEntry")
            .count(),
        14
    );
    check_invariants(&built);
    for b in &built {
        let full: Value = serde_json::from_slice(b.frames.full.payload()).unwrap();
        let chain = full["data"]["chain"].as_array().unwrap();
        assert!(
            (2..=3).contains(&chain.len()),
            "live entries carry 2–3 chain certificates"
        );
        assert!(
            chain.iter().all(|c| c.get("all_domains").is_none()),
            "chain certs have no all_domains"
        );
    }
    check_golden("rfc6962", &built);
}

#[test]
fn tiled_corpus_matches_golden_files() {
    let built = tiled_messages();
    assert_eq!(built.len(), 1034);
    check_invariants(&built);
    check_golden("navigli2025h2", &built);
}

#[test]
fn frames_are_complete_text_frames() {
    for b in rfc6962_messages() {
        for frame in [&b.frames.lite, &b.frames.full, &b.frames.domains] {
            let wire = frame.wire();
            assert_eq!(wire[0], 0x81, "FIN + text");
            assert!(wire[1] & 0x80 == 0, "server frames are unmasked");
            assert!(wire.ends_with(frame.payload()));
            let len = frame.payload().len();
            let header = wire.len() - len;
            let declared = match wire[1] {
                126 => u16::from_be_bytes([wire[2], wire[3]]) as usize,
                127 => u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                n => n as usize,
            };
            assert_eq!(declared, len);
            assert_eq!(
                header,
                if len < 126 {
                    2
                } else if len < 65536 {
                    4
                } else {
                    10
                }
            );
        }
    }
}
