//! Request counters per log and endpoint kind, served as JSON by `GET /_mock/stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::faults::FaultKind;

/// The kinds of log request the mock counts (and faults can target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// RFC 6962 get-sth.
    #[serde(rename = "get-sth")]
    GetSth,
    /// RFC 6962 get-entries.
    #[serde(rename = "get-entries")]
    GetEntries,
    /// Tiled checkpoint.
    #[serde(rename = "checkpoint")]
    Checkpoint,
    /// A full data tile.
    #[serde(rename = "data-tile")]
    DataTile,
    /// A partial data tile.
    #[serde(rename = "partial-data-tile")]
    PartialDataTile,
    /// An issuer certificate.
    #[serde(rename = "issuer")]
    Issuer,
    /// Anything else under a log's prefix (answered 404).
    #[serde(rename = "other")]
    Other,
}

/// Every endpoint kind, in stats order.
const ENDPOINTS: [Endpoint; 7] = [
    Endpoint::GetSth,
    Endpoint::GetEntries,
    Endpoint::Checkpoint,
    Endpoint::DataTile,
    Endpoint::PartialDataTile,
    Endpoint::Issuer,
    Endpoint::Other,
];

impl Endpoint {
    /// Its name in specs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::GetSth => "get-sth",
            Endpoint::GetEntries => "get-entries",
            Endpoint::Checkpoint => "checkpoint",
            Endpoint::DataTile => "data-tile",
            Endpoint::PartialDataTile => "partial-data-tile",
            Endpoint::Issuer => "issuer",
            Endpoint::Other => "other",
        }
    }

    /// Whether it serves a signed tree head (what `backwards` faults touch).
    pub fn serves_tree_head(self) -> bool {
        matches!(self, Endpoint::GetSth | Endpoint::Checkpoint)
    }
}

/// Counters of one log.
#[derive(Default)]
pub struct LogStats {
    requests: [AtomicU64; ENDPOINTS.len()],
    entries_served: AtomicU64,
    sent_429: AtomicU64,
    /// Partial tile requests by (tile index, width).
    partial_tiles: Mutex<BTreeMap<(u64, u64), u64>>,
    /// Triggered faults by kind.
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

impl LogStats {
    /// Counts one request.
    pub fn request(&self, endpoint: Endpoint) {
        if let Some(i) = ENDPOINTS.iter().position(|e| *e == endpoint) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts entries sent in a get-entries response or data tile.
    pub fn entries(&self, count: u64) {
        self.entries_served.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a partial tile request.
    pub fn partial_tile(&self, tile: u64, width: u64) {
        let mut map = self.partial_tiles.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((tile, width)).or_default() += 1;
    }

    /// Counts the faults that triggered on one request.
    pub fn faults(&self, kinds: &[FaultKind]) {
        if kinds.is_empty() {
            return;
        }
        let mut map = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        for kind in kinds {
            *map.entry(kind.name()).or_default() += 1;
            if matches!(
                kind,
                FaultKind::TooManyRequests | FaultKind::AbsurdRetryAfter
            ) {
                self.sent_429.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// 429s sent.
    pub fn sent_429(&self) -> u64 {
        self.sent_429.load(Ordering::Relaxed)
    }

    /// JSON: `{"tree_size", "requests": {endpoint: n}, "partial_data_tiles": {"tile/width": n}, "entries_served",
    /// "429_sent", "faults": {kind: n}}`.
    pub fn to_json(&self, tree_size: u64) -> Value {
        let requests: Map<String, Value> = ENDPOINTS
            .iter()
            .zip(&self.requests)
            .map(|(e, n)| (e.name().to_string(), json!(n.load(Ordering::Relaxed))))
            .collect();
        let partial: Map<String, Value> = self
            .partial_tiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((tile, width), n)| (format!("{tile}/{width}"), json!(n)))
            .collect();
        let faults: Map<String, Value> = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(kind, n)| (kind.to_string(), json!(n)))
            .collect();
        json!({
            "tree_size": tree_size,
            "requests": requests,
            "partial_data_tiles": partial,
            "entries_served": self.entries_served.load(Ordering::Relaxed),
            "429_sent": self.sent_429(),
            "faults": faults,
        })
    }
}
