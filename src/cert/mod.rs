//! X.509 certificate → the certstream cert object (docs/wire-format.md §4).
//!
//! [`parse_certificate`] handles full certificates and pre-certificates, [`parse_tbs_certificate`] the bare
//! TBSCertificate of a precert `leaf_input`. Every field is formatted once here; [`CertJson`] only writes them.

mod extensions;
mod json;
mod name;
mod signature;

use std::fmt;

use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_parser::certificate::{TbsCertificateParser, X509CertificateParser};
use x509_parser::error::X509Error;
use x509_parser::nom::{self, Parser};
use x509_parser::prelude::TbsCertificate;
use x509_parser::x509::AlgorithmIdentifier;

pub use extensions::Extensions;
pub use json::CertJson;
pub use name::Name;

/// One certificate, every field already in its certstream output form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// Subject CN ∪ SAN dNSNames, deduplicated, sorted by bytes.
    pub all_domains: Vec<String>,
    /// The `extensions` object.
    pub extensions: Extensions,
    /// SHA-1 of the DER, uppercase hex pairs joined by `:` (same as `sha1`).
    pub fingerprint: String,
    /// basicConstraints cA (false when absent).
    pub is_ca: bool,
    /// The issuer name.
    pub issuer: Name,
    /// The subject name.
    pub subject: Name,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// Uppercase hex of the serial's value, no leading zeros, `-` prefix when negative.
    pub serial_number: String,
    /// SHA-1 of the DER, uppercase colon hex.
    pub sha1: String,
    /// SHA-256 of the DER, uppercase colon hex.
    pub sha256: String,
    /// `"sha256, rsa"`, `"ed25519"`, … or the dotted OID.
    pub signature_algorithm: String,
    /// How many fields had to be decoded lossily or failed and were degraded (the caller counts these).
    pub degraded_fields: u32,
}

/// The certificate was rejected by x509-parser, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    what: &'static str,
    reason: String,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for CertError {}

impl CertError {
    fn new(what: &'static str, err: nom::Err<X509Error>) -> Self {
        let reason = match err {
            nom::Err::Incomplete(_) => "truncated DER".to_owned(),
            nom::Err::Error(e) | nom::Err::Failure(e) => e.to_string(),
        };
        CertError { what, reason }
    }

    fn trailing(what: &'static str, extra: usize) -> Self {
        CertError {
            what,
            reason: format!("{extra} trailing bytes after the DER structure"),
        }
    }
}

/// Parses a DER certificate (or pre-certificate) into its certstream form.
///
/// Hashes are over `der`; the signature algorithm is the certificate's outer `signatureAlgorithm`.
pub fn parse_certificate(der: &[u8]) -> Result<Cert, CertError> {
    const WHAT: &str = "certificate";
    // Extensions are read from their raw values (see `extensions`), so x509-parser need not deep-parse them.
    let (rest, cert) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(der)
        .map_err(|e| CertError::new(WHAT, e))?;
    if !rest.is_empty() {
        return Err(CertError::trailing(WHAT, rest.len()));
    }
    Ok(build(&cert.tbs_certificate, &cert.signature_algorithm, der))
}

/// Fallback for precert entries without a usable pre-certificate: parse the leaf's TBSCertificate
/// (x509_parser TbsCertificate::from_der); fingerprint/sha1/sha256 are over the TBS DER; signature_algorithm
/// from the TBS's `signature` field.
pub fn parse_tbs_certificate(tbs_der: &[u8]) -> Result<Cert, CertError> {
    const WHAT: &str = "TBSCertificate";
    let (rest, tbs) = TbsCertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(tbs_der)
        .map_err(|e| CertError::new(WHAT, e))?;
    if !rest.is_empty() {
        return Err(CertError::trailing(WHAT, rest.len()));
    }
    Ok(build(&tbs, &tbs.signature, tbs_der))
}

fn build(tbs: &TbsCertificate<'_>, sig_alg: &AlgorithmIdentifier<'_>, der: &[u8]) -> Cert {
    let mut degraded = 0;
    let subject = Name::from_x509(&tbs.subject, &mut degraded);
    let issuer = Name::from_x509(&tbs.issuer, &mut degraded);
    let scan = extensions::scan(tbs.extensions());
    degraded += scan.degraded;

    let mut all_domains = scan.dns_names;
    all_domains.extend(subject.cn.iter().cloned());
    all_domains.sort_unstable();
    all_domains.dedup();

    let (signature_algorithm, sig_degraded) = signature::algorithm_name(sig_alg);
    degraded += u32::from(sig_degraded);

    let sha1 = colon_hex_digest(&Sha1::digest(der));
    Cert {
        all_domains,
        extensions: scan.extensions,
        fingerprint: sha1.clone(),
        is_ca: scan.is_ca,
        issuer,
        subject,
        not_after: tbs.validity.not_after.timestamp(),
        not_before: tbs.validity.not_before.timestamp(),
        serial_number: serial_hex(tbs.raw_serial()),
        sha1,
        sha256: colon_hex_digest(&Sha256::digest(der)),
        signature_algorithm,
        degraded_fields: degraded,
    }
}

fn colon_hex_digest(digest: &[u8]) -> String {
    let mut s = String::with_capacity(3 * digest.len());
    push_colon_hex(&mut s, digest);
    s
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends uppercase hex pairs joined by `:`.
pub(crate) fn push_colon_hex(out: &mut String, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

/// The serial INTEGER's content octets (two's complement) as uppercase hex without leading zeros.
fn serial_hex(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude: Vec<u8> = if negative {
        // |x| = !x + 1 over the two's complement bytes.
        let mut m: Vec<u8> = raw.iter().map(|b| !b).collect();
        for byte in m.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        m
    } else {
        Vec::new()
    };
    let digits = if negative { &magnitude[..] } else { raw };
    let mut s = String::with_capacity(2 * digits.len() + 1);
    if negative {
        s.push('-');
    }
    let nibbles = digits.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    for nibble in nibbles.skip_while(|&n| n == 0) {
        s.push(char::from(HEX[usize::from(nibble)]));
    }
    if s.len() == usize::from(negative) {
        s.push('0');
    }
    s
}
