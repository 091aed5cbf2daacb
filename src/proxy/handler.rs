//! The request path as one story:
//! normalize → strip → match → decide → (forward | hold → release → forward).

use super::respond::Reject;
use super::{api, bodies, gate, hygiene, upgrade, ConnInfo, Gateway};
use crate::body::{full, Body, BoxError};
use crate::route::methods::{effective_methods, form_kind, form_methods};
use crate::route::MatchRequest;
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
    let cfg = gw.config();
    let (mut parts, body) = req.into_parts();
    let mut body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();

    // 1. normalize: one canonical target, or 400.
    hygiene::check_header_names(&parts.headers)?;
    hygiene::check_connection(&parts.headers, &cfg)?;
    hygiene::join_cookies(&mut parts.headers);
    let target = hygiene::target(&parts)?;
    if api::owns(&cfg.stepup.prefix, &target.path) {
        *route = Cow::Borrowed("stepup-api");
        // Boxed, like the sensitive path below: the request future is
        // allocated for every request, and it is sized by its largest arm.
        return Box::pin(api::handle(gw, conn, parts, body, &target)).await;
    }

    // 2. read what the gateway consumes, then strip it.
    let trusted = hygiene::is_trusted(conn.peer.ip(), &cfg.trusted_proxies);
    let client_addr = hygiene::client_addr(conn.peer.ip(), &parts.headers, &cfg.trusted_proxies);
    let client_ip = client_addr.unwrap_or(conn.peer.ip());
    let token = parts.headers.get(&X_STEPUP_TOKEN).cloned();
    let request_id = request_id(&parts.headers);
    let cert = conn.client_cert.as_deref().map(|c| c.as_slice());
    let sighting = super::sighting::observe(gw, cert, &parts.headers, client_ip, gw.clock.now());

    // 3. match, on the method as sent and on every override it carries.
    let mut methods = effective_methods(&parts.method, &parts.headers, target.query.as_deref());
    let find = |methods: &[Method]| {
        cfg.routes.find(&MatchRequest {
            host: &target.host_name,
            methods,
            path: &target.path,
            query: target.query.as_deref(),
            headers: &parts.headers,
            workload: conn.client_cert.is_some(),
        })
    };
    let mut lookup = find(&methods);
    let form = form_kind(&parts.headers);
    let mut buffered = None;
    if let (true, Some(form)) = (lookup.method_miss, form) {
        // Only a body that may carry `_method` is read up front, and only
        // when a `_method` could select a stricter route.
        let bytes = bodies::charged(gw, &cfg.limits, client_ip, body).await?;
        let read = form_methods(form, &bytes).map_err(|e| Reject::BadRequest(e.message()))?;
        methods.extend(read);
        lookup = find(&methods);
        body = full(bytes.clone());
        buffered = Some(bytes);
    }

    hygiene::strip_inbound(&mut parts.headers, trusted, cfg.identity.header.as_ref());
    hygiene::strip_gateway_cookies(&mut parts.headers);
    hygiene::set_forwarded(&mut parts.headers, conn.peer.ip(), trusted, &target.host);
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        parts.headers.insert(X_REQUEST_ID.clone(), v);
    }

    // 4. decide.
    let governing = lookup.governing();
    if let Some(r) = &governing {
        *route = Cow::Owned(r.name.clone());
    }
    match governing {
        None => gate::pass_through(gw, parts, body, &target, websocket).await,
        Some(route) if route.deny => {
            tracing::info!(route = %route.name, path = %target.path.as_str(), "denied by route");
            Err(Reject::Forbidden)
        }
        Some(route) => {
            let ctx = super::facts::Sensitive {
                route,
                target,
                token,
                client_ip,
                client_addr,
                client_cert: conn.client_cert.clone(),
                request_id,
                websocket,
                sighting,
                buffered,
            };
            Box::pin(gate::sensitive(gw, ctx, parts, body)).await
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
