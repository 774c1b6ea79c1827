//! Certificate Transparency: log entries decoded without I/O (RFC 6962 get-entries and static-ct-api data tiles),
//! log lists, and signed tree heads / checkpoints.

pub mod checkpoint;
pub mod entry;
pub mod get_entries;
pub mod log_list;
mod reader;
pub mod tile;
