//! Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use super::*;
use p256::ecdsa::SigningKey;

const RFC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const RFC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// RFC 7638 thumbprint of the RFC 7515 A.3 key, computed independently with
/// Python's hashlib:
///   s = '{"crv":"P-256","kty":"EC","x":"<RFC_X>","y":"<RFC_Y>"}'
///   base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest()).rstrip(b"=")
const RFC_THUMBPRINT: &str = "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";

fn vk(seed: u8) -> VerifyingKey {
    *SigningKey::from_slice(&[seed; 32]).unwrap().verifying_key()
}

fn ec_jwk(x: &str, y: &str, extra: &str) -> String {
    format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"{extra}}}"#)
}

fn set(entries: &[String]) -> String {
    format!(r#"{{"keys":[{}]}}"#, entries.join(","))
}

fn rfc_key() -> VerifyingKey {
    *Jwks::parse(&set(&[ec_jwk(RFC_X, RFC_Y, "")]))
        .unwrap()
        .get(None)
        .unwrap()
}

#[test]
fn thumbprint_matches_independent_computation() {
    assert_eq!(thumbprint(&rfc_key()), RFC_THUMBPRINT);
}

#[test]
fn public_jwk_has_exactly_the_public_members() {
    let key = rfc_key();
    assert_eq!(
        public_jwk(&key),
        json!({
            "kty": "EC", "crv": "P-256", "x": RFC_X, "y": RFC_Y,
            "kid": RFC_THUMBPRINT, "use": "sig", "alg": "ES256",
        })
    );
}

#[test]
fn foreign_keys_are_skipped_not_used() {
    let rfc = ec_jwk(RFC_X, RFC_Y, r#","kid":"good""#);
    let json = set(&[
        r#"{"kty":"RSA","kid":"rsa","n":"sXch","e":"AQAB"}"#.into(),
        r#"{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}"#.into(),
        r#"{"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"}"#.into(),
        ec_jwk(RFC_X, RFC_Y, r#","kid":"as-rs256","alg":"RS256""#),
        ec_jwk(RFC_X, RFC_Y, r#","kid":"as-es256k","alg":"ES256K""#),
        ec_jwk(RFC_X, RFC_Y, r#","kid":"enc","use":"enc""#),
        ec_jwk(RFC_X, RFC_Y, r#","kid":"sign-only","key_ops":["sign"]"#),
        rfc,
    ]);
    let jwks = Jwks::parse(&json).unwrap();
    assert_eq!(jwks.len(), 1);
    assert_eq!(jwks.skipped(), 7);
    assert_eq!(jwks.get(Some("good")), Some(&rfc_key()));
    for kid in ["rsa", "hmac", "p384", "as-rs256", "as-es256k", "enc", "sign-only"] {
        assert_eq!(jwks.get(Some(kid)), None, "{kid}");
    }
    // The single usable key also answers a kid-less lookup.
    assert_eq!(jwks.get(None), Some(&rfc_key()));
}

#[test]
fn broken_p256_keys_fail_the_whole_set() {
    let flipped_y = format!("{}E", &RFC_Y[..RFC_Y.len() - 1]);
    let short_x = b64_encode([7u8; 31]);
    for (entry, reason) in [
        (ec_jwk(RFC_X, &flipped_y, ""), "point is not on P-256"),
        (ec_jwk(&short_x, RFC_Y, ""), "x or y is not 32 bytes"),
        (
            ec_jwk(&format!("{RFC_X}="), RFC_Y, ""),
            "x or y missing or not base64url",
        ),
        (
            r#"{"kty":"EC","crv":"P-256","x":"AA"}"#.into(),
            "x or y is not 32 bytes",
        ),
        (
            ec_jwk(RFC_X, RFC_Y, r#","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI""#),
            "contains private key material (d)",
        ),
        (r#"{"crv":"P-256"}"#.into(), "missing kty"),
        (r#"{"kty":1}"#.into(), "a member that must be a string is not"),
        ("[]".into(), "not a JSON object"),
    ] {
        let json = set(&[ec_jwk(RFC_X, RFC_Y, r#","kid":"ok""#), entry]);
        assert_eq!(
            Jwks::parse(&json),
            Err(JoseError::InvalidJwk { index: 1, reason }),
            "{json}"
        );
    }
}

#[test]
fn set_level_errors() {
    assert_eq!(Jwks::parse("not json"), Err(JoseError::JwksShape));
    assert_eq!(Jwks::parse("[]"), Err(JoseError::JwksShape));
    assert_eq!(Jwks::parse(r#"{"keys":{}}"#), Err(JoseError::JwksShape));
    assert_eq!(Jwks::parse(r#"{"keys":[]}"#), Err(JoseError::NoUsableKeys));
    let rsa_only = set(&[r#"{"kty":"RSA","n":"sXch","e":"AQAB"}"#.into()]);
    assert_eq!(Jwks::parse(&rsa_only), Err(JoseError::NoUsableKeys));
    let twice = set(&[
        ec_jwk(RFC_X, RFC_Y, r#","kid":"same""#),
        public_jwk(&vk(1)).to_string().replace(&thumbprint(&vk(1)), "same"),
    ]);
    assert_eq!(Jwks::parse(&twice), Err(JoseError::DuplicateKid("same".into())));
}

#[test]
fn lookup_without_kid_needs_exactly_one_key() {
    let jwks = Jwks::from_keys([vk(1), vk(2)]);
    assert_eq!(jwks.get(None), None);
    assert_eq!(jwks.get(Some(&thumbprint(&vk(2)))), Some(&vk(2)));
    assert_eq!(jwks.get(Some("nope")), None);
    assert_eq!(Jwks::from_keys([vk(1)]).get(None), Some(&vk(1)));
}

#[test]
fn to_json_roundtrips_and_keeps_order() {
    let jwks = Jwks::from_keys([vk(3), vk(1), vk(3), vk(2)]);
    assert_eq!(jwks.len(), 3);
    let json = jwks.to_json();
    let kids: Vec<&str> = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [thumbprint(&vk(3)), thumbprint(&vk(1)), thumbprint(&vk(2))]);
    assert_eq!(Jwks::parse(&json.to_string()).unwrap(), jwks);
}
