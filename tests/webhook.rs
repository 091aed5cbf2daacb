//! Webhook notifications (`notify.webhook`) for holds that need approvers:
//! what is announced, what never leaves the gateway, and that a broken
//! receiver cannot hold up a step-up.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::*;
use serde_json::json;
use std::sync::Arc;
use stepup_kit::*;

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    display: [ { label: Amount, json: /amount }, { label: Payee, json: /payee } ]
    hold: { mode: hold, timeout: 30s }
  - name: wire
    action: money.wire
    match: { methods: [POST], path: /api/wires }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 2m }
  - name: expiring
    action: money.expiring
    match: { methods: [POST], path: /api/expiring }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 1s }
  - name: quick
    action: money.quick
    match: { methods: [POST], path: /api/quick }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 1s }
";

/// What an event may carry; anything else would be a leak. (`reason` is
/// the break-glass reason the requester typed, null otherwise.)
const FIELDS: [&str; 11] = [
    "reason",
    "event",
    "hold_id",
    "route",
    "action",
    "requester",
    "method",
    "target",
    "display",
    "txn",
    "at",
];

/// A gateway notifying `webhook`, with one approver, bob (treasury). The
/// single sign-on proxy in front names every requester (approvals alone
/// decide these routes, so the gateway refuses requesters nobody named).
async fn gateway(webhook: &str) -> (Upstream, Arc<Gateway>, ApproverKey) {
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let stepup = [approvers_line(&[bob.yaml(&["treasury"], false)])];
    let top = format!(
        "{}trusted_proxies: [127.0.0.1/32]\nidentity: {{ header: X-Remote-User }}\n",
        notify_yaml(webhook)
    );
    let gw = Gateway::start(up.addr, ROUTES, &extra(&stepup, &top)).await;
    (up, Arc::new(gw), bob)
}

/// A request that alice sends through the SSO proxy.
fn post(path: &str, cookie: &str, body: &serde_json::Value) -> Vec<u8> {
    request(
        "POST",
        path,
        &[
            ("cookie", cookie),
            ("x-remote-user", "alice"),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn waiter(gw: &Arc<Gateway>, req: Vec<u8>) -> tokio::task::JoinHandle<RawResponse> {
    let gw = gw.clone();
    tokio::spawn(async move { raw(gw.addr, &gw.pki, &req).await })
}

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

#[tokio::test]
async fn pending_then_released_events_describe_the_hold_without_body_or_secrets() {
    let hook = Hook::start(HookMode::Ok).await;
    let (up, gw, bob) = gateway(&hook.url()).await;
    let session = "hook-session-secret-9f2";
    let body = json!({
        "amount": 2500, "payee": "ACME Corp",
        "memo": "INTERNAL-MEMO-7731", "iban": "DE89370400440532013000",
    });
    let client = waiter(
        &gw,
        post("/api/transfers?ref=42", &format!("SESSIONID={session}"), &body),
    );
    let item = first_queued(&gw, &bob).await;
    let hold = s(&item["hold_id"]);

    let pending = hook.wait_for("hold.pending", &hold).await;
    assert_eq!(pending["action"], "money.transfer");
    assert_eq!(pending["route"], "transfer");
    assert_eq!(pending["method"], "POST");
    assert_eq!(pending["target"], "/api/transfers?ref=42");
    assert_eq!(pending["txn"], item["txn"]);
    assert_eq!(pending["requester"], item["requester"]);
    assert_eq!(pending["requester"], "alice");
    assert_eq!(
        pending["display"],
        json!([{"label": "Amount", "value": "2500"}, {"label": "Payee", "value": "ACME Corp"}])
    );

    let r = approve(&gw, &bob, &hold, &s(&item["txn"])).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(client.await.expect("client").status, 200);
    let released = hook.wait_for("hold.released", &hold).await;
    assert_eq!(released["txn"], item["txn"]);

    let events = hook.events();
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["hold_id"] == hold.as_str())
        .map(|e| s(&e["event"]))
        .collect();
    assert_eq!(order, ["hold.pending", "hold.released"]);
    for e in &events {
        for key in e.as_object().expect("event object").keys() {
            assert!(FIELDS.contains(&key.as_str()), "unexpected field `{key}` in {e}");
        }
    }
    let assertion = up.requests()[0].header("x-stepup-assertion").expect("assertion");
    for text in hook.raw_bodies() {
        for secret in [
            "INTERNAL-MEMO-7731",
            "DE89370400440532013000",
            "memo",
            session,
            bob.key.as_str(),
            assertion.as_str(),
        ] {
            assert!(!text.contains(secret), "webhook carried `{secret}`: {text}");
        }
    }
}

#[tokio::test]
async fn denied_and_expired_holds_are_announced() {
    let hook = Hook::start(HookMode::Ok).await;
    let (up, gw, bob) = gateway(&hook.url()).await;

    let resp = raw(gw.addr, &gw.pki, &post("/api/wires", "SESSIONID=d", &json!({"a": 1}))).await;
    assert_eq!(resp.status, 401);
    let ch = resp.json();
    let denied = s(&ch["hold_id"]);
    hook.wait_for("hold.pending", &denied).await;
    let r = decide(&gw, &bob, &denied, "deny", json!({"txn": ch["txn"]})).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let e = hook.wait_for("hold.denied", &denied).await;
    assert_eq!(e["action"], "money.wire");

    // Nobody acts on a challenge-mode hold: it runs out on its own.
    let resp = raw(
        gw.addr,
        &gw.pki,
        &post("/api/expiring", "SESSIONID=e", &json!({"a": 2})),
    )
    .await;
    assert_eq!(resp.status, 401);
    let lapsed = s(&resp.json()["hold_id"]);
    hook.wait_for("hold.expired", &lapsed).await;

    // A hold-mode client waits out its deadline.
    let resp = raw(gw.addr, &gw.pki, &post("/api/quick", "SESSIONID=q", &json!({"a": 3}))).await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_expired");
    // Deliveries are asynchronous: the announcement may trail the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let quick = loop {
        let found = hook
            .events()
            .into_iter()
            .find(|e| e["event"] == "hold.pending" && e["action"] == "money.quick");
        if let Some(e) = found {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hold-mode hold was never announced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    hook.wait_for("hold.expired", &s(&quick["hold_id"])).await;

    for id in [&denied, &lapsed] {
        let ends: Vec<String> = hook
            .events()
            .iter()
            .filter(|e| e["hold_id"] == id.as_str() && e["event"] != "hold.pending")
            .map(|e| s(&e["event"]))
            .collect();
        assert_eq!(ends.len(), 1, "one ending per hold: {ends:?}");
    }
    assert_eq!(up.requests().len(), 0);
}

/// A full hold-mode approval with the webhook at `url`: it must complete
/// whatever the receiver does.
async fn approval_completes_despite(url: &str) -> (Upstream, Arc<Gateway>, String) {
    let (up, gw, bob) = gateway(url).await;
    let client = waiter(
        &gw,
        post("/api/transfers", "SESSIONID=w", &json!({"amount": 1, "payee": "p"})),
    );
    let item = first_queued(&gw, &bob).await;
    let hold = s(&item["hold_id"]);
    let r = approve(&gw, &bob, &hold, &s(&item["txn"])).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json()["status"], "released");
    let resp = client.await.expect("client");
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(up.requests().len(), 1);
    (up, gw, hold)
}

#[tokio::test]
async fn a_receiver_answering_500_does_not_stall_the_flow_and_is_retried() {
    let hook = Hook::start(HookMode::Fail500).await;
    let (_up, _gw, hold) = approval_completes_despite(&hook.url()).await;
    // Delivery is retried in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let tries = hook
            .events()
            .iter()
            .filter(|e| e["event"] == "hold.pending" && e["hold_id"] == hold.as_str())
            .count();
        if tries >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a refused notification is retried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_stall_the_flow() {
    let hook = Hook::start(HookMode::Hang).await;
    approval_completes_despite(&hook.url()).await;
}

#[tokio::test]
async fn a_closed_webhook_port_does_not_stall_the_flow() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    approval_completes_despite(&format!("http://{closed}/hook")).await;
}
