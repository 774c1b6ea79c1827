//! Connection admission: how many connections are open in total and per client address, and whether one more may
//! be served. Addresses are only counted, never exposed (`/stats` shows totals).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

/// Open-connection counters and their limits.
pub struct Limits {
    max_total: usize,
    max_per_ip: usize,
    open: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    accepted: Cell<u64>,
    rejected: Cell<u64>,
}

/// Connection counters, for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now (HTTP and WebSocket, including those being refused).
    pub open: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused with `503` because a limit was reached.
    pub rejected: u64,
}

impl Limits {
    /// Limits of `max_total` connections at once, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            open: Cell::new(0),
            per_ip: RefCell::new(HashMap::new()),
            accepted: Cell::new(0),
            rejected: Cell::new(0),
        }
    }

    /// Counts a new connection from `ip`; the slot says whether it is within the limits and uncounts it on drop.
    pub fn admit(self: &Rc<Self>, ip: IpAddr) -> Slot {
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d; count them as the IPv4 address.
        let ip = ip.to_canonical();
        let open = self.open.get();
        let mut per_ip = self.per_ip.borrow_mut();
        let from_ip = per_ip.entry(ip).or_insert(0);
        let allowed = open < self.max_total && *from_ip < self.max_per_ip;
        *from_ip += 1;
        self.open.set(open + 1);
        self.accepted.set(self.accepted.get() + 1);
        Slot {
            limits: self.clone(),
            ip,
            allowed,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.get(),
            accepted: self.accepted.get(),
            rejected: self.rejected.get(),
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

/// One counted connection.
pub struct Slot {
    limits: Rc<Limits>,
    ip: IpAddr,
    allowed: bool,
}

impl Slot {
    /// Whether this connection may be served; when not, the caller answers `503` and this counts the refusal.
    pub fn check(&self) -> bool {
        if !self.allowed {
            self.limits.rejected.set(self.limits.rejected.get() + 1);
        }
        self.allowed
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_address_limits() {
        let limits = Rc::new(Limits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a);
        let second = limits.admit(mapped);
        let third = limits.admit(a);
        assert!(first.check() && second.check());
        assert!(
            !third.check(),
            "a third connection from one address (v4 and v4-mapped alike) is refused"
        );
        let other = limits.admit(b);
        assert!(
            !other.check(),
            "three connections are open, the total limit is reached"
        );
        assert_eq!(
            limits.stats(),
            ConnectionStats {
                open: 4,
                accepted: 4,
                rejected: 2
            }
        );
        drop((third, other, second));
        assert!(limits.admit(b).check());
        drop(first);
        assert_eq!(limits.stats().open, 0);
        assert!(
            limits.per_ip.borrow().is_empty(),
            "no address is remembered once its connections are gone"
        );
    }
}
