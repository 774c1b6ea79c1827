//! A tiny DER writer for building test certificates with exactly the odd encodings a test needs.
//!
//! Signatures are never verified by the code under test, so certificates carry a dummy signature.

/// Tag-length-value with a definite DER length.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already-encoded elements.
pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// SET of already-encoded elements (in the given order).
pub fn set(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &items.concat())
}

/// OBJECT IDENTIFIER from dotted text.
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().expect("numeric arc"))
        .collect();
    let mut content = Vec::new();
    let mut push_base128 = |mut v: u64| {
        let mut groups = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        groups.reverse();
        content.extend_from_slice(&groups);
    };
    push_base128(arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        push_base128(arc);
    }
    tlv(0x06, &content)
}

/// INTEGER from its two's complement content octets, written as given.
pub fn int_raw(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

/// Minimal non-negative INTEGER.
pub fn int(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    int_raw(&content)
}

/// BOOLEAN.
pub fn boolean(v: bool) -> Vec<u8> {
    tlv(0x01, &[if v { 0xff } else { 0x00 }])
}

/// NULL.
pub fn null() -> Vec<u8> {
    tlv(0x05, &[])
}

/// OCTET STRING.
pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

/// BIT STRING with the given number of unused bits in the last byte.
pub fn bits(unused: u8, content: &[u8]) -> Vec<u8> {
    let mut c = vec![unused];
    c.extend_from_slice(content);
    tlv(0x03, &c)
}

/// UTF8String.
pub fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// PrintableString.
pub fn printable(s: &str) -> Vec<u8> {
    tlv(0x13, s.as_bytes())
}

/// IA5String.
pub fn ia5(s: &str) -> Vec<u8> {
    tlv(0x16, s.as_bytes())
}

/// BMPString (UTF-16BE).
pub fn bmp(s: &str) -> Vec<u8> {
    let content: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &content)
}

/// UniversalString (UTF-32BE).
pub fn universal(s: &str) -> Vec<u8> {
    let content: Vec<u8> = s.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect();
    tlv(0x1c, &content)
}

/// TeletexString with raw bytes.
pub fn teletex(bytes: &[u8]) -> Vec<u8> {
    tlv(0x14, bytes)
}

/// UTCTime from `YYMMDDHHMMSSZ`.
pub fn utc_time(s: &str) -> Vec<u8> {
    tlv(0x17, s.as_bytes())
}

/// GeneralizedTime from `YYYYMMDDHHMMSSZ`.
pub fn generalized_time(s: &str) -> Vec<u8> {
    tlv(0x18, s.as_bytes())
}

/// `[n]` EXPLICIT (constructed, context-specific) around an encoded element.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// `[n]` IMPLICIT primitive, context-specific (e.g. GeneralName dNSName = `implicit(2, b"…")`).
pub fn implicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

/// `[n]` IMPLICIT constructed, context-specific (content = concatenated elements).
pub fn implicit_constructed(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// AlgorithmIdentifier with optional parameters.
pub fn alg(dotted: &str, params: Option<Vec<u8>>) -> Vec<u8> {
    match params {
        Some(p) => seq(&[oid(dotted), p]),
        None => seq(&[oid(dotted)]),
    }
}

/// A Name with one attribute per RDN, in order; values are already-encoded strings.
pub fn name(attrs: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attrs
        .iter()
        .map(|(o, v)| set(&[seq(&[oid(o), v.clone()])]))
        .collect();
    seq(&rdns)
}

/// An Extension: `SEQUENCE { extnID, critical (only when true), extnValue OCTET STRING }`.
pub fn ext(dotted: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    if critical {
        seq(&[oid(dotted), boolean(true), octets(value)])
    } else {
        seq(&[oid(dotted), octets(value)])
    }
}

/// The parts of a test certificate; `Default` is a minimal, valid v3 certificate.
#[derive(Clone)]
pub struct CertSpec {
    /// The serial number's content octets.
    pub serial: Vec<u8>,
    /// The signature AlgorithmIdentifier (DER), in the TBS and the outer certificate.
    pub sig_alg: Vec<u8>,
    /// The issuer Name (DER).
    pub issuer: Vec<u8>,
    /// notBefore (a DER time).
    pub not_before: Vec<u8>,
    /// notAfter (a DER time).
    pub not_after: Vec<u8>,
    /// The subject Name (DER).
    pub subject: Vec<u8>,
    /// Each extension (DER); none means no extensions field.
    pub extensions: Vec<Vec<u8>>,
}

impl Default for CertSpec {
    fn default() -> Self {
        CertSpec {
            serial: int_raw(&[0x01]),
            sig_alg: alg("1.2.840.113549.1.1.11", Some(null())),
            issuer: name(&[("2.5.4.3", utf8("Test CA"))]),
            not_before: utc_time("250101000000Z"),
            not_after: utc_time("260101000000Z"),
            subject: name(&[("2.5.4.3", utf8("example.com"))]),
            extensions: Vec::new(),
        }
    }
}

impl CertSpec {
    /// The TBSCertificate DER.
    pub fn tbs(&self) -> Vec<u8> {
        // A P-256 SubjectPublicKeyInfo with a dummy point: keys are never used.
        let spki = seq(&[
            seq(&[oid("1.2.840.10045.2.1"), oid("1.2.840.10045.3.1.7")]),
            bits(0, &[0x04; 65]),
        ]);
        let mut parts = vec![
            explicit(0, &int(2)),
            self.serial.clone(),
            self.sig_alg.clone(),
            self.issuer.clone(),
            seq(&[self.not_before.clone(), self.not_after.clone()]),
            self.subject.clone(),
            spki,
        ];
        if !self.extensions.is_empty() {
            parts.push(explicit(3, &seq(&self.extensions)));
        }
        seq(&parts)
    }

    /// The full Certificate DER with a dummy signature.
    pub fn der(&self) -> Vec<u8> {
        seq(&[self.tbs(), self.sig_alg.clone(), bits(0, &[0x5a; 64])])
    }
}
