//! The repository's test corpus of real CT data (`tests/corpus`, see its README), or `$CERTSTREAM_CORPUS`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream::message::{BuildLimits, LogSource, Message, MessageBuilder, SourceKind};
use certstream_ct::entry::{Chain, EntryType, LogEntry, decode_rfc6962};
use certstream_ct::tile::data_tile_entries;
use serde_json::{Value, json};

/// The corpus folder (the one the mock CT log reads).
pub fn dir() -> PathBuf {
    mock_ct_log::corpus_dir()
}

/// The bytes of `path` inside the corpus (e.g. `loglist/google_log_list_v3.json`).
pub fn read(path: &str) -> Vec<u8> {
    let file = dir().join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("corpus file {}: {e}", file.display()))
}

/// One item of `rfc6962/live_ct.json` (40 real get-entries items), its base64 fields decoded.
pub struct LiveEntry {
    /// The log it came from (its RFC 6962 URL, as in the log list).
    pub log_url: String,
    /// Its index in that log.
    pub cert_index: u64,
    /// The `MerkleTreeLeaf`.
    pub leaf_input: Vec<u8>,
    /// The chain (and precertificate) bytes.
    pub extra_data: Vec<u8>,
}

/// The items of `rfc6962/live_ct.json` as stored (base64 fields encoded).
pub fn live_json() -> Vec<Value> {
    let json: Value =
        serde_json::from_slice(&read("rfc6962/live_ct.json")).expect("live_ct.json is JSON");
    let Value::Array(items) = json else {
        panic!("live_ct.json is not an array")
    };
    items
}

/// The items of `rfc6962/live_ct.json`, decoded.
pub fn live_entries() -> Vec<LiveEntry> {
    live_json()
        .iter()
        .map(|item| {
            let field = |name: &str| {
                let text = item[name].as_str().expect("base64 string field");
                BASE64.decode(text).expect("valid base64")
            };
            LiveEntry {
                log_url: item["log_url"].as_str().expect("log_url").to_owned(),
                cert_index: item["cert_index"].as_u64().expect("cert_index"),
                leaf_input: field("leaf_input"),
                extra_data: field("extra_data"),
            }
        })
        .collect()
}

/// A get-entries response body of `count` live items (cycled), exactly as a log serves them.
pub fn live_get_entries_body(count: usize) -> String {
    let items = live_json();
    let entries: Vec<Value> = (0..count)
        .map(|i| {
            let item = &items[i % items.len()];
            json!({"leaf_input": item["leaf_input"], "extra_data": item["extra_data"]})
        })
        .collect();
    json!({ "entries": entries }).to_string()
}

/// Data tile `name` (`000`, `003.p/10`) of the Navigli 2025h2 sample (`tiled/navigli2025h2`).
pub fn navigli_data_tile(name: &str) -> Vec<u8> {
    read(&format!("tiled/navigli2025h2/tile/data/{name}"))
}

/// Every certificate of the corpus as the server publishes it (metadata and frames, built by its own
/// `MessageBuilder`): the live RFC 6962 entries, then the entries of the Navigli data tiles `000` to `003`.
pub fn messages() -> Vec<Message> {
    let source = source();
    let mut builder = MessageBuilder::new(BuildLimits::default());
    let mut messages = Vec::new();
    for live in live_entries() {
        let entry = decode_rfc6962(&live.leaf_input, &live.extra_data).expect("a live entry");
        let chain = match &entry.chain {
            Chain::Certificates(certs) => certs.clone(),
            Chain::Fingerprints(_) => Vec::new(),
        };
        messages.extend(
            builder
                .build(&source, live.cert_index, &entry, &chain, 1.0)
                .ok(),
        );
    }
    for (index, name) in ["000", "001", "002", "003"].into_iter().enumerate() {
        let tile = navigli_data_tile(name);
        for entry in data_tile_entries(&tile, index as u64) {
            let entry = entry.expect("a tile entry");
            messages.extend(
                builder
                    .build(&source, entry.index, &entry.entry, &[], 1.0)
                    .ok(),
            );
        }
    }
    messages
}

/// The message of a final certificate built in the test (`der::CertSpec::der`), as the server publishes it.
pub fn message_of_certificate(der: &[u8]) -> Message {
    let entry = LogEntry {
        timestamp_ms: 1_700_000_000_000,
        entry_type: EntryType::X509,
        leaf: der,
        issuer_key_hash: None,
        pre_certificate: None,
        chain: Chain::Certificates(Vec::new()),
    };
    MessageBuilder::new(BuildLimits::default())
        .build(&source(), 1, &entry, &[], 1.0)
        .expect("the certificate builds into a message")
}

fn source() -> LogSource {
    LogSource::new(
        "Google 'Argon2026h2' log",
        "https://ct.googleapis.com/logs/us1/argon2026h2/",
        SourceKind::Rfc6962,
    )
}
