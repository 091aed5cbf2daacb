//! Whether a request on a sensitive route calls for a step-up right now:
//! the route's `when:` conditions over the request, the session's history
//! and the time. Body conditions see the body as the route read it.

use super::facts::Sensitive;
use super::Gateway;
use crate::ids::Sid;
use crate::policy::body::Reading;
use crate::policy::conditions::{self, RequestFacts, SessionFacts, Verdict};
use crate::route::Route;
use http::request::Parts;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub enum Assessed {
    /// No condition fired: forward unheld.
    Pass,
    /// Step up; `reasons` are the conditions that fired (empty when the
    /// route has no `when:`).
    StepUp { reasons: Vec<String> },
}

pub fn assess(
    _gw: &Gateway,
    route: &Route,
    ctx: &Sensitive,
    parts: &Parts,
    sid: Option<&Sid>,
    body: Option<&Reading>,
    now: SystemTime,
) -> Assessed {
    if route.when.is_empty() {
        return Assessed::StepUp { reasons: Vec::new() };
    }
    let session = match (sid, ctx.sighting) {
        (Some(_), Some(seen)) => SessionFacts {
            first_seen: UNIX_EPOCH + Duration::from_secs(seen.first),
            device_changed: seen.device
                != conditions::device_key(super::sighting::user_agent(&parts.headers), ctx.client_ip),
        },
        // No session, or one the tracker could not record: whatever the
        // session conditions would say is unknown, so they fire (without a
        // session the request then meets `no_session`).
        _ => SessionFacts {
            first_seen: UNIX_EPOCH,
            device_changed: true,
        },
    };
    let facts = RequestFacts {
        client_ip: ctx.client_addr,
        headers: &parts.headers,
        body,
    };
    match conditions::evaluate(&route.when, &facts, &session, now) {
        Verdict::Pass => {
            tracing::debug!(route = %route.name, "no risk condition fired; forwarding unheld");
            Assessed::Pass
        }
        Verdict::StepUp { reasons } => Assessed::StepUp { reasons },
    }
}
