//! Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::jose::jwk::public_jwk;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use proptest::prelude::*;
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn sample() -> (SigningKey, String) {
    let key = key(1);
    let token = encode_es256(
        &key,
        &json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}),
        &json!({"sub": "alice", "n": 1}),
    )
    .unwrap();
    (key, token)
}

fn verify(token: &str, key: &SigningKey) -> Result<(), JoseError> {
    verify_es256(&decode(token)?, key.verifying_key())
}

/// Rebuilds a token from raw header/payload JSON text and signature bytes.
fn forge(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64_encode(header),
        b64_encode(payload),
        b64_encode(signature)
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn roundtrip() {
    let (key, token) = sample();
    let decoded = decode(&token).unwrap();
    assert_eq!(decoded.header.alg, "ES256");
    assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
    assert_eq!(decoded.header.kid.as_deref(), Some("k1"));
    assert_eq!(Value::Object(decoded.claims.clone()), json!({"sub": "alice", "n": 1}));
    assert_eq!(decoded.signature.len(), 64);
    verify_es256(&decoded, key.verifying_key()).unwrap();
}

#[test]
fn wrong_key_fails() {
    let (_, token) = sample();
    assert_eq!(verify(&token, &key(2)), Err(JoseError::BadSignature));
}

#[test]
fn tampered_payload_or_header_fails() {
    let (key, token) = sample();
    let [h, _, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let payload = b64_encode(r#"{"sub":"mallory","n":1}"#);
    assert_eq!(
        verify(&format!("{h}.{payload}.{s}"), &key),
        Err(JoseError::BadSignature)
    );
    let [_, p, _]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let header = b64_encode(r#"{"alg":"ES256","typ":"JWT","kid":"k2"}"#);
    assert_eq!(verify(&format!("{header}.{p}.{s}"), &key), Err(JoseError::BadSignature));
}

#[test]
fn alg_none_is_rejected() {
    let (key, _) = sample();
    let token = format!("{}.{}.", b64_encode(r#"{"alg":"none"}"#), b64_encode("{}"));
    assert_eq!(verify(&token, &key), Err(JoseError::UnsupportedAlg("none".into())));
}

#[test]
fn other_algs_and_spellings_are_rejected() {
    let (key, token) = sample();
    let decoded = decode(&token).unwrap();
    for alg in ["HS256", "RS256", "ES256K", "es256", "ES384", "ES256 ", "PS256"] {
        let mut d = decoded.clone();
        d.header.alg = alg.into();
        assert_eq!(
            verify_es256(&d, key.verifying_key()),
            Err(JoseError::UnsupportedAlg(alg.into())),
            "{alg}"
        );
    }
}

#[test]
fn hmac_keyed_with_the_public_key_is_rejected() {
    let key = key(3);
    let jwk = serde_json::to_vec(&public_jwk(key.verifying_key())).unwrap();
    let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    for secret in [jwk.as_slice(), pem.as_bytes()] {
        for alg in ["HS256", "ES256"] {
            let input = format!(
                "{}.{}",
                b64_encode(format!(r#"{{"alg":"{alg}"}}"#)),
                b64_encode(r#"{"sub":"admin"}"#)
            );
            let mac = hmac_sha256(secret, input.as_bytes());
            let token = format!("{input}.{}", b64_encode(&mac));
            let expected = match alg {
                "HS256" => JoseError::UnsupportedAlg("HS256".into()),
                _ => JoseError::SignatureLength(32),
            };
            assert_eq!(verify(&token, &key), Err(expected));
        }
    }
}

#[test]
fn der_signature_of_the_right_message_is_rejected() {
    let (key, token) = sample();
    let decoded = decode(&token).unwrap();
    let signature: Signature = key.sign(decoded.signing_input.as_bytes());
    let der = signature.to_der();
    // The DER form does verify with a DER-aware verifier: only the encoding
    // is wrong.
    let der_ok: Result<(), _> = key.verifying_key().verify(decoded.signing_input.as_bytes(), &der);
    assert!(der_ok.is_ok());
    let der_token = format!("{}.{}", decoded.signing_input, b64_encode(der.as_bytes()));
    assert_eq!(
        verify(&der_token, &key),
        Err(JoseError::SignatureLength(der.as_bytes().len()))
    );
}

#[test]
fn signature_of_65_bytes_is_rejected() {
    let (key, token) = sample();
    let mut decoded = decode(&token).unwrap();
    decoded.signature.push(0);
    assert_eq!(
        verify_es256(&decoded, key.verifying_key()),
        Err(JoseError::SignatureLength(65))
    );
}

#[test]
fn zero_r_and_s_are_rejected() {
    let (key, token) = sample();
    let mut decoded = decode(&token).unwrap();
    decoded.signature = vec![0; 64];
    assert_eq!(
        verify_es256(&decoded, key.verifying_key()),
        Err(JoseError::BadSignature)
    );
}

#[test]
fn non_canonical_base64_is_rejected() {
    let (_, token) = sample();
    let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let cases = [
        (format!("{h}=.{p}.{s}"), Part::Header),
        (format!("{h}.{p}=.{s}"), Part::Payload),
        (format!("{h}.{p}.{s}=="), Part::Signature),
        (format!("{h}.{p} .{s}"), Part::Payload),
        (
            format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
            Part::Signature,
        ),
        (format!("{h}.{p}.{s}\n"), Part::Signature),
        (format!("{h}.{p}.+{s}"), Part::Signature),
        (format!("{h}./{p}.{s}"), Part::Payload),
        (format!(" {h}.{p}.{s}"), Part::Header),
    ];
    for (bad, part) in cases {
        // Only assert on cases where the substitution changed something.
        if bad != token {
            assert_eq!(decode(&bad), Err(JoseError::Base64(part)), "{bad}");
        }
    }
    // A 64-byte signature ends in a character with 4 unused low bits, which
    // must be zero; setting one yields a second spelling of the same bytes.
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = ALPHABET.find(&s[s.len() - 1..]).unwrap();
    assert_eq!(last % 16, 0);
    let twin = &ALPHABET[last + 1..last + 2];
    let odd = format!("{h}.{p}.{}{twin}", &s[..s.len() - 1]);
    assert_eq!(decode(&odd), Err(JoseError::Base64(Part::Signature)));
}

#[test]
fn wrong_number_of_segments_is_rejected() {
    let (_, token) = sample();
    assert_eq!(decode(&format!("{token}.")), Err(JoseError::SegmentCount(4)));
    assert_eq!(decode(&format!("{token}.e30")), Err(JoseError::SegmentCount(4)));
    assert_eq!(decode("a.b.c.d.e"), Err(JoseError::SegmentCount(5)));
    assert_eq!(decode("e30.e30"), Err(JoseError::SegmentCount(2)));
    assert_eq!(decode(""), Err(JoseError::SegmentCount(1)));
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let huge = format!("{}.e30.", "A".repeat(1 << 20));
    assert_eq!(
        decode(&huge),
        Err(JoseError::TooLarge {
            len: huge.len(),
            max: MAX_TOKEN_LEN
        })
    );
}

#[test]
fn non_object_json_is_rejected() {
    let alg = r#"{"alg":"ES256"}"#;
    for (header, payload, expected) in [
        ("[]", "{}", JoseError::NotObject(Part::Header)),
        (r#""ES256""#, "{}", JoseError::NotObject(Part::Header)),
        (alg, "null", JoseError::NotObject(Part::Payload)),
        (alg, "[1,2]", JoseError::NotObject(Part::Payload)),
        (alg, "42", JoseError::NotObject(Part::Payload)),
        (alg, "{", JoseError::Json(Part::Payload)),
        (alg, "{} {}", JoseError::Json(Part::Payload)),
        ("", "{}", JoseError::Json(Part::Header)),
    ] {
        assert_eq!(decode(&forge(header, payload, &[0; 64])), Err(expected));
    }
    let latin1 = format!("{}.{}.", b64_encode(alg), b64_encode(b"{\"a\":\"\xff\"}"));
    assert_eq!(decode(&latin1), Err(JoseError::Json(Part::Payload)));
}

#[test]
fn header_members_are_checked() {
    for (header, expected) in [
        (r#"{"typ":"JWT"}"#, JoseError::HeaderMember("alg")),
        (r#"{"alg":null}"#, JoseError::HeaderMember("alg")),
        (r#"{"alg":"ES256","kid":7}"#, JoseError::HeaderMember("kid")),
        (r#"{"alg":"ES256","typ":["JWT"]}"#, JoseError::HeaderMember("typ")),
        (r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, JoseError::CritUnsupported),
        (
            r#"{"alg":"ES256","alg":"none"}"#,
            JoseError::DuplicateMember(Part::Header),
        ),
    ] {
        assert_eq!(decode(&forge(header, "{}", &[])), Err(expected), "{header}");
    }
    let dup = forge(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#, &[]);
    assert_eq!(decode(&dup), Err(JoseError::DuplicateMember(Part::Payload)));
}

#[test]
fn encode_refuses_headers_it_would_not_accept() {
    let key = key(1);
    let claims = json!({});
    for (header, expected) in [
        (json!({"typ": "JWT"}), JoseError::HeaderMember("alg")),
        (json!({"alg": "none"}), JoseError::UnsupportedAlg("none".into())),
        (json!({"alg": "ES256", "crit": []}), JoseError::CritUnsupported),
        (json!(["ES256"]), JoseError::NotObject(Part::Header)),
    ] {
        assert_eq!(encode_es256(&key, &header, &claims), Err(expected));
    }
    assert_eq!(
        encode_es256(&key, &json!({"alg": "ES256"}), &json!("x")),
        Err(JoseError::NotObject(Part::Payload))
    );
}

#[test]
fn signatures_we_make_are_low_s() {
    let key = key(4);
    for n in 0..32 {
        let token = mint_es256(&key, "k", json!({ "n": n }));
        let decoded = decode(&token).unwrap();
        let signature = Signature::from_slice(&decoded.signature).unwrap();
        assert_eq!(signature.normalize_s(), signature);
    }
}

/// Signing runs in aws-lc and so does our verification; the pure Rust p256
/// verifier is an independent second opinion, so a fault shared by both
/// aws-lc paths (wrong digest, DER where R || S belongs) still fails here.
#[test]
fn signatures_we_make_verify_with_an_independent_implementation() {
    let key = key(5);
    for n in 0..8 {
        let token = mint_es256(&key, "k", json!({ "n": n }));
        let decoded = decode(&token).unwrap();
        let signature = Signature::from_slice(&decoded.signature).unwrap();
        key.verifying_key()
            .verify(decoded.signing_input.as_bytes(), &signature)
            .unwrap();
    }
}

/// RFC 7515 Appendix A.3: an ES256 JWS made by another implementation.
mod rfc7515_a3 {
    use super::*;
    use crate::jose::Jwks;

    pub const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    pub const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const TOKEN: &str = concat!(
        "eyJhbGciOiJFUzI1NiJ9",
        ".",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl",
        "LmNvbS9pc19yb290Ijp0cnVlfQ",
        ".",
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA",
        "pmWQxfKTUJqPP3-Kg6NU1Q"
    );

    fn rfc_key() -> VerifyingKey {
        let jwks = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}"}}]}}"#);
        *Jwks::parse(&jwks).unwrap().get(None).unwrap()
    }

    #[test]
    fn verifies() {
        let decoded = decode(TOKEN).unwrap();
        assert_eq!(decoded.header.alg, "ES256");
        assert_eq!(decoded.claims["iss"], "joe");
        assert_eq!(decoded.claims["exp"], 1_300_819_380);
        assert_eq!(decoded.claims["http://example.com/is_root"], true);
        verify_es256(&decoded, &rfc_key()).unwrap();
    }

    /// The RFC's signature is high-S, so this pins the "accept high-S"
    /// policy: a verifier that insisted on low-S would refuse it.
    #[test]
    fn is_high_s_and_its_low_s_twin_verifies_too() {
        let decoded = decode(TOKEN).unwrap();
        let signature = Signature::from_slice(&decoded.signature).unwrap();
        let low = signature.normalize_s();
        assert_ne!(low, signature);
        let twin = Decoded {
            signature: low.to_bytes().to_vec(),
            ..decoded
        };
        verify_es256(&twin, &rfc_key()).unwrap();
    }

    /// The key parsed ahead of time gives the same answers: the RFC's
    /// high-S signature and its twin pass, another key and a zero `s` fail.
    #[test]
    fn a_parsed_key_decides_as_the_plain_one_does() {
        let decoded = decode(TOKEN).unwrap();
        let parsed = Es256Public::new(&rfc_key()).unwrap();
        verify_es256_parsed(&decoded, &parsed).unwrap();
        let low = Signature::from_slice(&decoded.signature).unwrap().normalize_s();
        let twin = Decoded {
            signature: low.to_bytes().to_vec(),
            ..decoded.clone()
        };
        verify_es256_parsed(&twin, &parsed).unwrap();
        let other = Es256Public::new(key(1).verifying_key()).unwrap();
        assert_eq!(verify_es256_parsed(&decoded, &other), Err(JoseError::BadSignature));
        let mut zero_s = decoded.signature.clone();
        zero_s[32..].fill(0);
        let zero = Decoded {
            signature: zero_s,
            ..decoded.clone()
        };
        assert_eq!(verify_es256_parsed(&zero, &parsed), Err(JoseError::BadSignature));
        let none = Decoded {
            header: Header {
                alg: "none".into(),
                ..decoded.header.clone()
            },
            ..decoded
        };
        assert!(matches!(
            verify_es256_parsed(&none, &parsed),
            Err(JoseError::UnsupportedAlg(_))
        ));
    }

    #[test]
    fn fails_with_another_key() {
        let decoded = decode(TOKEN).unwrap();
        assert_eq!(
            verify_es256(&decoded, key(1).verifying_key()),
            Err(JoseError::BadSignature)
        );
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // serde_json's default float parser is not exactly round-trip for
        // every f64 (that needs its `float_roundtrip` feature); floats with
        // short binary fractions are, and are all a JWT ever carries.
        (-1_000_000_000i64..1_000_000_000).prop_map(|n| Value::from(n as f64 / 64.0)),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,8}|.{0,6}", json_value(), 0..6).prop_map(|m| m.into_iter().collect())
}

fn header_object() -> impl Strategy<Value = Map<String, Value>> {
    json_object().prop_map(|mut m| {
        m.remove("crit");
        m.insert("alg".into(), "ES256".into());
        for name in ["typ", "kid"] {
            if m.get(name).is_some_and(|v| !v.is_string()) {
                m.remove(name);
            }
        }
        m
    })
}

proptest! {
    #[test]
    fn encode_decode_roundtrip(header in header_object(), claims in json_object()) {
        let key = key(5);
        let token = encode_es256(&key, &Value::Object(header.clone()), &Value::Object(claims.clone())).unwrap();
        let decoded = decode(&token).unwrap();
        prop_assert_eq!(&decoded.raw_header, &header);
        prop_assert_eq!(&decoded.claims, &claims);
        prop_assert_eq!(decoded.header.kid.as_deref(), header.get("kid").and_then(Value::as_str));
        prop_assert!(verify_es256(&decoded, key.verifying_key()).is_ok());
    }

    #[test]
    fn decode_never_panics(input in ".{0,300}") {
        let _ = decode(&input);
    }

    #[test]
    fn decode_never_panics_on_near_tokens(input in "[A-Za-z0-9_=.+/-]{0,300}") {
        if let Ok(decoded) = decode(&input) {
            let _ = verify_es256(&decoded, key(1).verifying_key());
        }
    }

    #[test]
    fn any_single_byte_change_breaks_the_token(
        claims in json_object(),
        index in any::<prop::sample::Index>(),
        // Mostly ASCII: most other bytes would just make invalid UTF-8.
        replacement in prop_oneof![3 => 0x20u8..0x7f, 1 => any::<u8>()],
    ) {
        let key = key(6);
        let token = encode_es256(&key, &json!({"alg": "ES256"}), &Value::Object(claims)).unwrap();
        let mut bytes = token.clone().into_bytes();
        let at = index.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        // A change that breaks UTF-8 cannot even be presented as a token.
        if let Ok(tampered) = String::from_utf8(bytes) {
            let outcome = decode(&tampered).and_then(|d| verify_es256(&d, key.verifying_key()));
            prop_assert!(outcome.is_err(), "accepted {}", tampered);
        }
    }
}
