//! Passkey enrollment through a one-time link made by
//! `stepgate enroll webauthn USER`: `POST enroll/options` and
//! `POST enroll/finish`, both carrying the link's token. The store keeps
//! only the token's SHA-256; a link works until it expires or registers
//! one passkey. Bad, used or expired tokens get 403 `forbidden`. The token
//! is never logged.

use super::bodies;
use super::passkey::{self, Registering};
use super::respond::{self, Reject};
use super::{proofs, ConnInfo, Gateway};
use crate::audit;
use crate::audit::Record;
use crate::body::Body;
use crate::clock::unix_secs;
use crate::stepup::webauthn::{self, RegisterPublicKeyCredential, Uuid};
use crate::users::{EnrollToken, PasskeyRecord};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

/// A registration response with a packed attestation and its certificate
/// chain stays well under this.
const MAX_ENROLL_BODY: u64 = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
struct EnrollBody {
    #[serde(default)]
    token: String,
    #[serde(default)]
    credential: Option<serde_json::Value>,
    #[serde(default)]
    label: Option<String>,
}

async fn read(gw: &Gateway, conn: &ConnInfo, parts: &Parts, body: Body) -> Result<EnrollBody, Reject> {
    let client = proofs::client_addr(gw, conn, parts);
    let bytes = bodies::own(gw, client, body, MAX_ENROLL_BODY).await?;
    if !super::display::is_form(&parts.headers) {
        return serde_json::from_slice(&bytes).map_err(|_| Reject::BadRequest("malformed enrollment request"));
    }
    let mut b = EnrollBody::default();
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "token" => b.token = v.into_owned(),
            "credential" => b.credential = serde_json::from_str(&v).ok(),
            "label" => b.label = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(b)
}

/// `POST enroll/options {"token"}` → `{"user", "publicKey": {...}}`.
pub(super) async fn options(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>, Reject> {
    let rp = passkey::relying_party(gw).ok_or(Reject::NotFound)?;
    let req = read(gw, conn, &parts, body).await?;
    let now = gw.clock.now();
    let ticket = passkey::enrollment(gw, &req.token, now).ok_or(Reject::Forbidden)?;
    let users = gw.users.snapshot().map_err(|e| {
        tracing::error!(error = %e, "user store unreadable");
        Reject::Forbidden
    })?;
    let record = users.users.get(&ticket.user);
    let user_id = record.and_then(|r| r.webauthn_user_id).unwrap_or_else(Uuid::new_v4);
    let existing = users
        .passkeys(&ticket.user)
        .iter()
        .map(|p| p.cred_id().clone())
        .collect();
    let (mut options, challenge, state) = rp.start_registration(user_id, &ticket.user, existing).map_err(|e| {
        tracing::error!(error = %e, "passkey creation options failed");
        Reject::BadRequest("passkey options could not be made")
    })?;
    let registering = Registering {
        user: ticket.user.clone(),
        user_id,
        state,
    };
    let purpose = passkey::enrollment_purpose(&EnrollToken::digest(req.token.trim()));
    // One link, one person: its holder is the only owner there is.
    passkey::keep(gw, &challenge, &purpose, "enrollment", &registering, now).await?;
    options["user"] = ticket.user.into();
    Ok(respond::json(StatusCode::OK, &options))
}

enum Refused {
    LinkGone,
    Taken,
}

/// `POST enroll/finish {"token", "credential", "label"}` → `{"status":"enrolled","user"}`.
pub(super) async fn finish(
    gw: &Arc<Gateway>,
    conn: &ConnInfo,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>, Reject> {
    let rp = passkey::relying_party(gw).ok_or(Reject::NotFound)?;
    let req = read(gw, conn, &parts, body).await?;
    let now = gw.clock.now();
    let at = unix_secs(now);
    let ticket = passkey::enrollment(gw, &req.token, now).ok_or(Reject::Forbidden)?;
    let digest = EnrollToken::digest(req.token.trim());
    let credential: RegisterPublicKeyCredential = req
        .credential
        .and_then(|c| serde_json::from_value(c).ok())
        .ok_or(Reject::BadRequest("malformed enrollment request: credential"))?;
    let kept = match webauthn::signed_challenge(&credential.response.client_data_json) {
        Some(c) => passkey::take_kept::<Registering>(gw, &c, &passkey::enrollment_purpose(&digest), now).await?,
        None => None,
    };
    let pending = kept.filter(|p| p.user == ticket.user).ok_or(Reject::BadRequest(
        "no registration is in progress for this link; start again",
    ))?;
    let passkey = rp.finish_registration(&credential, &pending.state).map_err(|e| {
        tracing::info!(user = %ticket.user, error = %e, "passkey registration refused");
        Reject::BadRequest("the passkey could not be registered")
    })?;
    let label: String = req
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("passkey")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let credential_id = URL_SAFE_NO_PAD.encode(passkey.cred_id());
    // The link is spent in the same write that stores the passkey, and only
    // if it is still the user's valid link at that moment.
    let stored = gw
        .users
        .try_update(|f| {
            if f.passkey_owner(passkey.cred_id()).is_some() {
                return Err(Refused::Taken);
            }
            let record = f.users.get_mut(&ticket.user).ok_or(Refused::LinkGone)?;
            if !record.webauthn_enroll.as_ref().is_some_and(|t| t.admits(&digest, at)) {
                return Err(Refused::LinkGone);
            }
            record.webauthn_enroll = None;
            record.webauthn_user_id.get_or_insert(pending.user_id);
            record.webauthn.push(PasskeyRecord {
                label: label.clone(),
                created: at,
                last_used: 0,
                passkey,
            });
            Ok(())
        })
        .map_err(|e| {
            tracing::error!(error = %e, "user store write failed");
            Reject::BadRequest("the passkey could not be stored")
        })?;
    match stored {
        Ok(()) => {}
        Err(Refused::LinkGone) => return Err(Reject::Forbidden),
        Err(Refused::Taken) => return Err(Reject::BadRequest("this passkey is already registered")),
    }
    tracing::info!(user = %ticket.user, %label, credential = %credential_id, "passkey enrolled");
    gw.audit(
        Record::new(audit::Event::WebauthnEnrolled)
            .actor(ticket.user.clone())
            .with("label", label)
            .with("credential", credential_id),
    )
    .await?;
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({"status": "enrolled", "user": ticket.user}),
    ))
}
