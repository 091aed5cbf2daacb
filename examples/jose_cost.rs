//! A fixed ES256 workload for instruction counting: `n` repetitions of one
//! operation after a common setup. Run it twice under callgrind (n = 1 and
//! n = 101) and divide the difference by 100 to get the cost of one
//! operation without the setup (see README "Micro-benchmarks").
//!
//!     cargo build --release --example jose_cost
//!     valgrind --tool=callgrind target/release/examples/jose_cost verify 101
//!
//! Operations: `sign` (one assertion), `verify` (decode plus ES256 verify of
//! an assertion) and `token` (a whole up-front step-up token check).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use serde_json::json;
use stepgate::assertion::{AssertionFacts, AssertionSigner};
use stepgate::jose::{jwk, jws, Jwks};
use stepgate::stepup::token::{Binding, TokenIssuer, TokenVerifier};

const NOW: u64 = 1_800_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "verify".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let now = UNIX_EPOCH + Duration::from_secs(NOW);

    let key = SigningKey::from_slice(&[7; 32]).expect("fixed key");
    let public = *key.verifying_key();
    let kid = jwk::thumbprint(&public);
    let signer = AssertionSigner::new(
        key.clone(),
        vec![],
        "stepgate".into(),
        "app".into(),
        Duration::from_secs(60),
    )
    .unwrap();
    let facts = AssertionFacts {
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
    };
    let assertion = signer.sign(&facts, now).unwrap().token;
    let verifier = TokenVerifier::new(vec![TokenIssuer {
        issuer: "https://idp.example".into(),
        audience: "stepgate".into(),
        keys: Jwks::from_keys([public]),
    }]);
    let token = jws::mint_es256(
        &key,
        &kid,
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

    for _ in 0..n {
        match op.as_str() {
            "sign" => {
                black_box(signer.sign(black_box(&facts), now).unwrap());
            }
            "verify" => {
                let decoded = jws::decode(black_box(&assertion)).unwrap();
                jws::verify_es256(&decoded, &public).unwrap();
            }
            "token" => {
                black_box(verifier.verify(black_box(&token), &binding, now).unwrap());
            }
            other => panic!("unknown operation {other}"),
        }
    }
}
