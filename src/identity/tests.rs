//! Each test pins one refusal (or acceptance) to its precise error variant.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeyPairComponents};
use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};

use super::*;

// RFC 7515 Appendix A.2: the RS256 example key (all components, so the test
// can sign) and the example JWS it produced.
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_E: &str = "AQAB";
const A2_D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
const A2_P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const A2_Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
const A2_DP: &str = "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
const A2_DQ: &str = "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
const A2_QI: &str = "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
const A2_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

// RFC 7515 Appendix A.3: the ES256 example key and JWS (R || S signature).
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
/// Both RFC examples carry `"exp":1300819380`.
const A_EXAMPLES_BEFORE_EXP: u64 = 1_300_819_000;

const ISS: &str = "https://idp.example";
const AUD: &str = "stepgate";
const NOW_SECS: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn ec_key() -> SigningKey {
    SigningKey::from_slice(&unb64(A3_D)).unwrap()
}

fn rsa_key() -> RsaKeyPair {
    let components = KeyPairComponents {
        public_key: RsaPublicKeyComponents {
            n: unb64(A2_N),
            e: unb64(A2_E),
        },
        d: unb64(A2_D),
        p: unb64(A2_P),
        q: unb64(A2_Q),
        dP: unb64(A2_DP),
        dQ: unb64(A2_DQ),
        qInv: unb64(A2_QI),
    };
    RsaKeyPair::from_components(&components).unwrap()
}

fn es256_sign(key: &SigningKey, input: &[u8]) -> Vec<u8> {
    let signature: Signature = key.sign(input);
    signature.to_bytes().to_vec()
}

fn rs256_sign(key: &RsaKeyPair, input: &[u8]) -> Vec<u8> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input,
        &mut signature,
    )
    .unwrap();
    signature
}

enum Signer {
    Ec,
    Rsa,
}

impl Signer {
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Signer::Ec => es256_sign(&ec_key(), input),
            Signer::Rsa => rs256_sign(&rsa_key(), input),
        }
    }
}

/// Public JWKS with the A.3 EC key as `ec1` and the A.2 RSA key as `rsa1`.
fn jwks() -> String {
    format!(
        r#"{{"keys":[
            {{"kty":"EC","crv":"P-256","kid":"ec1","use":"sig","x":"{A3_X}","y":"{A3_Y}"}},
            {{"kty":"RSA","kid":"rsa1","alg":"RS256","n":"{A2_N}","e":"{A2_E}"}}
        ]}}"#
    )
}

fn verifier() -> JwtIdentity {
    JwtIdentity::new(ISS, AUD, &jwks()).unwrap()
}

/// A compact JWS over the raw JSON texts given (so tests can write
/// duplicates and odd types), signed by `signer`.
fn token(header: &str, claims: &str, signer: &Signer) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

fn claims_with(extra: &str) -> String {
    let exp = NOW_SECS + 300;
    let iat = NOW_SECS - 10;
    format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","exp":{exp},"iat":{iat}{extra}}}"#)
}

fn claims() -> String {
    claims_with("")
}

const ES256_EC1: &str = r#"{"alg":"ES256","typ":"JWT","kid":"ec1"}"#;
const RS256_RSA1: &str = r#"{"alg":"RS256","kid":"rsa1"}"#;

fn es256(claims: &str) -> String {
    token(ES256_EC1, claims, &Signer::Ec)
}

fn check(token: &str) -> Result<String, IdentityError> {
    verifier().verify(token, now())
}

// --- acceptance ---

#[test]
fn valid_es256_token_yields_sub() {
    assert_eq!(check(&es256(&claims())), Ok("alice".to_owned()));
}

#[test]
fn valid_rs256_token_yields_sub() {
    assert_eq!(
        check(&token(RS256_RSA1, &claims(), &Signer::Rsa)),
        Ok("alice".to_owned())
    );
}

#[test]
fn test_rsa_signer_reproduces_rfc7515_a2_signature() {
    // PKCS#1 v1.5 is deterministic: this pins the test signer to the RFC.
    let (input, signature) = A2_JWS.rsplit_once('.').unwrap();
    assert_eq!(b64(rs256_sign(&rsa_key(), input.as_bytes())), signature);
}

/// The RFC examples have no `aud` or `sub`: reaching the claim checks (and
/// failing there) proves the signature verified; a flipped signature byte
/// proves the check can fail.
fn rfc_example_verdicts(jwks: &str, jws: &str) -> (Result<String, IdentityError>, Result<String, IdentityError>) {
    let verifier = JwtIdentity::new("joe", AUD, jwks).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(A_EXAMPLES_BEFORE_EXP);
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let mut bad = unb64(signature);
    bad[10] ^= 1;
    (
        verifier.verify(jws, at),
        verifier.verify(&format!("{input}.{}", b64(bad)), at),
    )
}

#[test]
fn rfc7515_a2_rs256_example_verifies() {
    let jwks = format!(r#"{{"keys":[{{"kty":"RSA","n":"{A2_N}","e":"{A2_E}"}}]}}"#);
    let (good, bad) = rfc_example_verdicts(&jwks, A2_JWS);
    assert_eq!(good, Err(IdentityError::MissingClaim("aud")));
    assert_eq!(bad, Err(IdentityError::BadSignature));
}

#[test]
fn rfc7515_a3_es256_example_verifies() {
    let jwks = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{A3_X}","y":"{A3_Y}"}}]}}"#);
    let (good, bad) = rfc_example_verdicts(&jwks, A3_JWS);
    assert_eq!(good, Err(IdentityError::MissingClaim("aud")));
    assert_eq!(bad, Err(IdentityError::BadSignature));
}

#[test]
fn rsa_modulus_with_a_leading_zero_octet_is_accepted() {
    let mut n = unb64(A2_N);
    n.insert(0, 0);
    let jwks = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"rsa1","n":"{}","e":"{A2_E}"}}]}}"#,
        b64(n)
    );
    let verifier = JwtIdentity::new(ISS, AUD, &jwks).unwrap();
    assert_eq!(
        verifier.verify(&token(RS256_RSA1, &claims(), &Signer::Rsa), now()),
        Ok("alice".to_owned())
    );
}

#[test]
fn accepted_typ_values() {
    for typ in ["JWT", "jwt", "at+jwt", "application/at+JWT"] {
        let header = format!(r#"{{"alg":"ES256","kid":"ec1","typ":"{typ}"}}"#);
        assert_eq!(
            check(&token(&header, &claims(), &Signer::Ec)),
            Ok("alice".to_owned()),
            "{typ}"
        );
    }
}

// --- issuer and audience ---

#[test]
fn wrong_issuer_is_refused() {
    let claims = claims().replace(ISS, "https://evil.example");
    assert_eq!(check(&es256(&claims)), Err(IdentityError::IssuerMismatch));
    let claims = claims_with("").replace(&format!(r#""iss":"{ISS}","#), "");
    assert_eq!(check(&es256(&claims)), Err(IdentityError::MissingClaim("iss")));
}

#[test]
fn wrong_audience_string_is_refused() {
    let claims = claims().replace(r#""aud":"stepgate""#, r#""aud":"other""#);
    assert_eq!(check(&es256(&claims)), Err(IdentityError::AudienceMismatch));
}

#[test]
fn audience_array_must_contain_ours() {
    let with = |aud: &str| claims().replace(r#""aud":"stepgate""#, &format!(r#""aud":{aud}"#));
    assert_eq!(
        check(&es256(&with(r#"["a","b"]"#))),
        Err(IdentityError::AudienceMismatch)
    );
    assert_eq!(check(&es256(&with("[]"))), Err(IdentityError::AudienceMismatch));
    assert_eq!(check(&es256(&with(r#"["a","stepgate"]"#))), Ok("alice".to_owned()));
    assert_eq!(
        check(&es256(&with(r#"["stepgate",7]"#))),
        Err(IdentityError::InvalidClaim("aud"))
    );
    assert_eq!(check(&es256(&with("7"))), Err(IdentityError::InvalidClaim("aud")));
    let without = claims().replace(r#""aud":"stepgate","#, "");
    assert_eq!(check(&es256(&without)), Err(IdentityError::MissingClaim("aud")));
}

// --- time ---

fn timed(exp: i64, extra: &str) -> String {
    format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","exp":{exp}{extra}}}"#)
}

#[test]
fn expired_token_is_refused_beyond_the_leeway() {
    let t = NOW_SECS as i64;
    assert_eq!(check(&es256(&timed(t - 61, ""))), Err(IdentityError::Expired));
    assert_eq!(check(&es256(&timed(t - 30, ""))), Ok("alice".to_owned()));
    // Without leeway, exp == now is already expired (RFC 7519 §4.1.4).
    let strict = verifier().with_leeway(Duration::ZERO);
    assert_eq!(strict.verify(&es256(&timed(t, "")), now()), Err(IdentityError::Expired));
    assert_eq!(strict.verify(&es256(&timed(t + 1, "")), now()), Ok("alice".to_owned()));
    // A fractional NumericDate is honoured, not truncated into validity.
    let fractional = es256(&format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{t}.5}}"#));
    let later = now() + Duration::from_millis(600);
    assert_eq!(strict.verify(&fractional, later), Err(IdentityError::Expired));
    assert_eq!(
        strict.verify(&fractional, now() + Duration::from_millis(400)),
        Ok("a".to_owned())
    );
}

#[test]
fn exp_is_required_and_numeric() {
    let without = claims().replace(&format!(r#","exp":{}"#, NOW_SECS + 300), "");
    assert_eq!(check(&es256(&without)), Err(IdentityError::MissingClaim("exp")));
    let stringly = claims().replace(&format!("{}", NOW_SECS + 300), &format!("\"{}\"", NOW_SECS + 300));
    assert_eq!(check(&es256(&stringly)), Err(IdentityError::InvalidClaim("exp")));
}

#[test]
fn nbf_in_the_future_is_refused() {
    let exp = NOW_SECS as i64 + 600;
    let nbf = |at: u64| timed(exp, &format!(r#","nbf":{at}"#));
    assert_eq!(check(&es256(&nbf(NOW_SECS + 120))), Err(IdentityError::NotYetValid));
    assert_eq!(check(&es256(&nbf(NOW_SECS + 30))), Ok("alice".to_owned()));
    assert_eq!(check(&es256(&nbf(NOW_SECS))), Ok("alice".to_owned()));
}

#[test]
fn iat_in_the_future_is_refused() {
    let exp = NOW_SECS as i64 + 600;
    let token = es256(&timed(exp, &format!(r#","iat":{}"#, NOW_SECS + 120)));
    assert_eq!(check(&token), Err(IdentityError::IssuedInFuture));
    let token = es256(&timed(exp, r#","iat":"yesterday""#));
    assert_eq!(check(&token), Err(IdentityError::InvalidClaim("iat")));
}

#[test]
fn a_clock_before_1970_is_an_error() {
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(
        verifier().verify(&es256(&claims()), before),
        Err(IdentityError::ClockBeforeEpoch)
    );
}

// --- algorithms and keys ---

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let header = format!(r#"{{"alg":"{alg}"}}"#);
        let unsigned = format!("{}.{}.", b64(header), b64(claims()));
        assert_eq!(check(&unsigned), Err(IdentityError::AlgNotAllowed(alg.to_owned())));
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    // The classic confusion: HMAC keyed with the verifier's public key bytes.
    for (kid, secret) in [("rsa1", unb64(A2_N)), ("ec1", jwks().into_bytes())] {
        let header = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
        let input = format!("{}.{}", b64(header), b64(claims()));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let mac = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let forged = format!("{input}.{}", b64(mac.as_ref()));
        assert_eq!(check(&forged), Err(IdentityError::AlgNotAllowed("HS256".to_owned())));
    }
}

#[test]
fn alg_must_fit_the_key_type() {
    let rs_over_ec = token(r#"{"alg":"RS256","kid":"ec1"}"#, &claims(), &Signer::Rsa);
    assert_eq!(
        check(&rs_over_ec),
        Err(IdentityError::AlgKeyMismatch {
            alg: Alg::Rs256,
            kty: "EC"
        })
    );
    let es_over_rsa = token(r#"{"alg":"ES256","kid":"rsa1"}"#, &claims(), &Signer::Ec);
    assert_eq!(
        check(&es_over_rsa),
        Err(IdentityError::AlgKeyMismatch {
            alg: Alg::Es256,
            kty: "RSA"
        })
    );
}

#[test]
fn other_algorithms_are_refused() {
    for alg in ["PS256", "ES384", "RS512", "EdDSA", "es256"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"ec1"}}"#);
        assert_eq!(
            check(&token(&header, &claims(), &Signer::Ec)),
            Err(IdentityError::AlgNotAllowed(alg.to_owned()))
        );
    }
    let numeric = token(r#"{"alg":7,"kid":"ec1"}"#, &claims(), &Signer::Ec);
    assert_eq!(check(&numeric), Err(IdentityError::InvalidHeader("alg")));
    let missing = token(r#"{"kid":"ec1"}"#, &claims(), &Signer::Ec);
    assert_eq!(check(&missing), Err(IdentityError::InvalidHeader("alg")));
}

/// ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }` for a raw `R || S`.
fn der_signature(raw: &[u8]) -> Vec<u8> {
    let integer = |half: &[u8]| {
        let trimmed: Vec<u8> = half.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        body.extend(trimmed);
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    };
    let mut body = integer(&raw[..32]);
    body.extend(integer(&raw[32..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn der_encoded_es256_signature_is_refused() {
    let input = format!("{}.{}", b64(ES256_EC1), b64(claims()));
    let der = der_signature(&es256_sign(&ec_key(), input.as_bytes()));
    assert_ne!(der.len(), 64);
    let token = format!("{input}.{}", b64(&der));
    assert_eq!(check(&token), Err(IdentityError::SignatureEncoding(der.len())));
}

#[test]
fn unknown_kid_is_refused() {
    let token = token(r#"{"alg":"ES256","kid":"nope"}"#, &claims(), &Signer::Ec);
    assert_eq!(check(&token), Err(IdentityError::UnknownKid("nope".to_owned())));
}

#[test]
fn missing_kid_needs_exactly_one_key() {
    let token = token(r#"{"alg":"ES256"}"#, &claims(), &Signer::Ec);
    assert_eq!(check(&token), Err(IdentityError::KidRequired(2)));
    let single = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{A3_X}","y":"{A3_Y}"}}]}}"#);
    let verifier = JwtIdentity::new(ISS, AUD, &single).unwrap();
    assert_eq!(verifier.verify(&token, now()), Ok("alice".to_owned()));
}

#[test]
fn signature_from_another_key_is_refused() {
    let other = SigningKey::from_slice(&[7; 32]).unwrap();
    let input = format!("{}.{}", b64(ES256_EC1), b64(claims()));
    let token = format!("{input}.{}", b64(es256_sign(&other, input.as_bytes())));
    assert_eq!(check(&token), Err(IdentityError::BadSignature));
}

#[test]
fn tampered_payload_is_refused() {
    for signer in [Signer::Ec, Signer::Rsa] {
        let header = if matches!(signer, Signer::Ec) {
            ES256_EC1
        } else {
            RS256_RSA1
        };
        let genuine = token(header, &claims(), &signer);
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64(claims().replace("alice", "admin")), parts[2]);
        assert_eq!(check(&tampered), Err(IdentityError::BadSignature));
    }
}

#[test]
fn duplicate_members_are_refused() {
    let twice = claims_with(r#","sub":"admin""#);
    assert_eq!(
        check(&es256(&twice)),
        Err(IdentityError::DuplicateMember(Part::Payload))
    );
    // Names compare after unescaping.
    let escaped = claims_with(r#","s\u0075b":"admin""#);
    assert_eq!(
        check(&es256(&escaped)),
        Err(IdentityError::DuplicateMember(Part::Payload))
    );
    let nested = claims_with(r#","ext":{"a":1,"a":2}"#);
    assert_eq!(
        check(&es256(&nested)),
        Err(IdentityError::DuplicateMember(Part::Payload))
    );
    let header = r#"{"alg":"ES256","kid":"ec1","alg":"none"}"#;
    assert_eq!(
        check(&token(header, &claims(), &Signer::Ec)),
        Err(IdentityError::DuplicateMember(Part::Header))
    );
}

#[test]
fn padded_base64_is_refused_in_every_part() {
    let genuine = es256(&claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    // Re-encode each part in padded form; assert the padding is really there.
    let padded = |part: &str| {
        let text = URL_SAFE.encode(unb64(part));
        assert!(text.ends_with('='), "{text}");
        text
    };
    let header = r#"{"alg":"ES256", "kid":"ec1"}"#;
    let input = format!("{}.{}", padded(&b64(header)), b64(claims()));
    let padded_header = format!("{input}.{}", b64(Signer::Ec.sign(input.as_bytes())));
    assert_eq!(check(&padded_header), Err(IdentityError::Base64(Part::Header)));

    // Seven extra bytes change the length mod 3, so one of the two needs padding.
    let claims = if claims().len().is_multiple_of(3) {
        claims_with(r#","x":12"#)
    } else {
        claims()
    };
    let input = format!("{}.{}", b64(ES256_EC1), padded(&b64(&claims)));
    let padded_payload = format!("{input}.{}", b64(Signer::Ec.sign(input.as_bytes())));
    assert_eq!(check(&padded_payload), Err(IdentityError::Base64(Part::Payload)));

    let padded_signature = format!("{}.{}.{}", parts[0], parts[1], padded(parts[2]));
    assert_eq!(check(&padded_signature), Err(IdentityError::Base64(Part::Signature)));
    // The standard alphabet is not base64url either.
    let standard = genuine.replace('-', "+").replace('_', "/");
    if standard != genuine {
        assert!(matches!(check(&standard), Err(IdentityError::Base64(_))));
    }
}

#[test]
fn malformed_structure_is_refused() {
    assert_eq!(check("a.b"), Err(IdentityError::SegmentCount(2)));
    assert_eq!(check("a.b.c.d.e"), Err(IdentityError::SegmentCount(5)));
    assert_eq!(check(""), Err(IdentityError::SegmentCount(1)));
    let array_header = format!("{}.{}.", b64("[1]"), b64(claims()));
    assert_eq!(check(&array_header), Err(IdentityError::Json(Part::Header)));
    let not_json = token(ES256_EC1, "{not json", &Signer::Ec);
    assert_eq!(check(&not_json), Err(IdentityError::Json(Part::Payload)));
    // Out-of-range numbers and invalid UTF-8 are syntax, not duplicates.
    let huge_number = token(ES256_EC1, &claims_with(r#","n":1e400"#), &Signer::Ec);
    assert_eq!(check(&huge_number), Err(IdentityError::Json(Part::Payload)));
    let input = format!("{}.{}", b64(ES256_EC1), b64(b"{\"sub\":\"\xff\"}"));
    let bad_utf8 = format!("{input}.{}", b64(Signer::Ec.sign(input.as_bytes())));
    assert_eq!(check(&bad_utf8), Err(IdentityError::Json(Part::Payload)));
    let big = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        check(&big),
        Err(IdentityError::TokenTooLarge {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        })
    );
}

#[test]
fn header_typ_and_crit_are_checked() {
    let logout = token(
        r#"{"alg":"ES256","kid":"ec1","typ":"logout+jwt"}"#,
        &claims(),
        &Signer::Ec,
    );
    assert_eq!(check(&logout), Err(IdentityError::WrongType("logout+jwt".to_owned())));
    let assertion = token(
        r#"{"alg":"ES256","kid":"ec1","typ":"stepup+jwt"}"#,
        &claims(),
        &Signer::Ec,
    );
    assert_eq!(
        check(&assertion),
        Err(IdentityError::WrongType("stepup+jwt".to_owned()))
    );
    let crit = token(
        r#"{"alg":"ES256","kid":"ec1","crit":["exp"],"exp":1}"#,
        &claims(),
        &Signer::Ec,
    );
    assert_eq!(check(&crit), Err(IdentityError::UnsupportedHeader("crit")));
    let kid_number = token(r#"{"alg":"ES256","kid":1}"#, &claims(), &Signer::Ec);
    assert_eq!(check(&kid_number), Err(IdentityError::InvalidHeader("kid")));
}

#[test]
fn sub_must_be_a_usable_name() {
    let without = claims().replace(r#""sub":"alice","#, "");
    assert_eq!(check(&es256(&without)), Err(IdentityError::MissingClaim("sub")));
    for bad in [r#""""#, r#"" alice""#, r#""ali\nce""#, "42", "null"] {
        let claims = claims().replace(r#""alice""#, bad);
        assert_eq!(check(&es256(&claims)), Err(IdentityError::InvalidClaim("sub")), "{bad}");
    }
}

#[test]
fn errors_clip_attacker_strings_and_never_echo_the_token() {
    let kid = format!("{}\n{}", "k".repeat(40), "tail");
    let token = token(&format!(r#"{{"alg":"ES256","kid":{kid:?}}}"#), &claims(), &Signer::Ec);
    let err = check(&token).unwrap_err();
    assert_eq!(err, IdentityError::UnknownKid(format!("{}…", "k".repeat(32))));
    let text = err.to_string();
    assert!(!text.contains(&token) && !text.contains('\n'), "{text}");
    let err = check(&es256(&claims().replace(ISS, "x"))).unwrap_err().to_string();
    assert!(!err.contains("eyJ"), "{err}");
}

// --- JWKS loading ---

#[test]
fn jwks_skips_keys_it_cannot_use() {
    let jwks = format!(
        r#"{{"keys":[
            {{"kty":"oct","k":"c2VjcmV0"}},
            {{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
            {{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}},
            {{"kty":"EC","crv":"P-256","use":"enc","x":"{A3_X}","y":"{A3_Y}"}},
            {{"kty":"EC","crv":"P-256","key_ops":["encrypt"],"x":"{A3_X}","y":"{A3_Y}"}},
            {{"kty":"RSA","alg":"PS256","n":"{A2_N}","e":"{A2_E}"}},
            {{"kty":"EC","crv":"P-256","kid":"ec1","key_ops":["verify"],"x":"{A3_X}","y":"{A3_Y}"}}
        ]}}"#
    );
    let keys = IdentityKeys::from_jwks(&jwks).unwrap();
    assert_eq!(keys.len(), 1);
    // With one usable key, a kid-less token can select it.
    let verifier = JwtIdentity::new(ISS, AUD, &jwks).unwrap();
    assert_eq!(
        verifier.verify(&token(r#"{"alg":"ES256"}"#, &claims(), &Signer::Ec), now()),
        Ok("alice".to_owned())
    );
}

#[test]
fn jwks_refuses_broken_or_dangerous_files() {
    let err = |jwks: &str| IdentityKeys::from_jwks(jwks).unwrap_err();
    assert_eq!(
        err(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
        IdentityError::JwksNoUsableKey
    );
    assert_eq!(err(r#"{"keys":[]}"#), IdentityError::JwksNoUsableKey);
    assert!(matches!(err(r#"{"keys":{}}"#), IdentityError::JwksMalformed(_)));
    assert!(matches!(err("[]"), IdentityError::JwksMalformed(_)));
    assert!(matches!(
        err(r#"{"keys":[],"keys":[]}"#),
        IdentityError::JwksMalformed(_)
    ));

    let private = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{A3_X}","y":"{A3_Y}","d":"{A3_D}"}}]}}"#);
    assert!(matches!(err(&private), IdentityError::JwksKey { index: 0, .. }));
    let private_rsa = format!(r#"{{"keys":[{{"kty":"RSA","n":"{A2_N}","e":"{A2_E}","d":"{A2_D}"}}]}}"#);
    assert!(matches!(err(&private_rsa), IdentityError::JwksKey { index: 0, .. }));

    let mut y = unb64(A3_Y);
    y[31] ^= 1;
    let off_curve = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{A3_X}","y":"{}"}}]}}"#,
        b64(y)
    );
    assert_eq!(
        err(&off_curve),
        IdentityError::JwksKey {
            index: 0,
            reason: "EC point is not on P-256"
        }
    );
    let short = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{}","y":"{A3_Y}"}}]}}"#,
        b64([1; 31])
    );
    assert!(matches!(err(&short), IdentityError::JwksKey { index: 0, .. }));
    let padded = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{A3_X}=","y":"{A3_Y}"}}]}}"#);
    assert!(matches!(err(&padded), IdentityError::JwksKey { index: 0, .. }));

    let weak = format!(r#"{{"keys":[{{"kty":"RSA","n":"{}","e":"AQAB"}}]}}"#, b64([0xc3; 128]));
    assert_eq!(
        err(&weak),
        IdentityError::JwksKey {
            index: 0,
            reason: "RSA modulus must be 2048 to 8192 bits"
        }
    );

    let same_kid = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k","x":"{A3_X}","y":"{A3_Y}"}},
                     {{"kty":"RSA","kid":"k","n":"{A2_N}","e":"{A2_E}"}}]}}"#
    );
    assert_eq!(err(&same_kid), IdentityError::JwksDuplicateKid("k".to_owned()));
}

#[test]
fn empty_issuer_or_audience_is_a_config_error() {
    assert_eq!(
        JwtIdentity::new("", AUD, &jwks()).unwrap_err(),
        IdentityError::InvalidConfig("issuer")
    );
    assert_eq!(
        JwtIdentity::new(ISS, "", &jwks()).unwrap_err(),
        IdentityError::InvalidConfig("audience")
    );
}

// --- token_from_request ---

fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn token_from_cookie_or_bearer() {
    let ok = |t: &str| Ok(Some(t.to_owned()));
    let cookie = headers(&[(COOKIE, "a=1; id_token=TOK; b=2")]);
    assert_eq!(token_from_request(&cookie, Some("id_token")), ok("TOK"));
    // Only looked for when configured.
    assert_eq!(token_from_request(&cookie, None), Ok(None));
    let quoted = headers(&[(COOKIE, "id_token=\"TOK\"")]);
    assert_eq!(token_from_request(&quoted, Some("id_token")), ok("TOK"));
    let spaced = headers(&[(COOKIE, "id_token =TOK")]);
    assert_eq!(token_from_request(&spaced, Some("id_token")), ok("TOK"));

    for value in ["Bearer TOK", "bearer TOK", "BEARER  TOK "] {
        let bearer = headers(&[(AUTHORIZATION, value)]);
        assert_eq!(token_from_request(&bearer, None), ok("TOK"), "{value}");
        // A configured but absent cookie falls back to the bearer token.
        assert_eq!(token_from_request(&bearer, Some("id_token")), ok("TOK"), "{value}");
    }
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "BearerTOK"] {
        assert_eq!(
            token_from_request(&headers(&[(AUTHORIZATION, value)]), None),
            Ok(None),
            "{value}"
        );
    }

    // The cookie is looked at first.
    let both = headers(&[(COOKIE, "id_token=FROM_COOKIE"), (AUTHORIZATION, "Bearer FROM_HEADER")]);
    assert_eq!(token_from_request(&both, Some("id_token")), ok("FROM_COOKIE"));
    assert_eq!(token_from_request(&HeaderMap::new(), Some("id_token")), Ok(None));
    let nameless = headers(&[(COOKIE, "=TOK")]);
    assert_eq!(token_from_request(&nameless, Some("")), Ok(None));
}

#[test]
fn duplicated_token_is_ambiguous() {
    let ambiguous = Err(IdentityError::AmbiguousToken);
    let split = headers(&[(COOKIE, "id_token=A"), (COOKIE, "x=1; id_token=B")]);
    assert_eq!(token_from_request(&split, Some("id_token")), ambiguous);
    let same_header = headers(&[(COOKIE, "id_token=A; id_token=B"), (AUTHORIZATION, "Bearer C")]);
    // Ambiguity does not fall through to the bearer token.
    assert_eq!(token_from_request(&same_header, Some("id_token")), ambiguous);
    let respelled = headers(&[(COOKIE, "id_token =A; id_token=B")]);
    assert_eq!(token_from_request(&respelled, Some("id_token")), ambiguous);
    let repeated = headers(&[(COOKIE, "id_token=A"), (COOKIE, "id_token=A")]);
    assert_eq!(token_from_request(&repeated, Some("id_token")), ambiguous);

    let two_bearers = headers(&[(AUTHORIZATION, "Bearer A"), (AUTHORIZATION, "Bearer B")]);
    assert_eq!(token_from_request(&two_bearers, None), ambiguous);
    let bearer_and_basic = headers(&[(AUTHORIZATION, "Basic eDp5"), (AUTHORIZATION, "Bearer B")]);
    assert_eq!(token_from_request(&bearer_and_basic, None), ambiguous);
    let same_twice = headers(&[(AUTHORIZATION, "Bearer A"), (AUTHORIZATION, "Bearer A")]);
    assert_eq!(token_from_request(&same_twice, None), Ok(Some("A".to_owned())));

    let mut opaque = HeaderMap::new();
    opaque.append(COOKIE, HeaderValue::from_bytes(b"id_token=\xff").unwrap());
    assert_eq!(token_from_request(&opaque, Some("id_token")), ambiguous);
}

// --- client certificates ---

fn certificate(uris: &[&str], dns: &[&str], cn: Option<&str>) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // DNS names first, so "first URI" is not simply "first SAN".
    params.subject_alt_names = dns.iter().map(|d| SanType::DnsName((*d).try_into().unwrap())).collect();
    params
        .subject_alt_names
        .extend(uris.iter().map(|u| SanType::URI(Ia5String::try_from(*u).unwrap())));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "Example");
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn spiffe_uri_san_is_the_identity() {
    let spiffe = "spiffe://example.org/agent/payments";
    let der = certificate(&[spiffe], &["agent.example.org"], Some("ignored-cn"));
    assert_eq!(cert_identity(&der, false), Ok(spiffe.to_owned()));
    assert_eq!(cert_identity(&der, true), Ok(spiffe.to_owned()));
    // Two URIs: which one is "the" identity differs between verifiers.
    let two = certificate(&[spiffe, "spiffe://example.org/other"], &[], None);
    assert_eq!(
        cert_identity(&two, true),
        Err(IdentityError::CertificateField("SAN URI"))
    );
}

#[test]
fn common_name_counts_only_when_configured_and_without_any_san() {
    let cn_only = certificate(&[], &[], Some("payments-agent"));
    assert_eq!(cert_identity(&cn_only, true), Ok("payments-agent".to_owned()));
    assert_eq!(
        cert_identity(&cn_only, false),
        Err(IdentityError::NoCertificateIdentity)
    );
    // The attack: a CN that spells a workload's SPIFFE ID, with a DNS SAN.
    let forged = certificate(&[], &["a.example"], Some("spiffe://corp/agent-a"));
    assert_eq!(cert_identity(&forged, true), Err(IdentityError::NoCertificateIdentity));
    assert_eq!(cert_identity(&forged, false), Err(IdentityError::NoCertificateIdentity));
}

#[test]
fn certificate_without_uri_or_cn_is_refused() {
    assert_eq!(
        cert_identity(&certificate(&[], &[], None), true),
        Err(IdentityError::NoCertificateIdentity)
    );
    assert_eq!(
        cert_identity(&certificate(&[], &["a.example"], None), true),
        Err(IdentityError::NoCertificateIdentity)
    );
}

#[test]
fn unusable_names_do_not_fall_back() {
    let der = certificate(&["spiffe://x/\u{1}"], &[], Some("cn"));
    assert_eq!(
        cert_identity(&der, true),
        Err(IdentityError::CertificateField("SAN URI"))
    );
    assert_eq!(
        cert_identity(&certificate(&[], &[], Some(" cn")), true),
        Err(IdentityError::CertificateField("subject CN"))
    );
}

#[test]
fn garbage_der_is_an_error_not_a_panic() {
    let der = certificate(&[], &[], Some("cn"));
    assert_eq!(cert_identity(b"", true), Err(IdentityError::CertificateParse));
    assert_eq!(
        cert_identity(b"not a certificate", true),
        Err(IdentityError::CertificateParse)
    );
    assert_eq!(
        cert_identity(&[0x30, 0x82, 0xff, 0xff, 0x30], true),
        Err(IdentityError::CertificateParse)
    );
    for cut in [1, der.len() / 2, der.len() - 1] {
        assert_eq!(
            cert_identity(&der[..cut], true),
            Err(IdentityError::CertificateParse),
            "cut at {cut}"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(
        cert_identity(&trailing, true),
        Err(IdentityError::CertificateTrailingData)
    );
    // Every single-byte corruption parses or fails cleanly.
    for i in 0..der.len() {
        let mut corrupt = der.clone();
        corrupt[i] ^= 0xff;
        let _ = cert_identity(&corrupt, true);
    }
}

#[test]
fn thumbprint_is_base64url_sha256_of_the_der() {
    // SHA-256("abc") from FIPS 180-2, base64url without padding.
    assert_eq!(cert_thumbprint(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    let a = certificate(&[], &[], Some("cn"));
    let b = certificate(&[], &[], Some("cn"));
    assert_eq!(cert_thumbprint(&a).len(), 43);
    assert_ne!(
        cert_thumbprint(&a),
        cert_thumbprint(&b),
        "same name, different key, different session"
    );
}
