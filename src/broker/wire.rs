//! What goes to NATS for each message (docs/wire-format.md §10): one message per log entry on `<prefix>.entries`,
//! whose payload is the three stream payloads as three lines, and whose headers carry the metadata.
//!
//! One message per entry, not one per variant: JetStream deduplicates by `Nats-Msg-Id` across the whole stream, so
//! the ID `<log_id>:<index>` can name only one message; one entry is one stream sequence (the cursor a replay will
//! start from); and a relay gets the three variants byte-exactly by splitting the lines ([`split`]), with nothing to
//! rebuild. The lines are the exact WebSocket payloads: compact JSON never holds a raw newline.
//!
//! Read back ([`decode`]), a message's stream sequence becomes its cursor, the first key of each payload
//! (`{"cursor":17,"data":…}`: keys stay in byte order), so every reader of the stream serves the same bytes.

use std::borrow::Cow;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::{BufMut, Bytes, BytesMut};
use certstream_ct::entry::EntryType;
use certstream_ws::frame::Frame;
use serde::Deserialize;

use crate::message::{EncodedMessage, Message, MessageMeta};

/// Where messages are published, after the prefix.
const SUBJECT_SUFFIX: &str = "entries";

/// The header holding the log ID (base64, as listed).
pub const LOG_ID_HEADER: &str = "Certstream-Log-Id";
/// The header holding the entry's index in its log (decimal).
pub const INDEX_HEADER: &str = "Certstream-Index";
/// The header holding `X509LogEntry` or `PrecertLogEntry` (as the message's `update_type`).
pub const ENTRY_TYPE_HEADER: &str = "Certstream-Entry-Type";

/// The subject of every message under `prefix`.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}.{SUBJECT_SUFFIX}")
}

/// The `Nats-Msg-Id` of entry `index` of the log `log_id`: the same entry published again (a restart that resumes
/// a little behind, a retried publish) is dropped by the stream within its duplicate window.
pub fn message_id(log_id: &str, index: u64) -> String {
    format!("{log_id}:{index}")
}

/// The payload: the full, lite and domains-only payloads, in that order, separated by `\n` (so the first line alone
/// is the full message, for consumers that want plain JSON).
pub fn envelope(frames: &EncodedMessage) -> Bytes {
    let parts = [
        frames.full.payload(),
        frames.lite.payload(),
        frames.domains.payload(),
    ];
    debug_assert!(parts.iter().all(|p| !p.contains(&b'\n')), "compact JSON");
    let mut out = BytesMut::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b'\n');
        }
        out.put_slice(part);
    }
    out.freeze()
}

/// The three payloads of an [`envelope`]: `[full, lite, domains]`; `None` if it is not three lines.
pub fn split(payload: &[u8]) -> Option<[&[u8]; 3]> {
    let mut lines = payload.split(|&b| b == b'\n');
    let parts = [lines.next()?, lines.next()?, lines.next()?];
    lines.next().is_none().then_some(parts)
}

/// The message read back from the stream at sequence `cursor`: the three payloads with the cursor as their first
/// key, and the metadata the hub filters and deduplicates on (from the headers and the lite payload). `Err` says
/// why a message is not one of ours: every line must be a JSON object (clients are sent it as a text frame, and a
/// browser closes on invalid UTF-8), without a cursor of its own, and the log must be named.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8], cursor: u64) -> Result<Message, String> {
    let [full, lite, domains] = split(payload).ok_or("the payload is not three lines")?;
    for line in [full, lite, domains] {
        // serde_json skips what it ignores without checking its UTF-8.
        std::str::from_utf8(line).map_err(|e| format!("a payload is not UTF-8: {e}"))?;
    }
    for line in [full, domains] {
        serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .map_err(|e| format!("a payload is not JSON: {e}"))?;
    }
    let leaf = serde_json::from_slice::<LitePayload<'_>>(lite)
        .map_err(|e| format!("the lite payload: {e}"))?
        .data;
    let log_id = headers
        .and_then(|h| h.get(LOG_ID_HEADER))
        .ok_or(format!("no {LOG_ID_HEADER} header"))?;
    let entry_type = match leaf.update_type {
        "X509LogEntry" => EntryType::X509,
        "PrecertLogEntry" => EntryType::Precert,
        other => return Err(format!("unknown update_type {other:?}")),
    };
    let meta = MessageMeta {
        log_id: log_id.as_str().into(),
        index: leaf.cert_index,
        entry_type,
        fingerprint: leaf.leaf_cert.sha256.into(),
        issuer: leaf.leaf_cert.issuer.aggregated.into(),
        all_domains: leaf.leaf_cert.all_domains.into(),
        cursor: Some(cursor),
    };
    let digits = cursor.to_string();
    let with_cursor = |payload: &[u8]| match payload.strip_prefix(b"{") {
        Some(rest) if rest.first() == Some(&b'"') && !rest.starts_with(b"\"cursor\"") => {
            Ok(Frame::text_from_parts(&[
                b"{\"cursor\":",
                digits.as_bytes(),
                b",",
                rest,
            ]))
        }
        _ => Err("a payload is not a JSON object of keys without a cursor".to_owned()),
    };
    let frames = EncodedMessage {
        full: with_cursor(full)?,
        lite: with_cursor(lite)?,
        domains: with_cursor(domains)?,
    };
    Ok(Message { meta, frames })
}

/// What [`decode`] reads of the lite payload (serde skips the rest).
#[derive(Deserialize)]
struct LitePayload<'a> {
    #[serde(borrow)]
    data: LiteData<'a>,
}

#[derive(Deserialize)]
struct LiteData<'a> {
    cert_index: u64,
    #[serde(borrow)]
    leaf_cert: LiteLeaf<'a>,
    update_type: &'a str,
}

#[derive(Deserialize)]
struct LiteLeaf<'a> {
    all_domains: Vec<String>,
    #[serde(borrow)]
    issuer: LiteIssuer<'a>,
    #[serde(borrow)]
    sha256: Cow<'a, str>,
}

#[derive(Deserialize)]
struct LiteIssuer<'a> {
    #[serde(borrow)]
    aggregated: Cow<'a, str>,
}

/// The headers of a message: its ID and what a consumer selects on without parsing the payload.
pub fn headers(meta: &MessageMeta) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        NATS_MESSAGE_ID,
        message_id(&meta.log_id, meta.index).as_str(),
    );
    headers.insert(LOG_ID_HEADER, &*meta.log_id);
    headers.insert(INDEX_HEADER, meta.index.to_string().as_str());
    headers.insert(
        ENTRY_TYPE_HEADER,
        match meta.entry_type {
            EntryType::X509 => "X509LogEntry",
            EntryType::Precert => "PrecertLogEntry",
        },
    );
    headers
}

/// Whether the subject filter `pattern` (with NATS wildcards: `*` one token, `>` the rest) matches `subject`.
pub(super) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(actual)) if token == actual => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use certstream_ws::frame::Frame;

    #[test]
    fn the_envelope_splits_back_into_the_exact_payloads() {
        let frames = EncodedMessage {
            lite: Frame::text_from_parts(&[b"{\"lite\":\"a\\nb\"}"]),
            full: Frame::text_from_parts(&[b"{\"full\":1}"]),
            domains: Frame::text_from_parts(&[b"{\"data\":[]}"]),
        };
        let payload = envelope(&frames);
        assert_eq!(
            split(&payload),
            Some([
                frames.full.payload(),
                frames.lite.payload(),
                frames.domains.payload()
            ])
        );
        assert_eq!(split(b"a\nb"), None);
        assert_eq!(split(b"a\nb\nc\nd"), None);
    }

    #[test]
    fn headers_name_the_entry() {
        let meta = MessageMeta {
            log_id: "bG9n".into(),
            index: 42,
            entry_type: EntryType::Precert,
            ..MessageMeta::default()
        };
        let headers = headers(&meta);
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("bG9n:42"));
        assert_eq!(get(LOG_ID_HEADER).as_deref(), Some("bG9n"));
        assert_eq!(get(INDEX_HEADER).as_deref(), Some("42"));
        assert_eq!(get(ENTRY_TYPE_HEADER).as_deref(), Some("PrecertLogEntry"));
    }

    #[test]
    fn subject_filters_match_as_nats_does() {
        let ours = "certstream.entries";
        for (pattern, matches) in [
            ("certstream.entries", true),
            ("certstream.>", true),
            ("certstream.*", true),
            (">", true),
            ("*.entries", true),
            ("certstream", false),
            ("certstream.entries.x", false),
            ("certstream.*.x", false),
            ("other.>", false),
        ] {
            assert_eq!(subject_matches(pattern, ours), matches, "{pattern}");
        }
    }
}
