//! Waiting for a condition that a test cannot be told about, by polling: the one loop behind every `wait_*`.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `probe` until `done` holds for what it returned, and returns that; fails the test after `timeout`,
/// naming `what` and showing the last value through `describe`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
    describe: impl Fn(&T) -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe();
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {}",
            describe(&value)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}
