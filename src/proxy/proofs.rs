//! Verifying a requester's proof for one hold (or, up front, for one
//! request). Every failure reason goes to the log; the client only ever
//! learns `invalid_proof`. The outer `Result` is the shared state store:
//! when it cannot record a single-use value, nothing is accepted and the
//! caller answers 503 `state_unavailable`.

use super::passkey::{self, ChallengeKey};
use super::respond::Reject;
use super::{Gateway, Live};
use crate::clock::unix_secs;
use crate::hold::{HoldMeta, Proof};
use crate::ids::HoldId;
use crate::policy::{ProofMethod, Requirements};
use crate::stepup::token::{Binding, LEEWAY};
use crate::stepup::totp;
use std::net::IpAddr;
use std::time::SystemTime;

pub(super) use super::proof_error::ProofError;

/// A proof checked and its outcome decided, or the store that records
/// single-use values could not be asked.
pub(super) type Checked = Result<Result<Proof, ProofError>, Reject>;

/// The shared store did not answer: logged here, 503 to the client.
fn unavailable(e: crate::store::StateError) -> Reject {
    tracing::error!(error = %e, "cannot record a single-use proof; failing closed");
    Reject::StateUnavailable
}

/// The key a token's `jti` is remembered under (also rebuilt from the
/// audit trail after a restart).
pub(crate) fn jti_key(iss: &str, jti: &str) -> String {
    format!("jti:{iss}:{jti}")
}

/// Verifies a step-up token and claims its `jti`.
pub(super) async fn token(
    gw: &Gateway,
    live: &Live,
    token: &[u8],
    meta: &HoldMeta,
    hold: Option<&HoldId>,
    require: &Requirements,
    now: SystemTime,
) -> Checked {
    let (key, usable_until, proof) = match check_token(gw, live, token, meta, hold, require, now) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    // Claimed last, so a token refused for another reason is not burnt.
    let fresh = gw
        .state
        .claim_once(&key, usable_until, unix_secs(now))
        .await
        .map_err(unavailable)?;
    if !fresh {
        return Ok(Err(ProofError::JtiUsed));
    }
    Ok(Ok(proof))
}

fn check_token(
    gw: &Gateway,
    live: &Live,
    token: &[u8],
    meta: &HoldMeta,
    hold: Option<&HoldId>,
    require: &Requirements,
    now: SystemTime,
) -> Result<(String, u64, Proof), ProofError> {
    if !require.accepts(ProofMethod::Token) {
        return Err(ProofError::NotAccepted(ProofMethod::Token));
    }
    let token = std::str::from_utf8(token).map_err(|_| ProofError::NotUtf8)?;
    let binding = Binding {
        sid: meta.sid.as_str(),
        txn: meta.txn.as_str(),
        hold: hold.map(|h| h.as_str()),
    };
    let t = live.tokens.verify(token, &binding, now)?;
    let age = unix_secs(now).saturating_sub(t.auth_time);
    let max_age = require.max_age.as_secs();
    if age > max_age {
        return Err(ProofError::TooOld { age, max_age });
    }
    actor_allowed(gw, meta, require, &t.sub)?;
    // Kept past `exp` for as long as the verifier's skew leeway would still
    // accept the token; purged at `exp`, it could be presented again.
    let usable_until = t.exp.saturating_add(LEEWAY.as_secs());
    Ok((
        jti_key(&t.iss, &t.jti),
        usable_until,
        Proof {
            method: ProofMethod::Token,
            sub: t.sub,
            auth_time: t.auth_time,
            amr: t.amr,
            acr: t.acr.unwrap_or_else(|| "token".into()),
        },
    ))
}

/// Verifies a TOTP code from `user`, sent from `client`, and claims its
/// time step.
pub(super) async fn totp(
    gw: &Gateway,
    user: &str,
    code: &str,
    client: IpAddr,
    meta: &HoldMeta,
    require: &Requirements,
    now: SystemTime,
) -> Checked {
    let secs = unix_secs(now);
    if user.is_empty() {
        return Ok(Err(ProofError::NoUser));
    }
    if let Err(e) = may_try(gw, user, client, secs).await? {
        return Ok(Err(e));
    }
    let result = match check_totp(gw, user, code, meta, require, secs) {
        Ok(step) => claim_step(gw, user, step).await?.map(|()| Proof {
            method: ProofMethod::Totp,
            sub: user.to_owned(),
            auth_time: secs,
            amr: vec!["otp".into()],
            acr: "aal2".into(),
        }),
        Err(e) => Err(e),
    };
    settle_try(gw, user, client, secs, result.is_ok()).await?;
    Ok(result)
}

/// Spends a TOTP step for `user`: a code is good once, and never after a
/// newer one, on every instance.
async fn claim_step(gw: &Gateway, user: &str, step: u64) -> Result<Result<(), ProofError>, Reject> {
    let newer = gw.state.advance_step(user, step).await.map_err(unavailable)?;
    Ok(if newer {
        Ok(())
    } else {
        Err(ProofError::StepUsed {
            user: user.to_owned(),
            step,
        })
    })
}

/// Guessing is limited per person at one client address and per client
/// address across all names, each with a doubling backoff. Both keys
/// include the client, so a stranger's wrong codes for alice slow down the
/// stranger and never alice at her own address; the hold's own attempt
/// limit is the only thing that ends one session's tries. The counts are
/// in the state store: on Redis, tries spread over several instances
/// spend one budget. A store that cannot be asked allows nothing (503).
pub(super) async fn may_try(
    gw: &Gateway,
    who: &str,
    client: IpAddr,
    secs: u64,
) -> Result<Result<(), ProofError>, Reject> {
    let from_client = gw.state.failures(&client_at(client), secs).await.map_err(uncounted)?;
    if !gw.client_failures.allows(from_client, secs) {
        return Ok(Err(ProofError::ClientBackingOff(client)));
    }
    let for_person = gw
        .state
        .failures(&person_at(who, client), secs)
        .await
        .map_err(uncounted)?;
    if !gw.failures.allows(for_person, secs) {
        return Ok(Err(ProofError::PersonBackingOff {
            who: who.to_owned(),
            client,
        }));
    }
    Ok(Ok(()))
}

/// Records the outcome of a try `may_try` allowed. A failure that cannot
/// be counted is answered 503, never as a free try.
pub(super) async fn settle_try(gw: &Gateway, who: &str, client: IpAddr, secs: u64, ok: bool) -> Result<(), Reject> {
    let person = person_at(who, client);
    if ok {
        // Not clearing only leaves the person's backoff to expire by itself.
        if let Err(e) = gw.state.clear_failures(&person).await {
            tracing::warn!(error = %e, "cannot clear a failure count after a success");
        }
        return Ok(());
    }
    let store = &gw.state;
    store
        .record_failure(&person, secs, gw.failures.forget_after())
        .await
        .map_err(uncounted)?;
    store
        .record_failure(&client_at(client), secs, gw.client_failures.forget_after())
        .await
        .map_err(uncounted)
}

fn uncounted(e: crate::store::StateError) -> Reject {
    tracing::error!(error = %e, "cannot count failed tries; failing closed");
    Reject::StateUnavailable
}

/// The key of a client address's failures, whoever they named.
fn client_at(client: IpAddr) -> String {
    format!("client\u{0}{client}")
}

/// The client address failures are counted against: the peer, or what a
/// trusted proxy reported for it.
pub(super) fn client_addr(gw: &Gateway, conn: &super::ConnInfo, parts: &http::request::Parts) -> IpAddr {
    super::hygiene::client_ip(conn.peer.ip(), &parts.headers, &gw.config().trusted_proxies)
}

fn person_at(who: &str, client: IpAddr) -> String {
    format!("person\u{0}{who}\u{0}{client}")
}

/// A code's time step, if the code is right and is not the one that
/// confirmed the enrollment: that code was typed on a command line
/// (`enroll totp --confirm CODE`) and sits in shell history and `ps`, so it
/// is refused for every use, sign-in included.
fn verify_code(users: &crate::users::UserFile, user: &str, code: &str, now: u64) -> Result<u64, ProofError> {
    let secret = users
        .totp_secret(user)
        .ok_or_else(|| ProofError::NoTotp(user.to_owned()))?;
    let step = totp::verify(secret, code, now)?;
    if step <= users.totp_confirmed_step(user) {
        return Err(ProofError::EnrollmentCode(step));
    }
    Ok(step)
}

/// The step of a right code from an allowed user, not yet spent.
fn check_totp(
    gw: &Gateway,
    user: &str,
    code: &str,
    meta: &HoldMeta,
    require: &Requirements,
    now: u64,
) -> Result<u64, ProofError> {
    actor_allowed(gw, meta, require, user)?;
    let users = gw.users.snapshot()?;
    verify_code(&users, user, code, now)
}

/// Verifies a passkey assertion answering this hold's own challenge (bound
/// to its `txn`), made by `user` when the body names one.
pub(super) async fn webauthn(
    gw: &Gateway,
    credential: &serde_json::Value,
    user: Option<&str>,
    meta: &HoldMeta,
    require: &Requirements,
    now: SystemTime,
) -> Checked {
    if !require.accepts(ProofMethod::Webauthn) {
        return Ok(Err(ProofError::NotAccepted(ProofMethod::Webauthn)));
    }
    let user = user.map(str::trim).filter(|u| !u.is_empty());
    let key = ChallengeKey::Requester(meta.id.clone());
    let v = match passkey::finish(gw, &key, user, meta.txn.as_str(), credential, now).await? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    tracing::debug!(hold = %meta.id, user = %v.user, synced = v.backup_eligible, "passkey assertion verified");
    if let Err(e) = actor_allowed(gw, meta, require, &v.user) {
        return Ok(Err(e));
    }
    Ok(Ok(Proof {
        method: ProofMethod::Webauthn,
        sub: v.user,
        auth_time: unix_secs(now),
        amr: v.amr,
        acr: v.acr,
    }))
}

/// Checks an approver's passkey assertion for their decision on `meta`.
pub(super) async fn approver_webauthn(
    gw: &Gateway,
    name: &str,
    meta: &HoldMeta,
    credential: &serde_json::Value,
    now: SystemTime,
) -> Result<Result<(), ProofError>, Reject> {
    let key = ChallengeKey::ApproverDecision {
        hold: meta.id.clone(),
        approver: name.to_owned(),
    };
    let verified = passkey::finish(gw, &key, Some(name), meta.txn.as_str(), credential, now).await?;
    Ok(verified.map(|_| ()))
}

/// Who may step up: the session's own identity when it is known (SPEC §3),
/// and only the users or groups the route names.
pub(super) fn actor_allowed(
    gw: &Gateway,
    meta: &HoldMeta,
    require: &Requirements,
    sub: &str,
) -> Result<(), ProofError> {
    if let Some(id) = &meta.identity {
        if id != sub {
            return Err(ProofError::IdentityMismatch {
                sub: sub.to_owned(),
                identity: id.clone(),
            });
        }
    }
    if require.users.is_empty() && require.groups.is_empty() {
        return Ok(());
    }
    let users = gw.users.snapshot()?;
    if require.allows_user(sub, users.groups(sub)) {
        Ok(())
    } else {
        Err(ProofError::NotAllowed(sub.to_owned()))
    }
}

/// Checks an approver's own TOTP code (sign-in, and decisions of
/// approvers configured with `totp: true` or signed in on the page), sent
/// from `client`, under the same limits as a requester's code.
pub(super) async fn approver_totp(
    gw: &Gateway,
    name: &str,
    code: &str,
    client: IpAddr,
    now: SystemTime,
) -> Result<Result<(), ProofError>, Reject> {
    let secs = unix_secs(now);
    if let Err(e) = may_try(gw, name, client, secs).await? {
        return Ok(Err(e));
    }
    let checked = gw
        .users
        .snapshot()
        .map_err(ProofError::from)
        .and_then(|users| verify_code(&users, name, code, secs));
    let result = match checked {
        Ok(step) => claim_step(gw, name, step).await?,
        Err(e) => Err(e),
    };
    settle_try(gw, name, client, secs, result.is_ok()).await?;
    Ok(result)
}
