//! The `token` proof (SPEC §5): an ES256 JWS from a configured external
//! issuer, bound to the caller's session and to the held request.
//!
//! Pure: no clock, no I/O. Single use is the caller's job: it claims the
//! returned `jti` until `exp` in its replay store, atomically, before
//! accepting the proof.
//!
//! Order of checks: cheap structural checks first, so hostile input costs no
//! signature work; the signature before any claim is believed. The one claim
//! read before that is `iss`, and only to choose whose keys to try: a token
//! naming issuer B can only ever verify under B's keys.
//!
//! `typ`, when present, must be `JWT` (any case, optionally with the
//! `application/` prefix). That keeps other kinds of JWS — notably our own
//! `stepup+jwt` assertions, which carry `sid` and `txn` — from passing as
//! a proof.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::jose::{self, jws, JoseError, Jwks};

/// SPEC §5: a step-up token lives at most five minutes.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Tolerated clock skew between the issuer and the gateway.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// `jti`s go into a shared replay store; bound what a token can put there.
const MAX_JTI_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(#[source] JoseError),
    #[error("alg `{0}` is not accepted (ES256 only)")]
    UnsupportedAlg(String),
    #[error("typ `{0}` is not accepted (JWT only)")]
    UnsupportedType(String),
    #[error("issuer `{0}` is not configured")]
    UnknownIssuer(String),
    #[error("no key of the issuer matches the token's kid")]
    UnknownKey,
    #[error("bad signature: {0}")]
    BadSignature(#[source] JoseError),
    #[error("audience does not include this gateway")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is issued in the future or not yet valid")]
    NotYetValid,
    #[error("token lifetime of {0} s exceeds 300 s")]
    LifetimeTooLong(u64),
    #[error("claim `{0}` is missing")]
    MissingClaim(&'static str),
    #[error("claim `{0}` has the wrong type or value")]
    InvalidClaim(&'static str),
    #[error("token is bound to another session")]
    SessionMismatch,
    #[error("token is bound to another request")]
    TxnMismatch,
    #[error("token is bound to another hold")]
    HoldMismatch,
    #[error("the clock reads before the Unix epoch")]
    ClockBeforeEpoch,
}

/// One trusted issuer: tokens naming `issuer` must verify under `keys` and
/// list `audience` in `aud`.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    pub issuer: String,
    pub audience: String,
    pub keys: Jwks,
}

/// What the token must be bound to: the hold's (or request's) session and
/// transaction digest, and the hold id when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub sid: &'a str,
    pub txn: &'a str,
    pub hold: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
    /// The `auth_time` claim, else `iat`.
    pub auth_time: u64,
    /// The `amr` claim, else `["token"]`.
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenVerifier {
    issuers: Vec<TokenIssuer>,
    max_lifetime: Duration,
    leeway: Duration,
}

impl TokenVerifier {
    /// Issuer names should be unique (config validation's job); if not, the
    /// first one listed wins.
    pub fn new(issuers: Vec<TokenIssuer>) -> Self {
        TokenVerifier {
            issuers,
            max_lifetime: MAX_LIFETIME,
            leeway: LEEWAY,
        }
    }

    pub fn issuers(&self) -> &[TokenIssuer] {
        &self.issuers
    }

    pub fn verify(&self, token: &str, binding: &Binding<'_>, now: SystemTime) -> Result<VerifiedToken, TokenError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::ClockBeforeEpoch)?
            .as_secs();
        let decoded = jws::decode(token).map_err(TokenError::Malformed)?;
        check_header(&decoded.header)?;

        let iss = required_str(&decoded.claims, "iss")?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(jose::clip(iss)))?;
        let (key, parsed) = issuer
            .keys
            .get_parsed(decoded.header.kid.as_deref())
            .ok_or(TokenError::UnknownKey)?;
        match parsed {
            Some(parsed) => jws::verify_es256_parsed(&decoded, parsed),
            None => jws::verify_es256(&decoded, key),
        }
        .map_err(TokenError::BadSignature)?;

        // From here on the claims are the issuer's word.
        let claims = &decoded.claims;
        check_audience(claims, &issuer.audience)?;
        let (iat, exp) = self.check_times(claims, now)?;
        let jti = required_str(claims, "jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(TokenError::InvalidClaim("jti"));
        }
        let sub = required_str(claims, "sub")?;
        if sub.is_empty() {
            return Err(TokenError::InvalidClaim("sub"));
        }
        check_binding(claims, binding)?;

        let auth_time = optional_u64(claims, "auth_time")?.unwrap_or(iat);
        if auth_time > now.saturating_add(self.leeway.as_secs()) {
            return Err(TokenError::InvalidClaim("auth_time"));
        }
        Ok(VerifiedToken {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
            jti: jti.to_owned(),
            exp,
            iat,
            auth_time,
            amr: amr(claims)?,
            acr: optional_str(claims, "acr")?.map(str::to_owned),
        })
    }

    /// Returns `(iat, exp)` once both are present, fresh and close together.
    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<(u64, u64), TokenError> {
        let leeway = self.leeway.as_secs();
        let exp = optional_u64(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let iat = optional_u64(claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
        if exp <= now.saturating_sub(leeway) {
            return Err(TokenError::Expired);
        }
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        if let Some(nbf) = optional_u64(claims, "nbf")? {
            if nbf > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        let lifetime = exp.checked_sub(iat).ok_or(TokenError::InvalidClaim("exp"))?;
        if lifetime > self.max_lifetime.as_secs() {
            return Err(TokenError::LifetimeTooLong(lifetime));
        }
        Ok((iat, exp))
    }
}

fn check_header(header: &jws::Header) -> Result<(), TokenError> {
    if header.alg != jws::ES256 {
        return Err(TokenError::UnsupportedAlg(jose::clip(&header.alg)));
    }
    if let Some(typ) = &header.typ {
        // RFC 7515 §4.1.9: media types compare case-insensitively and the
        // `application/` prefix may be omitted.
        let prefix = "application/";
        let bare = match typ.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) => &typ[prefix.len()..],
            _ => typ.as_str(),
        };
        if !bare.eq_ignore_ascii_case("JWT") {
            return Err(TokenError::UnsupportedType(jose::clip(typ)));
        }
    }
    Ok(())
}

fn check_audience(claims: &Map<String, Value>, ours: &str) -> Result<(), TokenError> {
    let listed = match claims.get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == ours,
        Some(Value::Array(auds)) => {
            if !auds.iter().all(Value::is_string) {
                return Err(TokenError::InvalidClaim("aud"));
            }
            auds.iter().any(|aud| aud == ours)
        }
        Some(_) => return Err(TokenError::InvalidClaim("aud")),
    };
    if listed {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// `sid` must match, and the token must name this request: by `txn`, or by
/// `hold` for a proof made before the client knew the digest. A token that
/// names both must match both.
fn check_binding(claims: &Map<String, Value>, binding: &Binding<'_>) -> Result<(), TokenError> {
    if required_str(claims, "sid")? != binding.sid {
        return Err(TokenError::SessionMismatch);
    }
    let txn = optional_str(claims, "txn")?;
    let hold = optional_str(claims, "hold")?;
    if txn.is_none() && hold.is_none() {
        return Err(TokenError::MissingClaim("txn"));
    }
    if txn.is_some_and(|txn| txn != binding.txn) {
        return Err(TokenError::TxnMismatch);
    }
    if hold.is_some_and(|hold| Some(hold) != binding.hold) {
        return Err(TokenError::HoldMismatch);
    }
    Ok(())
}

fn amr(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let Some(value) = claims.get("amr") else {
        return Ok(vec!["token".to_owned()]);
    };
    let invalid = TokenError::InvalidClaim("amr");
    let Value::Array(items) = value else {
        return Err(invalid);
    };
    if items.is_empty() {
        return Err(invalid);
    }
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or(invalid)
}

fn required_str<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    optional_str(claims, name)?.ok_or(TokenError::MissingClaim(name))
}

fn optional_str<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

/// NumericDate claims must be non-negative integers: `"1700000000"`, `1.7e9`
/// and `-1` are all refused rather than coerced.
fn optional_u64(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(TokenError::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests;
