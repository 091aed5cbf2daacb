//! A reload reaches the holds already pending (SPEC §4). The file is the
//! authority for requests still waiting, not only for new ones:
//!
//! - a hold whose route became `deny: true`, or is gone from the file (by
//!   name), ends as `hold.denied` with the reason; it is never forwarded,
//!   and a `hold`-mode waiter is answered 403 `step_up_denied` at once;
//! - a hold whose route now requires more is held to the new requirements
//!   and the change is audited as `hold.tightened` (see
//!   [`crate::hold::HoldState::reload`] for what "more" means).

use super::{effects, fleet, Gateway};
use crate::config::Config;
use crate::hold::engine::EngineError;
use crate::hold::{Event, HoldMeta, HoldState, Reloaded, Transition};
use crate::ids::HoldId;
use crate::policy::Requirements;
use std::sync::Arc;
use std::time::SystemTime;

pub(super) const ROUTE_DENIED: &str = "route denied by reload";
pub(super) const ROUTE_REMOVED: &str = "route removed by reload";

/// What the running configuration says about one pending hold.
enum Verdict<'a> {
    Keep(&'a crate::policy::Requirements),
    End(&'static str),
}

fn verdict<'a>(config: &'a Config, route: &str) -> Verdict<'a> {
    match config.routes.routes().iter().find(|r| r.name == route) {
        None => Verdict::End(ROUTE_REMOVED),
        Some(r) if r.deny => Verdict::End(ROUTE_DENIED),
        Some(r) => Verdict::Keep(&r.require),
    }
}

/// Applies the running configuration to every open hold: this
/// instance's, or with a shared store every instance's, since a hold made
/// on another instance can be released here. Returns how many holds were
/// ended and how many were tightened.
pub(super) async fn reach_all(gw: &Arc<Gateway>, now: SystemTime) -> (usize, usize) {
    let config = gw.config();
    let open = match fleet::open_holds(gw).await {
        Ok(open) => open,
        Err(e) => {
            // The store's own holds stay as they were; each is checked
            // again against the file when it is next decided on
            // (`reach_one`), and new holds see the new file.
            tracing::error!(error = %e, "cannot list the pending holds to apply a reload to");
            return (0, 0);
        }
    };
    let (mut ended, mut tightened) = (0, 0);
    for (meta, state) in open {
        match reach(gw, &config, &meta, &state, now).await {
            Some(Reach::Ended) => ended += 1,
            Some(Reach::Tightened) => tightened += 1,
            None => {}
        }
    }
    (ended, tightened)
}

/// Applies the running configuration to one hold made from an older one:
/// a hold created while a reload was swapping the file in must not slip
/// past it.
pub(super) async fn reach_one(gw: &Arc<Gateway>, meta: &HoldMeta, now: SystemTime) {
    let config = gw.config();
    if let Ok(Some((_, state))) = fleet::get(gw, &meta.id).await {
        reach(gw, &config, meta, &state, now).await;
    }
}

enum Reach {
    Ended,
    Tightened,
}

async fn reach(
    gw: &Arc<Gateway>,
    config: &Config,
    meta: &HoldMeta,
    state: &HoldState,
    now: SystemTime,
) -> Option<Reach> {
    if !state.phase.is_open() {
        return None;
    }
    match verdict(config, &meta.route) {
        Verdict::End(reason) => {
            // Whoever else is moving this hold right now (a release, an
            // expiry) may win; then that ending stands and this one is moot.
            let applied = fleet::apply(gw, &meta.id, Event::Deny { by: "reload".into() }, now)
                .await
                .ok()?;
            if applied.transition != Transition::Denied {
                // A late hold found its deadline passed: an expiry.
                effects::applied(gw, &applied.meta, &applied.transition, now);
                return None;
            }
            tracing::info!(hold = %meta.id, route = %meta.route, reason, "pending hold ended by reload");
            effects::record(gw, &applied.meta, effects::End::Denied(reason), now);
            Some(Reach::Ended)
        }
        Verdict::Keep(requirements) => match tighten(gw, &meta.id, requirements).await {
            Ok(Reloaded::Tightened) => {
                let missing = match fleet::get(gw, &meta.id).await {
                    Ok(Some((_, s))) => s.missing(),
                    _ => Vec::new(),
                };
                effects::tightened(gw, meta, missing);
                Some(Reach::Tightened)
            }
            Ok(Reloaded::Unchanged) | Err(EngineError::Unknown) => None,
            Err(e) => {
                tracing::warn!(hold = %meta.id, error = %e, "could not apply a reload to a pending hold");
                None
            }
        },
    }
}

/// Holds one pending hold to `requirements`: in the shared store when
/// there is one (in one compare-and-set, whoever else writes the hold),
/// and in this instance's copy.
async fn tighten(gw: &Gateway, id: &HoldId, requirements: &Requirements) -> Result<Reloaded, EngineError> {
    let Some(shared) = &gw.shared_holds else {
        return gw.holds.reload(id, requirements);
    };
    // Tightened only when the change was committed: a hold that another
    // instance closed in between is not reported as tightened.
    let tightened = shared
        .rewrite(id, |state| state.reload(requirements) == Reloaded::Tightened)
        .await
        .map_err(fleet::store_error)?;
    // The local copy (if the hold was made here) follows the store.
    let _ = gw.holds.reload(id, requirements);
    Ok(if tightened {
        Reloaded::Tightened
    } else {
        Reloaded::Unchanged
    })
}
