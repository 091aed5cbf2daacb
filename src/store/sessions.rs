//! What the gateway remembers of each session it has seen (SPEC §3): when
//! it first saw it and from which device, for `session_age_over` and
//! `new_device`, and who acts on it: the identity it was first seen with,
//! or the first person who stepped up on it.
//!
//! Sightings are recorded on every request that carries a session, so a
//! stolen session's first sighting is its owner's, not the thief's. That is
//! the pass-through path, so a session already seen costs one map lookup
//! and no allocation; a new one costs one insert. The map is bounded: once
//! full, new sessions are not recorded, and their facts are reported as
//! unknown (the risk conditions then fire), so a flood of minted session
//! values can only cause more step-ups, never fewer.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How long a session is remembered after its last sighting, in every
/// store (in Redis, the TTL of its key).
pub const SESSION_IDLE_SECS: u64 = 86_400;

/// Sessions remembered at most (about 100 bytes each).
pub const MAX_TRACKED_SESSIONS: usize = 200_000;

/// Sessions bound to a person are kept beyond the sighting cap, up to
/// this many: a binding is what stops a second person acting on a session.
const MAX_BOUND_SESSIONS: usize = 2 * MAX_TRACKED_SESSIONS;

#[derive(Debug)]
pub struct SessionTracker {
    seen: DashMap<[u8; 32], Seen>,
    len: AtomicUsize,
    cap: usize,
}

#[derive(Debug)]
struct Seen {
    first: u64,
    last: u64,
    device: [u8; 16],
    who: Option<Box<str>>,
}

/// A session's facts as first recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub first: u64,
    /// The device the session was first seen from.
    pub device: [u8; 16],
}

/// The outcome of binding a person to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// This person was already the session's.
    Same,
    /// This person is now the session's, by this call.
    New,
    /// Someone else already is.
    Other(String),
    /// The tracker is full; nobody can be bound, so nobody may act.
    Full,
}

impl Default for SessionTracker {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED_SESSIONS)
    }
}

impl SessionTracker {
    pub fn with_capacity(cap: usize) -> Self {
        SessionTracker {
            seen: DashMap::new(),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    /// Records a sighting of `sid` at `now`; `device` is computed only
    /// when the session is new. `None` when the session is not recorded
    /// because the tracker is full.
    pub fn observe(&self, sid: &[u8; 32], now: u64, device: impl FnOnce() -> [u8; 16]) -> Option<Sighting> {
        if let Some(mut e) = self.seen.get_mut(sid) {
            e.last = now;
            return Some(Sighting {
                first: e.first,
                device: e.device,
            });
        }
        if self.len.load(Ordering::Relaxed) >= self.cap {
            return None;
        }
        let e = self.insert(sid, now, device());
        Some(Sighting {
            first: e.0,
            device: e.1,
        })
    }

    fn insert(&self, sid: &[u8; 32], now: u64, device: [u8; 16]) -> (u64, [u8; 16]) {
        let e = self.seen.entry(*sid).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            Seen {
                first: now,
                last: now,
                device,
                who: None,
            }
        });
        (e.first, e.device)
    }

    /// Who acts on `sid`, when someone is bound to it.
    pub fn who(&self, sid: &[u8; 32]) -> Option<String> {
        self.seen.get(sid).and_then(|e| e.who.as_deref().map(str::to_owned))
    }

    /// Binds `who` to `sid` unless someone else already is: one atomic
    /// step, so two people racing for one session cannot both win.
    pub fn bind(&self, sid: &[u8; 32], who: &str, now: u64) -> Bind {
        match self.seen.entry(*sid) {
            Entry::Occupied(mut e) => {
                let e = e.get_mut();
                e.last = now;
                match &e.who {
                    Some(w) if &**w == who => Bind::Same,
                    Some(w) => Bind::Other(w.to_string()),
                    None => {
                        e.who = Some(who.into());
                        Bind::New
                    }
                }
            }
            Entry::Vacant(v) => {
                if self.len.load(Ordering::Relaxed) >= MAX_BOUND_SESSIONS.max(self.cap) {
                    return Bind::Full;
                }
                self.len.fetch_add(1, Ordering::Relaxed);
                v.insert(Seen {
                    first: now,
                    last: now,
                    // Only when the sighting could not be recorded (the
                    // tracker was full): the device stays unknown, so
                    // `new_device` keeps firing, as for any unrecorded session.
                    device: [0; 16],
                    who: Some(who.into()),
                });
                Bind::New
            }
        }
    }

    /// Undoes a [`Bind::New`] whose step-up did not count after all (the
    /// hold refused it), so it binds nobody.
    pub fn unbind(&self, sid: &[u8; 32], who: &str) {
        if let Some(mut e) = self.seen.get_mut(sid) {
            if e.who.as_deref() == Some(who) {
                e.who = None;
            }
        }
    }

    /// Forgets sessions idle for longer than `idle` seconds.
    pub fn purge(&self, now: u64, idle: u64) {
        self.seen.retain(|_, s| now.saturating_sub(s.last) <= idle);
        self.len.store(self.seen.len(), Ordering::Relaxed);
        crate::sparse::shrink(&self.seen);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sighting_and_device_are_kept() {
        let t = SessionTracker::default();
        let s = [1; 32];
        let a = t.observe(&s, 100, || [7; 16]).expect("recorded");
        assert_eq!(
            a,
            Sighting {
                first: 100,
                device: [7; 16]
            }
        );
        let b = t.observe(&s, 200, || unreachable!("computed only for a new session"));
        assert_eq!(b, Some(a));
        t.purge(200 + 86_400, 86_400);
        assert_eq!(t.len(), 1);
        t.purge(200 + 86_401, 86_400);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_tracker_records_no_new_session() {
        let t = SessionTracker::with_capacity(2);
        assert!(t.observe(&[1; 32], 1, || [0; 16]).is_some());
        assert!(t.observe(&[2; 32], 1, || [0; 16]).is_some());
        assert!(t.observe(&[3; 32], 1, || [0; 16]).is_none());
        assert!(t.observe(&[1; 32], 2, || [0; 16]).is_some(), "known sessions still are");
    }

    #[test]
    fn the_first_person_bound_keeps_the_session() {
        let t = SessionTracker::default();
        let s = [9; 32];
        t.observe(&s, 1, || [0; 16]);
        assert_eq!(t.who(&s), None);
        assert_eq!(t.bind(&s, "bob", 2), Bind::New);
        assert_eq!(t.bind(&s, "bob", 3), Bind::Same);
        assert_eq!(t.bind(&s, "mallory", 4), Bind::Other("bob".into()));
        assert_eq!(t.who(&s), Some("bob".into()));
        assert_eq!(t.bind(&[8; 32], "alice", 5), Bind::New, "unseen sessions bind too");
        t.unbind(&s, "mallory");
        assert_eq!(t.who(&s), Some("bob".into()), "only the bound person is unbound");
        t.unbind(&s, "bob");
        assert_eq!(t.bind(&s, "mallory", 6), Bind::New);
    }
}
