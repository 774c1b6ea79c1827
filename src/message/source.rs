use std::sync::Arc;

use certstream_ct::tile::tile_path;

/// The kind of a message's source log: it decides `source.type` and the shape of `cert_link` (the log list's
/// [`certstream_ct::log_list::LogKind`] also carries the URLs to read from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// RFC 6962 (`get-sth` / `get-entries`).
    Rfc6962,
    /// static-ct-api: reads (and `cert_link`) go to the monitoring prefix.
    Tiled {
        /// The monitoring prefix as listed, with its trailing `/`.
        monitoring_url: String,
    },
}

/// A log as it appears in every message it produces: its `source` object, serialized once when the log is
/// configured rather than once per entry.
#[derive(Clone, Debug)]
pub struct LogSource {
    kind: SourceKind,
    url: String,
    /// The log ID (base64), for message metadata; empty until [`LogSource::with_log_id`].
    log_id: Arc<str>,
    /// `{"name":…,"timestamp":` — the timestamp varies per entry.
    json_head: String,
    /// `,"type":…,"url":…}`.
    json_tail: String,
}

impl LogSource {
    /// `name` is the log's description and `url` its URL exactly as listed (for tiled logs the submission URL,
    /// the log's identity).
    pub fn new(name: &str, url: &str, kind: SourceKind) -> Self {
        let kind_name = match kind {
            SourceKind::Rfc6962 => "rfc6962",
            SourceKind::Tiled { .. } => "tiled",
        };
        let json_head = format!("{{\"name\":{},\"timestamp\":", json_string(name));
        let json_tail = format!(",\"type\":\"{kind_name}\",\"url\":{}}}", json_string(url));
        Self {
            kind,
            url: url.to_owned(),
            log_id: Arc::from(""),
            json_head,
            json_tail,
        }
    }

    /// The same log, identified by its log ID (base64, as listed) in message metadata.
    pub fn with_log_id(self, log_id: &str) -> Self {
        Self {
            log_id: Arc::from(log_id),
            ..self
        }
    }

    /// The log ID given by [`LogSource::with_log_id`], empty without one.
    pub(crate) fn log_id(&self) -> Arc<str> {
        self.log_id.clone()
    }

    /// The log's read protocol.
    pub fn kind(&self) -> &SourceKind {
        &self.kind
    }

    /// Appends the JSON `source` object of an entry logged at `timestamp_ms`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, timestamp_ms: u64) {
        out.extend_from_slice(self.json_head.as_bytes());
        write_f64(out, timestamp_ms as f64 / 1000.0);
        out.extend_from_slice(self.json_tail.as_bytes());
    }

    /// Appends the JSON string of `cert_link` for entry `index`: RFC 6962 logs link to the one-entry `get-entries`
    /// range; tiled logs to the full data tile holding the entry, which is stable and fetchable once the tile fills.
    pub(crate) fn write_cert_link(&self, out: &mut Vec<u8>, index: u64) {
        let link = match &self.kind {
            SourceKind::Rfc6962 => {
                format!("{}ct/v1/get-entries?start={index}&end={index}", self.url)
            }
            SourceKind::Tiled { monitoring_url } => {
                format!("{monitoring_url}tile/data/{}", tile_path(index / 256, None))
            }
        };
        write_json_string(out, &link);
    }
}

/// A JSON string literal (escaped, quoted).
fn json_string(s: &str) -> String {
    // `Value`'s Display is serde_json's compact writer, as `write_json_string`.
    serde_json::Value::from(s).to_string()
}

/// Appends `s` as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a float the way CaliDog's encoder prints it: shortest round-trip form, always with a fraction.
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) {
    let _ = serde_json::to_writer(&mut *out, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_object_and_links() {
        let log = LogSource::new(
            "Google 'Argon2018' log",
            "https://ct.googleapis.com/logs/argon2018/",
            SourceKind::Rfc6962,
        );
        let mut out = Vec::new();
        log.write_json(&mut out, 1519203335519);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"name":"Google 'Argon2018' log","timestamp":1519203335.519,"type":"rfc6962","url":"https://ct.googleapis.com/logs/argon2018/"}"#
        );
        let mut link = Vec::new();
        log.write_cert_link(&mut link, 301543211);
        assert_eq!(
            String::from_utf8(link).unwrap(),
            r#""https://ct.googleapis.com/logs/argon2018/ct/v1/get-entries?start=301543211&end=301543211""#
        );

        let tiled = LogSource::new(
            "Tiled \"test\" log",
            "https://log.example/2026h2/",
            SourceKind::Tiled {
                monitoring_url: "https://mon.example/2026h2/".into(),
            },
        );
        let mut out = Vec::new();
        tiled.write_json(&mut out, 1746292399000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"name":"Tiled \"test\" log","timestamp":1746292399.0,"type":"tiled","url":"https://log.example/2026h2/"}"#
        );
        let mut link = Vec::new();
        tiled.write_cert_link(&mut link, 1234067 * 256 + 5);
        assert_eq!(
            String::from_utf8(link).unwrap(),
            r#""https://mon.example/2026h2/tile/data/x001/x234/067""#
        );
    }
}
