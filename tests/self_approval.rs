//! Self-approval through an anonymous session (issue 13, finding 7),
//! attacked against a real Flask app behind the gateway.
//!
//! bob is an approver. From an opaque legacy cookie that names nobody he
//! asks for a transfer to himself on a route that approvals alone decide,
//! then approves "someone's" request with his own API key. Before the fix
//! the gateway held the request, the queue showed an anonymous session as
//! the requester, and bob's approval released it: one person asked and
//! approved. Now the gateway refuses to hold a request whose requester
//! nobody named (401 `no_identity`), and once an earlier step-up has
//! bound bob to the session, the hold names him and his approval is
//! refused while another approver's still counts.
#![allow(clippy::unwrap_used)]

mod common;
mod stepup_kit;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use serde_json::json;
use stepup_kit::*;

const ROUTES: &str = "
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    display: [ { label: Payee, json: /payee } ]
    hold: { mode: challenge, timeout: 2m }
  - name: delete-user
    action: user.delete
    match: { methods: [DELETE], path: '/admin/users/([^/]+)' }
    require: { methods: [totp] }
    hold: { mode: challenge, timeout: 2m }
";

struct Setup {
    flask: RealUpstream,
    gw: Gateway,
    bob: ApproverKey,
    carol: ApproverKey,
}

async fn setup() -> Setup {
    let flask = RealUpstream::start(Framework::Flask).await;
    let (bob, carol) = (ApproverKey::new("bob"), ApproverKey::new("carol"));
    let approvers = approvers_line(&[bob.yaml(&["treasury"], false), carol.yaml(&["treasury"], false)]);
    let gw = Gateway::start(flask.addr, ROUTES, &extra(&[approvers], "")).await;
    Setup { flask, gw, bob, carol }
}

async fn transfer(gw: &Gateway, cookie: &str, payee: &str) -> RawResponse {
    let body = json!({"amount": 9500, "payee": payee}).to_string();
    let headers = [("cookie", cookie), ("content-type", "application/json")];
    raw(
        gw.addr,
        &gw.pki,
        &request("POST", "/api/transfers", &headers, body.as_bytes()),
    )
    .await
}

#[tokio::test]
async fn an_anonymous_request_that_only_approvals_decide_is_never_held_for_its_author_to_approve() {
    let Setup { flask, gw, bob, carol } = setup().await;

    // bob, from a legacy session that names nobody, asks for money for
    // himself. The gateway cannot tell him from any other requester.
    let cookie = "SESSIONID=shared-admin-console";
    let resp = transfer(&gw, cookie, "Bob Ltd").await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "no_identity");
    assert_eq!(resp.header("www-authenticate"), Some("StepUp error=\"no_identity\""));
    assert!(
        resp.json().get("hold_id").is_none(),
        "no hold may exist for the author to approve: {}",
        body_text(&resp)
    );

    // Nothing waits for an approver, so bob has nothing to approve as if
    // it were someone else's.
    for approver in [&bob, &carol] {
        let q = queue(&gw, approver).await;
        assert_eq!(q.status, 200, "{}", body_text(&q));
        assert_eq!(q.json()["holds"], json!([]), "{}", approver.name);
    }
    assert!(
        gw.audit_events("hold.created").is_empty(),
        "no hold.created in the trail"
    );
    assert!(
        flask.ran_handler("transfer").is_empty(),
        "Flask ran the transfer: {:?}",
        flask.ran()
    );

    // `check` warns about the route before anyone meets the refusal.
    private_keys(&gw.dir);
    let check = stepgate(&gw.dir, &["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let out = format!("{}{}", check.stdout, check.stderr);
    assert!(
        out.lines().any(
            |l| l.contains("warning: routes[0].require") && l.contains("no `identity:` source names the requester")
        ),
        "{out}"
    );
}

#[tokio::test]
async fn a_requester_named_by_an_earlier_step_up_cannot_approve_but_another_approver_can() {
    let Setup { flask, gw, bob, carol } = setup().await;
    let bob_totp = enroll(&gw.dir, "bob");
    let cookie = "SESSIONID=bobs-legacy-session";

    // bob steps up on his session first (a user deletion he really does):
    // the gateway now knows who acts on it.
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request("DELETE", "/admin/users/mallory", &[("cookie", cookie)], b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    let hold = resp.json()["hold_id"].as_str().unwrap().to_owned();
    let done = complete_totp(&gw, cookie, &hold, "bob", &pyotp_now(&bob_totp)).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    assert_eq!(flask.ran_handler("user.delete").len(), 1);

    // The same session's transfer is held, and the hold names bob.
    let resp = transfer(&gw, cookie, "Bob Ltd").await;
    assert_eq!(resp.status, 401, "{}", body_text(&resp));
    assert_eq!(resp.error_code(), "step_up_required");
    let ch = resp.json();
    let (id, txn) = (ch["hold_id"].as_str().unwrap(), ch["txn"].as_str().unwrap());
    let item = first_queued(&gw, &carol).await;
    assert_eq!(item["hold_id"], id);
    assert_eq!(item["requester"], "bob", "the approver sees who asked: {item}");

    // bob approves from elsewhere, with nothing but his API key: refused.
    let r = approve(&gw, &bob, id, txn).await;
    assert_eq!(r.status, 403, "{}", body_text(&r));
    assert_eq!(r.error_code(), "self_approval");
    assert!(flask.ran_handler("transfer").is_empty(), "{:?}", flask.ran());
    let done = complete(&gw, cookie, id, json!({})).await;
    assert_eq!(
        done.status,
        202,
        "bob's own approval counts for nothing: {}",
        body_text(&done)
    );

    // carol's approval counts; the requester collects the response.
    let r = approve(&gw, &carol, id, txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let done = complete(&gw, cookie, id, json!({})).await;
    assert_eq!(done.status, 200, "{}", body_text(&done));
    let ran = flask.ran_handler("transfer");
    assert_eq!(ran.len(), 1, "forwarded exactly once");
    assert_eq!(ran[0].body["payee"], "Bob Ltd");
    let claims = verify_assertion(&gw, ran[0].assertion.as_deref().expect("assertion"));
    assert_eq!(claims["sub"], "bob", "the requester is accountable");
    assert_eq!(claims["approvers"].as_array().map(Vec::len), Some(1));
    assert_eq!(claims["approvers"][0]["sub"], "carol");
    let created = gw.audit_events("hold.created");
    let transfer_hold = created.iter().find(|r| r["hold"] == id).expect("hold.created");
    assert_eq!(transfer_hold["requester"], "bob", "{transfer_hold}");
}
