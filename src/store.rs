//! Shared single-use records. In memory for one instance; the interface is
//! the one a shared backend would offer (claim-once with an expiry).

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
