//! Every request that carries a session is a sighting of it (SPEC §3), not
//! only those on routes with `when:`: otherwise a stolen session's first
//! sighting would be the thief's, from the thief's device.
//!
//! Cost on the pass-through path, per request with a session: one scan of
//! the `Cookie` header (no allocation unless the value is quoted or
//! percent-encoded), one HMAC-SHA-256 of the value, and one state-store
//! call. In memory that is one sharded-map lookup that updates the
//! last-seen time; a new session adds one SHA-256 (the device key) and one
//! insert. On Redis a session this instance read in the last five minutes
//! is answered from its copy; otherwise one round trip (a Lua script) reads
//! or records the first sighting and renews the session's TTL. A Redis that
//! does not answer is not asked at all: the request goes on with the
//! session's facts unknown. Requests without a session, or with an
//! ambiguous one, cost only the header scan and record nothing.

use super::plan::user_agent;
use super::Gateway;
use crate::clock::unix_secs;
use crate::policy::conditions::device_key;
use crate::session;
use crate::store::Sighting;
use http::HeaderMap;
use std::net::IpAddr;
use std::time::SystemTime;

/// Records the session this request carries; `None` when it carries none,
/// or the store cannot record it.
pub(super) async fn observe(
    gw: &Gateway,
    cert: Option<&[u8]>,
    headers: &HeaderMap,
    client_ip: IpAddr,
    now: SystemTime,
) -> Option<Sighting> {
    let value = session::session_value_ref(&gw.config().session, headers, cert).ok()??;
    let sid = gw.session_key.sid_bytes(&value);
    let device = || device_key(user_agent(headers), client_ip);
    match gw.state.sight(&sid, unix_secs(now), &device).await {
        Ok(seen) => seen,
        Err(e) => {
            tracing::warn!(error = %e, "session sighting not recorded; its facts are unknown");
            None
        }
    }
}
