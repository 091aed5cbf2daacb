//! Who a session belongs to, when the gateway can tell (SPEC §3 "Identity").
//!
//! When the session's identity is known, a step-up must be performed by that
//! same identity. This module supplies two of the sources; both are pure (no
//! clock reads, no files, no sockets):
//!
//! - [`JwtIdentity`]: a JWT the client presents (a cookie or an
//!   `Authorization: Bearer` header, see [`token_from_request`]), verified
//!   against a configured JWKS with `iss`, `aud` and the time claims checked.
//!   The identity is `sub`.
//! - [`cert_identity`]: the workload identity in a client certificate that
//!   rustls has already verified: the first SAN URI (a SPIFFE ID), else the
//!   subject CN. [`cert_thumbprint`] binds a session to that exact certificate.
//!
//! What this module deliberately does not do:
//!
//! - Accept any algorithm but ES256 and RS256. `none`, every HMAC variant
//!   (the "public key as HMAC secret" confusion), PS*, and an `alg` that does
//!   not fit the selected key's type are refused before any crypto runs.
//! - Let a token choose its key. `jwk`, `jku`, `x5u` and `x5c` header members
//!   are never read; keys come only from the configured JWKS, selected by
//!   `kid`.
//! - Accept DER-encoded ES256 signatures: JWS uses the fixed 64-byte `R || S`.
//! - Verify certificate chains: rustls did that against the configured CA.
//!
//! Errors ([`IdentityError`]) never carry the token, and clip and sanitise the
//! few attacker-chosen strings they echo (`alg`, `typ`, `kid`), so they are
//! safe to log.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderMap;
use p256::ecdsa::VerifyingKey;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

/// Upper bound on a token. Identity JWTs are a few hundred bytes to a few
/// KiB; the cap bounds the work hostile input can cause before rejection.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat` unless
/// [`JwtIdentity::with_leeway`] says otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// An ES256 JWS signature is `R || S`, each a 32-byte big-endian integer
/// (RFC 7518 §3.4). A DER signature has a different length (70–72 bytes).
const ES256_SIGNATURE_LEN: usize = 64;

/// P-256 affine coordinates are 32 bytes each, full length (RFC 7518 §6.2.1.2).
const P256_COORDINATE_LEN: usize = 32;

/// RS256 is only accepted with 2048- to 8192-bit moduli; this matches
/// `RSA_PKCS1_2048_8192_SHA256`, but checking at load time makes a weak key a
/// configuration error instead of a per-request failure.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// How many characters of an attacker-chosen string an error may echo.
const CLIP_CHARS: usize = 32;

/// Which part of a compact JWS an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// The two accepted JWS algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn parse(alg: &str) -> Option<Self> {
        // Exact, case-sensitive match: JWA names are case-sensitive, and
        // lenient matching is how "None"/"nOnE" bypasses happened elsewhere.
        match alg {
            "ES256" => Some(Alg::Es256),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a JWKS, a token or a client certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    // --- configuration ---
    /// A configured value (issuer, audience) is unusable.
    #[error("identity.jwt.{0} must not be empty")]
    InvalidConfig(&'static str),
    /// The JWKS document is not a JSON object with a `keys` array (or repeats
    /// a member name).
    #[error("JWKS is malformed: {0}")]
    JwksMalformed(String),
    /// One key of the JWKS is malformed. Unsupported keys (other curves,
    /// `use: enc`, ...) are skipped instead; this is for keys that claim to
    /// be usable and are broken.
    #[error("JWKS keys[{index}]: {reason}")]
    JwksKey { index: usize, reason: &'static str },
    /// Two usable keys share a `kid`, so `kid` could not select one.
    #[error("JWKS has more than one usable key with kid {0:?}")]
    JwksDuplicateKid(String),
    /// Nothing in the JWKS can verify ES256 or RS256.
    #[error("JWKS has no usable ES256 (EC P-256) or RS256 (RSA) signing key")]
    JwksNoUsableKey,

    // --- token structure ---
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TokenTooLarge { len: usize, max: usize },
    #[error("token is not a compact JWS: expected 3 dot-separated parts, found {0}")]
    SegmentCount(usize),
    #[error("token {0} is not unpadded base64url")]
    Base64(Part),
    #[error("token {0} is not a JSON object")]
    Json(Part),
    /// A member name appears twice: parsers disagree on which one wins, so a
    /// token that relies on it is refused outright.
    #[error("token {0} repeats a JSON member name")]
    DuplicateMember(Part),

    // --- header ---
    /// A header member is missing (`alg`) or has the wrong JSON type.
    #[error("header member {0} is missing or not a string")]
    InvalidHeader(&'static str),
    /// `alg` is not ES256 or RS256 (`none`, HS256, PS256, ...). Clipped.
    #[error("alg {0:?} is not allowed (only ES256 and RS256)")]
    AlgNotAllowed(String),
    /// `typ` names something other than a JWT (e.g. `logout+jwt`). Clipped.
    #[error("typ {0:?} is not a JWT type")]
    WrongType(String),
    /// A header member this verifier does not implement and must not ignore
    /// (`crit`, RFC 7515 §4.1.11).
    #[error("header member {0} is not supported")]
    UnsupportedHeader(&'static str),
    /// The token's `kid` is not in the JWKS. Clipped.
    #[error("kid {0:?} is not in the JWKS")]
    UnknownKid(String),
    /// The token has no `kid` and the JWKS does not have exactly one key.
    #[error("token has no kid and the JWKS has {0} usable keys")]
    KidRequired(usize),
    /// `alg` does not fit the selected key's type (RS256 over an EC key, ...).
    #[error("alg {alg} does not fit the selected {kty} key")]
    AlgKeyMismatch { alg: Alg, kty: &'static str },

    // --- signature ---
    /// An ES256 signature that is not 64 bytes (typically DER).
    #[error("ES256 signature is {0} bytes, not the 64-byte R||S form")]
    SignatureEncoding(usize),
    #[error("signature does not verify")]
    BadSignature,

    // --- claims ---
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    #[error("claim {0} has the wrong type or an unusable value")]
    InvalidClaim(&'static str),
    #[error("iss is not the configured issuer")]
    IssuerMismatch,
    #[error("aud does not name the configured audience")]
    AudienceMismatch,
    #[error("token has expired (exp)")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    /// `now` was before 1970: a broken clock, never a reason to accept.
    #[error("current time is before the Unix epoch")]
    ClockBeforeEpoch,

    // --- client certificate ---
    #[error("client certificate is not DER X.509")]
    CertificateParse,
    #[error("client certificate is followed by trailing bytes")]
    CertificateTrailingData,
    /// The named field is malformed, duplicated, or holds an unusable name
    /// (empty, control characters, surrounding whitespace).
    #[error("client certificate {0} is malformed or ambiguous")]
    CertificateField(&'static str),
    #[error("client certificate has neither a SAN URI nor a subject CN")]
    NoCertificateIdentity,

    // --- where the identity travels ---
    /// The identity cookie or bearer token occurs more than once.
    #[error("the request carries the identity token more than once")]
    AmbiguousToken,
}

// ---------------------------------------------------------------------------
// JWT verification
// ---------------------------------------------------------------------------

/// Verifies identity JWTs from one issuer for one audience.
#[derive(Debug, Clone)]
pub struct JwtIdentity {
    issuer: String,
    audience: String,
    keys: IdentityKeys,
    leeway: Duration,
}

impl JwtIdentity {
    /// `jwks_json` is the content of the configured JWKS file; reading the
    /// file is the caller's business. The leeway starts at
    /// [`DEFAULT_LEEWAY`].
    ///
    /// # Errors
    ///
    /// `InvalidConfig` for an empty issuer or audience, or any JWKS error of
    /// [`IdentityKeys::from_jwks`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_json: &str) -> Result<Self, IdentityError> {
        let issuer = issuer.into();
        let audience = audience.into();
        // An empty expected value would match tokens that carry an empty
        // claim, which no real issuer intends.
        if issuer.is_empty() {
            return Err(IdentityError::InvalidConfig("issuer"));
        }
        if audience.is_empty() {
            return Err(IdentityError::InvalidConfig("audience"));
        }
        let keys = IdentityKeys::from_jwks(jwks_json)?;
        Ok(Self {
            issuer,
            audience,
            keys,
            leeway: DEFAULT_LEEWAY,
        })
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Keep it small (seconds
    /// to a couple of minutes): it extends every token's lifetime.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn keys(&self) -> &IdentityKeys {
        &self.keys
    }

    /// Verifies `token` at time `now` and returns its `sub`.
    ///
    /// Order: size, structure, header, key selection, signature, then claims.
    /// The payload is only interpreted after the signature has verified.
    ///
    /// # Errors
    ///
    /// The first check that fails, as a precise [`IdentityError`] variant.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<String, IdentityError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(IdentityError::TokenTooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let segments: Vec<&str> = token.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = segments.as_slice() else {
            return Err(IdentityError::SegmentCount(segments.len()));
        };

        let header = decode_object(header_b64, Part::Header)?;
        let alg = check_header(&header)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(IdentityError::InvalidHeader("kid")),
        };
        let key = self.keys.select(kid)?;
        if key.material.alg() != alg {
            return Err(IdentityError::AlgKeyMismatch {
                alg,
                kty: key.material.kty(),
            });
        }

        let signature = b64_decode(signature_b64).ok_or(IdentityError::Base64(Part::Signature))?;
        // Structural check only; the bytes are not interpreted until the
        // signature over them has verified.
        let payload_bytes = b64_decode(payload_b64).ok_or(IdentityError::Base64(Part::Payload))?;
        // The signing input is `header.payload` exactly as received.
        let (signing_input, _) = token
            .rsplit_once('.')
            .ok_or(IdentityError::SegmentCount(segments.len()))?;
        verify_signature(&key.material, signing_input.as_bytes(), &signature)?;

        let claims = parse_object(&payload_bytes, Part::Payload)?;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<String, IdentityError> {
        match claims.get("iss") {
            None => return Err(IdentityError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(_)) => return Err(IdentityError::IssuerMismatch),
            Some(_) => return Err(IdentityError::InvalidClaim("iss")),
        }
        self.check_audience(claims.get("aud"))?;

        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IdentityError::ClockBeforeEpoch)?
            .as_secs_f64();
        let leeway = self.leeway.as_secs_f64();
        // RFC 7519 §4.1.4: the current time must be before exp.
        let exp = numeric_date(claims, "exp")?.ok_or(IdentityError::MissingClaim("exp"))?;
        if now >= exp + leeway {
            return Err(IdentityError::Expired);
        }
        // §4.1.5: the current time must be at or after nbf.
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now + leeway < nbf {
                return Err(IdentityError::NotYetValid);
            }
        }
        if let Some(iat) = numeric_date(claims, "iat")? {
            if iat > now + leeway {
                return Err(IdentityError::IssuedInFuture);
            }
        }

        match claims.get("sub") {
            None => Err(IdentityError::MissingClaim("sub")),
            Some(Value::String(sub)) if is_usable_name(sub) => Ok(sub.clone()),
            Some(_) => Err(IdentityError::InvalidClaim("sub")),
        }
    }

    /// `aud` may be one string or an array of strings (RFC 7519 §4.1.3); the
    /// configured audience must be one of them.
    fn check_audience(&self, aud: Option<&Value>) -> Result<(), IdentityError> {
        match aud {
            None => Err(IdentityError::MissingClaim("aud")),
            Some(Value::String(aud)) if *aud == self.audience => Ok(()),
            Some(Value::String(_)) => Err(IdentityError::AudienceMismatch),
            Some(Value::Array(items)) => {
                let mut found = false;
                for item in items {
                    // A non-string element means the issuer's output is not
                    // what we think it is: refuse rather than skip it.
                    let item = item.as_str().ok_or(IdentityError::InvalidClaim("aud"))?;
                    found |= item == self.audience;
                }
                if found {
                    Ok(())
                } else {
                    Err(IdentityError::AudienceMismatch)
                }
            }
            Some(_) => Err(IdentityError::InvalidClaim("aud")),
        }
    }
}

/// Checks the protected header and returns its algorithm.
fn check_header(header: &Map<String, Value>) -> Result<Alg, IdentityError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(IdentityError::InvalidHeader("alg")),
    };
    let alg = Alg::parse(alg).ok_or_else(|| IdentityError::AlgNotAllowed(clip(alg)))?;
    // Extensions we do not implement must not be silently ignored.
    if header.contains_key("crit") {
        return Err(IdentityError::UnsupportedHeader("crit"));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if is_jwt_type(typ) => {}
        Some(Value::String(typ)) => return Err(IdentityError::WrongType(clip(typ))),
        Some(_) => return Err(IdentityError::InvalidHeader("typ")),
    }
    Ok(alg)
}

/// `typ` is optional, but when present it must say JWT: other signed JWTs
/// from the same issuer (logout tokens, the gateway's own `stepup+jwt`
/// assertions, ...) must not pass as identity tokens (RFC 8725 §3.11).
/// Media type names compare case-insensitively and may omit `application/`
/// (RFC 7515 §4.1.9).
fn is_jwt_type(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    let short = lower.strip_prefix("application/").unwrap_or(&lower);
    matches!(short, "jwt" | "at+jwt")
}

fn verify_signature(key: &KeyMaterial, signing_input: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
    match key {
        KeyMaterial::Ec(key) => {
            if signature.len() != ES256_SIGNATURE_LEN {
                return Err(IdentityError::SignatureEncoding(signature.len()));
            }
            if crate::jose::jws::verify_p256(key, signing_input, signature) {
                Ok(())
            } else {
                Err(IdentityError::BadSignature)
            }
        }
        KeyMaterial::Rsa(key) => key
            .verify_sig(signing_input, signature)
            .map_err(|_| IdentityError::BadSignature),
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, possibly
/// fractional.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, IdentityError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs.is_finite() => Ok(Some(secs)),
            _ => Err(IdentityError::InvalidClaim(name)),
        },
        Some(_) => Err(IdentityError::InvalidClaim(name)),
    }
}

fn decode_object(segment: &str, part: Part) -> Result<Map<String, Value>, IdentityError> {
    let bytes = b64_decode(segment).ok_or(IdentityError::Base64(part))?;
    parse_object(&bytes, part)
}

fn parse_object(bytes: &[u8], part: Part) -> Result<Map<String, Value>, IdentityError> {
    match crate::jose::strict::parse(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(StrictError::Syntax) => Err(IdentityError::Json(part)),
        Err(StrictError::Duplicate) => Err(IdentityError::DuplicateMember(part)),
    }
}

/// Strict unpadded base64url: padding, the standard alphabet, whitespace and
/// non-canonical trailing bits are all refused, so one token has exactly one
/// encoding.
fn b64_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// An identity string we are willing to compare and log: non-empty, no
/// control characters, no surrounding whitespace ("alice " must not be a
/// second "alice").
fn is_usable_name(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.chars().any(char::is_control)
}

/// Attacker-chosen strings echoed in errors: bounded, printable ASCII only,
/// so log lines stay one line and short.
fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(CLIP_CHARS)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    if s.chars().nth(CLIP_CHARS).is_some() {
        out.push('…');
    }
    out
}

use crate::jose::strict::StrictError;

mod cert;
mod jwks;
mod request;
#[cfg(test)]
mod tests;

pub use cert::{cert_identity, cert_thumbprint};
pub use jwks::IdentityKeys;
use jwks::KeyMaterial;
pub use request::token_from_request;
