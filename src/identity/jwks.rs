//! The identity provider's JWKS: EC P-256 and RSA keys, parsed once.

use super::*;

/// The verification keys of one issuer, parsed once from its JWKS.
#[derive(Debug, Clone)]
pub struct IdentityKeys {
    keys: Vec<IdentityKey>,
}

#[derive(Debug, Clone)]
pub(super) struct IdentityKey {
    kid: Option<String>,
    pub(super) material: KeyMaterial,
}

#[derive(Debug, Clone)]
pub(super) enum KeyMaterial {
    Ec(VerifyingKey),
    /// Parsed (and so validated) at load time, not per request.
    Rsa(ParsedPublicKey),
}

impl KeyMaterial {
    pub(super) fn alg(&self) -> Alg {
        match self {
            KeyMaterial::Ec(_) => Alg::Es256,
            KeyMaterial::Rsa(_) => Alg::Rs256,
        }
    }

    pub(super) fn kty(&self) -> &'static str {
        match self {
            KeyMaterial::Ec(_) => "EC",
            KeyMaterial::Rsa(_) => "RSA",
        }
    }
}

impl IdentityKeys {
    /// Parses a JWK Set (RFC 7517 §5). Keys this module cannot use for
    /// ES256/RS256 verification (other curves or key types, `use: enc`,
    /// `key_ops` without `verify`, a different `alg`) are skipped; a key that
    /// claims to be usable but is broken, or that carries private material,
    /// is an error, so that a bad file fails at startup rather than on every
    /// request.
    ///
    /// # Errors
    ///
    /// `JwksMalformed`, `JwksKey`, `JwksDuplicateKid` or `JwksNoUsableKey`.
    pub fn from_jwks(jwks_json: &str) -> Result<Self, IdentityError> {
        let doc = crate::jose::strict::parse(jwks_json.as_bytes()).map_err(|e| {
            IdentityError::JwksMalformed(match e {
                StrictError::Syntax => "not JSON".to_owned(),
                StrictError::Duplicate => "a member name appears twice".to_owned(),
            })
        })?;
        let entries = match doc {
            Value::Object(mut top) => match top.remove("keys") {
                Some(Value::Array(entries)) => entries,
                _ => return Err(IdentityError::JwksMalformed("\"keys\" must be an array".to_owned())),
            },
            _ => return Err(IdentityError::JwksMalformed("not a JSON object".to_owned())),
        };

        let mut keys = Vec::new();
        let mut kids = HashSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(key) = parse_jwk(entry).map_err(|reason| IdentityError::JwksKey { index, reason })? else {
                continue;
            };
            if let Some(kid) = &key.kid {
                if !kids.insert(kid.clone()) {
                    return Err(IdentityError::JwksDuplicateKid(clip(kid)));
                }
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(IdentityError::JwksNoUsableKey);
        }
        Ok(Self { keys })
    }

    /// How many usable keys were loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false for a successfully parsed set; here for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Picks the key a token names. Without a `kid` the choice is only
    /// unambiguous when there is exactly one key; trying every key instead
    /// would let the token's alg steer which key type gets used.
    pub(super) fn select(&self, kid: Option<&str>) -> Result<&IdentityKey, IdentityError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or_else(|| IdentityError::UnknownKid(clip(kid))),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                all => Err(IdentityError::KidRequired(all.len())),
            },
        }
    }
}

/// `Ok(None)`: a well-formed key this module does not use.
fn parse_jwk(entry: &Value) -> Result<Option<IdentityKey>, &'static str> {
    let Value::Object(jwk) = entry else {
        return Err("not a JSON object");
    };
    let kty = optional_str(jwk, "kty")?.ok_or("missing kty")?;
    let kid = optional_str(jwk, "kid")?.map(str::to_owned);

    // Intended for encryption, or not for verification: not ours to use.
    if optional_str(jwk, "use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err("key_ops is not an array");
        };
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let declared_alg = optional_str(jwk, "alg")?;

    let material = match kty {
        "EC" => {
            if optional_str(jwk, "crv")? != Some("P-256") || declared_alg.is_some_and(|a| a != "ES256") {
                return Ok(None);
            }
            refuse_private(jwk, &["d"])?;
            let x = jwk_bytes(jwk, "x")?;
            let y = jwk_bytes(jwk, "y")?;
            if x.len() != P256_COORDINATE_LEN || y.len() != P256_COORDINATE_LEN {
                return Err("EC coordinates must be 32 bytes each");
            }
            // SEC1 uncompressed point: 0x04 || x || y. Parsing checks that it
            // is on the curve and not the identity.
            let mut sec1 = Vec::with_capacity(1 + 2 * P256_COORDINATE_LEN);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "EC point is not on P-256")?;
            KeyMaterial::Ec(key)
        }
        "RSA" => {
            if declared_alg.is_some_and(|a| a != "RS256") {
                return Ok(None);
            }
            refuse_private(jwk, &["d", "p", "q", "dp", "dq", "qi"])?;
            let n = jwk_bytes(jwk, "n")?;
            let e = jwk_bytes(jwk, "e")?;
            // RFC 7518 forbids leading zero octets, but some producers emit
            // one (a sign byte); the value is unambiguous, so strip rather
            // than reject. aws-lc-rs requires the minimal form.
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            let bits = bit_length(n);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err("RSA modulus must be 2048 to 8192 bits");
            }
            let key = RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| "not a valid RSA public key")?;
            KeyMaterial::Rsa(key)
        }
        // OKP, oct (an HMAC secret has no business here), anything newer.
        _ => return Ok(None),
    };
    Ok(Some(IdentityKey { kid, material }))
}

fn optional_str<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, &'static str> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("a member that must be a string is not one"),
    }
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, &'static str> {
    let text = optional_str(jwk, name)?.ok_or("missing key parameter")?;
    b64_decode(text).ok_or("key parameter is not unpadded base64url")
}

/// A gateway only ever needs the issuer's public key. Private members mean
/// the issuer's signing key was copied to the gateway host: refuse loudly.
fn refuse_private(jwk: &Map<String, Value>, members: &[&str]) -> Result<(), &'static str> {
    if members.iter().any(|m| jwk.contains_key(*m)) {
        return Err("contains private key material; configure the public JWKS only");
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn bit_length(minimal_be: &[u8]) -> usize {
    match minimal_be.first() {
        None => 0,
        // Callers pass a minimal encoding, so `top` is non-zero and this is
        // exact; saturating keeps a zero top byte from underflowing.
        Some(top) => minimal_be
            .len()
            .saturating_mul(8)
            .saturating_sub(top.leading_zeros() as usize),
    }
}
