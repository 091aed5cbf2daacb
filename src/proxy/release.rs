//! Forwarding a request whose step-up is complete: sign the assertion,
//! send it upstream once, and hand the answer to whoever waits for it.

use super::gate::upstream_failed;
use super::respond::{self, Reject};
use super::{hold_record, Gateway};
use crate::assertion::{ApproverClaim, AssertionFacts};
use crate::audit::Record;
use crate::body::{full, Body};
use crate::clock::unix_secs;
use crate::hold::engine::{Applied, Delivery, Release};
use crate::hold::state::Approval;
use crate::hold::{HoldMeta, HoldState, Parked, Proof};
use crate::policy::Requirements;
use crate::store::Recent;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;

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
        htu: format!("https://{}{}", meta.host, meta.path),
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

/// Signs and forwards. Runs in its own task so that a client that
/// disconnects mid-way cannot cancel a release half-done: once released,
/// the request goes upstream. `event` names the write-ahead audit record
/// (`hold.released`, or `token.accepted` for an up-front token).
pub(super) async fn forward_signed(
    gw: &Arc<Gateway>,
    facts: AssertionFacts,
    meta: &HoldMeta,
    parked: Parked,
    event: &'static str,
) -> Result<Response<Body>, Reject> {
    let gw2 = gw.clone();
    let mut record = hold_record(event, meta);
    if facts.hold.is_none() {
        record.hold = None;
    }
    let target = (meta.method.clone(), meta.path_and_query.clone(), meta.host.clone());
    let task = tokio::spawn(async move { send_signed(&gw2, facts, record, target, parked.headers, parked.body).await });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "release task failed");
        Err(Reject::UpstreamUnavailable)
    })
}

async fn send_signed(
    gw: &Gateway,
    facts: AssertionFacts,
    record: Record,
    (method, pq, host): (Method, String, String),
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, Reject> {
    let signed = gw.signer.sign(&facts, gw.clock.now()).map_err(|e| {
        tracing::error!(error = %e, "cannot sign assertion");
        Reject::UpstreamUnavailable
    })?;
    gw.metrics.assertions.inc();
    // Write-ahead: the decision, with the assertion's jti, is durable
    // before the upstream sees anything.
    let record = record.actor(facts.sub.clone()).with("jti", signed.jti.clone());
    let ahead = record.clone().with("amr", facts.amr.clone()).with(
        "approvers",
        facts.approvers.iter().map(|a| a.sub.clone()).collect::<Vec<_>>(),
    );
    gw.audit(ahead).await?;
    let value = HeaderValue::from_str(&signed.token).map_err(|_| Reject::UpstreamUnavailable)?;
    headers.insert("x-stepup-assertion", value);
    let mut req = Request::new(full(body));
    *req.method_mut() = method;
    *req.uri_mut() = pq.parse().map_err(|_| Reject::BadRequest("invalid request target"))?;
    *req.headers_mut() = headers;
    let resp = gw.live().upstream.send(req, &host).await.map_err(upstream_failed);
    let status = resp.as_ref().map(|r| r.status().as_u16()).unwrap_or(502);
    tracing::info!(jti = %signed.jti, route = %facts.route, sub = %facts.sub, status, "stepped-up request forwarded");
    gw.audit.record_later(Record {
        event: "request.forwarded",
        ..record.with("status", status)
    });
    resp
}

/// Carries out a won release: forward, then hand the response to whoever
/// waits for it. In `hold` mode that is the parked connection, and the
/// caller that released it gets `{"status":"released"}`.
pub(super) async fn release(gw: &Arc<Gateway>, applied: Applied) -> Result<Response<Body>, Reject> {
    let Applied {
        meta, state, release, ..
    } = applied;
    let Some(Release { parked, waiter }) = release else {
        return Err(Reject::AlreadyReleased);
    };
    let proof = accountable(&meta, &state, gw.clock.now());
    if let Some(p) = &state.proof {
        if state.approvals.is_empty() && !state.break_glass {
            remember(gw, &meta, &state.requirements, p, gw.clock.now());
        }
    }
    tracing::info!(hold = %meta.id, route = %meta.route, sub = %proof.sub, "hold released");
    let now = gw.clock.now();
    gw.metrics.transition("released", now.duration_since(meta.created).ok());
    gw.notify("hold.released", &meta, now);
    let mut facts = facts(&meta, &proof, &state.approvals, true);
    facts.break_glass = state.break_glass;
    match waiter {
        None => forward_signed(gw, facts, &meta, parked, "hold.released").await,
        Some(w) => {
            let gw = gw.clone();
            let meta2 = meta.clone();
            tokio::spawn(async move {
                let resp = forward_signed(&gw, facts, &meta2, parked, "hold.released")
                    .await
                    .unwrap_or_else(Reject::into_response);
                let _ = w.send(Delivery::Response(resp));
            });
            Ok(respond::json(
                StatusCode::OK,
                &serde_json::json!({"status": "released", "hold_id": meta.id.as_str()}),
            ))
        }
    }
}

/// The accountable actor (`sub`) and how they are known. With a proof it
/// is whoever proved; for approval-only holds it is the session's known
/// identity, or else the approvers themselves (listed in `approvers`).
fn accountable(meta: &HoldMeta, state: &HoldState, now: SystemTime) -> Actor {
    if let Some(p) = &state.proof {
        return p.into();
    }
    if state.break_glass {
        return Actor {
            sub: meta.identity.clone().unwrap_or_else(|| meta.requester()),
            amr: Vec::new(),
            acr: "break_glass".into(),
            auth_time: unix_secs(now),
        };
    }
    let first = state.approvals.first();
    let sub = meta
        .identity
        .clone()
        .or_else(|| first.map(|a| a.sub.clone()))
        .unwrap_or_else(|| meta.requester());
    Actor {
        sub,
        auth_time: state.approvals.iter().map(|a| a.at).max().unwrap_or(0),
        amr: Vec::new(),
        acr: "approval".into(),
    }
}
