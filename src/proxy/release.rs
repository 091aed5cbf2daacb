//! Forwarding a request whose step-up is complete: sign the assertion,
//! send it upstream once, and hand the answer to whoever waits for it.

use super::effects::{self, End};
use super::forward::upstream_failed;
use super::respond::{self, Reject};
use super::{hold_record, Gateway, Written};
use crate::assertion::{ApproverClaim, AssertionFacts};
use crate::audit;
use crate::audit::Record;
use crate::body::{full, Body};
use crate::clock::unix_secs;
use crate::hold::engine::{Applied, Delivery, Release};
use crate::hold::state::Approval;
use crate::hold::{HoldMeta, HoldState, Packed, Parked, Proof};
use crate::ids::HoldId;
use crate::policy::Requirements;
use crate::store::Recent;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;

/// Who the assertion names as having stepped up, and how.
pub(super) struct Actor {
    pub sub: String,
    pub amr: Vec<String>,
    pub acr: String,
    pub auth_time: u64,
}

impl From<&Proof> for Actor {
    fn from(p: &Proof) -> Self {
        Actor {
            sub: p.sub.clone(),
            amr: p.amr.clone(),
            acr: p.acr.clone(),
            auth_time: p.auth_time,
        }
    }
}

impl From<Recent> for Actor {
    fn from(r: Recent) -> Self {
        Actor {
            sub: r.sub,
            amr: r.amr,
            acr: r.acr,
            auth_time: r.auth_time,
        }
    }
}

/// Remembers a proof for the route's sudo window (`require.reuse`).
pub(super) fn remember(gw: &Gateway, meta: &HoldMeta, require: &Requirements, proof: &Proof, now: SystemTime) {
    if require.reuse.is_zero() {
        return;
    }
    gw.reuse.remember(
        meta.sid.as_str(),
        &meta.action,
        Recent {
            method: proof.method,
            sub: proof.sub.clone(),
            amr: proof.amr.clone(),
            acr: proof.acr.clone(),
            auth_time: proof.auth_time,
            at: unix_secs(now),
        },
    );
}

/// The assertion's claims for a forwarded request. `held` adds the hold id.
pub(super) fn facts(meta: &HoldMeta, proof: &Actor, approvals: &[Approval], held: bool) -> AssertionFacts {
    AssertionFacts {
        sub: proof.sub.clone(),
        sid: meta.sid.as_str().to_owned(),
        act: meta.action.clone(),
        route: meta.route.clone(),
        txn: meta.txn.as_str().to_owned(),
        htm: meta.method.as_str().to_owned(),
        htu: format!("https://{}{}", meta.host, meta.path()),
        amr: proof.amr.clone(),
        acr: proof.acr.clone(),
        auth_time: proof.auth_time,
        approvers: approvals
            .iter()
            .map(|a| ApproverClaim {
                sub: a.sub.clone(),
                at: a.at,
            })
            .collect(),
        hold: held.then(|| meta.id.as_str().to_owned()),
        risk: meta.risk.clone(),
        ..AssertionFacts::default()
    }
}

/// Signs and forwards a request that needs no hold (an up-front token, a
/// reuse window). Runs in a task of its own, so a client that disconnects
/// cannot cancel it half-done, and counted among the releases shutdown
/// waits for. `event` names the write-ahead record (`token.accepted`,
/// `reuse.accepted`).
pub(super) async fn forward_signed(
    gw: &Arc<Gateway>,
    facts: AssertionFacts,
    meta: &HoldMeta,
    parked: Parked,
    event: audit::Event,
) -> Result<Response<Body>, Reject> {
    let gw2 = gw.clone();
    let mut record = hold_record(event, meta);
    record.hold = None;
    let target = (meta.method.clone(), meta.path_and_query.clone(), meta.host.clone());
    let ticket = gw.releases.enter(None);
    let task = tokio::spawn(async move {
        let _ticket = ticket;
        let story = Story::new(&gw2, record.clone(), None);
        send_signed(&gw2, facts, record, target, parked, story, None).await
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "release task failed");
        Err(Reject::UpstreamUnavailable)
    })
}

/// How far a release got, so that however its task ends (an upstream
/// error, a runtime stopped at shutdown) the hold's story in the trail has
/// its ending: `hold.abandoned` if nothing was forwarded, and
/// `request.forwarded` with an unknown outcome if the forward was cut off.
struct Story<'a> {
    gw: &'a Gateway,
    record: Record,
    /// The hold this release closes; none for a reused proof or an upfront
    /// token, which had no hold.
    hold: Option<Arc<HoldMeta>>,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing written yet: the request has not gone anywhere.
    Deciding,
    /// The write-ahead record is durable; the forward may be under way.
    Forwarding,
    /// `request.forwarded` is queued.
    Done,
}

impl<'a> Story<'a> {
    fn new(gw: &'a Gateway, record: Record, hold: Option<Arc<HoldMeta>>) -> Self {
        Story {
            gw,
            record,
            hold,
            stage: Stage::Deciding,
        }
    }
}

impl Drop for Story<'_> {
    fn drop(&mut self) {
        match self.stage {
            Stage::Deciding => {
                if let Some(meta) = &self.hold {
                    effects::release_failed(self.gw, meta, &self.record, self.gw.clock.now());
                }
            }
            Stage::Forwarding => {
                tracing::error!(hold = ?self.record.hold, "release cut off while forwarding; outcome unknown");
                self.gw.audit.record_later(Record {
                    event: audit::Event::RequestForwarded,
                    reason: Some("cut off at shutdown; outcome unknown".into()),
                    ..self.record.clone()
                });
            }
            Stage::Done => {}
        }
    }
}

async fn send_signed(
    gw: &Gateway,
    facts: AssertionFacts,
    record: Record,
    (method, pq, host): (Method, String, String),
    parked: Parked,
    mut story: Story<'_>,
    durable: Option<oneshot::Sender<Result<(), Reject>>>,
) -> Result<Response<Body>, Reject> {
    let durable_result = |r: Result<(), Reject>| {
        if let Some(d) = durable {
            let _ = d.send(r);
        }
    };
    let signed = match gw.signer.sign(&facts, gw.clock.now()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign assertion");
            durable_result(Err(Reject::Internal));
            return Err(Reject::Internal);
        }
    };
    gw.metrics.assertions.inc();
    // Write-ahead: the decision, with the assertion's jti, is durable
    // before the upstream sees anything.
    let record = record.actor(facts.sub.clone()).with("jti", signed.jti.clone());
    story.record = record.clone();
    let ahead = record.clone().with("amr", facts.amr.clone()).with(
        "approvers",
        facts.approvers.iter().map(|a| a.sub.clone()).collect::<Vec<_>>(),
    );
    if let Err(e) = gw.audit(ahead).await {
        durable_result(Err(e.clone()));
        return Err(e);
    }
    story.stage = Stage::Forwarding;
    if let Some(meta) = &story.hold {
        // Counted and told once it is on record, so the webhook never
        // announces a release that the trail calls abandoned.
        effects::tell(gw, meta, End::Released, gw.clock.now());
    }
    durable_result(Ok(()));
    let Parked { mut headers, body } = parked;
    let value = HeaderValue::from_str(&signed.token).map_err(|_| Reject::Internal);
    let req = value.and_then(|v| {
        headers.insert("x-stepup-assertion", v);
        let mut req = Request::new(full(body));
        *req.method_mut() = method;
        *req.uri_mut() = pq.parse().map_err(|_| Reject::BadRequest("invalid request target"))?;
        *req.headers_mut() = headers;
        Ok(req)
    });
    let resp = match req {
        Ok(req) => gw.live().upstream.send(req, &host).await.map_err(upstream_failed),
        Err(e) => Err(e),
    };
    let status = resp.as_ref().map(|r| r.status().as_u16()).unwrap_or(502);
    tracing::info!(jti = %signed.jti, route = %facts.route, sub = %facts.sub, status, "stepped-up request forwarded");
    gw.audit.record_later(Record {
        event: audit::Event::RequestForwarded,
        ..record.with("status", status)
    });
    story.stage = Stage::Done;
    resp
}

/// A release under way, as the caller that won it sees it.
pub(super) struct Releasing {
    id: HoldId,
    /// `hold` mode: the parked connection gets the upstream's answer, and
    /// the caller only learns that the release is durable.
    to_waiter: bool,
    durable: oneshot::Receiver<Result<(), Reject>>,
    response: oneshot::Receiver<Result<Response<Body>, Reject>>,
}

impl Releasing {
    /// The caller's answer: the upstream's response, or in `hold` mode
    /// `{"status":"released"}` once the release is on record. Dropping
    /// this future cancels nothing.
    pub(super) async fn answer(self) -> Result<Response<Body>, Reject> {
        if !self.to_waiter {
            return self.response.await.unwrap_or(Err(Reject::UpstreamUnavailable));
        }
        self.durable.await.unwrap_or(Err(Reject::UpstreamUnavailable))?;
        Ok(respond::json(
            StatusCode::OK,
            &serde_json::json!({"status": "released", "hold_id": self.id.as_str()}),
        ))
    }
}

/// Carries out a won release in a task the gateway owns, started here and
/// now, in the same step that moved the hold to released: whatever happens
/// to the connection that released it, or to the one waiting for it, the
/// request is forwarded and recorded. `ahead` is the record of the step
/// itself (the accepted proof, the approval, the break-glass), already
/// queued; the release is written after it.
pub(super) fn start(gw: &Arc<Gateway>, applied: Applied, ahead: Option<Written>) -> Releasing {
    let Applied {
        meta,
        state,
        release,
        elsewhere,
        ..
    } = applied;
    let (durable_tx, durable) = oneshot::channel();
    let (response_tx, response) = oneshot::channel();
    let mut releasing = Releasing {
        id: meta.id.clone(),
        to_waiter: false,
        durable,
        response,
    };
    let Some(Release { parked, waiter }) = release else {
        if elsewhere {
            // The instance the client waits on forwards it; the release
            // itself is committed in the shared store already.
            releasing.to_waiter = true;
            let _ = durable_tx.send(Ok(()));
        } else {
            let _ = response_tx.send(Err(Reject::AlreadyReleased));
        }
        return releasing;
    };
    releasing.to_waiter = waiter.is_some();
    let ticket = gw.releases.enter(Some(meta.id.clone()));
    let gw = gw.clone();
    tokio::spawn(async move {
        let _ticket = ticket;
        let result = carry_out(&gw, &meta, &state, parked, ahead, durable_tx).await;
        match waiter {
            Some(w) => {
                if w.send(Delivery::Response(result.unwrap_or_else(Reject::into_response)))
                    .is_err()
                {
                    tracing::info!(hold = %meta.id, "released and forwarded; the waiting client had gone");
                }
            }
            None => {
                let _ = response_tx.send(result);
            }
        }
    });
    releasing
}

async fn carry_out(
    gw: &Arc<Gateway>,
    meta: &Arc<HoldMeta>,
    state: &HoldState,
    parked: Packed,
    ahead: Option<Written>,
    durable: oneshot::Sender<Result<(), Reject>>,
) -> Result<Response<Body>, Reject> {
    let story = Story::new(gw, hold_record(audit::Event::HoldReleased, meta), Some(meta.clone()));
    // Checked before anything is written: a request that cannot be rebuilt
    // ends its hold as a failed release (the story's drop), never half-sent.
    let parked = match parked.unpack() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(hold = %meta.id, error = %e, "parked request cannot be rebuilt");
            let _ = durable.send(Err(Reject::Internal));
            return Err(Reject::Internal);
        }
    };
    if let Some(ahead) = ahead {
        if let Err(e) = ahead.await {
            let _ = durable.send(Err(e.clone()));
            return Err(e);
        }
    }
    let now = gw.clock.now();
    // Asked only where it decides the assertion's subject (no proof, no
    // identity); a store that cannot answer leaves the requester named.
    let bound = if state.proof.is_none() && meta.identity.is_none() {
        super::who::bound(gw, &meta.sid).await.ok().flatten()
    } else {
        None
    };
    let proof = accountable(meta, state, bound, now);
    if let Some(p) = &state.proof {
        if state.approvals.is_empty() && !state.break_glass {
            remember(gw, meta, &state.requirements, p, now);
        }
    }
    tracing::info!(hold = %meta.id, route = %meta.route, sub = %proof.sub, "hold released");
    let mut facts = facts(meta, &proof, &state.approvals, true);
    facts.break_glass = state.break_glass;
    let record = story.record.clone();
    let target = (meta.method.clone(), meta.path_and_query.clone(), meta.host.clone());
    send_signed(gw, facts, record, target, parked, story, Some(durable)).await
}

/// The accountable actor (`sub`) and how they are known. With a proof it
/// is whoever proved. Otherwise (approvals, break-glass) it is the
/// requester: the session's identity, else the person `bound` to the
/// session by an earlier step-up, else the session itself. Approvers are
/// never `sub`; they have their own claim, `approvers`.
fn accountable(meta: &HoldMeta, state: &HoldState, bound: Option<String>, now: SystemTime) -> Actor {
    if let Some(p) = &state.proof {
        return p.into();
    }
    let sub = meta.identity.clone().or(bound).unwrap_or_else(|| meta.requester());
    if state.break_glass {
        return Actor {
            sub,
            amr: Vec::new(),
            acr: "break_glass".into(),
            auth_time: unix_secs(now),
        };
    }
    Actor {
        sub,
        auth_time: state.approvals.iter().map(|a| a.at).max().unwrap_or(0),
        amr: Vec::new(),
        acr: "approval".into(),
    }
}
