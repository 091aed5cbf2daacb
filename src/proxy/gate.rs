//! Deciding for one request: pass it through, or hold it until a bound
//! proof arrives, and forwarding a released hold with its assertion.

use super::challenge::{bearer_challenge, challenge};
use super::facts::Sensitive;
use super::forward::upstream_failed;
use super::hygiene::Target;
use super::respond::Reject;
use super::{display, effects, page, pending, proofs, release, upgrade, who, Gateway, Live};
use crate::audit;
use crate::audit::Record;
use crate::body::Body;
use crate::clock::unix_secs;
use crate::hold::engine::{Delivery, EngineError};
use crate::hold::{Event, HoldMeta, HoldState, Parked, Phase};
use crate::ids::HoldId;
use crate::policy::HoldMode;
use crate::session;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Forwards a request that needs no step-up, streaming both bodies. A
/// WebSocket handshake goes upstream as one; the handler opens the tunnel
/// if the upstream's 101 answers it.
pub async fn pass_through(
    live: &Live,
    mut parts: Parts,
    body: Body,
    target: &Target,
    websocket: bool,
) -> Result<Response<Body>, Reject> {
    parts.uri = match parts.uri.path_and_query() {
        // Already canonical: forward the parsed target as it is.
        Some(pq) if pq.path() == target.path.as_str() => http::Uri::from(pq.clone()),
        _ => target
            .path_and_query()
            .parse()
            .map_err(|_| Reject::BadRequest("invalid request target"))?,
    };
    if websocket {
        upgrade::restore(&mut parts.headers);
    }
    live.upstream
        .send(Request::from_parts(parts, body), &target.host)
        .await
        .map_err(upstream_failed)
}

/// A `shadow` route whose conditions fired: the trail records that the
/// request would have been held, and it goes on unheld.
pub async fn shadow(gw: &Arc<Gateway>, ctx: Sensitive, parts: Parts, body: Body) -> Result<Response<Body>, Reject> {
    let cert = ctx.client_cert.as_deref().map(|c| c.as_slice());
    let value = session::session_value_ref(&ctx.live.config.session, &parts.headers, cert)
        .ok()
        .flatten();
    let record = Record {
        route: Some(ctx.route.name.clone()),
        action: Some(ctx.route.action.clone()),
        sid: value.map(|v| gw.session_key.sid(&v).as_str().to_owned()),
        reason: (!ctx.risk.is_empty()).then(|| ctx.risk.join(",")),
        ..Record::new(audit::Event::ShadowWouldHold)
    }
    .with("method", parts.method.as_str())
    .with("path", ctx.target.path.as_str())
    .with("request_id", ctx.request_id);
    gw.audit(record).await?;
    pass_through(&ctx.live, parts, body, &ctx.target, ctx.websocket).await
}

/// A request the plan holds: bind it to the session and the exact bytes,
/// accept a recent step-up (sudo window) or an up-front token, or park it.
pub async fn sensitive(gw: &Arc<Gateway>, ctx: Sensitive, mut parts: Parts, bytes: Bytes) -> Result<Held, Reject> {
    let live = ctx.live.clone();
    let cfg = live.config.clone();
    let route = ctx.route.clone();
    let mode = ctx.mode;
    let now = gw.clock.now();
    let cert = ctx.client_cert.as_deref().map(|c| c.as_slice());
    let value = session::session_value(&cfg.session, &parts.headers, cert)
        .ok()
        .flatten();
    let sid = value.as_deref().map(|v| gw.session_key.sid(v));
    let (Some(value), Some(sid)) = (value, sid) else {
        return Err(Reject::NoSession);
    };
    // Without the shared store no proof could be spent safely: refuse at
    // once rather than park a request nobody can release.
    if !gw.state.is_available() {
        tracing::error!(route = %route.name, backend = gw.state.backend(), "state store unavailable; refusing a sensitive request");
        return Err(Reject::StateUnavailable);
    }
    let bearer = value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ");

    // The identity cannot be left out, doubled or swapped (SPEC §3).
    let identity = who::identity(gw, &live, cert, &parts.headers)?;
    if let Some(id) = &identity {
        who::bind(gw, &sid, id, "identity", None, (&route.name, &route.action), now).await?;
    }
    // Approvers must be able to tell the requester from themselves.
    let identity = who::requester_for(gw, &route.require, identity, &sid).await?;

    // 2. Bind: the exact bytes that will be forwarded.
    let path_and_query = ctx.target.path_and_query();
    let meta = HoldMeta {
        id: HoldId::random(),
        route: route.name.clone(),
        action: route.action.clone(),
        label: route.label.clone(),
        sid,
        txn: session::txn(&parts.method, &ctx.target.host, &path_and_query, &bytes),
        method: parts.method.clone(),
        host: ctx.target.host.clone(),
        path_and_query,
        mode,
        created: now,
        client_ip: ctx.client_ip,
        risk: ctx.risk,
        identity,
        display: display::values(&route, &ctx.target.path, ctx.reading.as_ref()),
        needs_approval: route.require.approvals > 0,
        request_id: ctx.request_id.clone(),
    };
    let browser = page::wants_html(&parts.headers);
    if ctx.websocket {
        // Released later, it is still the handshake it was.
        upgrade::restore(&mut parts.headers);
    }
    let access_token = super::oidc::bearer_jwt(&parts.headers);
    let parked = Parked {
        headers: parts.headers,
        body: bytes,
    };

    // 3. A step-up this session made for this action moments ago (sudo mode).
    let window = route.require.reuse.as_secs();
    if window > 0 && route.require.approvals == 0 {
        // The assertion names the original auth_time, so the reused step-up
        // must still be as fresh as the route's max_age demands.
        let fresh =
            |r: &crate::store::Recent| unix_secs(now).saturating_sub(r.auth_time) <= route.require.max_age.as_secs();
        // A reuse never widens who may act (SPEC §5): the earlier step-up
        // must itself satisfy this route, its methods, its `acr` and who may
        // step up, not only share its action.
        let satisfies = |r: &crate::store::Recent| {
            route.require.accepts(r.method)
                && route.require.accepts_acr(r.method, &r.acr)
                && proofs::actor_allowed(gw, &meta, &route.require, &r.sub).is_ok()
        };
        if let Some(recent) = gw
            .reuse
            .find(meta.sid.as_str(), &meta.action, unix_secs(now), window)
            .filter(fresh)
            .filter(satisfies)
        {
            let mut facts = release::facts(&meta, &recent.clone().into(), &[], false);
            facts.reuse = true;
            return release::forward_signed(gw, facts, &meta, parked, audit::Event::ReuseAccepted)
                .await
                .map(Held::Answer);
        }
    }

    // 4. An up-front token bound to this very request, or (SPEC §5) the
    // bearer access token itself when it shows a fresh login at the IdP.
    let mut early_proof = None;
    let mut up_front = None;
    if let Some(token) = ctx.token {
        match proofs::token(gw, &live, token.as_bytes(), &meta, None, &route.require, now).await? {
            Ok(proof) => up_front = Some((proof, audit::Event::TokenAccepted)),
            Err(e) => tracing::info!(route = %route.name, reason = %e, "up-front step-up token rejected; holding"),
        }
    }
    if let (None, Some(at)) = (&up_front, &access_token) {
        up_front = super::oidc::access_token_proof(gw, at, &meta, &route.require, now)
            .await
            .map(|p| (p, audit::Event::OidcAccessTokenAccepted));
    }
    if let Some((proof, event)) = up_front {
        if route.require.approvals == 0 {
            if meta.identity.is_none() {
                who::bind(
                    gw,
                    &meta.sid,
                    &proof.sub,
                    "actor",
                    None,
                    (&route.name, &route.action),
                    now,
                )
                .await?;
            }
            tracing::info!(route = %route.name, sub = %proof.sub, txn = %meta.txn, %event, "up-front step-up proof accepted");
            release::remember(gw, &meta, &route.require, &proof, now);
            let facts = release::facts(&meta, &(&proof).into(), &[], false);
            return release::forward_signed(gw, facts, &meta, parked, event)
                .await
                .map(Held::Answer);
        }
        // The proof shows presence; the approvals are still needed.
        early_proof = Some(proof);
    }

    let state = HoldState::new(
        route.require.clone(),
        now + route.hold.timeout,
        cfg.limits.max_attempts,
        mode == HoldMode::Hold,
    );
    let (waiter, rx) = match mode {
        HoldMode::Hold => {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let shared_copy = gw.shared_holds.as_ref().map(|_| Parked {
        headers: parked.headers.clone(),
        body: parked.body.clone(),
    });
    // The client's quota, counted across the fleet on Redis; the engine
    // below still keeps this instance's own limits.
    super::quota::take(gw, &cfg.limits, &meta, &parked, state.deadline, now).await?;
    let (hold_id, client_ip) = (meta.id.clone(), meta.client_ip);
    let meta = match gw.holds.create(meta, state.clone(), parked, waiter) {
        Ok(meta) => meta,
        Err(e) => {
            tracing::warn!(route = %route.name, reason = %e, "hold refused");
            let client = crate::hold::engine::client_key(client_ip).to_string();
            let _ = gw.state.give_hold_quota(&client, hold_id.as_str()).await;
            return Err(Reject::TooManyHolds);
        }
    };
    // Armed before the first await: a hold-mode client that goes away while
    // the audit record is written must take its hold with it too.
    let mut abandon = Abandon {
        gw: gw.clone(),
        meta: (mode == HoldMode::Hold).then(|| meta.clone()),
    };
    let written = effects::created(gw, &meta);
    if let Some(copy) = shared_copy {
        if let Err(e) = super::fleet::put(gw, &meta, &state, copy).await {
            abandon.meta = None;
            let _ = effects::expire_here(gw, &meta, effects::STORE_DOWN, now);
            super::quota::give_back(gw, &meta).await;
            let _ = written.await;
            return Err(Reject::from(e));
        }
    }
    if let Err(e) = written.await {
        // Without its record the hold must not exist.
        let _ = super::fleet::apply(gw, &meta.id, Event::Expire, now).await;
        return Err(e);
    }
    effects::opened(gw, &meta, now);
    if !Arc::ptr_eq(&cfg, &gw.config()) {
        // A reload came in since this request read its route.
        pending::reach_one(gw, &meta, now).await;
    }
    let mut state = state;
    if let Some(proof) = early_proof {
        if let Ok(applied) = super::fleet::apply(gw, &meta.id, Event::ProofAccepted(proof), now).await {
            state = applied.state;
        }
    }
    match (mode, rx) {
        // The client may wait for minutes: the wait is handed back, so that
        // it waits without this future's state (5.5 KiB) and without what
        // is left of the request's head (slices of hyper's read buffer).
        (HoldMode::Hold, Some(rx)) => Ok(Held::Waiting(Waiting {
            meta,
            rx,
            timeout: route.hold.timeout,
            guard: abandon,
        })),
        (HoldMode::Auto, _) if browser => {
            let view = page::stepup::View {
                prefix: &cfg.stepup.prefix,
                meta: &meta,
                state: &state,
                now,
                webauthn: cfg.stepup.webauthn.is_some(),
                alert: None,
                user: None,
                idp: live
                    .oidc
                    .as_ref()
                    .map(|o| super::oidc::provider::display_name(&o.config.issuer)),
            };
            Ok(Held::Answer(page::stepup::held(
                &view,
                bearer_challenge(bearer, &route),
            )))
        }
        _ => Ok(Held::Answer(challenge(
            &cfg.stepup.prefix,
            &meta,
            &state,
            &route,
            now,
            bearer,
        ))),
    }
}

/// What [`sensitive`] leaves to the handler: the answer, or a `hold`-mode
/// client's wait.
pub enum Held {
    Answer(Response<Body>),
    Waiting(Waiting),
}

/// A `hold`-mode client waiting for its hold's outcome. Dropped before
/// the outcome (the client went away), its guard abandons the hold.
pub struct Waiting {
    meta: Arc<HoldMeta>,
    rx: oneshot::Receiver<Delivery>,
    timeout: Duration,
    guard: Abandon,
}

impl Waiting {
    /// The connection waits for the release's response, a denial, or the
    /// deadline.
    pub async fn outcome(self) -> Result<Response<Body>, Reject> {
        let Waiting {
            meta,
            mut rx,
            timeout,
            mut guard,
        } = self;
        let gw = guard.gw.clone();
        let mut shutdown = gw.shutting_down();
        let failure = tokio::select! {
            d = &mut rx => { guard.meta = None; return delivered(d) }
            () = tokio::time::sleep(timeout) => Reject::StepUpExpired,
            _ = shutdown.wait_for(|s| *s) => Reject::ShuttingDown,
        };
        guard.meta = None;
        // Close the hold so it can never be forwarded later; if a release
        // won the race, its response is already on the way.
        let reason = match failure {
            Reject::ShuttingDown => effects::SHUTDOWN,
            _ => effects::DEADLINE,
        };
        // Boxed: the waiting state stays small, and this runs once at most.
        match Box::pin(super::fleet::expire(&gw, &meta, reason, gw.clock.now())).await {
            Err(EngineError::Hold(crate::hold::HoldError::AlreadyReleased)) => delivered(rx.await),
            _ => Err(failure),
        }
    }
}

fn delivered(d: Result<Delivery, oneshot::error::RecvError>) -> Result<Response<Body>, Reject> {
    match d {
        Ok(Delivery::Response(r)) => Ok(r),
        Ok(Delivery::Failed(Phase::Denied)) => Err(Reject::StepUpDenied),
        Ok(Delivery::Failed(_)) | Err(_) => Err(Reject::StepUpExpired),
    }
}

/// Ends a `hold`-mode hold whose client went away: nobody would receive
/// the upstream's answer, so the action must not happen. The trail says so
/// (`hold.abandoned`, reason `client_gone`). A hold already released is
/// not touched: its forward runs to its end regardless.
struct Abandon {
    gw: Arc<Gateway>,
    meta: Option<Arc<HoldMeta>>,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(meta) = self.meta.take() else { return };
        let gw = self.gw.clone();
        let now = gw.clock.now();
        if gw.shared_holds.is_none() {
            if effects::expire_here(&gw, &meta, effects::CLIENT_GONE, now).is_ok() {
                tracing::info!(hold = %meta.id, "hold-mode client went away; hold abandoned");
            }
            return;
        }
        // The shared store is asked from a task of its own: a drop cannot wait.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // The hold's own write to the store may still be landing.
                for _ in 0..30 {
                    match super::fleet::expire(&gw, &meta, effects::CLIENT_GONE, now).await {
                        Err(EngineError::Unknown) => tokio::time::sleep(Duration::from_millis(100)).await,
                        Ok(_) => {
                            tracing::info!(hold = %meta.id, "hold-mode client went away; hold abandoned");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                let _ = effects::expire_here(&gw, &meta, effects::CLIENT_GONE, now);
            });
        }
    }
}
