//! Request rates per key (a client address, a session): a token bucket of
//! `burst` requests that refills at `per_minute`. Unlike [`super::Backoff`],
//! which counts only failures, this counts every request, so a flood of
//! well-formed but useless requests (passkey options, sign-ins) is refused
//! early. Keys always name the sender, so one sender's flood never uses up
//! another's bucket.
//!
//! Written here rather than taken from a crate: it must run on the
//! gateway's clock (time is an argument, tests move it), which the
//! rate-limiting crates' own clocks do not allow.

use dashmap::DashMap;

/// Milli-tokens, so the refill needs no floating point.
const UNIT: u64 = 1000;

/// A rate: `burst` requests at once, then `per_minute` more each minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

impl Rate {
    /// The seconds until a bucket with `left` milli-tokens has a whole
    /// token again (at least one).
    pub fn wait_secs(&self, left: u64) -> u64 {
        let missing = UNIT.saturating_sub(left);
        let wait_ms = (missing * 60).div_ceil(u64::from(self.per_minute.max(1)));
        wait_ms.div_ceil(1000).max(1)
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    buckets: DashMap<String, Bucket>,
    burst: u64,
    per_minute: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Milli-tokens left at `at`.
    left: u64,
    /// Unix milliseconds.
    at: u64,
}

impl RateLimiter {
    /// `burst` requests at once, then `per_minute` more each minute.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        RateLimiter {
            buckets: DashMap::new(),
            burst: u64::from(burst.max(1)) * UNIT,
            per_minute: u64::from(per_minute.max(1)),
        }
    }

    fn refilled(&self, b: Bucket, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(b.at);
        // per_minute tokens per 60 000 ms = per_minute milli-tokens per 60 ms.
        let gained = elapsed.saturating_mul(self.per_minute) / 60;
        b.left.saturating_add(gained).min(self.burst)
    }

    /// Takes one request from `key`'s bucket at `now_ms` (Unix
    /// milliseconds). `Err(wait)` when the bucket is empty: the seconds
    /// until the next request would be allowed.
    pub fn take(&self, key: &str, now_ms: u64) -> Result<(), u64> {
        let mut b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            left: self.burst,
            at: now_ms,
        });
        let left = self.refilled(*b, now_ms);
        if left < UNIT {
            let missing = UNIT - left;
            let wait_ms = (missing * 60).div_ceil(self.per_minute);
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        *b = Bucket {
            left: left - UNIT,
            at: now_ms,
        };
        Ok(())
    }

    /// Forgets buckets that have refilled completely: they are the same as
    /// no bucket at all, so this loses nothing.
    pub fn purge(&self, now_ms: u64) {
        self.buckets.retain(|_, b| self.refilled(*b, now_ms) < self.burst);
        crate::sparse::shrink(&self.buckets);
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_per_key() {
        let r = RateLimiter::new(3, 6); // one more every 10 s
        for _ in 0..3 {
            assert_eq!(r.take("A", 1_000), Ok(()));
        }
        assert_eq!(r.take("A", 1_000), Err(10));
        assert_eq!(r.take("B", 1_000), Ok(()), "another key has its own bucket");
        assert_eq!(r.take("A", 9_000), Err(2), "8 s of the 10 s have passed");
        assert_eq!(r.take("A", 11_000), Ok(()));
        assert_eq!(r.take("A", 11_000), Err(10));
        // A long quiet spell refills to the burst, never beyond it.
        for _ in 0..3 {
            assert_eq!(r.take("A", 10_000_000), Ok(()));
        }
        assert!(r.take("A", 10_000_000).is_err());
    }

    #[test]
    fn purge_drops_only_full_buckets() {
        let r = RateLimiter::new(2, 60);
        r.take("busy", 0).expect("first");
        r.take("idle", 0).expect("first");
        r.take("busy", 500).expect("second");
        // At 1.2 s `idle` has refilled (one token a second), `busy` has not.
        r.purge(1_200);
        assert_eq!(r.len(), 1);
        assert_eq!(r.take("busy", 1_200), Ok(()));
        assert!(r.take("busy", 1_200).is_err(), "purge kept its state");
        r.purge(1_000_000);
        assert!(r.is_empty());
    }

    #[test]
    fn time_going_backwards_gains_nothing() {
        let r = RateLimiter::new(1, 1);
        r.take("A", 100_000).expect("first");
        assert!(r.take("A", 0).is_err());
        assert!(r.take("A", u64::MAX).is_ok(), "no overflow");
    }
}
