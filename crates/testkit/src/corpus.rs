//! The repository's test corpus of real CT data (`tests/corpus`, see its README), or `$CERTSTREAM_CORPUS`.

use std::path::PathBuf;

/// The corpus folder.
pub fn dir() -> PathBuf {
    std::env::var_os("CERTSTREAM_CORPUS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus")),
        PathBuf::from,
    )
}

/// The bytes of `path` inside the corpus (e.g. `loglist/google_log_list_v3.json`).
pub fn read(path: &str) -> Vec<u8> {
    let file = dir().join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("corpus file {}: {e}", file.display()))
}
