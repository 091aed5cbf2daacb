//! A request the plan holds: what the handler gathered about it and what
//! the plan decided (route, mode, the conditions that fired, the body as
//! the route reads it). `gate` carries it out; it gathers nothing itself.

use super::hygiene::Target;
use crate::policy::body::Reading;
use crate::policy::HoldMode;
use crate::route::Route;
use http::HeaderValue;
use std::net::IpAddr;
use std::sync::Arc;

pub struct Sensitive {
    /// The config and what was built from it (upstream, token issuers,
    /// identity, OIDC) as the plan saw them: one request, one snapshot.
    pub live: Arc<super::Live>,
    pub route: Arc<Route>,
    /// The route's mode, or `hold` for a WebSocket handshake.
    pub mode: HoldMode,
    /// The conditions that fired (empty when the route has no `when:`).
    pub risk: Vec<String>,
    pub reading: Option<Reading>,
    pub target: Target,
    pub token: Option<HeaderValue>,
    pub client_ip: IpAddr,
    pub client_cert: Option<Arc<Vec<u8>>>,
    pub request_id: String,
    /// A WebSocket handshake: forwarded as one, and held on its own
    /// connection, the only one that can carry the tunnel.
    pub websocket: bool,
}
