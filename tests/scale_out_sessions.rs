//! What the gateway knows of a session, and the client hold quotas, across
//! instances (SPEC §10): two real TLS gateways on a real `redis-server`.
//! A session's first sighting (when, from which device) and the person
//! bound to it are in Redis, so the risk conditions and the actor binding
//! read the same on every instance; a client's holds count against one
//! quota wherever they are parked, and come back when they end. Client
//! addresses come from a trusted proxy's X-Forwarded-For.
#![allow(clippy::unwrap_used)]

mod common;
mod holdkit;

use common::redis::RedisServer;
use common::*;
use holdkit::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stepgate::clock::{ManualClock, SystemClock};

fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Seconds `key` has left to live, as Redis reports them.
fn ttl(redis: &RedisServer, key: &str) -> i64 {
    redis
        .command(&["TTL", key])
        .and_then(|l| l.trim_start_matches(':').parse().ok())
        .expect("ttl")
}

async fn from(gw: &Gateway, method: &str, target: &str, session: &str, extra: &[(&str, &str)]) -> RawResponse {
    let c = cookie(session);
    let mut h: Vec<(&str, &str)> = vec![("cookie", &c)];
    h.extend_from_slice(extra);
    send(gw, method, target, &h, b"x=1").await
}

fn is_step_up(r: &RawResponse) -> bool {
    r.status == 401 && r.json()["error"] == "step_up_required"
}

// ------------------------------------------------------------ first sightings

const RISKY: &str = "
  - name: export
    action: data.export
    match: { methods: [POST], path: /data/export }
    when:
      - not: { session_age_over: 1h }
    require: { methods: [token] }
    hold: { mode: challenge }
  - name: settings
    action: account.settings
    match: { methods: [POST], path: /account/settings }
    when:
      - new_device: true
    require: { methods: [token] }
    hold: { mode: challenge }
";

const LAPTOP: (&str, &str) = ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0");
const PHONE: (&str, &str) = ("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 19_0) Safari/605.1");

/// A session first seen on A (on a pass-through request) is two hours old
/// on B, whose clock is two hours on: a "new session" condition does not
/// fire there, and B compares devices with the one A saw first.
#[tokio::test]
async fn a_session_first_seen_on_a_is_old_and_from_its_first_device_on_b() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let now = now_secs();
    let a = Gateway::start_with_clock(up.addr, RISKY, &redis.state_yaml(), Arc::new(ManualClock::at_unix(now))).await;
    let later = Arc::new(ManualClock::at_unix(now));
    let b = a.peer(later.clone()).await;

    // Seen on A, from the laptop, off the sensitive routes.
    let r = from(&a, "GET", "/home", "fleet-old", &[LAPTOP]).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    // On A it is new: the condition does fire there.
    assert!(is_step_up(
        &from(&a, "POST", "/data/export", "fleet-old", &[LAPTOP]).await
    ));

    later.advance(Duration::from_secs(2 * 3600));
    let r = from(&b, "POST", "/data/export", "fleet-old", &[LAPTOP]).await;
    assert_eq!(r.status, 200, "B took the session for a new one: {}", text(&r));
    assert_eq!(up.count("/data/export"), 1);
    let r = from(&b, "POST", "/data/export", "fleet-fresh", &[LAPTOP]).await;
    assert!(is_step_up(&r), "a session B sees first is new: {}", text(&r));

    // The first device is A's sighting's, not B's.
    let r = from(&b, "POST", "/account/settings", "fleet-old", &[PHONE]).await;
    assert!(is_step_up(&r), "B recorded its own first device: {}", text(&r));
    assert_eq!(r.json()["risk"], json!(["new_device"]));
    let r = from(&b, "POST", "/account/settings", "fleet-old", &[LAPTOP]).await;
    assert_eq!(r.status, 200, "{}", text(&r));

    // One key per session, opaque, expiring a day after its last sighting.
    let keys = redis.keys("stepgate:session:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(!k.contains("fleet"), "{k}");
        let t = ttl(&redis, k);
        assert!((86_000..=86_400).contains(&t), "{k} lives {t}s");
    }
}

// ------------------------------------------------------------ actor binding

const DELETE: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

async fn delete(gw: &Gateway, session: &str, extra: &[(&str, &str)]) -> Value {
    let r = from(gw, "POST", "/admin/users/carol/delete", session, extra).await;
    assert!(is_step_up(&r), "{}", text(&r));
    r.json()
}

async fn prove(gw: &Gateway, issuer: &Gateway, session: &str, hold: &Value, sub: &str) -> RawResponse {
    let token = issuer.token(json!({"sid": hold["sid"], "txn": hold["txn"], "sub": sub}));
    complete_with_token(gw, hold["hold_id"].as_str().unwrap(), session, &token).await
}

/// Bob steps up first on an anonymous session on A, so he is its actor;
/// mallory, proving who she is on the same session on B, is refused
/// there, and bob still acts on it on B.
#[tokio::test]
async fn the_actor_bound_on_a_is_the_actor_on_b() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let a = Gateway::start(up.addr, DELETE, &redis.state_yaml()).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    let session = "fleet-shared-admin";

    let hold = delete(&a, session, &[]).await;
    let r = prove(&a, &a, session, &hold, "bob").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(up.count("/admin/users/"), 1);

    let hold = delete(&b, session, &[]).await;
    let r = prove(&b, &a, session, &hold, "mallory").await;
    assert_eq!(
        (r.status, r.error_code()),
        (403, "identity_mismatch".to_owned()),
        "B let a second person act on A's session: {}",
        text(&r)
    );
    assert_eq!(up.count("/admin/users/"), 1, "nothing more was forwarded");
    let mismatches = b.audit_events("identity.mismatch");
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert_eq!(mismatches[0]["bound"], "bob");

    let r = prove(&b, &a, session, &hold, "bob").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(up.count("/admin/users/"), 2);

    let keys = redis.keys("stepgate:session:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let t = ttl(&redis, &keys[0]);
    assert!((86_000..=86_400).contains(&t), "{} lives {t}s", keys[0]);
}

// ------------------------------------------------------------ client quotas

const TOP: &str = "trusted_proxies: [ 127.0.0.1/32 ]\nlimits: { max_holds_per_client: 2 }\n";

/// Two holds from one address, one parked on A and one on B, use up its
/// quota of two: a third is refused on either instance, another address
/// is untouched, and once one of them is released (on the other
/// instance) the address may park one again.
#[tokio::test]
async fn a_clients_holds_on_two_instances_meet_one_quota_that_comes_back() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let a = Gateway::start(up.addr, DELETE, &format!("{TOP}{}", redis.state_yaml())).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    let flood = [("x-forwarded-for", "203.0.113.50")];

    let on_a = delete(&a, "quota-1", &flood).await;
    let _on_b = delete(&b, "quota-2", &flood).await;
    for (n, gw) in [&a, &b].into_iter().enumerate() {
        let r = from(gw, "POST", "/admin/users/carol/delete", &format!("quota-x{n}"), &flood).await;
        assert_eq!(
            (r.status, r.error_code()),
            (429, "too_many_holds".to_owned()),
            "each instance counted only its own holds: {}",
            text(&r)
        );
    }
    delete(&b, "quota-other", &[("x-forwarded-for", "198.51.100.60")]).await;

    // What Redis holds: one quota per address (hashed), expiring with the
    // last of its holds' deadlines (2 minutes).
    let keys = redis.keys("stepgate:quota*");
    assert_eq!(keys.len(), 4, "a set and a byte count per address: {keys:?}");
    for k in &keys {
        assert!(!k.contains("203.0.113") && !k.contains("198.51.100"), "{k}");
        let t = ttl(&redis, k);
        assert!((1..=122).contains(&t), "{k} lives {t}s");
    }

    // A's hold is released by a proof on B; its share comes back.
    let r = prove(&b, &a, "quota-1", &on_a, "alice").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(up.count("/admin/users/carol/delete"), 1);
    delete(&a, "quota-3", &flood).await;
    let r = from(&b, "POST", "/admin/users/carol/delete", "quota-4", &flood).await;
    assert_eq!(r.status, 429, "the quota is two again, not three: {}", text(&r));
}
