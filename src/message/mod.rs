//! Message building: each log entry is serialized once per stream variant and framed once, and the resulting
//! frames are shared by every client of that variant.

mod builder;
mod chain_cache;
mod encoded;
mod meta;
mod source;

pub(crate) use builder::seen_now;
pub use builder::{BuildCounters, BuildError, BuildLimits, MessageBuilder};
pub use encoded::{EncodedMessage, StreamKind};
pub use meta::{Message, MessageMeta};
pub use source::{LogSource, SourceKind};
