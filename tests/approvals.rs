//! N-of-M approvals end to end: approvers with API keys, the approver
//! queue, separation of duties, txn binding, deny, deadlines, TOTP plus
//! approval, and the AI-agent flow where the client simply waits.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepup_kit::*;

const ROUTES: &str = "
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /api/wires }
    require: { approvals: 2, approvers: [treasury] }
    display: [ { label: Amount, json: /amount }, { label: Payee, json: /payee } ]
    hold: { mode: challenge, timeout: 2m }
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { approvals: 2, approvers: [treasury] }
    display: [ { label: Amount, json: /amount }, { label: Payee, json: /payee } ]
    hold: { mode: hold, timeout: 30s }
  - name: agent-transfer
    action: agent.transfer
    match: { methods: [POST], path: /api/agent/transfers }
    require: { approvals: 1, approvers: [treasury] }
    display: [ { label: Amount, json: /amount }, { label: Payee, json: /payee } ]
    hold: { mode: hold, timeout: 30s }
  - name: quick
    action: money.quick
    match: { methods: [POST], path: /api/quick }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 1s }
  - name: vendor-add
    action: vendor.add
    match: { methods: [POST], path: /admin/vendors }
    require: { methods: [totp], approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 2m }
  - name: vault
    action: vault.open
    match: { methods: [POST], path: /admin/vault }
    require: { approvals: 1, approvers: [vault] }
    hold: { mode: challenge, timeout: 2m }
";

/// The approvers every test gateway knows: three in treasury, one in an
/// unrelated group, one who must add a TOTP code to each decision.
struct Approvers {
    bob: ApproverKey,
    carol: ApproverKey,
    dave: ApproverKey,
    erin: ApproverKey,
    frank: ApproverKey,
}

impl Approvers {
    fn new() -> Self {
        Approvers {
            bob: ApproverKey::new("bob"),
            carol: ApproverKey::new("carol"),
            dave: ApproverKey::new("dave"),
            erin: ApproverKey::new("erin"),
            frank: ApproverKey::new("frank"),
        }
    }

    fn yaml(&self) -> String {
        approvers_line(&[
            self.bob.yaml(&["treasury"], false),
            self.carol.yaml(&["treasury"], false),
            self.dave.yaml(&["treasury"], false),
            self.erin.yaml(&["ops"], false),
            self.frank.yaml(&["vault"], true),
        ])
    }
}

struct Setup {
    up: Upstream,
    gw: Arc<Gateway>,
    a: Approvers,
}

async fn setup(top: &str) -> Setup {
    let up = Upstream::start().await;
    let a = Approvers::new();
    let gw = Gateway::start(up.addr, ROUTES, &extra(&[a.yaml()], top)).await;
    Setup {
        up,
        gw: Arc::new(gw),
        a,
    }
}

/// The single sign-on proxy in front of the gateway names the requester:
/// on routes that approvals alone decide, the gateway refuses a requester
/// nobody named, since an approver could be approving their own request.
const SSO: &str = "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n";

fn post(path: &str, cookie: &str, body: &serde_json::Value) -> Vec<u8> {
    request(
        "POST",
        path,
        &[("cookie", cookie), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// A request that the SSO proxy (see [`SSO`]) says `user` sent.
fn post_as(user: &str, path: &str, cookie: &str, body: &serde_json::Value) -> Vec<u8> {
    request(
        "POST",
        path,
        &[
            ("cookie", cookie),
            ("x-remote-user", user),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// A challenge-mode request: returns the 401 body.
async fn held(gw: &Gateway, path: &str, cookie: &str, body: &serde_json::Value) -> serde_json::Value {
    challenged(raw(gw.addr, &gw.pki, &post(path, cookie, body)).await)
}

/// A challenge-mode request by `user` (see [`SSO`]): returns the 401 body.
async fn held_as(gw: &Gateway, user: &str, path: &str, cookie: &str, body: &serde_json::Value) -> serde_json::Value {
    challenged(raw(gw.addr, &gw.pki, &post_as(user, path, cookie, body)).await)
}

fn challenged(resp: RawResponse) -> serde_json::Value {
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_required");
    resp.json()
}

/// A `hold`-mode client: its request waits on its own connection.
fn waiter(gw: &Arc<Gateway>, req: Vec<u8>) -> tokio::task::JoinHandle<RawResponse> {
    let gw = gw.clone();
    tokio::spawn(async move { raw(gw.addr, &gw.pki, &req).await })
}

async fn status(gw: &Gateway, hold: &str, cookie: &str) -> serde_json::Value {
    let r = get(gw, &format!("/.stepup/holds/{hold}"), &[("cookie", cookie)]).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    r.json()
}

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

fn approvers_claim(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let list = claims["approvers"].as_array().expect("approvers claim");
    for a in list {
        assert!(
            a["at"].as_u64().is_some_and(|t| t > 1_700_000_000),
            "approval time: {a}"
        );
    }
    list.iter().map(|a| s(&a["sub"])).collect()
}

#[tokio::test]
async fn two_of_three_in_challenge_mode_release_once_to_the_requester() {
    let Setup { up, gw, a } = setup(SSO).await;
    let cookie = "SESSIONID=wire-requester";
    let ch = held_as(
        &gw,
        "alice",
        "/api/wires",
        cookie,
        &json!({"amount": 9000, "payee": "ACME"}),
    )
    .await;
    assert_eq!(ch["approvals"], 2);
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));

    let early = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(early.status, 202, "nothing approved yet: {}", body_text(&early));
    assert_eq!(up.requests().len(), 0);

    let r = approve(&gw, &a.bob, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["status"], "approved");
    assert_eq!(up.requests().len(), 0, "one approval of two forwards nothing");
    let r = approve(&gw, &a.carol, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(status(&gw, &hold, cookie).await["state"], "satisfied");
    assert_eq!(
        up.requests().len(),
        0,
        "challenge mode waits for the requester to collect"
    );

    let resp = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(approvers_claim(&claims), ["bob", "carol"]);
    assert_eq!(claims["txn"], txn_of(&seen[0], "localhost"));
    assert_eq!(claims["txn"], txn.as_str());
    assert_eq!(claims["act"], "money.wire");
    assert_eq!(claims["sub"], "alice", "the requester is accountable");

    let again = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "already_released");
    let late = approve(&gw, &a.dave, &hold, &txn).await;
    assert_eq!(late.status, 409, "{}", body_text(&late));
    assert_eq!(late.error_code(), "already_released");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn two_of_three_in_hold_mode_the_waiting_client_gets_the_response() {
    let Setup { up, gw, a } = setup(SSO).await;
    let body = json!({"amount": 120, "payee": "Initech"});
    let client = waiter(&gw, post_as("ops-bot", "/api/transfers", "SESSIONID=ops-bot", &body));
    let item = first_queued(&gw, &a.bob).await;
    let (hold, txn) = (s(&item["hold_id"]), s(&item["txn"]));

    let r = approve(&gw, &a.bob, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["status"], "approved");
    assert!(!client.is_finished(), "one approval must not answer the waiting client");

    // The second approval arrives on its own connection and releases.
    let r = approve(&gw, &a.carol, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json(), json!({"status": "released", "hold_id": hold}));

    let resp = client.await.expect("client task");
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    assert_eq!(resp.json()["target"], "/api/transfers");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body.to_string().as_bytes());
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(approvers_claim(&claims), ["bob", "carol"]);
    assert_eq!(claims["txn"], txn_of(&seen[0], "localhost"));
    assert_eq!(claims["hold"], hold.as_str());
}

#[tokio::test]
async fn concurrent_approvals_release_exactly_once() {
    let Setup { up, gw, a } = setup(SSO).await;
    let client = waiter(
        &gw,
        post_as(
            "alice",
            "/api/transfers",
            "SESSIONID=race",
            &json!({"amount": 1, "payee": "x"}),
        ),
    );
    let item = first_queued(&gw, &a.bob).await;
    let (hold, txn) = (s(&item["hold_id"]), s(&item["txn"]));
    let (rb, rc, rd) = tokio::join!(
        approve(&gw, &a.bob, &hold, &txn),
        approve(&gw, &a.carol, &hold, &txn),
        approve(&gw, &a.dave, &hold, &txn),
    );
    let outcomes: Vec<String> = [&rb, &rc, &rd]
        .iter()
        .map(|r| match r.status {
            200 => s(&r.json()["status"]),
            _ => r.error_code(),
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "released").count(),
        1,
        "exactly one approval releases: {outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| *o == "approved").count(), 1, "{outcomes:?}");
    assert_eq!(client.await.expect("client").status, 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_duplicate_approval_does_not_count_twice() {
    let Setup { up, gw, a } = setup(SSO).await;
    let cookie = "SESSIONID=dup";
    let ch = held_as(&gw, "alice", "/api/wires", cookie, &json!({"amount": 5, "payee": "p"})).await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));

    for _ in 0..3 {
        let r = approve(&gw, &a.bob, &hold, &txn).await;
        assert_eq!(r.status, 200, "{}", body_text(&r));
    }
    let st = status(&gw, &hold, cookie).await;
    assert_eq!(st["state"], "pending");
    assert_eq!(st["met"], json!(["approval:bob"]));
    assert_eq!(st["missing"], json!(["approvals:1"]));
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 202, "bob thrice is still one approval: {}", body_text(&r));
    assert_eq!(up.requests().len(), 0);

    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(approvers_claim(&claims), ["bob", "carol"]);
}

#[tokio::test]
async fn the_requester_session_cannot_approve_its_own_hold() {
    let Setup { up, gw, a } = setup(SSO).await;
    // The SSO proxy names someone else: the session alone gives bob away.
    let cookie = "SESSIONID=bob-at-his-desk";
    let ch = held_as(
        &gw,
        "bob.smith",
        "/api/wires",
        cookie,
        &json!({"amount": 77, "payee": "Bob Ltd"}),
    )
    .await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));

    let auth = a.bob.bearer();
    let r = post_json(
        &gw,
        &format!("/.stepup/holds/{hold}/approve"),
        &[("authorization", auth.as_str()), ("cookie", cookie)],
        &json!({"txn": txn}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "self_approval");
    let st = status(&gw, &hold, cookie).await;
    assert_eq!(st["met"], json!([]), "a refused self-approval counts for nothing");

    // bob can still approve other people's holds, from his own session.
    assert_eq!(approve(&gw, &a.bob, &hold, &txn).await.status, 200);
    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);
    assert_eq!(complete(&gw, cookie, &hold, json!({})).await.status, 200);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn an_approver_whose_name_is_the_requesters_identity_is_refused() {
    let Setup { up, gw, a } = setup("trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n").await;
    let cookie = "SESSIONID=sso-bob";
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            "/api/wires",
            &[
                ("cookie", cookie),
                ("x-remote-user", "bob"),
                ("content-type", "application/json"),
            ],
            br#"{"amount":10,"payee":"Bob Ltd"}"#,
        ),
    )
    .await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));

    let item = first_queued(&gw, &a.carol).await;
    assert_eq!(item["requester"], "bob");

    let r = approve(&gw, &a.bob, &hold, &txn).await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "self_approval");
    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 202, "one real approval of two: {}", body_text(&r));
    assert_eq!(approve(&gw, &a.dave, &hold, &txn).await.status, 200);
    assert_eq!(complete(&gw, cookie, &hold, json!({})).await.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(approvers_claim(&claims), ["carol", "dave"]);
    assert_eq!(claims["sub"], "bob", "the known identity is accountable");
}

#[tokio::test]
async fn whoever_stepped_up_with_totp_cannot_also_be_the_approver() {
    let Setup { up, gw, a } = setup("").await;
    let carol = enroll(&gw.dir, "carol");
    let cookie = "SESSIONID=shared-admin";

    // TOTP first, then the same person tries to approve.
    let ch = held(&gw, "/admin/vendors", cookie, &json!({"name": "Shell Co"})).await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));
    let r = complete_totp(&gw, cookie, &hold, "carol", &pyotp_now(&carol)).await;
    assert_eq!(r.status, 202, "{}", body_text(&r));
    let r = approve(&gw, &a.carol, &hold, &txn).await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "self_approval");
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn an_approver_cannot_then_step_up_for_the_hold_they_approved() {
    let Setup { up, gw, a } = setup("").await;
    let carol = enroll(&gw.dir, "carol");
    let alice = enroll(&gw.dir, "alice");
    let cookie = "SESSIONID=shared-admin";

    // The shared legacy account hides who asked: carol approves first, then
    // proves the step-up as herself. One person would have done both.
    let ch = held(&gw, "/admin/vendors", cookie, &json!({"name": "Shell Co"})).await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));
    let r = approve(&gw, &a.carol, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let r = complete_totp(&gw, cookie, &hold, "carol", &pyotp_now(&carol)).await;
    assert_eq!(
        r.status,
        403,
        "approver and requester are one person: {}",
        body_text(&r)
    );
    assert_eq!(r.error_code(), "self_approval");
    assert_eq!(
        up.requests().len(),
        0,
        "nothing may be forwarded on one person's say-so"
    );

    // Someone else stepping up completes it, with carol's approval intact.
    let r = complete_totp(&gw, cookie, &hold, "alice", &pyotp_now(&alice)).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(approvers_claim(&claims), ["carol"]);
}

#[tokio::test]
async fn an_approval_for_a_different_txn_is_refused_and_counts_for_nothing() {
    let Setup { up, gw, a } = setup(SSO).await;
    let cookie = "SESSIONID=txn";
    let small = held_as(
        &gw,
        "alice",
        "/api/wires",
        cookie,
        &json!({"amount": 10, "payee": "ACME"}),
    )
    .await;
    let big = held_as(
        &gw,
        "alice",
        "/api/wires",
        cookie,
        &json!({"amount": 99999, "payee": "ACME"}),
    )
    .await;
    let hold = s(&big["hold_id"]);

    // Reviewed the small one, approving the big one: refused.
    for body in [
        json!({"txn": small["txn"]}),
        json!({"txn": "not-a-txn"}),
        json!({"comment": "no txn at all"}),
    ] {
        for verb in ["approve", "deny"] {
            let r = decide(&gw, &a.bob, &hold, verb, body.clone()).await;
            assert_eq!(r.status, 409, "{verb} {body}: {}", body_text(&r));
            assert_eq!(r.error_code(), "txn_mismatch");
        }
    }
    let st = status(&gw, &hold, cookie).await;
    assert_eq!(st["state"], "pending");
    assert_eq!(st["met"], json!([]));

    let txn = s(&big["txn"]);
    assert_eq!(approve(&gw, &a.bob, &hold, &txn).await.status, 200);
    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);
    assert_eq!(complete(&gw, cookie, &hold, json!({})).await.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        &seen[0].body[..],
        json!({"amount": 99999, "payee": "ACME"}).to_string().as_bytes()
    );
}

#[tokio::test]
async fn a_deny_ends_the_hold_for_the_waiting_client_and_later_approvals() {
    let Setup { up, gw, a } = setup(SSO).await;
    let client = waiter(
        &gw,
        post_as(
            "alice",
            "/api/transfers",
            "SESSIONID=deny",
            &json!({"amount": 5000, "payee": "Mallory"}),
        ),
    );
    let item = first_queued(&gw, &a.bob).await;
    let (hold, txn) = (s(&item["hold_id"]), s(&item["txn"]));
    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);

    let r = decide(
        &gw,
        &a.bob,
        &hold,
        "deny",
        json!({"txn": txn, "comment": "unknown payee"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["status"], "denied");

    let resp = client.await.expect("client");
    assert_eq!(resp.status, 403, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_denied");

    let r = approve(&gw, &a.dave, &hold, &txn).await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "step_up_denied");
    assert!(
        queue(&gw, &a.dave).await.json()["holds"]
            .as_array()
            .expect("holds")
            .is_empty(),
        "a denied hold leaves the queue"
    );
    assert_eq!(up.requests().len(), 0, "nothing forwarded");
}

#[tokio::test]
async fn an_approval_racing_the_deadline_releases_once_or_expires_never_both() {
    let Setup { up, gw, a } = setup(SSO).await;
    let mut released = 0;
    for (i, offset_ms) in [500u64, 800, 900, 950, 1000, 1050, 1100, 1400].into_iter().enumerate() {
        let path = format!("/api/quick?n={i}");
        let started = Instant::now();
        let req = post_as("alice", &path, &format!("SESSIONID=race-{i}"), &json!({"i": i}));
        let client = waiter(&gw, req);
        let item = first_queued(&gw, &a.bob).await;
        assert_eq!(item["target"], path.as_str());
        // Aim the approval at (and around) the 1 s deadline.
        let at = started + Duration::from_millis(offset_ms);
        tokio::time::sleep_until(at.into()).await;
        let r = approve(&gw, &a.bob, &s(&item["hold_id"]), &s(&item["txn"])).await;
        let resp = client.await.expect("client");
        let forwarded = up.count(&path);
        match (resp.status, r.status) {
            (200, 200) => {
                assert_eq!(r.json()["status"], "released");
                assert_eq!(resp.header("x-upstream"), Some("recorder"));
                assert_eq!(forwarded, 1, "released exactly once");
                released += 1;
            }
            (401, 410) => {
                assert_eq!(resp.error_code(), "step_up_expired");
                assert_eq!(r.error_code(), "hold_expired");
                assert_eq!(forwarded, 0, "an expired hold is never forwarded");
            }
            other => panic!(
                "inconsistent outcome {other:?} at {offset_ms} ms: client {} / approver {} / forwarded {forwarded}",
                body_text(&resp),
                body_text(&r)
            ),
        }
    }
    eprintln!("deadline race: {released} of 8 released");
    assert_eq!(up.requests().len(), released);
}

#[tokio::test]
async fn the_queue_shows_pending_holds_only_to_their_approvers() {
    let Setup { up, gw, a } = setup(SSO).await;
    let cookie = "SESSIONID=queue-requester-secret";
    let body = json!({"amount": 2500, "payee": "ACME Corp", "memo": "quarterly"});
    let resp = raw(gw.addr, &gw.pki, &post_as("alice", "/api/wires?ref=7", cookie, &body)).await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    let hold = s(&ch["hold_id"]);

    let item = first_queued(&gw, &a.bob).await;
    assert_eq!(item["hold_id"], hold.as_str());
    assert_eq!(item["route"], "wire");
    assert_eq!(item["action"], "money.wire");
    assert_eq!(item["method"], "POST");
    assert_eq!(item["target"], "/api/wires?ref=7");
    assert_eq!(item["txn"], ch["txn"]);
    assert_eq!(
        item["display"],
        json!([{"label": "Amount", "value": "2500"}, {"label": "Payee", "value": "ACME Corp"}])
    );
    assert!(item["age"].as_u64().is_some(), "age in seconds: {item}");
    assert_eq!(item["requester"], "alice", "the approver sees who asked");
    assert!(!body_text(&queue(&gw, &a.bob).await).contains("queue-requester-secret"));
    let bob = a.bob.bearer();
    let one = get(
        &gw,
        &format!("/.stepup/holds/{hold}"),
        &[("authorization", bob.as_str())],
    )
    .await;
    assert_eq!(one.status, 200, "an approver may look at a hold they can decide");
    assert_eq!(one.json()["state"], "pending");
    assert_eq!(one.json()["display"], item["display"]);

    // Not an approver: no key, an unknown key, a session cookie.
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-key")],
        vec![("cookie", cookie)],
    ] {
        let r = get(&gw, "/.stepup/holds", &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", body_text(&r));
        assert_eq!(r.error_code(), "forbidden");
    }

    // erin approves for ops, not treasury: she sees nothing and can do nothing.
    let q = queue(&gw, &a.erin).await;
    assert_eq!(q.status, 200);
    assert_eq!(q.json()["holds"], json!([]));
    let r = approve(&gw, &a.erin, &hold, &s(&ch["txn"])).await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "forbidden");
    let erin = a.erin.bearer();
    let r = get(
        &gw,
        &format!("/.stepup/holds/{hold}"),
        &[("authorization", erin.as_str())],
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "unknown_hold");

    // Once bob has approved, his queue no longer asks him; carol's still does.
    assert_eq!(approve(&gw, &a.bob, &hold, &s(&ch["txn"])).await.status, 200);
    assert_eq!(queue(&gw, &a.bob).await.json()["holds"], json!([]));
    assert_eq!(queue(&gw, &a.carol).await.json()["holds"][0]["hold_id"], hold.as_str());
    assert_eq!(up.requests().len(), 0);
}

#[tokio::test]
async fn totp_and_one_approval_combine_on_one_route() {
    let Setup { up, gw, a } = setup("").await;
    let alice = enroll(&gw.dir, "alice");
    let mallory = enroll(&gw.dir, "mallory");
    let cookie = "SESSIONID=vendor-desk";

    // Proof first: the hold waits for the approval, then the requester collects.
    let ch = held(&gw, "/admin/vendors", cookie, &json!({"name": "Globex"})).await;
    assert_eq!(ch["methods"], json!(["totp"]));
    assert_eq!(ch["approvals"], 1);
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));
    let code = pyotp_now(&alice);
    let r = complete_totp(&gw, cookie, &hold, "alice", &code).await;
    assert_eq!(r.status, 202, "{}", body_text(&r));
    assert_eq!(r.json()["missing"], json!(["approvals:1"]));
    assert_eq!(up.requests().len(), 0);
    assert_eq!(approve(&gw, &a.bob, &hold, &txn).await.status, 200);
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));

    // Approval first: the proof that completes the hold gets the response.
    // (Another session: alice is now the only one who may step up on hers.)
    let cookie = "SESSIONID=vendor-desk-2";
    let ch = held(&gw, "/admin/vendors", cookie, &json!({"name": "Umbrella"})).await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));
    assert_eq!(approve(&gw, &a.carol, &hold, &txn).await.status, 200);
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 202, "an approval alone is not enough: {}", body_text(&r));
    let code = pyotp_now(&mallory);
    let r = complete_totp(&gw, cookie, &hold, "mallory", &code).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));

    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let subs: Vec<(String, Vec<String>)> = seen
        .iter()
        .map(|r| {
            let c = verify_assertion(&gw, &r.header("x-stepup-assertion").expect("assertion"));
            assert_eq!(c["amr"], json!(["otp"]));
            (s(&c["sub"]), approvers_claim(&c))
        })
        .collect();
    assert_eq!(
        subs,
        [
            ("alice".to_owned(), vec!["bob".to_owned()]),
            ("mallory".to_owned(), vec!["carol".to_owned()])
        ]
    );
}

#[tokio::test]
async fn an_approver_with_totp_must_include_their_own_code() {
    let Setup { up, gw, a } = setup(SSO).await;
    let frank = enroll(&gw.dir, "frank");
    let cookie = "SESSIONID=vault";
    let ch = held_as(&gw, "alice", "/admin/vault", cookie, &json!({"door": 3})).await;
    let (hold, txn) = (s(&ch["hold_id"]), s(&ch["txn"]));

    for body in [json!({"txn": txn}), json!({"txn": txn, "code": wrong_code(&frank)})] {
        let r = decide(&gw, &a.frank, &hold, "approve", body).await;
        assert_eq!(r.status, 401, "{}", body_text(&r));
        assert_eq!(r.error_code(), "invalid_proof");
    }
    assert_eq!(status(&gw, &hold, cookie).await["met"], json!([]));

    let r = decide(
        &gw,
        &a.frank,
        &hold,
        "approve",
        json!({"txn": txn, "code": pyotp_now(&frank)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let r = complete(&gw, cookie, &hold, json!({})).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(approvers_claim(&claims), ["frank"]);
}

#[tokio::test]
async fn an_ai_agent_waits_on_its_call_while_a_human_reviews_and_approves() {
    let Setup { up, gw, a } = setup(SSO).await;
    // The agent's own credential is its session (session.header:
    // Authorization); the proxy in front names the agent.
    let body = json!({"amount": 1200, "payee": "Globex", "reference": "INV-2291"});
    let req = request(
        "POST",
        "/api/agent/transfers",
        &[
            ("authorization", "Bearer agent-7f3a"),
            ("x-remote-user", "payments-agent"),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    let agent = waiter(&gw, req);

    // A human opens the approval queue and reviews what the agent asked.
    let item = first_queued(&gw, &a.dave).await;
    assert_eq!(item["action"], "agent.transfer");
    assert_eq!(item["method"], "POST");
    assert_eq!(item["target"], "/api/agent/transfers");
    assert_eq!(
        item["display"],
        json!([{"label": "Amount", "value": "1200"}, {"label": "Payee", "value": "Globex"}])
    );
    assert!(!agent.is_finished(), "the agent is still waiting");
    assert_eq!(up.requests().len(), 0);

    let r = approve(&gw, &a.dave, &s(&item["hold_id"]), &s(&item["txn"])).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["status"], "released");

    // The agent's original call returns what the upstream answered.
    let resp = agent.await.expect("agent");
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.header("x-upstream"), Some("recorder"));
    assert_eq!(
        resp.json(),
        json!({"method": "POST", "target": "/api/agent/transfers", "len": body.to_string().len()})
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body.to_string().as_bytes());
    let claims = verify_assertion(&gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["txn"], item["txn"]);
    assert_eq!(claims["txn"], txn_of(&seen[0], "localhost"));
    assert_eq!(claims["act"], "agent.transfer");
    assert_eq!(claims["sid"], gw.sid("Bearer agent-7f3a"));
    assert_eq!(approvers_claim(&claims), ["dave"]);
    assert_eq!(claims["sub"], "payments-agent");
}
