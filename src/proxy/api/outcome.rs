//! What an applied hold event means to the caller: a release under way,
//! 202 with the hold's status while it still waits, or the refusal its
//! phase stands for.

use crate::body::Body;
use crate::hold::engine::Applied;
use crate::hold::{HoldMeta, HoldState, Phase, Transition};
use crate::proxy::respond::{self, Reject};
use crate::proxy::{effects, release, Gateway, Written};
use http::{Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Turns an applied event into the caller's response. A release starts
/// here, synchronously, before the returned future is first polled: from
/// the state change on, nothing the caller does can stop it. `ahead` is the
/// already queued record of the step that led here; a hold that ended
/// gets its closing record here too, in the same step.
pub(in crate::proxy) fn settle(
    gw: &Arc<Gateway>,
    applied: Applied,
    now: SystemTime,
    ahead: Option<Written>,
) -> impl Future<Output = Result<Response<Body>, Reject>> + Send + 'static {
    let meta = applied.meta.clone();
    effects::applied(gw, &meta, &applied.transition, now);
    let next = match applied.transition {
        Transition::Release => Ok(release::start(gw, applied, ahead)),
        _ => Err((applied, ahead)),
    };
    async move {
        let (applied, ahead) = match next {
            Ok(releasing) => return releasing.answer().await,
            Err(rest) => rest,
        };
        if let Some(ahead) = ahead {
            ahead.await?;
        }
        match applied.transition {
            Transition::Progress => Ok(respond::json(
                StatusCode::ACCEPTED,
                &status_json(&applied.meta, &applied.state, now),
            )),
            Transition::Rejected { attempts_left } => Err(Reject::InvalidProof { attempts_left }),
            Transition::Denied => Err(Reject::StepUpDenied),
            Transition::Expired => Err(Reject::HoldExpired),
            Transition::Release => Err(Reject::AlreadyReleased),
        }
    }
}

pub(in crate::proxy) fn closed(phase: Phase) -> Result<(), Reject> {
    match phase {
        Phase::Released => Err(Reject::AlreadyReleased),
        Phase::Denied => Err(Reject::StepUpDenied),
        Phase::Expired => Err(Reject::HoldExpired),
        Phase::Pending | Phase::Satisfied => Ok(()),
    }
}

/// The hold as its status endpoint and a 202 report it.
pub(in crate::proxy) fn status_json(meta: &HoldMeta, state: &HoldState, now: SystemTime) -> serde_json::Value {
    let phase = if state.phase.is_open() && now > state.deadline {
        Phase::Expired
    } else {
        state.phase
    };
    serde_json::json!({
        "hold_id": meta.id.as_str(),
        "state": phase.as_str(),
        "met": state.met(),
        "missing": state.missing(),
        "expires_in": state.deadline.duration_since(now).unwrap_or(Duration::ZERO).as_secs(),
    })
}
