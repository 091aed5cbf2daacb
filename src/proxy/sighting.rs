//! Every request that carries a session is a sighting of it (SPEC §3), not
//! only those on routes with `when:`: otherwise a stolen session's first
//! sighting would be the thief's, from the thief's device.
//!
//! Cost on the pass-through path, per request with a session: one scan of
//! the `Cookie` header (no allocation unless the value is quoted or
//! percent-encoded), one HMAC-SHA-256 of the value, and one sharded-map
//! lookup that updates the last-seen time. A new session adds one SHA-256
//! (the device key) and one insert. Requests without a session, or with an
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
/// or the tracker is full.
pub(super) fn observe(
    gw: &Gateway,
    cert: Option<&[u8]>,
    headers: &HeaderMap,
    client_ip: IpAddr,
    now: SystemTime,
) -> Option<Sighting> {
    let value = session::session_value_ref(&gw.config().session, headers, cert).ok()??;
    let sid = gw.session_key.sid_bytes(&value);
    gw.sessions
        .observe(&sid, unix_secs(now), || device_key(user_agent(headers), client_ip))
}
