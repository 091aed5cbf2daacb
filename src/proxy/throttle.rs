//! Rates on the endpoints anyone can call before proving anything: passkey
//! options (a hold's, an approver's decision's, the approver sign-in's) and
//! the approver sign-in itself. Each request costs a token from its
//! client address's bucket (IPv6 by its /64, as the hold quotas count) and,
//! where there is one, from its session's. A flood therefore slows down
//! the sender only: another address, and the real user at their own
//! address, keep their full rate. An empty bucket answers 429
//! `too_many_holds` with `Retry-After`.
//!
//! The defaults (`limits.ceremony_rate_per_client`, `_per_session`) are far
//! above what a person needs (a step-up takes one set of options, a sign-in
//! one or two tries), and low enough that one address cannot fill the table
//! of challenges in flight (the state store's ceremonies) and push out other
//! people's. Like the hold quotas they are read once, at start.

use super::respond::Reject;
use super::Gateway;
use crate::clock::unix_millis;
use crate::hold::engine::client_key;
use crate::ids::Sid;
use crate::store::Rate;
use std::net::IpAddr;

/// The rates, read once at start; the buckets are in the state store, so
/// on Redis every instance takes from the same ones.
#[derive(Debug)]
pub(crate) struct Throttle {
    clients: Rate,
    sessions: Rate,
}

impl Throttle {
    /// A client address may make `limits.ceremony_rate_per_client` requests
    /// at once and per minute after; a session `ceremony_rate_per_session`.
    pub(crate) fn new(limits: &crate::config::Limits) -> Self {
        let rate = |n: u32| Rate {
            burst: n,
            per_minute: n,
        };
        Throttle {
            clients: rate(limits.ceremony_rate_per_client),
            sessions: rate(limits.ceremony_rate_per_session),
        }
    }
}

fn refused(gw: &Gateway, what: &'static str, by: &'static str, wait: u64) -> Reject {
    gw.metrics
        .throttled
        .get_or_create(&crate::metrics::ThrottleLabels { by: by.into() })
        .inc();
    tracing::debug!(what, by, wait, "request over its rate");
    Reject::Throttled { retry_after: wait }
}

/// Whom a request is counted against (and a challenge it asked for is
/// owned by): its client address, IPv6 by its /64.
pub(super) fn owner(client: IpAddr) -> String {
    client_key(client).to_string()
}

/// Takes one request from a bucket; a store that cannot be asked lets
/// nothing through (503).
async fn take(gw: &Gateway, key: &str, rate: Rate, what: &'static str, by: &'static str) -> Result<(), Reject> {
    let taken = gw
        .state
        .take_rate(key, rate, unix_millis(gw.clock.now()))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot take from a rate bucket; failing closed");
            Reject::StateUnavailable
        })?;
    taken.map_err(|wait| refused(gw, what, by, wait))
}

/// One `what` request from `client`.
pub(super) async fn client(gw: &Gateway, client: IpAddr, what: &'static str) -> Result<(), Reject> {
    let key = format!("ceremony-client\u{0}{}", owner(client));
    take(gw, &key, gw.throttle.clients, what, "client").await
}

/// One `what` request on session `sid`.
pub(super) async fn session(gw: &Gateway, sid: &Sid, what: &'static str) -> Result<(), Reject> {
    let key = format!("ceremony-session\u{0}{}", sid.as_str());
    take(gw, &key, gw.throttle.sessions, what, "session").await
}
