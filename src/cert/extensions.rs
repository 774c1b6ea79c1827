//! The `extensions` object: CaliDog's string formats, with the data-losing quirks fixed (docs/wire-format.md §5, §8).
//!
//! Each extension is read from its raw value, so one malformed extension only loses its own key
//! (and is counted), never the certificate.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use x509_parser::asn1_rs::{Any, FromDer, Oid, Tag};
use x509_parser::extensions::{
    AuthorityInfoAccess, AuthorityKeyIdentifier, BasicConstraints, CRLDistributionPoints,
    DistributionPointName, GeneralName, IssuerAlternativeName, KeyIdentifier,
    SubjectAlternativeName, X509Extension,
};

use super::name::{decode_string, decode_utf8};
use super::push_colon_hex;

/// The certstream `extensions` of one certificate, each value already in its wire format.
///
/// `None` / `false` / empty `extra` mean "key absent"; serialization emits the present keys alphabetically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `authorityInfoAccess`: `"OCSP - URI:…\n"` lines, reverse certificate order.
    pub authority_info_access: Option<String>,
    /// `authorityKeyIdentifier`: `"keyid:AA:BB…\n"`.
    pub authority_key_identifier: Option<String>,
    /// `basicConstraints`: `"CA:TRUE"` or `"CA:FALSE"`.
    pub basic_constraints: Option<&'static str>,
    /// `certificatePolicies`: `"Policy: <oid>"` lines with `"  CPS: "` / `"  User Notice: "` qualifier lines.
    pub certificate_policies: Option<String>,
    /// `crlDistributionPoints`: `"Full Name:\n URI:…"` blocks in certificate order.
    pub crl_distribution_points: Option<String>,
    /// `ctlPoisonByte`: the CT poison extension is present (a pre-certificate).
    pub ctl_poison_byte: bool,
    /// `ctlSignedCertificateTimestamp`: base64url (padded) of the SCT list extension's raw value.
    pub ctl_signed_certificate_timestamp: Option<String>,
    /// `extendedKeyUsage`: purpose names (or dotted OIDs) joined by `", "`.
    pub extended_key_usage: Option<String>,
    /// `extra`: dotted OIDs of every other extension, reverse certificate order.
    pub extra: Vec<String>,
    /// `issuerAltName`: same format as `subjectAltName`.
    pub issuer_alt_name: Option<String>,
    /// `keyUsage`: set bits by name, in bit order, joined by `", "`.
    pub key_usage: Option<String>,
    /// `subjectAltName`: `"DNS:…, IP:…"`, reverse certificate order.
    pub subject_alt_name: Option<String>,
    /// `subjectKeyIdentifier`: uppercase colon hex.
    pub subject_key_identifier: Option<String>,
}

/// What the extension walk yields besides the `extensions` object.
pub(crate) struct ExtensionScan {
    pub(crate) extensions: Extensions,
    /// basicConstraints cA.
    pub(crate) is_ca: bool,
    /// Every SAN dNSName (for `all_domains`, which sorts them).
    pub(crate) dns_names: Vec<String>,
    /// Extensions or names that were lost or decoded lossily.
    pub(crate) degraded: u32,
}

// Content octets of the extension OIDs we format.
const SKI: &[u8] = &[0x55, 0x1d, 0x0e];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const SAN: &[u8] = &[0x55, 0x1d, 0x11];
const IAN: &[u8] = &[0x55, 0x1d, 0x12];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const CRL_DP: &[u8] = &[0x55, 0x1d, 0x1f];
const POLICIES: &[u8] = &[0x55, 0x1d, 0x20];
const AKI: &[u8] = &[0x55, 0x1d, 0x23];
const EKU: &[u8] = &[0x55, 0x1d, 0x25];
const AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
const CT_SCT_LIST: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
const CT_POISON: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
const AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
const AD_CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
const QT_CPS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x02, 0x01];
const QT_UNOTICE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x02, 0x02];
/// `1.3.6.1.5.5.7.3` (id-kp); the last arc picks the purpose.
const KP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03];

const KEY_USAGE_NAMES: [&str; 9] = [
    "Digital Signature",
    "Non Repudiation",
    "Key Encipherment",
    "Data Encipherment",
    "Key Agreement",
    "Key Cert Sign",
    "C R L Sign",
    "Encipher Only",
    "Decipher Only",
];

/// Walks the extensions in certificate order and formats every one we know.
pub(crate) fn scan(extensions: &[X509Extension<'_>]) -> ExtensionScan {
    let mut out = ExtensionScan {
        extensions: Extensions::default(),
        is_ca: false,
        dns_names: Vec::new(),
        degraded: 0,
    };
    let e = &mut out.extensions;
    for ext in extensions {
        let value = ext.value;
        // `Some(ok)` for extensions we format: `ok == false` means it was malformed and its key is dropped.
        let formatted = match ext.oid.as_bytes() {
            SKI => set(
                &mut e.subject_key_identifier,
                KeyIdentifier::from_der(value)
                    .ok()
                    .map(|(_, k)| colon_hex(k.0)),
            ),
            KEY_USAGE => set(&mut e.key_usage, key_usage(value)),
            SAN => {
                let names = SubjectAlternativeName::from_der(value)
                    .ok()
                    .map(|(_, san)| san.general_names);
                let text = names.map(|names| {
                    general_names(&names, Some(&mut out.dns_names), &mut out.degraded)
                });
                set(&mut e.subject_alt_name, text)
            }
            IAN => {
                let text = IssuerAlternativeName::from_der(value)
                    .ok()
                    .map(|(_, ian)| general_names(&ian.general_names, None, &mut out.degraded));
                set(&mut e.issuer_alt_name, text)
            }
            BASIC_CONSTRAINTS => {
                let bc = BasicConstraints::from_der(value).ok().map(|(_, bc)| bc.ca);
                out.is_ca = bc.unwrap_or(false);
                set(
                    &mut e.basic_constraints,
                    bc.map(|ca| if ca { "CA:TRUE" } else { "CA:FALSE" }),
                )
            }
            CRL_DP => set(
                &mut e.crl_distribution_points,
                crl_distribution_points(value),
            ),
            POLICIES => set(
                &mut e.certificate_policies,
                certificate_policies(value, &mut out.degraded),
            ),
            AKI => match AuthorityKeyIdentifier::from_der(value) {
                Ok((_, aki)) => {
                    e.authority_key_identifier = aki.key_identifier.map(|k| {
                        let mut s = String::with_capacity(7 + 3 * k.0.len());
                        s.push_str("keyid:");
                        push_colon_hex(&mut s, k.0);
                        s.push('\n');
                        s
                    });
                    true
                }
                Err(_) => {
                    e.authority_key_identifier = None;
                    false
                }
            },
            EKU => set(&mut e.extended_key_usage, extended_key_usage(value)),
            AIA => set(&mut e.authority_info_access, authority_info_access(value)),
            CT_SCT_LIST => {
                e.ctl_signed_certificate_timestamp = Some(URL_SAFE.encode(value));
                true
            }
            CT_POISON => {
                e.ctl_poison_byte = true;
                true
            }
            _ => {
                e.extra.push(ext.oid.to_id_string());
                true
            }
        };
        if !formatted {
            out.degraded += 1;
        }
    }
    e.extra.reverse();
    out
}

/// Stores a formatted value (or clears the key when it failed); returns whether it succeeded.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    *slot = value;
    ok
}

/// Uppercase hex pairs joined by `:`.
fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(3 * bytes.len());
    push_colon_hex(&mut s, bytes);
    s
}

/// KeyUsage BIT STRING; DER demands the unused trailing bits be zero, so anything else is malformed.
fn key_usage(value: &[u8]) -> Option<String> {
    let (_, any) = Any::from_der(value).ok()?;
    if any.tag() != Tag::BitString {
        return None;
    }
    let (&unused, bits) = any.data.split_first()?;
    let last = bits.last().copied().unwrap_or(0);
    if unused > 7 || (bits.is_empty() && unused != 0) || last & ((1u8 << unused) - 1) != 0 {
        return None;
    }
    let mut s = String::new();
    for (bit, name) in KEY_USAGE_NAMES.iter().enumerate() {
        let byte = bits.get(bit / 8).copied().unwrap_or(0);
        if byte & (0x80 >> (bit % 8)) != 0 {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(name);
        }
    }
    Some(s)
}

/// SAN / IAN text, reverse certificate order; pushes every dNSName to `dns`.
fn general_names(
    names: &[GeneralName<'_>],
    mut dns: Option<&mut Vec<String>>,
    degraded: &mut u32,
) -> String {
    let mut s = String::new();
    for name in names.iter().rev() {
        let (label, text) = match name {
            GeneralName::DNSName(d) => ("DNS:", Cow::Borrowed(*d)),
            GeneralName::URI(u) => ("URI:", Cow::Borrowed(*u)),
            GeneralName::RFC822Name(m) => ("RFC 822Name:", Cow::Borrowed(*m)),
            GeneralName::IPAddress(ip) => ("IP:", Cow::Owned(ip_text(ip))),
            // x509-parser marks IA5 names that are not UTF-8 as Invalid: keep them, lossily.
            GeneralName::Invalid(tag, bytes) if matches!(tag.0, 1 | 2 | 6) => {
                *degraded += 1;
                let label = match tag.0 {
                    1 => "RFC 822Name:",
                    2 => "DNS:",
                    _ => "URI:",
                };
                (label, decode_utf8(bytes).0)
            }
            _ => continue,
        };
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(label);
        s.push_str(&text);
        if let (Some(dns), "DNS:") = (dns.as_deref_mut(), label) {
            dns.push(text.into_owned());
        }
    }
    s
}

/// IPv4 dotted, IPv6 in RFC 5952 form, anything else as uppercase colon hex.
fn ip_text(ip: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
        Ipv6Addr::from(v6).to_string()
    } else {
        colon_hex(ip)
    }
}

/// AIA URI lines in reverse certificate order, each ending in `\n`.
fn authority_info_access(value: &[u8]) -> Option<String> {
    let (_, aia) = AuthorityInfoAccess::from_der(value).ok()?;
    let mut s = String::new();
    for desc in aia.accessdescs.iter().rev() {
        let GeneralName::URI(uri) = desc.access_location else {
            continue;
        };
        match desc.access_method.as_bytes() {
            AD_OCSP => s.push_str("OCSP"),
            AD_CA_ISSUERS => s.push_str("CA Issuers"),
            _ => s.push_str(&desc.access_method.to_id_string()),
        }
        s.push_str(" - URI:");
        s.push_str(uri);
        s.push('\n');
    }
    Some(s)
}

/// Every distribution point with a fullName, certificate order.
fn crl_distribution_points(value: &[u8]) -> Option<String> {
    let (_, points) = CRLDistributionPoints::from_der(value).ok()?;
    let mut s = String::new();
    for point in points.iter() {
        let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
            continue;
        };
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str("Full Name:");
        for name in names {
            match name {
                GeneralName::URI(u) => {
                    s.push_str("\n URI:");
                    s.push_str(u);
                }
                GeneralName::RFC822Name(m) => {
                    s.push_str("\n RFC 822 Name: ");
                    s.push_str(m);
                }
                _ => {}
            }
        }
    }
    Some(s)
}

/// Every policy in certificate order with its CPS and UserNotice qualifiers.
fn certificate_policies(value: &[u8], degraded: &mut u32) -> Option<String> {
    let mut s = String::new();
    for info in sequence_items(value)? {
        let info = info?;
        let (qualifiers, policy) = Oid::from_der(info.data).ok()?;
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str("Policy: ");
        s.push_str(&policy.to_id_string());
        if qualifiers.is_empty() {
            continue;
        }
        for qualifier in sequence_items(qualifiers)? {
            let qualifier = qualifier?;
            let (body, id) = Oid::from_der(qualifier.data).ok()?;
            match id.as_bytes() {
                QT_CPS => {
                    let (_, uri) = Any::from_der(body).ok()?;
                    let (text, lossy) = decode_string(uri.tag(), uri.data);
                    *degraded += u32::from(lossy);
                    s.push_str("\n  CPS: ");
                    s.push_str(&text);
                }
                QT_UNOTICE => {
                    s.push_str("\n  User Notice: ");
                    // UserNotice ::= SEQUENCE { noticeRef SEQUENCE OPTIONAL, explicitText DisplayText OPTIONAL }
                    for field in sequence_items(body)? {
                        let field = field?;
                        if field.tag() != Tag::Sequence {
                            let (text, lossy) = decode_string(field.tag(), field.data);
                            *degraded += u32::from(lossy);
                            s.push_str(&text);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Some(s)
}

/// The elements of the DER SEQUENCE at the start of `der`; an item is `None` once the content is malformed.
fn sequence_items(der: &[u8]) -> Option<impl Iterator<Item = Option<Any<'_>>>> {
    let (_, seq) = Any::from_der(der).ok()?;
    if seq.tag() != Tag::Sequence {
        return None;
    }
    let mut rest = seq.data;
    Some(std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match Any::from_der(rest) {
            Ok((next, item)) => {
                rest = next;
                Some(Some(item))
            }
            Err(_) => {
                rest = &[];
                Some(None)
            }
        }
    }))
}

/// Purpose names in certificate order; unknown purposes as dotted OIDs.
fn extended_key_usage(value: &[u8]) -> Option<String> {
    let mut s = String::new();
    for item in sequence_items(value)? {
        let item = item?;
        if item.tag() != Tag::Oid {
            return None;
        }
        let oid = item.data;
        let name = match oid {
            [.., last] if oid.len() == KP.len() + 1 && oid.starts_with(KP) => match last {
                1 => Some("TLS Web server authentication"),
                2 => Some("TLS Web client authentication"),
                3 => Some("Code signing"),
                4 => Some("E-mail protection"),
                5 => Some("IP security end system"),
                6 => Some("IP security tunnel termination"),
                7 => Some("IP security user"),
                8 => Some("Timestamping"),
                9 => Some("OCSPstamping"),
                _ => None,
            },
            _ => None,
        };
        if !s.is_empty() {
            s.push_str(", ");
        }
        match name {
            Some(name) => s.push_str(name),
            None => s.push_str(&Oid::new(oid.into()).to_id_string()),
        }
    }
    Some(s)
}
