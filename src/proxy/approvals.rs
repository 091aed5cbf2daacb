//! Approvers: the queue of holds waiting for them, and their decisions.
//! An approver is known by an API key (`Authorization: Bearer <key>`, the
//! config holds only its SHA-256) or by the sign-in cookie of the approval
//! page; every decision names the `txn` it reviewed, so an approval can
//! never be spent on a different request. A signed-in approver adds a
//! fresh proof of their own to every decision and must post from the
//! gateway's own origin.

use super::api::access::{caller_sid, lookup};
use super::api::outcome::{closed, settle, status_json};
use super::api::proof_body::{parse_body, MAX_PROOF_BODY};
use super::bodies;
use super::respond::{self, Reject};
use super::{effects, hold_record, hold_summary, page, proofs, signin, ConnInfo, Gateway};
use crate::audit;
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

/// How an approver authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    ApiKey,
    /// The approval page's sign-in cookie.
    SignedIn,
}

/// The approver the request carries an API key or a sign-in cookie for.
pub(super) fn approver(gw: &Gateway, parts: &Parts) -> Option<Approver> {
    approver_via(gw, parts).map(|(a, _)| a)
}

pub(super) fn approver_via(gw: &Gateway, parts: &Parts) -> Option<(Approver, Via)> {
    if let Some(a) = api_key(gw, parts) {
        return Some((a, Via::ApiKey));
    }
    signin::signed_in(gw, parts).map(|a| (a, Via::SignedIn))
}

/// The approver whose API key the request carries, if any.
fn api_key(gw: &Gateway, parts: &Parts) -> Option<Approver> {
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

/// `GET /.stepup/holds`: pending holds this approver may decide (the
/// approval page for a browser, the sign-in page if nobody is signed in).
pub(super) async fn queue(gw: &Gateway, parts: &Parts) -> Result<Response<Body>, Reject> {
    let html = page::wants_html(&parts.headers);
    let prefix = gw.config().stepup.prefix.clone();
    let Some(a) = approver(gw, parts) else {
        if html {
            let webauthn = gw.webauthn_enabled();
            return Ok(page::approvals::signin(&prefix, webauthn, "", None, StatusCode::OK));
        }
        return Err(Reject::Forbidden);
    };
    let now = gw.clock.now();
    let holds = waiting_for(gw, &a, now).await?;
    if html {
        let mut queued = Vec::with_capacity(holds.len());
        for (meta, state) in holds {
            queued.push(page::approvals::Queued {
                requester: super::who::requester(gw, &meta, &state).await,
                meta,
                state,
            });
        }
        return Ok(page::approvals::list(&prefix, &a.name, &queued, now));
    }
    let items: Vec<_> = holds.iter().map(|(m, _)| item(m, now)).collect();
    Ok(respond::json(StatusCode::OK, &serde_json::json!({ "holds": items })))
}

/// Every instance's holds, when they are shared.
async fn waiting_for(gw: &Gateway, a: &Approver, now: SystemTime) -> Result<Vec<(Arc<HoldMeta>, HoldState)>, Reject> {
    let mut holds: Vec<_> = super::fleet::open_holds(gw)
        .await?
        .into_iter()
        .filter(|(_, s)| s.requirements.approvals as usize > s.approvals.len())
        .filter(|(_, s)| s.requirements.allows_approver(&a.groups))
        .filter(|(_, s)| !s.approvals.iter().any(|x| x.sub == a.name))
        .filter(|(_, s)| now <= s.deadline)
        .collect();
    holds.sort_by_key(|(m, _)| m.created);
    Ok(holds)
}

/// What the approver can prove themselves with on the page.
pub(super) fn page_proofs(gw: &Gateway, a: &Approver) -> page::approvals::Proofs {
    let users = gw.users.snapshot().ok();
    let record = users.as_ref().and_then(|u| u.users.get(&a.name));
    page::approvals::Proofs {
        code: users.as_ref().is_some_and(|u| u.totp_secret(&a.name).is_some()),
        passkey: gw.webauthn_enabled() && record.is_some_and(|r| !r.webauthn.is_empty()),
    }
}

/// The approver's view of one hold (`GET holds/{id}` from their browser).
pub(super) async fn review_page(
    gw: &Gateway,
    a: &Approver,
    meta: &HoldMeta,
    state: &HoldState,
    alert: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let prefix = gw.config().stepup.prefix.clone();
    if !state.phase.is_open() {
        let text = format!("This request is {} and needs no decision.", state.phase.as_str());
        return page::message(
            StatusCode::OK,
            "Nothing to decide",
            &text,
            Some((&format!("{prefix}holds"), "Back to pending approvals")),
        );
    }
    let requester = super::who::requester(gw, meta, state).await;
    page::approvals::detail(
        &prefix,
        &a.name,
        meta,
        state,
        requester.as_deref(),
        &page_proofs(gw, a),
        alert,
        status,
    )
}

/// The hold `id` if approver `a` may decide it: it needs approvals from a
/// group of theirs, and it is not their own request.
pub(super) async fn decidable(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    a: &Approver,
    id: Option<&HoldId>,
) -> Result<(Arc<HoldMeta>, HoldState), Reject> {
    let (meta, state) = lookup(gw, id).await?;
    if !state.requirements.wants_approval_from(&a.groups) {
        return Err(Reject::Forbidden);
    }
    let same_session = caller_sid(gw, conn, parts).is_some_and(|sid| sid == meta.sid);
    // The requester is the session's identity, whoever proved on this
    // hold, or whoever the session is bound to by an earlier step-up.
    let same_person =
        meta.identity.as_deref() == Some(a.name.as_str()) || state.proof.as_ref().is_some_and(|p| p.sub == a.name);
    // The binding is in the state store: asked only when nothing else
    // already refuses, and a store that cannot answer refuses (503).
    let bound_to_them =
        !same_session && !same_person && super::who::bound(gw, &meta.sid).await?.is_some_and(|w| w == a.name);
    if same_session || same_person || bound_to_them {
        tracing::warn!(hold = %meta.id, approver = %a.name, "self-approval refused");
        return Err(Reject::SelfApproval);
    }
    Ok((meta, state))
}

/// `POST .../approve` and `.../deny`; refusals of a decision taken on the
/// approval page come back as that page with the reason.
pub(super) async fn decide(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: Option<&HoldId>,
    approve: bool,
) -> Result<Response<Body>, Reject> {
    let html = page::from_page(&parts.headers);
    let who = approver_via(gw, &parts);
    let result = decide_json(gw, conn, parts, body, id, approve, who.clone()).await;
    let (Some((a, Via::SignedIn)), true) = (who, html) else {
        return result;
    };
    let hold = lookup(gw, id).await.ok();
    let prefix = gw.config().stepup.prefix.clone();
    match (result, hold) {
        (Ok(resp), Some((meta, state))) if resp.status() == StatusCode::OK => {
            Ok(page::approvals::decided(&prefix, &a.name, approve, &meta, Some(&state)))
        }
        (Ok(resp), _) => Ok(resp),
        (Err(r @ (Reject::InvalidProof { .. } | Reject::BadRequest(_) | Reject::TxnMismatch)), Some((meta, state))) => {
            let text = match &r {
                Reject::InvalidProof { .. } => {
                    "Your code or passkey was not accepted. Codes work once: wait for the next one.".to_owned()
                }
                other => page::stepup::alert_text(other),
            };
            Ok(review_page(gw, &a, &meta, &state, Some(&text), r.status()).await)
        }
        (Err(r), _) => Ok(page::message(
            r.status(),
            "This decision was not taken",
            &page::stepup::alert_text(&r),
            Some((&format!("{prefix}holds"), "Back to pending approvals")),
        )),
    }
}

async fn decide_json(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: Option<&HoldId>,
    approve: bool,
    who: Option<(Approver, Via)>,
) -> Result<Response<Body>, Reject> {
    let (a, via) = who.ok_or(Reject::Forbidden)?;
    if via == Via::SignedIn && !signin::origin_ok(gw, &parts) {
        tracing::warn!(approver = %a.name, "cookie decision without the gateway's Origin refused");
        return Err(Reject::Forbidden);
    }
    let (meta, state) = decidable(gw, conn, &parts, &a, id).await?;
    let id = meta.id.clone();
    let client = proofs::client_addr(gw, conn, &parts);
    let bytes = bodies::own(gw, client, body, MAX_PROOF_BODY).await?;
    let req = parse_body(&parts, &bytes)?;
    closed(state.phase)?;
    if req.txn.as_deref() != Some(meta.txn.as_str()) {
        tracing::warn!(hold = %id, approver = %a.name, "decision names a different txn");
        return Err(Reject::TxnMismatch);
    }
    let now = gw.clock.now();
    if now > state.deadline {
        // Too late to count: the approver's proof is not spent on it, and
        // the hold expires with its record.
        let _ = super::fleet::expire(gw, &meta, effects::DEADLINE, now).await;
        return Err(Reject::HoldExpired);
    }
    // A passkey assertion, when sent, must be good; it also stands in for
    // the code of an approver configured with `totp: true`. A signed-in
    // approver proves it is them for every decision: the cookie alone only
    // shows the queue.
    let fresh = match (&req.webauthn, a.totp || via == Via::SignedIn) {
        (Some(credential), _) => Some((
            "webauthn",
            proofs::approver_webauthn(gw, &a.name, &meta, credential, now).await?,
        )),
        (None, true) => Some((
            "totp",
            proofs::approver_totp(
                gw,
                &a.name,
                req.code.as_deref().unwrap_or(""),
                proofs::client_addr(gw, conn, &parts),
                now,
            )
            .await?,
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
    let kind = if approve {
        audit::Event::ApprovalGranted
    } else {
        audit::Event::ApprovalDenied
    };
    let event = if approve {
        Event::Approve(Approval {
            sub: a.name.clone(),
            at: unix_secs(now),
        })
    } else {
        Event::Deny { by: a.name.clone() }
    };
    let applied = match super::fleet::apply(gw, &id, event, now).await {
        Err(EngineError::Hold(HoldError::DuplicateApproval)) => {
            let (meta, state) = lookup(gw, Some(&id)).await?;
            let mut v = status_json(&meta, &state, now);
            v["duplicate"] = true.into();
            return Ok(respond::json(StatusCode::OK, &v));
        }
        other => other.map_err(Reject::from)?,
    };
    // Recorded once the state machine took the decision, so the trail never
    // shows an approval that did not count; queued in the same step, so a
    // release this approval won is written after it whatever the approver's
    // connection does.
    let mut record = hold_record(kind, &meta)
        .actor(a.name.clone())
        .with("comment", comment.clone());
    if let Some((method, _)) = fresh {
        record = record.with("proof", method);
    }
    let written = gw.audit(record);
    tracing::info!(event = %kind, hold = %id, approver = %a.name, txn = %meta.txn, %comment, "approver decided");
    gw.metrics.decision(approve);
    if !approve {
        effects::tell(gw, &applied.meta, effects::End::Denied(&comment), now);
        written.await?;
        return Ok(respond::json(
            StatusCode::OK,
            &serde_json::json!({"status": "denied", "hold_id": id.as_str()}),
        ));
    }
    match settle(gw, applied, now, Some(written)).await {
        // The approver's part is done; the requester collects the release.
        Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
            let (meta, state) = lookup(gw, Some(&id)).await?;
            let mut v = status_json(&meta, &state, now);
            v["status"] = "approved".into();
            Ok(respond::json(StatusCode::OK, &v))
        }
        other => other,
    }
}
