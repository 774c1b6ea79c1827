//! Example A and Example B (docs/wire-format.md §9) as whole messages: the entries are built as a log would serve
//! them (MerkleTreeLeaf + extra_data), run through decode → parse → serialize → frame, and compared byte for byte
//! with CaliDog's message plus exactly the changes docs/wire-format.md makes (§3.3 and §4.1 additive fields, §8
//! deviations).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certstream::message::{BuildLimits, EncodedMessage, LogSource, MessageBuilder, SourceKind};
use certstream_ct::entry::{Chain, decode_rfc6962};
use certstream_testkit::examples::*;
use serde_json::{Value, json};

fn der(b64: &str) -> Vec<u8> {
    STANDARD.decode(b64).unwrap()
}

fn u24(len: usize) -> [u8; 3] {
    let bytes = (len as u32).to_be_bytes();
    [bytes[1], bytes[2], bytes[3]]
}

fn with_u24_len(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(&u24(item.len()));
    out.extend_from_slice(item);
}

fn chain_bytes(chain: &[Vec<u8>]) -> Vec<u8> {
    let mut certs = Vec::new();
    for cert in chain {
        with_u24_len(&mut certs, cert);
    }
    let mut out = Vec::new();
    with_u24_len(&mut out, &certs);
    out
}

/// The TBSCertificate inside a certificate: the first element of the outer SEQUENCE (long-form lengths only, as
/// every real certificate has).
fn tbs_of(cert: &[u8]) -> &[u8] {
    let outer_header = 2 + (cert[1] & 0x7F) as usize;
    let inner = &cert[outer_header..];
    let len_len = (inner[1] & 0x7F) as usize;
    let len = inner[2..2 + len_len]
        .iter()
        .fold(0usize, |acc, b| acc << 8 | *b as usize);
    &inner[..2 + len_len + len]
}

fn build(
    source: &LogSource,
    index: u64,
    leaf_input: &[u8],
    extra_data: &[u8],
    seen: f64,
) -> EncodedMessage {
    let entry = decode_rfc6962(leaf_input, extra_data).unwrap();
    let Chain::Certificates(chain) = &entry.chain else {
        unreachable!()
    };
    MessageBuilder::new(BuildLimits::default())
        .build(source, index, &entry, chain, seen)
        .unwrap()
        .frames
}

/// CaliDog's cert object plus the certstream-server-go fields docs/wire-format.md §4.1 adds (sha1, sha256, is_ca).
fn expected_cert(calidog: &str, go_fields: &str, as_der: Option<&str>) -> Value {
    let mut cert: Value = serde_json::from_str(calidog).unwrap();
    let go: Value = serde_json::from_str(go_fields).unwrap();
    for (key, value) in go.as_object().unwrap() {
        cert[key] = value.clone();
    }
    if let Some(b64) = as_der {
        cert["as_der"] = json!(b64);
    }
    cert
}

/// serde_json's `Value` keeps keys sorted, which is exactly the wire order (docs/wire-format.md §3.1: alphabetical
/// at every level), so the expected bytes are the compact serialization of the expected value.
fn assert_bytes(actual: &[u8], expected: &Value) {
    assert_eq!(
        String::from_utf8_lossy(actual),
        serde_json::to_string(expected).unwrap()
    );
}

#[test]
fn example_a_x509_entry_lite_full_and_domains() {
    let (leaf, x3, root) = (der(A_LEAF_DER), der(A_LE_X3_DER), der(A_DST_ROOT_DER));
    let mut leaf_input = vec![0, 0];
    leaf_input.extend_from_slice(&1519203335519u64.to_be_bytes());
    leaf_input.extend_from_slice(&[0, 0]);
    with_u24_len(&mut leaf_input, &leaf);
    leaf_input.extend_from_slice(&[0, 0]);
    let extra_data = chain_bytes(&[x3.clone(), root.clone()]);
    let source = LogSource::new(
        "Google 'Argon2018' log",
        "https://ct.googleapis.com/logs/argon2018/",
        SourceKind::Rfc6962,
    );
    let frames = build(
        &source,
        301543211,
        &leaf_input,
        &extra_data,
        1519203341.123456,
    );

    let mut leaf_cert = expected_cert(A_LEAF_CALIDOG, A_LEAF_GO, None);
    // docs/wire-format.md §8: every policy in order, and the UserNotice's real explicitText (CaliDog drops the first
    // policy and the first 8 bytes of the notice).
    leaf_cert["extensions"]["certificatePolicies"] = json!(
        "Policy: 2.23.140.1.2.1\nPolicy: 1.3.6.1.4.1.44947.1.1.1\n  CPS: http://cps.letsencrypt.org\n  User Notice: \
         This Certificate may only be relied upon by Relying Parties and only in accordance with the Certificate \
         Policy found at https://letsencrypt.org/repository/"
    );
    let mut x3_cert = expected_cert(A_LE_X3_CALIDOG, A_LE_X3_GO, Some(A_LE_X3_DER));
    x3_cert["extensions"]["certificatePolicies"] = json!(
        "Policy: 2.23.140.1.2.1\nPolicy: 1.3.6.1.4.1.44947.1.1.1\n  CPS: http://cps.root-x1.letsencrypt.org"
    );
    let root_cert = expected_cert(A_DST_ROOT_CALIDOG, A_DST_ROOT_GO, Some(A_DST_ROOT_DER));

    let mut lite = json!({
        "data": {
            "cert_index": 301543211,
            "cert_link": "https://ct.googleapis.com/logs/argon2018/ct/v1/get-entries?start=301543211&end=301543211",
            "leaf_cert": leaf_cert,
            "seen": 1519203341.123456,
            // CaliDog has name and url; timestamp and type are certstream-server-go's (docs/wire-format.md §3.3).
            "source": {
                "name": "Google 'Argon2018' log",
                "timestamp": 1519203335.519,
                "type": "rfc6962",
                "url": "https://ct.googleapis.com/logs/argon2018/"
            },
            "update_type": "X509LogEntry"
        },
        "message_type": "certificate_update"
    });
    assert_bytes(frames.lite.payload(), &lite);

    lite["data"]["chain"] = json!([x3_cert, root_cert]);
    lite["data"]["leaf_cert"]["as_der"] = json!(A_LEAF_DER);
    assert_bytes(frames.full.payload(), &lite);

    assert_eq!(
        frames.domains.payload(),
        br#"{"data":["danadjs.ch"],"message_type":"dns_entries"}"#
    );
}

#[test]
fn example_b_precert_entry_lite_and_domains() {
    let (precert, ex7) = (der(B_PRECERT_DER), der(B_EX7_DER));
    let mut leaf_input = vec![0, 0];
    leaf_input.extend_from_slice(&1748859267000u64.to_be_bytes());
    leaf_input.extend_from_slice(&[0, 1]);
    leaf_input.extend_from_slice(&[0xAB; 32]); // issuer_key_hash: not part of the message
    with_u24_len(&mut leaf_input, tbs_of(&precert));
    leaf_input.extend_from_slice(&[0, 0]);
    let mut extra_data = Vec::new();
    with_u24_len(&mut extra_data, &precert);
    extra_data.extend_from_slice(&chain_bytes(&[ex7]));
    let source = LogSource::new(
        "Example 'Quartz2025h2' log",
        "https://ct.example-logs.net/2025h2/",
        SourceKind::Rfc6962,
    );
    let frames = build(
        &source,
        1874402211,
        &leaf_input,
        &extra_data,
        1748859268.204917,
    );

    // The leaf is the pre-certificate (poison included), so the hashes are those of the precert DER.
    let expected = json!({
        "data": {
            "cert_index": 1874402211u64,
            "cert_link": "https://ct.example-logs.net/2025h2/ct/v1/get-entries?start=1874402211&end=1874402211",
            "leaf_cert": expected_cert(B_LEAF_CALIDOG, B_LEAF_GO, None),
            "seen": 1748859268.204917,
            "source": {
                "name": "Example 'Quartz2025h2' log",
                "timestamp": 1748859267.0,
                "type": "rfc6962",
                "url": "https://ct.example-logs.net/2025h2/"
            },
            "update_type": "PrecertLogEntry"
        },
        "message_type": "certificate_update"
    });
    assert_bytes(frames.lite.payload(), &expected);
    assert_eq!(
        frames.domains.payload(),
        &br#"{"data":["*.shop.example.com","api.example.com","example.com","shop.example.com"],"message_type":"dns_entries"}"#[..]
    );
}

#[test]
fn precert_without_a_usable_pre_certificate_falls_back_to_the_leaf_tbs() {
    let precert = der(B_PRECERT_DER);
    let tbs = tbs_of(&precert);
    let mut leaf_input = vec![0, 0];
    leaf_input.extend_from_slice(&1748859267000u64.to_be_bytes());
    leaf_input.extend_from_slice(&[0, 1]);
    leaf_input.extend_from_slice(&[0; 32]);
    with_u24_len(&mut leaf_input, tbs);
    leaf_input.extend_from_slice(&[0, 0]);
    // A pre-certificate that is not a certificate at all.
    let mut extra_data = Vec::new();
    with_u24_len(&mut extra_data, &[0x30, 0x03, 0x02, 0x01, 0x00]);
    extra_data.extend_from_slice(&chain_bytes(&[]));
    let source = LogSource::new("x", "https://x.example/", SourceKind::Rfc6962);
    let entry = decode_rfc6962(&leaf_input, &extra_data).unwrap();
    let mut builder = MessageBuilder::new(BuildLimits::default());
    let frames = builder.build(&source, 7, &entry, &[], 1.5).unwrap().frames;
    assert_eq!(builder.counters().precert_tbs_fallbacks, 1);
    let full: Value = serde_json::from_slice(frames.full.payload()).unwrap();
    let leaf = &full["data"]["leaf_cert"];
    assert_eq!(leaf["subject"]["CN"], "shop.example.com");
    assert_eq!(
        leaf["as_der"],
        STANDARD.encode(tbs),
        "as_der is the DER the fields were read from"
    );
    assert_eq!(full["data"]["chain"], json!([]));
}

#[test]
fn an_unparseable_leaf_is_an_error_and_counted() {
    let mut leaf_input = vec![0, 0];
    leaf_input.extend_from_slice(&0u64.to_be_bytes());
    leaf_input.extend_from_slice(&[0, 0]);
    with_u24_len(&mut leaf_input, b"not a certificate");
    leaf_input.extend_from_slice(&[0, 0]);
    let extra_data = chain_bytes(&[]);
    let entry = decode_rfc6962(&leaf_input, &extra_data).unwrap();
    let source = LogSource::new("x", "https://x.example/", SourceKind::Rfc6962);
    let mut builder = MessageBuilder::new(BuildLimits::default());
    let err = builder.build(&source, 1, &entry, &[], 1.0).unwrap_err();
    assert!(
        err.to_string().contains("leaf certificate rejected"),
        "{err}"
    );
    assert_eq!(builder.counters().leaf_rejected, 1);
    assert_eq!(builder.counters().built, 0);
}

#[test]
fn chain_cache_serves_repeated_intermediates_and_skips_bad_ones() {
    let (leaf, x3, root) = (der(A_LEAF_DER), der(A_LE_X3_DER), der(A_DST_ROOT_DER));
    let source = LogSource::new("x", "https://x.example/", SourceKind::Rfc6962);
    let mut leaf_input = vec![0, 0];
    leaf_input.extend_from_slice(&1u64.to_be_bytes());
    leaf_input.extend_from_slice(&[0, 0]);
    with_u24_len(&mut leaf_input, &leaf);
    leaf_input.extend_from_slice(&[0, 0]);
    let no_chain = chain_bytes(&[]);
    let entry = decode_rfc6962(&leaf_input, &no_chain).unwrap();
    let garbage: &[u8] = b"\x30\x00";
    let chain: [&[u8]; 3] = [&x3, garbage, &root];

    let mut cached = MessageBuilder::new(BuildLimits::default());
    let mut uncached = MessageBuilder::new(BuildLimits {
        chain_cache_bytes: 0,
        ..BuildLimits::default()
    });
    for round in 0..3 {
        let a = cached
            .build(&source, round, &entry, &chain, 2.0)
            .unwrap()
            .frames;
        let b = uncached
            .build(&source, round, &entry, &chain, 2.0)
            .unwrap()
            .frames;
        assert_eq!(a.full, b.full, "the cache never changes the output");
        let full: Value = serde_json::from_slice(a.full.payload()).unwrap();
        assert_eq!(
            full["data"]["chain"].as_array().unwrap().len(),
            2,
            "the unparseable chain cert is left out"
        );
    }
    let counters = cached.counters();
    assert_eq!(
        (counters.chain_cache_misses, counters.chain_cache_hits),
        (3, 6)
    );
    assert_eq!(counters.chain_rejected, 3);
    assert_eq!(uncached.counters().chain_cache_hits, 0);
}
