//! Request bodies the gateway itself reads: buffered within their limits
//! and read once, by their declared type, for a route's conditions,
//! display fields and `_method` alike.

use super::extract::buffer_charged;
use super::respond::Reject;
use super::Gateway;
use crate::body::Body;
use crate::config::Limits;
use crate::hold::budget::Caps;
use crate::policy::body::Reading;
use crate::route::Route;
use bytes::Bytes;
use http::HeaderMap;
use std::net::IpAddr;

/// The body as `route` reads it, or `None` when the route reads no body.
/// A body the upstream could read differently is refused (400).
pub(super) fn read(route: &Route, headers: &HeaderMap, bytes: &[u8]) -> Result<Option<Reading>, Reject> {
    let Some(reader) = &route.body_reader else {
        return Ok(None);
    };
    Reading::read(reader, headers, bytes).map(Some).map_err(|e| {
        tracing::info!(route = %route.name, reason = %e, "request body refused");
        Reject::BadRequest(e.message())
    })
}

/// Buffers a whole body for reading or parking, within `max_body` and the
/// budget for buffered bodies (charged to the client). A body the handler
/// already read (for `_method`) is already charged, and is taken as it is.
pub(super) async fn collect(
    gw: &Gateway,
    limits: &Limits,
    client: IpAddr,
    buffered: &mut Option<Bytes>,
    body: Body,
) -> Result<Bytes, Reject> {
    if let Some(bytes) = buffered.take() {
        return Ok(bytes);
    }
    charged(gw, limits, client, body).await
}

/// Buffers a body the gateway will forward, charged to `client`.
pub(super) async fn charged(gw: &Gateway, limits: &Limits, client: IpAddr, body: Body) -> Result<Bytes, Reject> {
    let caps = Caps {
        total: limits.max_buffered_bytes,
        per_client: limits.max_buffered_bytes_per_client,
    };
    buffer_charged(body, limits.max_body, gw.bodies.open(client, caps)).await
}
