//! Failure limits across instances (SPEC §10): two real TLS gateways on a
//! real `redis-server` count wrong codes in Redis, so guesses split over
//! both spend one budget, as on one instance. The limit still counts per
//! person at one client address: a stranger's failures never lock the
//! person out from their own address. Client addresses come from a trusted
//! proxy's X-Forwarded-For.
#![allow(clippy::unwrap_used)]

mod common;
mod holdkit;
mod stepup_kit;

use common::redis::RedisServer;
use common::*;
use holdkit::*;
use std::sync::Arc;
use stepgate::clock::SystemClock;
use stepup_kit::*;

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [totp], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

const TOP: &str = "trusted_proxies: [ 127.0.0.1/32 ]\n";

/// A fresh hold from `ip`, on its own session, and the session's cookie.
async fn hold(gw: &Gateway, n: usize, ip: &str) -> (String, String) {
    let c = cookie(&format!("lockout-{n}"));
    let resp = send(
        gw,
        "POST",
        &format!("/admin/users/u{n}/delete"),
        &[("cookie", c.as_str()), ("x-forwarded-for", ip)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    (hold_id(&resp.json()), c)
}

async fn totp(gw: &Gateway, n: usize, ip: &str, code: &str) -> RawResponse {
    let (id, c) = hold(gw, n, ip).await;
    complete_as(
        gw,
        &id,
        &[("cookie", c.as_str()), ("x-forwarded-for", ip)],
        &serde_json::json!({"method": "totp", "user": "alice", "code": code}),
    )
    .await
}

#[tokio::test]
async fn wrong_codes_split_over_two_instances_spend_one_budget() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let a = Gateway::start(up.addr, ROUTES, &format!("{TOP}{}", redis.state_yaml())).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    let alice = enroll(&a.dir, "alice");
    fresh_step(10).await;
    let bad = wrong_code(&alice);
    let attacker = "203.0.113.7";

    // Five wrong codes for alice from one address, alternating A and B:
    // the free tries of one person at one address, spent over both.
    for n in 0..5 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let r = totp(gw, n, attacker, &bad).await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), "invalid_proof");
    }
    // B has seen only two of them, yet backs off: the right code from the
    // attacker's address is refused there (and so not spent).
    let code = pyotp_now(&alice);
    let r = totp(&b, 10, attacker, &code).await;
    assert_eq!(
        r.status,
        401,
        "B counted only its own failures: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(up.count("/admin/users/"), 0);

    // Alice, from her own address, steps up with that same code on A.
    let r = totp(&a, 11, "198.51.100.20", &code).await;
    assert_eq!(
        r.status,
        200,
        "a stranger locked alice out: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(up.count("/admin/users/u11/"), 1);

    // What Redis holds: one count per person at an address and one per
    // address, hashed (no address or name in the key), each expiring.
    let keys = redis.keys("stepgate:fail:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(!k.contains("203.0.113") && !k.contains("alice"), "{k}");
        let ttl: i64 = redis
            .command(&["TTL", k])
            .and_then(|l| l.trim_start_matches(':').parse().ok())
            .expect("ttl");
        assert!((1..=900).contains(&ttl), "{k} lives {ttl}s");
    }
}

async fn options(gw: &Gateway, ip: &str) -> RawResponse {
    post_json(
        gw,
        "/.stepup/approver/login/options",
        &[("origin", "https://localhost:8443"), ("x-forwarded-for", ip)],
        &serde_json::json!({"name": "nobody"}),
    )
    .await
}

/// The ceremony rates are one bucket per client address across the fleet:
/// with `ceremony_rate_per_client: 4`, four sign-in option requests spread
/// over A and B use up the address's burst, the fifth is refused on either
/// instance, and another address is untouched.
#[tokio::test]
async fn ceremony_rates_split_over_two_instances_take_from_one_bucket() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let stepup = ["webauthn: { rp_id: localhost, origins: ['https://localhost:8443'], rp_name: Acme }".to_owned()];
    let top = format!("{TOP}limits: {{ ceremony_rate_per_client: 4 }}\n{}", redis.state_yaml());
    let a = Gateway::start(up.addr, ROUTES, &extra(&stepup, &top)).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    let flood = "203.0.113.9";
    for n in 0..4 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let r = options(gw, flood).await;
        assert_eq!(r.status, 200, "{}", body_text(&r));
    }
    for gw in [&a, &b] {
        let r = options(gw, flood).await;
        assert_eq!(r.status, 429, "each instance counted alone: {}", body_text(&r));
        assert_eq!(r.error_code(), "too_many_holds");
        assert!(r.header("retry-after").is_some());
    }
    let r = options(&b, "198.51.100.30").await;
    assert_eq!(r.status, 200, "another address has its own bucket: {}", body_text(&r));
    let keys = redis.keys("stepgate:rate:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(!k.contains("203.0.113"), "{k}");
        let ttl: i64 = redis
            .command(&["PTTL", k])
            .and_then(|l| l.trim_start_matches(':').parse().ok())
            .expect("pttl");
        assert!(ttl > 0, "{k} has no expiry ({ttl})");
    }
}
