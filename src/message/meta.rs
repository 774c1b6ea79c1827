use std::rc::Rc;
use std::sync::Arc;

use certstream_ct::entry::EntryType;

use super::EncodedMessage;

/// What the outputs may want to know about a message without parsing its JSON: what filters match on, what
/// deduplication keys on, where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageMeta {
    /// The source log's ID (base64, as listed; shared, and sendable to an output's own thread); empty for messages not built from a listed log (tests, benchmarks).
    pub log_id: Arc<str>,
    /// The entry's index in its log.
    pub index: u64,
    /// Whether the entry is a certificate or a precertificate.
    pub entry_type: EntryType,
    /// SHA-256 of the certificate the message describes (`leaf_cert.sha256`, uppercase colon hex): the same
    /// certificate logged to several logs has the same fingerprint; a precertificate and its final certificate differ.
    pub fingerprint: Box<str>,
    /// The issuer's aggregated name (`leaf_cert.issuer.aggregated`).
    pub issuer: Box<str>,
    /// `leaf_cert.all_domains`: subject CN ∪ SAN dNSNames, deduplicated, sorted by bytes.
    pub all_domains: Box<[String]>,
    /// Its JetStream stream sequence when it was read from the stream (relays, and the ingester with
    /// `--nats-url`): the cursor a client resumes after (`crate::cursor`); `None` for a message straight from a log.
    pub cursor: Option<u64>,
}

impl Default for MessageMeta {
    fn default() -> Self {
        Self {
            log_id: Arc::from(""),
            index: 0,
            entry_type: EntryType::X509,
            fingerprint: Box::default(),
            issuer: Box::default(),
            all_domains: Box::default(),
            cursor: None,
        }
    }
}

/// One log entry as published: its metadata and its three encodings.
#[derive(Clone, Debug)]
pub struct Message {
    /// What outputs select and deduplicate on.
    pub meta: MessageMeta,
    /// The three stream variants, framed.
    pub frames: EncodedMessage,
}

impl Message {
    /// What the message weighs in memory: its three frames (what queues of whole messages count).
    pub fn weight(&self) -> usize {
        let frames = &self.frames;
        frames.full.wire().len() + frames.lite.wire().len() + frames.domains.wire().len()
    }
}

impl From<EncodedMessage> for Message {
    /// Frames without metadata (tests and benchmarks that publish prepared frames): they match no domain, keyword,
    /// regex or issuer filter.
    fn from(frames: EncodedMessage) -> Self {
        Self {
            meta: MessageMeta::default(),
            frames,
        }
    }
}

impl From<EncodedMessage> for Rc<Message> {
    /// As `Message::from`, shared (what [`crate::hub::Hub::publish`] takes).
    fn from(frames: EncodedMessage) -> Self {
        Rc::new(frames.into())
    }
}
