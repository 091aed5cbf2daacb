//! Shared single-use records. In memory for one instance; the interface is
//! the one a shared backend would offer (claim-once with an expiry).

mod pending;
mod sessions;

pub use pending::Pending;
pub use sessions::{Bind, SessionTracker, Sighting, MAX_TRACKED_SESSIONS};

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

/// Failed proofs per user across all holds, so guessing cannot be spread
/// over many holds to dodge the per-hold attempt limit.
#[derive(Debug)]
pub struct FailureLimiter {
    failures: DashMap<String, (u32, u64)>,
    max: u32,
    window: u64,
}

impl FailureLimiter {
    pub fn new(max: u32, window_secs: u64) -> Self {
        FailureLimiter {
            failures: DashMap::new(),
            max,
            window: window_secs,
        }
    }

    pub fn allowed(&self, user: &str, now: u64) -> bool {
        match self.failures.get(user) {
            Some(f) => f.0 < self.max || now >= f.1 + self.window,
            None => true,
        }
    }

    pub fn record(&self, user: &str, now: u64) {
        let mut f = self.failures.entry(user.to_owned()).or_insert((0, now));
        if now >= f.1 + self.window {
            *f = (0, now);
        }
        f.0 += 1;
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
    fn failures_lock_out_until_the_window_passes() {
        let l = FailureLimiter::new(3, 60);
        for _ in 0..3 {
            assert!(l.allowed("a", 100));
            l.record("a", 100);
        }
        assert!(!l.allowed("a", 120));
        assert!(l.allowed("b", 120));
        assert!(l.allowed("a", 160));
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
    }
}
