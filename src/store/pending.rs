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
    owner: String,
    value: V,
    expires: u64,
}

/// The memory backend's ceremonies in flight. The bounds keep an attacker
/// who calls the options endpoints in a loop from growing memory; a
/// purpose keeps its newest few, so a second tab does not break the first.
#[derive(Debug)]
pub(super) struct Ceremonies(pub(super) Pending<String, Vec<u8>>);

impl Default for Ceremonies {
    fn default() -> Self {
        Ceremonies(Pending::new(4096, 4))
    }
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

    /// Keeps `value`, asked for by `owner`, until `expires` (Unix seconds).
    /// A purpose that already has `per_key` entries of this owner loses the
    /// oldest of them (another owner's entries for the same purpose, say an
    /// approver's own sign-in, are not touched); a full store drops expired
    /// entries, then the oldest entry of the owner with the most.
    pub fn insert(&self, challenge: Vec<u8>, key: K, owner: &str, value: V, expires: u64, now: u64) {
        let mut e = self.lock();
        let mine = |x: &Entry<K, V>| x.key == key && x.owner == owner;
        if e.iter().filter(|x| mine(x)).count() >= self.per_key {
            if let Some(oldest) = e.iter().position(mine) {
                e.remove(oldest);
            }
        }
        if e.len() >= self.max {
            e.retain(|x| x.expires > now);
        }
        if e.len() >= self.max {
            let i = busiest_owners_oldest(&e);
            e.remove(i);
        }
        e.push(Entry {
            challenge,
            key,
            owner: owner.to_owned(),
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

/// The index of the oldest entry of the owner with the most entries (the
/// older one's on a tie), in one pass to count and one to find.
fn busiest_owners_oldest<K, V>(e: &[Entry<K, V>]) -> usize {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for x in e {
        *counts.entry(x.owner.as_str()).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    e.iter()
        .position(|x| counts.get(x.owner.as_str()) == Some(&most))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once_for_its_own_purpose_before_expiry() {
        let p: Pending<&str, u32> = Pending::new(10, 4);
        p.insert(b"c1".to_vec(), "hold-a", "A", 1, 100, 0);
        assert_eq!(p.take(b"c1", &"hold-b", 50), None, "another purpose");
        assert_eq!(p.take(b"c1", &"hold-a", 50), Some(1));
        assert_eq!(p.take(b"c1", &"hold-a", 50), None, "single use");
        p.insert(b"c2".to_vec(), "hold-a", "A", 2, 100, 0);
        assert_eq!(p.take(b"c2", &"hold-a", 100), None, "expired");
        assert!(p.is_empty());
    }

    #[test]
    fn bounded_per_purpose_and_in_all() {
        let p: Pending<u32, u32> = Pending::new(8, 3);
        for i in 0..5u32 {
            p.insert(vec![i as u8], 1, "A", i, 100, 0);
        }
        assert_eq!(p.len(), 3, "one purpose keeps its newest three");
        assert_eq!(p.take(&[0], &1, 1), None);
        assert_eq!(p.take(&[4], &1, 1), Some(4));
        // A flood of purposes evicts the oldest entries, never grows.
        for i in 0..1000u32 {
            p.insert(i.to_be_bytes().to_vec(), 100 + i, "A", i, 100, 0);
        }
        assert_eq!(p.len(), 8);
        assert_eq!(p.take(&999u32.to_be_bytes(), &1099, 1), Some(999));
        p.purge(100);
        assert!(p.is_empty());
    }

    #[test]
    fn a_flood_pushes_out_its_own_entries_only() {
        let p: Pending<String, u32> = Pending::new(8, 2);
        let login = "login:bob".to_owned();
        // bob asks for his sign-in; a stranger asks for "bob" too, often.
        p.insert(b"bob".to_vec(), login.clone(), "B", 0, 100, 0);
        for i in 1..=20u32 {
            p.insert(i.to_be_bytes().to_vec(), login.clone(), "A", i, 100, 0);
        }
        // Then a flood of other purposes fills the store.
        for i in 100..200u32 {
            p.insert(i.to_be_bytes().to_vec(), format!("p{i}"), "A", i, 100, 0);
        }
        assert_eq!(p.len(), 8);
        assert_eq!(p.take(b"bob", &login, 1), Some(0), "bob's challenge survived");
        // Two owners at the bound: the one with more entries gives way.
        let q: Pending<u32, u32> = Pending::new(4, 4);
        q.insert(vec![1], 1, "A", 1, 100, 0);
        q.insert(vec![2], 2, "B", 2, 100, 0);
        q.insert(vec![3], 3, "B", 3, 100, 0);
        q.insert(vec![4], 4, "A", 4, 100, 0);
        q.insert(vec![5], 5, "C", 5, 100, 0);
        assert_eq!(q.take(&[1], &1, 1), None, "A and B tie at two; A's entry is the oldest");
        q.insert(vec![6], 6, "C", 6, 100, 0);
        assert_eq!(q.take(&[2], &2, 1), None, "B has the most now");
        assert_eq!(q.take(&[4], &4, 1), Some(4));
        assert_eq!(q.take(&[5], &5, 1), Some(5));
    }
}
