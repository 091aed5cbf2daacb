//! `POST holds/{id}/complete`: the requester's proof, a break-glass
//! release, or the collection of a hold that approvals met.

use super::access::{caller_sid, lookup};
use super::outcome::{closed, settle};
use super::proof_body::{parse_body, ProofBody, Step, MAX_PROOF_BODY};
use crate::audit;
use crate::body::Body;
use crate::hold::{Event, HoldMeta, HoldState, Proof, Transition};
use crate::ids::HoldId;
use crate::policy::ProofMethod;
use crate::proxy::bodies;
use crate::proxy::proof_error::ProofError;
use crate::proxy::respond::Reject;
use crate::proxy::{effects, fleet, hold_record, proofs, webauthn, who, ConnInfo, Gateway};
use http::request::Parts;
use http::Response;
use std::sync::Arc;
use std::time::SystemTime;

pub(in crate::proxy) async fn complete(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: Option<&HoldId>,
) -> Result<Response<Body>, Reject> {
    let (meta, state) = lookup(gw, id).await?;
    let id = &meta.id;
    if caller_sid(gw, conn, &parts).as_ref() != Some(&meta.sid) {
        tracing::warn!(hold = %id, "complete from another session refused");
        return Err(Reject::SessionMismatch);
    }
    let client = proofs::client_addr(gw, conn, &parts);
    let bytes = bodies::own(gw, client, body, MAX_PROOF_BODY).await?;
    let now = gw.clock.now();
    // A settled hold is reported before any proof is checked, so a late
    // proof is not consumed for nothing.
    closed(state.phase)?;
    let req = parse_body(&parts, &bytes)?;
    let step = req.step();
    if now > state.deadline {
        return Err(late(gw, &meta, step, req.user.clone(), now).await);
    }
    match step {
        Step::Collect => {
            let applied = fleet::apply(gw, id, Event::Collect, now).await?;
            settle(gw, applied, now, None).await
        }
        Step::BreakGlass => break_glass(gw, &meta, &state, &req, now).await,
        Step::Unknown => Err(Reject::BadRequest("unknown proof method")),
        Step::Prove(method) => prove(gw, conn, &parts, &meta, &state, req, method, now).await,
    }
}

async fn break_glass(
    gw: &Arc<Gateway>,
    meta: &Arc<HoldMeta>,
    state: &HoldState,
    req: &ProofBody,
    now: SystemTime,
) -> Result<Response<Body>, Reject> {
    let Some(bg) = state.requirements.break_glass else {
        return Err(Reject::BadRequest("this action has no break-glass release"));
    };
    let reason = req.reason.as_deref().map(str::trim).unwrap_or("");
    // A reason is something a person can read: a zero-width space
    // or a run of punctuation says nothing.
    if bg.reason_required && !reason.chars().any(char::is_alphanumeric) {
        return Err(Reject::BadRequest("break-glass needs a reason"));
    }
    let by = meta.identity.clone().unwrap_or_else(|| meta.requester());
    let reason: String = reason.chars().take(500).collect();
    // Recorded once the hold has really been broken open, so the
    // trail never shows a break-glass that did not happen; it is
    // durable before the release forwards anything.
    let applied = fleet::apply(gw, &meta.id, Event::BreakGlass { by: by.clone() }, now).await?;
    let written = effects::broken_open(gw, meta, &by, &reason, now);
    settle(gw, applied, now, Some(written)).await
}

#[allow(clippy::too_many_arguments)]
async fn prove(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: &Parts,
    meta: &Arc<HoldMeta>,
    state: &HoldState,
    req: ProofBody,
    method: ProofMethod,
    now: SystemTime,
) -> Result<Response<Body>, Reject> {
    if !state.requirements.accepts(method) {
        return Err(Reject::BadRequest("this proof method is not accepted for this action"));
    }
    let verified = match method {
        ProofMethod::Token => {
            let token = req.token.ok_or(Reject::BadRequest("malformed proof: token missing"))?;
            proofs::token(
                gw,
                &gw.live(),
                token.as_bytes(),
                meta,
                Some(&meta.id),
                &state.requirements,
                now,
            )
            .await?
        }
        ProofMethod::Totp => {
            let (Some(user), Some(code)) = (req.user.clone(), req.code) else {
                return Err(Reject::BadRequest("malformed proof: user and code are required"));
            };
            let client = proofs::client_addr(gw, conn, parts);
            proofs::totp(gw, user.trim(), &code, client, meta, &state.requirements, now).await?
        }
        ProofMethod::Webauthn => {
            let credential = req.credential.as_ref().filter(|c| webauthn::well_formed(c));
            let credential = credential.ok_or(Reject::BadRequest("malformed proof: credential missing"))?;
            proofs::webauthn(gw, credential, req.user.as_deref(), meta, &state.requirements, now).await?
        }
        _ => return Err(Reject::BadRequest("this proof method is not available on this gateway")),
    };
    apply_proof(gw, meta, method.as_str(), req.user.clone(), verified, now).await
}

/// Applies a verified (or refused) proof to its hold: binds the session's
/// actor when the identity is unknown, runs the state machine, writes the
/// record and the metric, and settles the release. `complete` and the
/// OIDC callback both end here. `claimed` is the user a refused proof
/// named, for the record.
pub(in crate::proxy) async fn apply_proof(
    gw: &Arc<Gateway>,
    meta: &Arc<HoldMeta>,
    method: &str,
    claimed: Option<String>,
    verified: Result<Proof, ProofError>,
    now: SystemTime,
) -> Result<Response<Body>, Reject> {
    // Without a known identity, the first person to step up on a
    // session becomes its actor; nobody else may step up on it.
    let mut bound_now = false;
    if let (Ok(proof), None) = (&verified, &meta.identity) {
        let route = (meta.route.as_str(), meta.action.as_str());
        bound_now = who::bind(gw, &meta.sid, &proof.sub, "actor", Some(meta), route, now).await?;
    }
    // The record is written after the state machine decided, so it
    // says what happened (a proof the hold refuses is a rejection).
    let (event, sub) = match verified {
        Ok(proof) => {
            let sub = proof.sub.clone();
            (Event::ProofAccepted(proof), Ok(sub))
        }
        Err(reason) => {
            tracing::info!(hold = %meta.id, method = %method, %reason, "proof rejected");
            (Event::ProofRejected, Err(reason))
        }
    };
    let applied = fleet::apply(gw, &meta.id, event, now).await;
    if let (true, Ok(sub), Err(_)) = (bound_now, &sub, &applied) {
        who::unbind(gw, &meta.sid, sub).await;
    }
    let record = match (&sub, &applied) {
        (Ok(sub), Ok(a)) if a.transition == Transition::Expired => hold_record(audit::Event::ProofRejected, meta)
            .actor(sub.clone())
            .reason("expired"),
        (Ok(sub), Ok(_)) => hold_record(audit::Event::ProofAccepted, meta).actor(sub.clone()),
        (Ok(sub), Err(e)) => hold_record(audit::Event::ProofRejected, meta)
            .actor(sub.clone())
            .reason(e.to_string()),
        (Err(reason), _) => hold_record(audit::Event::ProofRejected, meta)
            .actor(claimed.unwrap_or_default())
            .reason(reason.to_string()),
    };
    let accepted = sub.is_ok() && applied.as_ref().is_ok_and(|a| a.transition != Transition::Expired);
    gw.metrics.proof(method, accepted);
    // Queued now, in the same step as the decision: the release (if
    // this proof won it) is written after it, whatever the client does.
    let written = gw.audit(record.with("method", method));
    match applied {
        Ok(applied) => settle(gw, applied, now, Some(written)).await,
        Err(e) => {
            written.await?;
            Err(e.into())
        }
    }
}

/// A proof or collection after the hold's deadline: never verified (a
/// token's `jti`, a TOTP step stay unspent), recorded as a rejected proof,
/// and the hold expires with its record.
pub(in crate::proxy) async fn late(
    gw: &Arc<Gateway>,
    meta: &HoldMeta,
    step: Step,
    user: Option<String>,
    now: SystemTime,
) -> Reject {
    if let Some(method) = step.label() {
        gw.audit.record_later(
            hold_record(audit::Event::ProofRejected, meta)
                .actor(user.unwrap_or_default())
                .reason("expired")
                .with("method", method),
        );
        gw.metrics.proof(method, false);
    }
    let _ = crate::proxy::fleet::expire(gw, meta, effects::DEADLINE, now).await;
    Reject::HoldExpired
}
