//! Keeps the holds and carries out what the state machine decides.
//!
//! Every transition runs inside one DashMap shard guard with no `.await`
//! in it, so two concurrent completions of one hold are serialised and
//! only one of them can observe `Transition::Release`. Whoever gets the
//! release also takes the parked request out of the entry: the request
//! can only be forwarded by the holder of that value.

pub use super::parked::{Packed, Parked};
use super::state::{Event, HoldError, HoldState, Phase, Reloaded, Transition};
use crate::body::Body;
use crate::ids::{HoldId, Sid, Txn};
use crate::policy::{HoldMode, Requirements};
use dashmap::DashMap;
use http::{Method, Response};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// The facts of a hold that never change after creation.
#[derive(Debug)]
pub struct HoldMeta {
    pub id: HoldId,
    pub route: String,
    pub action: String,
    /// The action in words, as the route's `label:` gives it.
    pub label: String,
    pub sid: Sid,
    pub txn: Txn,
    pub method: Method,
    /// `Host` as received, port kept.
    pub host: String,
    /// Canonical path (forwarded form), then `?` and the query if any; the
    /// path alone is [`HoldMeta::path`].
    pub path_and_query: String,
    pub mode: HoldMode,
    pub created: SystemTime,
    pub client_ip: IpAddr,
    pub risk: Vec<String>,
    /// The session's own identity, when known: only it may step up.
    pub identity: Option<String>,
    /// What the person proving or approving is shown (label, value).
    pub display: Vec<(String, String)>,
    /// Approvers are involved (the webhook announces such holds).
    pub needs_approval: bool,
    /// `X-Request-Id` as received or generated; ties logs, audit and upstream.
    pub request_id: String,
}

impl HoldMeta {
    /// The canonical path without the query (a path has no raw `?`: the
    /// first one starts the query).
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// Who asked: the session's identity, or a short form of its `sid`.
    pub fn requester(&self) -> String {
        match &self.identity {
            Some(id) => id.clone(),
            None => format!("session:{}", self.sid.as_str().get(..12).unwrap_or(self.sid.as_str())),
        }
    }
}

/// What a `hold`-mode waiter is woken with.
#[derive(Debug)]
pub enum Delivery {
    Response(Response<Body>),
    Failed(crate::hold::state::Phase),
}

pub type Waiter = oneshot::Sender<Delivery>;

#[derive(Debug)]
struct Entry {
    meta: Arc<HoldMeta>,
    state: HoldState,
    /// Packed while it waits: one buffer instead of a header table.
    parked: Option<Packed>,
    /// Bytes charged against the engine's byte budget while parked.
    charged: u64,
    waiter: Option<Waiter>,
    ended: Option<SystemTime>,
}

/// The outcome of one applied event.
#[derive(Debug)]
pub struct Applied {
    pub transition: Transition,
    pub meta: Arc<HoldMeta>,
    pub state: HoldState,
    /// Present only for the one caller that won the release.
    pub release: Option<Release>,
    /// Released for a client waiting on another instance, which forwards
    /// it (shared state only).
    pub elsewhere: bool,
}

#[derive(Debug)]
pub struct Release {
    /// Unpacked by the release that forwards it.
    pub parked: Packed,
    pub waiter: Option<Waiter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("no such hold")]
    Unknown,
    #[error("the global hold limit is reached")]
    GlobalLimit,
    #[error("the per-session hold limit is reached")]
    SessionLimit,
    #[error("the memory budget for parked requests is used up")]
    ByteLimit,
    #[error("the client's hold quota (holds or held bytes) is used up")]
    ClientLimit,
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// The shared store could not be asked; the hold is left as it was.
    #[error("the shared state store is unavailable")]
    StoreUnavailable,
}

#[derive(Debug)]
pub struct HoldEngine {
    holds: DashMap<HoldId, Entry>,
    open_by_session: DashMap<Sid, usize>,
    /// Open holds and their charged bytes per client address (IPv6 by
    /// /64): sessions are free to mint, addresses are not, so one client's
    /// flood meets its own quota before the global limits.
    by_client: DashMap<IpAddr, (usize, u64)>,
    max_per_client: usize,
    max_bytes_per_client: u64,
    open: AtomicUsize,
    max_open: usize,
    held_bytes: AtomicU64,
    max_held_bytes: u64,
    max_per_session: usize,
    /// How long an ended hold is remembered, so late callers learn it was
    /// released or expired instead of hearing it never existed.
    linger: Duration,
}

impl HoldEngine {
    pub fn new(max_open: usize, max_per_session: usize) -> Self {
        HoldEngine {
            holds: DashMap::new(),
            open_by_session: DashMap::new(),
            by_client: DashMap::new(),
            max_per_client: usize::MAX,
            max_bytes_per_client: u64::MAX,
            open: AtomicUsize::new(0),
            max_open,
            held_bytes: AtomicU64::new(0),
            max_held_bytes: u64::MAX,
            max_per_session,
            linger: Duration::from_secs(300),
        }
    }

    /// How long an ended hold is remembered (`limits.keep_ended_holds`).
    pub fn with_keep_ended(mut self, keep: Duration) -> Self {
        self.linger = keep;
        self
    }

    /// Caps the bytes of all parked requests together.
    pub fn with_max_held_bytes(mut self, max: u64) -> Self {
        self.max_held_bytes = max;
        self
    }

    /// Caps the holds and held bytes of one client address.
    pub fn with_client_quota(mut self, holds: usize, bytes: u64) -> Self {
        self.max_per_client = holds;
        self.max_bytes_per_client = bytes;
        self
    }

    pub fn held_bytes(&self) -> u64 {
        self.held_bytes.load(Ordering::Relaxed)
    }

    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Holds in memory: open, or ended and not yet forgotten.
    pub fn kept_count(&self) -> usize {
        self.holds.len()
    }

    pub fn create(
        &self,
        meta: HoldMeta,
        state: HoldState,
        parked: Parked,
        waiter: Option<Waiter>,
    ) -> Result<Arc<HoldMeta>, EngineError> {
        let charged = parked_size(&parked);
        let client = client_key(meta.client_ip);
        {
            // Checked and charged first, under the client's own entry: a
            // flood is refused before it touches the shared budgets.
            let mut c = self.by_client.entry(client).or_insert((0, 0));
            if c.0 >= self.max_per_client || c.1.saturating_add(charged) > self.max_bytes_per_client {
                let empty = c.0 == 0;
                drop(c);
                if empty {
                    self.by_client.remove_if(&client, |_, c| c.0 == 0);
                }
                return Err(EngineError::ClientLimit);
            }
            c.0 += 1;
            c.1 += charged;
        }
        let refund = |engine: &Self| engine.release_client(client, 1, charged);
        if self
            .held_bytes
            .fetch_add(charged, Ordering::AcqRel)
            .saturating_add(charged)
            > self.max_held_bytes
        {
            self.held_bytes.fetch_sub(charged, Ordering::AcqRel);
            refund(self);
            return Err(EngineError::ByteLimit);
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.held_bytes.fetch_sub(charged, Ordering::AcqRel);
            refund(self);
            return Err(EngineError::GlobalLimit);
        }
        {
            let mut n = self.open_by_session.entry(meta.sid.clone()).or_insert(0);
            if *n >= self.max_per_session {
                drop(n);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.held_bytes.fetch_sub(charged, Ordering::AcqRel);
                refund(self);
                return Err(EngineError::SessionLimit);
            }
            *n += 1;
        }
        let meta = Arc::new(meta);
        self.holds.insert(
            meta.id.clone(),
            Entry {
                meta: meta.clone(),
                state,
                parked: Some(Packed::pack(&parked)),
                charged,
                waiter,
                ended: None,
            },
        );
        Ok(meta)
    }

    /// A snapshot for status pages and access checks.
    pub fn get(&self, id: &HoldId) -> Option<(Arc<HoldMeta>, HoldState)> {
        self.holds.get(id).map(|e| (e.meta.clone(), e.state.clone()))
    }

    /// Applies `event` to hold `id` atomically.
    pub fn apply(&self, id: &HoldId, event: Event, now: SystemTime) -> Result<Applied, EngineError> {
        let mut entry = self.holds.get_mut(id).ok_or(EngineError::Unknown)?;
        let was_open = entry.state.phase.is_open();
        let transition = entry.state.on(event, now)?;
        let mut release = None;
        match transition {
            Transition::Release => {
                if let Some(parked) = entry.parked.take() {
                    release = Some(Release {
                        parked,
                        waiter: entry.waiter.take(),
                    });
                }
            }
            Transition::Denied | Transition::Expired => {
                entry.parked = None;
                let phase = entry.state.phase;
                if let Some(w) = entry.waiter.take() {
                    // The waiter may have gone already; nothing to do then.
                    let _ = w.send(Delivery::Failed(phase));
                }
            }
            Transition::Progress | Transition::Rejected { .. } => {}
        }
        let mut freed = 0;
        if entry.parked.is_none() && entry.charged > 0 {
            self.held_bytes.fetch_sub(entry.charged, Ordering::AcqRel);
            freed = entry.charged;
            entry.charged = 0;
        }
        let now_open = entry.state.phase.is_open();
        if was_open && !now_open {
            entry.ended = Some(now);
        }
        let applied = Applied {
            transition,
            meta: entry.meta.clone(),
            state: entry.state.clone(),
            release,
            elsewhere: false,
        };
        drop(entry);
        let closed = was_open && !now_open;
        if closed {
            self.close(&applied.meta.sid);
        }
        if closed || freed > 0 {
            self.release_client(client_key(applied.meta.client_ip), usize::from(closed), freed);
        }
        Ok(applied)
    }

    /// Takes on a state the shared store committed (another instance, or
    /// this one, decided it there), with the bookkeeping `apply` does: a
    /// closed hold frees its budgets, and its waiter is handed back when
    /// `take` (this instance forwards) or told how the hold ended.
    pub fn mirror(&self, id: &HoldId, state: HoldState, take: bool, now: SystemTime) -> Option<Waiter> {
        let mut entry = self.holds.get_mut(id)?;
        let was_open = entry.state.phase.is_open();
        entry.state = state;
        let phase = entry.state.phase;
        let mut waiter = None;
        match phase {
            Phase::Released if take => {
                entry.parked = None;
                waiter = entry.waiter.take();
            }
            // Released, but not taken by this call: the store keeps the
            // request, and a waiter here stays until this instance takes
            // the release itself (see `take_waiter`).
            Phase::Released => entry.parked = None,
            Phase::Denied | Phase::Expired => {
                entry.parked = None;
                if let Some(w) = entry.waiter.take() {
                    let _ = w.send(Delivery::Failed(phase));
                }
            }
            Phase::Pending | Phase::Satisfied => {}
        }
        let mut freed = 0;
        if entry.parked.is_none() && entry.charged > 0 {
            self.held_bytes.fetch_sub(entry.charged, Ordering::AcqRel);
            freed = entry.charged;
            entry.charged = 0;
        }
        let closed = was_open && !phase.is_open();
        if closed {
            entry.ended = Some(now);
        }
        let meta = entry.meta.clone();
        drop(entry);
        if closed {
            self.close(&meta.sid);
        }
        if closed || freed > 0 {
            self.release_client(client_key(meta.client_ip), usize::from(closed), freed);
        }
        waiter
    }

    /// The waiter of a hold whose release this instance took from the
    /// shared store.
    pub fn take_waiter(&self, id: &HoldId) -> Option<Waiter> {
        self.holds.get_mut(id).and_then(|mut e| e.waiter.take())
    }

    /// The facts of a hold kept here, if any.
    pub fn meta(&self, id: &HoldId) -> Option<Arc<HoldMeta>> {
        self.holds.get(id).map(|e| e.meta.clone())
    }

    /// Ids of open holds whose client waits here (`hold` mode).
    pub fn waiting(&self) -> Vec<HoldId> {
        self.holds
            .iter()
            .filter(|e| e.waiter.is_some())
            .map(|e| e.key().clone())
            .collect()
    }

    /// Ids of open holds past their deadline.
    pub fn due(&self, now: SystemTime) -> Vec<Arc<HoldMeta>> {
        self.holds
            .iter()
            .filter(|e| e.state.phase.is_open() && now > e.state.deadline)
            .map(|e| e.meta.clone())
            .collect()
    }

    fn release_client(&self, client: IpAddr, holds: usize, bytes: u64) {
        let mut gone = false;
        if let Some(mut c) = self.by_client.get_mut(&client) {
            c.0 = c.0.saturating_sub(holds);
            c.1 = c.1.saturating_sub(bytes);
            gone = c.0 == 0 && c.1 == 0;
        }
        if gone {
            self.by_client.remove_if(&client, |_, c| c.0 == 0 && c.1 == 0);
        }
    }

    fn close(&self, sid: &Sid) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let mut gone = false;
        if let Some(mut n) = self.open_by_session.get_mut(sid) {
            *n = n.saturating_sub(1);
            gone = *n == 0;
        }
        if gone {
            self.open_by_session.remove_if(sid, |_, n| *n == 0);
        }
    }

    /// Expires holds past their deadline and forgets ended ones after the
    /// linger period. Returns the ids that expired now.
    pub fn sweep(&self, now: SystemTime) -> Vec<Arc<HoldMeta>> {
        let due: Vec<HoldId> = self
            .holds
            .iter()
            .filter(|e| e.state.phase.is_open() && now > e.state.deadline)
            .map(|e| e.key().clone())
            .collect();
        let mut expired = Vec::new();
        for id in due {
            if let Ok(a) = self.apply(&id, Event::Expire, now) {
                if a.transition == Transition::Expired {
                    expired.push(a.meta);
                }
            }
        }
        self.forget_ended(now);
        expired
    }

    /// Forgets holds that ended more than the linger period ago, and gives
    /// back the room a burst of holds left in the maps.
    pub fn forget_ended(&self, now: SystemTime) {
        let linger = self.linger;
        self.holds.retain(|_, e| match e.ended {
            Some(t) => now.duration_since(t).map(|d| d <= linger).unwrap_or(true),
            None => true,
        });
        crate::sparse::shrink(&self.holds);
        crate::sparse::shrink(&self.open_by_session);
        crate::sparse::shrink(&self.by_client);
    }

    /// Snapshots of the open holds, for the approvers' queue.
    pub fn open_holds(&self) -> Vec<(Arc<HoldMeta>, HoldState)> {
        self.holds
            .iter()
            .filter(|e| e.state.phase.is_open())
            .map(|e| (e.meta.clone(), e.state.clone()))
            .collect()
    }

    /// Holds an open hold to its route's requirements after a reload
    /// (see [`HoldState::reload`]), under the entry's guard like any event.
    pub fn reload(&self, id: &HoldId, requirements: &Requirements) -> Result<Reloaded, EngineError> {
        let mut entry = self.holds.get_mut(id).ok_or(EngineError::Unknown)?;
        Ok(entry.state.reload(requirements))
    }

    /// Phase of a hold, if known.
    pub fn phase(&self, id: &HoldId) -> Option<Phase> {
        self.holds.get(id).map(|e| e.state.phase)
    }
}

/// The address a client quota is kept under: IPv4 as it is, IPv6 by its
/// /64 (one subscriber's allocation), IPv4-mapped IPv6 as IPv4.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// What a parked request costs: its body and its header bytes.
/// What a parked request weighs against the byte limits.
pub(crate) fn parked_size(p: &Parked) -> u64 {
    let headers: usize = p.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
    (p.body.len() + headers) as u64
}

#[cfg(test)]
mod tests;
