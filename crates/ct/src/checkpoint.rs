//! Signed tree heads of both log kinds, verified with the log's key from the log list:
//! RFC 6962 `get-sth` JSON, and static-ct-api `checkpoint` signed notes carrying an RFC 6962 note signature.
//!
//! Both sign the same `TreeHeadSignature` structure (RFC 6962 §3.5):
//! `version(0) ‖ signature_type(1 = tree_hash) ‖ timestamp(u64) ‖ tree_size(u64) ‖ sha256_root_hash[32]`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// TLS `HashAlgorithm.sha256`.
const HASH_SHA256: u8 = 4;
/// TLS `SignatureAlgorithm.rsa`.
const SIG_RSA: u8 = 1;
/// TLS `SignatureAlgorithm.ecdsa`.
const SIG_ECDSA: u8 = 3;
/// The signature type byte of a signed-note RFC 6962 signature, hashed into its key ID.
const NOTE_SIG_TYPE_RFC6962: u8 = 0x05;
/// Every signature line of a signed note starts with an em dash and a space.
const NOTE_SIG_PREFIX: &str = "\u{2014} ";

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

fn malformed(why: impl Into<String>) -> TreeHeadError {
    TreeHeadError::Malformed(why.into())
}

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

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The first 4 bytes of the decoded signature: the key ID.
    pub key_id: [u8; 4],
    /// The rest of the decoded signature.
    pub body: Vec<u8>,
}

/// A static-ct-api checkpoint, parsed but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its submission prefix without scheme or trailing slash).
    pub origin: String,
    /// Tree size from the second line.
    pub tree_size: u64,
    /// Root hash from the third line.
    pub root_hash: [u8; 32],
    /// Every well-formed signature line (the log's, witnesses', grease...).
    pub signatures: Vec<NoteSignature>,
}

impl Checkpoint {
    /// Parses the note text. Extension lines after the root hash are skipped (the RFC 6962 signature does not
    /// cover them, so they carry nothing trustworthy); signature lines that do not parse are skipped as unknown.
    pub fn parse(text: &[u8]) -> Result<Self, TreeHeadError> {
        let text = std::str::from_utf8(text).map_err(|_| malformed("checkpoint is not UTF-8"))?;
        let (body, signature_block) = text
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| malformed("empty origin line"))?;
        let size_line = lines
            .next()
            .ok_or_else(|| malformed("missing tree size line"))?;
        let tree_size = parse_decimal(size_line)
            .ok_or_else(|| malformed(format!("bad tree size {size_line:?}")))?;
        let root_hash = decode_root_hash(
            lines
                .next()
                .ok_or_else(|| malformed("missing root hash line"))?,
        )?;
        if !signature_block.ends_with('\n') {
            return Err(malformed("signature block does not end with a newline"));
        }
        let signatures: Vec<NoteSignature> = signature_block
            .lines()
            .filter_map(parse_signature_line)
            .collect();
        if signatures.is_empty() {
            return Err(malformed("no signature lines"));
        }
        Ok(Self {
            origin: origin.to_string(),
            tree_size,
            root_hash,
            signatures,
        })
    }

    /// Verifies the log's RFC 6962 note signature: the checkpoint must name `expected_origin`, and carry a
    /// signature whose key name is that origin and whose key ID derives from the log ID. Other signatures are
    /// ignored.
    pub fn verify(&self, expected_origin: &str, key: &LogKey) -> Result<TreeHead, TreeHeadError> {
        if self.origin != expected_origin {
            let (expected, found) = (expected_origin.to_string(), self.origin.clone());
            return Err(TreeHeadError::WrongOrigin { expected, found });
        }
        let key_id = rfc6962_note_key_id(&self.origin, key.log_id());
        let signature = self
            .signatures
            .iter()
            .find(|s| s.name == self.origin && s.key_id == key_id)
            .ok_or_else(|| TreeHeadError::NoLogSignature {
                key_name: self.origin.clone(),
            })?;
        let (timestamp, digitally_signed) = signature
            .body
            .split_first_chunk::<8>()
            .ok_or_else(|| malformed("note signature shorter than its timestamp"))?;
        let head = TreeHead {
            tree_size: self.tree_size,
            timestamp: u64::from_be_bytes(*timestamp),
            root_hash: self.root_hash,
        };
        key.verify_digitally_signed(&head.signed_bytes(), digitally_signed)?;
        Ok(head)
    }
}

/// The checkpoint origin of a tiled log: its submission URL without scheme and trailing slash.
pub fn origin_from_submission_url(url: &str) -> &str {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    without_scheme.trim_end_matches('/')
}

/// Key ID of an RFC 6962 note signature: the first 4 bytes of SHA-256(key name ‖ '\n' ‖ 0x05 ‖ log ID).
pub fn rfc6962_note_key_id(key_name: &str, log_id: &[u8; 32]) -> [u8; 4] {
    let digest = sha256(&[key_name.as_bytes(), b"\n", &[NOTE_SIG_TYPE_RFC6962], log_id]);
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest[..4]);
    id
}

fn parse_signature_line(line: &str) -> Option<NoteSignature> {
    let (name, encoded) = line.strip_prefix(NOTE_SIG_PREFIX)?.split_once(' ')?;
    if name.is_empty() || name.contains('+') {
        return None;
    }
    let decoded = BASE64.decode(encoded).ok()?;
    let (key_id, body) = decoded.split_first_chunk::<4>()?;
    Some(NoteSignature {
        name: name.to_string(),
        key_id: *key_id,
        body: body.to_vec(),
    })
}

/// A canonical decimal u64: digits only, no sign, no leading zero (except "0" itself).
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

fn decode_root_hash(encoded: &str) -> Result<[u8; 32], TreeHeadError> {
    let bytes = BASE64
        .decode(encoded)
        .map_err(|e| malformed(format!("root hash: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(format!("root hash is {} bytes, not 32", b.len())))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    /// Let's Encrypt Sycamore2026h1's key, as in Chrome's log list.
    const SYCAMORE_2026H1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfEEe0JZknA91/c6eNl1aexgeKzuGQUMvRCXPXg9L227O5I4Pi++Abcpq6qxlVUKPYafAJelAnMfGzv3lHCc8gA==";
    /// A Sycamore2026h1 checkpoint from another project's test fixture, with Sunlight's grease signature first.
    /// Its key ID is the real one, but its size and root do not match its signature (the fixture only tested
    /// parsing), so it serves to check parsing and key-ID derivation, and that a mismatch is refused.
    const SYCAMORE_CHECKPOINT: &str = "log.sycamore.ct.letsencrypt.org/2026h1\n910004669\nr4hBntWxgz2ver0Q24tx3uAt+XdpbZxZnyChZT2BHzc=\n\n\u{2014} grease.invalid lbCd1oRYil3zhIcUyx7k+ANsprx2of9ipxX34IkV\n\u{2014} log.sycamore.ct.letsencrypt.org/2026h1 EEuevwAAAZ2l51g2BAMARjBEAiA1IgU345pEJwrn2mEJkZhOsA1fHEXEVcBT143riLTLxAIgJPDIrFTcKBoEwRTpRLAPm5ErEGAxewbHTT2/b7SJpec=\n";
    /// Google Argon2027h1's key, as in Chrome's log list.
    const ARGON_2027H1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKHRm0H/zUaFA6Idz5cGvGO3tCPQyfGMgJmVBOPyKAP6mGM1IiNXi4CLomOUyYj0YN74p+eGVApFMsM4h/jzCsA==";
    /// A real Argon2027h1 get-sth response.
    const ARGON_2027H1_STH: &str = r#"{"tree_size":384065451,"timestamp":1791095073447,"sha256_root_hash":"62+t2XxLmSqJnk7pxUna6EVA7+u+dotyl8q6wojifD8=","tree_head_signature":"BAMARzBFAiAOhTncRJL5E4FfPVNWRYhsEeGThRG21r4e5gOi1yK0WwIhAM/2qDFMO5uJhZ/mK17c1YcSK3vIjbE9qTTc/V5z4aTu"}"#;

    fn key_from_b64(b64: &str) -> LogKey {
        LogKey::from_spki(&BASE64.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn fixture_checkpoint_parses_with_the_real_key_id() {
        let key = key_from_b64(SYCAMORE_2026H1_KEY);
        let cp = Checkpoint::parse(SYCAMORE_CHECKPOINT.as_bytes()).unwrap();
        assert_eq!(cp.origin, "log.sycamore.ct.letsencrypt.org/2026h1");
        assert_eq!(cp.tree_size, 910_004_669);
        assert_eq!(
            cp.signatures.len(),
            2,
            "grease and log signatures both parsed"
        );
        assert_eq!(cp.signatures[0].name, "grease.invalid");
        // The log's signature line carries key ID 104b9ebf: derived from the origin and the listed key.
        assert_eq!(
            rfc6962_note_key_id(&cp.origin, key.log_id()),
            [0x10, 0x4b, 0x9e, 0xbf]
        );
        assert_eq!(cp.signatures[1].key_id, [0x10, 0x4b, 0x9e, 0xbf]);
        let origin = origin_from_submission_url("https://log.sycamore.ct.letsencrypt.org/2026h1/");
        assert_eq!(cp.verify(origin, &key), Err(TreeHeadError::BadSignature));
    }

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

    /// A generated P-256 log key: (signer, its SPKI DER).
    fn test_log() -> (EcdsaKeyPair, Vec<u8>) {
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

    fn digitally_signed(pair: &EcdsaKeyPair, head: &TreeHead) -> Vec<u8> {
        let sig = pair
            .sign(&SystemRandom::new(), &head.signed_bytes())
            .unwrap();
        let mut out = vec![HASH_SHA256, SIG_ECDSA];
        out.extend_from_slice(&u16::try_from(sig.as_ref().len()).unwrap().to_be_bytes());
        out.extend_from_slice(sig.as_ref());
        out
    }

    fn checkpoint_text(origin: &str, key: &LogKey, head: &TreeHead, ds: &[u8]) -> String {
        let mut sig = rfc6962_note_key_id(origin, key.log_id()).to_vec();
        sig.extend_from_slice(&head.timestamp.to_be_bytes());
        sig.extend_from_slice(ds);
        format!(
            "{origin}\n{}\n{}\n\n\u{2014} witness.example+abcd AAAAAAAA\n\u{2014} {origin} {}\n",
            head.tree_size,
            BASE64.encode(head.root_hash),
            BASE64.encode(sig)
        )
    }

    #[test]
    fn generated_checkpoint_verifies_and_tampering_fails() {
        let (pair, spki) = test_log();
        let key = LogKey::from_spki(&spki).unwrap();
        let origin = "ct.example.org/2026h2";
        let head = TreeHead {
            tree_size: 1234,
            timestamp: 1_750_000_000_000,
            root_hash: [7; 32],
        };
        let ds = digitally_signed(&pair, &head);
        let text = checkpoint_text(origin, &key, &head, &ds);
        assert_eq!(
            Checkpoint::parse(text.as_bytes())
                .unwrap()
                .verify(origin, &key),
            Ok(head)
        );

        // Another size, root or timestamp than was signed.
        for forged in [
            TreeHead {
                tree_size: 1235,
                ..head
            },
            TreeHead {
                root_hash: [8; 32],
                ..head
            },
            TreeHead {
                timestamp: head.timestamp + 1,
                ..head
            },
        ] {
            let text = checkpoint_text(origin, &key, &forged, &ds);
            let verdict = Checkpoint::parse(text.as_bytes())
                .unwrap()
                .verify(origin, &key);
            assert_eq!(verdict, Err(TreeHeadError::BadSignature));
        }
        let cp = Checkpoint::parse(text.as_bytes()).unwrap();
        assert!(matches!(
            cp.verify("other.example/log", &key),
            Err(TreeHeadError::WrongOrigin { .. })
        ));
        // Another log's key has another key ID: its signature is simply not there.
        let (_, other_spki) = test_log();
        let other = LogKey::from_spki(&other_spki).unwrap();
        assert!(matches!(
            cp.verify(origin, &other),
            Err(TreeHeadError::NoLogSignature { .. })
        ));
        // A checkpoint with only foreign signatures.
        let foreign = format!(
            "{origin}\n1\n{}\n\n\u{2014} grease.invalid AAAAAAAAAAAA\n",
            BASE64.encode([0u8; 32])
        );
        assert!(matches!(
            Checkpoint::parse(foreign.as_bytes())
                .unwrap()
                .verify(origin, &key),
            Err(TreeHeadError::NoLogSignature { .. })
        ));
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
    fn malformed_inputs_are_typed_errors() {
        let root = BASE64.encode([0u8; 32]);
        let sig = "\u{2014} log.example AAAAAAAAAAAA\n";
        for bad in [
            format!("log.example\n12\n{root}\n{sig}"), // no blank line
            format!("log.example\n012\n{root}\n\n{sig}"), // non-canonical size
            format!("log.example\n-1\n{root}\n\n{sig}"), // negative size
            format!("log.example\n12\nAAAA\n\n{sig}"), // short root
            format!("log.example\n12\n{root}\n\n"),    // no signatures
            format!("\n12\n{root}\n\n{sig}"),          // empty origin
            format!("log.example\n12\n{root}\n\nnot a sig\n"), // only junk signature lines
        ] {
            assert!(
                matches!(
                    Checkpoint::parse(bad.as_bytes()),
                    Err(TreeHeadError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Checkpoint::parse(&[0xff, 0xfe]),
            Err(TreeHeadError::Malformed(_))
        ));
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
