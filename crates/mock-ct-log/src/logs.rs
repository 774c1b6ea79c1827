//! The mock's logs: identity (name, key, URLs), growth over time, and signed tree heads of both kinds.
//!
//! The mock builds no Merkle tree: a head's root hash is a deterministic 32-byte value of (seed, log, size), so
//! signatures verify but inclusion/consistency proofs and level-1+ hash tiles are not available.

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::{checkpoint::rfc6962_note_key_id, tree_head::TreeHead};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Path prefixes. Submission and monitoring differ so a client that reads from the submission prefix gets 404s.
pub const RFC6962_PREFIX: &str = "/rfc6962/";
/// Where tiled logs' submission URLs point (nothing is served there).
pub const SUBMISSION_PREFIX: &str = "/submit/";
/// Where tiled logs' checkpoints, tiles and issuers are served.
pub const MONITORING_PREFIX: &str = "/monitor/";

/// Which protocol a log speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6962 get-sth / get-entries.
    Rfc6962,
    /// static-ct-api checkpoint / tiles.
    Tiled,
}

/// How a log grows: `start_size + rate × seconds since start`, frozen at `final_size` when readonly.
pub struct Growth {
    /// When the mock started.
    pub started: Instant,
    /// Size at start.
    pub start_size: u64,
    /// Entries per second (0: static).
    pub rate: f64,
}

/// One mock log.
pub struct MockLog {
    /// Short name used in URLs, `/_mock/*` queries and fault specs ("r0", "t1", "ro0").
    pub name: String,
    /// Position in the mock's log table (an input of every derived value).
    pub number: usize,
    /// RFC 6962 or tiled.
    pub protocol: Protocol,
    /// Readonly logs stop growing at this size.
    pub final_size: Option<u64>,
    /// DER SubjectPublicKeyInfo of the log's key.
    pub spki: Vec<u8>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    log_id: [u8; 32],
}

impl MockLog {
    /// A log with a freshly generated P-256 key.
    pub fn new(
        name: String,
        number: usize,
        protocol: Protocol,
        final_size: Option<u64>,
    ) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| format!("generating a P-256 key: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| format!("loading the P-256 key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let log_id = Sha256::digest(&spki).into();
        Ok(Self {
            name,
            number,
            protocol,
            final_size,
            spki,
            key,
            rng,
            log_id,
        })
    }

    /// The tree size now.
    pub fn size(&self, growth: &Growth) -> u64 {
        let grown = (growth.rate * growth.started.elapsed().as_secs_f64()) as u64;
        let size = growth.start_size.saturating_add(grown);
        self.final_size.map_or(size, |last| size.min(last))
    }

    /// The deterministic stand-in for the Merkle root at `size`.
    pub fn root_hash(&self, seed: u64, size: u64) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"mock-ct-log root");
        for word in [seed, self.number as u64, size] {
            hasher.update(word.to_be_bytes());
        }
        hasher.finalize().into()
    }

    /// A TLS `DigitallySigned` (SHA-256, ECDSA) over the head's `TreeHeadSignature`.
    fn digitally_signed(&self, head: &TreeHead) -> Result<Vec<u8>, String> {
        let signature = self
            .key
            .sign(&self.rng, &head.signed_bytes())
            .map_err(|e| format!("signing: {e}"))?;
        let signature = signature.as_ref();
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

    /// The checkpoint note for `head`, signed with the RFC 6962 note signature under `origin`.
    pub fn checkpoint(&self, origin: &str, head: &TreeHead) -> Result<String, String> {
        let mut signature = rfc6962_note_key_id(origin, &self.log_id).to_vec();
        signature.extend_from_slice(&head.timestamp.to_be_bytes());
        signature.extend_from_slice(&self.digitally_signed(head)?);
        Ok(format!(
            "{origin}\n{}\n{}\n\n\u{2014} {origin} {}\n",
            head.tree_size,
            BASE64.encode(head.root_hash),
            BASE64.encode(signature)
        ))
    }

    /// This log's entry in the v3 log list; `base` is `http://host:port`.
    fn list_entry(&self, base: &str, seed: u64) -> Value {
        let since = json!({"timestamp": "2025-01-01T00:00:00Z"});
        let state = match self.final_size {
            None => json!({"usable": since}),
            Some(size) => json!({"readonly": {
                "timestamp": "2025-06-01T00:00:00Z",
                "final_tree_head": {
                    "sha256_root_hash": BASE64.encode(self.root_hash(seed, size)),
                    "tree_size": size,
                },
            }}),
        };
        let mut entry = json!({
            "description": format!("Mock '{}' log", self.name),
            "log_id": BASE64.encode(self.log_id),
            "key": BASE64.encode(&self.spki),
            "state": state,
            "temporal_interval": {
                "start_inclusive": "2020-01-01T00:00:00Z",
                "end_exclusive": "2100-01-01T00:00:00Z",
            },
        });
        match self.protocol {
            Protocol::Rfc6962 => {
                entry["url"] = json!(format!("{base}{RFC6962_PREFIX}{}/", self.name));
                entry["mmd"] = json!(86400);
            }
            Protocol::Tiled => {
                entry["submission_url"] = json!(format!("{base}{SUBMISSION_PREFIX}{}/", self.name));
                entry["monitoring_url"] = json!(format!("{base}{MONITORING_PREFIX}{}/", self.name));
                entry["mmd"] = json!(60);
            }
        }
        entry
    }
}

/// The checkpoint origin of tiled log `name` served at `host_port`.
pub fn origin(host_port: &str, name: &str) -> String {
    format!("{host_port}{SUBMISSION_PREFIX}{name}")
}

/// A v3 log list (Google's schema) naming every log. RFC 6962 logs belong to one operator, tiled logs to a second
/// one that has no `logs` array at all (real lists have such operators).
pub fn log_list_json(logs: &[MockLog], base: &str, seed: u64, timestamp: &str) -> String {
    let entries = |protocol| -> Vec<Value> {
        logs.iter()
            .filter(|log| log.protocol == protocol)
            .map(|log| log.list_entry(base, seed))
            .collect()
    };
    json!({
        "version": "1.0",
        "log_list_timestamp": timestamp,
        "operators": [
            {
                "name": "Mock RFC 6962 Operator",
                "email": ["rfc6962@mock.invalid"],
                "logs": entries(Protocol::Rfc6962),
                "tiled_logs": [],
            },
            {
                "name": "Mock Tiled Operator",
                "email": ["tiled@mock.invalid"],
                "tiled_logs": entries(Protocol::Tiled),
            },
        ],
    })
    .to_string()
}
