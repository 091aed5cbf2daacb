use super::*;
use crate::jose::jws::encode_es256;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::SigningKey;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const CREATED: u64 = NOW - 20;

struct Op {
    key: SigningKey,
    kid: String,
    keys: ProviderKeys,
}

fn op() -> Op {
    let (key, _) = crate::assertion::generate_signing_key();
    let jwk = crate::jose::jwk::public_jwk(key.verifying_key());
    let kid = jwk["kid"].as_str().expect("kid").to_owned();
    let keys = ProviderKeys::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks");
    Op { key, kid, keys }
}

fn acr() -> Vec<String> {
    vec!["phr".into(), "phrh".into()]
}

fn expect(acr: &[String]) -> Expect<'_> {
    Expect {
        issuer: "https://op.test",
        client_id: "stepgate",
        nonce: Some("n-123"),
        acr,
        max_age_secs: 300,
        not_before: CREATED,
    }
}

fn claims(over: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "iss": "https://op.test", "aud": "stepgate", "sub": "alice", "iat": NOW - 2, "exp": NOW + 60,
        "nonce": "n-123", "acr": "phr", "amr": ["pwd", "otp"], "auth_time": NOW - 5,
    });
    for (k, v) in over.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(op: &Op, typ: &str, c: serde_json::Value) -> String {
    encode_es256(&op.key, &json!({ "alg": "ES256", "typ": typ, "kid": op.kid }), &c).expect("sign")
}

fn id(op: &Op, over: serde_json::Value) -> Result<Verified, OidcError> {
    let acr = acr();
    verify_id_token(&sign(op, "JWT", claims(over)), &op.keys, &expect(&acr), NOW)
}

#[test]
fn a_fresh_id_token_at_an_accepted_acr_verifies() {
    let op = op();
    let v = id(&op, json!({})).expect("valid");
    assert_eq!(v.sub, "alice");
    assert_eq!(v.acr.as_deref(), Some("phr"));
    assert_eq!(v.amr, ["pwd", "otp"]);
    assert_eq!(v.auth_time, NOW - 5);
    // Several audiences with azp naming us is fine.
    assert!(id(&op, json!({ "aud": ["stepgate", "other"], "azp": "stepgate" })).is_ok());
}

#[test]
fn each_claim_check_refuses() {
    let op = op();
    let cases = [
        (json!({ "iss": "https://evil.test" }), "iss"),
        (json!({ "aud": "someone-else" }), "aud"),
        (json!({ "aud": ["stepgate", "other"] }), "azp"),
        (json!({ "azp": "other" }), "azp"),
        (json!({ "exp": NOW - 100 }), "expired"),
        (json!({ "iat": NOW + 100 }), "future"),
        (json!({ "nonce": "n-999" }), "nonce"),
        (json!({ "nonce": null }), "nonce"),
        (json!({ "acr": "urn:stepgate:test:pwd" }), "acr"),
        (json!({ "acr": null }), "acr"),
        (json!({ "auth_time": NOW - 3600 }), "before the hold"),
        (json!({ "auth_time": null }), "auth_time"),
        (json!({ "sub": "" }), "sub"),
    ];
    for (over, want) in cases {
        let e = id(&op, over.clone()).expect_err(&over.to_string());
        assert!(e.to_string().contains(want), "{over}: {e}");
    }
}

#[test]
fn stale_auth_time_is_refused_even_after_the_hold_was_created() {
    let op = op();
    let acr = acr();
    let mut e = expect(&acr);
    e.not_before = NOW - 4000;
    let token = sign(&op, "JWT", claims(json!({ "auth_time": NOW - 3600 })));
    let err = verify_id_token(&token, &op.keys, &e, NOW).expect_err("stale");
    assert!(matches!(err, OidcError::Stale { .. }), "{err}");
}

#[test]
fn alg_none_hmac_and_tampering_are_refused() {
    let op = op();
    let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    let acr = acr();
    let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    let e = verify_id_token(&none, &op.keys, &expect(&acr), NOW).expect_err("none");
    assert!(matches!(e, OidcError::AlgNotAllowed(_)), "{e}");
    let hs = format!(
        "{}.{body}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, op.kid))
    );
    let e = verify_id_token(&hs, &op.keys, &expect(&acr), NOW).expect_err("hs256");
    assert!(matches!(e, OidcError::AlgNotAllowed(_)), "{e}");
    // A valid token's payload swapped for another sub.
    let good = sign(&op, "JWT", claims(json!({})));
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims(json!({ "sub": "mallory" })).to_string());
    parts[1] = &forged;
    let e = verify_id_token(&parts.join("."), &op.keys, &expect(&acr), NOW).expect_err("forged");
    assert_eq!(e, OidcError::BadSignature);
    // A key the OP never published.
    let other = Op {
        key: crate::assertion::generate_signing_key().0,
        ..op
    };
    let e = verify_id_token(&sign(&other, "JWT", claims(json!({}))), &other.keys, &expect(&acr), NOW);
    assert_eq!(e, Err(OidcError::BadSignature));
}

#[test]
fn unknown_kid_is_reported_so_the_caller_can_refetch() {
    let op = op();
    let other = op_with_kid("rotated");
    let acr = acr();
    let token = sign(&other, "JWT", claims(json!({})));
    let e = verify_id_token(&token, &op.keys, &expect(&acr), NOW).expect_err("unknown");
    assert_eq!(e, OidcError::UnknownKid("rotated".into()));
    assert!(verify_id_token(&token, &other.keys, &expect(&acr), NOW).is_ok());
}

fn op_with_kid(kid: &str) -> Op {
    let (key, _) = crate::assertion::generate_signing_key();
    let mut jwk = crate::jose::jwk::public_jwk(key.verifying_key());
    jwk["kid"] = json!(kid);
    let keys = ProviderKeys::parse(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks");
    Op {
        key,
        kid: kid.into(),
        keys,
    }
}

#[test]
fn access_tokens_need_at_jwt_and_fresh_auth_time() {
    let op = op();
    let acr = acr();
    let mut e = expect(&acr);
    e.nonce = None;
    e.not_before = 0;
    let at = |typ: &str, over| sign(&op, typ, claims(over));
    let v = verify_access_token(&at("at+jwt", json!({ "nonce": null })), &op.keys, &e, NOW).expect("at+jwt");
    assert_eq!(v.sub, "alice");
    let err = verify_access_token(&at("JWT", json!({})), &op.keys, &e, NOW).expect_err("id token as access");
    assert!(matches!(err, OidcError::WrongType(_)), "{err}");
    let err =
        verify_access_token(&at("at+jwt", json!({ "auth_time": NOW - 3600 })), &op.keys, &e, NOW).expect_err("stale");
    assert!(matches!(err, OidcError::Stale { .. }), "{err}");
    // And an access token is no ID token.
    let err = verify_id_token(&at("at+jwt", json!({})), &op.keys, &expect(&acr), NOW).expect_err("typ");
    assert!(matches!(err, OidcError::WrongType(_)), "{err}");
}

#[test]
fn jwks_skips_what_it_cannot_use_and_refuses_an_empty_set() {
    let op = op();
    let ec = crate::jose::jwk::public_jwk(op.key.verifying_key());
    let doc = json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
        { "kty": "EC", "crv": "P-256", "use": "enc", "x": ec["x"], "y": ec["y"], "kid": "enc" },
        { "kty": "weird" },
        ec,
    ]});
    let keys = ProviderKeys::parse(doc.to_string().as_bytes()).expect("one usable");
    assert!(keys.has_kid(&op.kid) && !keys.has_kid("hmac") && !keys.has_kid("enc"));
    assert!(ProviderKeys::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
    assert!(ProviderKeys::parse(b"[]").is_err());
}
