//! A reload reaches the holds already pending (SPEC §4). The file is the
//! authority for requests still waiting, not only for new ones:
//!
//! - a hold whose route became `deny: true`, or is gone from the file (by
//!   name), ends as `hold.denied` with the reason; it is never forwarded,
//!   and a `hold`-mode waiter is answered 403 `step_up_denied` at once;
//! - a hold whose route now requires more is held to the new requirements
//!   and the change is audited as `hold.tightened` (see
//!   [`crate::hold::HoldState::reload`] for what "more" means).

use super::{ending, hold_record, Gateway};
use crate::audit;
use crate::config::Config;
use crate::hold::engine::EngineError;
use crate::hold::{Event, HoldMeta, HoldState, Reloaded, Transition};
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

/// Applies the running configuration to every open hold. Returns how many
/// holds were ended and how many were tightened.
pub(super) fn reach_all(gw: &Gateway, now: SystemTime) -> (usize, usize) {
    let config = gw.config();
    let (mut ended, mut tightened) = (0, 0);
    for (meta, state) in gw.holds.open_holds() {
        match reach(gw, &config, &meta, &state, now) {
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
pub(super) fn reach_one(gw: &Gateway, meta: &HoldMeta, now: SystemTime) {
    let config = gw.config();
    if let Some((_, state)) = gw.holds.get(&meta.id) {
        reach(gw, &config, meta, &state, now);
    }
}

enum Reach {
    Ended,
    Tightened,
}

fn reach(gw: &Gateway, config: &Config, meta: &HoldMeta, state: &HoldState, now: SystemTime) -> Option<Reach> {
    if !state.phase.is_open() {
        return None;
    }
    match verdict(config, &meta.route) {
        Verdict::End(reason) => {
            // Whoever else is moving this hold right now (a release, an
            // expiry) may win; then that ending stands and this one is moot.
            let applied = gw
                .holds
                .apply(&meta.id, Event::Deny { by: "reload".into() }, now)
                .ok()?;
            if applied.transition != Transition::Denied {
                // A late hold found its deadline passed: an expiry.
                if applied.transition == Transition::Expired {
                    ending::record(
                        gw,
                        &applied.meta,
                        audit::Event::HoldExpired,
                        "expired",
                        ending::DEADLINE,
                        now,
                    );
                }
                return None;
            }
            tracing::info!(hold = %meta.id, route = %meta.route, reason, "pending hold ended by reload");
            ending::record(gw, &applied.meta, audit::Event::HoldDenied, "denied", reason, now);
            Some(Reach::Ended)
        }
        Verdict::Keep(requirements) => match gw.holds.reload(&meta.id, requirements) {
            Ok(Reloaded::Tightened) => {
                let missing = gw.holds.get(&meta.id).map(|(_, s)| s.missing()).unwrap_or_default();
                tracing::info!(hold = %meta.id, route = %meta.route, "pending hold tightened by reload");
                gw.audit.record_later(
                    hold_record(audit::Event::HoldTightened, meta)
                        .reason("requirements changed by reload")
                        .with("missing", missing),
                );
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
