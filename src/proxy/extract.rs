//! Reading a request body the gateway itself consumes (a proof, a
//! sign-in, a body a route's conditions read): whole, and within a limit.

use super::respond::Reject;
use crate::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;

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
