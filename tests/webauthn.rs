//! WebAuthn end to end through a real gateway: a passkey enrolled with the
//! link `stepgate enroll webauthn` prints, a step-up that releases the held
//! request once with a verifiable assertion, and the attacks on it (replay,
//! another hold's challenge, another session, a wrong origin, no user
//! verification, a counter that does not move, enrollment links reused or
//! expired), plus an approver deciding with a passkey.
//!
//! The authenticator is `common::authenticator::SoftKey`, a software
//! stand-in for the real browser authenticator (which the Chromium tests
//! exercise): it signs exactly what a browser and an authenticator would,
//! so every check here runs against genuine ES256 signatures.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::authenticator::SoftKey;
use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use stepup_kit::*;

const RP_ID: &str = "localhost";
const ORIGIN: &str = "https://localhost:8443";
const COOKIE: &str = "SESSIONID=wa-session-1";
const OTHER_SESSION: &str = "SESSIONID=wa-session-2";

const DELETE_ROUTE: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [webauthn, totp], max_age: 5m }
    display: [ { label: User, capture: 1 } ]
    hold: { mode: challenge, timeout: 2m }
";

/// A transfer needs the requester's passkey and an approver.
const TRANSFER_ROUTE: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [webauthn], approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 2m }
";

fn routes() -> String {
    format!("{DELETE_ROUTE}{TRANSFER_ROUTE}")
}

fn stepup_lines(approvers: &[String]) -> Vec<String> {
    let mut lines = vec![format!(
        "webauthn: {{ rp_id: {RP_ID}, origins: ['{ORIGIN}'], rp_name: Acme Admin }}"
    )];
    if !approvers.is_empty() {
        lines.push(approvers_line(approvers));
    }
    lines
}

async fn start(up: &Upstream, approvers: &[String]) -> Gateway {
    Gateway::start(up.addr, &routes(), &extra(&stepup_lines(approvers), "")).await
}

/// `stepgate enroll webauthn USER --ttl TTL`: the token of the printed link.
fn enrollment_link(gw: &Gateway, user: &str, ttl: &str) -> String {
    let run = stepgate(&gw.dir, &["enroll", "webauthn", user, "--ttl", ttl]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let link = run.stdout.lines().next().unwrap_or_default();
    let prefix = format!("{ORIGIN}/.stepup/enroll?token=");
    assert!(link.starts_with(&prefix), "printed {:?}", run.stdout);
    assert!(run.stdout.contains("works once"), "{}", run.stdout);
    link[prefix.len()..].to_owned()
}

async fn enroll_options(gw: &Gateway, token: &str) -> RawResponse {
    post_json(gw, "/.stepup/enroll/options", &[], &json!({ "token": token })).await
}

async fn enroll_finish(gw: &Gateway, token: &str, credential: Value) -> RawResponse {
    post_json(
        gw,
        "/.stepup/enroll/finish",
        &[],
        &json!({"token": token, "credential": credential, "label": "test key"}),
    )
    .await
}

/// Registers `key` for `user` through a fresh enrollment link.
async fn enroll(gw: &Gateway, user: &str, key: &SoftKey) {
    let token = enrollment_link(gw, user, "15m");
    let opts = enroll_options(gw, &token).await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let o = opts.json();
    assert_eq!(o["user"], user);
    assert_eq!(o["publicKey"]["rp"]["id"], RP_ID);
    assert_eq!(o["publicKey"]["rp"]["name"], "Acme Admin");
    assert_eq!(o["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    let done = enroll_finish(gw, &token, key.register(&o)).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(done.json(), json!({"status": "enrolled", "user": user}));
}

/// A held delete; returns the hold id and its txn.
async fn hold(gw: &Gateway, cookie: &str, target: &str) -> (String, String) {
    let resp = raw(gw.addr, &gw.pki, &request("POST", target, &[("cookie", cookie)], b"")).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    let ch = resp.json();
    assert_eq!(ch["methods"], json!(["webauthn", "totp"]));
    (
        ch["hold_id"].as_str().unwrap().to_owned(),
        ch["txn"].as_str().unwrap().to_owned(),
    )
}

async fn options(gw: &Gateway, cookie: &str, hold: &str, user: &str) -> RawResponse {
    get(
        gw,
        &format!("/.stepup/holds/{hold}/webauthn?user={user}"),
        &[("cookie", cookie)],
    )
    .await
}

/// Options for `user` on `hold`, which must be granted.
async fn challenge(gw: &Gateway, hold: &str, user: &str) -> Value {
    let resp = options(gw, COOKIE, hold, user).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    resp.json()
}

async fn prove(gw: &Gateway, cookie: &str, hold: &str, credential: &Value) -> RawResponse {
    complete(
        gw,
        cookie,
        hold,
        json!({"method": "webauthn", "credential": credential}),
    )
    .await
}

fn audit_lines(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("state/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Why the last `proof.rejected` of `hold` was refused, as audited (the
/// client only ever hears `invalid_proof`).
fn rejected_because(gw: &Gateway, hold: &str) -> String {
    audit_lines(gw)
        .into_iter()
        .rfind(|l| l["event"] == "proof.rejected" && l["hold"] == hold)
        .and_then(|l| l["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no proof.rejected for {hold}"))
}

const SPENT: &str = "no pending challenge";

fn assertion_of(up: &Upstream, target: &str) -> String {
    let seen: Vec<Recorded> = up.requests().into_iter().filter(|r| r.target == target).collect();
    assert_eq!(seen.len(), 1, "{target} reached the upstream {} times", seen.len());
    seen[0].header("x-stepup-assertion").expect("assertion header")
}

#[tokio::test]
async fn cli_link_enrolls_a_passkey_that_releases_a_hold_once() {
    let up = Upstream::start().await;
    let gw = start(&up, &[]).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);
    enroll(&gw, "alice", &key).await;

    let store = std::fs::read_to_string(gw.dir.join("state/users.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&store).unwrap();
    let alice = &doc["users"]["alice"];
    assert_eq!(alice["webauthn"][0]["label"], "test key");
    assert!(alice.get("webauthn_enroll").is_none(), "the link is used up");
    assert!(alice["webauthn_user_id"].is_string());

    let (id, txn) = hold(&gw, COOKIE, "/admin/users/bob/delete").await;
    let opts = challenge(&gw, &id, "alice").await;
    let pk = &opts["publicKey"];
    assert_eq!(pk["userVerification"], "required");
    assert_eq!(pk["rpId"], RP_ID);
    assert_eq!(pk["allowCredentials"].as_array().map(Vec::len), Some(1));
    let credential = key.assert(&opts);
    let done = prove(&gw, COOKIE, &id, &credential).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(done.json()["target"], "/admin/users/bob/delete");

    let claims = verify_assertion(&gw, &assertion_of(&up, "/admin/users/bob/delete"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["amr"], json!(["hwk", "user", "mfa"]));
    assert_eq!(claims["acr"], "phr");
    assert_eq!(claims["txn"], txn.as_str());

    // The same request again has the same txn; the spent assertion still
    // does not prove it.
    let (again, again_txn) = hold(&gw, COOKIE, "/admin/users/bob/delete").await;
    assert_eq!(again_txn, txn);
    let replay = prove(&gw, COOKIE, &again, &credential).await;
    assert_eq!(replay.status, 401, "{}", body_text(&replay));
    assert_eq!(replay.error_code(), "invalid_proof");
    assert!(rejected_because(&gw, &again).contains(SPENT));
    assert_eq!(up.count("/admin/users/bob/delete"), 1);

    let trail = audit_lines(&gw);
    let enrolled = trail
        .iter()
        .find(|l| l["event"] == "webauthn.enrolled")
        .expect("enrolled");
    assert_eq!(enrolled["sub"], "alice");
    let accepted: Vec<_> = trail
        .iter()
        .filter(|l| l["event"] == "proof.accepted" && l["method"] == "webauthn")
        .collect();
    assert_eq!(accepted.len(), 1);
    assert!(trail
        .iter()
        .any(|l| l["event"] == "proof.rejected" && l["method"] == "webauthn" && l["hold"] == again.as_str()));
}

#[tokio::test]
async fn an_assertion_is_good_only_for_its_own_hold_and_session() {
    let up = Upstream::start().await;
    let gw = start(&up, &[]).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);
    key.backup_eligible = true;
    enroll(&gw, "alice", &key).await;
    let (a, _) = hold(&gw, COOKIE, "/admin/users/bob/delete").await;
    let (b, _) = hold(&gw, COOKIE, "/admin/users/carol/delete").await;
    let credential = key.assert(&challenge(&gw, &a, "alice").await);

    let on_b = prove(&gw, COOKIE, &b, &credential).await;
    assert_eq!(on_b.status, 401, "{}", body_text(&on_b));
    assert_eq!(on_b.error_code(), "invalid_proof");
    assert_eq!(on_b.json()["attempts_left"], 4);
    assert!(rejected_because(&gw, &b).contains(SPENT));

    let elsewhere = prove(&gw, OTHER_SESSION, &a, &credential).await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.error_code(), "session_mismatch");
    let peek = options(&gw, OTHER_SESSION, &a, "alice").await;
    assert_eq!(peek.status, 404);
    assert_eq!(peek.error_code(), "unknown_hold");

    // Neither attempt used up hold A's challenge. The step-up page posts a
    // real form, with the credential as JSON text.
    let form = format!(
        "method=webauthn&credential={}",
        form_urlencoded::byte_serialize(credential.to_string().as_bytes()).collect::<String>()
    );
    let done = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{a}/complete"),
            &[
                ("cookie", COOKIE),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        ),
    )
    .await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    let claims = verify_assertion(&gw, &assertion_of(&up, "/admin/users/bob/delete"));
    assert_eq!(claims["amr"], json!(["swk", "user", "mfa"]), "a synced passkey");
    assert_eq!(up.count("/admin/users/carol/delete"), 0);
}

#[tokio::test]
async fn wrong_origin_missing_user_verification_and_a_stuck_counter_are_refused() {
    let up = Upstream::start().await;
    let gw = start(&up, &[]).await;
    let mut key = SoftKey::new(RP_ID, ORIGIN);
    enroll(&gw, "alice", &key).await;
    let (id, _) = hold(&gw, COOKIE, "/admin/users/bob/delete").await;

    key.origin = "https://localhost.evil.example".into();
    let phished = prove(&gw, COOKIE, &id, &key.assert(&challenge(&gw, &id, "alice").await)).await;
    assert_eq!(phished.error_code(), "invalid_proof", "{}", body_text(&phished));
    assert!(rejected_because(&gw, &id).contains("origin does not match"));
    key.origin = ORIGIN.into();

    key.user_verified = false;
    let unverified = prove(&gw, COOKIE, &id, &key.assert(&challenge(&gw, &id, "alice").await)).await;
    assert_eq!(unverified.error_code(), "invalid_proof", "{}", body_text(&unverified));
    assert!(rejected_because(&gw, &id).contains("user verified bit is not set"));
    key.user_verified = true;

    let good = prove(&gw, COOKIE, &id, &key.assert(&challenge(&gw, &id, "alice").await)).await;
    assert_eq!(good.status, 200, "{}", body_text(&good));

    // A cloned authenticator repeats a counter value the gateway has seen.
    let (next, _) = hold(&gw, COOKIE, "/admin/users/carol/delete").await;
    key.counter -= 1;
    let cloned = prove(&gw, COOKIE, &next, &key.assert(&challenge(&gw, &next, "alice").await)).await;
    assert_eq!(cloned.error_code(), "invalid_proof", "{}", body_text(&cloned));
    assert!(rejected_because(&gw, &next).contains("may have be compromised"));
    key.counter += 1;
    let moved_on = prove(&gw, COOKIE, &next, &key.assert(&challenge(&gw, &next, "alice").await)).await;
    assert_eq!(moved_on.status, 200, "{}", body_text(&moved_on));
    assert_eq!(up.count("/admin/users/"), 2);

    let nobody = options(&gw, COOKIE, &next, "mallory").await;
    assert_eq!(nobody.status, 409, "the hold is released: {}", body_text(&nobody));
    let (third, _) = hold(&gw, COOKIE, "/admin/users/dave/delete").await;
    // A name without a passkey gets stand-in credentials, not an error
    // (tests/enumeration.rs compares the answers).
    let nobody = options(&gw, COOKIE, &third, "mallory").await;
    assert_eq!(nobody.status, 200, "no passkey: {}", body_text(&nobody));
    assert_ne!(nobody.json()["publicKey"]["allowCredentials"], json!([]));
    let anonymous = get(&gw, &format!("/.stepup/holds/{third}/webauthn"), &[("cookie", COOKIE)]).await;
    assert_eq!(anonymous.status, 400);
    let garbage = complete(
        &gw,
        COOKIE,
        &third,
        json!({"method": "webauthn", "credential": {"id": 1}}),
    )
    .await;
    assert_eq!(garbage.status, 400, "malformed, not a failed attempt");
}

#[tokio::test]
async fn enrollment_links_work_once_and_expire() {
    let up = Upstream::start().await;
    let clock = Arc::new(stepgate::clock::ManualClock::at_unix(now_secs()));
    let gw = Gateway::start_with_clock(up.addr, &routes(), &extra(&stepup_lines(&[]), ""), clock.clone()).await;

    let token = enrollment_link(&gw, "alice", "15m");
    let store = std::fs::read_to_string(gw.dir.join("state/users.yaml")).unwrap();
    assert!(!store.contains(&token), "only the token's hash is stored");
    let first = SoftKey::new(RP_ID, ORIGIN);
    let opts = enroll_options(&gw, &token).await.json();
    // Finishing needs the options' own challenge for this very link.
    let unasked = enroll_finish(
        &gw,
        &token,
        first.register(&json!({"publicKey": {"challenge": "AAAA"}})),
    )
    .await;
    assert_eq!(unasked.status, 400, "{}", body_text(&unasked));
    let done = enroll_finish(&gw, &token, first.register(&opts)).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));

    let again = enroll_options(&gw, &token).await;
    assert_eq!(again.status, 403);
    assert_eq!(again.error_code(), "forbidden");
    let second = SoftKey::new(RP_ID, ORIGIN);
    let reuse = enroll_finish(&gw, &token, second.register(&opts)).await;
    assert_eq!(reuse.error_code(), "forbidden");
    assert_eq!(enroll_options(&gw, "not-a-token").await.error_code(), "forbidden");

    // Expired before it was opened.
    let late = enrollment_link(&gw, "alice", "1m");
    clock.advance(Duration::from_secs(120));
    assert_eq!(enroll_options(&gw, &late).await.error_code(), "forbidden");

    // Expired between the options and the finish. (The link's expiry is
    // set from the real time; the gateway's clock is already 2m ahead.)
    let slow = enrollment_link(&gw, "dave", "10m");
    let opts = enroll_options(&gw, &slow).await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    clock.advance(Duration::from_secs(600));
    let expired = enroll_finish(&gw, &slow, second.register(&opts.json())).await;
    assert_eq!(expired.error_code(), "forbidden");
    let store = std::fs::read_to_string(gw.dir.join("state/users.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&store).unwrap();
    assert_eq!(doc["users"]["alice"]["webauthn"].as_sequence().map(Vec::len), Some(1));
    assert!(doc["users"]["dave"].get("webauthn").is_none());

    let bad_ttl = stepgate(&gw.dir, &["enroll", "webauthn", "alice", "--ttl", "30d"]);
    assert_eq!(bad_ttl.code, 2, "{}", bad_ttl.stderr);
    let bad_user = stepgate(&gw.dir, &["enroll", "webauthn", "al ice"]);
    assert_eq!(bad_user.code, 2, "{}", bad_user.stderr);
}

#[tokio::test]
async fn enrollment_needs_a_relying_party() {
    let up = Upstream::start().await;
    let gw = Gateway::start(up.addr, DELETE_ROUTE, "").await;
    let run = stepgate(&gw.dir, &["enroll", "webauthn", "alice"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("stepup.webauthn is not configured"),
        "{}",
        run.stderr
    );
    let resp = enroll_options(&gw, "anything").await;
    assert_eq!(resp.status, 404);
    // Without a relying party the routes do not offer the method.
    let held = raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/admin/users/bob/delete", &[("cookie", COOKIE)], b""),
    )
    .await;
    assert_eq!(held.json()["methods"], json!(["totp"]));
    let id = held.json()["hold_id"].as_str().unwrap().to_owned();
    let resp = options(&gw, COOKIE, &id, "alice").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_code(), "not_found");
}

#[tokio::test]
async fn an_approver_decides_with_a_passkey_bound_to_the_hold() {
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let gw = start(&up, &[bob.yaml(&["treasury"], false)]).await;
    let mut bob_key = SoftKey::new(RP_ID, ORIGIN);
    enroll(&gw, "bob", &bob_key).await;
    let mut alice_key = SoftKey::new(RP_ID, ORIGIN);
    enroll(&gw, "alice", &alice_key).await;

    let transfer = |amount: u32| {
        let body = json!({ "amount": amount }).to_string();
        request(
            "POST",
            "/api/transfers",
            &[("cookie", COOKIE), ("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    let a = raw(gw.addr, &gw.pki, &transfer(100)).await.json();
    let b = raw(gw.addr, &gw.pki, &transfer(200)).await.json();
    let (a_id, a_txn) = (a["hold_id"].as_str().unwrap(), a["txn"].as_str().unwrap());
    let (b_id, b_txn) = (b["hold_id"].as_str().unwrap(), b["txn"].as_str().unwrap());

    let path = format!("/.stepup/holds/{a_id}/webauthn?as=approver");
    assert_eq!(get(&gw, &path, &[]).await.error_code(), "forbidden");
    let auth = bob.bearer();
    let opts = get(&gw, &path, &[("authorization", auth.as_str())]).await;
    assert_eq!(opts.status, 200, "{}", body_text(&opts));
    let credential = bob_key.assert(&opts.json());

    let on_b = decide(
        &gw,
        &bob,
        b_id,
        "approve",
        json!({"txn": b_txn, "webauthn": credential}),
    )
    .await;
    assert_eq!(on_b.status, 401, "{}", body_text(&on_b));
    assert_eq!(on_b.error_code(), "invalid_proof");
    let wrong_txn = decide(
        &gw,
        &bob,
        a_id,
        "approve",
        json!({"txn": b_txn, "webauthn": credential}),
    )
    .await;
    assert_eq!(wrong_txn.error_code(), "txn_mismatch");
    // The approver's challenge is not a requester's, even on the same hold
    // with the same txn and a passkey the store knows.
    let as_requester = prove(&gw, COOKIE, a_id, &credential).await;
    assert_eq!(
        as_requester.error_code(),
        "invalid_proof",
        "{}",
        body_text(&as_requester)
    );
    assert!(rejected_because(&gw, a_id).contains(SPENT));

    let ok = decide(
        &gw,
        &bob,
        a_id,
        "approve",
        json!({"txn": a_txn, "webauthn": credential}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
    assert_eq!(ok.json()["status"], "approved");
    let granted = audit_lines(&gw)
        .into_iter()
        .find(|l| l["event"] == "approval.granted")
        .expect("granted");
    assert_eq!(granted["proof"], "webauthn");
    assert_eq!(granted["sub"], "bob");
    assert_eq!(
        up.count("/api/transfers"),
        0,
        "the requester's own proof is still missing"
    );

    let mine = challenge(&gw, a_id, "alice").await;
    let released = prove(&gw, COOKIE, a_id, &alice_key.assert(&mine)).await;
    assert_eq!(released.status, 200, "{}", body_text(&released));
    let claims = verify_assertion(&gw, &assertion_of(&up, "/api/transfers"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["approvers"][0]["sub"], "bob");
    assert_eq!(claims["txn"], a_txn);
}
