//! static-ct-api checkpoints: signed notes whose log signature is an RFC 6962 note signature over the same
//! `TreeHeadSignature` as a `get-sth` response ([`crate::tree_head`]), verified with the log's [`LogKey`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::log_key::{LogKey, sha256};
use crate::tree_head::{TreeHead, TreeHeadError, decode_root_hash, malformed};

/// The signature type byte of a signed-note RFC 6962 signature, hashed into its key ID.
const NOTE_SIG_TYPE_RFC6962: u8 = 0x05;
/// Every signature line of a signed note starts with an em dash and a space.
const NOTE_SIG_PREFIX: &str = "\u{2014} ";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_key::test_keys::{
        SYCAMORE_2026H1_KEY, digitally_signed, key_from_b64, test_log,
    };

    /// A Sycamore2026h1 checkpoint from another project's test fixture, with Sunlight's grease signature first.
    /// Its key ID is the real one, but its size and root do not match its signature (the fixture only tested
    /// parsing), so it serves to check parsing and key-ID derivation, and that a mismatch is refused.
    const SYCAMORE_CHECKPOINT: &str = "log.sycamore.ct.letsencrypt.org/2026h1\n910004669\nr4hBntWxgz2ver0Q24tx3uAt+XdpbZxZnyChZT2BHzc=\n\n\u{2014} grease.invalid lbCd1oRYil3zhIcUyx7k+ANsprx2of9ipxX34IkV\n\u{2014} log.sycamore.ct.letsencrypt.org/2026h1 EEuevwAAAZ2l51g2BAMARjBEAiA1IgU345pEJwrn2mEJkZhOsA1fHEXEVcBT143riLTLxAIgJPDIrFTcKBoEwRTpRLAPm5ErEGAxewbHTT2/b7SJpec=\n";

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
    fn malformed_checkpoints_are_typed_errors() {
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
    }
}
