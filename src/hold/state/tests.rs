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
