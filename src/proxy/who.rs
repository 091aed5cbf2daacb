//! Who is behind a sensitive request (SPEC §3 "Identity"), and who acts on
//! a session. With `identity:` configured, the identity cannot be left out
//! or swapped: a request whose identity source yields nothing is refused
//! (401 `no_identity`), one that yields two different values is refused
//! (400), and a session keeps the identity it was first seen with (403
//! `identity_mismatch`). Without one, the first person who steps up on a
//! session becomes its actor, and nobody else may step up on it.

use super::respond::Reject;
use super::{Gateway, Live};
use crate::audit;
use crate::audit::Record;
use crate::clock::unix_secs;
use crate::hold::HoldMeta;
use crate::ids::Sid;
use crate::policy::Requirements;
use crate::session;
use crate::store::Bind;
use http::HeaderMap;
use std::time::SystemTime;

/// The request's identity: `Ok(None)` when no identity source applies to
/// this caller. A client certificate names a workload only where
/// `identity.mtls` is set; a caller without one is a person, whose
/// identity comes from `identity.jwt` or `identity.header` when configured.
/// The identity header reaches here only from a trusted proxy (hygiene
/// strips it from everyone else).
pub(super) fn identity(
    gw: &Gateway,
    live: &Live,
    cert: Option<&[u8]>,
    headers: &HeaderMap,
) -> Result<Option<String>, Reject> {
    let id = &live.config.identity;
    let workload = id.mtls && cert.is_some();
    if !workload && id.jwt.is_none() && id.header.is_none() {
        return Ok(None);
    }
    let mut found: Option<String> = None;
    let mut add = |value: String| -> Result<(), Reject> {
        match &found {
            Some(f) if *f != value => Err(Reject::BadRequest("the request names two identities")),
            Some(_) => Ok(()),
            None => {
                found = Some(value);
                Ok(())
            }
        }
    };
    if let (true, Some(der)) = (id.mtls, cert) {
        match crate::identity::cert_identity(der, id.cert_cn) {
            Ok(name) => add(name)?,
            Err(e) => tracing::info!(error = %e, "client certificate names no identity"),
        }
    }
    if let Some(jwt) = live.identity_jwt.as_ref() {
        let cookie = id.jwt.as_ref().and_then(|j| j.cookie.as_deref());
        match crate::identity::token_from_request(headers, cookie) {
            Err(_) => return Err(Reject::BadRequest("the identity token is ambiguous")),
            Ok(None) => {}
            Ok(Some(token)) => match jwt.verify(&token, gw.clock.now()) {
                Ok(sub) => add(sub)?,
                Err(e) => tracing::info!(error = %e, "identity JWT not accepted"),
            },
        }
    }
    if let Some(h) = &id.header {
        let mut values = headers.get_all(h).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(Reject::BadRequest("more than one identity header"));
        }
        match first.map(|v| v.to_str()) {
            None => {}
            Some(Ok("")) => {}
            Some(Ok(v)) => add(v.to_owned())?,
            Some(Err(_)) => return Err(Reject::BadRequest("unreadable identity header")),
        }
    }
    found.map(Some).ok_or(Reject::NoIdentity)
}

/// Binds `who` to the session `sid` unless someone else is already bound
/// to it; a mismatch is audited and refused with 403 `identity_mismatch`.
/// `what` says which binding this is, for the trail. `Ok(true)` when this
/// call made the binding (see [`unbind`]).
pub(super) async fn bind(
    gw: &Gateway,
    sid: &Sid,
    who: &str,
    what: &'static str,
    meta: Option<&HoldMeta>,
    route: (&str, &str),
    now: SystemTime,
) -> Result<bool, Reject> {
    let Some(key) = session::sid_key(sid) else {
        return Err(Reject::IdentityMismatch);
    };
    let outcome = gw
        .state
        .bind_actor(&key, who, unix_secs(now))
        .await
        .map_err(|e| unavailable(sid, &e))?;
    match outcome {
        Bind::Same => Ok(false),
        Bind::New => Ok(true),
        Bind::Full => {
            tracing::warn!(%sid, "session tracker full; nobody can be bound to a new session");
            Err(Reject::TooManyHolds)
        }
        Bind::Other(first) => {
            tracing::warn!(%sid, %who, bound = %first, what, "identity mismatch on a session");
            let record = match meta {
                Some(m) => super::hold_record(audit::Event::IdentityMismatch, m),
                None => Record {
                    route: Some(route.0.to_owned()),
                    action: Some(route.1.to_owned()),
                    sid: Some(sid.as_str().to_owned()),
                    ..Record::new(audit::Event::IdentityMismatch)
                },
            };
            gw.audit(record.actor(who.to_owned()).reason(what).with("bound", first))
                .await?;
            Err(Reject::IdentityMismatch)
        }
    }
}

/// The session's actor lives in the state store: one that cannot be asked
/// decides nothing (503).
fn unavailable(sid: &Sid, e: &crate::store::StateError) -> Reject {
    tracing::error!(%sid, error = %e, "cannot ask the state store who acts on a session");
    Reject::StateUnavailable
}

/// Undoes a binding this request made when its step-up did not count after
/// all: a proof the hold refused binds nobody. A store that cannot be asked
/// keeps the binding (the person did prove who they are; nobody else
/// gains anything from it).
pub(super) async fn unbind(gw: &Gateway, sid: &Sid, who: &str) {
    if let Some(key) = session::sid_key(sid) {
        if let Err(e) = gw.state.unbind_actor(&key, who).await {
            tracing::warn!(%sid, error = %e, "could not undo a session binding; it stays");
        }
    }
}

/// The person bound to the session `sid`, if any: its identity, or the
/// first person who stepped up on it. 503 when the store cannot be asked.
pub(super) async fn bound(gw: &Gateway, sid: &Sid) -> Result<Option<String>, Reject> {
    let Some(key) = session::sid_key(sid) else {
        return Ok(None);
    };
    gw.state.actor(&key).await.map_err(|e| unavailable(sid, &e))
}

/// Who asked for a hold, where the gateway knows: the session's identity,
/// whoever proved on the hold, or the person bound to the session by an
/// earlier step-up. `None` when nobody on the session was ever named, or
/// (for display only) the store cannot be asked.
pub(super) async fn requester(gw: &Gateway, meta: &HoldMeta, state: &crate::hold::HoldState) -> Option<String> {
    if let Some(known) = meta
        .identity
        .clone()
        .or_else(|| state.proof.as_ref().map(|p| p.sub.clone()))
    {
        return Some(known);
    }
    bound(gw, &meta.sid).await.ok().flatten()
}

/// The requester of a hold that only approvers decide (`require.approvals`
/// and no `require.methods`). An approval may never come from the
/// requester (SPEC §5), yet on such a route the requester never proves
/// anything: unless the session names them, an approver could file a
/// request from an opaque session and approve it from another as if it
/// were someone else's. So such a hold is refused (401 `no_identity`)
/// until the session has an identity or a person bound to it by an earlier
/// step-up, and that person is pinned on the hold as its requester. On a
/// route with proof methods the requester names themselves by stepping
/// up, and the hold's state machine keeps that person and the approvers
/// apart in either order.
pub(super) async fn requester_for(
    gw: &Gateway,
    require: &Requirements,
    identity: Option<String>,
    sid: &Sid,
) -> Result<Option<String>, Reject> {
    if require.approvals == 0 || !require.methods.is_empty() || identity.is_some() {
        return Ok(identity);
    }
    match bound(gw, sid).await? {
        Some(actor) => Ok(Some(actor)),
        None => {
            tracing::info!(%sid, "approval-only hold refused: nobody on the session is known");
            Err(Reject::UnknownRequester)
        }
    }
}
