//! `GET holds/{id}/webauthn`: passkey request options whose challenge is
//! bound to the hold's `txn`, for the requester (the hold's own session)
//! or, with `?as=approver`, for an approver about to decide.
//!
//! Without `stepup.webauthn` the endpoint answers 404 `not_found`: the
//! method does not exist on this gateway.

use super::api::access::own_hold;
use super::api::outcome::closed;
use super::passkey::{self, ChallengeKey};
use super::respond::{self, Reject};
use super::{approvals, proofs, throttle, ConnInfo, Gateway};
use crate::body::Body;
use crate::hold::HoldState;
use crate::ids::HoldId;
use crate::policy::ProofMethod;
use crate::stepup::webauthn::PublicKeyCredential;
use http::request::Parts;
use http::{Response, StatusCode};
use std::time::SystemTime;

/// Whether `v` has the shape of an assertion; anything else is a malformed
/// proof (400), not a failed one, and spends no attempt.
pub(super) fn well_formed(v: &serde_json::Value) -> bool {
    serde_json::from_value::<PublicKeyCredential>(v.clone()).is_ok()
}

fn query(parts: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Options are only worth issuing for a hold a proof can still complete.
fn still_open(state: &HoldState, now: SystemTime) -> Result<(), Reject> {
    closed(state.phase)?;
    if now > state.deadline {
        return Err(Reject::HoldExpired);
    }
    Ok(())
}

pub(super) async fn options(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    id: Option<&HoldId>,
) -> Result<Response<Body>, Reject> {
    if passkey::relying_party(gw).is_none() {
        return Err(Reject::NotFound);
    }
    let client = proofs::client_addr(gw, conn, parts);
    throttle::client(gw, client, "passkey options").await?;
    let owner = throttle::owner(client);
    let now = gw.clock.now();
    if query(parts, "as").as_deref() == Some("approver") {
        let a = approvals::approver(gw, parts).ok_or(Reject::Forbidden)?;
        let (meta, state) = approvals::decidable(gw, conn, parts, &a, id).await?;
        still_open(&state, now)?;
        let key = ChallengeKey::ApproverDecision {
            hold: meta.id.clone(),
            approver: a.name.clone(),
        };
        let options = passkey::start(gw, (key, &owner), &a.name, meta.txn.as_str(), now).await?;
        return Ok(respond::json(StatusCode::OK, &options));
    }
    let (meta, state) = own_hold(gw, conn, parts, id).await?;
    throttle::session(gw, &meta.sid, "passkey options").await?;
    still_open(&state, now)?;
    if !state.requirements.accepts(ProofMethod::Webauthn) {
        return Err(Reject::BadRequest("this proof method is not accepted for this action"));
    }
    // The session's own identity steps up when it is known (SPEC §3).
    let user = match (&meta.identity, query(parts, "user")) {
        (Some(id), Some(asked)) if *id != asked => {
            return Err(Reject::BadRequest("this session belongs to another user"));
        }
        (Some(id), _) => id.clone(),
        (None, Some(asked)) => asked,
        (None, None) => return Err(Reject::BadRequest("name the user who steps up (?user=)")),
    };
    if let Err(reason) = proofs::actor_allowed(gw, &meta, &state.requirements, &user) {
        // Answered like anyone else, so the answer does not tell who is
        // in the route's users or groups; the proof will be refused.
        tracing::info!(hold = %meta.id, %user, %reason, "passkey options for a user who may not step up here");
        let options = passkey::look_alike(gw, &user, meta.txn.as_str(), now).await?;
        return Ok(respond::json(StatusCode::OK, &options));
    }
    let options = passkey::start(
        gw,
        (ChallengeKey::Requester(meta.id.clone()), &owner),
        &user,
        meta.txn.as_str(),
        now,
    )
    .await?;
    Ok(respond::json(StatusCode::OK, &options))
}
