//! Shared single-use records. In memory for one instance; the interface is
//! the one a shared backend would offer (claim-once with an expiry).

mod journal;
mod journal_writer;
mod pending;
mod rate;
pub mod redis_holds;
mod redis_state;
mod sessions;
mod shared;
mod state_error;

pub use pending::Pending;
pub use rate::{Rate, RateLimiter};
pub use redis_holds::RedisHolds;
pub use redis_state::RedisState;
pub use sessions::{Bind, SessionTracker, Sighting, MAX_TRACKED_SESSIONS, SESSION_IDLE_SECS};
pub use shared::{Ceremony, DeviceKey, Fingerprints, HoldQuota, MemoryState, StateError, StateStore, StoreFuture};

use dashmap::DashMap;

/// Remembers single-use values (token `jti`s, TOTP steps) until they
/// expire, so a proof can be accepted once and only once.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: DashMap<String, u64>,
}

impl ReplayCache {
    /// Records `key` as used until `expires` (Unix seconds). Returns false
    /// when it was already used. The check and the insert are one atomic
    /// step, so two racing uses of one value cannot both succeed.
    pub fn claim(&self, key: String, expires: u64) -> bool {
        match self.seen.entry(key) {
            dashmap::mapref::entry::Entry::Occupied(_) => false,
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(expires);
                true
            }
        }
    }

    /// Forgets records whose value can no longer be presented anyway.
    pub fn purge(&self, now: u64) {
        self.seen.retain(|_, exp| *exp >= now);
        crate::sparse::shrink(&self.seen);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_once_until_purged() {
        let c = ReplayCache::default();
        assert!(c.claim("a".into(), 100));
        assert!(!c.claim("a".into(), 100));
        c.purge(100);
        assert!(!c.claim("a".into(), 100), "kept through its expiry second");
        c.purge(101);
        assert!(c.is_empty());
    }
}

/// The last TOTP step accepted per user: a code is good once, and never
/// after a newer one (RFC 6238 §5.2).
#[derive(Debug, Default)]
pub struct StepCounters {
    last: DashMap<String, u64>,
}

impl StepCounters {
    /// Atomically accepts `step` for `user` if it is newer than the last
    /// accepted one.
    pub fn claim(&self, user: &str, step: u64) -> bool {
        let mut entry = self.last.entry(user.to_owned()).or_insert(0);
        if step <= *entry {
            return false;
        }
        *entry = step;
        true
    }
}

/// How failures at one key (a user at one client address, or a client
/// address alone) are paid for. The key always includes who is trying, so
/// a stranger's wrong codes slow down only the stranger: nothing here can
/// lock a person out from their own address. After `free` failures every
/// further one doubles the wait before the next attempt, up to `max_wait`;
/// a key is forgotten `max_wait` after its last failure. The counts
/// themselves live in the state store, so on Redis every instance spends
/// from one budget.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    free: u32,
    base: u64,
    max_wait: u64,
}

/// The failures counted at one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fails {
    pub count: u32,
    /// Unix seconds of the last one.
    pub last: u64,
}

impl Backoff {
    /// `free` failures cost nothing; then each try waits `base` seconds
    /// after the last failure, doubling with every further one.
    pub fn new(free: u32, base_secs: u64, max_wait_secs: u64) -> Self {
        Backoff {
            free,
            base: base_secs,
            max_wait: max_wait_secs,
        }
    }

    fn wait(&self, count: u32) -> u64 {
        match count.checked_sub(self.free) {
            None => 0,
            Some(over) => self.base.saturating_mul(1u64 << over.min(32)).min(self.max_wait),
        }
    }

    /// Whether a key with `fails` may try again at `now`.
    pub fn allows(&self, fails: Option<Fails>, now: u64) -> bool {
        match fails {
            Some(f) => now >= f.last.saturating_add(self.wait(f.count)),
            None => true,
        }
    }

    /// How long a key's failures are kept after the last one.
    pub fn forget_after(&self) -> u64 {
        self.max_wait
    }
}

/// Failure counts in this process (the memory backend's).
#[derive(Debug, Default)]
pub struct FailureCounts {
    counts: DashMap<String, (Fails, u64)>,
}

impl FailureCounts {
    pub fn get(&self, key: &str, now: u64) -> Option<Fails> {
        self.counts.get(key).filter(|e| now < e.1).map(|e| e.0)
    }

    /// Counts a failure; a key quiet for `forget_after` starts over.
    pub fn record(&self, key: &str, now: u64, forget_after: u64) -> Fails {
        let mut e = self
            .counts
            .entry(key.to_owned())
            .or_insert((Fails { count: 0, last: now }, now));
        if now >= e.1 {
            e.0.count = 0;
        }
        e.0.count = e.0.count.saturating_add(1);
        e.0.last = now;
        e.1 = now.saturating_add(forget_after);
        e.0
    }

    /// A success at this key: its record of failures ends.
    pub fn clear(&self, key: &str) {
        self.counts.remove(key);
    }

    /// Forgets keys quiet for their `forget_after`.
    pub fn purge(&self, now: u64) {
        self.counts.retain(|_, e| now < e.1);
        crate::sparse::shrink(&self.counts);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn steps_only_move_forward() {
        let s = StepCounters::default();
        assert!(s.claim("alice", 10));
        assert!(!s.claim("alice", 10), "same code twice");
        assert!(!s.claim("alice", 9), "an older code after a newer one");
        assert!(s.claim("alice", 11));
        assert!(s.claim("bob", 10), "per user");
    }

    #[test]
    fn failures_back_off_per_key_and_double() {
        let b = Backoff::new(3, 30, 900);
        let l = FailureCounts::default();
        let allowed = |key: &str, now: u64| b.allows(l.get(key, now), now);
        for _ in 0..3 {
            assert!(allowed("alice|A", 100));
            l.record("alice|A", 100, b.forget_after());
        }
        // Then a wait: 30 s, after the next failure 60 s, then 120 s ...
        assert!(!allowed("alice|A", 129));
        assert!(allowed("alice|A", 130));
        l.record("alice|A", 130, b.forget_after());
        assert!(!allowed("alice|A", 189));
        assert!(allowed("alice|A", 190));
        // Another key is untouched.
        assert!(allowed("alice|B", 131));
        for _ in 0..40 {
            l.record("alice|A", 190, b.forget_after());
        }
        assert!(!allowed("alice|A", 190 + 899), "capped, not overflowed");
        assert!(allowed("alice|A", 190 + 900));
        assert_eq!(
            l.record("alice|A", 190 + 900, b.forget_after()).count,
            1,
            "a quiet key starts over"
        );
        l.purge(190 + 900 + 900);
        assert!(l.is_empty());
        l.record("bob|A", 5, b.forget_after());
        l.clear("bob|A");
        assert!(l.is_empty());
    }
}

/// Sudo mode: a recent step-up for (session, action), reusable for the
/// route's `require.reuse` window.
#[derive(Debug, Default)]
pub struct ReuseCache {
    recent: DashMap<(String, String), Recent>,
}

/// The step-up being reused, as the assertion will name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// How the step-up was proved: a later route must accept this method.
    pub method: crate::policy::ProofMethod,
    pub sub: String,
    pub amr: Vec<String>,
    pub acr: String,
    pub auth_time: u64,
    pub at: u64,
}

impl ReuseCache {
    pub fn remember(&self, sid: &str, action: &str, recent: Recent) {
        self.recent.insert((sid.to_owned(), action.to_owned()), recent);
    }

    /// The step-up made for this session and action within `window`
    /// seconds, if any.
    pub fn find(&self, sid: &str, action: &str, now: u64, window: u64) -> Option<Recent> {
        let r = self.recent.get(&(sid.to_owned(), action.to_owned()))?;
        (now.saturating_sub(r.at) <= window).then(|| r.clone())
    }

    pub fn purge(&self, now: u64, max_window: u64) {
        self.recent.retain(|_, r| now.saturating_sub(r.at) <= max_window);
        crate::sparse::shrink(&self.recent);
    }
}

/// Approver cookies ended by a logout before they expire. Only a signed-in
/// approver can add one, and each entry goes when its cookie would have
/// expired anyway, so the set stays small.
#[derive(Debug, Default)]
pub struct Revoked {
    until: DashMap<String, u64>,
}

impl Revoked {
    pub fn revoke(&self, value: &str, expires: u64) {
        self.until.insert(value.to_owned(), expires);
    }

    pub fn is_revoked(&self, value: &str) -> bool {
        self.until.contains_key(value)
    }

    pub fn purge(&self, now: u64) {
        self.until.retain(|_, exp| now < *exp);
    }
}
