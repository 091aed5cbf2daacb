//! A hold's side effects: its trail records, its metrics and its webhook
//! events, from `hold.created` to the one closing record that every hold
//! recorded as created gets (SPEC §4). Nothing else in the gateway builds a
//! hold's lifecycle record, counts its transition or tells the webhook of
//! it, but for two authors that write their own closing record because it
//! must be durable before they go on, and then [`tell`]: the release
//! (`hold.released`) and an approver's denial (`approval.denied`). Proof
//! and approval records (`proof.*`, `approval.granted`) are the evidence of
//! one step, written by that step.
//!
//! A hold closes with `hold.released` (followed by `request.forwarded`), or
//! one of these, written by whoever won the transition that closed it:
//!
//! | event | reason | when |
//! |---|---|---|
//! | `hold.expired` | `deadline passed` | the deadline passed (sweeper, a late proof or decision, a `hold`-mode waiter's timer) |
//! | `hold.expired` | `gateway shutting down` | the gateway stopped; the memory backend cannot keep the hold |
//! | `hold.expired` | `lost in a restart` | the previous run was killed with the hold open; written at the next start (`recover`) |
//! | `hold.expired` | `state store unavailable` | the hold could not be stored in the shared store as it was created (503 `state_unavailable`) |
//! | `hold.abandoned` | `client_gone` | a `hold`-mode client went away before its hold was released |
//! | `hold.abandoned` | `instance_gone` | a `hold`-mode client waited on an instance that died (its lease lapsed); ended by another instance (`proxy::orphans`) |
//! | `hold.abandoned` | `release_failed` | a release could not forward (its request could not be rebuilt, signed or put on record) |
//! | `hold.denied` | `attempts exhausted` | the requester's last proof attempt failed |
//! | `hold.denied` | `route denied by reload` / `route removed by reload` | a reload denied or removed the hold's route |
//! | `approval.denied` | the approver's comment | an approver denied (written by the decision itself) |
//!
//! [`End`] is the one table from an ending to its trail event, its metric
//! label and its webhook event; every closing goes through [`record`], or
//! through [`tell`] where the closing record itself is written durably by
//! its author (`hold.released` before its forward, `approval.denied` before
//! the approver's answer).

use super::{hold_record, Gateway, Written};
use crate::audit::{self, Record};
use crate::hold::engine::{Applied, EngineError};
use crate::hold::{Event, HoldMeta, Transition};
use std::time::SystemTime;

/// The `hold.created` record, queued now; the hold may not be acted on
/// before it is durable, so the caller waits on it (and then calls
/// [`opened`]).
pub(super) fn created(gw: &Gateway, meta: &HoldMeta) -> Written {
    tracing::info!(event = %audit::Event::HoldCreated, hold = %meta.id, route = %meta.route, action = %meta.action, sid = %meta.sid, txn = %meta.txn, "request held");
    let mut record = hold_record(audit::Event::HoldCreated, meta)
        .with("method", meta.method.as_str())
        .with("target", meta.path_and_query.clone())
        .with("requester", meta.requester());
    if !meta.risk.is_empty() {
        // Why this request stepped up: the conditions that fired.
        record = record.reason(meta.risk.join(",")).with("risk", meta.risk.clone());
    }
    gw.audit(record)
}

/// A created hold is on record and pending: counted, and announced to the
/// approvers it waits for.
pub(super) fn opened(gw: &Gateway, meta: &HoldMeta, now: SystemTime) {
    gw.metrics.transition("pending", None);
    gw.notify("hold.pending", meta, now);
}

/// A hold broken open by `by` (break-glass): recorded (the caller waits
/// for it before the release forwards anything) and announced to whoever
/// watches for it, whether or not the hold involves approvers.
pub(super) fn broken_open(gw: &Gateway, meta: &HoldMeta, by: &str, reason: &str, now: SystemTime) -> Written {
    let written = gw.audit(
        hold_record(audit::Event::BreakGlassUsed, meta)
            .actor(by.to_owned())
            .reason(reason.to_owned()),
    );
    tracing::warn!(hold = %meta.id, route = %meta.route, %by, %reason, "break-glass release");
    gw.notify_always("hold.break_glass", meta, now, Some(reason));
    written
}

/// The closing record of a hold that a previous run left open, named by
/// its `hold.created` record; written at start-up, before any request. This
/// run never counted that hold, and its approvers heard of it from the run
/// that died, so there is no metric and no webhook.
pub(super) fn lost(gw: &Gateway, created: &serde_json::Value, reason: &str) -> Written {
    let text = |k: &str| created[k].as_str().map(str::to_owned);
    gw.audit(
        Record {
            hold: text("hold"),
            route: text("route"),
            action: text("action"),
            sid: text("sid"),
            txn: text("txn"),
            ..Record::new(End::Expired(reason).event())
        }
        .reason(reason),
    )
}

/// A reload raised what a pending hold still needs.
pub(super) fn tightened(gw: &Gateway, meta: &HoldMeta, missing: Vec<String>) {
    tracing::info!(hold = %meta.id, route = %meta.route, "pending hold tightened by reload");
    gw.audit.record_later(
        hold_record(audit::Event::HoldTightened, meta)
            .reason("requirements changed by reload")
            .with("missing", missing),
    );
}

/// A release that won its hold but ended before anything was forwarded
/// (the parked request could not be rebuilt, the assertion signed or the
/// release put on record).
/// `release` is the record the release was writing, so the closing record
/// carries what it had gathered (the actor, the assertion's `jti`).
pub(super) fn release_failed(gw: &Gateway, meta: &HoldMeta, release: &Record, now: SystemTime) {
    tracing::error!(hold = %meta.id, "release ended before anything was forwarded");
    let end = End::Abandoned(RELEASE_FAILED);
    gw.audit.record_later(Record {
        event: end.event(),
        reason: Some(RELEASE_FAILED.into()),
        ..release.clone()
    });
    tell(gw, meta, end, now);
}

/// Expires the memory engine's holds whose deadline passed. (Shared holds
/// expire through the store, in [`super::fleet::sweep`].)
pub(super) fn sweep(gw: &Gateway) {
    let now = gw.clock.now();
    if gw.shared_holds.is_some() {
        gw.holds.forget_ended(now);
        return;
    }
    for meta in gw.holds.sweep(now) {
        tracing::info!(hold = %meta.id, route = %meta.route, "hold expired");
        record(gw, &meta, End::Expired(DEADLINE), now);
    }
}

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
pub(super) fn applied(gw: &Gateway, meta: &HoldMeta, transition: &Transition, now: SystemTime) {
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
