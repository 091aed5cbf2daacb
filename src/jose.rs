//! Minimal JOSE: compact JWS with ES256 only, EC P-256 JWKs and JWK Sets.
//!
//! Deliberately narrow. One algorithm means there is no algorithm negotiation
//! to get wrong: `none`, every HMAC and RSA variant, and DER-encoded ECDSA
//! signatures are refused by construction rather than by configuration.
//! Keys only ever come from a configured [`jwk::Jwks`]; header members that
//! would let a token name its own key (`jwk`, `jku`, `x5u`, `x5c`) are never
//! read.

pub mod jwk;
pub mod jws;
pub mod strict;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub use jwk::Jwks;
pub use jws::{Decoded, Header};

/// Which part of a compact JWS an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a JWS or JWK was refused. Messages never contain key material and
/// clip attacker-chosen strings, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("compact JWS needs exactly 3 dot-separated parts, found {0}")]
    SegmentCount(usize),
    #[error("{0} is not unpadded base64url")]
    Base64(Part),
    #[error("{0} is not valid UTF-8 JSON")]
    Json(Part),
    #[error("{0} is not a JSON object")]
    NotObject(Part),
    #[error("{0} has a duplicate member")]
    DuplicateMember(Part),
    #[error("{0} could not be serialized as JSON")]
    Serialize(Part),
    #[error("header member `{0}` is missing or not a string")]
    HeaderMember(&'static str),
    #[error("header has `crit`; no critical extensions are supported")]
    CritUnsupported,
    #[error("alg `{0}` is not supported (ES256 only)")]
    UnsupportedAlg(String),
    #[error("signature is {0} bytes; ES256 needs 64 (R||S, not DER)")]
    SignatureLength(usize),
    #[error("signature does not verify")]
    BadSignature,
    #[error("signing failed")]
    Signing,
    #[error("JWKS is not a JSON object with a `keys` array")]
    JwksShape,
    #[error("JWK #{index} is invalid: {reason}")]
    InvalidJwk { index: usize, reason: &'static str },
    #[error("JWKS has more than one key with kid `{0}`")]
    DuplicateKid(String),
    #[error("JWKS has no usable EC P-256 ES256 signing key")]
    NoUsableKeys,
}

/// Encodes without padding, as every JOSE base64url field requires.
pub(crate) fn b64_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict decoding: the URL-safe alphabet only, no `=`, no whitespace, and
/// no stray trailing bits, so each byte string has exactly one accepted
/// encoding. That is what makes "flip any character and the token breaks"
/// hold for the signature part, where the text itself is not signed.
pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Attacker-chosen strings end up in error messages and logs; keep them short.
pub(crate) fn clip(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
