//! The `X-StepUp-Assertion` signer (SPEC §6, fixed format).
//!
//! Every call to [`AssertionSigner::sign`] mints a fresh `jti`: an assertion
//! is never cached or reused, so an upstream can treat each one as a single
//! released request. Time comes only from the `now` argument.

mod keys;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::Serialize;

use crate::jose::{self, jwk, JoseError, Jwks};

pub use keys::{generate_signing_key, load_public_key_pem, load_signing_key_pem};

/// `typ` of every assertion, so it can never pass for another kind of JWT
/// (and, in [`crate::stepup::token`], never for a step-up proof).
pub const ASSERTION_TYP: &str = "stepup+jwt";

/// SPEC §6: `assertion.ttl` is at most 300 s.
pub const CHECKPOINT_TYP: &str = "stepup-audit+jwt";

pub const MAX_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("assertion ttl must be a whole number of seconds in 1..=300, got {0:?}")]
    TtlOutOfRange(Duration),
    #[error("assertion {0} must not be empty")]
    Empty(&'static str),
    #[error("assertion key: {0}")]
    Key(&'static str),
    #[error("the clock reads before the Unix epoch")]
    ClockBeforeEpoch,
    #[error("signing the assertion failed: {0}")]
    Jose(#[from] JoseError),
}

/// What the gateway knows about a released request. Optional members are
/// left out of the token when empty / false, so upstreams can test presence.
#[derive(Debug, Clone, Default)]
pub struct AssertionFacts {
    pub sub: String,
    pub sid: String,
    pub act: String,
    pub route: String,
    pub txn: String,
    pub htm: String,
    pub htu: String,
    pub amr: Vec<String>,
    pub acr: String,
    pub auth_time: u64,
    pub approvers: Vec<ApproverClaim>,
    pub hold: Option<String>,
    pub risk: Vec<String>,
    pub break_glass: bool,
    /// The proof is an earlier one reused in sudo mode, not a new step-up.
    pub reuse: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApproverClaim {
    pub sub: String,
    pub at: u64,
}

/// A signed assertion plus what the audit trail records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub token: String,
    pub jti: String,
    pub exp: u64,
}

pub struct AssertionSigner {
    /// Prepared for aws-lc once, rather than per request.
    es256: jose::jws::Es256Key,
    kid: String,
    jwks: Jwks,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for AssertionSigner {
    // Spelled out so the private key can never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// `retired` keys are only published in the JWKS (so assertions signed
    /// before a rotation still verify); one equal to the current key is
    /// dropped.
    pub fn new(
        key: SigningKey,
        retired: Vec<VerifyingKey>,
        issuer: String,
        audience: String,
        ttl: Duration,
    ) -> Result<Self, AssertionError> {
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL || ttl.subsec_nanos() != 0 {
            return Err(AssertionError::TtlOutOfRange(ttl));
        }
        if issuer.is_empty() {
            return Err(AssertionError::Empty("issuer"));
        }
        if audience.is_empty() {
            return Err(AssertionError::Empty("audience"));
        }
        let current = *key.verifying_key();
        let es256 = jose::jws::Es256Key::new(&key).map_err(|_| AssertionError::Key("not a usable P-256 key"))?;
        Ok(AssertionSigner {
            es256,
            kid: jwk::thumbprint(&current),
            jwks: Jwks::from_keys(std::iter::once(current).chain(retired)),
            issuer,
            audience,
            ttl_secs: ttl.as_secs(),
        })
    }

    /// RFC 7638 thumbprint of the current key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Current key first, then the retired ones.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.to_json()
    }

    /// Signs an audit checkpoint with the assertion key. The distinct `typ`
    /// keeps a checkpoint from ever being mistaken for an assertion.
    pub fn sign_checkpoint(&self, claims: &serde_json::Value) -> Result<String, AssertionError> {
        let header = serde_json::json!({"alg": jose::jws::ES256, "typ": CHECKPOINT_TYP, "kid": self.kid});
        Ok(jose::jws::encode_es256_with(&self.es256, &header, claims)?)
    }

    pub fn sign(&self, facts: &AssertionFacts, now: SystemTime) -> Result<Signed, AssertionError> {
        // An upstream keys its decision on who, which session and which
        // request; an assertion missing one of them says nothing.
        for (name, value) in [("sub", &facts.sub), ("sid", &facts.sid), ("txn", &facts.txn)] {
            if value.is_empty() {
                return Err(AssertionError::Empty(name));
            }
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AssertionError::ClockBeforeEpoch)?
            .as_secs();
        let exp = iat.saturating_add(self.ttl_secs);
        let jti = fresh_jti();
        let header = Header {
            alg: jose::jws::ES256,
            typ: ASSERTION_TYP,
            kid: &self.kid,
        };
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            iat,
            exp,
            jti: &jti,
            sub: &facts.sub,
            sid: &facts.sid,
            act: &facts.act,
            route: &facts.route,
            txn: &facts.txn,
            htm: &facts.htm,
            htu: &facts.htu,
            amr: &facts.amr,
            acr: &facts.acr,
            auth_time: facts.auth_time,
            approvers: &facts.approvers,
            hold: facts.hold.as_deref(),
            risk: &facts.risk,
            break_glass: facts.break_glass,
            reuse: facts.reuse,
        };
        let token = jose::jws::encode_es256_typed(&self.es256, &header, &claims)?;
        Ok(Signed { token, jti, exp })
    }
}

/// 128 random bits: unguessable and, in practice, never repeated.
fn fresh_jti() -> String {
    jose::b64_encode(rand::random::<[u8; 16]>())
}

/// Field order here is the order on the wire: SPEC §6 fixes this header text.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    sub: &'a str,
    sid: &'a str,
    act: &'a str,
    route: &'a str,
    txn: &'a str,
    htm: &'a str,
    htu: &'a str,
    amr: &'a [String],
    acr: &'a str,
    auth_time: u64,
    #[serde(skip_serializing_if = "is_empty")]
    approvers: &'a [ApproverClaim],
    #[serde(skip_serializing_if = "Option::is_none")]
    hold: Option<&'a str>,
    #[serde(skip_serializing_if = "is_empty")]
    risk: &'a [String],
    #[serde(skip_serializing_if = "is_false")]
    break_glass: bool,
    #[serde(skip_serializing_if = "is_false")]
    reuse: bool,
}

fn is_empty<T>(items: &&[T]) -> bool {
    items.is_empty()
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

#[cfg(test)]
mod tests;
