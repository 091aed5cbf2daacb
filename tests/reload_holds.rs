//! Issue 22 #4: a reload reaches the holds already pending (SPEC §4). A
//! route that became `deny: true` or was removed ends its pending holds
//! (audited with the reason, never forwarded, waiters answered at once);
//! a route whose requirements grew holds its pending holds to them. The
//! upstream is the real Flask app, which records every handler it runs.

mod common;

use common::upstreams::{Framework, RealUpstream};
use common::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: transfer
    action: money.transfer
    match: { methods: [POST], path: /api/transfers }
    require: { methods: [token] }
    hold: { mode: hold, timeout: 60s }
";

const HOLDS: usize = 5;

/// Rewrites the gateway's file with `edit` applied and reloads it.
async fn reload(gw: &Gateway, edit: impl Fn(&str) -> String) {
    let path = gw.dir.join("routes.yaml");
    let text = std::fs::read_to_string(&path).expect("config");
    let changed = edit(&text);
    assert_ne!(text, changed, "the test changes the file");
    std::fs::write(&path, changed).expect("write");
    gw.gw.reload(&path).await.expect("valid reload");
}

/// Opens `HOLDS` challenge holds on delete-user; returns their challenges.
async fn challenge_holds(gw: &Gateway) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for i in 0..HOLDS {
        let cookie = format!("SESSIONID=reload-{i}");
        let target = format!("/admin/users/u{i}/delete");
        let resp = raw(gw.addr, &gw.pki, &request("POST", &target, &[("cookie", &cookie)], b"")).await;
        assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
        let mut ch = resp.json();
        ch["cookie"] = cookie.into();
        out.push(ch);
    }
    out
}

/// Completes a challenge with a valid token bound to it.
async fn complete(gw: &Gateway, ch: &serde_json::Value) -> RawResponse {
    let token = gw.token(serde_json::json!({"sid": ch["sid"], "txn": ch["txn"]}));
    let body = serde_json::json!({"method": "token", "token": token}).to_string();
    let path = format!("/.stepup/holds/{}/complete", ch["hold_id"].as_str().expect("id"));
    let cookie = ch["cookie"].as_str().expect("cookie");
    raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &path,
            &[("cookie", cookie), ("content-type", "application/json")],
            body.as_bytes(),
        ),
    )
    .await
}

/// Starts a `hold`-mode transfer whose connection waits for its answer.
async fn waiting_transfer(gw: &Gateway) -> tokio::task::JoinHandle<RawResponse> {
    let mut conn = tls_connect(gw.addr, &gw.pki, &[b"http/1.1"]).await;
    let req = request(
        "POST",
        "/api/transfers",
        &[("cookie", "SESSIONID=agent"), ("content-type", "application/json")],
        br#"{"amount":5,"payee":"x"}"#,
    );
    conn.write_all(&req).await.expect("write");
    let task = tokio::spawn(async move { read_response(&mut conn).await });
    for _ in 0..500 {
        if gw.gw.holds.open_holds().iter().any(|(m, _)| m.route == "transfer") {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the transfer was never held");
}

fn trail(gw: &Gateway) -> Vec<serde_json::Value> {
    let path = gw.gw.config().audit.path.clone();
    // Records queued by the reload reach the file a moment later.
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let records: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if records.iter().filter(|r| r["event"] == "hold.denied").count() > HOLDS {
            return records;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the reload's records never reached the trail");
}

fn denied_for(records: &[serde_json::Value], route: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["event"] == "hold.denied" && r["route"] == route)
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_reload_that_denies_one_route_and_removes_another_ends_their_pending_holds() {
    a_reload_that_denies_one_route_and_removes_another_ends_their_pending_holds_on("").await;
}

/// The same on Redis: a reload reaches the holds in the shared store, not
/// only this instance's copies, whatever `STEPGATE_TEST_STATE` says.
#[tokio::test]
async fn a_reload_that_denies_one_route_and_removes_another_ends_their_pending_holds_on_redis() {
    let redis = common::redis::RedisServer::start();
    a_reload_that_denies_one_route_and_removes_another_ends_their_pending_holds_on(&redis.state_yaml()).await;
}

async fn a_reload_that_denies_one_route_and_removes_another_ends_their_pending_holds_on(state: &str) {
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, state).await;
    let challenges = challenge_holds(&gw).await;
    let waiter = waiting_transfer(&gw).await;

    // delete-user becomes `deny: true`; transfer is gone from the file.
    reload(&gw, |text| {
        let denied = text.replacen(
            "    require: { methods: [token], max_age: 5m }\n    hold: { mode: challenge, timeout: 2m }\n",
            "    deny: true\n",
            1,
        );
        let cut = denied.find("  - name: transfer").expect("transfer route");
        denied[..cut].to_owned()
    })
    .await;

    // The waiting agent hears at once that its request will not run.
    let answered = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter is answered without waiting for its deadline")
        .expect("waiter task");
    assert_eq!(answered.status, 403, "{}", String::from_utf8_lossy(&answered.body));
    assert_eq!(answered.error_code(), "step_up_denied");

    // Every requester who comes back with a valid proof is refused.
    for ch in &challenges {
        let resp = complete(&gw, ch).await;
        assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(resp.error_code(), "step_up_denied");
    }
    assert!(gw.gw.holds.open_holds().is_empty(), "no hold is left pending");
    let ran: Vec<String> = up.ran().into_iter().map(|r| r.handler).collect();
    assert!(ran.is_empty(), "Flask ran {ran:?} after the reload");

    let records = trail(&gw);
    assert_eq!(
        denied_for(&records, "delete-user"),
        vec!["route denied by reload"; HOLDS]
    );
    assert_eq!(denied_for(&records, "transfer"), vec!["route removed by reload"]);
    assert!(
        !records
            .iter()
            .any(|r| r["event"] == "proof.accepted" || r["event"] == "hold.released"),
        "no proof was taken for an ended hold"
    );
}

#[tokio::test]
async fn a_reload_that_adds_an_approval_holds_pending_holds_to_it() {
    a_reload_that_adds_an_approval_holds_pending_holds_to_it_on("").await;
}

/// The same on Redis: a reload reaches the holds in the shared store, not
/// only this instance's copies, whatever `STEPGATE_TEST_STATE` says.
#[tokio::test]
async fn a_reload_that_adds_an_approval_holds_pending_holds_to_it_on_redis() {
    let redis = common::redis::RedisServer::start();
    a_reload_that_adds_an_approval_holds_pending_holds_to_it_on(&redis.state_yaml()).await;
}

async fn a_reload_that_adds_an_approval_holds_pending_holds_to_it_on(state: &str) {
    let up = RealUpstream::start(Framework::Flask).await;
    let gw = Gateway::start(up.addr, ROUTES, state).await;
    let challenges = challenge_holds(&gw).await;
    let waiter = waiting_transfer(&gw).await;
    let transfer = gw
        .gw
        .holds
        .open_holds()
        .into_iter()
        .find(|(m, _)| m.route == "transfer")
        .map(|(m, _)| m)
        .expect("transfer hold");

    reload(&gw, |text| {
        text.replace(
            "require: { methods: [token]",
            "require: { approvals: 1, methods: [token]",
        )
    })
    .await;

    // The token that would have released each hold now only counts as
    // its proof; the approval the new file asks for is still missing.
    for ch in &challenges {
        let resp = complete(&gw, ch).await;
        assert_ne!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let id = stepgate::ids::HoldId::parse(ch["hold_id"].as_str().expect("id")).expect("hold id");
        let (_, state) = gw.gw.holds.get(&id).expect("hold");
        assert!(state.phase.is_open(), "{:?}", state.phase);
        assert_eq!(state.missing(), vec!["approvals:1".to_owned()]);
    }
    let token = gw.token(serde_json::json!({"sid": gw.sid("agent"), "txn": transfer.txn.as_str()}));
    let body = serde_json::json!({"method": "token", "token": token}).to_string();
    let resp = raw(
        gw.addr,
        &gw.pki,
        &request(
            "POST",
            &format!("/.stepup/holds/{}/complete", transfer.id.as_str()),
            &[("cookie", "SESSIONID=agent"), ("content-type", "application/json")],
            body.as_bytes(),
        ),
    )
    .await;
    assert_ne!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(!waiter.is_finished(), "the agent still waits for the approval");
    let ran: Vec<String> = up.ran().into_iter().map(|r| r.handler).collect();
    assert!(ran.is_empty(), "Flask ran {ran:?} with the old requirements");

    let path = gw.gw.config().audit.path.clone();
    let mut tightened = 0;
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        tightened = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["event"] == "hold.tightened" && r["reason"] == "requirements changed by reload")
            .count();
        if tightened == HOLDS + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tightened, HOLDS + 1, "every pending hold's change is audited");
    waiter.abort();
}

/// A reload that loosens a route does not release or satisfy what is
/// already pending: a reload never lets a hold through by itself.
#[tokio::test]
async fn a_reload_that_loosens_a_route_releases_nothing() {
    let up = RealUpstream::start(Framework::Flask).await;
    let routes = ROUTES.replace(
        "require: { methods: [token], max_age: 5m }",
        "require: { methods: [token], max_age: 5m, approvals: 1 }",
    );
    let gw = Gateway::start(up.addr, &routes, "").await;
    let challenges = challenge_holds(&gw).await;
    reload(&gw, |text| {
        text.replace("approvals: 1, ", "approvals: 0, ")
            .replace(", approvals: 1", "")
    })
    .await;
    for ch in &challenges {
        let id = stepgate::ids::HoldId::parse(ch["hold_id"].as_str().expect("id")).expect("hold id");
        let (_, state) = gw.gw.holds.get(&id).expect("hold");
        assert!(state.phase.is_open());
        assert_eq!(
            state.requirements.approvals, 1,
            "the hold keeps what it was created with"
        );
    }
    assert!(up.ran().is_empty());
}
