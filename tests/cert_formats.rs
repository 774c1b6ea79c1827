//! The cert object of FORMAT.md §2: the reference examples byte for byte, every extension format,
//! every §4 deviation, odd encodings (built with `certstream_testkit::der`), and rejection of bad input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certstream::cert::{Cert, CertJson, parse_certificate, parse_tbs_certificate};
use certstream_testkit::der::*;
use certstream_testkit::examples::*;
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------
// helpers

fn b64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("example base64")
}

fn parse(spec: &CertSpec) -> Cert {
    parse_certificate(&spec.der()).expect("test certificate parses")
}

/// A cert with these extensions and the default everything else.
fn with_extensions(extensions: Vec<Vec<u8>>) -> Cert {
    parse(&CertSpec {
        extensions,
        ..CertSpec::default()
    })
}

fn json(cert: &Cert, as_der: Option<&[u8]>, all_domains: bool) -> String {
    let view = CertJson {
        cert,
        as_der,
        all_domains,
    };
    let mut out = Vec::new();
    serde_json::to_writer(&mut out, &view).expect("serializes");
    String::from_utf8(out).expect("JSON is UTF-8")
}

fn json_value(cert: &Cert) -> Value {
    serde_json::from_str(&json(cert, None, true)).expect("valid JSON")
}

const SAN: &str = "2.5.29.17";
const AIA: &str = "1.3.6.1.5.5.7.1.1";
const CRL_DP: &str = "2.5.29.31";
const POLICIES: &str = "2.5.29.32";
const EKU: &str = "2.5.29.37";
const KEY_USAGE: &str = "2.5.29.15";

fn dns(name: &str) -> Vec<u8> {
    implicit(2, name.as_bytes())
}

fn uri(u: &str) -> Vec<u8> {
    implicit(6, u.as_bytes())
}

// ---------------------------------------------------------------------------------------------------------
// Worked examples (docs/wire-format.md §9)

/// The pinned certificatePolicies of Example A's leaf: both policies, the full User Notice text.
const A_LEAF_POLICIES: &str = "Policy: 2.23.140.1.2.1\nPolicy: 1.3.6.1.4.1.44947.1.1.1\n  CPS: http://cps.letsencrypt.org\n  User Notice: This Certificate may only be relied upon by Relying Parties and only in accordance with the Certificate Policy found at https://letsencrypt.org/repository/";
/// The pinned certificatePolicies of Example A's intermediate (CaliDog drops the first policy).
const A_LE_X3_POLICIES: &str = "Policy: 2.23.140.1.2.1\nPolicy: 1.3.6.1.4.1.44947.1.1.1\n  CPS: http://cps.root-x1.letsencrypt.org";

/// CaliDog's object with docs/wire-format.md's changes applied: go's additive keys, and our policies where they differ.
fn expected_object(calidog: &str, go: &str, policies: Option<&str>) -> Value {
    let mut expected: Value = serde_json::from_str(calidog).expect("example JSON");
    let additions: Value = serde_json::from_str(go).expect("example JSON");
    let obj = expected.as_object_mut().expect("object");
    for (k, v) in additions.as_object().expect("object") {
        obj.insert(k.clone(), v.clone());
    }
    if let Some(p) = policies {
        obj["extensions"]["certificatePolicies"] = Value::String(p.to_owned());
    }
    expected
}

/// Every example cert: our compact JSON is byte-identical to the (sorted, compact) expected object.
#[test]
fn examples_match_calidog_except_documented_deviations() {
    let cases = [
        (
            A_LEAF_DER,
            A_LEAF_CALIDOG,
            A_LEAF_GO,
            Some(A_LEAF_POLICIES),
            true,
        ),
        (
            A_LE_X3_DER,
            A_LE_X3_CALIDOG,
            A_LE_X3_GO,
            Some(A_LE_X3_POLICIES),
            false,
        ),
        (
            A_DST_ROOT_DER,
            A_DST_ROOT_CALIDOG,
            A_DST_ROOT_GO,
            None,
            false,
        ),
        (B_PRECERT_DER, B_LEAF_CALIDOG, B_LEAF_GO, None, true),
    ];
    for (der, calidog, go, policies, leaf) in cases {
        let cert = parse_certificate(&b64(der)).expect("example parses");
        let expected = expected_object(calidog, go, policies);
        // serde_json's Value sorts keys by bytes, which is exactly the wire order (docs/wire-format.md §3.1).
        assert_eq!(json(&cert, None, leaf), expected.to_string(), "{der:.40}");
        assert_eq!(cert.degraded_fields, 0);
    }
}

#[test]
fn example_issuer_ex7_parses_with_its_own_fields() {
    let cert = parse_certificate(&b64(B_EX7_DER)).expect("EX7 parses");
    assert!(cert.is_ca);
    assert_eq!(
        cert.subject.aggregated,
        "/C=US/CN=EX7/O=Example Trust Services"
    );
    assert_eq!(
        cert.issuer.aggregated,
        "/C=US/CN=Example Root X9/O=Example Trust Services"
    );
    assert_eq!(cert.signature_algorithm, "sha384, ecdsa");
    // Example B's AKI names EX7's SKI.
    let b = parse_certificate(&b64(B_PRECERT_DER)).expect("B parses");
    let ski = cert.extensions.subject_key_identifier.expect("SKI");
    assert_eq!(
        b.extensions.authority_key_identifier.as_deref(),
        Some(format!("keyid:{ski}\n").as_str())
    );
}

#[test]
fn example_a_policies_keep_both_policies_and_the_real_user_notice() {
    let cert = parse_certificate(&b64(A_LEAF_DER)).expect("parses");
    let ours = cert
        .extensions
        .certificate_policies
        .as_deref()
        .expect("policies");
    assert_eq!(ours, A_LEAF_POLICIES);
    let calidog: Value = serde_json::from_str(A_LEAF_CALIDOG).expect("JSON");
    let theirs = calidog["extensions"]["certificatePolicies"]
        .as_str()
        .expect("str");
    // CaliDog loses the first policy and the first 8 bytes of the notice ("This Cert…" → "is Cert…").
    assert!(theirs.contains("User Notice: is Certificate may only"));
    assert!(ours.contains("User Notice: This Certificate may only be relied upon"));
    assert!(ours.starts_with("Policy: 2.23.140.1.2.1\n"));
}

#[test]
fn added_keys_sha1_sha256_is_ca_are_present() {
    let cert = parse_certificate(&b64(A_LE_X3_DER)).expect("parses");
    let v: Value = serde_json::from_str(&json(&cert, None, false)).expect("JSON");
    assert_eq!(v["sha1"], v["fingerprint"]);
    assert_eq!(
        v["sha256"],
        "25:84:7D:66:8E:B4:F0:4F:DD:40:B1:2B:6B:07:40:C5:67:DA:7D:02:43:08:EB:6C:2C:96:FE:41:D9:DE:21:8D"
    );
    assert_eq!(v["is_ca"], true);
    assert!(
        v.get("all_domains").is_none(),
        "chain certs have no all_domains"
    );
    assert!(v.get("as_der").is_none(), "lite has no as_der");
}

#[test]
fn full_stream_as_der_is_standard_base64_and_keys_are_in_wire_order() {
    let der = b64(A_LEAF_DER);
    let cert = parse_certificate(&der).expect("parses");
    let out = json(&cert, Some(&der), true);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["as_der"], A_LEAF_DER);
    let keys = [
        "all_domains",
        "as_der",
        "extensions",
        "fingerprint",
        "is_ca",
        "issuer",
        "not_after",
        "not_before",
        "serial_number",
        "sha1",
        "sha256",
        "signature_algorithm",
        "subject",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| out.find(&format!("\"{k}\":")).expect("key present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.starts_with("{\"all_domains\":[\"danadjs.ch\"],\"as_der\":\"MIIE9zCC"));
}

#[test]
fn serde_json_and_simd_json_write_identical_bytes() {
    let tricky = "q\"b\\s/\u{1}\u{1f}\u{7f}\u{2028}\t\n é 中 🌍";
    let spec = CertSpec {
        subject: name(&[("2.5.4.3", utf8(tricky)), ("2.5.4.10", utf8("</script>&"))]),
        extensions: vec![ext(SAN, false, &seq(&[dns(tricky), dns("a.example")]))],
        ..CertSpec::default()
    };
    let der = spec.der();
    for (der, leaf) in [
        (der, true),
        (b64(A_LEAF_DER), true),
        (b64(B_PRECERT_DER), true),
        (b64(A_DST_ROOT_DER), false),
    ] {
        let cert = parse_certificate(&der).expect("parses");
        for as_der in [None, Some(&der[..])] {
            let view = CertJson {
                cert: &cert,
                as_der,
                all_domains: leaf,
            };
            let mut a = Vec::new();
            serde_json::to_writer(&mut a, &view).expect("serde_json");
            let mut b = Vec::new();
            simd_json::to_writer(&mut b, &view).expect("simd_json");
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// subject / issuer and strings

#[test]
fn bmp_string_subject_is_decoded() {
    let cert = parse(&CertSpec {
        subject: name(&[("2.5.4.3", bmp("Ünïcødé 中文")), ("2.5.4.10", bmp("Org"))]),
        ..CertSpec::default()
    });
    assert_eq!(cert.subject.cn.as_deref(), Some("Ünïcødé 中文"));
    assert_eq!(cert.subject.aggregated, "/CN=Ünïcødé 中文/O=Org");
    assert_eq!(cert.all_domains, vec!["Ünïcødé 中文".to_owned()]);
    assert_eq!(cert.degraded_fields, 0);
}

#[test]
fn universal_and_teletex_strings_are_decoded() {
    let cert = parse(&CertSpec {
        subject: name(&[
            ("2.5.4.10", universal("Grüße 🌍")),
            (
                "2.5.4.11",
                teletex(&[0x4d, 0xfc, 0x6e, 0x63, 0x68, 0x65, 0x6e]),
            ),
            ("2.5.4.7", teletex("Zürich".as_bytes())),
        ]),
        ..CertSpec::default()
    });
    assert_eq!(cert.subject.o.as_deref(), Some("Grüße 🌍"));
    assert_eq!(
        cert.subject.ou.as_deref(),
        Some("München"),
        "Latin-1 fallback"
    );
    assert_eq!(cert.subject.l.as_deref(), Some("Zürich"), "UTF-8 in T61");
    assert_eq!(cert.degraded_fields, 0);
}

#[test]
fn invalid_utf8_is_rendered_lossily_and_counted() {
    let bad = [0x61, 0xff, 0x62];
    let cert = parse(&CertSpec {
        subject: name(&[("2.5.4.3", tlv(0x0c, &bad))]),
        extensions: vec![ext(
            SAN,
            false,
            &seq(&[implicit(2, &bad), dns("ok.example")]),
        )],
        ..CertSpec::default()
    });
    assert_eq!(cert.subject.cn.as_deref(), Some("a\u{fffd}b"));
    assert_eq!(
        cert.extensions.subject_alt_name.as_deref(),
        Some("DNS:ok.example, DNS:a\u{fffd}b")
    );
    assert_eq!(cert.degraded_fields, 2);
    // Lossy text still serializes as valid JSON.
    assert_eq!(json_value(&cert)["subject"]["CN"], "a\u{fffd}b");
}

#[test]
fn broken_bmp_and_universal_strings_are_lossy_and_counted() {
    let cert = parse(&CertSpec {
        // An unpaired surrogate, and a UniversalString with a value beyond U+10FFFF plus a dangling byte.
        subject: name(&[
            ("2.5.4.3", tlv(0x1e, &[0xd8, 0x00, 0x00, 0x41])),
            (
                "2.5.4.10",
                tlv(
                    0x1c,
                    &[0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0x00],
                ),
            ),
        ]),
        ..CertSpec::default()
    });
    assert_eq!(cert.subject.cn.as_deref(), Some("\u{fffd}A"));
    assert_eq!(cert.subject.o.as_deref(), Some("\u{fffd}B\u{fffd}"));
    assert_eq!(cert.degraded_fields, 2);
}

#[test]
fn empty_subject_aggregates_to_slash_with_all_nulls() {
    let cert = parse(&CertSpec {
        subject: seq(&[]),
        ..CertSpec::default()
    });
    let v = json_value(&cert);
    let expected: Value = serde_json::from_str(
        r#"{"C":null,"CN":null,"L":null,"O":null,"OU":null,"ST":null,"aggregated":"/","emailAddress":null}"#,
    )
    .expect("JSON");
    assert_eq!(v["subject"], expected);
    assert_eq!(v["all_domains"], serde_json::json!([]));
}

#[test]
fn repeated_attribute_keeps_last_value_and_aggregated_uses_fixed_order() {
    let cert = parse(&CertSpec {
        subject: name(&[
            ("1.2.840.113549.1.9.1", ia5("ops@example.com")),
            ("2.5.4.11", utf8("First")),
            ("2.5.4.8", utf8("California")),
            ("2.5.4.3", utf8("example.com")),
            ("2.5.4.5", printable("12345")),
            ("2.5.4.11", utf8("Second")),
            ("2.5.4.6", printable("US")),
            ("2.5.4.7", utf8("San Francisco")),
            ("2.5.4.10", utf8("Example, Inc.")),
        ]),
        ..CertSpec::default()
    });
    assert_eq!(cert.subject.ou.as_deref(), Some("Second"));
    assert_eq!(
        cert.subject.aggregated,
        "/C=US/CN=example.com/L=San Francisco/O=Example, Inc./OU=Second/ST=California/emailAddress=ops@example.com"
    );
    assert_eq!(cert.subject.st.as_deref(), Some("California"));
}

// ---------------------------------------------------------------------------------------------------------
// scalar fields

#[test]
fn serial_numbers_negative_zero_and_leading_zeros() {
    let cases: [(&[u8], &str); 6] = [
        (&[0xff, 0x00], "-100"),
        (&[0x80], "-80"),
        (&[0xff], "-1"),
        (&[0x00], "0"),
        (&[0x00, 0x8f, 0x01], "8F01"),
        (&[0x03, 0x38, 0xfa], "338FA"),
    ];
    for (raw, expected) in cases {
        let cert = parse(&CertSpec {
            serial: int_raw(raw),
            ..CertSpec::default()
        });
        assert_eq!(cert.serial_number, expected, "{raw:02x?}");
    }
}

fn signature_name(sig_alg: Vec<u8>) -> String {
    parse(&CertSpec {
        sig_alg,
        ..CertSpec::default()
    })
    .signature_algorithm
}

fn pss(hash: Option<&str>) -> Vec<u8> {
    let mut fields = Vec::new();
    if let Some(h) = hash {
        fields.push(explicit(0, &alg(h, Some(null()))));
        let mgf1 = alg("1.2.840.113549.1.1.8", Some(alg(h, Some(null()))));
        fields.push(explicit(1, &mgf1));
    }
    fields.push(explicit(2, &int(32)));
    alg("1.2.840.113549.1.1.10", Some(seq(&fields)))
}

#[test]
fn rsassa_pss_is_named_by_its_hash_parameter() {
    assert_eq!(
        signature_name(pss(Some("2.16.840.1.101.3.4.2.1"))),
        "sha256, rsassa-pss"
    );
    assert_eq!(
        signature_name(pss(Some("2.16.840.1.101.3.4.2.2"))),
        "sha384, rsassa-pss"
    );
    // hashAlgorithm absent → its DEFAULT, SHA-1 (RFC 4055).
    assert_eq!(signature_name(pss(None)), "sha, rsassa-pss");
}

#[test]
fn eddsa_dsa_ecdsa_and_rsa_names() {
    let cases = [
        (alg("1.3.101.112", None), "ed25519"),
        (alg("1.3.101.113", None), "ed448"),
        (alg("1.2.840.10040.4.3", None), "sha, dsa"),
        (alg("2.16.840.1.101.3.4.3.2", None), "sha256, dsa"),
        (alg("1.2.840.10045.4.1", None), "sha, ecdsa"),
        (alg("1.2.840.10045.4.3.2", None), "sha256, ecdsa"),
        (alg("1.2.840.10045.4.3.4", None), "sha512, ecdsa"),
        (alg("1.2.840.113549.1.1.5", Some(null())), "sha, rsa"),
        (alg("1.2.840.113549.1.1.4", Some(null())), "md5, rsa"),
        (alg("1.2.840.113549.1.1.14", Some(null())), "sha224, rsa"),
        (alg("1.2.840.113549.1.1.13", Some(null())), "sha512, rsa"),
        (alg("1.2.156.10197.1.501", None), "1.2.156.10197.1.501"),
    ];
    for (sig_alg, expected) in cases {
        assert_eq!(signature_name(sig_alg), expected);
    }
}

#[test]
fn tbs_fallback_hashes_the_tbs_and_names_its_signature_field() {
    let spec = CertSpec {
        extensions: vec![ext("1.3.6.1.4.1.11129.2.4.3", true, &null())],
        ..CertSpec::default()
    };
    let tbs = spec.tbs();
    // The outer signatureAlgorithm differs from the TBS's `signature` field.
    let der = seq(&[
        tbs.clone(),
        alg("1.2.840.10045.4.3.3", None),
        bits(0, &[1; 8]),
    ]);
    let full = parse_certificate(&der).expect("cert parses");
    let from_tbs = parse_tbs_certificate(&tbs).expect("TBS parses");
    assert_eq!(full.signature_algorithm, "sha384, ecdsa");
    assert_eq!(from_tbs.signature_algorithm, "sha256, rsa");
    assert_ne!(full.sha256, from_tbs.sha256);
    let again = parse_certificate(&spec.der()).expect("parses");
    assert_eq!(from_tbs.subject, again.subject);
    assert_eq!(from_tbs.extensions, again.extensions);
    assert!(from_tbs.extensions.ctl_poison_byte);
    assert!(
        parse_tbs_certificate(&der).is_err(),
        "a full certificate is not a TBS"
    );
    assert!(
        parse_certificate(&tbs).is_err(),
        "a TBS is not a certificate"
    );
}

#[test]
fn far_future_and_utctime_century_boundaries() {
    let at = |not_before: Vec<u8>, not_after: Vec<u8>| {
        parse(&CertSpec {
            not_before,
            not_after,
            ..CertSpec::default()
        })
    };
    let cert = at(
        utc_time("500101000000Z"),
        generalized_time("99991231235959Z"),
    );
    assert_eq!(cert.not_before, -631_152_000, "UTCTime 50 → 1950");
    assert_eq!(cert.not_after, 253_402_300_799);
    assert_eq!(json_value(&cert)["not_after"], 253_402_300_799_i64);
    let cert = at(utc_time("491231235959Z"), utc_time("491231235959Z"));
    assert_eq!(cert.not_before, 2_524_607_999, "UTCTime 49 → 2049");
}

#[test]
fn is_ca_follows_basic_constraints() {
    let ca = with_extensions(vec![ext("2.5.29.19", true, &seq(&[boolean(true), int(0)]))]);
    assert!(ca.is_ca);
    assert_eq!(ca.extensions.basic_constraints, Some("CA:TRUE"));
    let leaf = with_extensions(vec![ext("2.5.29.19", true, &seq(&[]))]);
    assert!(!leaf.is_ca);
    assert_eq!(leaf.extensions.basic_constraints, Some("CA:FALSE"));
    let none = with_extensions(vec![]);
    assert!(!none.is_ca);
    assert_eq!(json_value(&none)["extensions"], serde_json::json!({}));
}

// ---------------------------------------------------------------------------------------------------------
// extensions

#[test]
fn extended_key_usage_keeps_order_and_prints_unknown_oids() {
    let purposes: Vec<Vec<u8>> = [
        "1.3.6.1.5.5.7.3.2",
        "1.3.6.1.4.1.311.10.3.4",
        "1.3.6.1.5.5.7.3.1",
        "1.3.6.1.5.5.7.3.3",
        "1.3.6.1.5.5.7.3.4",
        "1.3.6.1.5.5.7.3.8",
        "1.3.6.1.5.5.7.3.9",
        "1.3.6.1.5.5.7.3.5",
        "1.3.6.1.5.5.7.3.6",
        "1.3.6.1.5.5.7.3.7",
        "2.5.29.37.0",
    ]
    .iter()
    .map(|o| oid(o))
    .collect();
    let cert = with_extensions(vec![ext(EKU, false, &seq(&purposes))]);
    assert_eq!(
        cert.extensions.extended_key_usage.as_deref(),
        Some(
            "TLS Web client authentication, 1.3.6.1.4.1.311.10.3.4, TLS Web server authentication, \
             Code signing, E-mail protection, Timestamping, OCSPstamping, IP security end system, \
             IP security tunnel termination, IP security user, 2.5.29.37.0"
        )
    );
}

#[test]
fn certificate_policies_keep_every_policy_and_qualifier_in_order() {
    let cps = |u: &str| seq(&[oid("1.3.6.1.5.5.7.2.1"), ia5(u)]);
    let notice = seq(&[
        oid("1.3.6.1.5.5.7.2.2"),
        seq(&[seq(&[utf8("Org"), seq(&[int(1)])]), bmp("Notice ☃ text")]),
    ]);
    let policies = seq(&[
        seq(&[oid("2.23.140.1.2.2")]),
        seq(&[
            oid("1.3.6.1.4.1.6449.1.2.2.52"),
            seq(&[notice, cps("https://a.example/cps")]),
        ]),
        seq(&[oid("2.23.140.1.1"), seq(&[cps("https://b.example/cps")])]),
    ]);
    let cert = with_extensions(vec![ext(POLICIES, false, &policies)]);
    assert_eq!(
        cert.extensions.certificate_policies.as_deref(),
        Some(
            "Policy: 2.23.140.1.2.2\nPolicy: 1.3.6.1.4.1.6449.1.2.2.52\n  User Notice: Notice ☃ text\n  \
             CPS: https://a.example/cps\nPolicy: 2.23.140.1.1\n  CPS: https://b.example/cps"
        )
    );
}

#[test]
fn subject_alt_name_formats_every_kind_in_reverse_order() {
    let other_name = implicit_constructed(
        0,
        &[oid("1.3.6.1.4.1.311.20.2.3"), explicit(0, &utf8("upn"))].concat(),
    );
    let dir_name = implicit_constructed(4, &name(&[("2.5.4.3", utf8("dir"))]));
    let san = seq(&[
        dns("www.example.com"),
        implicit(7, &[192, 0, 2, 1]),
        implicit(
            7,
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x6f, 0x03,
            ],
        ),
        implicit(7, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]),
        other_name,
        uri("https://example.com/x"),
        implicit(1, b"admin@example.com"),
        dir_name,
        implicit(7, &[10, 0, 0, 0, 255, 0, 0, 0]),
        dns("*.example.com"),
    ]);
    let cert = with_extensions(vec![ext(SAN, false, &san)]);
    assert_eq!(
        cert.extensions.subject_alt_name.as_deref(),
        Some(
            "DNS:*.example.com, IP:0A:00:00:00:FF:00:00:00, RFC 822Name:admin@example.com, \
             URI:https://example.com/x, IP:::ffff:1.2.3.4, IP:2001:db8::6f03, IP:192.0.2.1, DNS:www.example.com"
        )
    );
    // Only dNSNames (and the CN) reach all_domains.
    assert_eq!(
        cert.all_domains,
        ["*.example.com", "example.com", "www.example.com"]
    );
    assert_eq!(cert.degraded_fields, 0);
}

#[test]
fn two_thousand_sans_are_deduplicated_and_sorted_by_bytes() {
    // A scrambled order with duplicates, mixed case and a wildcard, plus the CN among them.
    let mut names: Vec<String> = (0..2000)
        .map(|i| format!("h{}.Example.com", (i * 7919) % 1500))
        .collect();
    names.push("*.example.com".to_owned());
    names.push("example.com".to_owned());
    let san = seq(&names.iter().map(|n| dns(n)).collect::<Vec<_>>());
    let cert = with_extensions(vec![ext(SAN, false, &san)]);
    let mut expected: Vec<String> = names.clone();
    expected.push("example.com".to_owned());
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 1502);
    assert_eq!(cert.all_domains, expected);
    assert!(
        cert.all_domains
            .windows(2)
            .all(|w| w[0].as_bytes() < w[1].as_bytes())
    );
    let v = json_value(&cert);
    assert_eq!(v["all_domains"].as_array().map(Vec::len), Some(1502));
}

#[test]
fn authority_info_access_lines_reverse_order_with_trailing_newlines() {
    let desc = |method: &str, location: Vec<u8>| seq(&[oid(method), location]);
    let aia = seq(&[
        desc("1.3.6.1.5.5.7.48.1", uri("http://ocsp.example")),
        desc("1.3.6.1.5.5.7.48.2", uri("http://ca.example/issuer.crt")),
        desc("1.3.6.1.5.5.7.48.1", dns("not-a-uri.example")),
        desc("1.3.6.1.5.5.7.48.5", uri("http://repo.example/")),
    ]);
    let cert = with_extensions(vec![ext(AIA, false, &aia)]);
    assert_eq!(
        cert.extensions.authority_info_access.as_deref(),
        Some(
            "1.3.6.1.5.5.7.48.5 - URI:http://repo.example/\nCA Issuers - URI:http://ca.example/issuer.crt\n\
             OCSP - URI:http://ocsp.example\n"
        )
    );
    let no_uri = with_extensions(vec![ext(
        AIA,
        false,
        &seq(&[desc("1.3.6.1.5.5.7.48.1", dns("x"))]),
    )]);
    assert_eq!(no_uri.extensions.authority_info_access.as_deref(), Some(""));
}

#[test]
fn crl_distribution_points_in_order_with_reasons_and_without_full_name() {
    let full_name = |names: &[Vec<u8>]| explicit(0, &implicit_constructed(0, &names.concat()));
    let dps = seq(&[
        seq(&[full_name(&[
            uri("http://a.example/1.crl"),
            implicit(1, b"crl@example.com"),
            implicit_constructed(4, &name(&[("2.5.4.3", utf8("dir"))])),
        ])]),
        // reasons [1] BIT STRING { keyCompromise, cACompromise }
        seq(&[
            full_name(&[uri("http://b.example/2.crl")]),
            implicit(1, &[0x05, 0x60]),
        ]),
        // no distributionPoint, only cRLIssuer [2]
        seq(&[implicit_constructed(2, &uri("http://issuer.example"))]),
        // nameRelativeToCRLIssuer [1]
        seq(&[explicit(
            0,
            &implicit_constructed(1, &seq(&[oid("2.5.4.3"), utf8("rel")])),
        )]),
    ]);
    let cert = with_extensions(vec![ext(CRL_DP, false, &dps)]);
    assert_eq!(
        cert.extensions.crl_distribution_points.as_deref(),
        Some(
            "Full Name:\n URI:http://a.example/1.crl\n RFC 822 Name: crl@example.com\nFull Name:\n URI:http://b.example/2.crl"
        )
    );
    let none_left = with_extensions(vec![ext(
        CRL_DP,
        false,
        &seq(&[seq(&[implicit_constructed(
            2,
            &uri("http://issuer.example"),
        )])]),
    )]);
    assert_eq!(
        none_left.extensions.crl_distribution_points.as_deref(),
        Some("")
    );
    assert_eq!(none_left.degraded_fields, 0);
}

#[test]
fn authority_key_identifier_with_and_without_key_id() {
    let with_id = with_extensions(vec![ext(
        "2.5.29.35",
        false,
        &seq(&[implicit(0, &[0xa8, 0x4a, 0x0f])]),
    )]);
    assert_eq!(
        with_id.extensions.authority_key_identifier.as_deref(),
        Some("keyid:A8:4A:0F\n")
    );
    let issuer_and_serial = seq(&[
        implicit_constructed(
            1,
            &implicit_constructed(4, &name(&[("2.5.4.3", utf8("Root"))])),
        ),
        implicit(2, &[0x01, 0x02]),
    ]);
    let without = with_extensions(vec![ext("2.5.29.35", false, &issuer_and_serial)]);
    assert_eq!(without.extensions.authority_key_identifier, None);
    assert!(without.extensions.extra.is_empty());
    assert_eq!(without.degraded_fields, 0);
    assert!(
        json_value(&without)["extensions"]
            .get("authorityKeyIdentifier")
            .is_none()
    );
}

#[test]
fn subject_key_identifier_is_bare_uppercase_colon_hex() {
    let cert = with_extensions(vec![ext(
        "2.5.29.14",
        false,
        &octets(&[0xd6, 0x7b, 0x00, 0xda]),
    )]);
    assert_eq!(
        cert.extensions.subject_key_identifier.as_deref(),
        Some("D6:7B:00:DA")
    );
}

#[test]
fn unknown_extensions_go_to_extra_in_reverse_order() {
    let cert = with_extensions(vec![
        ext("1.3.6.1.5.5.7.1.24", false, &seq(&[int(5)])),
        ext("2.5.29.30", true, &seq(&[])),
        ext("2.5.29.19", true, &seq(&[])),
        ext("1.2.3.4", false, &null()),
    ]);
    assert_eq!(
        cert.extensions.extra,
        ["1.2.3.4", "2.5.29.30", "1.3.6.1.5.5.7.1.24"]
    );
    assert_eq!(
        json_value(&cert)["extensions"]["extra"],
        serde_json::json!(["1.2.3.4", "2.5.29.30", "1.3.6.1.5.5.7.1.24"])
    );
}

#[test]
fn issuer_alt_name_uses_the_san_format_and_stays_out_of_all_domains() {
    let ian = seq(&[implicit(1, b"ca@example.org"), dns("ca.example.org")]);
    let cert = with_extensions(vec![ext("2.5.29.18", false, &ian)]);
    assert_eq!(
        cert.extensions.issuer_alt_name.as_deref(),
        Some("DNS:ca.example.org, RFC 822Name:ca@example.org")
    );
    assert_eq!(cert.all_domains, ["example.com"]);
}

#[test]
fn key_usage_names_every_bit_in_order() {
    let all = with_extensions(vec![ext(KEY_USAGE, true, &bits(7, &[0xff, 0x80]))]);
    assert_eq!(
        all.extensions.key_usage.as_deref(),
        Some(
            "Digital Signature, Non Repudiation, Key Encipherment, Data Encipherment, Key Agreement, \
             Key Cert Sign, C R L Sign, Encipher Only, Decipher Only"
        )
    );
    let ca = with_extensions(vec![ext(KEY_USAGE, true, &bits(1, &[0x06]))]);
    assert_eq!(
        ca.extensions.key_usage.as_deref(),
        Some("Key Cert Sign, C R L Sign")
    );
}

#[test]
fn a_bad_extension_degrades_only_its_own_field() {
    let cert = with_extensions(vec![
        // keyUsage with non-zero unused bits: not DER.
        ext(KEY_USAGE, true, &bits(7, &[0x81])),
        ext(SAN, false, &seq(&[dns("ok.example")])),
        // A basicConstraints that is not a SEQUENCE.
        ext("2.5.29.19", true, &int(1)),
        ext(EKU, false, &seq(&[oid("1.3.6.1.5.5.7.3.1")])),
    ]);
    assert_eq!(cert.extensions.key_usage, None);
    assert_eq!(cert.extensions.basic_constraints, None);
    assert!(!cert.is_ca);
    assert_eq!(
        cert.extensions.subject_alt_name.as_deref(),
        Some("DNS:ok.example")
    );
    assert_eq!(
        cert.extensions.extended_key_usage.as_deref(),
        Some("TLS Web server authentication")
    );
    assert!(cert.extensions.extra.is_empty());
    assert_eq!(cert.degraded_fields, 2);
    assert_eq!(cert.all_domains, ["example.com", "ok.example"]);
}

#[test]
fn precert_poison_sets_ctl_poison_byte() {
    let cert = with_extensions(vec![ext("1.3.6.1.4.1.11129.2.4.3", true, &null())]);
    assert!(cert.extensions.ctl_poison_byte);
    assert!(cert.extensions.extra.is_empty());
    assert!(json(&cert, None, true).contains("\"extensions\":{\"ctlPoisonByte\":true}"));
}

#[test]
fn sct_list_is_base64url_of_the_raw_value_with_padding() {
    let cert = with_extensions(vec![ext(
        "1.3.6.1.4.1.11129.2.4.2",
        false,
        &octets(&[0xfb, 0xef, 0xbe, 0xff, 0x01]),
    )]);
    assert_eq!(
        cert.extensions.ctl_signed_certificate_timestamp.as_deref(),
        Some("BAX7777_AQ==")
    );
}

// ---------------------------------------------------------------------------------------------------------
// rejection

#[test]
fn every_truncation_of_real_certificates_is_rejected() {
    for der in [A_LEAF_DER, B_PRECERT_DER, A_DST_ROOT_DER] {
        let der = b64(der);
        for len in 0..der.len() {
            assert!(
                parse_certificate(&der[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }
}

#[test]
fn trailing_bytes_and_garbage_are_rejected_with_a_reason() {
    let mut der = b64(A_LEAF_DER);
    der.push(0);
    let err = parse_certificate(&der).expect_err("trailing byte");
    assert!(err.to_string().contains("trailing"), "{err}");
    let err = parse_certificate(b"hello, world").expect_err("garbage");
    assert!(
        err.to_string().starts_with("invalid certificate: "),
        "{err}"
    );
    let err = parse_tbs_certificate(&[]).expect_err("empty");
    assert!(
        err.to_string().starts_with("invalid TBSCertificate: "),
        "{err}"
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // Random input is not a certificate; the point is an Err, not a panic.
        prop_assert!(parse_certificate(&bytes).is_err());
        prop_assert!(parse_tbs_certificate(&bytes).is_err());
    }

    #[test]
    fn mutated_certificates_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut der = b64(A_LEAF_DER);
        for (at, byte) in &edits {
            let i = at.index(der.len());
            der[i] = *byte;
        }
        // Either outcome is fine; an Ok must still serialize to valid JSON.
        if let Ok(cert) = parse_certificate(&der) {
            let out = json(&cert, Some(&der), true);
            prop_assert!(serde_json::from_str::<Value>(&out).is_ok());
        }
    }
}
