//! The mock's logs: identity (name, key, URLs), growth over time, and signed tree heads of both kinds.
//!
//! The mock builds no Merkle tree: a head's root hash is a deterministic 32-byte value of (seed, log, size), so
//! signatures verify but inclusion/consistency proofs and level-1+ hash tiles are not available.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use certstream_ct::tree_head::TreeHead;
use serde_json::{Value, json};

use crate::signing::LogSigner;
use sha2::{Digest, Sha256};

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
#[derive(Clone, Copy)]
pub struct Growth {
    /// When the mock started.
    pub started: Instant,
    /// Size at start.
    pub start_size: u64,
    /// Entries per second (0: static).
    pub rate: f64,
}

impl Growth {
    /// When entry `index` of a growing log became visible (the size first exceeded it); `None` for entries there
    /// from the start or of a log that does not grow.
    pub fn visible_at(&self, index: u64) -> Option<Instant> {
        let grown = index.checked_sub(self.start_size)? + 1;
        (self.rate > 0.0).then(|| self.started + Duration::from_secs_f64(grown as f64 / self.rate))
    }
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
    /// The log's key.
    pub signer: LogSigner,
}

impl MockLog {
    /// A log with a freshly generated P-256 key.
    pub fn new(
        name: String,
        number: usize,
        protocol: Protocol,
        final_size: Option<u64>,
    ) -> Result<Self, String> {
        Ok(Self {
            name,
            number,
            protocol,
            final_size,
            signer: LogSigner::generate()?,
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

    /// The `get-sth` JSON for `head`.
    pub fn sth_json(&self, head: &TreeHead) -> Result<String, String> {
        self.signer.sth_json(head)
    }

    /// The checkpoint note for `head`, signed with the RFC 6962 note signature under `origin`.
    pub fn checkpoint(&self, origin: &str, head: &TreeHead) -> Result<String, String> {
        self.signer.checkpoint(origin, head)
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
            "log_id": BASE64.encode(self.signer.log_id()),
            "key": BASE64.encode(self.signer.spki()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_becomes_visible_when_the_size_first_exceeds_its_index() {
        let started = Instant::now();
        let growth = Growth {
            started,
            start_size: 100,
            rate: 10.0,
        };
        assert_eq!(growth.visible_at(99), None, "there from the start");
        // size = 100 + floor(10 × t): entry 100 at t = 0.1 s, entry 104 at t = 0.5 s.
        assert_eq!(
            growth.visible_at(100),
            Some(started + Duration::from_millis(100))
        );
        assert_eq!(
            growth.visible_at(104),
            Some(started + Duration::from_millis(500))
        );
        let fixed = Growth {
            rate: 0.0,
            ..growth
        };
        assert_eq!(fixed.visible_at(100), None, "a log that does not grow");
    }
}
