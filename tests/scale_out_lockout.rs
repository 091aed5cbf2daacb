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
