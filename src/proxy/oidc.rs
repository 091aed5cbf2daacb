//! OIDC step-up endpoints (SPEC §4.2, §5 `oidc`):
//! - `GET holds/{id}/oidc` starts a re-authentication at the OP for the
//!   caller's own hold and redirects the browser there (by PAR when the OP
//!   offers it, so the browser carries only a `request_uri`);
//! - `GET oidc/callback` takes the OP's answer, exchanges the code, checks
//!   the ID token (`stepup::oidc`) and completes the hold like any other
//!   proof: the browser lands on the upstream's response.
//!
//! `state` finds the flow and is removed on first use, whatever the
//! outcome; the code is claimed in the replay cache before it is
//! exchanged. Every refusal is a page for the person and a
//! `proof.rejected` record with the reason.

mod flows;
pub mod provider;

pub(crate) use flows::Flows;
pub use provider::Provider;

use super::api::access::{caller_sid, own_hold};
use super::api::complete::{apply_proof, late};
use super::api::outcome::closed;
use super::api::proof_body::Step;
use super::hygiene::Target;
use super::proof_error::ProofError;
use super::respond::Reject;
use super::{browser, hold_record, page, proofs, ConnInfo, Gateway};
use crate::audit;
use crate::body::Body;
use crate::clock::unix_secs;
use crate::hold::{HoldMeta, Proof};
use crate::ids::HoldId;
use crate::policy::ProofMethod;
use crate::stepup::oidc::{request, verify_id_token, AuthRequest, Expect, Flow, OidcError};
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use provider::ProviderError;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// `GET holds/{id}/oidc`.
pub(super) async fn start(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: &Parts,
    id: Option<&HoldId>,
) -> Result<Response<Body>, Reject> {
    let (meta, state) = own_hold(gw, conn, parts, id).await?;
    closed(state.phase)?;
    let now = gw.clock.now();
    if now > state.deadline {
        return Err(late(gw, &meta, Step::Prove(ProofMethod::Oidc), None, now).await);
    }
    let req = &state.requirements;
    if !req.accepts(ProofMethod::Oidc) {
        return Err(Reject::BadRequest("this proof method is not accepted for this action"));
    }
    let Some(op) = gw.live().oidc.clone() else {
        return Err(Reject::BadRequest("this proof method is not available on this gateway"));
    };
    let mut random = [0u8; 64];
    rand::fill(&mut random[..]);
    let flow = Flow::new(meta.id.as_str(), meta.txn.as_str(), &random);
    let redirect_uri = op.config.redirect_uri.to_string();
    let params = AuthRequest {
        client_id: &op.config.client_id,
        redirect_uri: &redirect_uri,
        scopes: &op.config.scopes,
        acr: &req.acr,
        max_age_secs: req.max_age.as_secs(),
    }
    .params(&flow);
    let secs = unix_secs(now);
    let location = match locate(&op, &params, secs).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(hold = %meta.id, error = %e, "OIDC provider unusable");
            gw.audit.record_later(
                hold_record(audit::Event::OidcUnavailable, &meta)
                    .actor(meta.requester())
                    .reason(e.to_string())
                    .with("method", "oidc"),
            );
            return Ok(browser::step_up_page(
                gw,
                &meta,
                &state,
                Some("The identity provider could not be reached. Try again, or use another way to confirm.".into()),
                None,
                StatusCode::BAD_GATEWAY,
            ));
        }
    };
    gw.oidc_flows
        .insert(flow, meta.id.clone(), meta.sid.clone(), state.deadline, now);
    let mut resp = Response::new(crate::body::full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let location = HeaderValue::from_str(&location).map_err(|_| Reject::BadRequest("bad provider endpoint"))?;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Where the browser goes: the authorization endpoint with the whole
/// request, or (RFC 9126) with only the `request_uri` the OP handed out.
/// The JWKS is fetched here too, so a key rotation before the callback is
/// seen as one (an unknown kid, refetched) rather than as a first fetch.
async fn locate(op: &Provider, params: &[(&'static str, String)], now: u64) -> Result<String, ProviderError> {
    let endpoints = op.endpoints().await?;
    op.keys().await?;
    let query = match &endpoints.par {
        Some(par) => {
            let request_uri = op.push(par, params, now).await?;
            request::encode(&[("client_id", op.config.client_id.clone()), ("request_uri", request_uri)])
        }
        None => request::encode(params),
    };
    let sep = if endpoints.authorization.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(format!("{}{sep}{query}", endpoints.authorization))
}

/// `GET oidc/callback`.
pub(super) async fn callback(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: &Parts,
    target: &Target,
) -> Result<Response<Body>, Reject> {
    let answer = Answer::parse(target.query.as_deref().unwrap_or(""));
    let Some(pending) = answer
        .state
        .as_deref()
        .and_then(|s| gw.oidc_flows.take(s, gw.clock.now()))
    else {
        tracing::warn!("OIDC callback with an unknown, used or expired state");
        gw.audit
            .record_later(crate::audit::Record::new(audit::Event::OidcUnknownState));
        return Ok(page::message(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "It was already used, has expired, or was not started here. Go back to the application and try again.",
            Some(("/", "Back to the application")),
        ));
    };
    let (meta, state) = super::api::access::lookup(gw, Some(&pending.hold)).await?;
    if caller_sid(gw, conn, parts).as_ref() != Some(&meta.sid) || meta.sid != pending.sid {
        tracing::warn!(hold = %meta.id, "OIDC callback from another session refused");
        gw.audit.record_later(
            hold_record(audit::Event::ProofRejected, &meta)
                .reason("oidc callback from another session")
                .with("method", "oidc"),
        );
        return Err(Reject::SessionMismatch);
    }
    closed(state.phase)?;
    let now = gw.clock.now();
    if now > state.deadline {
        return Err(late(gw, &meta, Step::Prove(ProofMethod::Oidc), None, now).await);
    }
    let verified = match gw.live().oidc.clone() {
        Some(op) => {
            verify(
                gw,
                &op,
                &meta,
                &state.requirements,
                &pending.flow,
                &answer,
                unix_secs(now),
            )
            .await?
        }
        None => Err(ProofError::NotConfigured("stepup.oidc")),
    };
    let verified = verified.and_then(|proof| {
        proofs::actor_allowed(gw, &meta, &state.requirements, &proof.sub)?;
        Ok(proof)
    });
    let result = apply_proof(gw, &meta, "oidc", None, verified, now).await;
    match result {
        Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
            let mut r = Response::new(crate::body::full(""));
            *r.status_mut() = StatusCode::SEE_OTHER;
            let back = format!("{}holds/{}", gw.config().stepup.prefix, meta.id);
            if let Ok(v) = HeaderValue::from_str(&back) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Ok(resp) => Ok(resp),
        Err(reject) => {
            let open = gw
                .holds
                .get(&meta.id)
                .filter(|(_, s)| s.phase.is_open() && gw.clock.now() <= s.deadline);
            Ok(match (&reject, open) {
                (Reject::InvalidProof { attempts_left }, Some((meta, state))) => browser::step_up_page(
                    gw,
                    &meta,
                    &state,
                    Some(format!(
                        "The sign-in at the identity provider was not accepted for this action ({attempts_left} attempts left)."
                    )),
                    None,
                    reject.status(),
                ),
                _ => page::stepup::closed(&reject),
            })
        }
    }
}

/// The authorization response's parameters. A parameter that appears
/// twice counts as absent: two readers could pick different copies.
struct Answer {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl Answer {
    fn parse(query: &str) -> Answer {
        let one = |name: &str| {
            let mut found = form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name);
            match (found.next(), found.next()) {
                (Some((_, v)), None) => Some(v.into_owned()),
                _ => None,
            }
        };
        Answer {
            state: one("state"),
            code: one("code"),
            error: one("error"),
            iss: one("iss"),
        }
    }
}

/// The OP's answer to a proof, or the reason (for the log and the trail).
async fn verify(
    gw: &Gateway,
    op: &Provider,
    meta: &HoldMeta,
    require: &crate::policy::Requirements,
    flow: &Flow,
    answer: &Answer,
    now: u64,
) -> Result<Result<Proof, ProofError>, Reject> {
    if let Some(error) = &answer.error {
        let error: String = error.chars().take(60).filter(|c| !c.is_control()).collect();
        return Ok(Err(ProofError::Provider(error)));
    }
    // RFC 9207: a response naming another issuer is a mix-up.
    if answer.iss.as_ref().is_some_and(|iss| *iss != op.config.issuer) {
        return Ok(Err(ProofError::IssuerMixUp));
    }
    let Some(code) = answer.code.clone().filter(|c| !c.is_empty()) else {
        return Ok(Err(ProofError::NoCode));
    };
    let code_key = format!("oidc-code:{}", crate::jose::b64_encode(Sha256::digest(code.as_bytes())));
    // Spent through the shared store, so a code is good once on every
    // instance; a store that does not answer is 503, like any other
    // single-use record.
    match gw.state.claim_once(&code_key, now + 3600, now).await {
        Ok(true) => {}
        Ok(false) => return Ok(Err(ProofError::CodeUsed)),
        Err(e) => {
            tracing::error!(error = %e, "cannot record an authorization code as used; failing closed");
            return Err(Reject::StateUnavailable);
        }
    }
    Ok(redeem(op, meta, require, flow, &code, now).await)
}

/// Exchanges a claimed code and checks the ID token it brings.
async fn redeem(
    op: &Provider,
    meta: &HoldMeta,
    require: &crate::policy::Requirements,
    flow: &Flow,
    code: &str,
    now: u64,
) -> Result<Proof, ProofError> {
    let unreachable = |e: ProviderError| ProofError::Unreachable(e.to_string());
    let id_token = op.exchange(code, &flow.verifier, now).await.map_err(unreachable)?;
    let expect = Expect {
        issuer: &op.config.issuer,
        client_id: &op.config.client_id,
        nonce: Some(&flow.nonce),
        acr: &require.acr,
        max_age_secs: require.max_age.as_secs(),
        not_before: unix_secs(meta.created),
    };
    let keys = op.keys().await.map_err(unreachable)?;
    let checked = match verify_id_token(&id_token, &keys, &expect, now) {
        Err(OidcError::UnknownKid(kid)) => {
            tracing::info!(%kid, "ID token names an unknown kid; refetching the provider's keys");
            let keys = op.refetch_keys().await.map_err(unreachable)?;
            verify_id_token(&id_token, &keys, &expect, now)
        }
        other => other,
    };
    let v = checked.map_err(ProofError::IdToken)?;
    Ok(Proof {
        method: ProofMethod::Oidc,
        sub: v.sub,
        auth_time: v.auth_time,
        amr: v.amr,
        acr: v.acr.unwrap_or_default(),
    })
}

/// The access token of an `Authorization: Bearer` header, if it looks
/// like a JWT (three dot-separated parts); opaque tokens are not ours.
pub(super) fn bearer_jwt(headers: &http::HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.split('.').count() == 3).then(|| token.to_owned())
}

/// SPEC §5: an RFC 9068 access token from the configured OP, with a fresh
/// enough `auth_time` and an accepted `acr`, is itself a proof for a route
/// that accepts `oidc`. `None` (with the reason logged) when it is not.
pub(super) async fn access_token_proof(
    gw: &Gateway,
    token: &str,
    meta: &HoldMeta,
    require: &crate::policy::Requirements,
    now: std::time::SystemTime,
) -> Option<Proof> {
    if !require.accepts(ProofMethod::Oidc) {
        return None;
    }
    let op = gw.live().oidc.clone()?;
    let expect = Expect {
        issuer: &op.config.issuer,
        client_id: &op.config.client_id,
        nonce: None,
        acr: &require.acr,
        max_age_secs: require.max_age.as_secs(),
        not_before: 0,
    };
    let secs = unix_secs(now);
    let unreachable = |e: ProviderError| ProofError::Unreachable(e.to_string());
    let checked = async {
        let keys = op.keys().await.map_err(unreachable)?;
        let first = crate::stepup::oidc::verify_access_token(token, &keys, &expect, secs);
        let v = match first {
            Err(OidcError::UnknownKid(_)) => {
                let keys = op.refetch_keys().await.map_err(unreachable)?;
                crate::stepup::oidc::verify_access_token(token, &keys, &expect, secs)
            }
            other => other,
        };
        let v = v.map_err(ProofError::AccessToken)?;
        proofs::actor_allowed(gw, meta, require, &v.sub)?;
        Ok::<_, ProofError>(v)
    }
    .await;
    match checked {
        Ok(v) => Some(Proof {
            method: ProofMethod::Oidc,
            sub: v.sub,
            auth_time: v.auth_time,
            amr: v.amr,
            acr: v.acr.unwrap_or_default(),
        }),
        Err(reason) => {
            tracing::info!(route = %meta.route, %reason, "bearer access token is no step-up proof; holding");
            None
        }
    }
}
