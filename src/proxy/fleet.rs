//! Holds shared by several instances (`state.backend: redis`, SPEC §10).
//!
//! With the memory backend every call here is the local engine's. With
//! Redis the store is the truth: every event is decided by the pure state
//! machine on the stored state and committed with one compare-and-set
//! (`store::redis_holds`), and the local engine mirrors what was committed
//! for the holds created here, because it keeps what cannot travel: the
//! limits, and the connection of a `hold`-mode client waiting here.
//!
//! Who forwards a release: the caller that won it, except for a `hold`-mode
//! hold whose client waits on another instance. That one is left
//! `released` in the store and announced on a pub/sub channel; the
//! instance with the waiting client takes it (`released` → `forwarding`,
//! once) and forwards. Every instance also polls its waiting holds every
//! [`POLL`], so a lost message delays a release but never loses one.

use super::{effects, release, Gateway};
use crate::hold::engine::{Applied, EngineError, Release};
use crate::hold::{Event, HoldMeta, HoldState, Parked, Transition};
use crate::ids::HoldId;
use crate::policy::HoldMode;
use crate::store::redis_holds::{HoldStoreError, FORWARDING};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the holds waiting here are compared with the store, whatever
/// pub/sub delivered.
pub(super) const POLL: Duration = Duration::from_millis(500);

pub(super) fn store_error(e: HoldStoreError) -> EngineError {
    match e {
        HoldStoreError::Unknown => EngineError::Unknown,
        HoldStoreError::Hold(h) => EngineError::Hold(h),
        HoldStoreError::Store(e) => {
            tracing::error!(error = %e, "shared hold store unavailable");
            EngineError::StoreUnavailable
        }
    }
}

/// Stores a hold just created here, so any instance can act on it. In a
/// task of its own, so a client going away cannot cut the write half-way:
/// the hold is in the store, or it is not.
pub(super) async fn put(
    gw: &Arc<Gateway>,
    meta: &Arc<HoldMeta>,
    state: &HoldState,
    parked: Parked,
) -> Result<(), EngineError> {
    let Some(shared) = gw.shared_holds.clone() else {
        return Ok(());
    };
    let (meta, state, owner) = (meta.clone(), state.clone(), gw.instance.clone());
    let put = tokio::spawn(async move {
        shared.put(&meta, &state, &parked, &owner).await.map_err(|e| {
            tracing::error!(hold = %meta.id, error = %e, "cannot store the hold; refused");
            EngineError::StoreUnavailable
        })
    });
    put.await.unwrap_or(Err(EngineError::StoreUnavailable))
}

/// Applies `event` to hold `id` atomically, across every instance.
///
/// With the memory engine the decision and its effects happen in one
/// step, so a caller that goes away cannot split them. A shared store is
/// awaited, so the decision runs in a task of its own: if the caller went
/// away once the store committed, the task carries out what the caller
/// would have (the release, or the closing record).
pub(super) async fn apply(
    gw: &Arc<Gateway>,
    id: &HoldId,
    event: Event,
    now: SystemTime,
) -> Result<Applied, EngineError> {
    if gw.shared_holds.is_none() {
        return gw.holds.apply(id, event, now);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (gw2, id2) = (gw.clone(), id.clone());
    tokio::spawn(async move {
        let result = decide(&gw2, &id2, event, now).await.map(|applied| Decided {
            gw: gw2,
            applied: Some(applied),
            now,
        });
        // Not received (the caller is gone): dropped here, which acts.
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(mut decided)) => decided.applied.take().ok_or(EngineError::StoreUnavailable),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(EngineError::StoreUnavailable),
    }
}

/// A committed decision on its way to its caller. Dropped unread (the
/// caller went away, before or after it was sent), it carries out what
/// the caller would have: the release, or the closing record.
struct Decided {
    gw: Arc<Gateway>,
    applied: Option<Applied>,
    now: SystemTime,
}

impl Drop for Decided {
    fn drop(&mut self) {
        let Some(applied) = self.applied.take() else { return };
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!(hold = %applied.meta.id, "decision dropped outside the runtime; not carried out");
            return;
        }
        let (gw, now, meta) = (&self.gw, self.now, applied.meta.clone());
        match applied.transition {
            Transition::Release => drop(release::start(gw, applied, None)),
            other => effects::applied(gw, &meta, &other, now),
        }
    }
}

async fn decide(gw: &Gateway, id: &HoldId, event: Event, now: SystemTime) -> Result<Applied, EngineError> {
    let Some(shared) = &gw.shared_holds else {
        return gw.holds.apply(id, event, now);
    };
    let me = gw.instance.as_str();
    // A waiter that died with its instance can be given nothing: the hold
    // ends instead of being decided (`orphans`).
    if !matches!(event, Event::Expire) && super::orphans::ended_before(gw, shared, id, now).await {
        return Err(EngineError::Hold(crate::hold::HoldError::Expired));
    }
    // A `hold`-mode release is forwarded where its client waits.
    let forwards_here =
        |s: &crate::store::redis_holds::Stored, _: &Transition| s.meta.mode != HoldMode::Hold || s.owner == me;
    let stepped = shared
        .apply(id, event, now, me, forwards_here)
        .await
        .map_err(store_error)?;
    let take = stepped.parked.is_some();
    if matches!(
        stepped.transition,
        Transition::Release | Transition::Denied | Transition::Expired
    ) {
        // The hold is no longer open: its client's share comes back, on
        // whichever instance ended it.
        super::quota::give_back(gw, &stepped.meta).await;
    }
    let waiter = gw.holds.mirror(id, stepped.state.clone(), take, now);
    let meta = gw.holds.meta(id).unwrap_or_else(|| Arc::new(stepped.meta));
    let elsewhere = stepped.transition == Transition::Release && !take;
    if elsewhere {
        tracing::info!(hold = %id, owner = %stepped.owner, "released for a client waiting on another instance");
        if let Err(e) = shared.announce(id).await {
            // The owner's poll finds it anyway.
            tracing::warn!(hold = %id, error = %e, "could not announce a release");
        }
    }
    Ok(Applied {
        transition: stepped.transition,
        meta,
        state: stepped.state,
        release: stepped.parked.map(|parked| Release { parked, waiter }),
        elsewhere,
    })
}

/// A snapshot of hold `id`: from the store when it is shared.
pub(super) async fn get(gw: &Gateway, id: &HoldId) -> Result<Option<(Arc<HoldMeta>, HoldState)>, EngineError> {
    let Some(shared) = &gw.shared_holds else {
        return Ok(gw.holds.get(id));
    };
    let stored = shared.load(id).await.map_err(|e| store_error(e.into()))?;
    Ok(stored.map(|s| {
        let meta = gw.holds.meta(id).unwrap_or_else(|| Arc::new(s.meta));
        (meta, s.state)
    }))
}

/// The open holds, on every instance.
pub(super) async fn open_holds(gw: &Gateway) -> Result<Vec<(Arc<HoldMeta>, HoldState)>, EngineError> {
    let Some(shared) = &gw.shared_holds else {
        return Ok(gw.holds.open_holds());
    };
    let ids = shared.indexed().await.map_err(|e| store_error(e.into()))?;
    let mut out = Vec::new();
    for id in ids {
        match get(gw, &id).await? {
            Some((meta, state)) if state.phase.is_open() => out.push((meta, state)),
            _ => {}
        }
    }
    Ok(out)
}

/// Brings a hold created here up to date with the store: takes a release
/// made elsewhere for the client waiting here and forwards it, or wakes
/// that client with how the hold ended.
async fn catch_up(gw: &Arc<Gateway>, id: &HoldId) {
    let Some(shared) = &gw.shared_holds else { return };
    let Some(meta) = gw.holds.meta(id) else { return };
    let stored = match shared.load(id).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(hold = %id, error = %e, "cannot read a waiting hold; retrying");
            return;
        }
    };
    let now = gw.clock.now();
    // Taken already (only this instance takes a release for a waiter
    // here), or not released: keeping the mirror is all there is to do.
    if stored.phase == FORWARDING || stored.state.phase != crate::hold::Phase::Released {
        let _ = gw.holds.mirror(id, stored.state, false, now);
        return;
    }
    let parked = match shared.claim(id, &gw.instance).await {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(hold = %id, error = %e, "cannot take a release; retrying");
            return;
        }
    };
    let waiter = gw.holds.mirror(id, stored.state.clone(), true, now);
    let waiter = waiter.or_else(|| gw.holds.take_waiter(id));
    tracing::info!(hold = %id, "taking a release made on another instance for the client waiting here");
    let applied = Applied {
        transition: Transition::Release,
        meta,
        state: stored.state,
        release: Some(Release { parked, waiter }),
        elsewhere: false,
    };
    // The task it starts forwards and answers the waiter; nobody here
    // waits for the answer.
    drop(release::start(gw, applied, None));
}

/// Listens for releases announced by other instances and polls the holds
/// waiting here, until the gateway shuts down.
pub(super) fn spawn_listener(gw: &Arc<Gateway>) {
    let Some(shared) = gw.shared_holds.clone() else { return };
    super::orphans::spawn_lease(gw);
    let gw = gw.clone();
    tokio::spawn(async move {
        let mut shutdown = gw.shutting_down();
        let mut tick = tokio::time::interval(POLL);
        let mut pubsub = None;
        loop {
            if pubsub.is_none() {
                pubsub = match shared.subscribe().await {
                    Ok(ps) => Some(ps.into_on_message()),
                    Err(e) => {
                        tracing::debug!(error = %e, "release channel unavailable; polling only");
                        None
                    }
                };
            }
            let message = async {
                match pubsub.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                m = message => Some(m),
                _ = tick.tick() => None,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match wake {
                Some(Some(m)) => {
                    let id = m.get_payload::<String>().ok().and_then(|s| HoldId::parse(s.as_str()));
                    if let Some(id) = id {
                        catch_up(&gw, &id).await;
                    }
                }
                Some(None) => pubsub = None,
                None => {
                    for id in gw.holds.waiting() {
                        catch_up(&gw, &id).await;
                    }
                }
            }
        }
    });
}

/// Expires due holds through the store, including those of instances that
/// are gone, and ends the `hold`-mode holds whose waiter died with its
/// instance: whichever instance wins the expiry records it.
pub(super) async fn sweep(gw: &Arc<Gateway>) {
    let Some(shared) = &gw.shared_holds else { return };
    let now = gw.clock.now();
    for meta in gw.holds.due(now) {
        match expire(gw, &meta, effects::DEADLINE, now).await {
            Ok(_) | Err(EngineError::StoreUnavailable) => {}
            // Gone from the store (a Redis that lost its data): it can end
            // only here.
            Err(EngineError::Unknown) => {
                let _ = effects::expire_here(gw, &meta, effects::DEADLINE, now);
            }
            // Ended elsewhere (released, denied): take on how it ended.
            Err(_) => catch_up(gw, &meta.id).await,
        }
    }
    let Ok(ids) = shared.indexed().await else { return };
    for id in ids {
        if gw.holds.meta(&id).is_some() {
            continue;
        }
        match shared.load(&id).await {
            Ok(Some(s)) if s.state.phase.is_open() && super::orphans::waiter_gone(gw, shared, &s).await => {
                super::orphans::abandon(gw, shared, &id, &s, now).await;
            }
            // Released for a waiter on another instance, not taken yet:
            // its instance takes it, unless it is gone.
            Ok(Some(s)) if s.phase == crate::hold::Phase::Released.as_str() && s.owner != gw.instance => {
                if super::orphans::waiter_gone(gw, shared, &s).await {
                    super::orphans::orphan(gw, shared, &id, &s, now).await;
                }
            }
            Ok(Some(s)) if s.state.phase.is_open() => {
                if now <= s.state.deadline {
                    continue;
                }
                if let Ok(applied) = apply(gw, &id, Event::Expire, now).await {
                    if applied.transition == Transition::Expired {
                        let m = &applied.meta;
                        effects::record(gw, m, effects::End::Expired(effects::DEADLINE), now);
                        tracing::info!(hold = %id, route = %m.route, "hold of another instance expired");
                    }
                }
            }
            Ok(_) => shared.forget(&id).await,
            Err(_) => return,
        }
    }
}

/// Expires hold `meta` now, and records it if this call is what ended it.
/// An abandoned waiter whose deadline had passed anyway is an expiry.
pub(super) async fn expire(
    gw: &Arc<Gateway>,
    meta: &HoldMeta,
    reason: &str,
    now: SystemTime,
) -> Result<Applied, EngineError> {
    let applied = apply(gw, &meta.id, Event::Expire, now).await?;
    effects::closing(gw, meta, reason, now, &applied);
    Ok(applied)
}
