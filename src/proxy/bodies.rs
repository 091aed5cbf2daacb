//! Request bodies the gateway itself reads: buffered within their limits
//! and read once, by their declared type, for a route's conditions,
//! display fields and `_method` alike.

use super::extract::buffer;
use super::respond::Reject;
use crate::policy::body::Reading;
use crate::route::Route;
use bytes::Bytes;
use http::HeaderMap;

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

/// Buffers a whole body for reading or parking, within `max_body`.
pub(super) async fn collect(body: crate::body::Body, max: u64) -> Result<Bytes, Reject> {
    buffer(body, max).await
}
