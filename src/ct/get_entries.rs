//! Parsing an RFC 6962 `get-entries` JSON body (`{"entries":[{"leaf_input":"<b64>","extra_data":"<b64>"}]}`)
//! into base64-decoded entries, ready for [`decode_rfc6962`](super::entry::decode_rfc6962).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// One get-entries item, base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The `MerkleTreeLeaf` bytes.
    pub leaf_input: Vec<u8>,
    /// The certificate chain (x509) or `PrecertChainEntry` (precert).
    pub extra_data: Vec<u8>,
}

/// A get-entries body that is not the expected JSON, or holds invalid base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetEntriesError {
    /// Not JSON, or not an object with an `entries` array of `{leaf_input, extra_data}` strings.
    Json(String),
    /// A field is not valid standard-alphabet base64.
    Base64 {
        /// Position of the entry in `entries`.
        entry: usize,
        /// `"leaf_input"` or `"extra_data"`.
        field: &'static str,
        /// What the base64 decoder rejected.
        error: base64::DecodeError,
    },
}

impl fmt::Display for GetEntriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetEntriesError::Json(message) => write!(f, "get-entries body is not valid: {message}"),
            GetEntriesError::Base64 {
                entry,
                field,
                error,
            } => {
                write!(
                    f,
                    "get-entries entry {entry}: {field} is not valid base64: {error}"
                )
            }
        }
    }
}

impl std::error::Error for GetEntriesError {}

/// The JSON shape; unknown fields are ignored.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    entries: Vec<Item<'a>>,
}

/// Strings are borrowed from the body unless they contain JSON escapes (e.g. `\/`), which `Cow` handles.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    leaf_input: Cow<'a, str>,
    #[serde(borrow)]
    extra_data: Cow<'a, str>,
}

/// Parses a get-entries body with serde_json (borrowed strings, then base64). Entries are in log order from
/// the requested `start`; an empty `entries` array is returned as an empty Vec.
pub fn parse_get_entries(body: &[u8]) -> Result<Vec<RawEntry>, GetEntriesError> {
    let body: Body<'_> =
        serde_json::from_slice(body).map_err(|e| GetEntriesError::Json(e.to_string()))?;
    decode_items(body.entries)
}

/// Same result as [`parse_get_entries`], parsed with simd-json, which uses `body` as scratch space
/// (its contents are unspecified afterwards).
pub fn parse_get_entries_simd(body: &mut [u8]) -> Result<Vec<RawEntry>, GetEntriesError> {
    let body: Body<'_> =
        simd_json::serde::from_slice(body).map_err(|e| GetEntriesError::Json(e.to_string()))?;
    decode_items(body.entries)
}

fn decode_items(items: Vec<Item<'_>>) -> Result<Vec<RawEntry>, GetEntriesError> {
    items
        .iter()
        .enumerate()
        .map(|(entry, item)| {
            let decode = |field: &'static str, text: &str| {
                STANDARD
                    .decode(text)
                    .map_err(|error| GetEntriesError::Base64 {
                        entry,
                        field,
                        error,
                    })
            };
            Ok(RawEntry {
                leaf_input: decode("leaf_input", &item.leaf_input)?,
                extra_data: decode("extra_data", &item.extra_data)?,
            })
        })
        .collect()
}
