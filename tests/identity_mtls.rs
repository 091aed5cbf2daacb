//! Who stepped up, for workloads (SPEC §3 Identity): identity from client
//! certificates made by a test CA (SAN URI / SPIFFE ID, else CN) through a
//! hold-mode approval, certificates from another CA, and `match.caller`
//! routing for people and workloads.
#![allow(clippy::unwrap_used)]

mod common;
mod identity_kit;

use common::*;
use identity_kit::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncReadExt;
// ------------------------------------------------------------ mTLS tests

#[tokio::test]
async fn spiffe_workload_is_held_until_a_human_approves_then_forwarded_once() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let body = br#"{"amount":250000,"payee":"ACME"}"#;
    let waiting = gw.spawn_waiting(ca.issue(Some(SPIFFE), Some("payments-agent")), transfer(body));

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], SPIFFE, "the SAN URI wins over the CN: {hold}");
    assert_eq!(hold["route"], "agent-transfer");
    assert_eq!(hold["method"], "POST");
    assert_eq!(hold["target"], "/api/transfers");
    let id = hold["hold_id"].as_str().expect("hold id").to_owned();
    let txn = hold["txn"].as_str().expect("txn").to_owned();
    assert_eq!(up.requests().len(), 0, "nothing goes upstream before the approval");
    assert!(!waiting.is_finished(), "a hold-mode caller keeps waiting");

    // The session is the certificate itself: the same SPIFFE ID under a
    // different key is someone else and cannot even see the hold.
    let twin = ca.issue(Some(SPIFFE), None);
    let peek = request("GET", &format!("/.stepup/holds/{id}"), &[], b"");
    let resp = send(gw.addr, &gw.server, Some(&twin), &peek).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_code(), "unknown_hold");

    // An approval for a different request than the one reviewed is refused.
    let resp = gw.approve(&id, &json!({"txn": "x".repeat(43)})).await;
    assert_eq!(resp.status, 409);
    assert_eq!(resp.error_code(), "txn_mismatch");
    assert_eq!(up.requests().len(), 0);

    let decision = json!({"txn": txn, "comment": "reviewed with the payee"});
    let resp = gw.approve(&id, &decision).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    let answered = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting call is answered")
        .expect("task");
    assert_eq!(answered.status, 200, "{}", String::from_utf8_lossy(&answered.body));
    assert_eq!(answered.header("x-upstream"), Some("recorder"));

    let seen = up.requests();
    assert_eq!(seen.len(), 1, "released exactly once");
    let r = &seen[0];
    assert_eq!(&r.body[..], body);
    let claims = assertion_claims(&gw.gw, &r.header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], SPIFFE);
    assert_eq!(claims["txn"], txn);
    assert_eq!(claims["txn"], txn_of(r, "localhost"));
    assert_eq!(claims["hold"], id);
    let approvers = claims["approvers"].as_array().expect("approvers");
    assert_eq!(approvers.len(), 1, "{approvers:?}");
    assert_eq!(approvers[0]["sub"], "carol");

    // Approving again cannot forward it a second time.
    let again = gw.approve(&id, &decision).await;
    assert_ne!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn common_name_is_the_identity_only_where_configured_and_there_is_no_san() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_gateway(
        up.addr,
        &ca,
        "{ mtls: true }",
        "{ mtls: true, cert: cn }",
        WORKLOAD_ROUTE,
    )
    .await;
    let waiting = gw.spawn_waiting(ca.issue(None, Some("batch-payments")), transfer(br#"{"amount":5}"#));

    let hold = gw.wait_for_one_hold().await;
    assert_eq!(hold["requester"], "batch-payments");
    let id = hold["hold_id"].as_str().expect("hold id");
    let resp = gw.approve(id, &json!({"txn": hold["txn"]})).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let answered = waiting.await.expect("task");
    assert_eq!(answered.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let claims = assertion_claims(&gw.gw, &seen[0].header("x-stepup-assertion").expect("assertion"));
    assert_eq!(claims["sub"], "batch-payments");

    // Without `cert: cn`, the same kind of certificate names nobody.
    let strict = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let cn_only = ca.issue(None, Some("batch-payments"));
    let resp = send(
        strict.addr,
        &strict.server,
        Some(&cn_only),
        &transfer(br#"{"amount":5}"#),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    assert_eq!(up.requests().len(), 1);
}

/// The attack of issue 21 #4: the trusted CA also issues DNS-named
/// certificates whose CN the requester chooses. `CN=spiffe://corp/agent-a`
/// with a DNS SAN must not be agent-a, not even with `cert: cn`.
#[tokio::test]
async fn a_common_name_spelling_a_spiffe_id_is_nobody_when_the_certificate_has_a_san() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_gateway(
        up.addr,
        &ca,
        "{ mtls: true }",
        "{ mtls: true, cert: cn }",
        WORKLOAD_ROUTE,
    )
    .await;
    let forged = ca.issue_dns("spiffe://corp/agent-a", "laptop.corp.example");
    let resp = send(gw.addr, &gw.server, Some(&forged), &transfer(br#"{"amount":5}"#)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_identity");
    let queue = gw.approver("GET", "/.stepup/holds", b"").await.json();
    assert_eq!(queue["holds"], json!([]), "no hold names agent-a");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_at_the_handshake() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    // One CA nobody configured, and one that also copies the real CA's name
    // (the verifier then finds an issuer by name whose signature fails).
    for rogue_ca in [ClientCa::new("someone else's CA"), ClientCa::new("workload CA")] {
        let rogue = rogue_ca.issue(Some(SPIFFE), Some("payments-agent"));
        // Under TLS 1.3 the client finishes its side before the server has
        // judged the certificate, so the refusal arrives as an alert on the
        // first read. Nothing is written first: data the server never read
        // would turn its close into a reset that can swallow the alert.
        let error = match connect(gw.addr, client_config(&gw.server, Some(&rogue))).await {
            Err(e) => e.to_string(),
            Ok(mut tls) => {
                let mut got = Vec::new();
                match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await {
                    Err(_) => panic!("the server accepted a rogue certificate and awaits a request"),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => panic!("closed without an alert: {:?}", String::from_utf8_lossy(&got)),
                }
            }
        };
        assert!(error.contains("alert"), "expected a TLS alert, got: {error}");
    }

    // The same name from the configured CA is accepted by the handshake.
    let genuine = ca.issue(Some(SPIFFE), Some("payments-agent"));
    let ok = send(
        gw.addr,
        &gw.server,
        Some(&genuine),
        &request("GET", "/status", &[], b""),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(up.requests().len(), 1, "only the genuine workload got through");
}

#[tokio::test]
async fn denied_workload_request_is_refused_on_its_open_connection_and_never_forwarded() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let waiting = gw.spawn_waiting(ca.issue(Some(SPIFFE), None), transfer(br#"{"amount":9}"#));
    let hold = gw.wait_for_one_hold().await;
    let id = hold["hold_id"].as_str().expect("hold id");
    let decision = json!({"txn": hold["txn"], "comment": "unknown payee"}).to_string();
    let resp = gw
        .approver("POST", &format!("/.stepup/holds/{id}/deny"), decision.as_bytes())
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let answered = waiting.await.expect("task");
    assert_eq!(answered.status, 403);
    assert_eq!(answered.error_code(), "step_up_denied");
    assert_eq!(up.requests().len(), 0);
}

/// Challenge mode everywhere, so each answer names the route at once. The
/// two paths list their routes in opposite orders, so reaching the second
/// route proves the first one did not match.
const CALLER_ROUTES: &str = "
  - name: agent-transfer
    action: money.transfer.agent
    match: { caller: workload, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: person-transfer
    action: money.transfer.person
    match: { caller: person, methods: [POST], path: /api/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: person-payout
    action: money.payout.person
    match: { caller: person, methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: agent-payout
    action: money.payout.agent
    match: { caller: workload, methods: [POST], path: /api/payouts }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
";

/// Workloads are named by their certificate, people by the SSO proxy in
/// front (approvals alone decide these routes, so the gateway refuses a
/// requester nobody named). The value continues the `identity:` line.
const PEOPLE_AND_WORKLOADS: &str = "{ mtls: true, header: X-Remote-User }\ntrusted_proxies: [127.0.0.1/32]";

#[tokio::test]
async fn caller_kind_selects_the_route_for_people_and_for_workloads() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let session = "{ cookie: SESSIONID, mtls: true }";
    let gw = start_gateway(up.addr, &ca, session, PEOPLE_AND_WORKLOADS, CALLER_ROUTES).await;
    let agent = ca.issue(Some(SPIFFE), None);
    let cookie = [("cookie", "SESSIONID=alice-session"), ("x-remote-user", "alice")];
    let route_of = |resp: &RawResponse| {
        assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
        resp.json()["route"].as_str().unwrap_or("").to_owned()
    };

    let person = request("POST", "/api/transfers", &cookie, b"{}");
    let resp = send(gw.addr, &gw.server, None, &person).await;
    assert_eq!(route_of(&resp), "person-transfer", "the workload route skips a person");
    let resp = send(gw.addr, &gw.server, Some(&agent), &transfer(b"{}")).await;
    assert_eq!(route_of(&resp), "agent-transfer");

    let payout = request("POST", "/api/payouts", &[], b"{}");
    let resp = send(gw.addr, &gw.server, Some(&agent), &payout).await;
    assert_eq!(route_of(&resp), "agent-payout", "the person route skips a workload");
    let payout = request("POST", "/api/payouts", &cookie, b"{}");
    let resp = send(gw.addr, &gw.server, None, &payout).await;
    assert_eq!(route_of(&resp), "person-payout");

    // Without a certificate the caller is a person even with no cookie: the
    // person route takes it, and it has no session there.
    let resp = send(gw.addr, &gw.server, None, &transfer(b"{}")).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code(), "no_session");
    assert_eq!(up.requests().len(), 0, "every request here was held or refused");
}

/// The caller kind is the client's choice (certificates are optional at
/// the handshake), so it may pick between routes but never turn a covered
/// path into an open one: an agent that drops its certificate must not
/// skip the approval its route demands.
#[tokio::test]
async fn dropping_the_certificate_does_not_skip_a_workload_route() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let gw = start_mtls(up.addr, &ca, "{ mtls: true }", WORKLOAD_ROUTE).await;
    let resp = send(gw.addr, &gw.server, None, &transfer(br#"{"amount":250000}"#)).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.error_code(), "no_session");
    assert_eq!(
        up.requests().len(),
        0,
        "a certificate-less transfer was forwarded unapproved"
    );
}

#[tokio::test]
async fn a_route_for_the_other_caller_kind_applies_when_none_is_for_yours() {
    let up = Upstream::start().await;
    let ca = ClientCa::new("workload CA");
    let routes = "
  - name: console
    action: console.write
    match: { caller: person, methods: [POST], prefix: /console }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
  - name: agent-jobs
    action: jobs.run
    match: { caller: workload, methods: [POST], prefix: /jobs }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: challenge, timeout: 10s }
";
    let session = "{ cookie: SESSIONID, mtls: true }";
    let gw = start_gateway(up.addr, &ca, session, PEOPLE_AND_WORKLOADS, routes).await;
    let agent = ca.issue(Some(SPIFFE), None);
    let cookie = [("cookie", "SESSIONID=alice-session"), ("x-remote-user", "alice")];

    let resp = send(
        gw.addr,
        &gw.server,
        Some(&agent),
        &request("POST", "/console/x", &[], b""),
    )
    .await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["route"], "console");
    let resp = send(gw.addr, &gw.server, None, &request("POST", "/jobs/run", &cookie, b"")).await;
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["route"], "agent-jobs");
    assert_eq!(up.requests().len(), 0);

    // Paths no route covers still pass for both kinds.
    let resp = send(gw.addr, &gw.server, Some(&agent), &request("POST", "/other", &[], b"")).await;
    assert_eq!(resp.status, 200);
    let resp = send(gw.addr, &gw.server, None, &request("POST", "/other", &cookie, b"")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.count("/other"), 2);
}
