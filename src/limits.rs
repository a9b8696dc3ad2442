//! Abuse limits that are not the hub's: concurrent WebSocket connections
//! per client address.
//!
//! Owns [`AddressLimiter`]: a count of open connections per IP address,
//! taken before the upgrade and given back when the connection ends (a
//! [`AddressPermit`] dropped). The total connection cap is the hub's, the
//! handshake timeout the listener's (`listen`), the ingest body limit the
//! router's; every refusal is counted in `chatgate_refusals_total`.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Open connections per address, with a cap (0: no cap).
#[derive(Debug)]
pub struct AddressLimiter {
    max: usize,
    open: Arc<DashMap<IpAddr, usize>>,
}

/// One connection's slot of its address; released on drop.
#[derive(Debug)]
pub struct AddressPermit {
    ip: IpAddr,
    open: Arc<DashMap<IpAddr, usize>>,
}

impl AddressLimiter {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` at the cap.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<AddressPermit> {
        let mut count = self.open.entry(ip).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            ip,
            open: self.open.clone(),
        })
    }

    /// Open connections from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.get(&ip).map_or(0, |c| *c)
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        // Removing the entry at zero keeps the map as small as the set of
        // connected addresses.
        self.open.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_releases_on_drop() {
        let limiter = AddressLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = limiter.try_acquire(a).unwrap();
        let _p2 = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none(), "third from one address");
        let _p3 = limiter
            .try_acquire(b)
            .expect("another address is not affected");
        drop(p1);
        assert_eq!(limiter.open_from(a), 1);
        let _p4 = limiter.try_acquire(a).expect("a slot was given back");
        drop(_p2);
        drop(_p4);
        assert_eq!(limiter.open_from(a), 0);
        assert_eq!(limiter.addresses(), 1, "empty entries are removed");
    }

    #[test]
    fn zero_means_no_cap() {
        let limiter = AddressLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let permits: Vec<_> = (0..100).map(|_| limiter.try_acquire(a).unwrap()).collect();
        assert_eq!(limiter.open_from(a), 100);
        drop(permits);
        assert_eq!(limiter.addresses(), 0);
    }
}
