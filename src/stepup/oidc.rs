//! OIDC re-authentication (SPEC §5 `oidc`): the authorization request a hold
//! sends to the OpenID Provider, and the checks on what comes back. Pure:
//! the network client (discovery, JWKS, code exchange) lives in
//! `proxy::oidc`, and time arrives as an argument.
//!
//! The checks follow OIDC Core §3.1.3.7, plus what step-up needs on top:
//! - `acr_values` is a request the browser can edit (or the OP can ignore),
//!   so the returned `acr` is checked against the route, never assumed;
//! - `auth_time` must be after the hold was created and within `max_age`,
//!   so an old session at the IdP cannot stand in for a fresh login;
//! - only ES256, RS256, PS256 and EdDSA signatures from the OP's JWKS are
//!   accepted: `none` and every HMAC (the client secret as a key) are
//!   refused before any key is chosen.

pub mod id_token;
pub mod keys;
pub mod request;

pub use id_token::{verify_access_token, verify_id_token, Expect, Verified};
pub use keys::ProviderKeys;
pub use request::{AuthRequest, Flow};

/// Why an OP response or token was refused. Messages name the failed check
/// and clip what the token said, so they are fit for the log and the audit
/// trail; they never reach the browser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("alg `{0}` is not allowed (ES256, RS256, PS256, EdDSA only)")]
    AlgNotAllowed(String),
    #[error("typ `{0}` is not allowed here")]
    WrongType(String),
    #[error("kid `{0}` is not in the provider's JWKS")]
    UnknownKid(String),
    #[error("token has no kid and the provider's JWKS does not have exactly one key for {0}")]
    KidRequired(String),
    #[error("the JWKS key does not fit alg {0}")]
    KeyMismatch(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("claim {0} is missing or has the wrong type")]
    Claim(&'static str),
    #[error("iss `{0}` is not the configured issuer")]
    Issuer(String),
    #[error("aud does not name this client")]
    Audience,
    #[error("azp `{0}` is not this client")]
    AuthorizedParty(String),
    #[error("token expired at {exp}, now {now}")]
    Expired { exp: u64, now: u64 },
    #[error("token issued in the future (iat {iat}, now {now})")]
    IssuedInFuture { iat: u64, now: u64 },
    #[error("nonce does not match this flow")]
    Nonce,
    #[error("acr `{got}` is not one the route accepts ({want})")]
    Acr { got: String, want: String },
    #[error("auth_time {auth_time} is before the hold was created ({created})")]
    AuthBeforeHold { auth_time: u64, created: u64 },
    #[error("auth_time is {age}s old, route max_age is {max_age}s")]
    Stale { age: u64, max_age: u64 },
    #[error("auth_time {0} is in the future")]
    AuthInFuture(u64),
    #[error("JWKS is malformed: {0}")]
    Jwks(&'static str),
}

/// Clock skew tolerated between the OP and the gateway.
pub const LEEWAY_SECS: u64 = 30;

fn clip(s: &str) -> String {
    let s: String = s.chars().take(40).filter(|c| !c.is_control()).collect();
    s
}
