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
        path: "/admin/users/u1/delete".into(),
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
    let store = RedisHolds::new(&redis.url(), "stepgate").expect("store");
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
    let a = Arc::new(RedisHolds::new(&redis.url(), "stepgate").expect("a"));
    let b = Arc::new(RedisHolds::new(&redis.url(), "stepgate").expect("b"));
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
                let p = s.parked.expect("the winner gets the request");
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
