//! Compact JWS (RFC 7515) with ES256 (RFC 7518 §3.4) as the only algorithm.
//!
//! [`decode`] only parses; nothing in a [`Decoded`] is trustworthy until
//! [`verify_es256`] has accepted it with a key the caller chose.
//!
//! High-S signatures: ECDSA signatures are malleable (`(r, s)` and
//! `(r, n - s)` both verify). We *sign* low-S, but *accept* both, because
//! P-256 signers in the wild (including the RFC 7515 A.3 example) emit
//! high-S half the time and rejecting them would reject valid tokens from
//! external issuers. Malleability is harmless here: replay protection keys on
//! the `jti` claim, never on the token or signature bytes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::zeroize::Zeroizing;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::jose::{b64_decode, b64_encode, clip, JoseError, Part};

/// The only algorithm this module signs or verifies.
pub const ES256: &str = "ES256";

/// Upper bound on a compact token. Step-up tokens are a few hundred bytes;
/// the cap keeps hostile input from costing more than a quick rejection.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// ES256 signatures are the fixed-size `R || S` concatenation (RFC 7518 §3.4).
const SIGNATURE_LEN: usize = 64;

/// The protected-header members this crate interprets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
}

/// A structurally valid compact JWS whose signature has NOT been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: Header,
    /// The whole protected header, for callers that need other members.
    pub raw_header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) "." BASE64URL(payload)`, exactly as received.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS without verifying it.
pub fn decode(token: &str) -> Result<Decoded, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(JoseError::SegmentCount(parts.len()));
    };
    let header_bytes = b64_decode(header_b64).ok_or(JoseError::Base64(Part::Header))?;
    let payload_bytes = b64_decode(payload_b64).ok_or(JoseError::Base64(Part::Payload))?;
    let signature = b64_decode(signature_b64).ok_or(JoseError::Base64(Part::Signature))?;

    let raw_header = parse_object(&header_bytes, Part::Header)?;
    let header = interpret_header(&raw_header)?;
    let claims = parse_object(&payload_bytes, Part::Payload)?;

    Ok(Decoded {
        header,
        raw_header,
        claims,
        signing_input: format!("{header_b64}.{payload_b64}"),
        signature,
    })
}

/// Checks the signature with `key`. The caller picks the key; the token's
/// `kid` is only a hint for that choice.
pub fn verify_es256(decoded: &Decoded, key: &VerifyingKey) -> Result<(), JoseError> {
    check_shape(decoded)?;
    if verify_p256(key, decoded.signing_input.as_bytes(), &decoded.signature) {
        Ok(())
    } else {
        Err(JoseError::BadSignature)
    }
}

/// [`verify_es256`] with a key parsed ahead of time (an issuer's JWKS):
/// the same checks, without decoding and validating the point per token.
pub fn verify_es256_parsed(decoded: &Decoded, key: &Es256Public) -> Result<(), JoseError> {
    check_shape(decoded)?;
    // The same range check on r and s as `verify_p256`.
    if Signature::from_slice(&decoded.signature).is_err() {
        return Err(JoseError::BadSignature);
    }
    key.0
        .verify_sig(decoded.signing_input.as_bytes(), &decoded.signature)
        .map_err(|_| JoseError::BadSignature)
}

fn check_shape(decoded: &Decoded) -> Result<(), JoseError> {
    // Exact, case-sensitive match (RFC 7515 §4.1.1): this single comparison
    // is what shuts out `none`, HMAC-with-the-public-key and friends.
    if decoded.header.alg != ES256 {
        return Err(JoseError::UnsupportedAlg(clip(&decoded.header.alg)));
    }
    if decoded.signature.len() != SIGNATURE_LEN {
        return Err(JoseError::SignatureLength(decoded.signature.len()));
    }
    Ok(())
}

/// A P-256 verification key in aws-lc's parsed form, made once per key.
#[derive(Clone)]
pub struct Es256Public(ParsedPublicKey);

impl Es256Public {
    pub fn new(key: &VerifyingKey) -> Option<Self> {
        let point = key.to_sec1_point(false);
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes())
            .ok()
            .map(Es256Public)
    }
}

impl std::fmt::Debug for Es256Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es256Public")
    }
}

/// ES256 check of a fixed 64-byte `R || S` signature. The arithmetic runs in
/// aws-lc (already linked for TLS), about three times faster than the pure
/// Rust p256 verifier; p256 keeps parsing keys and computing thumbprints.
pub(crate) fn verify_p256(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    // Rejects r or s equal to zero or not below the group order before the
    // bytes reach aws-lc, whose own range checks then repeat this.
    if Signature::from_slice(signature).is_err() {
        return false;
    }
    let point = key.to_sec1_point(false);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes())
        .verify(message, signature)
        .is_ok()
}

/// An ES256 signing key in aws-lc form. Building one checks that the private
/// and public halves belong together, so a signer builds it once and keeps it.
pub struct Es256Key {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for Es256Key {
    // Spelled out so the private key can never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key").finish_non_exhaustive()
    }
}

impl Es256Key {
    pub fn new(key: &SigningKey) -> Result<Self, JoseError> {
        let scalar = Zeroizing::new(key.to_bytes());
        let point = key.verifying_key().to_sec1_point(false);
        let pair =
            EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &scalar, point.as_bytes())
                .map_err(|_| JoseError::Signing)?;
        Ok(Es256Key { pair })
    }
}

/// Signs `claims` under `header`, which must be an object with
/// `"alg": "ES256"` and no `crit`. Member order follows `serde_json::Value`.
pub fn encode_es256(key: &SigningKey, header: &Value, claims: &Value) -> Result<String, JoseError> {
    encode_es256_with(&Es256Key::new(key)?, header, claims)
}

/// [`encode_es256`] with a key prepared once (what a long-lived signer uses).
pub fn encode_es256_with(key: &Es256Key, header: &Value, claims: &Value) -> Result<String, JoseError> {
    check_header(header)?;
    if !claims.is_object() {
        return Err(JoseError::NotObject(Part::Payload));
    }
    let header = serde_json::to_vec(header).map_err(|_| JoseError::Serialize(Part::Header))?;
    let claims = serde_json::to_vec(claims).map_err(|_| JoseError::Serialize(Part::Payload))?;
    sign_parts(key, &header, &claims)
}

/// Like [`encode_es256`] but serializes typed values directly, so struct
/// field order is kept in the output (the assertion header is fixed text).
pub fn encode_es256_typed<H, C>(key: &Es256Key, header: &H, claims: &C) -> Result<String, JoseError>
where
    H: Serialize + ?Sized,
    C: Serialize + ?Sized,
{
    let header_value = serde_json::to_value(header).map_err(|_| JoseError::Serialize(Part::Header))?;
    let claims_value = serde_json::to_value(claims).map_err(|_| JoseError::Serialize(Part::Payload))?;
    check_header(&header_value)?;
    if !claims_value.is_object() {
        return Err(JoseError::NotObject(Part::Payload));
    }
    let header = serde_json::to_vec(header).map_err(|_| JoseError::Serialize(Part::Header))?;
    let claims = serde_json::to_vec(claims).map_err(|_| JoseError::Serialize(Part::Payload))?;
    sign_parts(key, &header, &claims)
}

/// Test and bench helper: signs `claims` under
/// `{"alg":"ES256","typ":"JWT","kid":kid}`.
///
/// # Panics
/// If `claims` is not a JSON object (a bug in the calling test).
pub fn mint_es256(key: &SigningKey, kid: &str, claims: Value) -> String {
    let header = serde_json::json!({ "alg": ES256, "typ": "JWT", "kid": kid });
    match encode_es256(key, &header, &claims) {
        Ok(token) => token,
        Err(e) => panic!("mint_es256: {e}"),
    }
}

fn check_header(header: &Value) -> Result<(), JoseError> {
    let Value::Object(map) = header else {
        return Err(JoseError::NotObject(Part::Header));
    };
    let parsed = interpret_header(map)?;
    if parsed.alg != ES256 {
        return Err(JoseError::UnsupportedAlg(clip(&parsed.alg)));
    }
    Ok(())
}

fn sign_parts(key: &Es256Key, header: &[u8], claims: &[u8]) -> Result<String, JoseError> {
    let signing_input = format!("{}.{}", b64_encode(header), b64_encode(claims));
    // aws-lc ignores the generator argument and draws its own nonce.
    let fixed = key
        .pair
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| JoseError::Signing)?;
    let signature = Signature::from_slice(fixed.as_ref()).map_err(|_| JoseError::Signing)?;
    // aws-lc does not normalise; low-S keeps our output acceptable to
    // verifiers that insist on it.
    let signature = signature.normalize_s();
    Ok(format!("{signing_input}.{}", b64_encode(signature.to_bytes())))
}

fn interpret_header(raw: &Map<String, Value>) -> Result<Header, JoseError> {
    // We understand no extensions, and RFC 7515 §4.1.11 says a recipient
    // that does not understand a listed one must reject the JWS.
    if raw.contains_key("crit") {
        return Err(JoseError::CritUnsupported);
    }
    let alg = match raw.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(JoseError::HeaderMember("alg")),
    };
    Ok(Header {
        alg,
        typ: optional_string(raw, "typ")?,
        kid: optional_string(raw, "kid")?,
    })
}

fn optional_string(raw: &Map<String, Value>, name: &'static str) -> Result<Option<String>, JoseError> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::HeaderMember(name)),
    }
}

/// Parses a JSON object, refusing duplicate member names (at any depth):
/// two `alg`s or two `sub`s invite a different JSON parser downstream to
/// read the other one.
fn parse_object(bytes: &[u8], part: Part) -> Result<Map<String, Value>, JoseError> {
    match super::strict::parse(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JoseError::NotObject(part)),
        Err(super::strict::StrictError::Duplicate) => Err(JoseError::DuplicateMember(part)),
        Err(super::strict::StrictError::Syntax) => Err(JoseError::Json(part)),
    }
}

#[cfg(test)]
mod tests;
