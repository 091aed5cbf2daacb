//! Whether a request on a sensitive route calls for a step-up right now:
//! the route's `when:` conditions over the request, the session's history
//! and the time. Only routes with body predicates read the body first.

use super::gate::Sensitive;
use super::handler::buffer;
use super::respond::Reject;
use super::Gateway;
use crate::body::{full, Body};
use crate::clock::unix_secs;
use crate::ids::Sid;
use crate::policy::conditions::{self, EvalError, RequestFacts, SessionFacts, Verdict};
use crate::route::Route;
use http::header;
use http::request::Parts;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub enum Assessed {
    /// No condition fired: forward unheld.
    Pass(Body),
    /// Step up; `reasons` are the conditions that fired (empty when the
    /// route has no `when:`).
    StepUp { body: Body, reasons: Vec<String> },
}

pub async fn assess(
    gw: &Gateway,
    route: &Route,
    ctx: &Sensitive,
    parts: &Parts,
    sid: Option<&Sid>,
    body: Body,
    now: SystemTime,
) -> Result<Assessed, Reject> {
    if route.when.is_empty() {
        return Ok(Assessed::StepUp {
            body,
            reasons: Vec::new(),
        });
    }
    let (body, bytes) = if conditions::needs_body(&route.when) {
        let b = buffer(body, gw.config().limits.max_body).await?;
        (full(b.clone()), Some(b))
    } else {
        (body, None)
    };
    let session = match sid {
        Some(sid) => {
            let ua = parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let fingerprint = conditions::device_fingerprint(ua, ctx.client_ip);
            let (first, changed) = gw.sessions.observe(sid.as_str(), &fingerprint, unix_secs(now));
            SessionFacts {
                first_seen: UNIX_EPOCH + Duration::from_secs(first),
                device_changed: changed,
            }
        }
        // No session: whatever the session conditions would say is unknown,
        // so they fire (the request then meets `no_session`).
        None => SessionFacts {
            first_seen: UNIX_EPOCH,
            device_changed: true,
        },
    };
    let facts = RequestFacts {
        client_ip: ctx.client_ip,
        headers: &parts.headers,
        body: bytes.as_deref(),
        content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
    };
    match conditions::evaluate(&route.when, &facts, &session, now) {
        Ok(Verdict::Pass) => {
            tracing::debug!(route = %route.name, "no risk condition fired; forwarding unheld");
            Ok(Assessed::Pass(body))
        }
        Ok(Verdict::StepUp { reasons }) => Ok(Assessed::StepUp { body, reasons }),
        Err(EvalError::InvalidJson) => Err(Reject::BadRequest("the request body is not valid JSON")),
    }
}
