//! The gateway's endpoints as a browser meets them: the same decisions as
//! the JSON API, answered with a page (the step-up page with the reason
//! for a refusal, a redirect back to it while approvals are outstanding).

use super::api::access::lookup;
use super::api::complete::complete as complete_json;
use super::api::proof_body::{parse_body, MAX_PROOF_BODY};
use super::bodies;
use super::hygiene::Target;
use super::respond::Reject;
use super::{page, proofs, signin, ConnInfo, Gateway};
use crate::body::{full, Body};
use crate::hold::{HoldMeta, HoldState};
use crate::ids::HoldId;
use http::request::Parts;
use http::{header, Response, StatusCode};
use std::sync::Arc;

/// The step-up page for one hold as it stands now.
pub(super) fn step_up_page(
    gw: &Gateway,
    meta: &HoldMeta,
    state: &HoldState,
    alert: Option<String>,
    user: Option<String>,
    status: StatusCode,
) -> Response<Body> {
    let view = page::stepup::View {
        prefix: &gw.config().stepup.prefix,
        meta,
        state,
        now: gw.clock.now(),
        webauthn: gw.webauthn_enabled(),
        alert,
        user,
        idp: gw
            .live()
            .oidc
            .as_ref()
            .map(|o| super::oidc::provider::display_name(&o.config.issuer)),
    };
    page::stepup::render(&view, status)
}

/// `POST holds/{id}/complete`. From the step-up page, a refusal comes back
/// as the page with the reason, and a proof that leaves the hold waiting
/// for approvals sends the browser back to the page (303), so reloading
/// never posts the proof again. A release is the upstream's own response
/// either way, so the browser lands where the application meant it to.
pub(super) async fn complete(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: Option<&HoldId>,
) -> Result<Response<Body>, Reject> {
    if !page::from_page(&parts.headers) {
        return complete_json(gw, conn, parts, body, id).await;
    }
    // Read here so a refused attempt can keep the user name that was typed.
    let client = proofs::client_addr(gw, conn, &parts);
    let bytes = bodies::own(gw, client, body, MAX_PROOF_BODY).await?;
    let user = parse_body(&parts, &bytes).ok().and_then(|b| b.user);
    let result = complete_json(gw, conn, parts, full(bytes), id).await;
    let prefix = gw.config().stepup.prefix.clone();
    match result {
        Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
            let mut r = Response::new(crate::body::full(""));
            *r.status_mut() = StatusCode::SEE_OTHER;
            let id = id.map_or("", HoldId::as_str);
            if let Ok(v) = http::HeaderValue::from_str(&format!("{prefix}holds/{id}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
            Ok(r)
        }
        Ok(resp) => Ok(resp),
        Err(reject) => {
            let open = lookup(gw, id)
                .await
                .ok()
                .filter(|(_, s)| s.phase.is_open() && gw.clock.now() <= s.deadline);
            match (&reject, open) {
                (Reject::InvalidProof { .. } | Reject::BadRequest(_), Some((meta, state))) => Ok(step_up_page(
                    gw,
                    &meta,
                    &state,
                    Some(page::stepup::alert_text(&reject)),
                    user,
                    reject.status(),
                )),
                // Refusals that say nothing about the hold (another
                // session's, a full trail) keep their usual status.
                _ => Ok(page::stepup::closed(&reject)),
            }
        }
    }
}

/// `GET enroll?token=T`: the passkey enrollment page for a one-time link.
pub(super) fn enroll_page(gw: &Gateway, target: &Target) -> Response<Body> {
    let token = target
        .query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // Without `stepup.webauthn` no link can be used, whatever the store says.
    let user = gw
        .webauthn_enabled()
        .then(|| signin::enrollment_user(gw, &token, gw.clock.now()))
        .flatten();
    page::enroll::page(&gw.config().stepup.prefix, &token, user.as_deref())
}
