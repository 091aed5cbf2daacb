//! A fixed ES256 workload for instruction counting: `n` repetitions of one
//! operation after a common setup. Run it twice under callgrind (n = 1 and
//! n = 101) and divide the difference by 100 to get the cost of one
//! operation without the setup (see docs/benchmarks.md, "Micro-benchmarks").
//!
//!     cargo build --release --example jose_cost
//!     valgrind --tool=callgrind target/release/examples/jose_cost verify 101
//!
//! Operations: `sign` (one assertion), `verify` (decode plus ES256 verify of
//! an assertion) and `token` (a whole up-front step-up token check).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use stepgate::assertion::AssertionSigner;
use stepgate::jose::jws;

#[path = "../benches/support/jose.rs"]
mod jose_fixture;
use jose_fixture::{key, NOW};

fn main() {
    let mut args = std::env::args().skip(1);
    let op = args.next().unwrap_or_else(|| "verify".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let now = UNIX_EPOCH + Duration::from_secs(NOW);

    let key = key(7);
    let public = *key.verifying_key();
    let signer = AssertionSigner::new(
        key.clone(),
        vec![],
        "stepgate".into(),
        "app".into(),
        Duration::from_secs(60),
    )
    .unwrap();
    let facts = jose_fixture::assertion_facts();
    let assertion = signer.sign(&facts, now).unwrap().token;
    let jose_fixture::TokenCheck {
        verifier,
        token,
        binding,
    } = jose_fixture::token_check(&key);

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
