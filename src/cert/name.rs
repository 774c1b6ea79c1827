//! Subject and issuer names, and the decoding of ASN.1 character strings into text.

use std::borrow::Cow;

use x509_parser::asn1_rs::Tag;
use x509_parser::x509::X509Name;

/// A subject or issuer in certstream form: the eight keys `C, CN, L, O, OU, ST, aggregated, emailAddress`.
///
/// Absent attributes are `None` (JSON `null`); a repeated attribute keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    /// countryName (2.5.4.6).
    pub c: Option<String>,
    /// commonName (2.5.4.3).
    pub cn: Option<String>,
    /// localityName (2.5.4.7).
    pub l: Option<String>,
    /// organizationName (2.5.4.10).
    pub o: Option<String>,
    /// organizationalUnitName (2.5.4.11).
    pub ou: Option<String>,
    /// stateOrProvinceName (2.5.4.8).
    pub st: Option<String>,
    /// emailAddress (1.2.840.113549.1.9.1).
    pub email_address: Option<String>,
    /// `"/" + join("/", "K=V")` over the present values in the order C, CN, L, O, OU, ST, emailAddress.
    pub aggregated: String,
}

/// Attribute keys in `aggregated` order; a key's index is its slot (`Name::slot_mut`).
const KEYS: [&str; 7] = ["C", "CN", "L", "O", "OU", "ST", "emailAddress"];

/// Content octets of the attribute type OIDs we keep, in `KEYS` order.
const OIDS: [&[u8]; 7] = [
    &[0x55, 0x04, 0x06],
    &[0x55, 0x04, 0x03],
    &[0x55, 0x04, 0x07],
    &[0x55, 0x04, 0x0a],
    &[0x55, 0x04, 0x0b],
    &[0x55, 0x04, 0x08],
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
];

impl Name {
    /// Builds the certstream name from a parsed X.509 name; `degraded` counts values decoded lossily.
    pub(crate) fn from_x509(name: &X509Name<'_>, degraded: &mut u32) -> Name {
        // Remember the last value of each kept attribute, decode only those.
        let mut last: [Option<(Tag, &[u8])>; 7] = [None; 7];
        for attr in name.iter_attributes() {
            let oid = attr.attr_type().as_bytes();
            if let Some(slot) = OIDS.iter().position(|o| *o == oid) {
                let value = attr.attr_value();
                last[slot] = Some((value.tag(), value.data));
            }
        }
        let mut out = Name::default();
        let mut aggregated = String::with_capacity(64);
        for (slot, value) in last.iter().enumerate() {
            let Some((tag, bytes)) = value else { continue };
            let (text, lossy) = decode_string(*tag, bytes);
            if lossy {
                *degraded += 1;
            }
            aggregated.push('/');
            aggregated.push_str(KEYS[slot]);
            aggregated.push('=');
            aggregated.push_str(&text);
            *out.slot_mut(slot) = Some(text.into_owned());
        }
        if aggregated.is_empty() {
            aggregated.push('/');
        }
        out.aggregated = aggregated;
        out
    }

    fn slot_mut(&mut self, slot: usize) -> &mut Option<String> {
        match slot {
            0 => &mut self.c,
            1 => &mut self.cn,
            2 => &mut self.l,
            3 => &mut self.o,
            4 => &mut self.ou,
            5 => &mut self.st,
            _ => &mut self.email_address,
        }
    }
}

/// Decodes an ASN.1 character string by its tag; the flag is `true` when text had to be replaced (U+FFFD).
///
/// BMPString is UTF-16BE, UniversalString UTF-32BE, TeletexString/T61 is read as UTF-8 when valid and as
/// Latin-1 otherwise (what issuers actually put there); every other type is expected to be UTF-8.
pub(crate) fn decode_string(tag: Tag, bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match tag {
        Tag::BmpString => decode_utf16be(bytes),
        Tag::UniversalString => decode_utf32be(bytes),
        Tag::TeletexString => match std::str::from_utf8(bytes) {
            Ok(s) => (Cow::Borrowed(s), false),
            Err(_) => (
                Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
                false,
            ),
        },
        _ => decode_utf8(bytes),
    }
}

/// UTF-8, replacing invalid sequences; the flag says whether anything was replaced.
pub(crate) fn decode_utf8(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

fn decode_utf16be(bytes: &[u8]) -> (Cow<'static, str>, bool) {
    let units = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut lossy = false;
    let text = char::decode_utf16(units).map(|r| {
        r.unwrap_or_else(|_| {
            lossy = true;
            char::REPLACEMENT_CHARACTER
        })
    });
    finish(text.collect(), lossy, bytes.len().is_multiple_of(2))
}

fn decode_utf32be(bytes: &[u8]) -> (Cow<'static, str>, bool) {
    let mut lossy = false;
    let text = bytes.chunks_exact(4).map(|q| {
        char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])).unwrap_or_else(|| {
            lossy = true;
            char::REPLACEMENT_CHARACTER
        })
    });
    finish(text.collect(), lossy, bytes.len().is_multiple_of(4))
}

/// A dangling partial code unit becomes one more U+FFFD.
fn finish(mut text: String, lossy: bool, whole: bool) -> (Cow<'static, str>, bool) {
    if !whole {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    (Cow::Owned(text), lossy || !whole)
}
