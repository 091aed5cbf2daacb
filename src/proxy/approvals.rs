//! Approvers: the queue of holds waiting for them, and their decisions.
//! An approver is known by an API key (`Authorization: Bearer <key>`, the
//! config holds only its SHA-256); every decision names the `txn` it
//! reviewed, so an approval can never be spent on a different request.

use super::api::{self, caller_sid, closed, engine_reject, parse_body, settle, MAX_PROOF_BODY};
use super::handler::buffer;
use super::respond::{self, Reject};
use super::{hold_record, hold_summary, proofs, ConnInfo, Gateway};
use crate::body::Body;
use crate::clock::unix_secs;
use crate::config::Approver;
use crate::hold::engine::EngineError;
use crate::hold::state::Approval;
use crate::hold::{Event, HoldError, HoldMeta, HoldState};
use crate::ids::HoldId;
use http::request::Parts;
use http::{header, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

/// The approver whose API key the request carries, if any.
pub(super) fn approver(gw: &Gateway, parts: &Parts) -> Option<Approver> {
    let auth = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?
        .trim();
    if key.is_empty() {
        return None;
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    // Compare against every approver in constant time, so timing reveals
    // neither a key nor which approver it was close to.
    let config = gw.config();
    let mut found = None;
    for a in &config.stepup.approvers {
        if bool::from(a.key_sha256.ct_eq(&digest)) {
            found = Some(a.clone());
        }
    }
    found
}

/// One hold as an approver sees it.
pub(super) fn item(meta: &HoldMeta, now: SystemTime) -> serde_json::Value {
    let mut m = hold_summary(meta);
    m.insert(
        "age".into(),
        now.duration_since(meta.created)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            .into(),
    );
    serde_json::Value::Object(m)
}

/// `GET /.stepup/holds`: pending holds this approver may decide.
pub(super) fn queue(gw: &Gateway, parts: &Parts) -> Result<Response<Body>, Reject> {
    let a = approver(gw, parts).ok_or(Reject::Forbidden)?;
    let now = gw.clock.now();
    let mut holds: Vec<_> = gw
        .holds
        .open_holds()
        .into_iter()
        .filter(|(_, s)| s.requirements.approvals as usize > s.approvals.len())
        .filter(|(_, s)| s.requirements.allows_approver(&a.groups))
        .filter(|(_, s)| !s.approvals.iter().any(|x| x.sub == a.name))
        .filter(|(_, s)| now <= s.deadline)
        .collect();
    holds.sort_by_key(|(m, _)| m.created);
    let items: Vec<_> = holds.iter().map(|(m, _)| item(m, now)).collect();
    Ok(respond::json(StatusCode::OK, &serde_json::json!({ "holds": items })))
}

/// The hold `id` if approver `a` may decide it: it needs approvals from a
/// group of theirs, and it is not their own request.
pub(super) fn decidable(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    a: &Approver,
    id: &str,
) -> Result<(Arc<HoldMeta>, HoldState), Reject> {
    let id = HoldId::parse(id).ok_or(Reject::UnknownHold)?;
    let (meta, state) = gw.holds.get(&id).ok_or(Reject::UnknownHold)?;
    if state.requirements.approvals == 0 || !state.requirements.allows_approver(&a.groups) {
        return Err(Reject::Forbidden);
    }
    let same_session = caller_sid(gw, conn, parts).is_some_and(|sid| sid == meta.sid);
    let same_person =
        meta.identity.as_deref() == Some(a.name.as_str()) || state.proof.as_ref().is_some_and(|p| p.sub == a.name);
    if same_session || same_person {
        tracing::warn!(hold = %id, approver = %a.name, "self-approval refused");
        return Err(Reject::SelfApproval);
    }
    Ok((meta, state))
}

/// `POST .../approve` and `.../deny`.
pub(super) async fn decide(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: &str,
    approve: bool,
) -> Result<Response<Body>, Reject> {
    let a = approver(gw, &parts).ok_or(Reject::Forbidden)?;
    let (meta, state) = decidable(gw, conn, &parts, &a, id)?;
    let id = meta.id.clone();
    let bytes = buffer(body, MAX_PROOF_BODY).await?;
    let req = parse_body(&parts, &bytes)?;
    closed(state.phase)?;
    if req.txn.as_deref() != Some(meta.txn.as_str()) {
        tracing::warn!(hold = %id, approver = %a.name, "decision names a different txn");
        return Err(Reject::TxnMismatch);
    }
    let now = gw.clock.now();
    // A passkey assertion, when sent, must be good; it also stands in for
    // the code of an approver configured with `totp: true`.
    let fresh = match (&req.webauthn, a.totp) {
        (Some(credential), _) => Some((
            "webauthn",
            proofs::approver_webauthn(gw, &a.name, &meta, credential, now),
        )),
        (None, true) => Some((
            "totp",
            proofs::approver_totp(gw, &a.name, req.code.as_deref().unwrap_or(""), now),
        )),
        (None, false) => None,
    };
    if let Some((method, Err(reason))) = &fresh {
        tracing::info!(hold = %id, approver = %a.name, %method, %reason, "approver proof rejected");
        return Err(Reject::InvalidProof { attempts_left: 0 });
    }
    let mut comment = req.comment.unwrap_or_default();
    if comment.len() > 500 {
        let mut end = 500;
        while !comment.is_char_boundary(end) {
            end -= 1;
        }
        comment.truncate(end);
    }
    let kind = if approve { "approval.granted" } else { "approval.denied" };
    let event = if approve {
        Event::Approve(Approval {
            sub: a.name.clone(),
            at: unix_secs(now),
        })
    } else {
        Event::Deny { by: a.name.clone() }
    };
    let applied = match gw.holds.apply(&id, event, now) {
        Err(EngineError::Hold(HoldError::DuplicateApproval)) => {
            let (meta, state) = gw.holds.get(&id).ok_or(Reject::UnknownHold)?;
            let mut v = api::status_json(&meta, &state, now);
            v["duplicate"] = true.into();
            return Ok(respond::json(StatusCode::OK, &v));
        }
        other => other.map_err(engine_reject)?,
    };
    // Recorded once the state machine took the decision, so the trail never
    // shows an approval that did not count.
    let mut record = hold_record(kind, &meta)
        .actor(a.name.clone())
        .with("comment", comment.clone());
    if let Some((method, _)) = fresh {
        record = record.with("proof", method);
    }
    gw.audit(record).await?;
    tracing::info!(event = kind, hold = %id, approver = %a.name, txn = %meta.txn, %comment, "approver decided");
    gw.metrics.decision(approve);
    if !approve {
        gw.metrics
            .transition("denied", now.duration_since(applied.meta.created).ok());
        gw.notify("hold.denied", &applied.meta, now);
        return Ok(respond::json(
            StatusCode::OK,
            &serde_json::json!({"status": "denied", "hold_id": id.as_str()}),
        ));
    }
    match settle(gw, applied, now).await {
        // The approver's part is done; the requester collects the release.
        Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
            let (meta, state) = gw.holds.get(&id).ok_or(Reject::UnknownHold)?;
            let mut v = api::status_json(&meta, &state, now);
            v["status"] = "approved".into();
            Ok(respond::json(StatusCode::OK, &v))
        }
        other => other,
    }
}
