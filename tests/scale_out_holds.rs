//! Holds shared across instances on a real `redis-server` (SPEC §10): the
//! store's compare-and-set script against the state machine's table, and
//! racing writers from two connections.

mod common;

use common::redis::RedisServer;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stepgate::hold::state::{Event, HoldError, HoldState, Phase, Proof, Transition};
use stepgate::hold::{HoldMeta, Parked};
use stepgate::ids::{HoldId, Sid, Txn};
use stepgate::policy::{HoldMode, ProofMethod, Requirements};
use stepgate::store::redis_holds::{Commit, HoldStoreError, RedisHolds};

/// How long an ended hold stays readable in the store.
const KEEP: Duration = Duration::from_secs(300);

fn meta() -> HoldMeta {
    HoldMeta {
        id: HoldId::random(),
        route: "delete-user".into(),
        action: "user.delete".into(),
        label: "Delete a user".into(),
        sid: Sid("sid".into()),
        txn: Txn("txn".into()),
        method: http::Method::POST,
        host: "gw.test".into(),
        path_and_query: "/admin/users/u1/delete".into(),
        mode: HoldMode::Challenge,
        created: SystemTime::now(),
        client_ip: "127.0.0.1".parse().expect("ip"),
        risk: vec![],
        identity: None,
        display: vec![],
        needs_approval: false,
        request_id: "rid".into(),
    }
}

fn state(phase: Phase) -> HoldState {
    let req = Requirements {
        methods: vec![ProofMethod::Token],
        max_age: Duration::from_secs(300),
        ..Requirements::default()
    };
    let mut s = HoldState::new(req, SystemTime::now() + Duration::from_secs(120), 5, false);
    s.phase = phase;
    s
}

fn parked() -> Parked {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    Parked {
        headers,
        body: bytes::Bytes::from_static(b"{\"confirm\":true}"),
    }
}

fn proof() -> Proof {
    Proof {
        method: ProofMethod::Token,
        sub: "alice".into(),
        auth_time: 1,
        amr: vec!["hwk".into()],
        acr: "stepup".into(),
    }
}

#[tokio::test]
async fn the_store_script_allows_exactly_the_state_machines_transitions() {
    let redis = RedisServer::start();
    let store = RedisHolds::new(&redis.url(), "stepgate", KEEP).expect("store");
    let mut allowed = 0;
    for from in Phase::ALL {
        for to in Phase::ALL {
            for take in [false, true] {
                let m = meta();
                store.put(&m, &state(from), &parked(), "a").await.expect("put");
                let answer = store.commit(&m.id, 1, &state(to), take, "b").await.expect("commit");
                let want = from.may_become(to) && (!take || to == Phase::Released);
                match answer {
                    Commit::Done(p) => {
                        assert!(want, "{from:?} -> {to:?} (take {take}) was written");
                        allowed += 1;
                        assert_eq!(p.is_some(), take, "the parked request goes to the taker only");
                        let back = store.load(&m.id).await.expect("load").expect("kept");
                        let phase = if take { "forwarding" } else { to.as_str() };
                        assert_eq!(back.phase, phase);
                        assert_eq!(back.version, 2);
                    }
                    Commit::Refused(was) => {
                        assert!(!want, "{from:?} -> {to:?} (take {take}) was refused");
                        assert_eq!(was, from.as_str());
                        let back = store.load(&m.id).await.expect("load").expect("kept");
                        assert_eq!((back.phase.as_str(), back.version), (from.as_str(), 1), "untouched");
                    }
                    other => panic!("{from:?} -> {to:?}: {other:?}"),
                }
            }
        }
    }
    // 5 stay-puts + 8 changes, and taking the parked request on the way
    // into `released` from the three phases that may get there.
    assert_eq!(allowed, 5 + 8 + 3);

    // A decision made on an old version is refused, whatever it says.
    let m = meta();
    store
        .put(&m, &state(Phase::Pending), &parked(), "a")
        .await
        .expect("put");
    assert!(matches!(
        store.commit(&m.id, 1, &state(Phase::Satisfied), false, "a").await,
        Ok(Commit::Done(None))
    ));
    assert_eq!(
        store
            .commit(&m.id, 1, &state(Phase::Released), true, "b")
            .await
            .expect("commit"),
        Commit::Stale
    );
    // Once taken, the parked request cannot be taken again, nor can the
    // hold be claimed by a second instance.
    assert!(matches!(
        store.commit(&m.id, 2, &state(Phase::Released), true, "b").await,
        Ok(Commit::Done(Some(_)))
    ));
    assert!(store.claim(&m.id, "c").await.expect("claim").is_none());
    assert_eq!(
        store
            .commit(&HoldId::random(), 1, &state(Phase::Expired), false, "a")
            .await
            .expect("commit"),
        Commit::Unknown
    );
}

#[tokio::test]
async fn racing_proofs_from_two_instances_release_once_and_hand_the_request_to_one() {
    let redis = RedisServer::start();
    let a = Arc::new(RedisHolds::new(&redis.url(), "stepgate", KEEP).expect("a"));
    let b = Arc::new(RedisHolds::new(&redis.url(), "stepgate", KEEP).expect("b"));
    let m = meta();
    a.put(&m, &state(Phase::Pending), &parked(), "a").await.expect("put");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = m.id.clone();
        tasks.push(tokio::spawn(async move {
            let by = if i % 2 == 0 { "a" } else { "b" };
            store
                .apply(&id, Event::ProofAccepted(proof()), SystemTime::now(), by, |_, _| true)
                .await
        }));
    }
    let mut released = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(s) => {
                assert_eq!(s.transition, Transition::Release);
                let p = s
                    .parked
                    .expect("the winner gets the request")
                    .unpack()
                    .expect("unpacks");
                assert_eq!(&p.body[..], b"{\"confirm\":true}");
                released += 1;
            }
            Err(HoldStoreError::Hold(HoldError::AlreadyReleased)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((released, refused), (1, 49));
    let back = a.load(&m.id).await.expect("load").expect("kept");
    assert_eq!(back.phase, "forwarding");
    assert!(
        a.indexed().await.expect("index").is_empty(),
        "a released hold leaves the index"
    );

    // Every hold key expires.
    for k in redis.keys("stepgate:hold:*") {
        let ttl: i64 = redis
            .command(&["TTL", &k])
            .and_then(|l| l.trim_start_matches(':').parse().ok())
            .expect("ttl");
        assert!(ttl > 0, "{k} has no expiry ({ttl})");
        assert!(k.contains("{") && k.ends_with('}'), "hash-tagged: {k}");
    }
}

// ------------------------------------------------ two gateways on one Redis

mod holdkit;
mod stepup_kit;

use common::story;
use common::{raw, request, Gateway as Instance, Upstream};
use holdkit::{bound_token, challenge, complete_with_token, hold_id};
use serde_json::json;
use stepup_kit::{approve, approvers_line, body_text, extra, first_queued, ApproverKey};

const ROUTES: &str = "
  - name: delete-user
    action: user.delete
    match: { methods: [POST], path: '/admin/users/([^/]+)/delete' }
    require: { methods: [token], max_age: 5m }
    hold: { mode: challenge, timeout: 2m }
  - name: agent-transfer
    action: agent.transfer
    match: { methods: [POST], path: /api/agent/transfers }
    require: { approvals: 1, approvers: [treasury] }
    hold: { mode: hold, timeout: 30s }
";

const BODY: &[u8] = b"{\"confirm\":true}";

/// An approval-only route holds a request only for a known requester: the
/// agent is named by the SSO proxy in front (the test client's address).
const SSO: &str = "trusted_proxies: [127.0.0.1/32]\nidentity: { header: X-Remote-User }\n";

async fn fleet(up: &Upstream, redis: &RedisServer, bob: &ApproverKey) -> (Instance, Instance) {
    fleet_with(up, redis, bob, "").await
}

async fn fleet_with(up: &Upstream, redis: &RedisServer, bob: &ApproverKey, more: &str) -> (Instance, Instance) {
    let top = extra(
        &[approvers_line(&[bob.yaml(&["treasury"], false)])],
        &format!("{}{more}", redis.state_yaml()),
    );
    let a = Instance::start(up.addr, ROUTES, &top).await;
    let b = a.peer(Arc::new(stepgate::clock::SystemClock)).await;
    (a, b)
}

/// The trail events of one instance about `hold`.
fn events(gw: &Instance, hold: &str) -> Vec<String> {
    let path = gw.gw.config().audit.path.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<String> = story::records(&path)
            .unwrap_or_default()
            .iter()
            .filter(|r| r["hold"] == hold)
            .filter_map(|r| r["event"].as_str().map(str::to_owned))
            .collect();
        // Records reach the file a moment after they are queued.
        if found.iter().any(|e| e == "request.forwarded") || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_hold_created_on_a_and_approved_on_b_is_released_once_on_a() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, b) = fleet_with(&up, &redis, &bob, SSO).await;

    // The agent waits on A.
    let req = request(
        "POST",
        "/api/agent/transfers",
        &[
            ("cookie", "SESSIONID=agent"),
            ("x-remote-user", "agent-7"),
            ("content-type", "application/json"),
        ],
        b"{\"amount\":5}",
    );
    let (addr, pki) = (a.addr, a.pki.clone());
    let client = tokio::spawn(async move { raw(addr, &pki, &req).await });

    // B's approver queue lists A's hold: the queue is the fleet's.
    let item = first_queued(&b, &bob).await;
    let hold = item["hold_id"].as_str().expect("hold id").to_owned();
    let txn = item["txn"].as_str().expect("txn").to_owned();
    let r = approve(&b, &bob, &hold, &txn).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(r.json(), json!({"status": "released", "hold_id": hold}));

    let resp = client.await.expect("client");
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.json()["target"], "/api/agent/transfers");
    assert_eq!(up.requests().len(), 1, "forwarded exactly once");
    assert!(up.requests()[0].header("x-stepup-assertion").is_some());

    // A forwarded it: its trail has the release and the forward, B's has
    // the approval only.
    let on_a = events(&a, &hold);
    let on_b = events(&b, &hold);
    assert!(on_a.contains(&"hold.created".to_owned()), "{on_a:?}");
    assert!(on_a.contains(&"hold.released".to_owned()), "{on_a:?}");
    assert!(on_a.contains(&"request.forwarded".to_owned()), "{on_a:?}");
    assert_eq!(on_b, vec!["approval.granted".to_owned()], "{on_b:?}");

    // A second approval finds it released, anywhere.
    let r = approve(&a, &bob, &hold, &txn).await;
    assert_eq!(r.status, 409, "{}", body_text(&r));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_challenge_hold_created_on_a_is_completed_on_b_which_forwards_it() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, b) = fleet(&up, &redis, &bob).await;
    let session = "sess-b";

    let (_, ch) = challenge(&a, session, "/admin/users/u7/delete", BODY).await;
    let hold = hold_id(&ch);
    let resp = complete_with_token(&b, &hold, session, &bound_token(&b, &ch)).await;
    assert_eq!(resp.status, 200, "{}", body_text(&resp));
    assert_eq!(resp.json()["target"], "/admin/users/u7/delete");
    assert_eq!(up.count("/admin/users/u7/"), 1);
    assert_eq!(
        &up.requests()[0].body[..],
        BODY,
        "the request parked on A, body and all"
    );

    let on_b = events(&b, &hold);
    assert!(on_b.contains(&"request.forwarded".to_owned()), "{on_b:?}");
    assert!(!events(&a, &hold).contains(&"request.forwarded".to_owned()));
    // A, asked about it, knows it was released.
    let st = holdkit::status_state(&a, &hold, session).await;
    assert_eq!(st, "released");
    let again = complete_with_token(&a, &hold, session, &bound_token(&a, &ch)).await;
    assert_eq!(again.status, 409, "{}", body_text(&again));
    assert_eq!(up.count("/admin/users/u7/"), 1);
}

#[tokio::test]
async fn fifty_completions_split_over_two_instances_forward_one_request() {
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let bob = ApproverKey::new("bob");
    let (a, b) = fleet(&up, &redis, &bob).await;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let session = "sess-race";
    let (_, ch) = challenge(&a, session, "/admin/users/u9/delete", BODY).await;
    let hold = hold_id(&ch);

    let mut tasks = Vec::new();
    for i in 0..50 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Each its own valid token (its own jti): only the hold decides.
        let token = bound_token(&gw, &ch);
        let hold = hold.clone();
        tasks.push(tokio::spawn(async move {
            complete_with_token(&gw, &hold, session, &token).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            200 => ok += 1,
            409 => assert_eq!(r.error_code(), "already_released", "{}", body_text(&r)),
            other => panic!("unexpected {other}: {}", body_text(&r)),
        }
    }
    assert_eq!(ok, 1, "one completion gets the upstream's answer");
    assert_eq!(up.count("/admin/users/u9/"), 1, "the upstream saw one request");
}

/// A stored hold expires `limits.keep_ended_holds` after its deadline (the
/// deadline is two minutes out), as the memory engine forgets it.
#[tokio::test]
async fn a_stored_hold_is_kept_for_the_configured_window_after_its_deadline() {
    let redis = RedisServer::start();
    for (keep, want) in [(30, 150), (3600, 3720)] {
        let store = RedisHolds::new(&redis.url(), "stepgate", Duration::from_secs(keep)).expect("store");
        let m = meta();
        store
            .put(&m, &state(Phase::Pending), &parked(), "a")
            .await
            .expect("put");
        let ttl = redis
            .command(&["TTL", &format!("stepgate:hold:{{{}}}", m.id.as_str())])
            .and_then(|l| l.trim_start_matches(':').parse::<i64>().ok())
            .expect("a TTL");
        // A second or two may pass between the write and the question.
        assert!(
            (want - 10..=want).contains(&ttl),
            "keep {keep}s: TTL {ttl}, want about {want}"
        );
    }
}

/// A release left for a waiter on another instance stays listed until it
/// is taken; if its instance is gone, the release is ended instead, once,
/// and its parked request can no longer be taken by anyone.
#[tokio::test]
async fn a_release_nobody_took_is_ended_once_and_cannot_be_taken_after() {
    let redis = RedisServer::start();
    let store = RedisHolds::new(&redis.url(), "stepgate", KEEP).expect("store");
    assert!(!store.alive("a").await.expect("alive"), "no lease yet");
    store.renew_lease("a", Duration::from_secs(60)).await.expect("lease");
    assert!(store.alive("a").await.expect("alive"));
    store.renew_lease("b", Duration::from_millis(1)).await.expect("lease");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.alive("b").await.expect("alive"), "a lapsed lease");

    let m = meta();
    let pending = state(Phase::Pending);
    store.put(&m, &pending, &parked(), "a").await.expect("put");
    // Open: nothing to end this way.
    assert!(!store.orphan(&m.id, &pending, "b").await.expect("orphan"));
    // Released without taking the request (the waiter is on "a").
    assert!(matches!(
        store.commit(&m.id, 1, &state(Phase::Released), false, "b").await,
        Ok(Commit::Done(None))
    ));
    assert_eq!(
        store.indexed().await.expect("index"),
        vec![m.id.clone()],
        "still listed"
    );
    assert!(store.orphan(&m.id, &state(Phase::Released), "b").await.expect("orphan"));
    assert!(
        !store.orphan(&m.id, &state(Phase::Released), "c").await.expect("orphan"),
        "once"
    );
    let back = store.load(&m.id).await.expect("load").expect("kept");
    assert_eq!((back.phase.as_str(), back.state.phase), ("expired", Phase::Expired));
    assert!(
        store.claim(&m.id, "a").await.expect("claim").is_none(),
        "nothing left to forward"
    );
    assert!(store.indexed().await.expect("index").is_empty());

    // A release that was taken is never ended this way.
    let m = meta();
    store.put(&m, &pending, &parked(), "a").await.expect("put");
    assert!(matches!(
        store.commit(&m.id, 1, &state(Phase::Released), true, "a").await,
        Ok(Commit::Done(Some(_)))
    ));
    assert!(!store.orphan(&m.id, &state(Phase::Released), "b").await.expect("orphan"));
    assert_eq!(
        store.load(&m.id).await.expect("load").expect("kept").phase,
        "forwarding"
    );
}
