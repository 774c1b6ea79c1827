//! The monoio runtime of tests and benchmarks: the server's own builder (io_uring, epoll when io_uring is
//! missing or `MONOIO_FORCE_LEGACY_DRIVER` is set), so tests run on the driver production would pick.

use std::future::Future;

/// Runs `future` to completion on a new monoio runtime with timers, on this thread.
pub fn block_on<F: Future>(future: F) -> F::Output {
    certstream::runtime::block_on(future).expect("a monoio runtime")
}
