//! The one decision for one request, as a pure function: given what the
//! request says about itself, what the gateway knows of its session, the
//! config and the time, [`plan`] answers what happens to it. No I/O and no
//! clock: the handler gathers the facts and carries the plan out, and
//! `stepgate explain` prints the plan of the same function, so the two
//! cannot disagree.
//!
//! The body is the one fact that costs something to gather. The plan asks
//! for it ([`Plan::ReadBody`]) only when the decision depends on it (a form
//! `_method` that could pick a stricter route, conditions that read it, a
//! hold that binds it); the caller reads it within `limits.max_body` and
//! plans again.

use super::hygiene::{self, Target};
use super::respond::Reject;
use crate::config::Config;
use crate::config::SessionConfig;
use crate::policy::body::Reading;
use crate::policy::conditions::{self, RequestFacts, SessionFacts, Verdict};
use crate::policy::HoldMode;
use crate::route::methods::{effective_methods, form_kind, form_methods};
use crate::route::{MatchRequest, Route};
use crate::session;
use crate::store::Sighting;
use http::request::Parts;
use http::{HeaderMap, Method};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the request says about itself, as the gateway parsed it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub target: &'a Target,
    /// As received (cookies joined): routes match on what the client sent.
    pub headers: &'a HeaderMap,
    /// `None` until the plan asked for it.
    pub body: Option<&'a [u8]>,
    /// The client address for IP conditions (`None`: an unparsable hop).
    pub client_addr: Option<IpAddr>,
    /// The client address, or the peer's when a hop did not parse: what
    /// the device of a session is keyed on.
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers reach the
    /// upstream, and so the conditions.
    pub trusted_peer: bool,
    /// The client presented a certificate (`caller: workload`).
    pub workload: bool,
    /// A WebSocket handshake, which can only wait on its own connection.
    pub websocket: bool,
}

/// Which session the request carries, read as the gateway reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    None,
    One,
    /// Two different values: refused on sensitive routes (SPEC §3).
    Ambiguous,
}

impl Carried {
    pub fn of(cfg: &SessionConfig, headers: &HeaderMap, client_cert: Option<&[u8]>) -> Carried {
        match session::session_value_ref(cfg, headers, client_cert) {
            Ok(Some(_)) => Carried::One,
            Ok(None) => Carried::None,
            Err(_) => Carried::Ambiguous,
        }
    }
}

/// What the gateway knows of the session.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub carried: Carried,
    /// When and from which device it was first seen; `None` when it was
    /// never recorded, which the session conditions read as unknown (they
    /// fire).
    pub seen: Option<Sighting>,
}

/// The route that decided, and the method it was matched under when an
/// override (header, query or form `_method`) chose a stricter route than
/// the request line names.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Arc<Route>,
    pub read_as: Option<Method>,
}

#[derive(Debug)]
pub enum Plan {
    /// Refused before any step-up: ambiguous input (400), a body over the
    /// limit (413).
    Refuse(Reject),
    /// Under `stepup.prefix`: the gateway's own endpoint, never forwarded.
    Gateway,
    /// The decision depends on the body: read it and plan again.
    ReadBody,
    /// Forwarded without a step-up: no route governs (`None`), or none of
    /// the route's conditions fired.
    Forward(Option<Routed>),
    /// A `deny: true` route (403).
    Deny(Routed),
    /// A step-up is needed and the request carries no session (401).
    NeedSession(Routed),
    /// A `shadow` route that would have held: recorded, then forwarded.
    Shadow { routed: Routed, reasons: Vec<String> },
    /// Step up. `reasons` are the conditions that fired (empty without
    /// `when:`); `reading` is the body as the route reads it.
    Hold {
        routed: Routed,
        mode: HoldMode,
        reasons: Vec<String>,
        reading: Option<Reading>,
    },
}

impl Plan {
    /// The route that decided, if one did.
    pub fn route(&self) -> Option<&Arc<Route>> {
        self.routed().map(|r| &r.route)
    }

    pub fn routed(&self) -> Option<&Routed> {
        match self {
            Plan::Forward(Some(r)) | Plan::Deny(r) | Plan::NeedSession(r) => Some(r),
            Plan::Shadow { routed, .. } | Plan::Hold { routed, .. } => Some(routed),
            Plan::Refuse(_) | Plan::Gateway | Plan::ReadBody | Plan::Forward(None) => None,
        }
    }
}

/// The checks the gateway makes before it reads the path, in its order:
/// header names, `Connection`, one `Cookie`, one unambiguous target (SPEC §2).
pub fn front(parts: &mut Parts, cfg: &Config) -> Result<Target, Reject> {
    hygiene::check_header_names(&parts.headers)?;
    hygiene::check_connection(&parts.headers, cfg)?;
    hygiene::join_cookies(&mut parts.headers);
    hygiene::target(parts)
}

/// A WebSocket handshake, as the handler recognises one.
pub fn websocket_handshake(parts: &Parts) -> bool {
    super::upgrade::websocket_key(&parts.method, parts.version, &parts.headers).is_some()
}

/// Session conditions cannot be answered without a session on record: they
/// fire.
const UNKNOWN_SESSION: SessionFacts = SessionFacts {
    first_seen: SystemTime::UNIX_EPOCH,
    device_changed: true,
};

pub fn plan(cfg: &Config, req: &Request<'_>, session: &Session, now: SystemTime) -> Plan {
    if crate::route::gateway_owns(&cfg.stepup.prefix, &req.target.path) {
        return Plan::Gateway;
    }
    let body = || match req.body {
        None => Err(Plan::ReadBody),
        Some(b) if b.len() as u64 > cfg.limits.max_body => Err(Plan::Refuse(Reject::BodyTooLarge)),
        Some(b) => Ok(b),
    };

    // Route selection: on the method as sent and on every override it
    // carries; the stricter route wins (SPEC §2).
    let mut methods = effective_methods(req.method, req.headers, req.target.query.as_deref());
    let find = |methods: &[Method]| {
        cfg.routes.find(&MatchRequest {
            host: &req.target.host_name,
            methods,
            path: &req.target.path,
            query: req.target.query.as_deref(),
            headers: req.headers,
            workload: req.workload,
        })
    };
    let mut lookup = find(&methods);
    if let (true, Some(form)) = (lookup.method_miss, form_kind(req.headers)) {
        // Only when a form `_method` could select a stricter route.
        let bytes = match body() {
            Ok(b) => b,
            Err(plan) => return plan,
        };
        match form_methods(form, bytes) {
            Ok(read) => methods.extend(read),
            Err(e) => return Plan::Refuse(Reject::BadRequest(e.message())),
        }
        lookup = find(&methods);
    }
    let read_as = lookup.method.clone().filter(|m| m != req.method);
    let Some(route) = lookup.governing() else {
        return Plan::Forward(None);
    };
    let routed = Routed { route, read_as };
    let route = routed.route.clone();
    if route.deny {
        return Plan::Deny(routed);
    }

    // A WebSocket handshake waits on its own connection whatever the
    // route's mode: only that connection can carry the tunnel.
    let mode = match route.hold.mode {
        HoldMode::Shadow => HoldMode::Shadow,
        _ if req.websocket => HoldMode::Hold,
        m => m,
    };
    let shadow = mode == HoldMode::Shadow;
    let has_session = match session.carried {
        Carried::Ambiguous => return Plan::Refuse(Reject::BadRequest("the session is ambiguous")),
        Carried::One => true,
        Carried::None => false,
    };
    // A request that will need a session and has none is refused before
    // its body is read: an anonymous flood buffers nothing.
    let body_conditions = conditions::needs_body(&route.when);
    if !has_session && !shadow && body_conditions {
        return Plan::NeedSession(routed);
    }
    let mut reading = None;
    if body_conditions {
        match body().and_then(|b| read_body(&route, req.headers, b)) {
            Ok(r) => reading = r,
            Err(plan) => return plan,
        }
    }

    // Risk: a route with `when:` steps up only if a condition fires.
    let mut reasons = Vec::new();
    if !route.when.is_empty() {
        // Conditions see the headers the upstream would see, not what the
        // gateway strips.
        let mut headers = req.headers.clone();
        hygiene::strip_inbound(&mut headers, req.trusted_peer, cfg.identity.header.as_ref());
        hygiene::strip_gateway_cookies(&mut headers);
        let facts = RequestFacts {
            client_ip: req.client_addr,
            headers: &headers,
            body: reading.as_ref(),
        };
        let seen = match (has_session, session.seen) {
            (true, Some(seen)) => SessionFacts {
                first_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(seen.first),
                device_changed: seen.device != conditions::device_key(user_agent(&headers), req.client_ip),
            },
            _ => UNKNOWN_SESSION,
        };
        match conditions::evaluate(&route.when, &facts, &seen, now) {
            Verdict::Pass => return Plan::Forward(Some(routed)),
            Verdict::StepUp { reasons: fired } => reasons = fired,
        }
    }
    if shadow {
        return Plan::Shadow { routed, reasons };
    }
    if !has_session {
        return Plan::NeedSession(routed);
    }
    // A hold binds the exact bytes, so it needs the body whatever reads it.
    let bytes = match body() {
        Ok(b) => b,
        Err(plan) => return plan,
    };
    if reading.is_none() {
        match read_body(&route, req.headers, bytes) {
            Ok(r) => reading = r,
            Err(plan) => return plan,
        }
    }
    Plan::Hold {
        routed,
        mode,
        reasons,
        reading,
    }
}

pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The body as `route` reads it (`None`: the route reads none). A body the
/// upstream could read differently is refused (400).
fn read_body(route: &Route, headers: &HeaderMap, bytes: &[u8]) -> Result<Option<Reading>, Plan> {
    let Some(reader) = &route.body_reader else {
        return Ok(None);
    };
    Reading::read(reader, headers, bytes).map(Some).map_err(|e| {
        tracing::info!(route = %route.name, reason = %e, "request body refused");
        Plan::Refuse(Reject::BadRequest(e.message()))
    })
}

#[cfg(test)]
mod tests;
