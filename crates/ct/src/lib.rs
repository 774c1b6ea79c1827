//! Certificate Transparency: log entries decoded without I/O (RFC 6962 get-entries and static-ct-api data tiles),
//! log lists, and signed tree heads / checkpoints.
//!
//! Nothing here does I/O or keeps time: callers fetch the bytes (a get-entries page, a data tile, a checkpoint, a
//! log list) and hand them in; entries borrow from those bytes instead of copying certificates. The protocol notes
//! the code follows are in the repository's `docs/ct-protocols.md`.
//!
//! - [`entry`]: a log entry (`MerkleTreeLeaf`, `TimestampedEntry`, chains) decoded from either protocol.
//! - [`get_entries`]: RFC 6962 `get-entries` pages scanned item by item within a byte budget.
//! - [`tile`]: static-ct-api data tiles (`TileLeaf` records) and tile paths.
//! - [`log_key`]: a log's public key and the `DigitallySigned` check every tree head signature goes through.
//! - [`tree_head`]: RFC 6962 signed tree heads (`get-sth`) and the verified tree head both log kinds end in.
//! - [`checkpoint`]: static-ct-api checkpoints (signed notes), verified.
//! - [`log_list`]: Google's v3 log list (and Apple's), its signature, and the logs worth following.

#![warn(missing_docs, unreachable_pub)]

pub mod checkpoint;
pub mod entry;
pub mod get_entries;
pub mod log_key;
pub mod log_list;
mod reader;
pub mod tile;
pub mod tree_head;
