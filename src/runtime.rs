//! The one way the process (and every test) builds its single-threaded monoio runtime.

use std::io;

/// Builds the runtime (io_uring, or epoll where io_uring is unavailable or `MONOIO_FORCE_LEGACY_DRIVER=1`) and
/// runs `future` on it to completion.
pub fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut runtime) => Ok(runtime.block_on(future)),
        Err(error) => {
            // The io_uring probe can pass and the ring still fail to build (e.g. ENOMEM): fall back by hand.
            tracing::warn!(%error, "io_uring runtime failed to build, using epoll");
            let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(runtime.block_on(future))
        }
    }
}
