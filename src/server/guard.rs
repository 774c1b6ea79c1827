//! Protective closes: the deadlines and budgets that end a client's connection (HTTP write deadline, message
//! deadline, partial-message byte budget, control-frame budget, dead TCP peer, protocol violation), counted per
//! reason for `/stats` and `/metrics` and logged rate-limited. The per-connection rules themselves live in
//! `ws::session`; this module holds what is server-wide: the counters and the byte budget shared by all clients.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::log_throttle::LogThrottle;
use certstream_ws::session::CloseCause;

/// Why the server closed a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// An HTTP response was not written within `--http-write-timeout`.
    HttpWriteTimeout,
    /// A WebSocket message was not finished within `--message-timeout`.
    MessageTimeout,
    /// The server-wide budget of bytes held in unfinished messages (`--partial-message-budget`) was exhausted.
    PartialMessageBudget,
    /// More control frames than `--control-frames-per-second`.
    ControlFlood,
    /// TCP keepalive found the peer gone.
    KeepaliveTimeout,
    /// An RFC 6455 violation (1002/1007/1009).
    ProtocolError,
}

impl Reason {
    /// Every reason, in the order of [`GuardStats::closes`].
    pub(crate) const ALL: [Reason; 6] = [
        Reason::HttpWriteTimeout,
        Reason::MessageTimeout,
        Reason::PartialMessageBudget,
        Reason::ControlFlood,
        Reason::KeepaliveTimeout,
        Reason::ProtocolError,
    ];

    /// The `/stats` key and `/metrics` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::HttpWriteTimeout => "http_write_timeout",
            Reason::MessageTimeout => "message_timeout",
            Reason::PartialMessageBudget => "partial_message_budget",
            Reason::ControlFlood => "control_frame_flood",
            Reason::KeepaliveTimeout => "tcp_keepalive",
            Reason::ProtocolError => "protocol_error",
        }
    }

    /// The reason of a session's close, `None` for an orderly close by the peer and for the caller's own limits
    /// (counted where they are decided).
    pub(crate) fn of(cause: CloseCause) -> Option<Self> {
        match cause {
            CloseCause::PeerClosed | CloseCause::ServerLimit => None,
            CloseCause::ProtocolError => Some(Reason::ProtocolError),
            CloseCause::ControlFlood => Some(Reason::ControlFlood),
            CloseCause::MessageTimeout => Some(Reason::MessageTimeout),
        }
    }
}

/// The counters, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GuardStats {
    /// Connections closed per [`Reason`], in [`Reason::ALL`] order.
    pub closes: [u64; 6],
    /// Bytes held now in unfinished client messages, all connections together.
    pub partial_message_bytes: usize,
}

/// Server-wide state of the protective closes.
pub(crate) struct Guard {
    partial_budget: usize,
    partial_bytes: Cell<usize>,
    closes: [Cell<u64>; 6],
    throttle: LogThrottle,
}

impl Guard {
    /// A guard whose unfinished messages may hold `partial_budget` bytes in all.
    pub(crate) fn new(partial_budget: usize) -> Self {
        Self {
            partial_budget,
            partial_bytes: Cell::new(0),
            closes: Default::default(),
            throttle: LogThrottle::new(Duration::from_secs(10)),
        }
    }

    /// Counts a protective close and logs it (at most one line per 10 s).
    pub(crate) fn count(&self, reason: Reason) {
        let index = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        let cell = &self.closes[index];
        cell.set(cell.get() + 1);
        if let Some(held_back) = self.throttle.allow(Instant::now()) {
            tracing::info!(
                reason = reason.name(),
                similar_since_last_line = held_back,
                "closing a client"
            );
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> GuardStats {
        GuardStats {
            closes: self.closes.each_ref().map(Cell::get),
            partial_message_bytes: self.partial_bytes.get(),
        }
    }
}

/// One connection's share of the partial-message budget; released when dropped.
pub(crate) struct PartialBytes {
    guard: Rc<Guard>,
    held: Cell<usize>,
}

impl PartialBytes {
    pub(crate) fn new(guard: Rc<Guard>) -> Self {
        Self {
            guard,
            held: Cell::new(0),
        }
    }

    /// The server-wide guard (for counting).
    pub(crate) fn guard(&self) -> &Rc<Guard> {
        &self.guard
    }

    /// Records that the connection now holds `bytes`; `false` when it grew past the server-wide budget (the caller
    /// closes it, which frees the bytes).
    pub(crate) fn hold_within_budget(&self, bytes: usize) -> bool {
        let total = &self.guard.partial_bytes;
        let held = self.held.replace(bytes);
        total.set(total.get() - held + bytes);
        let grew = bytes > held;
        !(grew && total.get() > self.guard.partial_budget)
    }
}

impl Drop for PartialBytes {
    fn drop(&mut self) {
        self.hold_within_budget(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_budget_refuses_growth_beyond_it_and_frees_on_drop() {
        let guard = Rc::new(Guard::new(100));
        let a = PartialBytes::new(guard.clone());
        let b = PartialBytes::new(guard.clone());
        assert!(a.hold_within_budget(60));
        assert!(!b.hold_within_budget(50), "60 + 50 is over 100");
        assert!(
            b.hold_within_budget(30),
            "shrinking or staying within the budget is fine"
        );
        assert_eq!(guard.stats().partial_message_bytes, 90);
        drop(a);
        assert_eq!(guard.stats().partial_message_bytes, 30);
        guard.count(Reason::ControlFlood);
        assert_eq!(guard.stats().closes[3], 1);
    }
}
