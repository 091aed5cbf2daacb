//! The gateway's own endpoints under the prefix (default `/.stepup/`).
//! Nothing under the prefix is ever forwarded upstream.

use super::bodies::buffer;
use super::hygiene::Target;
use super::respond::{self, Reject};
use super::{
    approvals, browser, ending, enroll, hold_record, oidc, origin, page, proofs, release, signin, webauthn, who,
    ConnInfo, Gateway, Written,
};
use crate::body::Body;
use crate::hold::engine::EngineError;
use crate::hold::{Event, HoldError, HoldMeta, HoldState, Phase, Transition};
use crate::ids::{HoldId, Sid};
use crate::policy::ProofMethod;
use crate::route::canonical::CanonicalPath;
use crate::session;
use http::request::Parts;
use http::{header, Method, Response, StatusCode};
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(super) const MAX_PROOF_BODY: u64 = 16 * 1024;

/// Whether a path is the gateway's own (see [`crate::route::gateway_owns`]).
pub fn owns(prefix: &str, path: &CanonicalPath) -> bool {
    crate::route::gateway_owns(prefix, path)
}

pub async fn handle(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    target: &Target,
) -> Result<Response<Body>, Reject> {
    let rest = target
        .path
        .as_str()
        .get(gw.config().stepup.prefix.len()..)
        .unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    // Before any handler: a browser carries the victim's cookies on a form
    // another site posts, so whatever changes state must come from here.
    if !parts.method.is_safe() && origin::judge(gw, &parts) == origin::Verdict::CrossSite {
        tracing::warn!(method = %parts.method, "cross-site request to the gateway's endpoints refused");
        return Ok(origin::refused(gw, &parts, segments.first() == Some(&"approver")));
    }
    match (&parts.method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["jwks.json"]) => {
            let mut resp = respond::json(StatusCode::OK, &gw.signer.jwks());
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=300"),
            );
            Ok(resp)
        }
        (&Method::GET, ["holds"]) => approvals::queue(gw, &parts),
        (&Method::GET, ["holds", id]) => status(gw, conn, &parts, id),
        (&Method::POST, ["holds", id, "complete"]) => browser::complete(gw, conn, parts, body, id).await,
        (&Method::POST, ["approver", "login"]) => signin::login(gw, conn, parts, body).await,
        (&Method::POST, ["approver", "login", "options"]) => signin::options(gw, conn, parts, body).await,
        (&Method::POST, ["approver", "logout"]) => signin::logout(gw, &parts),
        (&Method::GET, ["enroll"]) => Ok(browser::enroll_page(gw, target)),
        (&Method::POST, ["holds", id, "approve"]) => approvals::decide(gw, conn, parts, body, id, true).await,
        (&Method::POST, ["holds", id, "deny"]) => approvals::decide(gw, conn, parts, body, id, false).await,
        (&Method::GET, ["holds", id, "webauthn"]) => webauthn::options(gw, conn, &parts, id),
        (&Method::GET, ["holds", id, "oidc"]) => oidc::start(gw, conn, &parts, id).await,
        (&Method::GET, ["oidc", "callback"]) => oidc::callback(gw, conn, &parts, target).await,
        (&Method::POST, ["enroll", "options"]) => enroll::options(gw, parts, body).await,
        (&Method::POST, ["enroll", "finish"]) => enroll::finish(gw, parts, body).await,
        _ => Err(Reject::NotFound),
    }
}

pub(super) fn caller_sid(gw: &Gateway, conn: &ConnInfo, parts: &Parts) -> Option<Sid> {
    let cert = conn.client_cert.as_deref().map(|c| c.as_slice());
    match session::session_value(&gw.config().session, &parts.headers, cert) {
        Ok(Some(v)) => Some(gw.session_key.sid(&v)),
        _ => None,
    }
}

/// Looks a hold up for its own session. Anyone else learns nothing, not
/// even that the hold exists.
pub(super) fn own_hold(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    id: &str,
) -> Result<(Arc<HoldMeta>, HoldState), Reject> {
    let id = HoldId::parse(id).ok_or(Reject::UnknownHold)?;
    let (meta, state) = gw.holds.get(&id).ok_or(Reject::UnknownHold)?;
    match caller_sid(gw, conn, parts) {
        Some(sid) if sid == meta.sid => Ok((meta, state)),
        _ => Err(Reject::UnknownHold),
    }
}

/// `GET holds/{id}`: the requester's own hold (its step-up page for a
/// browser), else an approver's view of a hold they may decide.
fn status(gw: &Gateway, conn: &ConnInfo, parts: &Parts, id: &str) -> Result<Response<Body>, Reject> {
    let now = gw.clock.now();
    let html = page::wants_html(&parts.headers);
    // The requester first: in one browser, a person who is also signed in
    // as an approver still sees their own step-up page.
    if let Ok((meta, state)) = own_hold(gw, conn, parts, id) {
        if html {
            if let Err(reject) = closed(state.phase) {
                return Ok(page::stepup::closed(&reject));
            }
            return Ok(browser::step_up_page(gw, &meta, &state, None, None, StatusCode::OK));
        }
        return Ok(respond::json(StatusCode::OK, &status_json(&meta, &state, now)));
    }
    let approver = approvals::approver(gw, parts).ok_or(Reject::UnknownHold)?;
    let hold = HoldId::parse(id).ok_or(Reject::UnknownHold)?;
    let (meta, state) = gw.holds.get(&hold).ok_or(Reject::UnknownHold)?;
    if !state.requirements.wants_approval_from(&approver.groups) {
        return Err(Reject::UnknownHold);
    }
    if html {
        return Ok(approvals::review_page(
            gw,
            &approver,
            &meta,
            &state,
            None,
            StatusCode::OK,
        ));
    }
    let mut v = status_json(&meta, &state, now);
    if let (Some(o), serde_json::Value::Object(extra)) = (v.as_object_mut(), approvals::item(&meta, now)) {
        o.extend(extra);
    }
    Ok(respond::json(StatusCode::OK, &v))
}

pub(super) fn status_json(meta: &HoldMeta, state: &HoldState, now: SystemTime) -> serde_json::Value {
    let phase = if state.phase.is_open() && now > state.deadline {
        Phase::Expired
    } else {
        state.phase
    };
    serde_json::json!({
        "hold_id": meta.id.as_str(),
        "state": phase.as_str(),
        "met": state.met(),
        "missing": state.missing(),
        "expires_in": state.deadline.duration_since(now).unwrap_or(Duration::ZERO).as_secs(),
    })
}

/// The fields a proof or decision may carry: JSON, or the same fields
/// form-encoded by the pages. `{}` collects a hold approvals satisfied.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ProofBody {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub txn: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// A WebAuthn assertion (`PublicKeyCredential` JSON) for `complete`.
    #[serde(default)]
    pub credential: Option<serde_json::Value>,
    /// An approver's WebAuthn assertion next to a decision.
    #[serde(default)]
    pub webauthn: Option<serde_json::Value>,
}

/// A form carries JSON as text; JSON may too.
fn json_text(v: Option<serde_json::Value>) -> Option<serde_json::Value> {
    match v {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).ok(),
        other => other,
    }
}

pub(super) fn parse_body(parts: &Parts, bytes: &[u8]) -> Result<ProofBody, Reject> {
    let form = super::display::is_form(&parts.headers);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ProofBody::default());
    }
    if form {
        let mut b = ProofBody::default();
        for (k, v) in form_urlencoded::parse(bytes) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "method" => b.method = v,
                "token" => b.token = v,
                "user" => b.user = v,
                "code" => b.code = v,
                "txn" => b.txn = v,
                "comment" => b.comment = v,
                "reason" => b.reason = v,
                "credential" => b.credential = json_text(v.map(Into::into)),
                "webauthn" => b.webauthn = json_text(v.map(Into::into)),
                _ => {}
            }
        }
        return Ok(b);
    }
    let mut b: ProofBody = serde_json::from_slice(bytes).map_err(|_| Reject::BadRequest("malformed proof"))?;
    b.credential = json_text(b.credential);
    b.webauthn = json_text(b.webauthn);
    Ok(b)
}

pub(super) async fn complete(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: &str,
) -> Result<Response<Body>, Reject> {
    let id = HoldId::parse(id).ok_or(Reject::UnknownHold)?;
    let (meta, state) = gw.holds.get(&id).ok_or(Reject::UnknownHold)?;
    if caller_sid(gw, conn, &parts).as_ref() != Some(&meta.sid) {
        tracing::warn!(hold = %id, "complete from another session refused");
        return Err(Reject::SessionMismatch);
    }
    let bytes = buffer(body, MAX_PROOF_BODY).await?;
    let now = gw.clock.now();
    // A settled hold is reported before any proof is checked, so a late
    // proof is not consumed for nothing.
    closed(state.phase)?;
    let req = parse_body(&parts, &bytes)?;
    if now > state.deadline {
        return Err(late(gw, &meta, req.method.as_deref(), req.user.clone(), now));
    }
    let event = match req.method.as_deref() {
        None | Some("") => Event::Collect,
        Some("break_glass") => {
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
            let applied = gw
                .holds
                .apply(&id, Event::BreakGlass { by: by.clone() }, now)
                .map_err(engine_reject)?;
            let written = gw.audit(
                hold_record("break_glass.used", &meta)
                    .actor(by.clone())
                    .reason(reason.clone()),
            );
            tracing::warn!(hold = %id, route = %meta.route, %by, %reason, "break-glass release");
            gw.notify_always("hold.break_glass", &meta, now, Some(&reason));
            return settle(gw, applied, now, Some(written)).await;
        }
        Some(name) => {
            let method = ProofMethod::parse(name).ok_or(Reject::BadRequest("unknown proof method"))?;
            if !state.requirements.accepts(method) {
                return Err(Reject::BadRequest("this proof method is not accepted for this action"));
            }
            let verified = match method {
                ProofMethod::Token => {
                    let token = req.token.ok_or(Reject::BadRequest("malformed proof: token missing"))?;
                    proofs::token(gw, token.as_bytes(), &meta, Some(&meta.id), &state.requirements, now).await?
                }
                ProofMethod::Totp => {
                    let (Some(user), Some(code)) = (req.user.clone(), req.code) else {
                        return Err(Reject::BadRequest("malformed proof: user and code are required"));
                    };
                    let client = proofs::client_addr(gw, conn, &parts);
                    proofs::totp(gw, user.trim(), &code, client, &meta, &state.requirements, now).await?
                }
                ProofMethod::Webauthn => {
                    let credential = req.credential.as_ref().filter(|c| webauthn::well_formed(c));
                    let credential = credential.ok_or(Reject::BadRequest("malformed proof: credential missing"))?;
                    proofs::webauthn(gw, credential, req.user.as_deref(), &meta, &state.requirements, now)
                }
                _ => return Err(Reject::BadRequest("this proof method is not available on this gateway")),
            };
            // Without a known identity, the first person to step up on a
            // session becomes its actor; nobody else may step up on it.
            let mut bound_now = false;
            if let (Ok(proof), None) = (&verified, &meta.identity) {
                let route = (meta.route.as_str(), meta.action.as_str());
                bound_now = who::bind(gw, &meta.sid, &proof.sub, "actor", Some(&meta), route, now).await?;
            }
            // The record is written after the state machine decided, so it
            // says what happened (a proof the hold refuses is a rejection).
            let (event, sub) = match verified {
                Ok(proof) => {
                    let sub = proof.sub.clone();
                    (Event::ProofAccepted(proof), Ok(sub))
                }
                Err(reason) => {
                    tracing::info!(hold = %id, method = %method, %reason, "proof rejected");
                    (Event::ProofRejected, Err(reason))
                }
            };
            let applied = gw.holds.apply(&id, event, now);
            if let (true, Ok(sub), Err(_)) = (bound_now, &sub, &applied) {
                who::unbind(gw, &meta.sid, sub);
            }
            let record = match (&sub, &applied) {
                (Ok(sub), Ok(a)) if a.transition == Transition::Expired => hold_record("proof.rejected", &meta)
                    .actor(sub.clone())
                    .reason("expired"),
                (Ok(sub), Ok(_)) => hold_record("proof.accepted", &meta).actor(sub.clone()),
                (Ok(sub), Err(e)) => hold_record("proof.rejected", &meta)
                    .actor(sub.clone())
                    .reason(e.to_string()),
                (Err(reason), _) => hold_record("proof.rejected", &meta)
                    .actor(req.user.clone().unwrap_or_default())
                    .reason(reason.clone()),
            };
            let accepted = sub.is_ok() && applied.as_ref().is_ok_and(|a| a.transition != Transition::Expired);
            gw.metrics.proof(method.as_str(), accepted);
            // Queued now, in the same step as the decision: the release (if
            // this proof won it) is written after it, whatever the client does.
            let written = gw.audit(record.with("method", method.as_str()));
            return match applied {
                Ok(applied) => settle(gw, applied, now, Some(written)).await,
                Err(e) => {
                    written.await?;
                    Err(engine_reject(e))
                }
            };
        }
    };
    let applied = gw.holds.apply(&id, event, now).map_err(engine_reject)?;
    settle(gw, applied, now, None).await
}

/// A proof or collection after the hold's deadline: never verified (a
/// token's `jti`, a TOTP step stay unspent), recorded as a rejected proof,
/// and the hold expires with its record.
pub(super) fn late(
    gw: &Gateway,
    meta: &HoldMeta,
    method: Option<&str>,
    user: Option<String>,
    now: SystemTime,
) -> Reject {
    let known = method.and_then(|m| match m {
        "break_glass" => Some("break_glass"),
        m => ProofMethod::parse(m).map(|p| p.as_str()),
    });
    if let Some(method) = known {
        gw.audit.record_later(
            hold_record("proof.rejected", meta)
                .actor(user.unwrap_or_default())
                .reason("expired")
                .with("method", method),
        );
        gw.metrics.proof(method, false);
    }
    let _ = ending::expire(gw, meta, ending::DEADLINE, now);
    Reject::HoldExpired
}

/// Turns an applied event into the caller's response. A release starts
/// here, synchronously, before the returned future is first polled: from
/// the state change on, nothing the caller does can stop it. `ahead` is the
/// already queued record of the step that led here; a hold that ended
/// gets its closing record here too, in the same step.
pub(super) fn settle(
    gw: &Arc<Gateway>,
    applied: crate::hold::engine::Applied,
    now: SystemTime,
    ahead: Option<Written>,
) -> impl Future<Output = Result<Response<Body>, Reject>> + Send + 'static {
    let meta = applied.meta.clone();
    match applied.transition {
        Transition::Denied => ending::record(gw, &meta, "hold.denied", "denied", "attempts exhausted", now),
        Transition::Expired => ending::record(gw, &meta, "hold.expired", "expired", ending::DEADLINE, now),
        Transition::Release | Transition::Progress | Transition::Rejected { .. } => {}
    }
    let next = match applied.transition {
        Transition::Release => Ok(release::start(gw, applied, ahead)),
        _ => Err((applied, ahead)),
    };
    async move {
        let (applied, ahead) = match next {
            Ok(releasing) => return releasing.answer().await,
            Err(rest) => rest,
        };
        if let Some(ahead) = ahead {
            ahead.await?;
        }
        match applied.transition {
            Transition::Progress => Ok(respond::json(
                StatusCode::ACCEPTED,
                &status_json(&applied.meta, &applied.state, now),
            )),
            Transition::Rejected { attempts_left } => Err(Reject::InvalidProof { attempts_left }),
            Transition::Denied => Err(Reject::StepUpDenied),
            Transition::Expired => Err(Reject::HoldExpired),
            Transition::Release => Err(Reject::AlreadyReleased),
        }
    }
}

pub(super) fn closed(phase: Phase) -> Result<(), Reject> {
    match phase {
        Phase::Released => Err(Reject::AlreadyReleased),
        Phase::Denied => Err(Reject::StepUpDenied),
        Phase::Expired => Err(Reject::HoldExpired),
        Phase::Pending | Phase::Satisfied => Ok(()),
    }
}

pub(super) fn engine_reject(e: EngineError) -> Reject {
    match e {
        EngineError::Unknown => Reject::UnknownHold,
        EngineError::Hold(HoldError::AlreadyReleased) => Reject::AlreadyReleased,
        EngineError::Hold(HoldError::Expired) => Reject::HoldExpired,
        EngineError::Hold(HoldError::Denied) => Reject::StepUpDenied,
        EngineError::Hold(HoldError::SelfApproval) => Reject::SelfApproval,
        EngineError::Hold(e @ (HoldError::BreakGlassNeedsStepUp | HoldError::BreakGlassCannotReplaceApprovals)) => {
            Reject::BadRequest(if e == HoldError::BreakGlassNeedsStepUp {
                "break-glass needs your own step-up first"
            } else {
                "break-glass cannot replace this action's approvals"
            })
        }
        EngineError::Hold(HoldError::MethodNotAccepted) => {
            Reject::BadRequest("this proof method is not accepted for this action")
        }
        EngineError::Hold(_) => Reject::BadRequest("the request could not be applied"),
        EngineError::GlobalLimit | EngineError::SessionLimit | EngineError::ByteLimit | EngineError::ClientLimit => {
            Reject::TooManyHolds
        }
    }
}
