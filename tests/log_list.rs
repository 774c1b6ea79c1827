//! The log list against Chrome's real v3 list (corpus copy, v85.92): parsing, selection, merging, signature
//! checks, the compiled-in snapshot, and malformed input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::log_list::{
    self, GOOGLE_LOG_LIST_PUBKEY_PEM, LogInfo, LogKind, LogList, LogListError, LogState,
    SNAPSHOT_JSON,
};
use serde_json::{Value, json};

fn real_list() -> LogList {
    LogList::parse(&certstream_testkit::corpus::read(
        "loglist/google_log_list_v3.json",
    ))
    .expect("the real list parses")
}

fn find<'a>(list: &'a LogList, description: &str) -> &'a LogInfo {
    list.logs
        .iter()
        .find(|l| l.description.contains(description))
        .unwrap_or_else(|| panic!("{description}"))
}

#[test]
fn real_list_parses_with_kinds_states_and_urls() {
    let list = real_list();
    assert_eq!(list.version.as_deref(), Some("85.92"));
    assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    let rfc = list
        .logs
        .iter()
        .filter(|l| matches!(l.kind, LogKind::Rfc6962 { .. }))
        .count();
    let tiled = list
        .logs
        .iter()
        .filter(|l| matches!(l.kind, LogKind::Tiled { .. }))
        .count();
    assert_eq!((rfc, tiled), (35, 21));

    let count = |pred: fn(&LogState) -> bool| list.logs.iter().filter(|l| pred(&l.state)).count();
    assert_eq!(count(|s| *s == LogState::Usable), 48);
    assert_eq!(count(|s| matches!(s, LogState::ReadOnly { .. })), 4);
    assert_eq!(count(|s| *s == LogState::Retired), 4);

    let argon = find(&list, "Argon2026h2");
    assert_eq!(
        argon.kind,
        LogKind::Rfc6962 {
            url: "https://ct.googleapis.com/logs/us1/argon2026h2/".into()
        }
    );
    assert_eq!((argon.mmd, argon.operator.as_str()), (86400, "Google"));
    assert_eq!(argon.log_id, "1219ENGn9XfCx+lf1wC/+YLJM1pl4dCzAXMXwMjFaXc=");
    assert_eq!(
        argon.key().expect("key").log_id().as_slice(),
        BASE64.decode(&argon.log_id).unwrap()
    );

    let mammoth = find(&list, "Mammoth2026h2");
    assert_eq!(
        mammoth.state,
        LogState::ReadOnly {
            final_tree_size: 57_634_084
        }
    );

    let sycamore = find(&list, "Sycamore2026h1");
    assert_eq!(
        sycamore.kind,
        LogKind::Tiled {
            submission_url: "https://log.sycamore.ct.letsencrypt.org/2026h1/".into(),
            monitoring_url: "https://mon.sycamore.ct.letsencrypt.org/2026h1/".into(),
        }
    );
    assert_eq!(
        (sycamore.mmd, sycamore.operator.as_str()),
        (60, "Let's Encrypt")
    );
    assert_eq!(find(&list, "Oak2026h1").state, LogState::Retired);
}

/// The real list with the state of the log described by `description` replaced.
fn list_with_state(description: &str, state: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&certstream_testkit::corpus::read(
        "loglist/google_log_list_v3.json",
    ))
    .unwrap();
    for operator in doc["operators"].as_array_mut().unwrap() {
        for kind in ["logs", "tiled_logs"] {
            for log in operator[kind].as_array_mut().into_iter().flatten() {
                if log["description"].as_str().unwrap().contains(description) {
                    log["state"] = state.clone();
                }
            }
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn selection_polls_usable_qualified_readonly_and_pending_only_on_request() {
    let list = real_list();
    assert_eq!(
        list.selected(false).count(),
        52,
        "48 usable + 4 readonly; the 4 retired are skipped"
    );
    assert!(list.selected(false).all(|l| l.state != LogState::Retired));
    assert_eq!(
        list.selected(true).count(),
        52,
        "no pending log in this list"
    );

    let ts = json!({"timestamp": "2026-01-01T00:00:00Z"});
    let with = |d, s| LogList::parse(&list_with_state(d, s)).unwrap();
    let changed = with("Argon2026h2", json!({ "pending": ts }));
    assert_eq!(
        (
            changed.selected(false).count(),
            changed.selected(true).count()
        ),
        (51, 52)
    );
    let changed = with("Argon2026h2", json!({ "qualified": ts }));
    assert_eq!(changed.selected(false).count(), 52);
    let changed = with("Argon2026h2", json!({ "rejected": ts }));
    assert_eq!(
        (
            changed.selected(false).count(),
            changed.selected(true).count()
        ),
        (51, 51)
    );
    let changed = LogList::parse(&list_with_state("Argon2026h2", Value::Null)).unwrap();
    assert_eq!(find(&changed, "Argon2026h2").state, LogState::None);
    assert_eq!(changed.selected(true).count(), 51);
}

#[test]
fn google_signature_good_tampered_missing_and_wrong_key() {
    let json = certstream_testkit::corpus::read("loglist/google_log_list_v3.json");
    let sig = certstream_testkit::corpus::read("loglist/google_log_list_v3.sig");
    let pem = certstream_testkit::corpus::read("loglist/google_log_list_pubkey.pem");
    log_list::verify_signature(&json, &sig, &pem).expect("the real signature verifies");
    log_list::verify_signature(&json, &sig, GOOGLE_LOG_LIST_PUBKEY_PEM)
        .expect("with the compiled-in key too");

    let mut tampered = json.clone();
    tampered[1000] ^= 0x01;
    assert!(matches!(
        log_list::verify_signature(&tampered, &sig, &pem),
        Err(LogListError::BadSignature)
    ));
    assert!(matches!(
        log_list::verify_signature(&json, &[], &pem),
        Err(LogListError::BadSignature)
    ));
    let mut bad_sig = sig.clone();
    bad_sig[10] ^= 0x80;
    assert!(matches!(
        log_list::verify_signature(&json, &bad_sig, &pem),
        Err(LogListError::BadSignature)
    ));

    // Another real RSA key (a web PKI root's) does not verify Google's signature.
    assert!(matches!(
        log_list::verify_signature(&json, &sig, other_rsa_key_pem().as_bytes()),
        Err(LogListError::BadSignature)
    ));
    // An EC key (a log's) is refused as a signing key; so is garbage.
    let ec_pem = pem_of(&real_list().logs[0].key_der);
    assert!(matches!(
        log_list::verify_signature(&json, &sig, ec_pem.as_bytes()),
        Err(LogListError::BadSigningKey(_))
    ));
    assert!(matches!(
        log_list::verify_signature(&json, &sig, b"not pem"),
        Err(LogListError::BadSigningKey(_))
    ));
}

fn pem_of(spki_der: &[u8]) -> String {
    let b64 = BASE64.encode(spki_der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// The SPKI of the first RSA root in webpki-roots, as PEM (webpki-roots stores the SEQUENCE's contents).
fn other_rsa_key_pem() -> String {
    const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let inner = webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|root| root.subject_public_key_info.as_ref())
        .find(|spki| {
            spki.windows(RSA_ENCRYPTION_OID.len())
                .any(|w| w == RSA_ENCRYPTION_OID)
        })
        .expect("an RSA root");
    let len = u16::try_from(inner.len()).unwrap().to_be_bytes();
    let mut der = vec![0x30, 0x82, len[0], len[1]];
    der.extend_from_slice(inner);
    pem_of(&der)
}

#[test]
fn merge_deduplicates_by_log_id_first_wins() {
    let google = real_list();
    let mut doc: Value = serde_json::from_slice(&certstream_testkit::corpus::read(
        "loglist/google_log_list_v3.json",
    ))
    .unwrap();
    // A second list ("Apple's"): Argon2026h2 renamed, plus one log Google does not list.
    let argon = doc["operators"][0]["logs"][1].clone();
    let mut renamed = argon.clone();
    renamed["description"] = json!("Apple's name for Argon2026h2");
    let mut extra = doc["operators"][1]["logs"][0].clone();
    let key = generated_spki();
    extra["key"] = json!(BASE64.encode(&key));
    extra["log_id"] = json!(BASE64.encode(ring::digest::digest(&ring::digest::SHA256, &key)));
    extra["description"] = json!("Only in the second list");
    doc = json!({"operators": [{"name": "Other", "logs": [renamed, extra]}]});
    let second = LogList::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(second.logs.len(), 2);

    let merged = LogList::merge([google.clone(), second]);
    assert_eq!(merged.logs.len(), google.logs.len() + 1);
    let argons: Vec<&LogInfo> = merged
        .logs
        .iter()
        .filter(|l| l.log_id == argon["log_id"])
        .collect();
    assert_eq!(argons.len(), 1);
    assert_eq!(
        argons[0].description, "Google 'Argon2026h2' log",
        "the first list wins"
    );
    assert_eq!(find(&merged, "Only in the second list").operator, "Other");
    assert_eq!(merged.version.as_deref(), Some("85.92"));
}

/// A fresh P-256 SubjectPublicKeyInfo.
fn generated_spki() -> Vec<u8> {
    certstream_testkit::signing::log_signer().spki().to_vec()
}

#[test]
fn snapshot_is_the_corpus_list() {
    assert_eq!(
        SNAPSHOT_JSON,
        certstream_testkit::corpus::read("loglist/google_log_list_v3.json").as_slice()
    );
    let snapshot = LogList::compiled_in().expect("snapshot parses");
    assert_eq!(snapshot.logs.len(), 56);
    log_list::verify_signature(
        SNAPSHOT_JSON,
        &certstream_testkit::corpus::read("loglist/google_log_list_v3.sig"),
        GOOGLE_LOG_LIST_PUBKEY_PEM,
    )
    .expect("the snapshot is the signed list");
}

#[test]
fn garbage_lists_are_errors_not_panics() {
    for garbage in [
        &b""[..],
        b"\xff\xfe",
        b"null",
        b"[]",
        b"{}",
        br#"{"operators": 5}"#,
        br#"{"operators": [{}]}"#,
    ] {
        assert!(
            matches!(LogList::parse(garbage), Err(LogListError::Json(_))),
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    let empty =
        LogList::parse(br#"{"operators": [{"name": "Nobody"}], "unknown": {"field": 1}}"#).unwrap();
    assert!(empty.logs.is_empty() && empty.skipped.is_empty());
}

#[test]
fn bad_logs_are_skipped_and_reported_not_fatal() {
    let mut doc: Value = serde_json::from_slice(&certstream_testkit::corpus::read(
        "loglist/google_log_list_v3.json",
    ))
    .unwrap();
    let logs = doc["operators"][2]["logs"].as_array_mut().unwrap();
    logs[0]["key"] = json!("not base64!");
    logs[1]["log_id"] = json!(BASE64.encode([0u8; 32]));
    logs[2]["url"] = json!("ftp://ct.example/");
    logs[3]["state"] = json!({"frozen": {}});
    logs[4]["mmd"] = json!("a day");
    logs[5] = json!(42);
    logs[6]["key"] = json!(BASE64.encode(b"\x30\x03\x02\x01\x00"));
    logs[7]["state"] = json!({"usable": {}, "retired": {}});
    let tiled = doc["operators"][4]["tiled_logs"].as_array_mut().unwrap();
    tiled[0].as_object_mut().unwrap().remove("monitoring_url");
    tiled[1]["state"] = json!({"readonly": {"timestamp": "2026-01-01T00:00:00Z"}});
    tiled[2]["new_field_from_the_future"] = json!([1, 2, 3]);

    let list = LogList::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(list.skipped.len(), 10, "{:#?}", list.skipped);
    assert_eq!(list.logs.len(), 56 - 10);
    let reasons: Vec<&str> = list.skipped.iter().map(|s| s.reason.as_str()).collect();
    for expected in [
        "base64",
        "SHA-256 of the key",
        "url",
        "unknown state",
        "expected u64",
        "unusable log key",
        "exactly one",
        "monitoring_url",
        "final_tree_head",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions {expected:?}: {reasons:#?}"
        );
    }
    assert!(
        list.skipped
            .iter()
            .any(|s| s.log.contains("unnamed log of DigiCert"))
    );
}
