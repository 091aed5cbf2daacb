//! Passkey ceremonies as the gateway runs them: the challenges in flight
//! (kept in the state store, never in the browser, so that with Redis any
//! instance can finish what another started), the user store, and the relying party
//! of the live config. Every endpoint that takes a WebAuthn proof comes
//! through [`start`] and [`finish`]; what a proof is *for* is its
//! [`ChallengeKey`], so a challenge issued for one purpose never verifies
//! another.

use super::proof_error::ProofError;
use super::respond::Reject;
use super::Gateway;
use crate::clock::unix_secs;
use crate::ids::HoldId;
use crate::stepup::webauthn::{self, Nonce, PasskeyRegistration, PublicKeyCredential, RelyingParty, Uuid};
use crate::store::Ceremony;
use crate::users::EnrollToken;
use std::sync::Arc;
use std::time::SystemTime;

/// What a challenge was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChallengeKey {
    /// The requester's own proof for a hold.
    Requester(HoldId),
    /// An approver's decision on a hold.
    ApproverDecision { hold: HoldId, approver: String },
    /// An approver signing in on the approval page.
    ApproverLogin(String),
}

/// A WebAuthn proof that verified.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub user: String,
    /// `["hwk"|"swk", "user", "mfa"]`.
    pub amr: Vec<String>,
    /// `"phr"`.
    pub acr: String,
    pub backup_eligible: bool,
}

/// A still-valid enrollment link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enrollment {
    pub user: String,
    /// Unix seconds.
    pub expires: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Issued {
    user: String,
    nonce: Nonce,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Registering {
    pub user: String,
    /// The user handle the options named (kept at the first enrollment).
    pub user_id: Uuid,
    pub state: PasskeyRegistration,
}

impl ChallengeKey {
    /// The purpose a challenge is kept under in the state store, spelled
    /// so that no two keys share one (names may hold any character).
    fn purpose(&self) -> String {
        let parts = match self {
            ChallengeKey::Requester(hold) => vec!["requester", hold.as_str()],
            ChallengeKey::ApproverDecision { hold, approver } => vec!["decision", hold.as_str(), approver],
            ChallengeKey::ApproverLogin(name) => vec!["login", name],
        };
        serde_json::Value::from(parts).to_string()
    }
}

/// The purpose of an enrollment link's registration challenge.
pub(super) fn enrollment_purpose(link_digest: &str) -> String {
    serde_json::Value::from(vec!["enroll", link_digest]).to_string()
}

/// Keeps what finishing a ceremony needs in the state store (this
/// process's memory, or Redis shared by every instance), so the answer
/// may reach any instance. A store that cannot take it fails the options
/// closed: a challenge nobody can redeem is worse than a 503.
pub(super) async fn keep<T: serde::Serialize>(
    gw: &Gateway,
    challenge: &[u8],
    purpose: &str,
    owner: &str,
    value: &T,
    now: SystemTime,
) -> Result<(), Reject> {
    let value = serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a ceremony in flight");
        Reject::BadRequest("passkey options could not be made")
    })?;
    let ceremony = Ceremony {
        challenge,
        purpose,
        owner,
        value: &value,
        expires: expiry(now),
    };
    gw.state.put_ceremony(ceremony, unix_secs(now)).await.map_err(|e| {
        tracing::error!(error = %e, "cannot keep a passkey challenge; failing closed");
        Reject::StateUnavailable
    })
}

/// Takes the ceremony kept with `challenge` for `purpose`, once. `None`
/// when there is none (unknown, used, expired, another purpose).
pub(super) async fn take_kept<T: serde::de::DeserializeOwned>(
    gw: &Gateway,
    challenge: &[u8],
    purpose: &str,
    now: SystemTime,
) -> Result<Option<T>, Reject> {
    let kept = gw
        .state
        .take_ceremony(challenge, purpose, unix_secs(now))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot take a passkey challenge; failing closed");
            Reject::StateUnavailable
        })?;
    Ok(kept.and_then(|bytes| {
        serde_json::from_slice(&bytes)
            .map_err(|e| tracing::error!(error = %e, "a kept ceremony does not decode; refused"))
            .ok()
    }))
}

/// The relying party, when `stepup.webauthn` is configured.
pub(super) fn relying_party(gw: &Gateway) -> Option<Arc<RelyingParty>> {
    gw.live().webauthn.clone()
}

pub(super) fn expiry(now: SystemTime) -> u64 {
    unix_secs(now) + webauthn::CEREMONY_TIMEOUT.as_secs()
}

/// Request options (`{"publicKey": {...}}`) for `user`'s passkeys, with a
/// challenge bound to `binding` and remembered for `key`.
/// 404 `not_found` without `stepup.webauthn`. A name without a passkey
/// (unknown, or TOTP only) gets the same answer with stand-in credentials
/// (see [`decoys`]), and nothing is remembered for it: no assertion can
/// answer those credentials, so the proof fails as a wrong one does.
/// `owner` names who asked (see `throttle::owner`): what must make room
/// in the table of challenges comes out of the asker's own entries first.
pub(super) async fn start(
    gw: &Gateway,
    key: (ChallengeKey, &str),
    user: &str,
    binding: &str,
    now: SystemTime,
) -> Result<serde_json::Value, Reject> {
    issue(gw, Some(key), user, binding, now).await
}

/// The options [`start`] would give `user`, remembered for nothing: for a
/// name that may not prove here, which must not learn that from the answer.
pub(super) async fn look_alike(
    gw: &Gateway,
    user: &str,
    binding: &str,
    now: SystemTime,
) -> Result<serde_json::Value, Reject> {
    issue(gw, None, user, binding, now).await
}

async fn issue(
    gw: &Gateway,
    key: Option<(ChallengeKey, &str)>,
    user: &str,
    binding: &str,
    now: SystemTime,
) -> Result<serde_json::Value, Reject> {
    let rp = relying_party(gw).ok_or(Reject::NotFound)?;
    let users = gw.users.snapshot().map_err(|e| {
        tracing::error!(error = %e, "user store unreadable");
        Reject::BadRequest("passkey options could not be made")
    })?;
    let mut passkeys = users.passkeys(user);
    let real = !passkeys.is_empty();
    if !real {
        passkeys = decoys(gw, &users, user).map_err(|e| {
            tracing::error!(error = %e, "stand-in passkey options failed");
            Reject::BadRequest("passkey options could not be made")
        })?;
    }
    let nonce: Nonce = rand::random();
    let options = rp.request(&passkeys, &nonce, binding).map_err(|e| {
        tracing::error!(error = %e, "passkey options failed");
        Reject::BadRequest("passkey options could not be made")
    })?;
    let Some((key, owner)) = key.filter(|_| real) else {
        tracing::debug!(%user, real, "passkey options that no assertion can answer");
        return Ok(options);
    };
    let challenge = webauthn::challenge(&nonce, binding);
    let issued = Issued {
        user: user.to_owned(),
        nonce,
    };
    keep(gw, &challenge, &key.purpose(), owner, &issued, now).await?;
    Ok(options)
}

/// Stand-in passkeys for a name that has none, derived from the session
/// key (shared by every instance, so all of them answer alike). They copy
/// the shape of one of the gateway's real passkeys, picked by the name.
fn decoys(
    gw: &Gateway,
    users: &crate::users::UserFile,
    name: &str,
) -> Result<Vec<webauthn::Passkey>, webauthn::PasskeyError> {
    let secret = gw.session_key.mac("passkey-decoys", b"");
    let real: Vec<&webauthn::Passkey> = users
        .users
        .values()
        .flat_map(|u| u.webauthn.iter().map(|r| &r.passkey))
        .collect();
    let pick = gw.session_key.mac("passkey-decoy-shape", name.as_bytes());
    let like = (!real.is_empty()).then(|| real[usize::from(pick[0]) % real.len()]);
    webauthn::decoy::passkeys(&secret, name, like)
}

/// Verifies `credential` (webauthn-rs's `PublicKeyCredential` JSON)
/// against the challenge issued for `key` and `binding`, spending the
/// challenge, and stores the passkey's new counter. `user`, when given,
/// must be whom the challenge was issued to. The inner error is a reason
/// for the log, never for the client; the outer one a store that could not
/// be asked (503).
pub(super) async fn finish(
    gw: &Gateway,
    key: &ChallengeKey,
    user: Option<&str>,
    binding: &str,
    credential: &serde_json::Value,
    now: SystemTime,
) -> Result<Result<Verified, ProofError>, Reject> {
    let Some(rp) = relying_party(gw) else {
        return Ok(Err(ProofError::NotConfigured("webauthn")));
    };
    let assertion: PublicKeyCredential = match serde_json::from_value(credential.clone()) {
        Ok(a) => a,
        Err(e) => return Ok(Err(ProofError::MalformedCredential(e.to_string()))),
    };
    let Some(signed) = webauthn::signed_challenge(&assertion.response.client_data_json) else {
        return Ok(Err(ProofError::NoChallenge));
    };
    let Some(issued) = take_kept::<Issued>(gw, &signed, &key.purpose(), now).await? else {
        return Ok(Err(ProofError::NoPendingChallenge));
    };
    Ok(verify(gw, &rp, issued, user, binding, &assertion, now))
}

fn verify(
    gw: &Gateway,
    rp: &RelyingParty,
    issued: Issued,
    user: Option<&str>,
    binding: &str,
    assertion: &PublicKeyCredential,
    now: SystemTime,
) -> Result<Verified, ProofError> {
    if let Some(named) = user.filter(|u| *u != issued.user) {
        return Err(ProofError::ChallengeUser {
            issued: issued.user,
            named: named.to_owned(),
        });
    }
    let at = unix_secs(now);
    // Verified and counted under the store's write lock, so two
    // assertions cannot both pass against the same old counter.
    let verified = gw.users.try_update(|f| {
        let record = f
            .users
            .get_mut(&issued.user)
            .ok_or_else(|| ProofError::UserGone(issued.user.clone()))?;
        let passkeys: Vec<_> = record.webauthn.iter().map(|r| r.passkey.clone()).collect();
        let v = rp
            .verify(&passkeys, &issued.nonce, binding, assertion)
            .map_err(|e| ProofError::Assertion(e.to_string()))?;
        for r in &mut record.webauthn {
            if v.update(&mut r.passkey).is_some() {
                r.last_used = at;
            }
        }
        Ok::<_, ProofError>(v)
    })??;
    Ok(Verified {
        user: issued.user,
        amr: verified.amr(),
        acr: webauthn::ACR.to_owned(),
        backup_eligible: verified.backup_eligible,
    })
}

/// Whom an enrollment link is for, if it is still valid. Does not use it up.
pub(super) fn enrollment(gw: &Gateway, token: &str, now: SystemTime) -> Option<Enrollment> {
    let token = token.trim();
    if token.is_empty() || token.len() > 128 {
        return None;
    }
    let users = gw.users.snapshot().ok()?;
    let (user, expires) = users.enrolling(&EnrollToken::digest(token), unix_secs(now))?;
    Some(Enrollment {
        user: user.to_owned(),
        expires,
    })
}
