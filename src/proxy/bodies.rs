//! Request bodies the gateway itself reads (for a route's conditions,
//! display fields, `_method`, or to park them; or a call to its own
//! endpoints): buffered once, within a size limit and the budget for
//! buffered bodies, charged to the client.

use super::extract::buffer_charged;
use super::respond::Reject;
use super::Gateway;
use crate::body::Body;
use crate::config::Limits;
use crate::hold::budget::Caps;
use bytes::Bytes;
use std::net::IpAddr;

/// Buffers a body the gateway will forward, charged to `client`.
pub(super) async fn charged(gw: &Gateway, limits: &Limits, client: IpAddr, body: Body) -> Result<Bytes, Reject> {
    let caps = Caps {
        total: limits.max_buffered_bytes,
        per_client: limits.max_buffered_bytes_per_client,
    };
    buffer_charged(body, limits.max_body, gw.bodies.open(client, caps)).await
}

/// Buffers a body the gateway reads for itself (a proof, a sign-in, an
/// approval, an enrollment), charged to `client` like any other. Each is
/// small (`max`, at most 64 KiB) and has the whole-body deadline, but
/// thousands of connections with a hundred streams each could still hold
/// gigabytes of them half-sent; charged, they stop at the client's share.
pub(super) async fn own(gw: &Gateway, client: IpAddr, body: Body, max: u64) -> Result<Bytes, Reject> {
    let limits = &gw.config().limits;
    let caps = Caps {
        total: limits.max_buffered_bytes,
        per_client: limits.max_buffered_bytes_per_client,
    };
    buffer_charged(body, max, gw.bodies.open(client, caps)).await
}
