//! What the handler gathered about a request on a sensitive route, once,
//! before anything decides on it: the route, the canonical target, the
//! client and its session sighting. `gate` and `risk` read these facts;
//! neither gathers its own.

use super::hygiene::Target;
use crate::route::Route;
use http::HeaderValue;
use std::net::IpAddr;
use std::sync::Arc;

pub struct Sensitive {
    pub route: Arc<Route>,
    pub target: Target,
    pub token: Option<HeaderValue>,
    pub client_ip: IpAddr,
    /// The client address for IP conditions; `None` when a forwarding hop
    /// did not parse (unknown: outside every list).
    pub client_addr: Option<IpAddr>,
    pub client_cert: Option<Arc<Vec<u8>>>,
    pub request_id: String,
    /// A WebSocket handshake: forwarded as one, and held on its own
    /// connection, the only one that can carry the tunnel.
    pub websocket: bool,
    /// This request's sighting of its session (`None`: no session, or not
    /// recorded), for the session conditions.
    pub sighting: Option<crate::store::Sighting>,
    /// The body, when the handler already read it (a form that might carry
    /// `_method`): charged once, and the same bytes as the body passed on.
    pub buffered: Option<bytes::Bytes>,
}
