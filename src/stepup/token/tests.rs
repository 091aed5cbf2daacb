//! Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::jose::jws::{encode_es256, mint_es256};
use crate::jose::Jwks;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const IDP_A: &str = "https://idp-a.example";
const IDP_B: &str = "https://idp-b.example";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn jwks(entries: &[(&str, u8)]) -> Jwks {
    let keys: Vec<Value> = entries
        .iter()
        .map(|(kid, seed)| {
            let mut jwk = jose::jwk::public_jwk(key(*seed).verifying_key());
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    Jwks::parse(&json!({ "keys": keys }).to_string()).unwrap()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(vec![
        TokenIssuer {
            issuer: IDP_A.into(),
            audience: "stepgate".into(),
            keys: jwks(&[("a1", 1)]),
        },
        TokenIssuer {
            issuer: IDP_B.into(),
            audience: "stepgate-b".into(),
            keys: jwks(&[("b1", 2), ("b2", 3)]),
        },
    ])
}

const BINDING: Binding<'static> = Binding {
    sid: "sid-1",
    txn: "txn-1",
    hold: Some("hold-1"),
};

fn claims() -> Value {
    json!({
        "iss": IDP_A, "aud": "stepgate", "iat": NOW - 10, "exp": NOW + 110,
        "jti": "jti-1", "sub": "alice", "sid": "sid-1", "txn": "txn-1",
    })
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

fn without(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn check(token: &str) -> Result<VerifiedToken, TokenError> {
    verifier().verify(token, &BINDING, at(NOW))
}

fn check_claims(claims: Value) -> Result<VerifiedToken, TokenError> {
    check(&mint_es256(&key(1), "a1", claims))
}

#[test]
fn valid_token_passes_with_defaults() {
    let verified = check_claims(claims()).unwrap();
    assert_eq!(
        verified,
        VerifiedToken {
            iss: IDP_A.into(),
            sub: "alice".into(),
            jti: "jti-1".into(),
            exp: NOW + 110,
            iat: NOW - 10,
            auth_time: NOW - 10,
            amr: vec!["token".into()],
            acr: None,
        }
    );
}

#[test]
fn optional_claims_are_passed_through() {
    let verified = check_claims(with(json!({
        "auth_time": NOW - 20, "amr": ["hwk", "user"], "acr": "phr",
    })))
    .unwrap();
    assert_eq!(verified.auth_time, NOW - 20);
    assert_eq!(verified.amr, ["hwk", "user"]);
    assert_eq!(verified.acr.as_deref(), Some("phr"));
    for (bad, name) in [
        (json!({"amr": "otp"}), "amr"),
        (json!({"amr": []}), "amr"),
        (json!({"amr": [1]}), "amr"),
        (json!({"acr": 2}), "acr"),
        (json!({"auth_time": NOW + 31}), "auth_time"),
    ] {
        assert_eq!(check_claims(with(bad)), Err(TokenError::InvalidClaim(name)));
    }
}

#[test]
fn binding_to_session_and_request() {
    assert_eq!(
        check_claims(with(json!({"sid": "sid-2"}))),
        Err(TokenError::SessionMismatch)
    );
    assert_eq!(check_claims(without("sid")), Err(TokenError::MissingClaim("sid")));
    assert_eq!(
        check_claims(with(json!({"txn": "txn-2"}))),
        Err(TokenError::TxnMismatch)
    );
    assert_eq!(check_claims(without("txn")), Err(TokenError::MissingClaim("txn")));
}

#[test]
fn binding_to_a_hold() {
    let hold_only = |hold: &str| {
        let mut claims = without("txn");
        claims["hold"] = json!(hold);
        claims
    };
    assert!(check_claims(hold_only("hold-1")).is_ok());
    assert_eq!(check_claims(hold_only("hold-2")), Err(TokenError::HoldMismatch));
    // An up-front token has no hold to name.
    let no_hold = Binding { hold: None, ..BINDING };
    let token = mint_es256(&key(1), "a1", hold_only("hold-1"));
    assert_eq!(
        verifier().verify(&token, &no_hold, at(NOW)),
        Err(TokenError::HoldMismatch)
    );
    // Naming both means both must match.
    assert!(check_claims(with(json!({"hold": "hold-1"}))).is_ok());
    assert_eq!(
        check_claims(with(json!({"hold": "hold-2"}))),
        Err(TokenError::HoldMismatch)
    );
    let wrong_txn = with(json!({"hold": "hold-1", "txn": "txn-2"}));
    assert_eq!(check_claims(wrong_txn), Err(TokenError::TxnMismatch));
}

#[test]
fn expiry_with_leeway() {
    assert_eq!(
        check_claims(with(json!({"iat": NOW - 100, "exp": NOW - 31}))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check_claims(with(json!({"iat": NOW - 100, "exp": NOW - 30}))),
        Err(TokenError::Expired)
    );
    assert!(check_claims(with(json!({"iat": NOW - 100, "exp": NOW - 29}))).is_ok());
}

#[test]
fn issued_in_the_future() {
    let future = |iat: u64| with(json!({"iat": iat, "exp": iat + 60}));
    assert_eq!(check_claims(future(NOW + 31)), Err(TokenError::NotYetValid));
    assert!(check_claims(future(NOW + 30)).is_ok());
    assert_eq!(
        check_claims(with(json!({"nbf": NOW + 31}))),
        Err(TokenError::NotYetValid)
    );
    assert!(check_claims(with(json!({"nbf": NOW}))).is_ok());
}

#[test]
fn lifetime_is_at_most_300_seconds() {
    let lifetime = |secs: u64| with(json!({"iat": NOW - 10, "exp": NOW - 10 + secs}));
    assert_eq!(check_claims(lifetime(301)), Err(TokenError::LifetimeTooLong(301)));
    assert!(check_claims(lifetime(300)).is_ok());
    let backwards = with(json!({"iat": NOW, "exp": NOW - 1}));
    assert_eq!(check_claims(backwards), Err(TokenError::InvalidClaim("exp")));
}

#[test]
fn audience() {
    assert_eq!(
        check_claims(with(json!({"aud": "other"}))),
        Err(TokenError::WrongAudience)
    );
    assert!(check_claims(with(json!({"aud": ["other", "stepgate"]}))).is_ok());
    assert_eq!(
        check_claims(with(json!({"aud": ["other"]}))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(check_claims(with(json!({"aud": []}))), Err(TokenError::WrongAudience));
    // Issuer B's audience is not good enough for issuer A.
    assert_eq!(
        check_claims(with(json!({"aud": "stepgate-b"}))),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(check_claims(without("aud")), Err(TokenError::MissingClaim("aud")));
    for bad in [json!(7), json!(["stepgate", 7]), json!({"aud": "stepgate"})] {
        assert_eq!(
            check_claims(with(json!({"aud": bad}))),
            Err(TokenError::InvalidClaim("aud"))
        );
    }
}

#[test]
fn issuer_selects_the_only_keys_tried() {
    assert_eq!(
        check_claims(with(json!({"iss": "https://evil.example"}))),
        Err(TokenError::UnknownIssuer("https://evil.example".into()))
    );
    assert_eq!(check_claims(without("iss")), Err(TokenError::MissingClaim("iss")));
    // Issuer A's key signing a token that claims to come from issuer B.
    let as_b = with(json!({"iss": IDP_B, "aud": "stepgate-b"}));
    assert_eq!(
        check(&mint_es256(&key(1), "a1", as_b.clone())),
        Err(TokenError::UnknownKey)
    );
    assert!(matches!(
        check(&mint_es256(&key(1), "b1", as_b.clone())),
        Err(TokenError::BadSignature(JoseError::BadSignature))
    ));
    assert!(check(&mint_es256(&key(2), "b1", as_b)).is_ok());
}

#[test]
fn key_lookup_by_kid() {
    assert_eq!(check(&mint_es256(&key(1), "a2", claims())), Err(TokenError::UnknownKey));
    let no_kid = |claims: &Value, seed: u8| encode_es256(&key(seed), &json!({"alg": "ES256"}), claims).unwrap();
    // Issuer A has one key, so a kid-less token may use it; B has two.
    assert!(check(&no_kid(&claims(), 1)).is_ok());
    let as_b = with(json!({"iss": IDP_B, "aud": "stepgate-b"}));
    assert_eq!(check(&no_kid(&as_b, 2)), Err(TokenError::UnknownKey));
}

#[test]
fn algorithm_and_encoding_attacks() {
    let payload = jose::b64_encode(claims().to_string());
    let none = format!("{}.{payload}.", jose::b64_encode(r#"{"alg":"none","kid":"a1"}"#));
    assert_eq!(check(&none), Err(TokenError::UnsupportedAlg("none".into())));

    let hs_input = format!("{}.{payload}", jose::b64_encode(r#"{"alg":"HS256","kid":"a1"}"#));
    let hs = format!("{hs_input}.{}", jose::b64_encode([0u8; 32]));
    assert_eq!(check(&hs), Err(TokenError::UnsupportedAlg("HS256".into())));

    let token = mint_es256(&key(1), "a1", claims());
    let (input, _) = token.rsplit_once('.').unwrap();
    let der: p256::ecdsa::DerSignature = key(1).sign(input.as_bytes());
    let der_token = format!("{input}.{}", jose::b64_encode(der.as_bytes()));
    assert_eq!(
        check(&der_token),
        Err(TokenError::BadSignature(JoseError::SignatureLength(
            der.as_bytes().len()
        )))
    );
    assert!(matches!(
        check("a.b"),
        Err(TokenError::Malformed(JoseError::SegmentCount(2)))
    ));
}

#[test]
fn typ_must_be_jwt_when_present() {
    let with_typ = |typ: &str| {
        let header = json!({"alg": "ES256", "kid": "a1", "typ": typ});
        encode_es256(&key(1), &header, &claims()).unwrap()
    };
    for ok in ["JWT", "jwt", "application/JWT", "APPLICATION/jwt"] {
        assert!(check(&with_typ(ok)).is_ok(), "{ok}");
    }
    for bad in ["stepup+jwt", "at+jwt", "JWS", "application/", ""] {
        assert_eq!(check(&with_typ(bad)), Err(TokenError::UnsupportedType(bad.into())));
    }
}

#[test]
fn our_own_assertion_is_not_a_proof() {
    use crate::assertion::{AssertionFacts, AssertionSigner};
    let signer =
        AssertionSigner::new(key(1), vec![], IDP_A.into(), "stepgate".into(), Duration::from_secs(60)).unwrap();
    let facts = AssertionFacts {
        sub: "alice".into(),
        sid: "sid-1".into(),
        txn: "txn-1".into(),
        ..Default::default()
    };
    let signed = signer.sign(&facts, at(NOW)).unwrap();
    let verifier = TokenVerifier::new(vec![TokenIssuer {
        issuer: IDP_A.into(),
        audience: "stepgate".into(),
        keys: Jwks::parse(&signer.jwks().to_string()).unwrap(),
    }]);
    assert_eq!(
        verifier.verify(&signed.token, &BINDING, at(NOW)),
        Err(TokenError::UnsupportedType("stepup+jwt".into()))
    );
}

#[test]
fn required_claims() {
    for name in ["jti", "sub", "exp", "iat"] {
        assert_eq!(
            check_claims(without(name)),
            Err(TokenError::MissingClaim(name)),
            "{name}"
        );
    }
    assert_eq!(
        check_claims(with(json!({"jti": ""}))),
        Err(TokenError::InvalidClaim("jti"))
    );
    let long = "j".repeat(257);
    assert_eq!(
        check_claims(with(json!({"jti": long}))),
        Err(TokenError::InvalidClaim("jti"))
    );
    assert_eq!(
        check_claims(with(json!({"sub": ""}))),
        Err(TokenError::InvalidClaim("sub"))
    );
    assert_eq!(
        check_claims(with(json!({"sub": 5}))),
        Err(TokenError::InvalidClaim("sub"))
    );
}

#[test]
fn numeric_dates_must_be_non_negative_integers() {
    let exp = (NOW + 60).to_string();
    for (bad, name) in [
        (json!({"exp": exp}), "exp"),
        (json!({"exp": (NOW + 60) as f64 + 0.5}), "exp"),
        (json!({"exp": 1.8e9}), "exp"),
        (json!({"iat": -1}), "iat"),
        (json!({"iat": null}), "iat"),
        (json!({"nbf": "0"}), "nbf"),
        (json!({"auth_time": true}), "auth_time"),
    ] {
        assert_eq!(
            check_claims(with(bad.clone())),
            Err(TokenError::InvalidClaim(name)),
            "{bad}"
        );
    }
}

#[test]
fn signature_is_checked_before_any_claim() {
    // Wrong session AND expired, but signed by a stranger: the signature
    // failure must be what is reported, because the claims are not yet
    // the issuer's word.
    let forged = mint_es256(&key(9), "a1", with(json!({"sid": "x", "exp": 1, "iat": 0})));
    assert!(matches!(check(&forged), Err(TokenError::BadSignature(_))));
    // And a valid signature over a flipped payload never reaches the claims.
    let token = mint_es256(&key(1), "a1", claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = jose::b64_encode(with(json!({"sub": "mallory"})).to_string());
    assert!(matches!(check(&parts.join(".")), Err(TokenError::BadSignature(_))));
}

#[test]
fn signature_bytes_of_the_wrong_message_fail() {
    let token = mint_es256(&key(1), "a1", claims());
    let other: Signature = key(1).sign(b"something else");
    let (input, _) = token.rsplit_once('.').unwrap();
    let swapped = format!("{input}.{}", jose::b64_encode(other.to_bytes()));
    assert_eq!(check(&swapped), Err(TokenError::BadSignature(JoseError::BadSignature)));
}

#[test]
fn clock_before_epoch_fails_closed() {
    let token = mint_es256(&key(1), "a1", claims());
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        verifier().verify(&token, &BINDING, before),
        Err(TokenError::ClockBeforeEpoch)
    );
}
