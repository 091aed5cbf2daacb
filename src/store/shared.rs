//! The records several instances must agree on (SPEC §10): single-use
//! proofs (token `jti`s, TOTP steps) and the fingerprints of the keys every
//! instance must share. One interface, two backends: process memory for a
//! single instance, Redis for several (see `redis_state`).

use super::journal::{Entry, Journal};
use super::journal_writer::JournalWriter;
use super::pending::Ceremonies;
use super::sessions::{Bind, SessionTracker, Sighting, SESSION_IDLE_SECS};
use super::{Fails, FailureCounts, Rate, RateLimiter, ReplayCache, StepCounters};
use dashmap::DashMap;
use std::future::Future;
use std::pin::Pin;

/// What every store operation returns: the answer, or the store could not
/// be asked. Callers fail closed on the error.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

pub use super::state_error::StateError;

/// What an instance publishes about its shared secrets: digests only, never
/// the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-256 of the session HMAC key, domain-separated.
    pub session: String,
    /// The assertion key's JWK thumbprint (its `kid`).
    pub assertion: String,
}

impl Fingerprints {
    pub fn new(session_key: &[u8], assertion_kid: &str) -> Self {
        Fingerprints {
            session: Self::session_digest(session_key),
            assertion: assertion_kid.to_owned(),
        }
    }

    /// A digest that names the session key without revealing it (the key
    /// is 32 random bytes, so its hash cannot be searched back).
    pub fn session_digest(session_key: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"stepgate session key fingerprint\0");
        h.update(session_key);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One line, as stored and compared.
    pub fn encode(&self) -> String {
        format!("session={};assertion={}", self.session, self.assertion)
    }

    /// Which of the keys differ from `published` (empty when they agree).
    pub fn differences(&self, published: &str) -> Vec<&'static str> {
        let field = |name: &str| {
            published
                .split(';')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
        };
        let mut out = Vec::new();
        if field("session").as_deref() != Some(self.session.as_str()) {
            out.push("session key (session.key_file)");
        }
        if field("assertion").as_deref() != Some(self.assertion.as_str()) {
            out.push("assertion key (assertion.key)");
        }
        out
    }
}

/// The shared-state port. Every record written has an expiry, so nothing
/// outlives the window in which it matters.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// `memory` or `redis`, for logs, metrics and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Records `key` as used until `expires` (Unix seconds); false when it
    /// was already used. Check and insert are one atomic step, across every
    /// instance sharing the store.
    fn claim_once<'a>(&'a self, key: &'a str, expires: u64, now: u64) -> StoreFuture<'a, bool>;

    /// Accepts TOTP `step` for `user` when it is newer than the last step
    /// accepted for them (RFC 6238 §5.2), atomically.
    fn advance_step<'a>(&'a self, user: &'a str, step: u64) -> StoreFuture<'a, bool>;

    /// The store's state as last seen (no round trip): sensitive work is
    /// refused up front while it is down.
    fn is_available(&self) -> bool;

    /// Asks the store now, refreshes `is_available`, and keeps this
    /// instance's fingerprints published.
    fn probe(&self) -> StoreFuture<'_, ()>;

    /// Publishes `fp` unless other instances published different keys, in
    /// which case this instance must not serve.
    fn join<'a>(&'a self, fp: &'a Fingerprints) -> StoreFuture<'a, ()>;

    /// Compares `fp` with what the running instances published, without
    /// publishing anything (`stepgate check`).
    fn compare_keys<'a>(&'a self, fp: &'a Fingerprints) -> StoreFuture<'a, ()>;

    /// Keeps a ceremony in flight (a WebAuthn challenge and what it was
    /// issued with) until `expires`, to be taken once by whichever instance
    /// the answer reaches. `purpose` names what the challenge may verify;
    /// `owner` who asked, so a bounded store makes room out of the asker's
    /// own entries first.
    fn put_ceremony<'a>(&'a self, c: Ceremony<'a>, now: u64) -> StoreFuture<'a, ()>;

    /// Takes the ceremony issued with `challenge` for `purpose`, once, on
    /// any instance. A challenge issued for another purpose stays where it
    /// is; an expired one is gone.
    fn take_ceremony<'a>(&'a self, challenge: &'a [u8], purpose: &'a str, now: u64)
        -> StoreFuture<'a, Option<Vec<u8>>>;

    /// The failures counted at `key` (see [`super::Backoff`]).
    fn failures<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Fails>>;

    /// Counts a failure at `key`, kept until `forget_after` seconds after
    /// it; a key quiet that long starts over. One atomic step, so failures
    /// sent to several instances at once all count.
    fn record_failure<'a>(&'a self, key: &'a str, now: u64, forget_after: u64) -> StoreFuture<'a, ()>;

    /// A success at `key`: its failures are forgotten.
    fn clear_failures<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Takes one request from `key`'s bucket of `rate` at `now_ms` (Unix
    /// milliseconds); `Err(wait)` when it is empty, with the seconds until
    /// the next request would be allowed. On Redis every instance takes
    /// from the same bucket.
    fn take_rate<'a>(&'a self, key: &'a str, rate: Rate, now_ms: u64) -> StoreFuture<'a, Result<(), u64>>;

    /// Records a sighting of session `sid` (its keyed digest) at `now`
    /// and returns its facts as first recorded: the first sighting keeps
    /// `device()` (asked only for a session not known yet). A session is
    /// kept [`SESSION_IDLE_SECS`] after its last sighting. `None` when it
    /// cannot be recorded (a full memory tracker, an unreachable Redis):
    /// its facts are unknown, and the risk conditions fire.
    fn sight<'a>(&'a self, sid: &'a [u8; 32], now: u64, device: &'a DeviceKey<'a>)
        -> StoreFuture<'a, Option<Sighting>>;

    /// Who acts on session `sid`, when someone is bound to it.
    fn actor<'a>(&'a self, sid: &'a [u8; 32]) -> StoreFuture<'a, Option<String>>;

    /// Binds `who` to session `sid` unless someone else already is: one
    /// atomic step across every instance, so two people racing for one
    /// session cannot both win.
    fn bind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str, now: u64) -> StoreFuture<'a, Bind>;

    /// Undoes a [`Bind::New`] of `who` whose step-up did not count after all.
    fn unbind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str) -> StoreFuture<'a, ()>;

    /// Counts hold `q.hold` against its client's quota (`max_holds`
    /// holds, `max_bytes` parked bytes), or refuses (`false`) when it
    /// would exceed it. On Redis every instance counts into one quota per
    /// client, and each hold's share lapses at `q.until` (its deadline)
    /// whether or not anyone gives it back. In memory the hold engine
    /// counts a client's holds itself, so this admits everything.
    fn take_hold_quota<'a>(&'a self, q: HoldQuota<'a>, now: u64) -> StoreFuture<'a, bool>;

    /// Gives hold `hold`'s share of `client`'s quota back (it ended).
    /// Giving back a share not taken, or twice, does nothing.
    fn give_hold_quota<'a>(&'a self, client: &'a str, hold: &'a str) -> StoreFuture<'a, ()>;

    /// Drops expired records (a no-op where the store expires them itself).
    fn purge(&self, now: u64);
}

/// The device key of a session's first sighting, computed only when the
/// store does not know the session yet.
pub type DeviceKey<'a> = dyn Fn() -> [u8; 16] + Send + Sync + 'a;

/// One hold's claim on its client's quota (see [`StateStore::take_hold_quota`]).
#[derive(Debug, Clone, Copy)]
pub struct HoldQuota<'a> {
    /// The client address as the quotas key it (IPv6 by /64).
    pub client: &'a str,
    pub hold: &'a str,
    /// What the parked request weighs.
    pub bytes: u64,
    /// Unix seconds after which the hold cannot be open any more.
    pub until: u64,
    pub max_holds: usize,
    pub max_bytes: u64,
}

/// A ceremony to keep (see [`StateStore::put_ceremony`]).
#[derive(Debug, Clone, Copy)]
pub struct Ceremony<'a> {
    pub challenge: &'a [u8],
    pub purpose: &'a str,
    pub owner: &'a str,
    /// What the finishing step needs, opaque to the store.
    pub value: &'a [u8],
    /// Unix seconds.
    pub expires: u64,
}

/// One instance: the records live in this process, and each one is also
/// appended to a journal before it counts, so that a restart does not
/// reopen a replay.
#[derive(Debug, Default)]
pub struct MemoryState {
    once: ReplayCache,
    steps: StepCounters,
    /// Not journaled: a ceremony lost in a restart is only started again.
    ceremonies: Ceremonies,
    failures: FailureCounts,
    rates: DashMap<Rate, RateLimiter>,
    /// Not journaled: a session forgotten in a restart is seen anew.
    sessions: SessionTracker,
    journal: Option<JournalWriter>,
}

/// How long a TOTP step is kept in the journal: longer than any code of
/// it can be accepted.
const STEP_KEEP_SECS: u64 = 600;

fn step_until(step: u64) -> u64 {
    step.saturating_mul(crate::stepup::totp::STEP)
        .saturating_add(STEP_KEEP_SECS)
}

impl MemoryState {
    /// Opens (or creates) the journal at `path` and restores the records
    /// that have not expired at `now`. A journal that cannot be read or
    /// written is an error: starting without it would forget which proofs
    /// were spent.
    pub fn open(path: &std::path::Path, now: u64) -> Result<Self, StateError> {
        let (journal, live) = Journal::open(path, now)?;
        let journal = JournalWriter::start(journal, live.len())?;
        let state = MemoryState::default();
        for entry in live {
            match entry {
                Entry::Once { key, until } => {
                    state.once.claim(key, until);
                }
                Entry::Step { user, step, .. } => {
                    state.steps.claim(&user, step);
                }
            }
        }
        Ok(MemoryState {
            journal: Some(journal),
            ..state
        })
    }

    /// A claim that counts once `entry` is durable. On failure the record
    /// still counts in memory (a value is burnt rather than reopened) and
    /// the proof is refused.
    fn durable<'a>(&self, entry: Entry) -> StoreFuture<'a, bool> {
        match &self.journal {
            None => Box::pin(std::future::ready(Ok(true))),
            Some(j) => {
                let synced = j.append(entry);
                Box::pin(async move { synced.await.map(|()| true) })
            }
        }
    }

    /// Rewrites a journal that has grown well past the live records. A
    /// value claimed but not yet appended is in the maps already, so it is
    /// in the rewrite too (see `JournalWriter::compact_if_bloated`).
    fn compact(&self, now: u64) {
        let Some(j) = &self.journal else { return };
        j.compact_if_bloated(self.once.len() + self.steps.last.len(), || self.live(now));
    }

    fn live(&self, now: u64) -> Vec<Entry> {
        let mut live: Vec<Entry> = self
            .once
            .seen
            .iter()
            .filter(|e| *e.value() >= now)
            .map(|e| Entry::Once {
                key: e.key().clone(),
                until: *e.value(),
            })
            .collect();
        live.extend(
            self.steps
                .last
                .iter()
                .map(|e| Entry::Step {
                    user: e.key().clone(),
                    step: *e.value(),
                    until: step_until(*e.value()),
                })
                .filter(|e| e.until() >= now),
        );
        live
    }
}

impl StateStore for MemoryState {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn claim_once<'a>(&'a self, key: &'a str, expires: u64, _now: u64) -> StoreFuture<'a, bool> {
        if !self.once.claim(key.to_owned(), expires) {
            return Box::pin(std::future::ready(Ok(false)));
        }
        self.durable(Entry::Once {
            key: key.to_owned(),
            until: expires,
        })
    }

    fn advance_step<'a>(&'a self, user: &'a str, step: u64) -> StoreFuture<'a, bool> {
        if !self.steps.claim(user, step) {
            return Box::pin(std::future::ready(Ok(false)));
        }
        // A step names its own time: it is worth keeping until well after
        // any code of it could be accepted.
        self.durable(Entry::Step {
            user: user.to_owned(),
            step,
            until: step_until(step),
        })
    }

    fn is_available(&self) -> bool {
        true
    }

    fn probe(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn join<'a>(&'a self, _fp: &'a Fingerprints) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn compare_keys<'a>(&'a self, _fp: &'a Fingerprints) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn put_ceremony<'a>(&'a self, c: Ceremony<'a>, now: u64) -> StoreFuture<'a, ()> {
        self.ceremonies.0.insert(
            c.challenge.to_vec(),
            c.purpose.to_owned(),
            c.owner,
            c.value.to_vec(),
            c.expires,
            now,
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn take_ceremony<'a>(
        &'a self,
        challenge: &'a [u8],
        purpose: &'a str,
        now: u64,
    ) -> StoreFuture<'a, Option<Vec<u8>>> {
        let taken = self.ceremonies.0.take(challenge, &purpose.to_owned(), now);
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn failures<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Fails>> {
        Box::pin(std::future::ready(Ok(self.failures.get(key, now))))
    }

    fn record_failure<'a>(&'a self, key: &'a str, now: u64, forget_after: u64) -> StoreFuture<'a, ()> {
        self.failures.record(key, now, forget_after);
        Box::pin(std::future::ready(Ok(())))
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.failures.clear(key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn take_rate<'a>(&'a self, key: &'a str, rate: Rate, now_ms: u64) -> StoreFuture<'a, Result<(), u64>> {
        let taken = self
            .rates
            .entry(rate)
            .or_insert_with(|| RateLimiter::new(rate.burst, rate.per_minute))
            .take(key, now_ms);
        Box::pin(std::future::ready(Ok(taken)))
    }

    fn sight<'a>(
        &'a self,
        sid: &'a [u8; 32],
        now: u64,
        device: &'a DeviceKey<'a>,
    ) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(std::future::ready(Ok(self.sessions.observe(sid, now, device))))
    }

    fn actor<'a>(&'a self, sid: &'a [u8; 32]) -> StoreFuture<'a, Option<String>> {
        Box::pin(std::future::ready(Ok(self.sessions.who(sid))))
    }

    fn bind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str, now: u64) -> StoreFuture<'a, Bind> {
        Box::pin(std::future::ready(Ok(self.sessions.bind(sid, who, now))))
    }

    fn unbind_actor<'a>(&'a self, sid: &'a [u8; 32], who: &'a str) -> StoreFuture<'a, ()> {
        self.sessions.unbind(sid, who);
        Box::pin(std::future::ready(Ok(())))
    }

    fn take_hold_quota<'a>(&'a self, _q: HoldQuota<'a>, _now: u64) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(true)))
    }

    fn give_hold_quota<'a>(&'a self, _client: &'a str, _hold: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn purge(&self, now: u64) {
        // Sessions idle for a day are forgotten; their next request counts
        // as a first sighting.
        self.sessions.purge(now, SESSION_IDLE_SECS);
        for r in self.rates.iter() {
            r.value().purge(now.saturating_mul(1000));
        }
        self.once.purge(now);
        self.ceremonies.0.purge(now);
        self.failures.purge(now);
        self.compact(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_the_key_that_differs() {
        let a = Fingerprints::new(b"k1", "kid-a");
        assert!(a.differences(&a.encode()).is_empty());
        let b = Fingerprints::new(b"k2", "kid-a");
        assert_eq!(a.differences(&b.encode()), vec!["session key (session.key_file)"]);
        let c = Fingerprints::new(b"k1", "kid-c");
        assert_eq!(a.differences(&c.encode()), vec!["assertion key (assertion.key)"]);
        assert_eq!(a.differences("garbage").len(), 2);
        assert!(!a.encode().contains("k1"), "the key itself is never published");
    }

    #[tokio::test]
    async fn memory_claims_once_and_steps_forward() {
        let m = MemoryState::default();
        assert!(m.claim_once("jti:a", 100, 0).await.expect("memory"));
        assert!(!m.claim_once("jti:a", 100, 0).await.expect("memory"));
        assert!(m.advance_step("alice", 5).await.expect("memory"));
        assert!(!m.advance_step("alice", 5).await.expect("memory"));
    }

    #[tokio::test]
    async fn the_journal_survives_a_restart_and_forgets_what_expired() {
        let dir = crate::ids::test_tmp().join(format!("stepgate-journal-{}", crate::ids::random_token()));
        let path = dir.join("single-use.jsonl");
        let m = MemoryState::open(&path, 1000).expect("opens");
        assert!(m.claim_once("jti:keep", 2000, 1000).await.expect("claims"));
        assert!(m.claim_once("jti:old", 1500, 1000).await.expect("claims"));
        assert!(m.advance_step("alice", 100).await.expect("steps"));
        drop(m);
        // A torn last line (a crash mid-write) is ignored, and so are lines
        // that are not records (edited by hand, or another file's), without
        // losing the records around them.
        let text = std::fs::read_to_string(&path).expect("journal");
        let mut text = format!("not json\n{{\"kind\":\"once\",\"key\":7,\"until\":\"x\"}}\n\u{0}\u{ff}\n{text}");
        text.push_str("{\"kind\":\"once\",\"ke");
        std::fs::write(&path, text).expect("write");
        let m = MemoryState::open(&path, 1600).expect("reopens");
        assert!(
            !m.claim_once("jti:keep", 2000, 1600).await.expect("claims"),
            "still spent"
        );
        assert!(
            m.claim_once("jti:old", 1700, 1600).await.expect("claims"),
            "expired records go"
        );
        assert!(!m.advance_step("alice", 100).await.expect("steps"), "the step too");
        assert!(m.advance_step("alice", 101).await.expect("steps"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_long_run_compacts_the_journal_to_what_is_live() {
        let dir = crate::ids::test_tmp().join(format!("stepgate-journal-{}", crate::ids::random_token()));
        let path = dir.join("single-use.jsonl");
        let m = MemoryState::open(&path, 0).expect("opens");
        for i in 0..5000 {
            assert!(m.claim_once(&format!("jti:short-{i}"), 10, 0).await.expect("claims"));
        }
        assert!(m.claim_once("jti:long", 1000, 0).await.expect("claims"));
        m.purge(5);
        assert_eq!(
            std::fs::read_to_string(&path).expect("journal").lines().count(),
            5001,
            "not yet"
        );
        m.purge(11);
        // The rewrite is queued ahead of this claim, and the claim returns
        // once its batch is on disk.
        assert!(
            m.claim_once("jti:after", 1000, 11).await.expect("claims"),
            "appends go on"
        );
        let text = std::fs::read_to_string(&path).expect("journal");
        assert_eq!(text.lines().count(), 2, "{text}");
        drop(m);
        let m = MemoryState::open(&path, 12).expect("reopens");
        assert!(!m.claim_once("jti:long", 1000, 12).await.expect("claims"));
        assert!(!m.claim_once("jti:after", 1000, 12).await.expect("claims"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Claims from many tasks at once share syncs, each counts once, and
    /// every one that returned true is on disk: a restart refuses them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_are_each_durable_once_they_count() {
        let dir = crate::ids::test_tmp().join(format!("stepgate-journal-{}", crate::ids::random_token()));
        let path = dir.join("single-use.jsonl");
        let m = std::sync::Arc::new(MemoryState::open(&path, 0).expect("opens"));
        let mut tasks = Vec::new();
        for i in 0..400 {
            let m = m.clone();
            // Two claimants for each value: exactly one wins.
            tasks.push(tokio::spawn(async move {
                m.claim_once(&format!("jti:{}", i / 2), 1000, 0).await.expect("claims")
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.expect("task"));
        }
        assert_eq!(won, 200);
        let lines = std::fs::read_to_string(&path).expect("journal").lines().count();
        assert_eq!(lines, 200, "one line per value that counted");
        drop(m);
        let m = MemoryState::open(&path, 1).expect("reopens");
        for i in 0..200 {
            assert!(
                !m.claim_once(&format!("jti:{i}"), 1000, 1).await.expect("claims"),
                "jti:{i} reopened"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
