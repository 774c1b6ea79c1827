//! A CT log's key pair, signed RFC 6962 tree heads and signed checkpoints: the mock log's own definition
//! (`mock_ct_log::signing`), so the tests' scripted logs and the mock sign the same way.

pub use mock_ct_log::signing::{LogSigner, checkpoint_body};

/// A new log key (panics if the system RNG fails, which a test cannot work around).
pub fn log_signer() -> LogSigner {
    LogSigner::generate().expect("a P-256 log key")
}
