//! Parsing an RFC 6962 `get-entries` JSON body (`{"entries":[{"leaf_input":"<b64>","extra_data":"<b64>"}]}`)
//! into base64-decoded entries, ready for [`decode_rfc6962`](super::entry::decode_rfc6962).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Default of the body bytes allowed per entry asked for: real entries (certificate and chain, in base64
/// JSON) average 5–10 KB.
pub const DEFAULT_BYTES_PER_ENTRY: usize = 64 * 1024;
/// Every get-entries body may be this large whatever was asked for: room for one outsized (but accepted) entry.
const MIN_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The largest get-entries body accepted for `requested` entries: what was asked for, not what a log sends,
/// bounds the bytes read (a log answering with a 60 MB body of tiny entries is refused).
pub fn body_limit(requested: u64, bytes_per_entry: usize) -> usize {
    usize::try_from(requested)
        .unwrap_or(usize::MAX)
        .saturating_mul(bytes_per_entry)
        .max(MIN_BODY_LIMIT)
}

/// One get-entries item, base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The `MerkleTreeLeaf` bytes.
    pub leaf_input: Vec<u8>,
    /// The certificate chain (x509) or `PrecertChainEntry` (precert).
    pub extra_data: Vec<u8>,
}

/// A get-entries body that is not the expected JSON (the whole body is unusable), or an item holding invalid
/// base64 (that item alone is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetEntriesError {
    /// Not JSON, or not an object with an `entries` array of `{leaf_input, extra_data}` strings.
    Json(String),
    /// A field of one item is not valid standard-alphabet base64.
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

/// Strings are borrowed from the body unless they contain JSON escapes (e.g. `\/`), which `Cow` handles.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    leaf_input: Cow<'a, str>,
    #[serde(borrow)]
    extra_data: Cow<'a, str>,
}

/// Parses a whole get-entries body with serde_json (borrowed strings, then base64), failing on the first bad
/// item. Entries are in log order from the requested `start`; an empty `entries` array is returned as an empty Vec.
pub fn parse_get_entries(body: &[u8]) -> Result<Vec<RawEntry>, GetEntriesError> {
    let page = scan_get_entries(body, usize::MAX)?;
    page.decode(0..page.len()).into_iter().collect()
}

/// A get-entries body whose JSON was read but whose base64 is not decoded yet, so that decoding can be done in
/// pieces (each piece a short step for the reactor).
pub struct GetEntriesPage<'a> {
    items: Vec<Item<'a>>,
}

impl GetEntriesPage<'_> {
    /// Entries read.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the `entries` array was empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Base64-decodes the entries at positions `range` (clipped to [`len`](Self::len)), one result per entry:
    /// the JSON framing was read, so every item's boundaries are known and a bad one costs only itself.
    pub fn decode(&self, range: Range<usize>) -> Vec<Result<RawEntry, GetEntriesError>> {
        let end = range.end.min(self.items.len());
        let first = range.start.min(end);
        let items = &self.items[first..end];
        items
            .iter()
            .enumerate()
            .map(|(offset, item)| decode_item(first + offset, item))
            .collect()
    }
}

/// Reads the JSON of a get-entries body up to its first `max` entries, borrowing their strings. Parsing stops
/// there: whatever a log sends beyond what was asked for costs nothing (it is not even checked to be JSON).
pub fn scan_get_entries(body: &[u8], max: usize) -> Result<GetEntriesPage<'_>, GetEntriesError> {
    let mut items = Vec::new();
    let mut enough = false;
    let seed = BodySeed {
        items: &mut items,
        max,
        enough: &mut enough,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = seed
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match parsed {
        Ok(()) => Ok(GetEntriesPage { items }),
        Err(_) if enough => Ok(GetEntriesPage { items }),
        Err(error) => Err(GetEntriesError::Json(error.to_string())),
    }
}

fn decode_item(entry: usize, item: &Item<'_>) -> Result<RawEntry, GetEntriesError> {
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
}

/// The top-level object: `entries` is read item by item, other fields are skipped. `enough` is set when
/// reading stopped at `max` items (serde_json is told by an error).
struct BodySeed<'s, 'de> {
    items: &'s mut Vec<Item<'de>>,
    max: usize,
    enough: &'s mut bool,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // As `#[derive(Deserialize)]` on a struct `Body { entries }` does.
        deserializer.deserialize_struct("Body", &["entries"], self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with an `entries` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "entries" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen {
                return Err(de::Error::duplicate_field("entries"));
            }
            seen = true;
            map.next_value_seed(ItemsSeed {
                items: &mut *self.items,
                max: self.max,
                enough: &mut *self.enough,
            })?;
        }
        if seen {
            Ok(())
        } else {
            Err(de::Error::missing_field("entries"))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let items = ItemsSeed {
            items: self.items,
            max: self.max,
            enough: self.enough,
        };
        match seq.next_element_seed(items)? {
            Some(()) => Ok(()),
            None => Err(de::Error::invalid_length(0, &"struct Body with 1 element")),
        }
    }
}

/// The `entries` array, read until `max` items.
struct ItemsSeed<'s, 'de> {
    items: &'s mut Vec<Item<'de>>,
    max: usize,
    enough: &'s mut bool,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {leaf_input, extra_data}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.items.len() < self.max {
            match seq.next_element::<Item<'de>>()? {
                Some(item) => self.items.push(item),
                None => return Ok(()),
            }
        }
        // Enough: stop here instead of reading (and checking) the rest of the body.
        *self.enough = true;
        Err(de::Error::custom("enough entries"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"{"leaf_input":"AAE=","extra_data":"Ag=="}"#;

    /// The first `max` entries of `body`, decoded.
    fn parse_get_entries_upto(body: &[u8], max: usize) -> Result<Vec<RawEntry>, GetEntriesError> {
        let page = scan_get_entries(body, max)?;
        page.decode(0..page.len()).into_iter().collect()
    }

    fn body(entries: usize, tail: &str) -> String {
        let items = vec![ENTRY; entries].join(",");
        format!(r#"{{"entries":[{items}{tail}"#)
    }

    #[test]
    fn only_the_requested_entries_are_read() {
        let whole = body(5, "]}");
        assert_eq!(parse_get_entries(whole.as_bytes()).map(|e| e.len()), Ok(5));
        assert_eq!(
            parse_get_entries_upto(whole.as_bytes(), 3).map(|e| e.len()),
            Ok(3)
        );
        assert_eq!(
            parse_get_entries_upto(whole.as_bytes(), 9).map(|e| e.len()),
            Ok(5)
        );
        // What follows the requested entries is never looked at: bad base64, bad JSON, a cut body.
        let hostile = body(3, r#",{"leaf_input":"!!","extra_data":""},nonsense"#);
        assert_eq!(
            parse_get_entries_upto(hostile.as_bytes(), 3).map(|e| e.len()),
            Ok(3)
        );
        assert!(parse_get_entries(hostile.as_bytes()).is_err());
        assert!(matches!(
            parse_get_entries_upto(hostile.as_bytes(), 4),
            Err(GetEntriesError::Base64 {
                entry: 3,
                field: "leaf_input",
                ..
            })
        ));
        // Other fields before `entries` are skipped; a missing or repeated `entries` is an error.
        let padded = format!(r#"{{"note":[1,{{"a":"b"}}],"entries":[{ENTRY}]}}"#);
        assert_eq!(
            parse_get_entries_upto(padded.as_bytes(), 1).map(|e| e.len()),
            Ok(1)
        );
        for bad in [
            r#"{"other":[]}"#,
            r#"{"entries":[],"entries":[]}"#,
            "[]",
            "{",
        ] {
            assert!(parse_get_entries_upto(bad.as_bytes(), 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_page_decodes_in_pieces_with_absolute_positions() {
        let text = body(4, r#",{"leaf_input":"!!","extra_data":""}]}"#);
        let page = scan_get_entries(text.as_bytes(), usize::MAX).expect("JSON");
        assert_eq!(page.len(), 5);
        let first = page.decode(0..2);
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[1].as_ref().map(|e| &e.leaf_input[..]),
            Ok(&[0, 1][..])
        );
        assert_eq!(page.decode(2..4).iter().filter(|e| e.is_ok()).count(), 2);
        let last = page.decode(3..9);
        assert_eq!(last.len(), 2, "clipped to the page");
        assert!(matches!(
            last[1],
            Err(GetEntriesError::Base64 { entry: 4, .. })
        ));
        assert_eq!(page.decode(7..9), Vec::new());
    }

    #[test]
    fn a_bad_item_costs_only_itself() {
        // Item 1's leaf_input and item 3's extra_data are not base64; their neighbours decode.
        let bad_leaf = r#"{"leaf_input":"not base64!","extra_data":"Ag=="}"#;
        let bad_extra = r#"{"leaf_input":"AAE=","extra_data":"A"}"#;
        let text = format!(r#"{{"entries":[{ENTRY},{bad_leaf},{ENTRY},{bad_extra},{ENTRY}]}}"#);
        let page =
            scan_get_entries(text.as_bytes(), usize::MAX).expect("the JSON framing is intact");
        let decoded = page.decode(0..page.len());
        let fields: Vec<Option<&str>> = decoded
            .iter()
            .map(|item| match item {
                Ok(_) => None,
                Err(GetEntriesError::Base64 { field, .. }) => Some(*field),
                Err(GetEntriesError::Json(_)) => Some("json"),
            })
            .collect();
        assert_eq!(
            fields,
            [None, Some("leaf_input"), None, Some("extra_data"), None]
        );
        assert!(matches!(
            decoded[1],
            Err(GetEntriesError::Base64 { entry: 1, .. })
        ));
        for good in [0, 2, 4] {
            assert_eq!(
                decoded[good]
                    .as_ref()
                    .map(|e| (&e.leaf_input[..], &e.extra_data[..])),
                Ok((&[0u8, 1][..], &[2u8][..]))
            );
        }
    }

    #[test]
    fn a_huge_body_of_tiny_entries_costs_only_what_was_asked() {
        // 1.5 M tiny entries after the 2 requested; reading only 2 must not even scan the rest.
        let mut text = body(2, "");
        for _ in 0..1_500_000 {
            text.push_str(r#",{"leaf_input":"AA==","extra_data":""}"#);
        }
        text.push_str("]}");
        let page = scan_get_entries(text.as_bytes(), 2).expect("JSON");
        assert_eq!(page.len(), 2, "stopped after what was asked");
    }
}
