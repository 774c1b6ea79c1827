//! Paced, fair delivery: a poller hands its entries to the sink in *turns*.
//!
//! A turn begins once the hub admits messages (no client that keeps up is behind: `hub::admission`) and ends as soon
//! as it stops admitting them or after [`TURN_BUDGET`] of work; the poller then yields to the reactor, which runs
//! the writers and every other ready task before this poller's next turn. Each log is one task, so each log gets
//! one turn per round: a log with a huge (or hostile) backlog gets the same share of the reactor as any other, and
//! no delivery step holds the reactor for more than a few milliseconds (a 1,000-entry page is ~12 ms of work).
//!
//! All turns together get at most [`ROUND_BUDGET`] between two passes of the reactor over I/O: monoio reaps
//! completions (and fires timers) only between rounds of its run queue, so sixty logs each taking a turn would
//! otherwise hold every socket (`/health`, client writes) for sixty turns. Once the budget is spent, the next turn
//! waits for a timer, which fires only after the reactor has processed I/O; a wait for admission is such a pass
//! too, and also renews the budget.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::publish::Gate;

/// The work one turn may do before yielding (a few dozen entries).
pub(crate) const TURN_BUDGET: Duration = Duration::from_millis(2);

/// The work all turns together may do between two passes of the reactor over I/O.
pub(crate) const ROUND_BUDGET: Duration = Duration::from_millis(8);

thread_local! {
    /// Delivery work done since the reactor last processed I/O (as far as the pollers can tell).
    static ROUND_USED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// One turn of delivery.
pub(crate) struct Turn {
    gate: Option<Gate>,
    started: Instant,
}

impl Turn {
    /// Waits until the hub admits messages (at once without a gate) and the round has budget left, and starts a
    /// turn.
    pub(crate) async fn begin(gate: Option<Gate>) -> Turn {
        loop {
            if let Some(gate) = gate.as_ref().filter(|gate| !gate.admits()) {
                gate.admitted().await;
                ROUND_USED.set(Duration::ZERO);
            }
            if ROUND_USED.get() < ROUND_BUDGET {
                break;
            }
            // Timers fire only once the run queue is empty, after the reactor has reaped I/O completions.
            monoio::time::sleep(Duration::from_millis(1)).await;
            ROUND_USED.set(Duration::ZERO);
        }
        Turn {
            gate,
            started: Instant::now(),
        }
    }

    /// Whether one more entry may be delivered in this turn at `now`.
    pub(crate) fn may_continue(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < TURN_BUDGET
            && self.gate.as_ref().is_none_or(Gate::admits)
    }

    /// Ends the turn: counts its work in the round and lets every other ready task run before this one continues.
    pub(crate) async fn end(self) {
        ROUND_USED.set(ROUND_USED.get() + self.started.elapsed());
        yield_now().await;
    }
}

/// Lets the reactor run every other ready task once before this task continues.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::message::{EncodedMessage, StreamKind};
    use certstream_ws::frame::Frame;

    fn frames() -> EncodedMessage {
        EncodedMessage {
            lite: Frame::text(b"l"),
            full: Frame::text(b"f"),
            domains: Frame::text(b"d"),
        }
    }

    #[test]
    fn a_turn_ends_when_its_budget_is_spent_or_a_client_that_keeps_up_is_behind() {
        crate::runtime::block_on(async {
            let hub = Hub::new(4); // mark 3
            let client = hub.join(StreamKind::Lite, Default::default());
            let turn = Turn::begin(Some(hub.gate().into())).await;
            let now = turn.started;
            assert!(turn.may_continue(now));
            assert!(!turn.may_continue(now + TURN_BUDGET));
            for _ in 0..3 {
                hub.publish(&frames().into());
            }
            assert!(!turn.may_continue(now), "the client reached its mark");
            // The writer takes the frames and writes them whole: admitted again.
            let mut batch = Vec::new();
            client.take_batch(&mut batch, 10);
            assert!(!turn.may_continue(now), "still in flight");
            client.batch_written(true);
            assert!(turn.may_continue(now));
            let unpaced = Turn::begin(None).await;
            assert!(unpaced.may_continue(unpaced.started));
        })
        .unwrap();
    }

    #[test]
    fn a_waiting_turn_begins_once_the_writer_catches_up() {
        crate::runtime::block_on(async {
            let hub = Hub::new(4);
            let client = hub.join(StreamKind::Lite, Default::default());
            for _ in 0..3 {
                hub.publish(&frames().into());
            }
            let gate: Gate = hub.gate().into();
            let waiting = monoio::spawn(async move {
                Turn::begin(Some(gate)).await;
                Instant::now()
            });
            monoio::time::sleep(Duration::from_millis(20)).await;
            let released = Instant::now();
            let mut batch = Vec::new();
            client.take_batch(&mut batch, 10);
            client.batch_written(true);
            let began = waiting.await;
            assert!(began >= released, "the turn waited for the writer");
            assert_eq!(hub.stats().dropped, 0);
        })
        .unwrap();
    }

    #[test]
    fn turns_together_stop_for_the_reactor_once_the_round_budget_is_spent() {
        crate::runtime::block_on(async {
            ROUND_USED.set(ROUND_BUDGET);
            let started = Instant::now();
            let turn = Turn::begin(None).await;
            assert!(
                started.elapsed() >= Duration::from_millis(1),
                "waited for a timer"
            );
            assert_eq!(ROUND_USED.get(), Duration::ZERO, "a new round");
            turn.end().await;
            // With budget left a turn begins at once: no timer wait, which would start a new round (a wall-clock
            // bound would be fragile on a loaded machine; the round's bookkeeping is exact).
            let half = ROUND_BUDGET / 2;
            ROUND_USED.set(half);
            Turn::begin(None).await;
            assert_eq!(ROUND_USED.get(), half, "budget left: no timer wait");
        })
        .unwrap();
    }
}
