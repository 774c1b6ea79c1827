//! Connection admission, decided at `accept` before a single byte is read: how many connections are open in total
//! and per client address, and whether one more may be served. A refused connection is closed at once, so a flood
//! of unfinished connections from one address holds no descriptor and no task. Addresses are only counted, never
//! exposed (`/stats` shows totals).
//!
//! Descriptors: the CT log connections must still open when clients use up the open-files limit. Counting open
//! descriptors exactly at every accept would mean listing `/proc/self/fd` (a walk over every open descriptor, per
//! connection), and the number of the accepted descriptor says nothing once lower ones have been freed. Client
//! connections are the only descriptors that grow with load, and this module counts them anyway: so clients are
//! limited to the open-files limit minus the descriptors open at start-up minus a reserve, and the reserve is what
//! the log connections, list fetches and DNS lookups use.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::log_throttle::LogThrottle;

/// At most one line per this interval for each repeated warning (refusals, failed accepts).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Open-connection counters and their limits.
pub(crate) struct Limits {
    max_total: usize,
    max_per_ip: usize,
    max_for_descriptors: usize,
    open: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    accepted: Cell<u64>,
    refused: [Cell<u64>; 3],
    accept_errors: Cell<u64>,
    refusal_log: LogThrottle,
    accept_error_log: LogThrottle,
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address already has `--max-connections-per-ip` connections open.
    PerIp,
    /// `--max-connections` connections are open.
    Total,
    /// Serving it would eat into the descriptors reserved for the CT log connections.
    Descriptors,
}

impl Refusal {
    fn index(self) -> usize {
        self as usize
    }

    fn reason(self) -> &'static str {
        match self {
            Self::PerIp => "the per-address limit",
            Self::Total => "the connection limit",
            Self::Descriptors => "the descriptors reserved for the CT logs",
        }
    }
}

/// Connection counters, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionStats {
    /// Connections open now (HTTP and WebSocket).
    pub open: usize,
    /// Connections accepted from the kernel since start (served or refused).
    pub accepted: u64,
    /// Connections closed at accept because of the per-address limit (`/stats` adds up the three reasons).
    pub rejected_per_ip: u64,
    /// … because of the total limit.
    pub rejected_total: u64,
    /// … to keep the descriptor reserve for the CT logs.
    pub rejected_descriptors: u64,
    /// `accept` calls that failed (typically the open-files limit).
    pub accept_errors: u64,
    /// Connections the descriptor budget allows at once (open-files limit − descriptors at start − reserve).
    pub descriptor_room: usize,
}

impl Limits {
    /// Limits of `max_total` connections at once, `max_per_ip` from one address, and `max_for_descriptors` (the
    /// descriptors clients may use, see the module docs).
    pub(crate) fn new(max_total: usize, max_per_ip: usize, max_for_descriptors: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            max_for_descriptors,
            open: Cell::new(0),
            per_ip: RefCell::new(HashMap::new()),
            accepted: Cell::new(0),
            refused: Default::default(),
            accept_errors: Cell::new(0),
            refusal_log: LogThrottle::new(WARN_INTERVAL),
            accept_error_log: LogThrottle::new(WARN_INTERVAL),
        }
    }

    /// Decides on a connection just accepted from `ip`: a slot that counts it as open until dropped, or the
    /// refusal (counted, and logged rate-limited), after which the caller closes it at once.
    pub(crate) fn admit(self: &Rc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; count them as the IPv4 address.
        let ip = ip.to_canonical();
        self.accepted.set(self.accepted.get() + 1);
        let open = self.open.get();
        let from_ip = self.per_ip.borrow().get(&ip).copied().unwrap_or(0);
        let refusal = if from_ip >= self.max_per_ip {
            Some(Refusal::PerIp)
        } else if open >= self.max_total {
            Some(Refusal::Total)
        } else if open >= self.max_for_descriptors {
            Some(Refusal::Descriptors)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let count = &self.refused[refusal.index()];
            count.set(count.get() + 1);
            if let Some(held_back) = self.refusal_log.allow(Instant::now()) {
                tracing::warn!(
                    open,
                    held_back,
                    "refusing connections at accept: {} is reached",
                    refusal.reason()
                );
            }
            return Err(refusal);
        }
        *self.per_ip.borrow_mut().entry(ip).or_insert(0) += 1;
        self.open.set(open + 1);
        Ok(Slot {
            limits: self.clone(),
            ip,
        })
    }

    /// Counts a failed `accept` and logs it rate-limited (at the open-files limit it fails on every retry).
    pub(crate) fn accept_failed(&self, error: &std::io::Error) {
        self.accept_errors.set(self.accept_errors.get() + 1);
        if let Some(held_back) = self.accept_error_log.allow(Instant::now()) {
            tracing::warn!(%error, held_back, "accept failed");
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> ConnectionStats {
        let [per_ip, total, descriptors] = self.refused.each_ref().map(Cell::get);
        ConnectionStats {
            open: self.open.get(),
            accepted: self.accepted.get(),
            rejected_per_ip: per_ip,
            rejected_total: total,
            rejected_descriptors: descriptors,
            accept_errors: self.accept_errors.get(),
            descriptor_room: self.max_for_descriptors,
        }
    }

    fn release(&self, ip: IpAddr) {
        self.open.set(self.open.get().saturating_sub(1));
        let mut per_ip = self.per_ip.borrow_mut();
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection, counted as open until dropped.
pub(crate) struct Slot {
    limits: Rc<Limits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

/// How many connections clients may hold: the open-files `limit` minus the descriptors `open` now (listener,
/// runtime, logs: they do not grow with clients) minus the `reserve` kept for the CT log connections.
pub(crate) fn descriptor_room(limit: u64, open: usize, reserve: usize) -> usize {
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(open)
        .saturating_sub(reserve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_address_limits() {
        let limits = Rc::new(Limits::new(3, 2, usize::MAX));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let second = limits.admit(mapped).unwrap();
        assert_eq!(
            limits.admit(a).err(),
            Some(Refusal::PerIp),
            "a third connection from one address (v4 and v4-mapped alike) is refused"
        );
        let third = limits.admit(b).unwrap();
        assert_eq!(
            limits.admit(b).err(),
            Some(Refusal::Total),
            "three connections are open, the total limit is reached"
        );
        let stats = limits.stats();
        assert_eq!(
            (stats.open, stats.accepted),
            (3, 5),
            "refused connections are not counted as open"
        );
        assert_eq!((stats.rejected_per_ip, stats.rejected_total), (1, 1));
        drop((third, second));
        assert!(limits.admit(b).is_ok());
        drop(first);
        assert_eq!(limits.stats().open, 0);
        assert!(
            limits.per_ip.borrow().is_empty(),
            "no address is remembered once its connections are gone"
        );
    }

    #[test]
    fn the_descriptor_reserve_refuses_clients_before_the_open_files_limit() {
        assert_eq!(descriptor_room(1024, 20, 256), 748);
        assert_eq!(
            descriptor_room(200, 20, 256),
            0,
            "no room at all: every client is refused"
        );
        let limits = Rc::new(Limits::new(100, 100, descriptor_room(64, 14, 48)));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<Slot> = (0..2).map(|_| limits.admit(ip).unwrap()).collect();
        assert_eq!(limits.admit(ip).err(), Some(Refusal::Descriptors));
        assert_eq!(limits.stats().rejected_descriptors, 1);
        drop(held);
        assert!(limits.admit(ip).is_ok());
    }
}
