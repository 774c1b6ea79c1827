//! The `signature_algorithm` string: `"<digest>, <alg>"` as CaliDog names it, plus PSS and EdDSA.

use x509_parser::asn1_rs::{Any, Class, FromDer, Oid, Tag};
use x509_parser::x509::AlgorithmIdentifier;

/// `1.2.840.113549.1.1` (PKCS #1); the last arc picks the digest.
const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
/// `2.16.840.1.101.3.4.3` (NIST DSA/ECDSA-with-SHA2 family, and SHA-3 variants we do not name).
const NIST_SIG: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
/// `1.2.840.10045.4.3` (ecdsa-with-SHA2).
const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
/// `2.16.840.1.101.3.4.2` (NIST hash algorithms).
const NIST_HASH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

/// Names a signature algorithm; the flag is `true` when RSASSA-PSS parameters could not be read.
pub(crate) fn algorithm_name(alg: &AlgorithmIdentifier<'_>) -> (String, bool) {
    let oid = alg.algorithm.as_bytes();
    let named = match oid {
        [.., 0x0a] if oid.len() == PKCS1.len() + 1 && oid.starts_with(PKCS1) => {
            return match pss_digest(alg.parameters.as_ref()) {
                Some(Some(digest)) => (format!("{digest}, rsassa-pss"), false),
                Some(None) => (alg.algorithm.to_id_string(), false),
                None => (alg.algorithm.to_id_string(), true),
            };
        }
        [.., last] if oid.len() == PKCS1.len() + 1 && oid.starts_with(PKCS1) => match last {
            0x02 => Some("md2, rsa"),
            0x04 => Some("md5, rsa"),
            0x05 => Some("sha, rsa"),
            0x0b => Some("sha256, rsa"),
            0x0c => Some("sha384, rsa"),
            0x0d => Some("sha512, rsa"),
            0x0e => Some("sha224, rsa"),
            _ => None,
        },
        // OIW sha1WithRSASignature, still seen on old roots.
        [0x2b, 0x0e, 0x03, 0x02, 0x1d] => Some("sha, rsa"),
        [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03] => Some("sha, dsa"),
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => Some("sha, ecdsa"),
        [.., last] if oid.len() == ECDSA_SHA2.len() + 1 && oid.starts_with(ECDSA_SHA2) => {
            match last {
                0x01 => Some("sha224, ecdsa"),
                0x02 => Some("sha256, ecdsa"),
                0x03 => Some("sha384, ecdsa"),
                0x04 => Some("sha512, ecdsa"),
                _ => None,
            }
        }
        [.., last] if oid.len() == NIST_SIG.len() + 1 && oid.starts_with(NIST_SIG) => match last {
            0x01 => Some("sha224, dsa"),
            0x02 => Some("sha256, dsa"),
            0x03 => Some("sha384, dsa"),
            0x04 => Some("sha512, dsa"),
            _ => None,
        },
        [0x2b, 0x65, 0x70] => Some("ed25519"),
        [0x2b, 0x65, 0x71] => Some("ed448"),
        _ => None,
    };
    match named {
        Some(name) => (name.to_owned(), false),
        None => (alg.algorithm.to_id_string(), false),
    }
}

/// The digest of RSASSA-PSS-params' `hashAlgorithm [0]` (SHA-1 when absent, per RFC 4055):
/// `None` if the parameters are unreadable, `Some(None)` for a digest we have no name for.
fn pss_digest(params: Option<&Any<'_>>) -> Option<Option<&'static str>> {
    let Some(params) = params else {
        return Some(Some("sha"));
    };
    if params.tag() == Tag::Null {
        return Some(Some("sha"));
    }
    if params.tag() != Tag::Sequence {
        return None;
    }
    let mut rest = params.data;
    while !rest.is_empty() {
        let (next, field) = Any::from_der(rest).ok()?;
        rest = next;
        if field.class() == Class::ContextSpecific && field.tag() == Tag(0) {
            let (_, hash_alg) = Any::from_der(field.data).ok()?;
            let (_, hash_oid) = Oid::from_der(hash_alg.data).ok()?;
            return Some(digest_name(hash_oid.as_bytes()));
        }
    }
    Some(Some("sha"))
}

fn digest_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x2b, 0x0e, 0x03, 0x02, 0x1a] => Some("sha"),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05] => Some("md5"),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x02] => Some("md2"),
        [.., last] if oid.len() == NIST_HASH.len() + 1 && oid.starts_with(NIST_HASH) => {
            match last {
                0x01 => Some("sha256"),
                0x02 => Some("sha384"),
                0x03 => Some("sha512"),
                0x04 => Some("sha224"),
                _ => None,
            }
        }
        _ => None,
    }
}
