//! The mock CT log server (`mock-ct-log`) over loopback, checked with the crate's own CT code: its log list parses
//! and selects every log, its tree heads verify with the listed keys, get-entries honours the page cap and
//! Trillian's alignment, entries and data tiles decode with the fingerprints `/_mock/expected` announces, issuers
//! hash to their URL, every fault type is observable, and logs grow over time.
//!
//! A tiny blocking HTTP/1.1 client (std::net) talks to the mock, which runs in-process and stops when dropped.
//! The binary's own behaviour (stdin, flags) is tested in `crates/mock-ct-log/tests/binary.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::entry::{Chain, DecodeErrorKind, EntryType, LogEntry, decode_rfc6962};
use certstream_ct::get_entries::{GetEntriesError, RawEntry, parse_get_entries, scan_get_entries};
use certstream_ct::log_list::{LogInfo, LogKind, LogList, LogState};
use certstream_ct::tile::{TileError, data_tile_entries, tile_path};
use certstream_ct::{
    checkpoint::{Checkpoint, origin_from_submission_url},
    tree_head::{SignedTreeHead, TreeHead},
};
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::certificate::TbsCertificate;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An inclusive range of entry indices.
type Range = (u64, u64);

/// Every socket read gives up after this long, so no test can hang on the mock.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The kit's mock with the raw HTTP views these tests need.
struct Mock(certstream_testkit::Mock);

impl std::ops::Deref for Mock {
    type Target = certstream_testkit::Mock;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        Mock(certstream_testkit::Mock::start(args))
    }

    fn with_logs(rfc6962: usize, tiled: usize, rate: u64, args: &[&str]) -> Mock {
        Mock(certstream_testkit::Mock::with_logs(
            rfc6962, tiled, rate, args,
        ))
    }

    fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, b"")
    }

    /// GET of an absolute `http://` URL on this mock (as found in the log list).
    fn get_url(&self, url: &str) -> Reply {
        let path = url
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or_else(|| panic!("{url} is not on the mock"));
        self.get(path)
    }

    /// The mock's log list, parsed as certstream parses it.
    fn parsed_list(&self) -> LogList {
        LogList::parse(&self.get("/log_list.json").body).expect("log list parses")
    }

    fn log(&self, description_name: &str) -> LogInfo {
        let description = format!("Mock '{description_name}' log");
        self.parsed_list()
            .logs
            .into_iter()
            .find(|l| l.description == description)
            .unwrap_or_else(|| panic!("no log {description_name}"))
    }
}

/// What came back, as far as it came.
struct Reply {
    /// 0 when no status line arrived (connection closed or reset).
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length as announced.
    content_length: Option<usize>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Reply {
    parse_reply(&certstream_testkit::raw_request(addr, method, path, body)).0
}

/// Parses one response from `raw`; returns it and the bytes it took.
fn parse_reply(raw: &[u8]) -> (Reply, usize) {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        let reply = Reply {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            content_length: None,
        };
        return (reply, raw.len());
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let body_start = head_end + 4;
    let body_end = content_length.map_or(raw.len(), |n: usize| (body_start + n).min(raw.len()));
    let body = raw[body_start..body_end].to_vec();
    (
        Reply {
            status,
            headers,
            body,
            content_length,
        },
        body_end,
    )
}

fn log_url(log: &LogInfo) -> &str {
    match &log.kind {
        LogKind::Rfc6962 { url } => url,
        LogKind::Tiled { monitoring_url, .. } => monitoring_url,
    }
}

fn sth(mock: &Mock, log: &LogInfo) -> TreeHead {
    let reply = mock.get_url(&format!("{}ct/v1/get-sth", log_url(log)));
    assert_eq!(reply.status, 200, "get-sth: {}", reply.text());
    let key = log.key().expect("listed key");
    SignedTreeHead::from_json(&reply.body)
        .expect("get-sth parses")
        .verify(&key)
        .expect("STH verifies")
}

fn checkpoint(mock: &Mock, log: &LogInfo) -> TreeHead {
    let LogKind::Tiled {
        submission_url,
        monitoring_url,
    } = &log.kind
    else {
        panic!("{} is not tiled", log.description);
    };
    let reply = mock.get_url(&format!("{monitoring_url}checkpoint"));
    assert_eq!(reply.status, 200, "checkpoint: {}", reply.text());
    let key = log.key().expect("listed key");
    Checkpoint::parse(&reply.body)
        .expect("checkpoint parses")
        .verify(origin_from_submission_url(submission_url), &key)
        .expect("checkpoint verifies")
}

fn fingerprint(der: &[u8]) -> String {
    Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DER certstream takes the leaf from: the certificate, or the pre-certificate of a precert.
fn leaf_der<'a>(entry: &LogEntry<'a>) -> &'a [u8] {
    match entry.entry_type {
        EntryType::X509 => entry.leaf,
        EntryType::Precert => entry
            .pre_certificate
            .expect("precert carries its pre-certificate"),
    }
}

/// Checks a decoded entry against its `/_mock/expected` item: fingerprint, type, and whether it parses.
fn check_against_expected(entry: &LogEntry<'_>, expected: &Value) {
    let index = &expected["index"];
    assert_eq!(
        fingerprint(leaf_der(entry)),
        expected["sha1_fingerprint"],
        "fingerprint of entry {index}"
    );
    let update_type = match entry.entry_type {
        EntryType::X509 => "X509LogEntry",
        EntryType::Precert => "PrecertLogEntry",
    };
    assert_eq!(
        update_type, expected["update_type"],
        "type of entry {index}"
    );
    let parses = X509Certificate::from_der(leaf_der(entry)).is_ok();
    let unparseable = expected["unparseable"]
        .as_bool()
        .expect("unparseable is a bool");
    assert_eq!(parses, !unparseable, "entry {index} parses: {parses}");
    if entry.entry_type == EntryType::Precert {
        assert_eq!(
            TbsCertificate::from_der(entry.leaf).is_ok(),
            !unparseable,
            "TBS of entry {index}"
        );
    }
}

/// Status and entries of a get-entries call, parsed with the crate's get-entries parser.
fn get_entries(mock: &Mock, log: &LogInfo, start: u64, end: u64) -> (u16, Vec<RawEntry>) {
    let reply = mock.get_url(&format!(
        "{}ct/v1/get-entries?start={start}&end={end}",
        log_url(log)
    ));
    if reply.status != 200 {
        return (reply.status, Vec::new());
    }
    (
        200,
        parse_get_entries(&reply.body).expect("get-entries JSON"),
    )
}

#[test]
fn log_list_parses_and_selects_every_log() {
    let mock = Mock::start(&[
        "--rfc6962",
        "2",
        "--tiled",
        "3",
        "--readonly-final",
        "500",
        "--rate",
        "0",
    ]);
    let list = mock.parsed_list();
    assert!(list.skipped.is_empty(), "skipped: {:?}", list.skipped);
    assert_eq!(list.logs.len(), 6);
    assert_eq!(list.selected(false).count(), 6, "every log is selected");
    let tiled = list
        .logs
        .iter()
        .filter(|l| matches!(l.kind, LogKind::Tiled { .. }))
        .count();
    assert_eq!(tiled, 3);
    for log in &list.logs {
        let key = log.key().expect("key parses");
        assert_eq!(BASE64.encode(key.log_id()), log.log_id);
        if let LogKind::Tiled {
            submission_url,
            monitoring_url,
        } = &log.kind
        {
            assert_ne!(
                submission_url, monitoring_url,
                "prefixes differ to catch mixups"
            );
            // The submission prefix serves no reads.
            assert_eq!(
                mock.get_url(&format!("{submission_url}checkpoint")).status,
                404
            );
        }
    }
    let readonly = mock.log("ro0");
    assert_eq!(
        readonly.state,
        LogState::ReadOnly {
            final_tree_size: 500
        }
    );
    let ids: std::collections::HashSet<_> = list.logs.iter().map(|l| &l.log_id).collect();
    assert_eq!(ids.len(), 6, "one key per log");
}

#[test]
fn tree_heads_verify_with_listed_keys() {
    let mock = Mock::start(&[
        "--rfc6962",
        "1",
        "--tiled",
        "1",
        "--readonly-final",
        "700",
        "--rate",
        "0",
    ]);
    let head = sth(&mock, &mock.log("r0"));
    assert_eq!(head.tree_size, 1000);
    assert_eq!(
        sth(&mock, &mock.log("ro0")).tree_size,
        700,
        "readonly logs stop at their final size"
    );
    assert_eq!(checkpoint(&mock, &mock.log("t0")).tree_size, 1000);
    // The root is a deterministic stand-in: the same size gives the same root.
    assert_eq!(sth(&mock, &mock.log("r0")).root_hash, head.root_hash);
    // A head signed by another log's key does not verify.
    let reply = mock.get_url(&format!("{}ct/v1/get-sth", log_url(&mock.log("r0"))));
    let other_key = mock.log("ro0").key().expect("key");
    assert!(
        SignedTreeHead::from_json(&reply.body)
            .expect("parses")
            .verify(&other_key)
            .is_err()
    );
}

#[test]
fn get_entries_honours_cap_and_alignment_and_matches_expected() {
    let mock = Mock::with_logs(1, 0, 0, &["--page-cap", "32"]);
    let log = mock.log("r0");
    // (start, end) asked → (first, last) served, or None for a 400.
    let cases: [(u64, u64, Option<Range>); 10] = [
        (0, 9, Some((0, 9))),          // short request: served whole
        (5, 100, Some((5, 31))),       // at least the cap: cut back to the next multiple of 32
        (32, 63, Some((32, 63))),      // aligned full page
        (40, 71, Some((40, 63))),      // exactly the cap, unaligned: still cut back
        (40, 70, Some((40, 70))),      // below the cap: not aligned
        (980, 2000, Some((980, 991))), // aligned before anything else
        (992, 2000, Some((992, 999))), // aligned, then clipped to the tree
        (996, 1010, Some((996, 999))), // below the cap, clipped to the tree
        (1000, 1001, None),            // start ≥ tree size
        (10, 5, None),                 // end < start
    ];
    let mut seen = std::collections::HashSet::new();
    for (start, end, want) in cases {
        let (status, entries) = get_entries(&mock, &log, start, end);
        let Some((first, last)) = want else {
            assert_eq!(status, 400, "start={start} end={end}");
            continue;
        };
        assert_eq!(status, 200, "start={start} end={end}");
        assert_eq!(
            entries.len() as u64,
            last - first + 1,
            "start={start} end={end}"
        );
        let expected = mock.expected_json("r0", first, last);
        let mut previous_timestamp = 0;
        for (raw, expected) in entries.iter().zip(&expected) {
            let entry = decode_rfc6962(&raw.leaf_input, &raw.extra_data).expect("entry decodes");
            check_against_expected(&entry, expected);
            let Chain::Certificates(chain) = &entry.chain else {
                panic!("RFC 6962 chain")
            };
            assert!(!chain.is_empty(), "entries carry their chain");
            assert!(
                entry.timestamp_ms > previous_timestamp,
                "timestamps increase with the index"
            );
            previous_timestamp = entry.timestamp_ms;
            seen.insert(fingerprint(leaf_der(&entry)));
        }
    }
    // The ranges served cover 0..=70 and 980..=999.
    assert_eq!(seen.len(), 71 + 20, "each index has its own certificate");
    let stats = mock.stats();
    assert_eq!(stats["logs"]["r0"]["requests"]["get-entries"], 10);
}

#[test]
fn data_tiles_decode_with_expected_fingerprints_and_issuers() {
    let mock = Mock::with_logs(0, 1, 0, &["--start-size", "600"]);
    let log = mock.log("t0");
    let base = log_url(&log).to_string();
    assert_eq!(checkpoint(&mock, &log).tree_size, 600);
    let mut issuers = std::collections::HashSet::new();
    for (tile, width) in [(0u64, None), (1, None), (2, Some(88u8))] {
        let reply = mock.get_url(&format!("{base}tile/data/{}", tile_path(tile, width)));
        assert_eq!(reply.status, 200, "tile {tile} {width:?}");
        let records: Vec<_> = data_tile_entries(&reply.body, tile)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("tile {tile}: {e}"));
        let count = width.map_or(256, u64::from);
        assert_eq!(records.len() as u64, count);
        let expected = mock.expected_json("t0", tile * 256, tile * 256 + count - 1);
        for (record, expected) in records.iter().zip(&expected) {
            assert_eq!(record.index, expected["index"]);
            check_against_expected(&record.entry, expected);
            let Chain::Fingerprints(fingerprints) = &record.entry.chain else {
                panic!("tile chain")
            };
            assert!(!fingerprints.is_empty());
            issuers.extend(fingerprints.iter().copied());
        }
    }
    for fingerprint in &issuers {
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        let reply = mock.get_url(&format!("{base}issuer/{hex}"));
        assert_eq!(reply.status, 200);
        assert_eq!(
            &<[u8; 32]>::from(Sha256::digest(&reply.body)),
            fingerprint,
            "issuer {hex}"
        );
        assert!(
            X509Certificate::from_der(&reply.body).is_ok(),
            "issuer {hex} is a certificate"
        );
    }
    // Nothing that does not exist yet, and no partial tiles beside the current one.
    for missing in [
        "tile/data/002",
        "tile/data/002.p/89",
        "tile/data/001.p/5",
        "tile/data/003.p/1",
        "tile/0/000",
    ] {
        assert_eq!(
            mock.get_url(&format!("{base}{missing}")).status,
            404,
            "{missing}"
        );
    }
    assert_eq!(
        mock.get_url(&format!("{base}issuer/{}", "0".repeat(64)))
            .status,
        404
    );
    let stats = &mock.stats()["logs"]["t0"];
    assert_eq!(stats["requests"]["data-tile"], 3);
    assert_eq!(stats["requests"]["partial-data-tile"], 4);
    assert_eq!(stats["partial_data_tiles"]["2/88"], 1);
    assert_eq!(stats["requests"]["issuer"], issuers.len() as u64 + 1);
}

#[test]
fn entries_are_a_function_of_the_seed() {
    let a = Mock::start(&["--rfc6962", "1", "--tiled", "0", "--seed", "7"]);
    let b = Mock::start(&["--rfc6962", "1", "--tiled", "0", "--seed", "7"]);
    let c = Mock::start(&["--rfc6962", "1", "--tiled", "0", "--seed", "8"]);
    let (ea, eb, ec) = (
        a.expected_json("r0", 0, 99),
        b.expected_json("r0", 0, 99),
        c.expected_json("r0", 0, 99),
    );
    assert_eq!(ea, eb);
    assert_ne!(ea, ec);
    let types: std::collections::HashSet<_> = ea.iter().map(|e| e["update_type"].clone()).collect();
    assert_eq!(types.len(), 2, "both entry types occur");
}

#[test]
fn rate_limit_errors_slowness_and_broken_bodies_are_observable() {
    let mock = Mock::with_logs(2, 1, 0, &[]);
    let r0 = mock.log("r0");
    let sth_path = format!("{}ct/v1/get-sth", log_url(&r0));

    mock.set_faults(r#"[{"kind":"429","log":"r0","every":2,"retry_after":3}]"#);
    let statuses: Vec<u16> = (0..4).map(|_| mock.get_url(&sth_path).status).collect();
    assert_eq!(statuses, [200, 429, 200, 429]);
    let limited = (0..2)
        .map(|_| mock.get_url(&sth_path))
        .find(|r| r.status == 429)
        .expect("a 429");
    assert_eq!(limited.header("Retry-After"), Some("3"));
    assert_eq!(
        mock.get_url(&format!("{}ct/v1/get-sth", log_url(&mock.log("r1"))))
            .status,
        200,
        "r1 unaffected"
    );

    mock.set_faults(r#"[{"kind":"429","p":1.0,"retry_after":60,"http_date":true}]"#);
    let limited = mock.get_url(&sth_path);
    assert_eq!(limited.status, 429);
    let date = limited.header("Retry-After").expect("Retry-After");
    assert!(
        date.ends_with(" GMT") && date.len() == 29 && date.as_bytes()[3] == b',',
        "HTTP-date {date:?}"
    );
    assert!(mock.stats()["429_sent"].as_u64().expect("count") >= 4);

    mock.set_faults(r#"[{"kind":"500","endpoint":"get-entries","p":1.0}]"#);
    assert_eq!(get_entries(&mock, &r0, 0, 3).0, 500);
    assert_eq!(
        mock.get_url(&sth_path).status,
        200,
        "the endpoint filter spares get-sth"
    );

    mock.set_faults(r#"[{"kind":"slow","ms":300}]"#);
    let started = Instant::now();
    assert_eq!(mock.get_url(&sth_path).status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "slow: {:?}",
        started.elapsed()
    );

    mock.set_faults(r#"[{"kind":"truncate"}]"#);
    let reply = mock.get_url(&format!("{}ct/v1/get-entries?start=0&end=3", log_url(&r0)));
    let promised = reply.content_length.expect("Content-Length");
    assert!(
        reply.status == 200 && reply.body.len() < promised,
        "{} of {promised}",
        reply.body.len()
    );

    mock.set_faults(r#"[{"kind":"garbage"}]"#);
    let reply = mock.get_url(&sth_path);
    assert_eq!(reply.status, 200);
    assert!(!reply.body.is_empty() && serde_json::from_slice::<Value>(&reply.body).is_err());

    mock.set_faults(r#"[{"kind":"reset"}]"#);
    assert_eq!(
        mock.get_url(&sth_path).status,
        0,
        "closed without a response"
    );

    mock.set_faults(r#"[{"kind":"down","log":"t0"}]"#);
    let t0 = mock.log("t0");
    assert_eq!(
        mock.get_url(&format!("{}checkpoint", log_url(&t0))).status,
        503
    );
    assert_eq!(
        mock.get_url(&format!("{}tile/data/000", log_url(&t0)))
            .status,
        503
    );
    assert_eq!(mock.get_url(&sth_path).status, 200, "other logs are up");

    let faults = &mock.stats()["logs"]["r0"]["faults"];
    for kind in ["429", "500", "slow", "truncate", "garbage", "reset"] {
        assert!(
            faults[kind].as_u64().is_some_and(|n| n > 0),
            "{kind} counted in {faults}"
        );
    }
    mock.set_faults("[]");
    assert_eq!(
        mock.get_url(&format!("{}checkpoint", log_url(&t0))).status,
        200,
        "faults cleared"
    );
    let bad = request(
        &mock.addr,
        "POST",
        "/_mock/faults",
        br#"[{"kind":"429","log":"nope"}]"#,
    );
    assert_eq!(bad.status, 400, "unknown log refused");
}

#[test]
fn tree_heads_go_backwards_still_signed() {
    let mock = Mock::with_logs(1, 1, 0, &["--fault", "backwards,every=2,by=7"]);
    let (r0, t0) = (mock.log("r0"), mock.log("t0"));
    let sizes: Vec<u64> = (0..4).map(|_| sth(&mock, &r0).tree_size).collect();
    assert_eq!(sizes, [1000, 993, 1000, 993]);
    let sizes: Vec<u64> = (0..2).map(|_| checkpoint(&mock, &t0).tree_size).collect();
    assert_eq!(sizes, [1000, 993]);
}

#[test]
fn unparseable_certificates_keep_valid_framing() {
    let mock = Mock::with_logs(1, 1, 0, &["--fault", "unparseable,every=3"]);
    let expected = mock.expected_json("r0", 0, 29);
    let flagged: Vec<u64> = expected
        .iter()
        .filter(|e| e["unparseable"] == true)
        .map(|e| e["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(flagged, [2, 5, 8, 11, 14, 17, 20, 23, 26, 29]);
    let (status, entries) = get_entries(&mock, &mock.log("r0"), 0, 29);
    assert_eq!((status, entries.len()), (200, 30));
    let mut precerts = 0;
    for (raw, expected) in entries.iter().zip(&expected) {
        let entry = decode_rfc6962(&raw.leaf_input, &raw.extra_data).expect("framing stays valid");
        check_against_expected(&entry, expected);
        precerts +=
            usize::from(expected["unparseable"] == true && entry.entry_type == EntryType::Precert);
    }
    assert!(
        precerts > 0,
        "an unparseable precert is among them (its TBS fails too)"
    );
    let tile = mock.get_url(&format!("{}tile/data/000", log_url(&mock.log("t0"))));
    let expected = mock.expected_json("t0", 0, 255);
    for (record, expected) in data_tile_entries(&tile.body, 0).zip(&expected) {
        check_against_expected(&record.expect("tile framing stays valid").entry, expected);
    }
}

#[test]
fn hostile_entries_and_heads() {
    let mock = Mock::with_logs(
        1,
        1,
        0,
        &[
            "--fault",
            "empty_cert,every=4",
            "--fault",
            "huge_chain@r0,every=5,bytes=70000",
            "--fault",
            "jump@t0,every=2,to=5000000",
        ],
    );
    // Empty certificates: the record's framing stays valid, the certificate is u24 length 0.
    let (status, entries) = get_entries(&mock, &mock.log("r0"), 0, 9);
    assert_eq!((status, entries.len()), (200, 10));
    let error = decode_rfc6962(&entries[3].leaf_input, &entries[3].extra_data)
        .expect_err("an empty certificate");
    assert_eq!(error.kind, DecodeErrorKind::EmptyCertificate);
    let huge = decode_rfc6962(&entries[4].leaf_input, &entries[4].extra_data).expect("decodes");
    let Chain::Certificates(chain) = huge.chain else {
        panic!("RFC 6962 chains are certificates")
    };
    assert_eq!(chain.last().map(|c| c.len()), Some(70000));
    let expected = mock.expected_json("r0", 0, 9);
    assert_eq!(expected[3]["unparseable"], true);
    let tile = mock.get_url(&format!("{}tile/data/000", log_url(&mock.log("t0"))));
    let records: Vec<_> = data_tile_entries(&tile.body, 0).collect();
    assert_eq!(records.len(), 256);
    assert!(matches!(
        records[3],
        Err(TileError::Record { index: 3, .. })
    ));
    assert!(records[4].is_ok());
    // A jump: every second checkpoint claims 5,000,000 entries, signed, and tiles up to it are served.
    let t0 = mock.log("t0");
    let sizes: Vec<u64> = (0..2).map(|_| checkpoint(&mock, &t0).tree_size).collect();
    assert_eq!(sizes, [1000, 5_000_000]);
    let far = mock.get_url(&format!("{}tile/data/x019/000", log_url(&t0)));
    assert_eq!(far.status, 200);
}

/// `bad_base64`: the item's `leaf_input` is not base64 but the page's JSON is intact, so only that item fails; the
/// expected list marks it as producing no message. Tiles hold no base64: a tiled log serves it unchanged.
#[test]
fn bad_base64_spoils_one_get_entries_item_only() {
    let mock = Mock::with_logs(1, 1, 0, &["--fault", "bad_base64,every=4"]);
    let reply = mock.get_url(&format!(
        "{}ct/v1/get-entries?start=0&end=9",
        log_url(&mock.log("r0"))
    ));
    assert_eq!(reply.status, 200);
    let page = scan_get_entries(&reply.body, usize::MAX).expect("the JSON framing is intact");
    let items = page.decode(0..page.len());
    assert_eq!(items.len(), 10);
    for (index, item) in items.iter().enumerate() {
        if index % 4 == 3 {
            assert!(
                matches!(
                    item,
                    Err(GetEntriesError::Base64 {
                        field: "leaf_input",
                        ..
                    })
                ),
                "{index}: {item:?}"
            );
        } else {
            let raw = item.as_ref().expect("valid base64");
            decode_rfc6962(&raw.leaf_input, &raw.extra_data).expect("decodes");
        }
    }
    let expected = mock.expected_json("r0", 0, 9);
    let flagged: Vec<bool> = expected.iter().map(|e| e["unparseable"] == true).collect();
    assert_eq!(flagged, (0..10).map(|i| i % 4 == 3).collect::<Vec<_>>());
    let tile = mock.get_url(&format!("{}tile/data/000", log_url(&mock.log("t0"))));
    let expected = mock.expected_json("t0", 0, 255);
    for (record, expected) in data_tile_entries(&tile.body, 0).zip(&expected) {
        assert_eq!(expected["unparseable"], false);
        check_against_expected(&record.expect("tile unchanged").entry, expected);
    }
}

#[test]
fn logs_grow_over_time_and_readonly_logs_stop() {
    let mock = Mock::with_logs(1, 1, 200, &["--readonly-final", "1010"]);
    let (r0, t0, ro0) = (mock.log("r0"), mock.log("t0"), mock.log("ro0"));
    let first = sth(&mock, &r0).tree_size;
    std::thread::sleep(Duration::from_millis(600));
    let second = sth(&mock, &r0).tree_size;
    assert!(second >= first + 100, "r0 grew from {first} to {second}");
    assert!(checkpoint(&mock, &t0).tree_size >= 1100);
    assert_eq!(sth(&mock, &ro0).tree_size, 1010);
    let stats = mock.stats();
    assert!(stats["logs"]["r0"]["tree_size"].as_u64().expect("size") >= second);
    assert_eq!(stats["logs"]["ro0"]["tree_size"], 1010);
    // Entries past the size at the first STH are now served.
    let (status, entries) = get_entries(&mock, &r0, first, first + 9);
    assert_eq!((status, entries.len()), (200, 10));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let mock = Mock::start(&["--rfc6962", "1", "--tiled", "0"]);
    let mut stream = TcpStream::connect(&mock.addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let path = "/rfc6962/r0/ct/v1/get-sth";
    let one = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", mock.addr);
    // Pipelined: both requests at once, then both responses.
    stream
        .write_all(format!("{one}{one}").as_bytes())
        .expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut replies = Vec::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    while replies.len() < 2 && Instant::now() < deadline {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed early");
        raw.extend_from_slice(&buf[..n]);
        loop {
            let (reply, used) = parse_reply(&raw);
            let complete = reply.status != 0 && Some(reply.body.len()) == reply.content_length;
            if !complete {
                break;
            }
            raw.drain(..used);
            replies.push(reply);
        }
    }
    assert_eq!(replies.len(), 2);
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.header("Connection") == Some("keep-alive"))
    );
}
