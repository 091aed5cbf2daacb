//! Request bodies the gateway itself reads (for a route's conditions,
//! display fields, `_method`, or to park them): buffered once, within
//! `max_body` and the budget for buffered bodies, charged to the client.

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
