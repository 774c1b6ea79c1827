use certstream_ws::frame::Frame;

/// The three stream variants a client can subscribe to (docs/wire-format.md §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `/`: `certificate_update` without `data.chain` and without `leaf_cert.as_der`.
    Lite,
    /// `/full-stream`: with the chain and every `as_der`.
    Full,
    /// `/domains-only`: `{"data":[…],"message_type":"dns_entries"}`.
    DomainsOnly,
}

impl StreamKind {
    /// Every variant, in a fixed order (for per-stream counters).
    pub(crate) const ALL: [StreamKind; 3] =
        [StreamKind::Lite, StreamKind::Full, StreamKind::DomainsOnly];
}

/// One message (one log entry) in its three encodings, one per stream variant, each a complete WebSocket text
/// frame ready for any number of clients.
#[derive(Clone, Debug)]
pub struct EncodedMessage {
    pub lite: Frame,
    pub full: Frame,
    pub domains: Frame,
}

impl EncodedMessage {
    /// The frame for one stream variant.
    pub fn get(&self, kind: StreamKind) -> &Frame {
        match kind {
            StreamKind::Lite => &self.lite,
            StreamKind::Full => &self.full,
            StreamKind::DomainsOnly => &self.domains,
        }
    }
}
