//! Message building: each log entry is serialized once per stream variant and framed once, and the resulting
//! frames are shared by every client of that variant.

mod frames;

pub use frames::{Frames, StreamKind};
