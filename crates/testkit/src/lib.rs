//! The one test kit of the certstream workspace: the corpus, the mock CT log in-process, the real `certstream`
//! binary as a child process, an in-process server, HTTP and WebSocket test clients, and certificates built in
//! the test. Every integration test and benchmark uses it instead of its own copy.

pub mod corpus;
pub mod der;
pub mod e2e;
pub mod examples;
pub mod python;
pub mod server;

use std::path::PathBuf;

pub use e2e::*;
pub use server::*;

/// The `certstream` binary Cargo built beside the running test (`target/<profile>/certstream`).
pub fn certstream_binary() -> String {
    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/certstream
    let profile_dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test runs from target/<profile>/deps");
    let binary = profile_dir.join("certstream");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --profile <profile>` (cargo test builds it for the root package's tests)",
        binary.display()
    );
    binary.to_string_lossy().into_owned()
}
