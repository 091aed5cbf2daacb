//! The gateway's own endpoints under the prefix (default `/.stepup/`).
//! Nothing under the prefix is ever forwarded upstream. This file only
//! routes: each endpoint lives in its own module, and a hold id in the path
//! is parsed here, once, into a [`HoldId`].

pub(super) mod access;
pub(super) mod complete;
pub(super) mod outcome;
pub(super) mod proof_body;
mod status;

use super::hygiene::Target;
use super::respond::{self, Reject};
use super::{approvals, browser, enroll, oidc, origin, signin, webauthn, ConnInfo, Gateway};
use crate::body::Body;
use crate::ids::HoldId;
use crate::route::canonical::CanonicalPath;
use http::request::Parts;
use http::{header, Method, Response, StatusCode};
use std::sync::Arc;

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
    if let ["holds", id, rest @ ..] = segments.as_slice() {
        let id = HoldId::parse(id);
        return hold(gw, conn, parts, body, id.as_ref(), rest).await;
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
        (&Method::GET, ["holds"]) => approvals::queue(gw, &parts).await,
        (&Method::POST, ["approver", "login"]) => signin::login(gw, conn, parts, body).await,
        (&Method::POST, ["approver", "login", "options"]) => signin::options(gw, conn, parts, body).await,
        (&Method::POST, ["approver", "logout"]) => signin::logout(gw, &parts),
        (&Method::GET, ["enroll"]) => Ok(browser::enroll_page(gw, target)),
        (&Method::GET, ["oidc", "callback"]) => oidc::callback(gw, conn, &parts, target).await,
        (&Method::POST, ["enroll", "options"]) => enroll::options(gw, conn, parts, body).await,
        (&Method::POST, ["enroll", "finish"]) => enroll::finish(gw, conn, parts, body).await,
        _ => Err(Reject::NotFound),
    }
}

/// The endpoints of one hold, `holds/{id}/...`. `id` is `None` when the
/// segment is no hold id: each endpoint answers that as an unknown hold,
/// after the same checks it makes for any other.
async fn hold(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
    id: Option<&HoldId>,
    rest: &[&str],
) -> Result<Response<Body>, Reject> {
    match (&parts.method, rest) {
        (&Method::GET, []) => status::status(gw, conn, &parts, id).await,
        (&Method::POST, ["complete"]) => browser::complete(gw, conn, parts, body, id).await,
        (&Method::POST, ["approve"]) => approvals::decide(gw, conn, parts, body, id, true).await,
        (&Method::POST, ["deny"]) => approvals::decide(gw, conn, parts, body, id, false).await,
        (&Method::GET, ["webauthn"]) => webauthn::options(gw, conn, &parts, id).await,
        (&Method::GET, ["oidc"]) => oidc::start(gw, conn, &parts, id).await,
        _ => Err(Reject::NotFound),
    }
}
