//! Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::jose::jws;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const NOW: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn signer(retired: Vec<VerifyingKey>) -> AssertionSigner {
    AssertionSigner::new(
        key(1),
        retired,
        "stepgate".into(),
        "legacy-admin".into(),
        Duration::from_secs(90),
    )
    .unwrap()
}

fn facts() -> AssertionFacts {
    AssertionFacts {
        sub: "alice".into(),
        sid: "sid-1".into(),
        act: "user.delete".into(),
        route: "delete-user".into(),
        txn: "txn-1".into(),
        htm: "POST".into(),
        htu: "https://admin.example/admin/users/7".into(),
        amr: vec!["otp".into()],
        acr: "aal2".into(),
        auth_time: NOW - 5,
        ..Default::default()
    }
}

fn claims_of(token: &str) -> serde_json::Map<String, Value> {
    jws::decode(token).unwrap().claims
}

fn names(claims: &serde_json::Map<String, Value>) -> BTreeSet<&str> {
    claims.keys().map(String::as_str).collect()
}

const REQUIRED: [&str; 15] = [
    "iss",
    "aud",
    "iat",
    "exp",
    "jti",
    "sub",
    "sid",
    "act",
    "route",
    "txn",
    "htm",
    "htu",
    "amr",
    "acr",
    "auth_time",
];

#[test]
fn header_is_the_fixed_text() {
    let signer = signer(vec![]);
    let signed = signer.sign(&facts(), at(NOW)).unwrap();
    let header_b64 = signed.token.split('.').next().unwrap();
    let header = crate::jose::b64_decode(header_b64).unwrap();
    let expected = format!(
        r#"{{"alg":"ES256","typ":"stepup+jwt","kid":"{}"}}"#,
        jwk::thumbprint(key(1).verifying_key())
    );
    assert_eq!(String::from_utf8(header).unwrap(), expected);
    assert_eq!(signer.kid(), jwk::thumbprint(key(1).verifying_key()));
}

#[test]
fn minimal_claims_are_exactly_the_required_ones() {
    let signed = signer(vec![]).sign(&facts(), at(NOW)).unwrap();
    let claims = claims_of(&signed.token);
    assert_eq!(names(&claims), BTreeSet::from(REQUIRED));
    let expected = json!({
        "iss": "stepgate", "aud": "legacy-admin", "iat": NOW, "exp": NOW + 90,
        "jti": signed.jti, "sub": "alice", "sid": "sid-1", "act": "user.delete",
        "route": "delete-user", "txn": "txn-1", "htm": "POST",
        "htu": "https://admin.example/admin/users/7", "amr": ["otp"], "acr": "aal2",
        "auth_time": NOW - 5,
    });
    assert_eq!(Value::Object(claims), expected);
    assert_eq!(signed.exp, NOW + 90);
}

#[test]
fn optional_claims_appear_when_they_apply() {
    let facts = AssertionFacts {
        approvers: vec![ApproverClaim {
            sub: "bob".into(),
            at: NOW - 2,
        }],
        hold: Some("hold-1".into()),
        risk: vec!["outside_hours".into()],
        break_glass: true,
        reuse: true,
        ..facts()
    };
    let claims = claims_of(&signer(vec![]).sign(&facts, at(NOW)).unwrap().token);
    let optional = ["approvers", "hold", "risk", "break_glass", "reuse"];
    let expected: BTreeSet<&str> = REQUIRED.iter().chain(&optional).copied().collect();
    assert_eq!(names(&claims), expected);
    assert_eq!(claims["approvers"], json!([{"sub": "bob", "at": NOW - 2}]));
    assert_eq!(claims["hold"], "hold-1");
    assert_eq!(claims["risk"], json!(["outside_hours"]));
    assert_eq!(claims["break_glass"], true);
    assert_eq!(claims["reuse"], true);
}

#[test]
fn ttl_must_be_whole_seconds_within_bounds() {
    for secs in [0, 301, 3600] {
        let ttl = Duration::from_secs(secs);
        let result = AssertionSigner::new(key(1), vec![], "i".into(), "a".into(), ttl);
        assert_eq!(result.unwrap_err(), AssertionError::TtlOutOfRange(ttl));
    }
    let fractional = Duration::from_millis(1500);
    assert!(AssertionSigner::new(key(1), vec![], "i".into(), "a".into(), fractional).is_err());
    for secs in [1, 300] {
        let ttl = Duration::from_secs(secs);
        assert!(AssertionSigner::new(key(1), vec![], "i".into(), "a".into(), ttl).is_ok());
    }
}

#[test]
fn empty_issuer_audience_or_binding_is_refused() {
    let ttl = Duration::from_secs(60);
    let no_iss = AssertionSigner::new(key(1), vec![], String::new(), "a".into(), ttl);
    assert_eq!(no_iss.unwrap_err(), AssertionError::Empty("issuer"));
    let no_aud = AssertionSigner::new(key(1), vec![], "i".into(), String::new(), ttl);
    assert_eq!(no_aud.unwrap_err(), AssertionError::Empty("audience"));
    let facts = AssertionFacts {
        txn: String::new(),
        ..facts()
    };
    assert_eq!(
        signer(vec![]).sign(&facts, at(NOW)).unwrap_err(),
        AssertionError::Empty("txn")
    );
}

#[test]
fn every_signature_gets_a_fresh_jti() {
    let signer = signer(vec![]);
    let a = signer.sign(&facts(), at(NOW)).unwrap();
    let b = signer.sign(&facts(), at(NOW)).unwrap();
    assert_ne!(a.jti, b.jti);
    assert_ne!(a.token, b.token);
    assert_eq!(a.jti.len(), 22, "128 bits in base64url");
    assert_eq!(claims_of(&a.token)["jti"], a.jti.as_str());
}

#[test]
fn jwks_lists_current_then_retired_and_verifies_by_kid() {
    let signer = signer(vec![*key(2).verifying_key(), *key(1).verifying_key()]);
    let jwks_json = signer.jwks();
    let kids: Vec<&str> = jwks_json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let current = jwk::thumbprint(key(1).verifying_key());
    let retired = jwk::thumbprint(key(2).verifying_key());
    assert_eq!(kids, [current.as_str(), retired.as_str()]);

    let jwks = Jwks::parse(&jwks_json.to_string()).unwrap();
    let decoded = jws::decode(&signer.sign(&facts(), at(NOW)).unwrap().token).unwrap();
    let by_kid = jwks.get(decoded.header.kid.as_deref()).unwrap();
    jws::verify_es256(&decoded, by_kid).unwrap();
    let old = jwks.get(Some(&retired)).unwrap();
    assert_eq!(jws::verify_es256(&decoded, old), Err(JoseError::BadSignature));
}

#[test]
fn clock_before_epoch_is_an_error() {
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        signer(vec![]).sign(&facts(), before).unwrap_err(),
        AssertionError::ClockBeforeEpoch
    );
}

#[test]
fn debug_does_not_print_the_key() {
    let text = format!("{:?}", signer(vec![]));
    assert!(!text.contains("SigningKey") && !text.contains("secret"), "{text}");
}

#[test]
fn generated_key_roundtrips_through_pem() {
    let (key, pem) = generate_signing_key();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(load_signing_key_pem(&pem).unwrap(), key);
    assert_eq!(load_public_key_pem(&pem).unwrap(), *key.verifying_key());
    let spki = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    assert_eq!(load_public_key_pem(&spki).unwrap(), *key.verifying_key());
    assert_ne!(generate_signing_key().0, key);
}

/// `openssl ecparam -name prime256v1 -genkey` writes an EC PARAMETERS block
/// before a SEC1 key; both forms must load.
#[test]
fn sec1_pem_with_parameters_block_loads() {
    let key = key(9);
    let sec1 = p256::SecretKey::from(&key).to_sec1_pem(LineEnding::LF).unwrap();
    let text = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        *sec1
    );
    assert_eq!(load_signing_key_pem(&text).unwrap(), key);
    assert_eq!(load_public_key_pem(&text).unwrap(), *key.verifying_key());
}

/// Throwaway P-384 test keys (`openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-384`, then `openssl pkey -pubout`): well-formed PEM of
/// the wrong curve.
const P384_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDB4KfVfNc21b+ah/ABn
y2ERxM0uWJDnG14W8lcN09dcg/vj1q5qeQA3npXBmIHQbN6hZANiAAQTdZJd7WqO
SskldFp/Ms9qksqnsIttwx4Qk3nuI6FHV7p3wPXnmHsXxMhU+OHXz6y0qgHPNx8W
mOXXLYS39WHZg8U7GKuFxXc01lqYZaxif8ouOkANm2e/PBwBUdb8ACI=
-----END PRIVATE KEY-----
";
const P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE20yEO5JKv/ZGxiCDkamPd58QbEG+dvmT
GbyPR3yT8i1ZtS2RJoTOU9alncvUDqCRvu9gcdTWdNSDGmhdid6D+MfFSazOT1VM
75ysl1Vf4QrYpeTtOszviBRG1i7Ftcw9
-----END PUBLIC KEY-----
";

#[test]
fn wrong_pem_is_refused_without_echoing_it() {
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----";
    for (text, reason) in [
        (P384_PRIVATE, "PRIVATE KEY block is not a P-256 PKCS#8 key"),
        (P384_PUBLIC, "no PRIVATE KEY or EC PRIVATE KEY PEM block"),
        ("garbage", "no PRIVATE KEY or EC PRIVATE KEY PEM block"),
        (encrypted, "encrypted private keys are not supported"),
    ] {
        let err = load_signing_key_pem(text).unwrap_err();
        assert_eq!(err, AssertionError::Key(reason));
        assert!(!err.to_string().contains("MIG2"));
    }
    for (text, reason) in [
        (P384_PUBLIC, "PUBLIC KEY block is not a P-256 SPKI key"),
        (P384_PRIVATE, "no P-256 PUBLIC KEY or private key PEM block"),
    ] {
        assert_eq!(load_public_key_pem(text), Err(AssertionError::Key(reason)));
    }
}

/// A throwaway key made by OpenSSL (`openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256`, then `openssl ec` for SEC1 and `openssl pkey
/// -pubout`); the thumbprint was computed from its public numbers with
/// Python's `cryptography` + `hashlib`, independently of this crate.
mod openssl_vector {
    pub const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgCO+d0DFzxavTJJ7R
1wMfRcnlq1qfH06Xf54Lx3VwmouhRANCAASQUuP2MWwTvNKXH9nvy+AKxnVkQM4/
5PJrEWSxac8suHcOL9rbiqLafKhQRJvqPnK5g2qX1wWxUyoN9OyF/ALE
-----END PRIVATE KEY-----
";
    pub const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIAjvndAxc8Wr0ySe0dcDH0XJ5atanx9Ol3+eC8d1cJqLoAoGCCqGSM49
AwEHoUQDQgAEkFLj9jFsE7zSlx/Z78vgCsZ1ZEDOP+TyaxFksWnPLLh3Di/a24qi
2nyoUESb6j5yuYNql9cFsVMqDfTshfwCxA==
-----END EC PRIVATE KEY-----
";
    pub const SPKI: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkFLj9jFsE7zSlx/Z78vgCsZ1ZEDO
P+TyaxFksWnPLLh3Di/a24qi2nyoUESb6j5yuYNql9cFsVMqDfTshfwCxA==
-----END PUBLIC KEY-----
";
    pub const THUMBPRINT: &str = "jb59zO8eyqen795JgM-In0K633jb3u1Nu1BuGTTwtOk";
}

#[test]
fn openssl_keys_load_and_agree() {
    use openssl_vector::*;
    let pkcs8 = load_signing_key_pem(PKCS8).unwrap();
    assert_eq!(load_signing_key_pem(SEC1).unwrap(), pkcs8);
    let public = load_public_key_pem(SPKI).unwrap();
    assert_eq!(public, *pkcs8.verifying_key());
    assert_eq!(jwk::thumbprint(&public), THUMBPRINT);
    let crlf = SPKI.replace('\n', "\r\n");
    assert_eq!(load_public_key_pem(&crlf).unwrap(), public);
}
