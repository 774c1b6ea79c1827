//! Certificate Transparency: log entries decoded without I/O (RFC 6962 get-entries and static-ct-api data tiles).

pub mod entry;
pub mod get_entries;
mod reader;
pub mod tile;
