//! Deciding for one request: pass it through, or hold it until a bound
//! proof arrives, and forwarding a released hold with its assertion.

use super::handler::buffer;
use super::hygiene::Target;
use super::respond::{self, Reject};
use super::{page, Gateway};
use crate::assertion::{ApproverClaim, AssertionFacts};
use crate::body::{full, Body};
use crate::clock::unix_secs;
use crate::hold::engine::{Applied, Delivery, EngineError, Release};
use crate::hold::{Event, HoldMeta, HoldState, Parked, Phase, Proof};
use crate::ids::{HoldId, Sid, Txn};
use crate::policy::{HoldMode, ProofMethod, Requirements};
use crate::route::Route;
use crate::session;
use crate::stepup::token::Binding;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

pub struct Sensitive {
    pub route: Arc<Route>,
    pub target: Target,
    pub token: Option<HeaderValue>,
    pub client_ip: IpAddr,
    pub client_cert: Option<Arc<Vec<u8>>>,
}

/// Forwards a request that needs no step-up, streaming both bodies. An
/// HTTP/1.1 upgrade (WebSocket) is tunnelled once the upstream agrees.
pub async fn pass_through(
    gw: &Arc<Gateway>,
    mut parts: Parts,
    body: Body,
    target: &Target,
    upgrade: Option<HeaderValue>,
) -> Result<Response<Body>, Reject> {
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
        None => None,
    };
    parts.uri = target
        .path_and_query()
        .parse()
        .map_err(|_| Reject::BadRequest("invalid request target"))?;
    if let Some(proto) = upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto);
    }
    let mut resp = gw
        .upstream
        .send(Request::from_parts(parts, body), &target.host)
        .await
        .map_err(upstream_failed)?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, upstream));
        }
    }
    Ok(resp)
}

async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
        tracing::debug!("upgrade did not complete");
        return;
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

pub(super) fn upstream_failed(e: super::forward::ForwardError) -> Reject {
    tracing::warn!(error = %e, "upstream unavailable");
    Reject::UpstreamUnavailable
}

/// A request on a sensitive route: bind it to the session and the exact
/// bytes, accept an up-front token, or park it.
pub async fn sensitive(
    gw: &Arc<Gateway>,
    ctx: Sensitive,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>, Reject> {
    let cfg = &gw.config;
    let route = ctx.route.clone();
    if route.hold.mode == HoldMode::Shadow {
        tracing::info!(event = "shadow.would_hold", route = %route.name, action = %route.action, method = %parts.method, path = %ctx.target.path.as_str(), "shadow mode: forwarding what would have been held");
        return pass_through(gw, parts, body, &ctx.target, None).await;
    }
    let value = session::session_value(
        &cfg.session,
        &parts.headers,
        ctx.client_cert.as_deref().map(|c| c.as_slice()),
    )
    .map_err(|_| Reject::BadRequest("the session is ambiguous"))?
    .ok_or(Reject::NoSession)?;
    let bearer = value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ");
    let sid = gw.session_key.sid(&value);
    let bytes = buffer(body, cfg.limits.max_body).await?;
    let path_and_query = ctx.target.path_and_query();
    let txn = session::txn(&parts.method, &ctx.target.host, &path_and_query, &bytes);
    let now = gw.clock.now();
    let id = HoldId::random();
    let meta = HoldMeta {
        id: id.clone(),
        route: route.name.clone(),
        action: route.action.clone(),
        sid,
        txn,
        method: parts.method.clone(),
        host: ctx.target.host.clone(),
        path: ctx.target.path.as_str().to_owned(),
        path_and_query,
        mode: route.hold.mode,
        created: now,
        client_ip: ctx.client_ip,
        risk: Vec::new(),
    };
    let browser = page::wants_html(&parts.headers);
    let parked = Parked {
        headers: parts.headers,
        body: bytes,
    };

    if let Some(token) = ctx.token {
        match verify_token(
            gw,
            token.as_bytes(),
            &meta.sid,
            &meta.txn,
            None,
            &route.require,
            now,
        ) {
            Ok(proof) => {
                tracing::info!(event = "token.accepted", route = %route.name, sub = %proof.sub, "up-front step-up token accepted");
                let facts = facts(&meta, &proof, &[], false);
                return forward_signed(gw, facts, &meta, parked).await;
            }
            Err(e) => {
                tracing::info!(route = %route.name, reason = %e, "up-front step-up token rejected; holding")
            }
        }
    }

    let state = HoldState::new(
        route.require.clone(),
        now + route.hold.timeout,
        cfg.limits.max_attempts,
        route.hold.mode == HoldMode::Hold,
    );
    let (waiter, rx) = match route.hold.mode {
        HoldMode::Hold => {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let meta = gw
        .holds
        .create(meta, state.clone(), parked, waiter)
        .map_err(|e| {
            tracing::warn!(route = %route.name, reason = %e, "hold refused");
            Reject::TooManyHolds
        })?;
    tracing::info!(event = "hold.created", hold = %meta.id, route = %meta.route, action = %meta.action, sid = %meta.sid, txn = %meta.txn, "request held");
    match (route.hold.mode, rx) {
        (HoldMode::Hold, Some(rx)) => wait(gw, &meta, rx, route.hold.timeout).await,
        (HoldMode::Auto, _) if browser => Ok(page::step_up(
            &gw.config.stepup.prefix,
            &meta,
            &state,
            now,
            bearer_challenge(bearer, &route),
        )),
        _ => Ok(challenge(
            &gw.config.stepup.prefix,
            &meta,
            &state,
            &route,
            now,
            bearer,
        )),
    }
}

fn bearer_challenge(bearer: bool, route: &Route) -> Option<String> {
    bearer.then(|| {
        format!(
            "Bearer error=\"insufficient_user_authentication\", acr_values=\"stepup\", max_age=\"{}\"",
            route.require.max_age.as_secs()
        )
    })
}

/// The 401 `step_up_required` of SPEC §4.1, to the field.
pub fn challenge(
    prefix: &str,
    meta: &HoldMeta,
    state: &HoldState,
    route: &Route,
    now: SystemTime,
    bearer: bool,
) -> Response<Body> {
    let req = &state.requirements;
    let expires_in = state
        .deadline
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .as_secs();
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
    let mut resp = respond::json(StatusCode::UNAUTHORIZED, &body);
    let stepup = format!(
        "StepUp hold=\"{}\", action=\"{}\", methods=\"{}\", max_age=\"{}\", txn=\"{}\"",
        meta.id,
        meta.action.replace(['"', '\\'], ""),
        req.methods_joined(),
        req.max_age.as_secs(),
        meta.txn
    );
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

/// A `hold`-mode request: the connection waits for the outcome.
async fn wait(
    gw: &Arc<Gateway>,
    meta: &Arc<HoldMeta>,
    mut rx: oneshot::Receiver<Delivery>,
    timeout: Duration,
) -> Result<Response<Body>, Reject> {
    let mut guard = Abandon {
        gw: gw.clone(),
        id: Some(meta.id.clone()),
    };
    let mut shutdown = gw.shutting_down();
    let failure = tokio::select! {
        d = &mut rx => { guard.id = None; return delivered(d) }
        () = tokio::time::sleep(timeout) => Reject::StepUpExpired,
        _ = shutdown.wait_for(|s| *s) => Reject::ShuttingDown,
    };
    guard.id = None;
    // Close the hold so it can never be forwarded later; if a release won
    // the race, its response is already on the way.
    match gw.holds.apply(&meta.id, Event::Expire, gw.clock.now()) {
        Err(EngineError::Hold(crate::hold::HoldError::AlreadyReleased)) => delivered(rx.await),
        _ => Err(failure),
    }
}

fn delivered(d: Result<Delivery, oneshot::error::RecvError>) -> Result<Response<Body>, Reject> {
    match d {
        Ok(Delivery::Response(r)) => Ok(r),
        Ok(Delivery::Failed(Phase::Denied)) => Err(Reject::StepUpDenied),
        Ok(Delivery::Failed(_)) | Err(_) => Err(Reject::StepUpExpired),
    }
}

/// Expires a `hold`-mode hold whose client went away: nobody would receive
/// the upstream's answer, so the action must not happen.
struct Abandon {
    gw: Arc<Gateway>,
    id: Option<HoldId>,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if self
                .gw
                .holds
                .apply(&id, Event::Expire, self.gw.clock.now())
                .is_ok()
            {
                tracing::info!(hold = %id, "hold-mode client went away; hold expired");
            }
        }
    }
}

/// Verifies a step-up token for this hold (or, up front, for this request)
/// and claims its `jti`. Errors are logged by the caller, never returned
/// to the client in detail.
pub(super) fn verify_token(
    gw: &Gateway,
    token: &[u8],
    sid: &Sid,
    txn: &Txn,
    hold: Option<&HoldId>,
    require: &Requirements,
    now: SystemTime,
) -> Result<Proof, String> {
    if !require.accepts(ProofMethod::Token) {
        return Err("route does not accept token proofs".into());
    }
    let token = std::str::from_utf8(token).map_err(|_| "token is not UTF-8".to_owned())?;
    let binding = Binding {
        sid: sid.as_str(),
        txn: txn.as_str(),
        hold: hold.map(|h| h.as_str()),
    };
    let t = gw
        .tokens
        .verify(token, &binding, now)
        .map_err(|e| e.to_string())?;
    let age = unix_secs(now).saturating_sub(t.auth_time);
    if age > require.max_age.as_secs() {
        return Err(format!(
            "auth_time is {age}s old, route max_age is {}s",
            require.max_age.as_secs()
        ));
    }
    if !gw.replay.claim(format!("jti:{}:{}", t.iss, t.jti), t.exp) {
        return Err("token jti was already used".into());
    }
    Ok(Proof {
        method: ProofMethod::Token,
        sub: t.sub,
        auth_time: t.auth_time,
        amr: t.amr,
        acr: t.acr.unwrap_or_else(|| "stepup".into()),
    })
}

pub(super) fn facts(
    meta: &HoldMeta,
    proof: &Proof,
    approvals: &[crate::hold::state::Approval],
    held: bool,
) -> AssertionFacts {
    AssertionFacts {
        sub: proof.sub.clone(),
        sid: meta.sid.as_str().to_owned(),
        act: meta.action.clone(),
        route: meta.route.clone(),
        txn: meta.txn.as_str().to_owned(),
        htm: meta.method.as_str().to_owned(),
        htu: format!("https://{}{}", meta.host, meta.path),
        amr: proof.amr.clone(),
        acr: proof.acr.clone(),
        auth_time: proof.auth_time,
        approvers: approvals
            .iter()
            .map(|a| ApproverClaim {
                sub: a.sub.clone(),
                at: a.at,
            })
            .collect(),
        hold: held.then(|| meta.id.as_str().to_owned()),
        risk: meta.risk.clone(),
        ..AssertionFacts::default()
    }
}

/// Signs and forwards a request whose step-up is complete. Runs in its own
/// task so that a client that disconnects mid-way cannot cancel a release
/// half-done: once released, the request goes upstream.
pub(super) async fn forward_signed(
    gw: &Arc<Gateway>,
    facts: AssertionFacts,
    meta: &HoldMeta,
    parked: Parked,
) -> Result<Response<Body>, Reject> {
    let gw2 = gw.clone();
    let method = meta.method.clone();
    let pq = meta.path_and_query.clone();
    let host = meta.host.clone();
    let task = tokio::spawn(async move {
        send_signed(&gw2, facts, method, pq, &host, parked.headers, parked.body).await
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "release task failed");
        Err(Reject::UpstreamUnavailable)
    })
}

async fn send_signed(
    gw: &Gateway,
    facts: AssertionFacts,
    method: Method,
    pq: String,
    host: &str,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, Reject> {
    let signed = gw.signer.sign(&facts, gw.clock.now()).map_err(|e| {
        tracing::error!(error = %e, "cannot sign assertion");
        Reject::UpstreamUnavailable
    })?;
    let value = HeaderValue::from_str(&signed.token).map_err(|_| Reject::UpstreamUnavailable)?;
    headers.insert("x-stepup-assertion", value);
    let mut req = Request::new(full(body));
    *req.method_mut() = method;
    *req.uri_mut() = pq
        .parse()
        .map_err(|_| Reject::BadRequest("invalid request target"))?;
    *req.headers_mut() = headers;
    tracing::info!(event = "request.forwarded", jti = %signed.jti, route = %facts.route, sub = %facts.sub, txn = %facts.txn, "forwarding stepped-up request");
    gw.upstream.send(req, host).await.map_err(upstream_failed)
}

/// Carries out a won release: forward, then hand the response to whoever
/// waits for it. In `hold` mode that is the parked connection, and the
/// caller that released it gets `{"status":"released"}`.
pub(super) async fn release(gw: &Arc<Gateway>, applied: Applied) -> Result<Response<Body>, Reject> {
    let Applied {
        meta,
        state,
        release,
        ..
    } = applied;
    let Some(Release { parked, waiter }) = release else {
        return Err(Reject::AlreadyReleased);
    };
    let Some(proof) = state.proof.clone().or_else(|| approval_only_proof(&state)) else {
        return Err(Reject::AlreadyReleased);
    };
    tracing::info!(event = "hold.released", hold = %meta.id, route = %meta.route, sub = %proof.sub, txn = %meta.txn, "hold released");
    let facts = facts(&meta, &proof, &state.approvals, true);
    match waiter {
        None => forward_signed(gw, facts, &meta, parked).await,
        Some(w) => {
            let gw = gw.clone();
            let meta2 = meta.clone();
            tokio::spawn(async move {
                let resp = forward_signed(&gw, facts, &meta2, parked)
                    .await
                    .unwrap_or_else(Reject::into_response);
                let _ = w.send(Delivery::Response(resp));
            });
            Ok(respond::json(
                StatusCode::OK,
                &serde_json::json!({"status": "released", "hold_id": meta.id.as_str()}),
            ))
        }
    }
}

/// For routes that need approvals only, the accountable actor is the
/// requester's session; the approvers are listed in the assertion.
fn approval_only_proof(state: &HoldState) -> Option<Proof> {
    let first = state.approvals.first()?;
    Some(Proof {
        method: ProofMethod::Token,
        sub: first.sub.clone(),
        auth_time: first.at,
        amr: vec!["approval".into()],
        acr: "approval".into(),
    })
}
