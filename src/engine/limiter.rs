//! Rate limits: a token bucket per key. Keys are client addresses for
//! anonymous session creation, agent ids for agents' operations.
//!
//! Each key may make `per_minute` requests in a burst, then one more
//! every `60 / per_minute` seconds. Buckets that are full again are
//! forgotten by [`RateLimiter::prune`], so memory follows the number of
//! recently active addresses. Hand-written rather than a crate: it is a
//! dozen lines on the `dashmap` we already use, and pruning is tied to the
//! engine's own sweep.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

pub struct RateLimiter<K: Eq + Hash = IpAddr> {
    /// Requests per minute and burst size; 0 disables the limit.
    per_minute: u32,
    buckets: DashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Eq + Hash> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: DashMap::new(),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let rate = f64::from(self.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(f64::from(self.per_minute));
        b.at = now;
    }

    /// Takes one token for `key`; `Err` carries how long until one is back.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut entry = self.buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(self.per_minute),
            at: now,
        });
        let b = entry.value_mut();
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(self.per_minute) / 60.0;
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// Forgets keys whose bucket is full again.
    pub fn prune(&self, now: Instant) {
        self.buckets.retain(|_, b| {
            self.refill(b, now);
            b.tokens < f64::from(self.per_minute)
        });
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval_per_address() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        assert!(limiter.check(b, t0).is_ok(), "another address has its own");
        assert!(limiter.check(a, t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.check(a, t0 + Duration::from_secs(20)).is_err());

        limiter.prune(t0 + Duration::from_secs(120));
        assert_eq!(limiter.tracked(), 0, "full buckets are forgotten");
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0);
        let ip: IpAddr = "::1".parse().unwrap();
        for _ in 0..1000 {
            assert!(limiter.check(ip, Instant::now()).is_ok());
        }
        assert_eq!(limiter.tracked(), 0);
    }
}
