//! ES256 inputs shared by the criterion bench (`benches/core.rs`) and the
//! instruction-count workload (`examples/jose_cost.rs`), so the two measure
//! the very same assertion claims and step-up token. Included by `#[path]`
//! from both; it lives in a subdirectory so cargo does not take it for a
//! bench target of its own.

use p256::ecdsa::SigningKey;
use serde_json::json;
use stepgate::assertion::AssertionFacts;
use stepgate::jose::{jwk, jws, Jwks};
use stepgate::stepup::token::{Binding, TokenIssuer, TokenVerifier};

/// The fixed clock, unix seconds.
pub const NOW: u64 = 1_800_000_000;

/// A fixed P-256 key: every byte of the scalar is `seed`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).expect("a valid P-256 scalar")
}

/// The facts of a typical assertion: a user deletion stepped up by OTP.
pub fn assertion_facts() -> AssertionFacts {
    AssertionFacts {
        sub: "alice".into(),
        sid: "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5".into(),
        act: "user.delete".into(),
        route: "delete-user".into(),
        txn: "dHhuZGlnZXN0dHhuZGlnZXN0dHhuZGlnZXN0dHhuZGln".into(),
        htm: "POST".into(),
        htu: "https://app.example/admin/users/42/delete".into(),
        amr: vec!["otp".into()],
        acr: "stepup".into(),
        auth_time: NOW - 5,
        ..AssertionFacts::default()
    }
}

/// An up-front step-up token signed by `key`, the verifier that trusts that
/// key, and the request binding the token is valid for at `NOW`.
pub struct TokenCheck {
    pub verifier: TokenVerifier,
    pub token: String,
    pub binding: Binding<'static>,
}

pub fn token_check(key: &SigningKey) -> TokenCheck {
    let public = *key.verifying_key();
    let verifier = TokenVerifier::new(vec![TokenIssuer {
        issuer: "https://idp.example".into(),
        audience: "stepgate".into(),
        keys: Jwks::from_keys([public]),
    }]);
    let token = jws::mint_es256(
        key,
        &jwk::thumbprint(&public),
        json!({
            "iss": "https://idp.example", "aud": "stepgate", "iat": NOW - 10, "exp": NOW + 110,
            "jti": "jti-0123456789", "sub": "alice", "sid": "sid-1", "txn": "txn-1",
            "amr": ["otp"], "acr": "stepup",
        }),
    );
    let binding = Binding {
        sid: "sid-1",
        txn: "txn-1",
        hold: None,
    };
    TokenCheck {
        verifier,
        token,
        binding,
    }
}
