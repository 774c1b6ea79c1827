//! Serialization of the cert object exactly as it goes on the wire (compact, keys alphabetical).
//!
//! The impls write the pre-formatted fields directly (no `serde_json::Value`), so the same bytes come out of
//! `serde_json::to_writer` and `simd_json::to_writer` (compared in `bench/pipeline.rs`).

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};

use super::{Cert, Extensions, Name};

/// The JSON object of a cert as it goes on the wire: keys alphabetical: all_domains (only when `all_domains`),
/// as_der (only when Some; standard base64 with padding), extensions, fingerprint, is_ca, issuer, not_after,
/// not_before, serial_number, sha1, sha256, signature_algorithm, subject.
#[derive(Debug, Clone, Copy)]
pub struct CertJson<'a> {
    /// The parsed certificate.
    pub cert: &'a Cert,
    /// The DER to emit as `as_der` (full stream), or `None` (lite stream).
    pub as_der: Option<&'a [u8]>,
    /// Whether to emit `all_domains` (the leaf only).
    pub all_domains: bool,
}

impl Serialize for CertJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.cert;
        let len = 11 + usize::from(self.all_domains) + usize::from(self.as_der.is_some());
        let mut st = serializer.serialize_struct("Cert", len)?;
        if self.all_domains {
            st.serialize_field("all_domains", &c.all_domains)?;
        }
        if let Some(der) = self.as_der {
            st.serialize_field("as_der", &Base64(der))?;
        }
        st.serialize_field("extensions", &c.extensions)?;
        st.serialize_field("fingerprint", &c.fingerprint)?;
        st.serialize_field("is_ca", &c.is_ca)?;
        st.serialize_field("issuer", &c.issuer)?;
        st.serialize_field("not_after", &c.not_after)?;
        st.serialize_field("not_before", &c.not_before)?;
        st.serialize_field("serial_number", &c.serial_number)?;
        st.serialize_field("sha1", &c.sha1)?;
        st.serialize_field("sha256", &c.sha256)?;
        st.serialize_field("signature_algorithm", &c.signature_algorithm)?;
        st.serialize_field("subject", &c.subject)?;
        st.end()
    }
}

/// Standard base64 with padding, streamed into the output (base64 never needs JSON escaping).
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("Name", 8)?;
        st.serialize_field("C", &self.c)?;
        st.serialize_field("CN", &self.cn)?;
        st.serialize_field("L", &self.l)?;
        st.serialize_field("O", &self.o)?;
        st.serialize_field("OU", &self.ou)?;
        st.serialize_field("ST", &self.st)?;
        st.serialize_field("aggregated", &self.aggregated)?;
        st.serialize_field("emailAddress", &self.email_address)?;
        st.end()
    }
}

impl Serialize for Extensions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = [
            self.authority_info_access.is_some(),
            self.authority_key_identifier.is_some(),
            self.basic_constraints.is_some(),
            self.certificate_policies.is_some(),
            self.crl_distribution_points.is_some(),
            self.ctl_poison_byte,
            self.ctl_signed_certificate_timestamp.is_some(),
            self.extended_key_usage.is_some(),
            !self.extra.is_empty(),
            self.issuer_alt_name.is_some(),
            self.key_usage.is_some(),
            self.subject_alt_name.is_some(),
            self.subject_key_identifier.is_some(),
        ]
        .iter()
        .filter(|&&present| present)
        .count();
        let mut map = serializer.serialize_map(Some(len))?;
        entry(&mut map, "authorityInfoAccess", &self.authority_info_access)?;
        entry(
            &mut map,
            "authorityKeyIdentifier",
            &self.authority_key_identifier,
        )?;
        entry(&mut map, "basicConstraints", &self.basic_constraints)?;
        entry(&mut map, "certificatePolicies", &self.certificate_policies)?;
        entry(
            &mut map,
            "crlDistributionPoints",
            &self.crl_distribution_points,
        )?;
        if self.ctl_poison_byte {
            map.serialize_entry("ctlPoisonByte", &true)?;
        }
        entry(
            &mut map,
            "ctlSignedCertificateTimestamp",
            &self.ctl_signed_certificate_timestamp,
        )?;
        entry(&mut map, "extendedKeyUsage", &self.extended_key_usage)?;
        if !self.extra.is_empty() {
            map.serialize_entry("extra", &self.extra)?;
        }
        entry(&mut map, "issuerAltName", &self.issuer_alt_name)?;
        entry(&mut map, "keyUsage", &self.key_usage)?;
        entry(&mut map, "subjectAltName", &self.subject_alt_name)?;
        entry(
            &mut map,
            "subjectKeyIdentifier",
            &self.subject_key_identifier,
        )?;
        map.end()
    }
}

/// Writes `key: value` only when the value is present.
fn entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => map.serialize_entry(key, v),
        None => Ok(()),
    }
}
