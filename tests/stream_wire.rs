//! The JetStream message format read back (docs/wire-format.md §10): every corpus message survives the trip into
//! a stream message and back with its metadata, and its payloads gain exactly the cursor key; what is not one of
//! our messages is refused, never half-decoded.

use certstream::broker::wire;
use certstream_testkit::{corpus, with_cursor};
use serde_json::Value;

#[test]
fn every_corpus_message_comes_back_with_its_metadata_and_the_cursor_first() {
    let messages = corpus::messages();
    assert!(messages.len() > 1000, "the corpus");
    for (i, message) in messages.iter().enumerate() {
        let cursor = [1, 17, u64::MAX][i % 3];
        let mut meta = message.meta.clone();
        meta.log_id = "bG9nIGlk".into();
        let decoded = wire::decode(
            Some(&wire::headers(&meta)),
            &wire::envelope(&message.frames),
            cursor,
        )
        .unwrap_or_else(|e| panic!("message {i}: {e}"));
        meta.cursor = Some(cursor);
        assert_eq!(decoded.meta, meta, "message {i}");
        for (built, read) in [
            (&message.frames.full, &decoded.frames.full),
            (&message.frames.lite, &decoded.frames.lite),
            (&message.frames.domains, &decoded.frames.domains),
        ] {
            assert_eq!(
                read.payload(),
                with_cursor(built.payload(), cursor),
                "message {i}"
            );
            let json: Value = serde_json::from_slice(read.payload()).expect("JSON");
            assert_eq!(json["cursor"].as_u64(), Some(cursor));
        }
    }
}

#[test]
fn what_is_not_one_of_our_messages_is_refused() {
    let message = &corpus::messages()[0];
    let headers = wire::headers(&message.meta);
    let good = wire::envelope(&message.frames);
    let lines: Vec<&[u8]> = good.split(|&b| b == b'\n').collect();
    let join = |parts: &[&[u8]]| parts.join(&b'\n');
    for (what, payload) in [
        ("empty", Vec::new()),
        ("two lines", join(&lines[..2])),
        (
            "four lines",
            join(&[lines[0], lines[1], lines[2], lines[2]]),
        ),
        ("lite not JSON", join(&[lines[0], b"{\"data\":", lines[2]])),
        (
            "lite without a leaf",
            join(&[lines[0], br#"{"data":{}}"#, lines[2]]),
        ),
        ("full not an object", join(&[b"[1]", lines[1], lines[2]])),
        ("domains empty object", join(&[lines[0], lines[1], b"{}"])),
        ("full not JSON", join(&[b"{\"data\":", lines[1], lines[2]])),
        (
            "domains not UTF-8",
            join(&[lines[0], lines[1], b"{\"data\":[\"\xff\"]}"]),
        ),
        (
            "a cursor already",
            join(&[b"{\"cursor\":1,\"data\":{}}", lines[1], lines[2]]),
        ),
        (
            "unknown update_type",
            join(&[
                lines[0],
                &String::from_utf8_lossy(lines[1])
                    .replace("X509LogEntry", "Other")
                    .replace("PrecertLogEntry", "Other")
                    .into_bytes(),
                lines[2],
            ]),
        ),
    ] {
        assert!(
            wire::decode(Some(&headers), &payload, 1).is_err(),
            "{what} is refused"
        );
    }
    assert!(
        wire::decode(None, &good, 1).is_err(),
        "the log must be named"
    );
    let decoded = wire::decode(Some(&headers), &good, 1).expect("ours");
    assert_eq!(
        decoded.meta.index, message.meta.index,
        "the index is in the payload"
    );
}
