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
//!
//! [`End`] is the one table from an ending to its trail event, its metric
//! label and its webhook event; every closing goes through [`record`], or
//! through [`tell`] where the closing record itself is written durably by
//! its author (`hold.released` before its forward, `approval.denied` before
//! the approver's answer).

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
pub(super) const ATTEMPTS: &str = "attempts exhausted";
pub(super) const RELEASE_FAILED: &str = "release_failed";

/// How a hold's story closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End<'a> {
    Released,
    Expired(&'a str),
    Abandoned(&'a str),
    /// Abandoned because its waiter's instance (named) is gone.
    InstanceGone(&'a str),
    Denied(&'a str),
}

impl End<'_> {
    pub(super) fn event(self) -> audit::Event {
        match self {
            End::Released => audit::Event::HoldReleased,
            End::Expired(_) => audit::Event::HoldExpired,
            End::Abandoned(_) | End::InstanceGone(_) => audit::Event::HoldAbandoned,
            End::Denied(_) => audit::Event::HoldDenied,
        }
    }

    /// The `state` label of the hold transition metric.
    fn label(self) -> &'static str {
        match self {
            End::Released => "released",
            End::Expired(_) => "expired",
            End::Abandoned(_) | End::InstanceGone(_) => "abandoned",
            End::Denied(_) => "denied",
        }
    }
}

/// Writes how a hold ended, counts it and tells the webhook.
pub(super) fn record(gw: &Gateway, meta: &HoldMeta, end: End<'_>, now: SystemTime) {
    let mut line = hold_record(end.event(), meta);
    line = match end {
        End::Released => line,
        End::Expired(r) | End::Abandoned(r) | End::Denied(r) => line.reason(r),
        End::InstanceGone(owner) => line.reason(INSTANCE_GONE).with("instance", owner.to_owned()),
    };
    gw.audit.record_later(line);
    tell(gw, meta, end, now);
}

/// Counts an ending and tells the webhook, for an author that wrote the
/// closing record itself.
pub(super) fn tell(gw: &Gateway, meta: &HoldMeta, end: End<'_>, now: SystemTime) {
    gw.metrics
        .transition(end.label(), now.duration_since(meta.created).ok());
    gw.notify(end.event().as_str(), meta, now);
}

/// The closing of a transition the engine reported, for the transitions
/// that end a hold without releasing it: the last attempt failed, or the
/// deadline passed. A release closes in `release`, durably, before its
/// forward; the open transitions close nothing.
pub(super) fn after(gw: &Gateway, meta: &HoldMeta, transition: &Transition, now: SystemTime) {
    match transition {
        Transition::Denied => record(gw, meta, End::Denied(ATTEMPTS), now),
        Transition::Expired => record(gw, meta, End::Expired(DEADLINE), now),
        Transition::Release | Transition::Progress | Transition::Rejected { .. } => {}
    }
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

/// The closing of an expiry asked for with a `reason`: a client that went
/// away before its deadline abandoned the hold; after it, the deadline
/// ended it.
pub(super) fn closing(gw: &Gateway, meta: &HoldMeta, reason: &str, now: SystemTime, applied: &Applied) {
    if applied.transition == Transition::Expired {
        let late = now > applied.state.deadline;
        let end = match reason {
            CLIENT_GONE if !late => End::Abandoned(CLIENT_GONE),
            CLIENT_GONE => End::Expired(DEADLINE),
            _ => End::Expired(reason),
        };
        record(gw, meta, end, now);
    }
}

#[cfg(test)]
mod tests {
    use super::End;

    /// The webhook event, the trail event and the metric label of one
    /// ending name the same thing.
    #[test]
    fn each_ending_names_one_event_and_its_metric_label() {
        for end in [
            End::Released,
            End::Expired("x"),
            End::Abandoned("x"),
            End::InstanceGone("b"),
            End::Denied("x"),
        ] {
            assert_eq!(end.event().as_str(), format!("hold.{}", end.label()), "{end:?}");
        }
    }
}
