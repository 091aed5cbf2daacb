//! `GET holds/{id}`: where a hold stands, for its requester or for an
//! approver who may decide it.

use super::access::{lookup, own_hold};
use super::outcome::{closed, status_json};
use crate::body::Body;
use crate::ids::HoldId;
use crate::proxy::respond::{self, Reject};
use crate::proxy::{approvals, browser, page, ConnInfo, Gateway};
use http::request::Parts;
use http::{Response, StatusCode};

/// `GET holds/{id}`: the requester's own hold (its step-up page for a
/// browser), else an approver's view of a hold they may decide.
pub(super) async fn status(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    id: Option<&HoldId>,
) -> Result<Response<Body>, Reject> {
    let now = gw.clock.now();
    let html = page::wants_html(&parts.headers);
    // The requester first: in one browser, a person who is also signed in
    // as an approver still sees their own step-up page.
    let own = own_hold(gw, conn, parts, id).await;
    if let Err(Reject::StateUnavailable) = own {
        // Not knowing is no answer: say so rather than "no such hold".
        return Err(Reject::StateUnavailable);
    }
    if let Ok((meta, state)) = own {
        if html {
            if let Err(reject) = closed(state.phase) {
                return Ok(page::stepup::closed(&reject));
            }
            return Ok(browser::step_up_page(gw, &meta, &state, None, None, StatusCode::OK));
        }
        return Ok(respond::json(StatusCode::OK, &status_json(&meta, &state, now)));
    }
    let approver = approvals::approver(gw, parts).ok_or(Reject::UnknownHold)?;
    let (meta, state) = lookup(gw, id).await?;
    if !state.requirements.wants_approval_from(&approver.groups) {
        return Err(Reject::UnknownHold);
    }
    if html {
        return Ok(approvals::review_page(gw, &approver, &meta, &state, None, StatusCode::OK).await);
    }
    let mut v = status_json(&meta, &state, now);
    if let (Some(o), serde_json::Value::Object(extra)) = (v.as_object_mut(), approvals::item(&meta, now)) {
        o.extend(extra);
    }
    Ok(respond::json(StatusCode::OK, &v))
}
