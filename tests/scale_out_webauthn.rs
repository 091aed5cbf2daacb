//! Passkey ceremonies across instances (SPEC §10): two real TLS gateways
//! share a real `redis-server`, and the WebAuthn challenges in flight live
//! there. A ceremony started on one instance is finished on the other; a
//! challenge spent on one is refused on the other; without Redis no
//! challenge is handed out. The authenticator is the software one of
//! `tests/webauthn.rs` (genuine ES256 signatures over what a browser
//! would send).
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::authenticator::SoftKey;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use stepgate::clock::SystemClock;
use stepup_kit::*;

const RP_ID: &str = "localhost";
const ORIGIN: &str = "https://localhost:8443";
const COOKIE: &str = "SESSIONID=wa-fleet-1";

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [webauthn], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
";

/// A and B on one Redis, with passkeys and one approver, bob.
async fn pair(up: &Upstream, redis: &RedisServer, bob: &ApproverKey) -> (Gateway, Gateway) {
    let stepup = [
        format!("webauthn: {{ rp_id: {RP_ID}, origins: ['{ORIGIN}'], rp_name: Acme Admin }}"),
        approvers_line(&[bob.yaml(&["ops"], false)]),
    ];
    let a = Gateway::start(up.addr, ROUTES, &extra(&stepup, &redis.state_yaml())).await;
    let b = a.peer(Arc::new(SystemClock)).await;
    (a, b)
}

/// The token of the link `stepgate enroll webauthn USER` prints.
fn enrollment_link(gw: &Gateway, user: &str) -> String {
    let run = stepgate(&gw.dir, &["enroll", "webauthn", user]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no enrollment link in {:?}", run.stdout))
        .to_owned()
}

/// Registration options from `start`, the credential sent to `finish`.
async fn enroll_across(start: &Gateway, finish: &Gateway, user: &str, key: &SoftKey) -> RawResponse {
    let token = enrollment_link(start, user);
    let opts = post_json(start, "/.stepup/enroll/options", &[], &json!({ "token": token })).await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    post_json(
        finish,
        "/.stepup/enroll/finish",
        &[],
        &json!({"token": token, "credential": key.register(&opts.json())}),
    )
    .await
}

async fn hold(gw: &Gateway, target: &str) -> String {
    let resp = raw(gw.addr, &gw.pki, &request("POST", target, &[("cookie", COOKIE)], b"")).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    resp.json()["hold_id"].as_str().unwrap().to_owned()
}

async fn options(gw: &Gateway, hold: &str, user: &str) -> RawResponse {
    get(
        gw,
        &format!("/.stepup/holds/{hold}/webauthn?user={user}"),
        &[("cookie", COOKIE)],
    )
    .await
}

async fn prove(gw: &Gateway, hold: &str, credential: &Value) -> RawResponse {
    complete(
        gw,
        COOKIE,
        hold,
        json!({"method": "webauthn", "credential": credential}),
    )
    .await
}

async fn login_options(gw: &Gateway, name: &str) -> RawResponse {
    post_json(
        gw,
        "/.stepup/approver/login/options",
        &[("origin", ORIGIN)],
        &json!({ "name": name }),
    )
    .await
}

async fn login(gw: &Gateway, name: &str, credential: &Value) -> RawResponse {
    post_json(
        gw,
        "/.stepup/approver/login",
        &[("origin", ORIGIN)],
        &json!({"name": name, "method": "webauthn", "credential": credential}),
    )
    .await
}

/// The seconds to live of `key`, as Redis reports them.
fn ttl(redis: &RedisServer, key: &str) -> i64 {
    redis
        .command(&["TTL", key])
        .and_then(|l| l.trim_start_matches(':').parse().ok())
        .expect("ttl")
}

#[tokio::test]
async fn a_passkey_ceremony_started_on_one_instance_is_finished_on_the_other() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, b) = pair(&up, &redis, &bob).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);

    // Enrollment: the registration challenge handed out by A is redeemed
    // on B, which writes the passkey to the shared user store.
    let done = enroll_across(&a, &b, "alice", &key).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(done.json(), json!({"status": "enrolled", "user": "alice"}));
    assert!(
        redis.keys("stepgate:ceremony:*").is_empty(),
        "the registration challenge was taken"
    );

    // Step-up: held on A, options from A, the assertion sent to B.
    let id = hold(&a, "/admin/users/bob/delete").await;
    let opts = options(&a, &id, "alice").await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let kept = redis.keys("stepgate:ceremony:*");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains('{') && kept[0].ends_with('}'), "{}", kept[0]);
    let left = ttl(&redis, &kept[0]);
    assert!((1..=300).contains(&left), "{} lives {left}s", kept[0]);
    let credential = key.assert(&opts.json());
    let released = prove(&b, &id, &credential).await;
    assert_eq!(released.status, 200, "{}", body_text(&released));
    assert_eq!(released.json()["target"], "/admin/users/bob/delete");
    assert_eq!(up.count("/admin/users/bob/delete"), 1);
    let claims = verify_assertion(&a, &up.requests()[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
    assert!(redis.keys("stepgate:ceremony:*").is_empty(), "spent");

    // And the other way round, with options from B answered on A.
    let id = hold(&a, "/admin/users/carol/delete").await;
    let opts = options(&b, &id, "alice").await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let released = prove(&a, &id, &key.assert(&opts.json())).await;
    assert_eq!(released.status, 200, "{}", body_text(&released));
    assert_eq!(up.count("/admin/users/carol/delete"), 1);
}

#[tokio::test]
async fn a_challenge_spent_on_one_instance_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, b) = pair(&up, &redis, &bob).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);
    let done = enroll_across(&a, &a, "bob", &key).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));

    // bob signs in on A with the challenge A gave him ...
    let opts = login_options(&a, "bob").await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let signed = key.assert(&opts.json());
    let first = login(&a, "bob", &signed).await;
    assert_eq!(first.status, 303, "{}", body_text(&first));
    // ... and the same assertion, replayed on B, finds it spent.
    let replay = login(&b, "bob", &signed).await;
    assert_eq!(replay.status, 401, "{}", body_text(&replay));
    assert_eq!(replay.error_code(), "invalid_proof");
    let again = login(&a, "bob", &signed).await;
    assert_eq!(again.status, 401, "{}", body_text(&again));

    // Control: a fresh challenge from A is good on B, once.
    let fresh = key.assert(&login_options(&a, "bob").await.json());
    let on_b = login(&b, "bob", &fresh).await;
    assert_eq!(on_b.status, 303, "{}", body_text(&on_b));
    let twice = login(&a, "bob", &fresh).await;
    assert_eq!(twice.status, 401, "{}", body_text(&twice));

    // A challenge for one purpose does not verify another on the other
    // instance either, and is not spent by the try: a sign-in challenge
    // from A offered on B as a hold's proof is refused, then still signs
    // in on B.
    let id = hold(&a, "/admin/users/dave/delete").await;
    let sign_in = key.assert(&login_options(&a, "bob").await.json());
    let wrong = prove(&b, &id, &sign_in).await;
    assert_eq!(wrong.status, 401, "{}", body_text(&wrong));
    assert_eq!(wrong.error_code(), "invalid_proof");
    let right = login(&b, "bob", &sign_in).await;
    assert_eq!(right.status, 303, "{}", body_text(&right));
    assert_eq!(up.count("/admin/users/dave/delete"), 0);
}

#[tokio::test]
async fn without_redis_no_passkey_challenge_is_handed_out() {
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, _b) = pair(&up, &redis, &bob).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);
    let done = enroll_across(&a, &a, "bob", &key).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    let before = login_options(&a, "bob").await;
    assert_eq!(before.status, 200, "{}", body_text(&before));

    redis.stop();
    // A challenge nobody could redeem is not handed out, and an answer to
    // one handed out before cannot be checked: both fail closed, with the
    // SPEC's code, and nothing is kept in this process instead.
    let opts = login_options(&a, "bob").await;
    assert_eq!(opts.status, 503, "{}", body_text(&opts));
    assert_eq!(opts.error_code(), "state_unavailable");
    let answer = login(&a, "bob", &key.assert(&before.json())).await;
    assert_eq!(answer.status, 503, "{}", body_text(&answer));
    assert_eq!(answer.error_code(), "state_unavailable");

    // Redis returns (empty): new ceremonies work without a restart; the one
    // from before the outage went with Redis's data.
    redis.restart();
    let mut ok = None;
    for _ in 0..100 {
        let o = login_options(&a, "bob").await;
        if o.status == 200 {
            ok = Some(o);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let o = ok.expect("options again once Redis is back");
    let back = login(&a, "bob", &key.assert(&o.json())).await;
    assert_eq!(back.status, 303, "{}", body_text(&back));
}
