//! Paced, fair delivery: a poller hands its entries to the sink in *turns*.
//!
//! A turn begins once the hub admits messages (no client that keeps up is behind: `hub::admission`) and ends as soon
//! as it stops admitting them or after [`TURN_BUDGET`] of work; the poller then yields to the reactor, which runs
//! the writers and every other ready task before this poller's next turn. Each log is one task, so each log gets
//! one turn per round: a log with a huge (or hostile) backlog gets the same share of the reactor as any other, and
//! no delivery step holds the reactor for more than a few milliseconds (a 1,000-entry page is ~12 ms of work).

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::hub::Gate;

/// The work one turn may do before yielding (a few dozen entries).
pub const TURN_BUDGET: Duration = Duration::from_millis(2);

/// One turn of delivery.
pub struct Turn {
    gate: Option<Gate>,
    started: Instant,
}

impl Turn {
    /// Waits until the hub admits messages (at once without a gate), and starts a turn.
    pub async fn begin(gate: Option<Gate>) -> Turn {
        if let Some(gate) = &gate {
            gate.admitted().await;
        }
        Turn {
            gate,
            started: Instant::now(),
        }
    }

    /// Whether one more entry may be delivered in this turn at `now`.
    pub fn may_continue(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < TURN_BUDGET
            && self.gate.as_ref().is_none_or(Gate::admits)
    }

    /// Ends the turn: lets every other ready task run before this one continues.
    pub async fn end(self) {
        yield_now().await;
    }
}

/// Lets the reactor run every other ready task once before this task continues.
pub async fn yield_now() {
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
    use crate::stream::{Frames, StreamKind};
    use crate::ws::frame::Frame;

    fn frames() -> Frames {
        Frames {
            lite: Frame::text(b"l"),
            full: Frame::text(b"f"),
            domains: Frame::text(b"d"),
        }
    }

    #[test]
    fn a_turn_ends_when_its_budget_is_spent_or_a_client_that_keeps_up_is_behind() {
        crate::server::block_on(async {
            let hub = Hub::new(4); // mark 3
            let client = hub.join(StreamKind::Lite);
            let turn = Turn::begin(Some(hub.gate())).await;
            let now = turn.started;
            assert!(turn.may_continue(now));
            assert!(!turn.may_continue(now + TURN_BUDGET));
            for _ in 0..3 {
                hub.publish(&frames());
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
        crate::server::block_on(async {
            let hub = Hub::new(4);
            let client = hub.join(StreamKind::Lite);
            for _ in 0..3 {
                hub.publish(&frames());
            }
            let gate = hub.gate();
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
}
