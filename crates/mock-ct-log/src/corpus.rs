//! The real CT entries the mock's logs are built from (`rfc6962/live_ct.json` of the shared corpus), decoded once
//! at start with the crate's own decoder.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::entry::{Chain, EntryType, decode_rfc6962};
use sha2::{Digest, Sha256};

/// One corpus entry, owned.
pub struct CorpusEntry {
    /// Final certificate or pre-certificate.
    pub entry_type: EntryType,
    /// X509: the certificate. Precert: the full pre-certificate. The mock rewrites its last 8 bytes per index.
    pub cert: Vec<u8>,
    /// Precert only: the TBSCertificate of `leaf_input` (empty for X509).
    pub tbs: Vec<u8>,
    /// Precert only: the issuer key hash (zeros for X509).
    pub issuer_key_hash: [u8; 32],
    /// The chain certificates, issuer first.
    pub chain: Vec<Vec<u8>>,
    /// SHA-256 of each chain certificate (the tiled logs' fingerprints).
    pub chain_fingerprints: Vec<[u8; 32]>,
}

/// The decoded corpus plus the issuer certificates by SHA-256.
pub struct Corpus {
    /// Every entry, in file order.
    pub entries: Vec<CorpusEntry>,
    /// Chain certificates by SHA-256 (what `issuer/<hex>` serves).
    pub issuers: HashMap<[u8; 32], Vec<u8>>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    name: String,
    leaf_input: String,
    extra_data: String,
}

impl Corpus {
    /// Loads `<dir>/rfc6962/live_ct.json`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("rfc6962").join("live_ct.json");
        let json = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: Vec<RawEntry> =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut entries = Vec::with_capacity(raw.len());
        let mut issuers = HashMap::new();
        for item in raw {
            let entry =
                decode_entry(&item).map_err(|e| format!("corpus entry {}: {e}", item.name))?;
            for (fingerprint, cert) in entry.chain_fingerprints.iter().zip(&entry.chain) {
                issuers.insert(*fingerprint, cert.clone());
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(format!("{}: no entries", path.display()));
        }
        Ok(Self { entries, issuers })
    }
}

fn decode_entry(item: &RawEntry) -> Result<CorpusEntry, String> {
    let leaf_input = BASE64
        .decode(&item.leaf_input)
        .map_err(|e| format!("leaf_input: {e}"))?;
    let extra_data = BASE64
        .decode(&item.extra_data)
        .map_err(|e| format!("extra_data: {e}"))?;
    let entry = decode_rfc6962(&leaf_input, &extra_data).map_err(|e| e.to_string())?;
    let Chain::Certificates(chain) = entry.chain else {
        return Err("RFC 6962 entry without a certificate chain".into());
    };
    let (cert, tbs) = match entry.entry_type {
        EntryType::X509 => (entry.leaf.to_vec(), Vec::new()),
        EntryType::Precert => {
            let pre_certificate = entry
                .pre_certificate
                .ok_or("precert without pre_certificate")?;
            (pre_certificate.to_vec(), entry.leaf.to_vec())
        }
    };
    // The per-index rewrite overwrites the last 8 bytes (inside the signature BIT STRING).
    if cert.len() < 64 {
        return Err(format!("certificate of {} bytes is too short", cert.len()));
    }
    let chain: Vec<Vec<u8>> = chain.into_iter().map(<[u8]>::to_vec).collect();
    Ok(CorpusEntry {
        entry_type: entry.entry_type,
        cert,
        tbs,
        issuer_key_hash: entry.issuer_key_hash.copied().unwrap_or([0; 32]),
        chain_fingerprints: chain.iter().map(|c| Sha256::digest(c).into()).collect(),
        chain,
    })
}
