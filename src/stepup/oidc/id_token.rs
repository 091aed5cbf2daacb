//! ID token (OIDC Core §3.1.3.7) and RFC 9068 access token checks.

use super::keys::ProviderKeys;
use super::{clip, OidcError, LEEWAY_SECS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

/// Upper bound on a token from the OP.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An ID token is minted for this callback; one older than this was not.
const MAX_ID_TOKEN_AGE_SECS: u64 = 600;

/// What the token must say.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The flow's nonce (ID tokens only).
    pub nonce: Option<&'a str>,
    /// The route's `require.acr`; empty accepts any.
    pub acr: &'a [String],
    pub max_age_secs: u64,
    /// Unix seconds the authentication may not precede: the hold's creation.
    pub not_before: u64,
}

/// The facts a verified token contributes to the assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sub: String,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: u64,
    pub exp: u64,
}

/// Verifies an ID token from the token endpoint of this flow.
pub fn verify_id_token(token: &str, keys: &ProviderKeys, expect: &Expect<'_>, now: u64) -> Result<Verified, OidcError> {
    let (claims, typ) = signed_claims(token, keys)?;
    // An access token or a logout token is not an ID token, even when the
    // same key signed it.
    if let Some(typ) = typ.filter(|t| !t.eq_ignore_ascii_case("JWT")) {
        return Err(OidcError::WrongType(clip(&typ)));
    }
    let v = common(&claims, expect, now)?;
    if let Some(azp) = claims.get("azp") {
        if azp.as_str() != Some(expect.client_id) {
            return Err(OidcError::AuthorizedParty(clip(&azp.to_string())));
        }
    } else if matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1) {
        // §3.1.3.7 (4)/(5): several audiences need azp naming us.
        return Err(OidcError::Claim("azp"));
    }
    let iat = number(&claims, "iat")?;
    if iat > now + LEEWAY_SECS {
        return Err(OidcError::IssuedInFuture { iat, now });
    }
    if now.saturating_sub(iat) > MAX_ID_TOKEN_AGE_SECS {
        return Err(OidcError::Expired {
            exp: iat + MAX_ID_TOKEN_AGE_SECS,
            now,
        });
    }
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or(OidcError::Claim("nonce"))?;
    let want = expect.nonce.ok_or(OidcError::Nonce)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(nonce.as_bytes(), want.as_bytes())) {
        return Err(OidcError::Nonce);
    }
    Ok(v)
}

/// Verifies an RFC 9068 access token (`typ: at+jwt`) whose audience names
/// this gateway's client, with a fresh enough `auth_time` and an accepted
/// `acr`: the bearer-token proof of SPEC §5.
pub fn verify_access_token(
    token: &str,
    keys: &ProviderKeys,
    expect: &Expect<'_>,
    now: u64,
) -> Result<Verified, OidcError> {
    let (claims, typ) = signed_claims(token, keys)?;
    // RFC 9068 §4: the typ check is what keeps an ID token from being
    // replayed as an access token.
    match typ.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {}
        other => return Err(OidcError::WrongType(clip(other.unwrap_or("")))),
    }
    let iat = number(&claims, "iat")?;
    if iat > now + LEEWAY_SECS {
        return Err(OidcError::IssuedInFuture { iat, now });
    }
    common(&claims, expect, now)
}

/// iss, aud, exp, sub, acr and auth_time: what both token kinds check.
fn common(claims: &Map<String, Value>, expect: &Expect<'_>, now: u64) -> Result<Verified, OidcError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(OidcError::Claim("iss"))?;
    if iss != expect.issuer {
        return Err(OidcError::Issuer(clip(iss)));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expect.client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expect.client_id)),
        _ => return Err(OidcError::Claim("aud")),
    };
    if !aud_ok {
        return Err(OidcError::Audience);
    }
    let exp = number(claims, "exp")?;
    if now > exp + LEEWAY_SECS {
        return Err(OidcError::Expired { exp, now });
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(OidcError::Claim("sub"))?;
    let acr = match claims.get("acr") {
        None => None,
        Some(Value::String(a)) => Some(a.clone()),
        Some(_) => return Err(OidcError::Claim("acr")),
    };
    if !expect.acr.is_empty() {
        let got = acr.clone().unwrap_or_default();
        if !expect.acr.contains(&got) {
            return Err(OidcError::Acr {
                got: clip(&got),
                want: expect.acr.join(" "),
            });
        }
    }
    let auth_time = number(claims, "auth_time")?;
    if auth_time > now + LEEWAY_SECS {
        return Err(OidcError::AuthInFuture(auth_time));
    }
    if auth_time + LEEWAY_SECS < expect.not_before {
        return Err(OidcError::AuthBeforeHold {
            auth_time,
            created: expect.not_before,
        });
    }
    let age = now.saturating_sub(auth_time);
    if age > expect.max_age_secs + LEEWAY_SECS {
        return Err(OidcError::Stale {
            age,
            max_age: expect.max_age_secs,
        });
    }
    let amr = match claims.get("amr") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect(),
        Some(_) => return Err(OidcError::Claim("amr")),
    };
    Ok(Verified {
        sub: sub.to_owned(),
        acr,
        amr,
        auth_time,
        exp,
    })
}

/// Checks the header against the allowlist, picks the key, verifies the
/// signature, and returns the claims and the header's `typ`.
fn signed_claims(token: &str, keys: &ProviderKeys) -> Result<(Map<String, Value>, Option<String>), OidcError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(OidcError::Malformed);
    }
    let header_b64 = token.split('.').next().ok_or(OidcError::Malformed)?;
    if token.split('.').count() != 3 {
        return Err(OidcError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| OidcError::Malformed)?;
    let header: Map<String, Value> = serde_json::from_slice(&header_bytes).map_err(|_| OidcError::Malformed)?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(OidcError::Malformed)?;
    // Exact names: `none`, `HS256` (the client secret as key), `None`...
    // never reach key selection.
    let alg = match alg_name {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(OidcError::AlgNotAllowed(clip(other))),
    };
    if header.contains_key("crit") {
        return Err(OidcError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(OidcError::Malformed),
    };
    let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
    let key = keys.select(kid, alg)?;
    let mut validation = Validation::new(alg);
    // Time and audience are checked above, against the caller's `now`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => OidcError::BadSignature,
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => OidcError::KeyMismatch(alg_name.to_owned()),
        _ => OidcError::Malformed,
    })?;
    Ok((data.claims, typ))
}

fn number(claims: &Map<String, Value>, name: &'static str) -> Result<u64, OidcError> {
    claims.get(name).and_then(Value::as_u64).ok_or(OidcError::Claim(name))
}

#[cfg(test)]
mod tests;
