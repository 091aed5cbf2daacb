use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn req(methods: Vec<ProofMethod>, approvals: u32) -> Requirements {
    Requirements {
        methods,
        max_age: Duration::from_secs(300),
        approvals,
        ..Requirements::default()
    }
}

fn proof(method: ProofMethod) -> Proof {
    Proof {
        method,
        sub: "alice".into(),
        auth_time: 1000,
        amr: vec!["otp".into()],
        acr: "stepup".into(),
    }
}

fn approval(sub: &str) -> Event {
    Event::Approve(Approval {
        sub: sub.into(),
        at: 1001,
    })
}

#[test]
fn a_valid_proof_releases_exactly_once() {
    let mut h = HoldState::new(req(vec![ProofMethod::Token], 0), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Token)), t(1000)),
        Ok(Transition::Release)
    );
    assert_eq!(h.phase, Phase::Released);
    for ev in [
        Event::ProofAccepted(proof(ProofMethod::Token)),
        Event::Collect,
        approval("bob"),
        Event::Expire,
    ] {
        assert_eq!(h.on(ev, t(1001)), Err(HoldError::AlreadyReleased));
    }
}

#[test]
fn a_proof_of_another_method_is_refused_without_cost() {
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 0), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Token)), t(1000)),
        Err(HoldError::MethodNotAccepted)
    );
    assert_eq!(h.phase, Phase::Pending);
    assert_eq!(h.attempts_left, 5);
}

#[test]
fn wrong_proofs_count_down_then_deny() {
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 0), t(2000), 3, false);
    assert_eq!(
        h.on(Event::ProofRejected, t(1000)),
        Ok(Transition::Rejected { attempts_left: 2 })
    );
    assert_eq!(
        h.on(Event::ProofRejected, t(1000)),
        Ok(Transition::Rejected { attempts_left: 1 })
    );
    assert_eq!(h.on(Event::ProofRejected, t(1000)), Ok(Transition::Denied));
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1000)),
        Err(HoldError::Denied)
    );
}

#[test]
fn the_deadline_wins_over_a_late_proof() {
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 0), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(2001)),
        Ok(Transition::Expired)
    );
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1500)),
        Err(HoldError::Expired)
    );
    // exactly at the deadline is still in time
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 0), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(2000)),
        Ok(Transition::Release)
    );
}

#[test]
fn approvals_satisfy_then_the_requester_collects() {
    let mut h = HoldState::new(req(vec![], 2), t(2000), 5, false);
    assert_eq!(h.on(Event::Collect, t(1000)), Ok(Transition::Progress));
    assert_eq!(h.on(approval("bob"), t(1000)), Ok(Transition::Progress));
    assert_eq!(h.on(approval("bob"), t(1000)), Err(HoldError::DuplicateApproval));
    assert_eq!(h.missing(), vec!["approvals:1".to_owned()]);
    assert_eq!(h.on(approval("carol"), t(1000)), Ok(Transition::Progress));
    assert_eq!(h.phase, Phase::Satisfied);
    assert_eq!(h.on(Event::Collect, t(1000)), Ok(Transition::Release));
    assert_eq!(h.on(Event::Collect, t(1000)), Err(HoldError::AlreadyReleased));
}

#[test]
fn hold_mode_releases_on_the_last_approval() {
    let mut h = HoldState::new(req(vec![], 1), t(2000), 5, true);
    assert_eq!(h.on(approval("bob"), t(1000)), Ok(Transition::Release));
}

#[test]
fn proof_and_approval_combine() {
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 1), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1000)),
        Ok(Transition::Progress)
    );
    assert_eq!(h.met(), vec!["totp".to_owned()]);
    assert_eq!(h.on(approval("bob"), t(1000)), Ok(Transition::Progress));
    assert_eq!(h.on(Event::Collect, t(1000)), Ok(Transition::Release));
}

#[test]
fn a_deny_ends_the_hold() {
    let mut h = HoldState::new(req(vec![], 1), t(2000), 5, true);
    assert_eq!(h.on(Event::Deny { by: "bob".into() }, t(1000)), Ok(Transition::Denied));
    assert_eq!(h.on(approval("carol"), t(1000)), Err(HoldError::Denied));
}

#[test]
fn break_glass_releases_only_where_the_route_allows_it() {
    let glass = |by: &str| Event::BreakGlass { by: by.into() };
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 2), t(2000), 5, false);
    assert_eq!(h.on(glass("alice"), t(1000)), Err(HoldError::MethodNotAccepted));
    assert_eq!(h.phase, Phase::Pending);

    let with = |replaces_approvals| {
        let mut r = req(vec![ProofMethod::Totp], 2);
        r.break_glass = Some(crate::policy::BreakGlass {
            reason_required: true,
            replaces_approvals,
        });
        HoldState::new(r, t(2000), 5, false)
    };
    // Never without the requester's own step-up.
    let mut h = with(true);
    assert_eq!(h.on(glass("alice"), t(1000)), Err(HoldError::BreakGlassNeedsStepUp));
    assert_eq!((h.phase, h.break_glass), (Phase::Pending, false));
    // Approvals are replaced only where the route says so.
    let mut h = with(false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1000)),
        Ok(Transition::Progress)
    );
    assert_eq!(
        h.on(glass("alice"), t(1001)),
        Err(HoldError::BreakGlassCannotReplaceApprovals)
    );
    assert_eq!((h.phase, h.break_glass), (Phase::Pending, false));

    let mut h = with(true);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1000)),
        Ok(Transition::Progress)
    );
    assert_eq!(h.on(glass("alice"), t(1001)), Ok(Transition::Release));
    assert!(h.break_glass);
    assert_eq!(h.on(glass("alice"), t(1002)), Err(HoldError::AlreadyReleased));
}

#[test]
fn one_person_cannot_both_step_up_and_approve_in_either_order() {
    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 1), t(2000), 5, false);
    assert_eq!(h.on(approval("alice"), t(1000)), Ok(Transition::Progress));
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1001)),
        Err(HoldError::SelfApproval)
    );
    assert_eq!((h.phase, h.proof.is_none()), (Phase::Pending, true));

    let mut h = HoldState::new(req(vec![ProofMethod::Totp], 1), t(2000), 5, false);
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Totp)), t(1000)),
        Ok(Transition::Progress)
    );
    assert_eq!(h.on(approval("alice"), t(1001)), Err(HoldError::SelfApproval));
    assert!(h.approvals.is_empty());
    assert_eq!(h.on(approval("bob"), t(1002)), Ok(Transition::Progress));
    assert_eq!(h.phase, Phase::Satisfied);
}

#[test]
fn a_reload_that_adds_an_approval_makes_a_satisfied_hold_pending_again() {
    let mut h = HoldState::new(req(vec![], 1), t(2000), 5, false);
    h.on(approval("bob"), t(1000)).expect("approve");
    assert_eq!(h.phase, Phase::Satisfied, "waiting for the requester to collect");
    assert_eq!(h.reload(&req(vec![], 2)), Reloaded::Tightened);
    assert_eq!(h.phase, Phase::Pending);
    assert_eq!(h.missing(), vec!["approvals:1".to_owned()]);
    assert_eq!(
        h.on(Event::Collect, t(1000)),
        Ok(Transition::Progress),
        "one approval no longer suffices"
    );
    assert_eq!(h.on(approval("carol"), t(1000)), Ok(Transition::Progress));
    assert_eq!(h.on(Event::Collect, t(1000)), Ok(Transition::Release));
}

#[test]
fn a_reload_that_changes_the_methods_drops_a_proof_the_new_ones_do_not_take() {
    let mut h = HoldState::new(req(vec![ProofMethod::Token], 1), t(2000), 5, false);
    h.on(Event::ProofAccepted(proof(ProofMethod::Token)), t(1000))
        .expect("proof");
    assert!(h.proof.is_some());
    assert_eq!(h.reload(&req(vec![ProofMethod::Totp], 1)), Reloaded::Tightened);
    assert!(h.proof.is_none());
    assert_eq!(
        h.on(Event::ProofAccepted(proof(ProofMethod::Token)), t(1000)),
        Err(HoldError::MethodNotAccepted)
    );
}

#[test]
fn a_reload_never_loosens_or_satisfies_a_pending_hold() {
    let mut h = HoldState::new(req(vec![ProofMethod::Token], 1), t(2000), 5, false);
    h.on(Event::ProofAccepted(proof(ProofMethod::Token)), t(1000))
        .expect("proof");
    assert_eq!(
        h.reload(&req(vec![ProofMethod::Token, ProofMethod::Totp], 0)),
        Reloaded::Unchanged
    );
    assert_eq!(h.requirements.approvals, 1);
    assert_eq!(h.phase, Phase::Pending);
    let mut ended = HoldState::new(req(vec![ProofMethod::Token], 0), t(2000), 5, false);
    ended.on(Event::Expire, t(1000)).expect("expire");
    assert_eq!(ended.reload(&req(vec![ProofMethod::Token], 3)), Reloaded::Unchanged);
}

/// Walks every state reachable from a spread of starting holds through
/// every event (on time and late) and every reload, and checks that the
/// phase changes the machine makes are exactly `TRANSITIONS`: a shared
/// store's script built from the table then allows nothing the machine
/// would not do, and refuses nothing it would.
#[test]
fn the_transition_table_is_exactly_what_the_machine_does() {
    use std::collections::HashSet;
    let events = || {
        vec![
            Event::ProofAccepted(proof(ProofMethod::Token)),
            Event::ProofRejected,
            Event::Collect,
            approval("bob"),
            approval("alice"),
            approval("carol"),
            Event::Deny { by: "bob".into() },
            Event::BreakGlass { by: "alice".into() },
            Event::Expire,
        ]
    };
    let mut starts = Vec::new();
    for methods in [vec![], vec![ProofMethod::Token]] {
        for approvals in 0..3 {
            for release_on_satisfy in [false, true] {
                for bg in [
                    None,
                    Some(crate::policy::BreakGlass {
                        reason_required: false,
                        replaces_approvals: true,
                    }),
                ] {
                    for attempts in [1, 2] {
                        let mut r = req(methods.clone(), approvals);
                        r.break_glass = bg;
                        starts.push(HoldState::new(r, t(2000), attempts, release_on_satisfy));
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    let mut frontier = starts;
    for _depth in 0..6 {
        let mut next = Vec::new();
        for h in &frontier {
            for now in [t(1000), t(3000)] {
                for ev in events() {
                    let mut after = h.clone();
                    if after.on(ev, now).is_ok() {
                        if after.phase != h.phase {
                            seen.insert((h.phase, after.phase));
                        }
                        next.push(after);
                    } else {
                        assert_eq!(after.phase, h.phase, "a refused event changes nothing");
                    }
                }
            }
            let mut stricter = h.requirements.clone();
            stricter.approvals += 1;
            let mut after = h.clone();
            if after.reload(&stricter) == Reloaded::Tightened {
                if after.phase != h.phase {
                    seen.insert((h.phase, after.phase));
                }
                next.push(after);
            }
        }
        frontier = next;
    }
    let table: HashSet<_> = TRANSITIONS.iter().copied().collect();
    let extra: Vec<_> = seen.difference(&table).collect();
    let unused: Vec<_> = table.difference(&seen).collect();
    assert!(extra.is_empty(), "the machine makes changes the table lacks: {extra:?}");
    assert!(
        unused.is_empty(),
        "the table allows changes the machine never makes: {unused:?}"
    );
    for from in Phase::ALL {
        assert_eq!(Phase::parse(from.as_str()), Some(from));
        for to in Phase::ALL {
            assert_eq!(from.may_become(to), from == to || table.contains(&(from, to)));
        }
    }
}
