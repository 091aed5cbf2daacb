//! How a hold's story ends when it is not released. Every hold that was
//! recorded as `hold.created` gets exactly one closing record (SPEC §4):
//! `hold.released` (followed by `request.forwarded`), or one of these,
//! written by whoever won the transition that closed the hold:
//!
//! | event | reason | when |
//! |---|---|---|
//! | `hold.expired` | `deadline passed` | the deadline passed (sweeper, a late proof or decision, a `hold`-mode waiter's timer) |
//! | `hold.expired` | `gateway shutting down` | the gateway stopped; the memory backend cannot keep the hold |
//! | `hold.expired` | `lost in a restart` | the previous run was killed with the hold open; written at the next start (`recover`) |
//! | `hold.expired` | `state store unavailable` | the hold could not be stored in the shared store as it was created (503 `state_unavailable`) |
//! | `hold.abandoned` | `client_gone` | a `hold`-mode client went away before its hold was released |
//! | `hold.abandoned` | `instance_gone` | a `hold`-mode client waited on an instance that died (its lease lapsed); ended by another instance (`proxy::orphans`) |
//! | `hold.abandoned` | `release_failed` | a release could not forward (it could not be signed or put on record) |
//! | `hold.denied` | `attempts exhausted` | the requester's last proof attempt failed |
//! | `hold.denied` | `route denied by reload` / `route removed by reload` | a reload denied or removed the hold's route |
//! | `approval.denied` | the approver's comment | an approver denied (written by the decision itself) |

use super::{hold_record, Gateway};
use crate::audit;
use crate::hold::engine::{Applied, EngineError};
use crate::hold::{Event, HoldMeta, Transition};
use std::time::SystemTime;

pub(super) const DEADLINE: &str = "deadline passed";
pub(super) const SHUTDOWN: &str = "gateway shutting down";
pub(super) const CLIENT_GONE: &str = "client_gone";
pub(super) const INSTANCE_GONE: &str = "instance_gone";
pub(super) const STORE_DOWN: &str = "state store unavailable";

/// Records how a hold ended, counts it and tells the webhook. `state` is
/// the metric's label (`expired`, `abandoned`, `denied`).
pub(super) fn record(gw: &Gateway, meta: &HoldMeta, event: audit::Event, state: &str, reason: &str, now: SystemTime) {
    gw.audit.record_later(hold_record(event, meta).reason(reason));
    gw.metrics.transition(state, now.duration_since(meta.created).ok());
    gw.notify(event.as_str(), meta, now);
}

/// [`super::fleet::expire`] without waiting, for the memory engine, where it cannot
/// wait on anything (a connection's drop).
pub(super) fn expire_here(
    gw: &Gateway,
    meta: &HoldMeta,
    reason: &str,
    now: SystemTime,
) -> Result<Applied, EngineError> {
    let applied = gw.holds.apply(&meta.id, Event::Expire, now)?;
    closing(gw, meta, reason, now, &applied);
    Ok(applied)
}

pub(super) fn closing(gw: &Gateway, meta: &HoldMeta, reason: &str, now: SystemTime, applied: &Applied) {
    if applied.transition == Transition::Expired {
        let late = now > applied.state.deadline;
        match reason {
            CLIENT_GONE if !late => record(gw, meta, audit::Event::HoldAbandoned, "abandoned", CLIENT_GONE, now),
            CLIENT_GONE => record(gw, meta, audit::Event::HoldExpired, "expired", DEADLINE, now),
            _ => record(gw, meta, audit::Event::HoldExpired, "expired", reason, now),
        }
    }
}
