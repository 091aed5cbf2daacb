//! EC P-256 JSON Web Keys (RFC 7517, RFC 7518 §6.2), RFC 7638 thumbprints
//! and JWK Sets.
//!
//! [`Jwks::parse`] policy, chosen so that an issuer's ordinary JWKS (which
//! often also carries RSA keys) loads, while nothing but an ES256 key can
//! ever be used:
//! - keys that are not `kty: EC` / `crv: P-256`, that declare an `alg` other
//!   than ES256, a `use` other than `sig`, or `key_ops` without `verify` are
//!   skipped (counted in [`Jwks::skipped`]);
//! - a P-256 key that is malformed (bad coordinates, point not on the curve)
//!   or that carries a private part `d` fails the whole set: that is a broken
//!   or mishandled file, better refused at load than half-used;
//! - two keys with the same `kid` fail the set, since lookup would be
//!   ambiguous; a set with no usable key fails too.

use p256::ecdsa::VerifyingKey;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::jose::jws::Es256Public;
use crate::jose::{b64_decode, b64_encode, clip, JoseError};

/// Length of each P-256 affine coordinate; RFC 7518 §6.2.1.2 requires the
/// full length, leading zeros included.
const COORD_LEN: usize = 32;

/// RFC 7638 JWK thumbprint: base64url(SHA-256) of the required members in
/// lexicographic order with no whitespace.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let (x, y) = coordinates(key);
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64_encode(Sha256::digest(canonical.as_bytes()))
}

/// The public JWK with `kid` set to the RFC 7638 thumbprint.
pub fn public_jwk(key: &VerifyingKey) -> Value {
    jwk_with_kid(key, Some(&thumbprint(key)))
}

fn jwk_with_kid(key: &VerifyingKey, kid: Option<&str>) -> Value {
    let (x, y) = coordinates(key);
    let mut jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": x,
        "y": y,
        "use": "sig",
        "alg": "ES256",
    });
    if let (Some(kid), Value::Object(map)) = (kid, &mut jwk) {
        map.insert("kid".into(), Value::String(kid.into()));
    }
    jwk
}

/// base64url x and y of the uncompressed point `04 || x || y`.
fn coordinates(key: &VerifyingKey) -> (String, String) {
    let point = key.to_sec1_point(false);
    // A verifying key is never the identity point, so both coordinates exist.
    let x = point.x().map(b64_encode).unwrap_or_default();
    let y = point.y().map(b64_encode).unwrap_or_default();
    (x, y)
}

/// A set of ES256 verification keys, each optionally named by a `kid`.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<(Option<String>, VerifyingKey)>,
    /// Each key in aws-lc's parsed form, in the same order, so a token
    /// check does not parse the issuer's key again.
    parsed: Vec<Option<Es256Public>>,
    skipped: usize,
}

impl PartialEq for Jwks {
    fn eq(&self, other: &Self) -> bool {
        // `parsed` is derived from `keys`.
        self.keys == other.keys && self.skipped == other.skipped
    }
}

impl Eq for Jwks {}

impl Jwks {
    /// Builds a set from known keys, each named by its thumbprint. Duplicate
    /// keys are kept once, in first-seen order.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut set = Jwks::default();
        for key in keys {
            if !set.keys.iter().any(|(_, k)| *k == key) {
                set.push(Some(thumbprint(&key)), key);
            }
        }
        set
    }

    /// Parses a JWK Set document (see the module docs for what is skipped
    /// and what is refused).
    pub fn parse(json: &str) -> Result<Self, JoseError> {
        let document: Value = serde_json::from_str(json).map_err(|_| JoseError::JwksShape)?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JoseError::JwksShape);
        };
        let mut set = Jwks::default();
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(jwk) = entry else {
                return Err(invalid(index, "not a JSON object"));
            };
            match parse_jwk(index, jwk)? {
                Some((kid, key)) => {
                    if let Some(kid) = &kid {
                        if set.keys.iter().any(|(k, _)| k.as_ref() == Some(kid)) {
                            return Err(JoseError::DuplicateKid(clip(kid)));
                        }
                    }
                    set.push(kid, key);
                }
                None => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(JoseError::NoUsableKeys);
        }
        Ok(set)
    }

    fn push(&mut self, kid: Option<String>, key: VerifyingKey) {
        self.parsed.push(Es256Public::new(&key));
        self.keys.push((kid, key));
    }

    /// The key for a token's `kid`. A token without `kid` is only accepted
    /// when the set holds exactly one key, so it can never pick among several.
    pub fn get(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        self.index(kid).and_then(|i| self.keys.get(i)).map(|(_, key)| key)
    }

    /// Like [`Jwks::get`], with the key's parsed form when it has one.
    pub fn get_parsed(&self, kid: Option<&str>) -> Option<(&VerifyingKey, Option<&Es256Public>)> {
        let i = self.index(kid)?;
        let (_, key) = self.keys.get(i)?;
        Some((key, self.parsed.get(i).and_then(Option::as_ref)))
    }

    fn index(&self, kid: Option<&str>) -> Option<usize> {
        match kid {
            Some(kid) => self.keys.iter().position(|(k, _)| k.as_deref() == Some(kid)),
            None => (self.keys.len() == 1).then_some(0),
        }
    }

    /// `{"keys": [...]}`, public members only, in set order.
    pub fn to_json(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(kid, key)| jwk_with_kid(key, kid.as_deref()))
            .collect();
        json!({ "keys": keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many entries [`Jwks::parse`] ignored as not ES256 P-256 keys.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    pub fn keys(&self) -> impl Iterator<Item = (Option<&str>, &VerifyingKey)> {
        self.keys.iter().map(|(kid, key)| (kid.as_deref(), key))
    }
}

type Entry = (Option<String>, VerifyingKey);

/// `Ok(None)` means "not for us, skip"; `Err` means "refuse the whole set".
fn parse_jwk(index: usize, jwk: &Map<String, Value>) -> Result<Option<Entry>, JoseError> {
    let text = |name: &'static str| match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(invalid(index, "a member that must be a string is not")),
    };
    let Some(kty) = text("kty")? else {
        return Err(invalid(index, "missing kty"));
    };
    if kty != "EC" || text("crv")? != Some("P-256") {
        return Ok(None);
    }
    if text("alg")?.is_some_and(|alg| alg != "ES256") || text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err(invalid(index, "key_ops is not an array"));
        };
        if !ops.iter().any(|op| op == "verify") {
            return Ok(None);
        }
    }
    if jwk.contains_key("d") {
        return Err(invalid(index, "contains private key material (d)"));
    }
    let x = coordinate(index, text("x")?)?;
    let y = coordinate(index, text("y")?)?;
    let mut sec1 = Vec::with_capacity(1 + 2 * COORD_LEN);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| invalid(index, "point is not on P-256"))?;
    Ok(Some((text("kid")?.map(str::to_owned), key)))
}

fn coordinate(index: usize, text: Option<&str>) -> Result<Vec<u8>, JoseError> {
    let bytes = text
        .and_then(b64_decode)
        .ok_or_else(|| invalid(index, "x or y missing or not base64url"))?;
    if bytes.len() != COORD_LEN {
        return Err(invalid(index, "x or y is not 32 bytes"));
    }
    Ok(bytes)
}

fn invalid(index: usize, reason: &'static str) -> JoseError {
    JoseError::InvalidJwk { index, reason }
}

#[cfg(test)]
mod tests;
