//! Ceremonies in flight (WebAuthn challenges): single-use, expiring, and
//! bounded in number, so calling an options endpoint in a loop costs the
//! caller retries, never the gateway's memory.

use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Pending values, found by the challenge they were issued with and only
/// for the purpose (`K`) they were issued for.
#[derive(Debug)]
pub struct Pending<K, V> {
    /// Oldest first; a few thousand at most, so a scan is cheap.
    entries: Mutex<Vec<Entry<K, V>>>,
    max: usize,
    per_key: usize,
}

#[derive(Debug)]
struct Entry<K, V> {
    challenge: Vec<u8>,
    key: K,
    value: V,
    expires: u64,
}

impl<K: PartialEq, V> Pending<K, V> {
    /// At most `max` entries in all and `per_key` for one purpose.
    pub fn new(max: usize, per_key: usize) -> Self {
        Pending {
            entries: Mutex::new(Vec::new()),
            max: max.max(1),
            per_key: per_key.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry<K, V>>> {
        // A panic elsewhere leaves the list consistent: every change is one
        // push, remove or retain.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `value` until `expires` (Unix seconds). A purpose that already
    /// has `per_key` entries loses its oldest; a full store drops expired
    /// entries, then the oldest of all.
    pub fn insert(&self, challenge: Vec<u8>, key: K, value: V, expires: u64, now: u64) {
        let mut e = self.lock();
        if e.iter().filter(|x| x.key == key).count() >= self.per_key {
            if let Some(oldest) = e.iter().position(|x| x.key == key) {
                e.remove(oldest);
            }
        }
        if e.len() >= self.max {
            e.retain(|x| x.expires > now);
        }
        if e.len() >= self.max {
            e.remove(0);
        }
        e.push(Entry {
            challenge,
            key,
            value,
            expires,
        });
    }

    /// Takes the value issued with `challenge` for `key`, once. A challenge
    /// issued for another purpose stays where it is (whoever presents it
    /// here cannot spend it); an expired one is dropped.
    pub fn take(&self, challenge: &[u8], key: &K, now: u64) -> Option<V> {
        let mut e = self.lock();
        let i = e.iter().position(|x| bool::from(x.challenge.ct_eq(challenge)))?;
        if e[i].key != *key {
            return None;
        }
        let entry = e.remove(i);
        (entry.expires > now).then_some(entry.value)
    }

    /// Drops what has expired.
    pub fn purge(&self, now: u64) {
        self.lock().retain(|x| x.expires > now);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once_for_its_own_purpose_before_expiry() {
        let p: Pending<&str, u32> = Pending::new(10, 4);
        p.insert(b"c1".to_vec(), "hold-a", 1, 100, 0);
        assert_eq!(p.take(b"c1", &"hold-b", 50), None, "another purpose");
        assert_eq!(p.take(b"c1", &"hold-a", 50), Some(1));
        assert_eq!(p.take(b"c1", &"hold-a", 50), None, "single use");
        p.insert(b"c2".to_vec(), "hold-a", 2, 100, 0);
        assert_eq!(p.take(b"c2", &"hold-a", 100), None, "expired");
        assert!(p.is_empty());
    }

    #[test]
    fn bounded_per_purpose_and_in_all() {
        let p: Pending<u32, u32> = Pending::new(8, 3);
        for i in 0..5u32 {
            p.insert(vec![i as u8], 1, i, 100, 0);
        }
        assert_eq!(p.len(), 3, "one purpose keeps its newest three");
        assert_eq!(p.take(&[0], &1, 1), None);
        assert_eq!(p.take(&[4], &1, 1), Some(4));
        // A flood of purposes evicts the oldest entries, never grows.
        for i in 0..1000u32 {
            p.insert(i.to_be_bytes().to_vec(), 100 + i, i, 100, 0);
        }
        assert_eq!(p.len(), 8);
        assert_eq!(p.take(&999u32.to_be_bytes(), &1099, 1), Some(999));
        p.purge(100);
        assert!(p.is_empty());
    }
}
