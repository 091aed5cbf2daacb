use super::*;
use crate::hold::state::Proof;
use crate::policy::{ProofMethod, Requirements};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use std::time::UNIX_EPOCH;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn meta(sid: &str) -> HoldMeta {
    HoldMeta {
        id: HoldId::random(),
        route: "r".into(),
        action: "a".into(),
        label: "A".into(),
        sid: Sid(sid.into()),
        txn: Txn("t".into()),
        method: Method::POST,
        host: "h".into(),
        path_and_query: "/p".into(),
        mode: HoldMode::Challenge,
        created: t(1000),
        client_ip: "127.0.0.1".parse().expect("ip"),
        risk: vec![],
        identity: None,
        display: vec![],
        needs_approval: false,
        request_id: "r".into(),
    }
}

fn state() -> HoldState {
    let req = Requirements {
        methods: vec![ProofMethod::Token],
        max_age: Duration::from_secs(300),
        ..Requirements::default()
    };
    HoldState::new(req, t(2000), 5, false)
}

fn parked() -> Parked {
    Parked {
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"body"),
    }
}

fn proof() -> Event {
    Event::ProofAccepted(Proof {
        method: ProofMethod::Token,
        sub: "alice".into(),
        auth_time: 1000,
        amr: vec![],
        acr: String::new(),
    })
}

#[test]
fn limits_are_enforced_and_freed() {
    let e = HoldEngine::new(3, 2);
    let a = e.create(meta("s1"), state(), parked(), None).expect("first");
    e.create(meta("s1"), state(), parked(), None).expect("second");
    assert_eq!(
        e.create(meta("s1"), state(), parked(), None).err(),
        Some(EngineError::SessionLimit)
    );
    e.create(meta("s2"), state(), parked(), None).expect("other session");
    assert_eq!(
        e.create(meta("s3"), state(), parked(), None).err(),
        Some(EngineError::GlobalLimit)
    );
    assert_eq!(e.open_count(), 3);
    e.apply(&a.id, proof(), t(1001)).expect("release");
    assert_eq!(e.open_count(), 2);
    e.create(meta("s1"), state(), parked(), None).expect("room again");
}

#[test]
fn concurrent_releases_have_one_winner() {
    let e = Arc::new(HoldEngine::new(10, 10));
    let m = e.create(meta("s"), state(), parked(), None).expect("create");
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let e = e.clone();
                let id = m.id.clone();
                s.spawn(move || e.apply(&id, proof(), t(1001)).ok().and_then(|a| a.release).is_some() as usize)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    assert_eq!(winners, 1);
    assert_eq!(e.phase(&m.id), Some(Phase::Released));
}

#[test]
fn sweep_expires_and_wakes_waiters_then_forgets() {
    let e = HoldEngine::new(10, 10);
    let (tx, mut rx) = oneshot::channel();
    let m = e.create(meta("s"), state(), parked(), Some(tx)).expect("create");
    assert!(e.sweep(t(1500)).is_empty());
    let expired = e.sweep(t(2001));
    assert_eq!(expired.len(), 1);
    assert!(matches!(rx.try_recv(), Ok(Delivery::Failed(Phase::Expired))));
    assert_eq!(e.open_count(), 0);
    assert_eq!(
        e.apply(&m.id, proof(), t(2002)).err(),
        Some(EngineError::Hold(HoldError::Expired))
    );
    e.sweep(t(2001 + 301));
    assert_eq!(e.phase(&m.id), None);
}

#[test]
fn parked_bytes_are_capped_and_returned_on_release() {
    let e = HoldEngine::new(100, 100).with_max_held_bytes(10);
    let big = Parked {
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"0123456789ab"),
    };
    assert_eq!(
        e.create(meta("s"), state(), big, None).err(),
        Some(EngineError::ByteLimit)
    );
    assert_eq!(e.held_bytes(), 0, "a refused hold is not charged");
    let e = HoldEngine::new(100, 100).with_max_held_bytes(8);
    let m = e.create(meta("s"), state(), parked(), None).expect("4 bytes fit");
    assert_eq!(e.held_bytes(), 4);
    assert_eq!(
        e.create(meta("t"), state(), parked(), None).expect("8 bytes fit").sid,
        Sid("t".into())
    );
    assert_eq!(
        e.create(meta("u"), state(), parked(), None).err(),
        Some(EngineError::ByteLimit)
    );
    e.apply(&m.id, proof(), t(1001)).expect("release");
    assert_eq!(e.held_bytes(), 4, "a released request no longer counts");
}

#[test]
fn parked_headers_do_not_pin_the_read_buffer() {
    // What hyper hands over: every value a slice of one connection buffer.
    let buffer = Bytes::from(b"SESSIONID=abc; theme=dark|application/json|a|b|secret".repeat(64));
    let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
    let shared = |from: usize, to: usize| HeaderValue::from_maybe_shared(buffer.slice(from..to)).expect("valid value");
    let mut headers = HeaderMap::new();
    headers.insert("cookie", shared(0, 25));
    headers.insert("content-type", shared(26, 42));
    headers.append("x-list", shared(43, 44));
    headers.append("x-list", shared(45, 46));
    let mut secret = shared(47, 53);
    secret.set_sensitive(true);
    headers.insert("authorization", secret);
    assert!(range.contains(&(headers["cookie"].as_bytes().as_ptr() as usize)));

    let parked = Packed::pack(&Parked {
        headers: headers.clone(),
        body: Bytes::from_static(b"{}"),
    })
    .unpack()
    .expect("unpacks");
    assert_eq!(parked.headers, headers, "same names, values and repeats");
    let repeats: Vec<_> = parked.headers.get_all("x-list").iter().collect();
    assert_eq!(repeats, ["a", "b"]);
    assert!(parked.headers["authorization"].is_sensitive());
    for (name, value) in &parked.headers {
        let at = value.as_bytes().as_ptr() as usize;
        assert!(!range.contains(&at), "{name} still points into the read buffer");
    }
}

#[test]
fn a_holds_path_is_its_target_up_to_the_first_question_mark() {
    let with = |pq: &str| HoldMeta {
        path_and_query: pq.into(),
        ..meta("s")
    };
    assert_eq!(with("/admin/users/alice/delete").path(), "/admin/users/alice/delete");
    assert_eq!(
        with("/admin/users/alice/delete?confirm=1").path(),
        "/admin/users/alice/delete"
    );
    // An encoded `?` is part of the path; the raw one starts the query.
    assert_eq!(with("/files/a%3Fb?x=?y").path(), "/files/a%3Fb");
    assert_eq!(with("/?").path(), "/");
}
