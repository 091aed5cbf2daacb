//! Who may see a hold: its own session, recognised by the session value
//! the request carries.

use crate::hold::{HoldMeta, HoldState};
use crate::ids::{HoldId, Sid};
use crate::proxy::respond::Reject;
use crate::proxy::{ConnInfo, Gateway};
use crate::session;
use http::request::Parts;
use std::sync::Arc;

pub(in crate::proxy) fn caller_sid(gw: &Gateway, conn: &ConnInfo, parts: &Parts) -> Option<Sid> {
    let cert = conn.client_cert.as_deref().map(|c| c.as_slice());
    match session::session_value(&gw.config().session, &parts.headers, cert) {
        Ok(Some(v)) => Some(gw.session_key.sid(&v)),
        _ => None,
    }
}

/// The hold a path names. `None` is a path segment that is no hold id at
/// all: it names no hold, and is answered exactly like an unknown one.
pub(in crate::proxy) async fn lookup(gw: &Gateway, id: Option<&HoldId>) -> Result<(Arc<HoldMeta>, HoldState), Reject> {
    let id = id.ok_or(Reject::UnknownHold)?;
    crate::proxy::fleet::get(gw, id).await?.ok_or(Reject::UnknownHold)
}

/// Looks a hold up for its own session. Anyone else learns nothing, not
/// even that the hold exists.
pub(in crate::proxy) async fn own_hold(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    id: Option<&HoldId>,
) -> Result<(Arc<HoldMeta>, HoldState), Reject> {
    let (meta, state) = lookup(gw, id).await?;
    match caller_sid(gw, conn, parts) {
        Some(sid) if sid == meta.sid => Ok((meta, state)),
        _ => Err(Reject::UnknownHold),
    }
}
