//! Approvers signing in on the approval page: `POST approver/login` with
//! their own TOTP code (or passkey), `approver/login/options` for the
//! passkey challenge, `approver/logout`. A sign-in sets the signed
//! `__Host-stepgate-approver` cookie (see `session::approver`); decisions
//! taken with it still need a fresh proof each (see `approvals::decide`).

use super::api::proof_body::MAX_PROOF_BODY;
use super::bodies;
use super::passkey::{self, ChallengeKey};
use super::proof_error::ProofError;
use super::respond::{self, Reject};
use super::{origin, page, proofs, throttle, ConnInfo, Gateway};
use crate::audit;
use crate::audit::Record;
use crate::body::{full, Body};
use crate::clock::unix_secs;
use crate::config::Approver;
use crate::session::approver as cookie;
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

/// The approver signed in with a valid cookie, if any. The name must
/// still be a configured approver: removing one from the config ends
/// their sign-in at once.
pub(super) fn signed_in(gw: &Gateway, parts: &Parts) -> Option<Approver> {
    let mut values = cookie_values(parts);
    let value = values.next()?;
    // Two different copies: the browser never sends that for a __Host-
    // cookie, so someone is playing games.
    if values.any(|v| v != value) {
        return None;
    }
    let name = cookie::verify(&gw.session_key, value, unix_secs(gw.clock.now()))?;
    if gw.revoked_approvers.is_revoked(value) {
        return None;
    }
    gw.config().stepup.approvers.iter().find(|a| a.name == name).cloned()
}

fn cookie_values(parts: &Parts) -> impl Iterator<Item = &str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(cookie::COOKIE)?.strip_prefix('='))
}

/// Whether the browser says this request came from the gateway's own page
/// (see `origin`). Signing out and cookie decisions need it said: having
/// the cookie is not enough.
pub(super) fn origin_ok(gw: &Gateway, parts: &Parts) -> bool {
    origin::judge(gw, parts) == origin::Verdict::SameOrigin
}

#[derive(Debug, Default, Deserialize)]
struct Login {
    #[serde(default)]
    name: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    credential: Option<serde_json::Value>,
}

fn parse(parts: &Parts, bytes: &[u8]) -> Result<Login, Reject> {
    if page::from_page(&parts.headers) && !is_json(parts) {
        let mut l = Login::default();
        for (k, v) in form_urlencoded::parse(bytes) {
            match k.as_ref() {
                "name" => l.name = v.trim().to_owned(),
                "method" => l.method = Some(v.into_owned()),
                "code" => l.code = Some(v.into_owned()),
                "credential" if !v.is_empty() => {
                    l.credential =
                        Some(serde_json::from_str(&v).map_err(|_| Reject::BadRequest("malformed passkey credential"))?)
                }
                _ => {}
            }
        }
        return Ok(l);
    }
    serde_json::from_slice(bytes).map_err(|_| Reject::BadRequest("malformed sign-in"))
}

fn is_json(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// `POST approver/login`.
pub(super) async fn login(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>, Reject> {
    let html = page::from_page(&parts.headers);
    let config = gw.config();
    let client = proofs::client_addr(gw, conn, &parts);
    throttle::client(gw, client, "approver sign-in").await?;
    let bytes = bodies::own(gw, client, body, MAX_PROOF_BODY).await?;
    let req = parse(&parts, &bytes)?;
    let now = gw.clock.now();
    let known = config.stepup.approvers.iter().any(|a| a.name == req.name);
    let method = req.method.as_deref().unwrap_or("totp");
    let secs = unix_secs(now);
    // Every failed sign-in counts against the client that sent it (and the
    // name at that client), whatever the name and method: the page is
    // open to anyone, and only the sender should be slowed down.
    let verified = match (method, known) {
        ("totp", true) => proofs::approver_totp(gw, &req.name, req.code.as_deref().unwrap_or(""), client, now).await?,
        ("totp" | "webauthn", _) => match proofs::may_try(gw, &req.name, client, secs).await? {
            Err(e) => Err(e),
            Ok(()) => {
                let result = match (&req.credential, known) {
                    (_, false) => Err(ProofError::NotApprover(req.name.clone())),
                    (Some(c), true) => approver_login_passkey(gw, &req.name, c, now).await?,
                    (None, true) => Err(ProofError::NoCredential),
                };
                proofs::settle_try(gw, &req.name, client, secs, result.is_ok()).await?;
                result
            }
        },
        _ => return Err(Reject::BadRequest("unknown sign-in method")),
    };
    if let Err(reason) = verified {
        tracing::info!(approver = %req.name, %reason, "approver sign-in refused");
        if html {
            return Ok(page::approvals::signin(
                &config.stepup.prefix,
                gw.webauthn_enabled(),
                &req.name,
                Some("That did not work. Check your name and code and try again."),
                StatusCode::UNAUTHORIZED,
            ));
        }
        return Err(Reject::InvalidProof { attempts_left: 0 });
    }
    gw.audit(
        Record::new(audit::Event::ApproverSignedIn)
            .actor(req.name.clone())
            .with("method", method),
    )
    .await?;
    tracing::info!(approver = %req.name, method, "approver signed in");
    let value = cookie::issue(&gw.session_key, &req.name, unix_secs(now));
    Ok(see_other(
        &format!("{}holds", config.stepup.prefix),
        &cookie::set_cookie(&value),
    ))
}

/// `POST approver/login/options`: the passkey challenge for signing in.
/// Every name gets options of the same shape, so the answer does not tell
/// who is an approver or who has a passkey (see `passkey::start`).
pub(super) async fn options(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>, Reject> {
    let client = proofs::client_addr(gw, conn, &parts);
    throttle::client(gw, client, "approver sign-in options").await?;
    let bytes = bodies::own(gw, client, body, MAX_PROOF_BODY).await?;
    let req: Login = serde_json::from_slice(&bytes).map_err(|_| Reject::BadRequest("malformed sign-in"))?;
    let now = gw.clock.now();
    let options = if gw.config().stepup.approvers.iter().any(|a| a.name == req.name) {
        approver_login_options(gw, &req.name, &throttle::owner(client), now).await?
    } else {
        passkey::look_alike(gw, &req.name, &login_binding(&req.name), now).await?
    };
    Ok(respond::json(StatusCode::OK, &options))
}

/// `POST approver/logout`: ends the sign-in on this browser.
pub(super) fn logout(gw: &Gateway, parts: &Parts) -> Result<Response<Body>, Reject> {
    if !origin_ok(gw, parts) {
        return Err(Reject::Forbidden);
    }
    if let Some(a) = signed_in(gw, parts) {
        // Revoked on the server too: a copy of the cookie stops working.
        for value in cookie_values(parts) {
            if let Some(exp) = cookie::expiry(value) {
                gw.revoked_approvers.revoke(value, exp);
            }
        }
        tracing::info!(approver = %a.name, "approver signed out");
    }
    Ok(see_other(
        &format!("{}holds", gw.config().stepup.prefix),
        &cookie::clear_cookie(),
    ))
}

fn see_other(location: &str, set_cookie: &str) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// The WebAuthn seams the pages use. Without `stepup.webauthn`, passkeys
// are simply not offered.

/// The binding of an approver's sign-in challenge: it names the purpose
/// and the person, so it can never pass as a hold's `txn`.
fn login_binding(name: &str) -> String {
    format!("approver-login:{name}")
}

async fn approver_login_options(
    gw: &Gateway,
    name: &str,
    owner: &str,
    now: std::time::SystemTime,
) -> Result<serde_json::Value, Reject> {
    let key = ChallengeKey::ApproverLogin(name.to_owned());
    passkey::start(gw, (key, owner), name, &login_binding(name), now).await
}

async fn approver_login_passkey(
    gw: &Gateway,
    name: &str,
    credential: &serde_json::Value,
    now: std::time::SystemTime,
) -> Result<Result<(), ProofError>, Reject> {
    let key = ChallengeKey::ApproverLogin(name.to_owned());
    let verified = passkey::finish(gw, &key, Some(name), &login_binding(name), credential, now).await?;
    Ok(verified.map(|_| ()))
}

/// Who a one-time enrollment link is for, if it is still valid (looked up,
/// not consumed).
pub(super) fn enrollment_user(gw: &Gateway, token: &str, now: std::time::SystemTime) -> Option<String> {
    passkey::enrollment(gw, token, now).map(|e| e.user)
}
