//! Reading a request body the gateway itself consumes (a proof, a
//! sign-in, a body a route's conditions read): whole, and within a limit.

use super::deadline::TimedOut;
use super::respond::Reject;
use crate::body::Body;
use crate::hold::budget::Charge;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// Reads a whole body, refusing more than `max` bytes (checked against the
/// declared length first, so an oversized upload is refused unread). The
/// bytes are charged before they are read (the declared length at once),
/// so a body the budget cannot take is refused with 429, unread or as soon
/// as it outgrows it, and never cut short. The bytes returned own the
/// charge, so it lasts as long as a copy of the body does (a parked one for
/// as long as its hold).
pub(super) async fn buffer_charged(body: Body, max: u64, mut charge: Charge) -> Result<Bytes, Reject> {
    let out = read(body, max, |total| {
        charge.cover(total).map_err(|e| {
            tracing::info!(reason = %e, bytes = total, "request body refused");
            Reject::TooManyHolds
        })
    })
    .await?;
    Ok(charge.seal(out))
}

/// The one read loop: `grow` is asked before the buffer may hold `total`
/// bytes, first with the declared length.
async fn read(mut body: Body, max: u64, mut grow: impl FnMut(u64) -> Result<(), Reject>) -> Result<BytesMut, Reject> {
    use http_body::Body as _;
    let declared = body.size_hint().lower();
    if declared > max {
        return Err(Reject::BodyTooLarge);
    }
    grow(declared)?;
    // `declared` is at most `max`, so the client cannot make this large.
    let mut out = BytesMut::with_capacity(declared as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is::<TimedOut>() {
                tracing::info!("request body refused: it did not arrive within limits.body_read_timeout");
                return Reject::BadRequest("the request body did not arrive in time");
            }
            tracing::debug!(error = %e, "client body read failed");
            Reject::BadRequest("the request body could not be read")
        })?;
        if let Ok(data) = frame.into_data() {
            let total = (out.len() + data.len()) as u64;
            if total > max {
                return Err(Reject::BodyTooLarge);
            }
            grow(total)?;
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
