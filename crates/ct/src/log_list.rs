//! CT log lists (Chrome's v3 schema, which Apple's list shares): parsing, which logs to poll, merging several
//! lists, and checking Google's detached signature.
//!
//! A log entry that is unusable (bad key, bad URL, unknown state) is skipped and reported in
//! [`LogList::skipped`]; only a list that is not a log list at all is an error.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;

use super::log_key::LogKey;

/// Chrome's list of the logs it trusts.
pub const GOOGLE_LOG_LIST_URL: &str = "https://www.gstatic.com/ct/log_list/v3/log_list.json";
/// Its detached signature.
pub const GOOGLE_LOG_LIST_SIG_URL: &str = "https://www.gstatic.com/ct/log_list/v3/log_list.sig";
/// Google's list-signing public key (PEM SubjectPublicKeyInfo, RSA 4096).
pub const GOOGLE_LOG_LIST_PUBKEY_PEM: &[u8] = include_bytes!("google_log_list_pubkey.pem");
/// A copy of Chrome's list (v85.92, 2026-05-29) for when no list can be fetched at start-up.
pub const SNAPSHOT_JSON: &[u8] = include_bytes!("log_list_snapshot.json");

/// Why a log list could not be used.
#[derive(Debug)]
pub enum LogListError {
    /// Not JSON, or not shaped like a v3 log list.
    Json(serde_json::Error),
    /// The signing key is not a usable RSA public key in PEM.
    BadSigningKey(String),
    /// The detached signature does not match the list bytes.
    BadSignature,
}

impl fmt::Display for LogListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "not a v3 log list: {e}"),
            Self::BadSigningKey(why) => write!(f, "log list signing key unusable: {why}"),
            Self::BadSignature => write!(f, "log list signature does not verify"),
        }
    }
}

impl std::error::Error for LogListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// A log's state in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    /// Applied for inclusion, not trusted yet.
    Pending,
    /// Trusted; CAs already submit.
    Qualified,
    /// Trusted and in full use.
    Usable,
    /// Frozen at a final tree size: nothing new past it.
    ReadOnly {
        /// Entries in the frozen tree.
        final_tree_size: u64,
    },
    /// No longer trusted.
    Retired,
    /// Never trusted.
    Rejected,
    /// No state given (test or special-purpose logs of the all-logs list).
    None,
}

/// How a log serves its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKind {
    /// RFC 6962: `get-sth` and `get-entries` under `url`.
    Rfc6962 {
        /// The log's prefix, ending in `/`.
        url: String,
    },
    /// static-ct-api: `checkpoint` and tiles under `monitoring_url`.
    Tiled {
        /// The write prefix, ending in `/`; the checkpoint origin derives from it.
        submission_url: String,
        /// The read prefix, ending in `/`.
        monitoring_url: String,
    },
}

/// One usable log of a list.
#[derive(Debug, Clone)]
pub struct LogInfo {
    /// The log ID, base64, as listed (SHA-256 of `key_der`, checked).
    pub log_id: String,
    /// The log's public key (DER SubjectPublicKeyInfo).
    pub key_der: Vec<u8>,
    /// Human-readable name, e.g. "Google 'Argon2026h2' log".
    pub description: String,
    /// Protocol and URLs.
    pub kind: LogKind,
    /// Trust state.
    pub state: LogState,
    /// Maximum merge delay, seconds.
    pub mmd: u64,
    /// The operator's name.
    pub operator: String,
}

impl LogInfo {
    /// The key, parsed for verifying tree heads. Always succeeds for logs of a parsed list (checked on parse).
    pub fn key(&self) -> Result<LogKey, super::tree_head::TreeHeadError> {
        LogKey::from_spki(&self.key_der)
    }

    /// Whether this log should be polled. Pending logs only when `include_pending`.
    pub fn should_poll(&self, include_pending: bool) -> bool {
        match self.state {
            LogState::Usable | LogState::Qualified | LogState::ReadOnly { .. } => true,
            LogState::Pending => include_pending,
            LogState::Retired | LogState::Rejected | LogState::None => false,
        }
    }
}

/// A log entry of a list that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLog {
    /// Its description (or log ID, or position, when even that is missing).
    pub log: String,
    /// What was wrong with it.
    pub reason: String,
}

/// A parsed log list.
#[derive(Debug, Clone, Default)]
pub struct LogList {
    /// The list's version, e.g. "85.92".
    pub version: Option<String>,
    /// Every usable log entry, in list order.
    pub logs: Vec<LogInfo>,
    /// Entries left out because they were malformed.
    pub skipped: Vec<SkippedLog>,
}

#[derive(Deserialize)]
struct RawList {
    version: Option<String>,
    operators: Vec<RawOperator>,
}

#[derive(Deserialize)]
struct RawOperator {
    name: String,
    #[serde(default)]
    logs: Vec<Value>,
    #[serde(default)]
    tiled_logs: Vec<Value>,
}

/// One log as listed; parsed per log so one malformed entry cannot sink the list.
#[derive(Deserialize)]
struct RawLog {
    description: String,
    log_id: String,
    key: String,
    mmd: u64,
    state: Option<serde_json::Map<String, Value>>,
    url: Option<String>,
    submission_url: Option<String>,
    monitoring_url: Option<String>,
}

impl LogList {
    /// Parses a v3 list. Unknown fields are ignored; malformed logs are skipped and listed in `skipped`.
    pub fn parse(json: &[u8]) -> Result<Self, LogListError> {
        let raw: RawList = serde_json::from_slice(json).map_err(LogListError::Json)?;
        let mut list = LogList {
            version: raw.version,
            ..LogList::default()
        };
        for operator in raw.operators {
            let entries = operator.logs.into_iter().map(|v| (v, false));
            let tiled = operator.tiled_logs.into_iter().map(|v| (v, true));
            for (value, is_tiled) in entries.chain(tiled) {
                let name = value
                    .get("description")
                    .or_else(|| value.get("log_id"))
                    .and_then(Value::as_str)
                    .map_or_else(
                        || format!("unnamed log of {}", operator.name),
                        str::to_string,
                    );
                match parse_log(value, is_tiled, &operator.name) {
                    Ok(log) => list.logs.push(log),
                    Err(reason) => list.skipped.push(SkippedLog { log: name, reason }),
                }
            }
        }
        Ok(list)
    }

    /// The compiled-in snapshot.
    pub fn compiled_in() -> Result<Self, LogListError> {
        Self::parse(SNAPSHOT_JSON)
    }

    /// The logs to poll: usable, qualified and readonly; pending ones too when `include_pending`.
    pub fn selected(&self, include_pending: bool) -> impl Iterator<Item = &LogInfo> {
        self.logs
            .iter()
            .filter(move |log| log.should_poll(include_pending))
    }

    /// Merges lists in priority order: a log ID already seen in an earlier list is dropped (first wins).
    pub fn merge(lists: impl IntoIterator<Item = LogList>) -> LogList {
        let mut merged = LogList::default();
        let mut seen = HashSet::new();
        for list in lists {
            merged.version = merged.version.or(list.version);
            merged.logs.extend(
                list.logs
                    .into_iter()
                    .filter(|log| seen.insert(log.log_id.clone())),
            );
            merged.skipped.extend(list.skipped);
        }
        merged
    }
}

fn parse_log(value: Value, is_tiled: bool, operator: &str) -> Result<LogInfo, String> {
    let raw: RawLog = serde_json::from_value(value).map_err(|e| format!("malformed entry: {e}"))?;
    let key_der = BASE64
        .decode(&raw.key)
        .map_err(|e| format!("key is not base64: {e}"))?;
    let key = LogKey::from_spki(&key_der).map_err(|e| e.to_string())?;
    let log_id = BASE64
        .decode(&raw.log_id)
        .map_err(|e| format!("log_id is not base64: {e}"))?;
    if log_id != key.log_id() {
        return Err("log_id is not the SHA-256 of the key".into());
    }
    let kind = if is_tiled {
        LogKind::Tiled {
            submission_url: log_url(raw.submission_url, "submission_url")?,
            monitoring_url: log_url(raw.monitoring_url, "monitoring_url")?,
        }
    } else {
        LogKind::Rfc6962 {
            url: log_url(raw.url, "url")?,
        }
    };
    Ok(LogInfo {
        log_id: raw.log_id,
        key_der,
        description: raw.description,
        kind,
        state: parse_state(raw.state.as_ref())?,
        mmd: raw.mmd,
        operator: operator.to_string(),
    })
}

/// A log prefix: an absolute http(s) URL, normalised to end in `/`.
fn log_url(url: Option<String>, field: &str) -> Result<String, String> {
    let mut url = url.ok_or_else(|| format!("missing {field}"))?;
    check_http_url(&url).map_err(|reason| format!("{field}: {reason}"))?;
    if url.contains(['?', '#']) {
        return Err(format!("{field} has a query or fragment"));
    }
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

fn parse_state(state: Option<&serde_json::Map<String, Value>>) -> Result<LogState, String> {
    let Some(state) = state else {
        return Ok(LogState::None);
    };
    let mut names = state.keys();
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err("state must have exactly one key".into());
    };
    Ok(match name.as_str() {
        "pending" => LogState::Pending,
        "qualified" => LogState::Qualified,
        "usable" => LogState::Usable,
        "retired" => LogState::Retired,
        "rejected" => LogState::Rejected,
        "readonly" => {
            let size = state
                .get(name)
                .and_then(|s| s.get("final_tree_head"))
                .and_then(|h| h.get("tree_size"))
                .and_then(Value::as_u64);
            LogState::ReadOnly {
                final_tree_size: size.ok_or("readonly state without final_tree_head.tree_size")?,
            }
        }
        other => return Err(format!("unknown state {other:?}")),
    })
}

/// Checks Google's detached signature: RSA PKCS#1 v1.5 with SHA-256 over the exact list bytes, by the key in
/// `pubkey_pem` (a PEM SubjectPublicKeyInfo).
pub fn verify_signature(
    json: &[u8],
    signature: &[u8],
    pubkey_pem: &[u8],
) -> Result<(), LogListError> {
    let bad_key = |why: String| LogListError::BadSigningKey(why);
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pubkey_pem).map_err(|e| bad_key(e.to_string()))?;
    if pem.label != "PUBLIC KEY" {
        return Err(bad_key(format!(
            "PEM label is {:?}, not PUBLIC KEY",
            pem.label
        )));
    }
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&pem.contents)
        .map_err(|e| bad_key(e.to_string()))?;
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return Err(bad_key("not an RSA key".into()));
    }
    // ring wants the PKCS#1 RSAPublicKey that the SPKI wraps.
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &spki.subject_public_key.data,
    )
    .verify(json, signature)
    .map_err(|_| LogListError::BadSignature)
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host and no user info, spaces or control
/// characters. The reason never quotes the URL (it may carry credentials and skipped logs are logged).
fn check_http_url(url: &str) -> Result<(), &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("not an absolute URL")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err("scheme is not http or https");
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err("user info is not supported");
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("empty host");
    }
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("contains spaces or control characters");
    }
    Ok(())
}
