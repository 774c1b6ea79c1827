//! A log's public key, as the log list gives it, and the TLS `DigitallySigned` check every tree head signature
//! (RFC 6962 `get-sth` and static-ct-api checkpoints alike) goes through.

use ring::signature::{
    ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::tree_head::{TreeHeadError, malformed};

/// TLS `HashAlgorithm.sha256`.
pub(crate) const HASH_SHA256: u8 = 4;
/// TLS `SignatureAlgorithm.rsa`.
pub(crate) const SIG_RSA: u8 = 1;
/// TLS `SignatureAlgorithm.ecdsa`.
pub(crate) const SIG_ECDSA: u8 = 3;

/// A log's public key, ready to verify tree head signatures.
#[derive(Debug, Clone)]
pub struct LogKey {
    signature: u8,
    /// What ring verifies with: the EC point, or the PKCS#1 RSAPublicKey.
    public_key: Vec<u8>,
    log_id: [u8; 32],
}

impl LogKey {
    /// Parses a DER SubjectPublicKeyInfo (the log list's `key`); the log ID is its SHA-256.
    pub fn from_spki(der: &[u8]) -> Result<Self, TreeHeadError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| TreeHeadError::BadKey(e.to_string()))?;
        if !rest.is_empty() {
            return Err(TreeHeadError::BadKey(
                "trailing bytes after the SubjectPublicKeyInfo".into(),
            ));
        }
        let algorithm = &spki.algorithm.algorithm;
        let signature = if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve != Some(OID_EC_P256) {
                return Err(TreeHeadError::BadKey("EC key is not on P-256".into()));
            }
            SIG_ECDSA
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            SIG_RSA
        } else {
            return Err(TreeHeadError::BadKey(format!(
                "unsupported key algorithm {algorithm}"
            )));
        };
        Ok(Self {
            signature,
            public_key: spki.subject_public_key.data.to_vec(),
            log_id: sha256(&[der]),
        })
    }

    /// The RFC 6962 log ID: SHA-256 of the key's DER.
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// Verifies a TLS `DigitallySigned` (hash, signature algorithm, u16 length, signature; nothing after) over
    /// `message`.
    pub fn verify_digitally_signed(
        &self,
        message: &[u8],
        digitally_signed: &[u8],
    ) -> Result<(), TreeHeadError> {
        let [hash, signature, len_hi, len_lo, sig @ ..] = digitally_signed else {
            return Err(malformed("DigitallySigned shorter than its header"));
        };
        if *hash != HASH_SHA256 || *signature != self.signature {
            return Err(TreeHeadError::UnsupportedAlgorithm {
                hash: *hash,
                signature: *signature,
            });
        }
        if sig.len() != usize::from(u16::from_be_bytes([*len_hi, *len_lo])) {
            return Err(malformed(
                "DigitallySigned length does not match its signature",
            ));
        }
        let algorithm: &'static dyn VerificationAlgorithm = if self.signature == SIG_ECDSA {
            &ECDSA_P256_SHA256_ASN1
        } else {
            &RSA_PKCS1_2048_8192_SHA256
        };
        UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(message, sig)
            .map_err(|_| TreeHeadError::BadSignature)
    }
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Log keys and signatures for the tests of every tree head kind.
#[cfg(test)]
pub(crate) mod test_keys {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    use super::{HASH_SHA256, LogKey, SIG_ECDSA};
    use crate::tree_head::TreeHead;

    /// Let's Encrypt Sycamore2026h1's key, as in Chrome's log list.
    pub(crate) const SYCAMORE_2026H1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfEEe0JZknA91/c6eNl1aexgeKzuGQUMvRCXPXg9L227O5I4Pi++Abcpq6qxlVUKPYafAJelAnMfGzv3lHCc8gA==";

    pub(crate) fn key_from_b64(b64: &str) -> LogKey {
        LogKey::from_spki(&BASE64.decode(b64).unwrap()).unwrap()
    }

    /// A generated P-256 log key: (signer, its SPKI DER).
    pub(crate) fn test_log() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (uncompressed point) }
        let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        spki.extend_from_slice(pair.public_key().as_ref());
        (pair, spki)
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn digitally_signed(pair: &EcdsaKeyPair, head: &TreeHead) -> Vec<u8> {
        let sig = pair
            .sign(&SystemRandom::new(), &head.signed_bytes())
            .unwrap();
        let mut out = vec![HASH_SHA256, SIG_ECDSA];
        out.extend_from_slice(&u16::try_from(sig.as_ref().len()).unwrap().to_be_bytes());
        out.extend_from_slice(sig.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_typed_errors() {
        assert!(matches!(
            LogKey::from_spki(b"\x30\x03\x02\x01\x00"),
            Err(TreeHeadError::BadKey(_))
        ));
        assert!(matches!(
            LogKey::from_spki(&[]),
            Err(TreeHeadError::BadKey(_))
        ));
    }
}
