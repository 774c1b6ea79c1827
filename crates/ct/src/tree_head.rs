//! Signed tree heads: RFC 6962 `get-sth` responses, and the verified [`TreeHead`] both log kinds end in.
//!
//! Both kinds sign the same `TreeHeadSignature` structure (RFC 6962 §3.5):
//! `version(0) ‖ signature_type(1 = tree_hash) ‖ timestamp(u64) ‖ tree_size(u64) ‖ sha256_root_hash[32]`;
//! static-ct-api checkpoints ([`crate::checkpoint`]) carry it inside a signed note.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::log_key::LogKey;

/// Why a tree head could not be parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeHeadError {
    /// The log's key is not a DER SubjectPublicKeyInfo for ECDSA P-256 or RSA.
    BadKey(String),
    /// The STH JSON or checkpoint text is not well formed.
    Malformed(String),
    /// The signature uses a hash or signature algorithm other than SHA-256 with the key's algorithm.
    UnsupportedAlgorithm {
        /// TLS HashAlgorithm byte.
        hash: u8,
        /// TLS SignatureAlgorithm byte.
        signature: u8,
    },
    /// The signature does not verify with the log's key.
    BadSignature,
    /// The checkpoint has no signature from the log's key.
    NoLogSignature {
        /// The key name (the log's origin) that was looked for.
        key_name: String,
    },
    /// The checkpoint is for another log.
    WrongOrigin {
        /// The origin the log list implies.
        expected: String,
        /// The origin the checkpoint names.
        found: String,
    },
}

impl fmt::Display for TreeHeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey(why) => write!(f, "unusable log key: {why}"),
            Self::Malformed(why) => write!(f, "malformed tree head: {why}"),
            Self::UnsupportedAlgorithm { hash, signature } => {
                write!(
                    f,
                    "unsupported signature algorithm (hash {hash}, signature {signature})"
                )
            }
            Self::BadSignature => {
                write!(f, "tree head signature does not verify with the log's key")
            }
            Self::NoLogSignature { key_name } => {
                write!(f, "checkpoint carries no signature by {key_name}")
            }
            Self::WrongOrigin { expected, found } => {
                write!(f, "checkpoint origin is {found:?}, expected {expected:?}")
            }
        }
    }
}

impl std::error::Error for TreeHeadError {}

pub(crate) fn malformed(why: impl Into<String>) -> TreeHeadError {
    TreeHeadError::Malformed(why.into())
}

/// A tree head whose signature has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries in the tree.
    pub tree_size: u64,
    /// When the log signed it, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The RFC 6962 Merkle tree hash at `tree_size`.
    pub root_hash: [u8; 32],
}

impl TreeHead {
    /// The `TreeHeadSignature` bytes a log signs for this head.
    pub fn signed_bytes(&self) -> [u8; 50] {
        let mut out = [0u8; 50];
        out[1] = 1; // version v1 = 0, signature_type tree_hash = 1
        out[2..10].copy_from_slice(&self.timestamp.to_be_bytes());
        out[10..18].copy_from_slice(&self.tree_size.to_be_bytes());
        out[18..].copy_from_slice(&self.root_hash);
        out
    }
}

/// An RFC 6962 `get-sth` response, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// The head as the log states it.
    pub head: TreeHead,
    /// The TLS `DigitallySigned` over the head.
    pub signature: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct SthJson<'a> {
    tree_size: u64,
    timestamp: u64,
    #[serde(borrow)]
    sha256_root_hash: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    tree_head_signature: std::borrow::Cow<'a, str>,
}

impl SignedTreeHead {
    /// Parses a `get-sth` JSON body (unknown fields are ignored).
    pub fn from_json(body: &[u8]) -> Result<Self, TreeHeadError> {
        let json: SthJson<'_> =
            serde_json::from_slice(body).map_err(|e| malformed(format!("get-sth JSON: {e}")))?;
        let root_hash = decode_root_hash(&json.sha256_root_hash)?;
        let signature = BASE64
            .decode(json.tree_head_signature.as_bytes())
            .map_err(|e| malformed(format!("tree_head_signature: {e}")))?;
        Ok(Self {
            head: TreeHead {
                tree_size: json.tree_size,
                timestamp: json.timestamp,
                root_hash,
            },
            signature,
        })
    }

    /// Checks the signature with the log's key and returns the verified head.
    pub fn verify(&self, key: &LogKey) -> Result<TreeHead, TreeHeadError> {
        key.verify_digitally_signed(&self.head.signed_bytes(), &self.signature)?;
        Ok(self.head)
    }
}

pub(crate) fn decode_root_hash(encoded: &str) -> Result<[u8; 32], TreeHeadError> {
    let bytes = BASE64
        .decode(encoded)
        .map_err(|e| malformed(format!("root hash: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(format!("root hash is {} bytes, not 32", b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_key::SIG_RSA;
    use crate::log_key::test_keys::{
        SYCAMORE_2026H1_KEY, digitally_signed, key_from_b64, test_log,
    };

    /// Google Argon2027h1's key, as in Chrome's log list.
    const ARGON_2027H1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKHRm0H/zUaFA6Idz5cGvGO3tCPQyfGMgJmVBOPyKAP6mGM1IiNXi4CLomOUyYj0YN74p+eGVApFMsM4h/jzCsA==";
    /// A real Argon2027h1 get-sth response.
    const ARGON_2027H1_STH: &str = r#"{"tree_size":384065451,"timestamp":1791095073447,"sha256_root_hash":"62+t2XxLmSqJnk7pxUna6EVA7+u+dotyl8q6wojifD8=","tree_head_signature":"BAMARzBFAiAOhTncRJL5E4FfPVNWRYhsEeGThRG21r4e5gOi1yK0WwIhAM/2qDFMO5uJhZ/mK17c1YcSK3vIjbE9qTTc/V5z4aTu"}"#;

    #[test]
    fn real_argon_sth_verifies() {
        let key = key_from_b64(ARGON_2027H1_KEY);
        let sth = SignedTreeHead::from_json(ARGON_2027H1_STH.as_bytes()).unwrap();
        let head = sth.verify(&key).unwrap();
        assert_eq!(
            (head.tree_size, head.timestamp),
            (384_065_451, 1_791_095_073_447)
        );
        let mut tampered = sth.clone();
        tampered.head.tree_size += 1;
        assert_eq!(tampered.verify(&key), Err(TreeHeadError::BadSignature));
        let other_log = key_from_b64(SYCAMORE_2026H1_KEY);
        assert_eq!(sth.verify(&other_log), Err(TreeHeadError::BadSignature));
    }

    #[test]
    fn generated_sth_verifies_and_rejects_wrong_algorithms() {
        let (pair, spki) = test_log();
        let key = LogKey::from_spki(&spki).unwrap();
        let head = TreeHead {
            tree_size: 99,
            timestamp: 1_700_000_000_000,
            root_hash: [1; 32],
        };
        let ds = digitally_signed(&pair, &head);
        let json = format!(
            r#"{{"tree_size":99,"timestamp":1700000000000,"sha256_root_hash":"{}","tree_head_signature":"{}","extra":1}}"#,
            BASE64.encode(head.root_hash),
            BASE64.encode(&ds)
        );
        let sth = SignedTreeHead::from_json(json.as_bytes()).unwrap();
        assert_eq!(sth.verify(&key), Ok(head));

        let mut rsa_labelled = sth.clone();
        rsa_labelled.signature[1] = SIG_RSA;
        assert_eq!(
            rsa_labelled.verify(&key),
            Err(TreeHeadError::UnsupportedAlgorithm {
                hash: 4,
                signature: 1
            })
        );
        let mut sha1 = sth.clone();
        sha1.signature[0] = 2;
        assert!(matches!(
            sha1.verify(&key),
            Err(TreeHeadError::UnsupportedAlgorithm { .. })
        ));
        let mut short = sth.clone();
        short.signature.pop();
        assert!(matches!(
            short.verify(&key),
            Err(TreeHeadError::Malformed(_))
        ));
        let mut flipped = sth;
        let last = flipped.signature.len() - 1;
        flipped.signature[last] ^= 1;
        assert_eq!(flipped.verify(&key), Err(TreeHeadError::BadSignature));
    }

    #[test]
    fn malformed_sth_is_a_typed_error() {
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"tree_size":-1}"#,
            br#"{"tree_size":1,"timestamp":1,"sha256_root_hash":"!","tree_head_signature":""}"#,
        ] {
            assert!(matches!(
                SignedTreeHead::from_json(bad),
                Err(TreeHeadError::Malformed(_))
            ));
        }
    }
}
