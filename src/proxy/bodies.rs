//! Request bodies the gateway itself reads: buffered within their limits
//! and read once, by their declared type, for a route's conditions,
//! display fields and `_method` alike.

use super::respond::Reject;
use crate::body::Body;
use crate::policy::body::Reading;
use crate::route::Route;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;

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

/// Reads a whole body, refusing more than `max` bytes (checked against the
/// declared length first, so an oversized upload is refused unread).
pub(super) async fn buffer(mut body: Body, max: u64) -> Result<Bytes, Reject> {
    use http_body::Body as _;
    if body.size_hint().lower() > max {
        return Err(Reject::BodyTooLarge);
    }
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = %e, "client body read failed");
            Reject::BadRequest("the request body could not be read")
        })?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > max {
                return Err(Reject::BodyTooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}
