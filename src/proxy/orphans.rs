//! `hold`-mode holds whose client waited on an instance that is gone.
//!
//! The waiting connection died with its instance, so nobody would receive
//! the upstream's answer: such a hold must never be forwarded, and it must
//! not stay open (or `released`) as if someone still waited. Whichever
//! instance notices first ends it, once, as `hold.abandoned` with reason
//! `instance_gone`: an approval or proof that arrives for it (and gets
//! 410 `hold_expired`), or the sweeper.
//!
//! "Gone" means the instance's lease in the store lapsed (see
//! `store::redis_holds::lease`): each instance renews its own every
//! [`RENEW`], and it lasts [`LEASE`].

use super::{effects, Gateway};
use crate::hold::{Event, HoldMeta, Transition};
use crate::ids::HoldId;
use crate::policy::HoldMode;
use crate::store::redis_holds::{RedisHolds, Stored, FORWARDING};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long an instance counts as alive after its last renewal: several
/// renewals may be missed (a busy machine) before it is declared gone.
pub(super) const LEASE: Duration = Duration::from_secs(5);

const RENEW: Duration = Duration::from_secs(1);

/// Renews this instance's lease until the gateway shuts down. The first
/// renewal happens at once, before the first hold can be created here.
pub(super) fn spawn_lease(gw: &Arc<Gateway>) {
    let Some(shared) = gw.shared_holds.clone() else { return };
    let gw = gw.clone();
    tokio::spawn(async move {
        let mut shutdown = gw.shutting_down();
        let mut tick = tokio::time::interval(RENEW);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(e) = shared.renew_lease(&gw.instance, LEASE).await {
                tracing::warn!(error = %e, "cannot renew this instance's lease");
            }
        }
    });
}

/// Whether `stored` is a `hold`-mode hold whose client waited on another
/// instance that is gone. A store that cannot say counts as alive.
pub(super) async fn waiter_gone(gw: &Gateway, shared: &RedisHolds, stored: &Stored) -> bool {
    if stored.meta.mode != HoldMode::Hold || stored.owner.is_empty() || stored.owner == gw.instance {
        return false;
    }
    matches!(shared.alive(&stored.owner).await, Ok(false))
}

/// Before an event on hold `id` that was not created here: if its waiter
/// is gone, ends it and says so (`true`); the event must then be refused.
pub(super) async fn ended_before(gw: &Gateway, shared: &RedisHolds, id: &HoldId, now: SystemTime) -> bool {
    if gw.holds.meta(id).is_some() {
        return false;
    }
    let Ok(Some(stored)) = shared.load(id).await else {
        return false;
    };
    if stored.phase == FORWARDING || !stored.state.phase.is_open() || !waiter_gone(gw, shared, &stored).await {
        return false;
    }
    abandon(gw, shared, id, &stored, now).await;
    true
}

/// Ends an open hold whose waiter is gone (`expired` in the store). The
/// caller that wins the expiry records it; a racing one records nothing.
pub(super) async fn abandon(gw: &Gateway, shared: &RedisHolds, id: &HoldId, stored: &Stored, now: SystemTime) {
    match shared.apply(id, Event::Expire, now, &gw.instance, |_, _| false).await {
        Ok(stepped) if stepped.transition == Transition::Expired => {
            super::quota::give_back(gw, &stepped.meta).await;
            record(gw, &stepped.meta, &stored.owner, now);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(hold = %id, error = %e, "a gone waiter's hold ended otherwise"),
    }
}

/// Ends a hold released for a waiter that is gone before its instance
/// took the release: nothing is forwarded, and the trail says why.
pub(super) async fn orphan(gw: &Gateway, shared: &RedisHolds, id: &HoldId, stored: &Stored, now: SystemTime) {
    match shared.orphan(id, &stored.state, &gw.instance).await {
        Ok(true) => record(gw, &stored.meta, &stored.owner, now),
        Ok(false) => {}
        Err(e) => tracing::warn!(hold = %id, error = %e, "cannot end a release left for a gone instance; retrying"),
    }
}

fn record(gw: &Gateway, meta: &HoldMeta, owner: &str, now: SystemTime) {
    tracing::warn!(hold = %meta.id, route = %meta.route, instance = %owner, "hold-mode client was waiting on an instance that is gone; hold abandoned");
    effects::record(gw, meta, effects::End::InstanceGone(owner), now);
}
