//! The request path as one story:
//! normalize → facts → plan → execute (forward | deny | hold → release → forward).

use super::plan::{self, Plan};
use super::respond::Reject;
use super::{api, bodies, deadline, gate, hygiene, upgrade, ConnInfo, Gateway};
use crate::body::{full, Body, BoxError};
use crate::policy::HoldMode;
use http::{HeaderMap, HeaderName, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::borrow::Cow;
use std::convert::Infallible;

/// The metrics label of a request no route governs.
const UNROUTED: &str = "none";

// Built once: looking a header up by `&str` parses the name on every call.
static X_STEPUP_TOKEN: HeaderName = HeaderName::from_static("x-stepup-token");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future is boxed: its concrete type borrows across awaits, which the
/// connection's `Send` bound cannot name.
pub fn handle(
    gw: Arc<Gateway>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
) -> Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> {
    Box::pin(async move {
        let mut route = Cow::Borrowed(UNROUTED);
        let websocket = upgrade::Client::take(&mut req);
        let head = req.method() == Method::HEAD;
        let resp = match serve(&gw, &conn, req, websocket.is_some(), &mut route).await {
            Ok(resp) => resp,
            Err(reject) => reject.into_response(),
        };
        // Whatever path produced it, a 101 opens a tunnel only for this
        // client's own WebSocket handshake.
        let mut resp = upgrade::deliver(resp, websocket);
        if head {
            resp = super::respond::without_body(resp);
        }
        if route == UNROUTED {
            gw.metrics.unrouted_request(resp.status());
        } else {
            gw.metrics.request(&route, resp.status().as_str());
        }
        Ok(resp)
    })
}

/// `route` is set to the matched route's name (for metrics).
async fn serve(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    req: Request<Incoming>,
    websocket: bool,
    route: &mut Cow<'static, str>,
) -> Result<Response<Body>, Reject> {
    // The one load of the live config for this request: everything below,
    // through the release of a hold it creates, reads this snapshot.
    let live = gw.live();
    let cfg = &live.config;
    let (mut parts, body) = req.into_parts();
    let mut body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    let head_read = tokio::time::Instant::now();
    let span = cfg.limits.body_read_timeout;

    // 1. normalize: one canonical target, or 400.
    let target = plan::front(&mut parts, cfg)?;
    if api::owns(&cfg.stepup.prefix, &target.path) {
        *route = Cow::Borrowed("stepup-api");
        // Boxed, like the sensitive path below: the request future is
        // allocated for every request, and it is sized by its largest arm.
        let body = deadline::limit(body, head_read, span);
        return Box::pin(api::handle(gw, conn, parts, body, &target)).await;
    }

    // 2. the facts: what the gateway consumes, and the session's sighting.
    let trusted = hygiene::is_trusted(conn.peer.ip(), &cfg.trusted_proxies);
    let client_addr = hygiene::client_addr(conn.peer.ip(), &parts.headers, &cfg.trusted_proxies);
    let client_ip = client_addr.unwrap_or(conn.peer.ip());
    let token = parts.headers.get(&X_STEPUP_TOKEN).cloned();
    let request_id = request_id(&parts.headers);
    let cert = conn.client_cert.as_deref().map(|c| c.as_slice());
    let now = gw.clock.now();
    let session = plan::Session {
        carried: plan::Carried::of(&cfg.session, &parts.headers, cert),
        seen: super::sighting::observe(gw, cert, &parts.headers, client_ip, now).await,
    };

    // 3. the plan, from the facts alone; the body is read only when the
    // plan asks for it.
    let mut bytes = None;
    let decided = loop {
        let facts = plan::Request {
            method: &parts.method,
            target: &target,
            headers: &parts.headers,
            body: bytes.as_deref(),
            client_addr,
            client_ip,
            trusted_peer: trusted,
            workload: conn.client_cert.is_some(),
            websocket,
        };
        match plan::plan(cfg, &facts, &session, now) {
            Plan::ReadBody if bytes.is_none() => {
                // Within `max_body` and the budget for buffered bodies,
                // charged to this client.
                let unread = std::mem::replace(&mut body, full(bytes::Bytes::new()));
                let unread = deadline::limit(unread, head_read, span);
                let read = bodies::charged(gw, &cfg.limits, client_ip, unread).await?;
                body = full(read.clone());
                bytes = Some(read);
            }
            Plan::ReadBody => {
                // The plan asks only for a body it has not seen.
                tracing::error!("the plan asked for a body it was given");
                return Err(Reject::BadRequest("the request could not be decided"));
            }
            decided => break decided,
        }
    };

    // 4. execute.
    hygiene::strip_inbound(&mut parts.headers, trusted, cfg.identity.header.as_ref());
    hygiene::strip_gateway_cookies(&mut parts.headers);
    hygiene::set_forwarded(&mut parts.headers, conn.peer.ip(), trusted, &target.host);
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        parts.headers.insert(X_REQUEST_ID.clone(), v);
    }
    if let Some(r) = decided.route() {
        *route = Cow::Owned(r.name.clone());
    }
    let sensitive = |routed: plan::Routed, mode, risk, reading| super::facts::Sensitive {
        live: live.clone(),
        route: routed.route,
        mode,
        risk,
        reading,
        target: target.clone(),
        token: token.clone(),
        client_ip,
        client_cert: conn.client_cert.clone(),
        request_id: request_id.clone(),
        websocket,
    };
    // What is forwarded as it streams may not stall; a body the plan
    // already read is in memory and has nothing left to wait for.
    let body = if bytes.is_some() {
        body
    } else {
        deadline::idle(body, span)
    };
    match decided {
        Plan::Refuse(reject) => Err(reject),
        Plan::Gateway | Plan::ReadBody => Err(Reject::NotFound),
        Plan::Forward(routed) => {
            if let Some(r) = routed {
                tracing::debug!(route = %r.route.name, "no risk condition fired; forwarding unheld");
            }
            gate::pass_through(&live, parts, body, &target, websocket).await
        }
        Plan::Deny(r) => {
            tracing::info!(route = %r.route.name, path = %target.path.as_str(), "denied by route");
            Err(Reject::Forbidden)
        }
        Plan::NeedSession(_) => Err(Reject::NoSession),
        Plan::Shadow { routed, reasons } => {
            let ctx = sensitive(routed, HoldMode::Shadow, reasons, None);
            // Boxed: the request future (allocated for every request) is sized
            // by its largest arm, and a `hold`-mode client waits inside it.
            // (Pass-through stays inline: boxing it too saves 2.5 KiB per
            // waiting client but costs ~1% more instructions per request.)
            Box::pin(gate::shadow(gw, ctx, parts, body)).await
        }
        Plan::Hold {
            routed,
            mode,
            reasons,
            reading,
        } => {
            // A hold binds its body, so the plan had it read.
            let Some(bytes) = bytes else {
                tracing::error!(route = %routed.route.name, "a hold was planned without its body");
                return Err(Reject::BadRequest("the request could not be decided"));
            };
            let ctx = sensitive(routed, mode, reasons, reading);
            // Boxed apart from the wait: a `hold`-mode client waits with
            // only the small `Waiting` (see docs/benchmarks.md, hold memory).
            match Box::pin(gate::sensitive(gw, ctx, parts, bytes)).await? {
                gate::Held::Answer(resp) => Ok(resp),
                gate::Held::Waiting(waiting) => waiting.outcome().await,
            }
        }
    }
}

/// The client's `X-Request-Id` when it is a sane token, else a fresh one:
/// it ties the gateway's logs and audit records to the upstream's.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(crate::ids::request_id)
}
