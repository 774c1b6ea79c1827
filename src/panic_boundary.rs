//! Panic boundaries. monoio does not catch panics in tasks, so one panicking task would take the whole runtime
//! (every client, every log) down. Work that hostile input can reach runs inside a boundary instead: a connection
//! task ([`CatchUnwind`] in `server`), each log's poller ([`CatchUnwind`] in `ingest::supervisor`, which restarts
//! it) and the building of each log entry ([`catch`] in `ingest`). The release profile keeps `panic = "unwind"`
//! for this.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// Routes panic messages to the process log (`logging`: never blocks, drops counted) instead of the default hook's
/// write to stderr, which blocks the reactor when stderr is a stalled pipe, once per caught panic. At most one line
/// a second; the lines held back are counted in the next one. The boundaries log each panic they catch with its
/// context (log and index, or connection) themselves.
pub fn report_panics_through_the_log() {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(u64::MAX);
    static HELD_BACK: AtomicU64 = AtomicU64::new(0);
    std::panic::set_hook(Box::new(|info| {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
            HELD_BACK.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let held_back = HELD_BACK.swap(0, Ordering::Relaxed);
        tracing::error!(%info, held_back, "panic");
    }));
}

/// A caught panic, with its message when it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

impl Panicked {
    fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic without a message".to_owned());
        Self(message)
    }
}

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

/// Runs `work`, turning a panic inside it into `Err`. Whatever `work` borrowed mutably may be left half-updated:
/// callers only use this around work whose state is rebuilt or self-consistent at each step.
pub fn catch<R>(work: impl FnOnce() -> R) -> Result<R, Panicked> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .map_err(|payload| Panicked::from_payload(&*payload))
}

/// Polls a future inside a panic boundary: completes with `Err` (and is never polled again) when a poll panics.
pub(crate) struct CatchUnwind<F> {
    inner: F,
    done: bool,
}

impl<F> CatchUnwind<F> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: F) -> Self {
        Self { inner, done: false }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of `inner`, which is never moved out of the pinned wrapper; `done` is plain
        // data and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if this.done {
            return Poll::Pending;
        }
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        match catch(|| inner.poll(cx)) {
            Ok(poll) => poll.map(Ok),
            Err(panicked) => {
                this.done = true;
                Poll::Ready(Err(panicked))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        let caught = catch(|| -> u8 { panic!("boom {}", 1) });
        assert_eq!(caught, Err(Panicked("boom 1".into())));
        let caught = crate::runtime::block_on(CatchUnwind::new(async {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            panic!("in a task")
        }))
        .unwrap();
        assert_eq!(caught, Err::<(), _>(Panicked("in a task".into())));
    }
}
