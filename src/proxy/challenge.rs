//! What a held request is told: the 401 `step_up_required` challenge of
//! SPEC §4.1 and its `WWW-Authenticate` values, shared by the JSON answer
//! and the step-up page.

use super::respond;
use crate::body::Body;
use crate::hold::{HoldMeta, HoldState};
use crate::route::Route;
use http::{header, HeaderValue, Response, StatusCode};
use std::time::{Duration, SystemTime};

/// RFC 9470 §3, from the route: the `acr` values it accepts (validated at
/// config load to hold no quotes or spaces) and its `max_age`. A route
/// that names no `acr` asks for none.
pub(super) fn bearer_challenge(bearer: bool, route: &Route) -> Option<String> {
    bearer.then(|| {
        let req = &route.require;
        let acr = if req.acr.is_empty() {
            String::new()
        } else {
            format!(", acr_values=\"{}\"", req.acr.join(" "))
        };
        format!(
            "Bearer error=\"insufficient_user_authentication\"{acr}, max_age=\"{}\"",
            req.max_age.as_secs()
        )
    })
}

/// The `WWW-Authenticate: StepUp ...` value of SPEC §4.1 (JSON challenge
/// and browser page alike).
pub(crate) fn stepup_challenge(meta: &HoldMeta, req: &crate::policy::Requirements) -> String {
    format!(
        "StepUp hold=\"{}\", action=\"{}\", methods=\"{}\", max_age=\"{}\", txn=\"{}\"",
        meta.id,
        meta.action.replace(['"', '\\'], ""),
        req.methods_joined(),
        req.max_age.as_secs(),
        meta.txn
    )
}

/// The 401 `step_up_required` of SPEC §4.1, to the field.
pub(super) fn challenge(
    prefix: &str,
    meta: &HoldMeta,
    state: &HoldState,
    route: &Route,
    now: SystemTime,
    bearer: bool,
) -> Response<Body> {
    let req = &state.requirements;
    let expires_in = state.deadline.duration_since(now).unwrap_or(Duration::ZERO).as_secs();
    let body = serde_json::json!({
        "error": "step_up_required",
        "hold_id": meta.id.as_str(),
        "route": meta.route,
        "action": meta.action,
        "methods": req.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "approvals": req.approvals,
        "max_age": req.max_age.as_secs(),
        "sid": meta.sid.as_str(),
        "txn": meta.txn.as_str(),
        "expires_in": expires_in,
        "complete": format!("{prefix}holds/{}/complete", meta.id),
        "status": format!("{prefix}holds/{}", meta.id),
    });
    // The conditions that fired, when the route has any (an addition to
    // the fixed members, present only then).
    let mut body = body;
    if !meta.risk.is_empty() {
        body["risk"] = meta.risk.clone().into();
    }
    let mut resp = respond::json(StatusCode::UNAUTHORIZED, &body);
    let stepup = stepup_challenge(meta, req);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&stepup) {
        h.append(header::WWW_AUTHENTICATE, v);
    }
    if let Some(b) = bearer_challenge(bearer, route) {
        if let Ok(v) = HeaderValue::from_str(&b) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}
