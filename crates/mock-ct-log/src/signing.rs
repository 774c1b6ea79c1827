//! A CT log's signing key and what it signs: RFC 6962 signed tree heads (`get-sth` JSON) and checkpoint notes
//! with the RFC 6962 note signature (docs/ct-protocols.md). The one definition for the mock and every test (the
//! test kit re-exports it as `certstream_testkit::signing`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::{checkpoint::rfc6962_note_key_id, tree_head::TreeHead};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A log's freshly generated P-256 key pair, with its SubjectPublicKeyInfo and log ID.
pub struct LogSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    spki: Vec<u8>,
    log_id: [u8; 32],
}

impl LogSigner {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| format!("generating a P-256 key: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| format!("loading the P-256 key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let log_id = Sha256::digest(&spki).into();
        Ok(Self {
            key,
            rng,
            spki,
            log_id,
        })
    }

    /// DER SubjectPublicKeyInfo of the public key (what a log list carries as `key`).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The log ID: SHA-256 of the SubjectPublicKeyInfo.
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// A TLS `DigitallySigned` (SHA-256, ECDSA) over the head's `TreeHeadSignature`.
    pub fn digitally_signed(&self, head: &TreeHead) -> Result<Vec<u8>, String> {
        let signature = self
            .key
            .sign(&self.rng, &head.signed_bytes())
            .map_err(|e| format!("signing: {e}"))?;
        let signature = signature.as_ref();
        // SHA-256 (4), ECDSA (3), u16 length, signature.
        let mut out = vec![4, 3];
        out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        out.extend_from_slice(signature);
        Ok(out)
    }

    /// The `get-sth` JSON for `head`.
    pub fn sth_json(&self, head: &TreeHead) -> Result<String, String> {
        let signature = self.digitally_signed(head)?;
        Ok(json!({
            "tree_size": head.tree_size,
            "timestamp": head.timestamp,
            "sha256_root_hash": BASE64.encode(head.root_hash),
            "tree_head_signature": BASE64.encode(signature),
        })
        .to_string())
    }

    /// The RFC 6962 note signature of `head` (key ID, timestamp, `DigitallySigned`), base64, under the key name
    /// `origin` and the key ID of the log `log_id` (this log's own, or another's to forge a mismatch).
    pub fn note_signature(
        &self,
        origin: &str,
        log_id: &[u8; 32],
        head: &TreeHead,
    ) -> Result<String, String> {
        let mut signature = rfc6962_note_key_id(origin, log_id).to_vec();
        signature.extend_from_slice(&head.timestamp.to_be_bytes());
        signature.extend_from_slice(&self.digitally_signed(head)?);
        Ok(BASE64.encode(signature))
    }

    /// The checkpoint note for `head`, signed by this log under `origin`.
    pub fn checkpoint(&self, origin: &str, head: &TreeHead) -> Result<String, String> {
        let signature = self.note_signature(origin, &self.log_id, head)?;
        Ok(format!(
            "{}\n\u{2014} {origin} {signature}\n",
            checkpoint_body(origin, head)
        ))
    }
}

/// A checkpoint note's body (origin, size, root hash) and the blank line that ends it; signature lines follow.
pub fn checkpoint_body(origin: &str, head: &TreeHead) -> String {
    format!(
        "{origin}\n{}\n{}\n",
        head.tree_size,
        BASE64.encode(head.root_hash)
    )
}
