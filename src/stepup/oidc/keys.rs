//! The OP's signing keys, parsed once from its JWKS document. Keys this
//! gateway cannot or must not use (encryption keys, `oct` secrets, curves
//! outside the allowlist, entries the JWK parser does not know) are
//! skipped, so an ordinary IdP JWKS loads; a set with no usable key is an
//! error, since nothing could ever verify against it.

use super::{clip, OidcError};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Upper bound on a JWKS document; real ones are a few KiB.
pub const MAX_JWKS_LEN: usize = 256 * 1024;

pub struct ProviderKeys {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    family: Family,
    /// The `alg` the JWK pins, if any; a token must then use exactly it.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("-")).collect();
        f.debug_struct("ProviderKeys").field("kids", &kids).finish()
    }
}

impl ProviderKeys {
    /// Parses a JWK Set (RFC 7517 §5).
    pub fn parse(jwks_json: &[u8]) -> Result<Self, OidcError> {
        if jwks_json.len() > MAX_JWKS_LEN {
            return Err(OidcError::Jwks("document too large"));
        }
        let doc: serde_json::Value = serde_json::from_slice(jwks_json).map_err(|_| OidcError::Jwks("not JSON"))?;
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or(OidcError::Jwks("no keys array"))?;
        let mut keys = Vec::new();
        for entry in entries {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if entry.get("use").and_then(|u| u.as_str()).is_some_and(|u| u != "sig") {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
                // An HMAC secret has no business in a public JWKS.
                AlgorithmParameters::OctetKey(_) => continue,
                _ => continue,
            };
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
                Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
                Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
                Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
                Some(_) => continue,
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                alg,
                decoding,
            });
        }
        if keys.is_empty() {
            return Err(OidcError::Jwks("no usable ES256, RS256, PS256 or EdDSA key"));
        }
        Ok(ProviderKeys { keys })
    }

    /// Whether a key with this `kid` is known (else the caller refetches).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key a token names, fit for `alg`. Without a `kid` only a set
    /// with exactly one key of the right family is unambiguous.
    pub(super) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&DecodingKey, OidcError> {
        let family = match alg {
            Algorithm::RS256 | Algorithm::PS256 => Family::Rsa,
            Algorithm::ES256 => Family::Ec,
            Algorithm::EdDSA => Family::Okp,
            other => return Err(OidcError::AlgNotAllowed(format!("{other:?}"))),
        };
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| OidcError::UnknownKid(clip(kid)))?,
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.family == family);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => only,
                    _ => return Err(OidcError::KidRequired(format!("{alg:?}"))),
                }
            }
        };
        if key.family != family || key.alg.is_some_and(|a| a != alg) {
            return Err(OidcError::KeyMismatch(format!("{alg:?}")));
        }
        Ok(&key.decoding)
    }
}
