//! The hold state machine. Pure: time comes in as `now`, and the result
//! says what must happen next. Exactly-once release rests on one rule:
//! [`Transition::Release`] is returned only by the single call that moves a
//! hold into [`Phase::Released`], and every later call gets
//! [`HoldError::AlreadyReleased`].
//!
//! ```text
//! Pending ──proof/approval──▶ Satisfied ──collect──▶ Released
//!    │  └──────────── (requester's own proof, or hold mode) ──▶ Released
//!    ├── deadline / abandoned ──▶ Expired
//!    └── deny / attempts exhausted ──▶ Denied
//! ```

use crate::policy::{ProofMethod, Requirements};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Pending,
    Satisfied,
    Released,
    Denied,
    Expired,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Satisfied => "satisfied",
            Phase::Released => "released",
            Phase::Denied => "denied",
            Phase::Expired => "expired",
        }
    }

    /// Still counts against the hold limits.
    pub fn is_open(self) -> bool {
        matches!(self, Phase::Pending | Phase::Satisfied)
    }
}

/// Every phase change the machine can make, and so the only ones a
/// shared store may write (its compare-and-set script is built from this
/// table, see `store::redis_holds`). A reload may send a satisfied hold
/// back to pending (its requirements grew); nothing leaves a closed phase.
pub const TRANSITIONS: &[(Phase, Phase)] = &[
    (Phase::Pending, Phase::Satisfied),
    (Phase::Pending, Phase::Released),
    (Phase::Pending, Phase::Denied),
    (Phase::Pending, Phase::Expired),
    (Phase::Satisfied, Phase::Pending),
    (Phase::Satisfied, Phase::Released),
    (Phase::Satisfied, Phase::Denied),
    (Phase::Satisfied, Phase::Expired),
];

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Satisfied,
        Phase::Released,
        Phase::Denied,
        Phase::Expired,
    ];

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a hold may go from `self` to `to` (staying put always may).
    pub fn may_become(self, to: Phase) -> bool {
        self == to || TRANSITIONS.contains(&(self, to))
    }
}

/// A verified proof of presence from the requester's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub method: ProofMethod,
    /// Who stepped up: the accountable actor.
    pub sub: String,
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub acr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub sub: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The requester presented a proof that verified.
    ProofAccepted(Proof),
    /// The requester presented a proof that did not verify.
    ProofRejected,
    /// The requester asks to release a hold that approvals satisfied.
    Collect,
    Approve(Approval),
    Deny {
        by: String,
    },
    /// The requester released their own hold on a route that allows it,
    /// stating a reason (incident use; audited and announced).
    BreakGlass {
        by: String,
    },
    /// The deadline passed (sweeper) or the `hold`-mode waiter went away.
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The caller has won the release and must forward the request.
    Release,
    /// Recorded; more is needed (`missing` says what).
    Progress,
    /// The proof was wrong; this many attempts remain.
    Rejected {
        attempts_left: u32,
    },
    /// The hold is now denied (wrong proofs exhausted or an approver said no).
    Denied,
    Expired,
}

/// What a reload did to one pending hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    /// The hold now needs the route's new, stricter requirements.
    Tightened,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    #[error("the hold was already released")]
    AlreadyReleased,
    #[error("the hold was denied")]
    Denied,
    #[error("the hold has expired")]
    Expired,
    #[error("this approver already approved")]
    DuplicateApproval,
    #[error("the proof method is not accepted by this route")]
    MethodNotAccepted,
    #[error("the same person cannot both step up and approve")]
    SelfApproval,
    #[error("break-glass needs the requester's own step-up first")]
    BreakGlassNeedsStepUp,
    #[error("break-glass may not replace this route's approvals")]
    BreakGlassCannotReplaceApprovals,
}

#[derive(Debug, Clone)]
pub struct HoldState {
    pub phase: Phase,
    pub requirements: Requirements,
    pub deadline: SystemTime,
    pub attempts_left: u32,
    pub proof: Option<Proof>,
    pub approvals: Vec<Approval>,
    /// In `hold` mode nobody comes back to collect, so satisfying the hold
    /// releases it at once.
    pub release_on_satisfy: bool,
    /// Released by break-glass rather than by its requirements.
    pub break_glass: bool,
}

impl HoldState {
    pub fn new(requirements: Requirements, deadline: SystemTime, attempts: u32, release_on_satisfy: bool) -> Self {
        HoldState {
            phase: Phase::Pending,
            requirements,
            deadline,
            attempts_left: attempts,
            proof: None,
            approvals: Vec::new(),
            release_on_satisfy,
            break_glass: false,
        }
    }

    pub fn is_satisfied(&self) -> bool {
        let proof_ok = self.requirements.methods.is_empty() || self.proof.is_some();
        proof_ok && self.approvals.len() >= self.requirements.approvals as usize
    }

    /// What is still needed, for the status endpoint.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.proof.is_none() {
            out.extend(self.requirements.methods.iter().map(|m| m.as_str().to_owned()));
        }
        let have = self.approvals.len() as u32;
        if have < self.requirements.approvals {
            out.push(format!("approvals:{}", self.requirements.approvals - have));
        }
        out
    }

    pub fn met(&self) -> Vec<String> {
        let mut out: Vec<String> = self.proof.iter().map(|p| p.method.as_str().to_owned()).collect();
        out.extend(self.approvals.iter().map(|a| format!("approval:{}", a.sub)));
        out
    }

    /// Applies one event at time `now`.
    pub fn on(&mut self, event: Event, now: SystemTime) -> Result<Transition, HoldError> {
        match self.phase {
            Phase::Released => return Err(HoldError::AlreadyReleased),
            Phase::Denied => return Err(HoldError::Denied),
            Phase::Expired => return Err(HoldError::Expired),
            Phase::Pending | Phase::Satisfied => {}
        }
        // A late event of any kind finds the hold expired.
        if now > self.deadline {
            return Ok(self.expire());
        }
        match event {
            Event::ProofAccepted(proof) => {
                if !self.requirements.accepts(proof.method) {
                    return Err(HoldError::MethodNotAccepted);
                }
                // Separation of duties, checked here so that a proof and an
                // approval racing each other cannot both slip past it.
                if self.approvals.iter().any(|a| a.sub == proof.sub) {
                    return Err(HoldError::SelfApproval);
                }
                if self.proof.is_none() {
                    self.proof = Some(proof);
                }
                // The requester is here and waiting for the response, so a
                // proof that completes the hold releases it.
                Ok(self.settle(true))
            }
            Event::ProofRejected => {
                self.attempts_left = self.attempts_left.saturating_sub(1);
                if self.attempts_left == 0 {
                    self.phase = Phase::Denied;
                    Ok(Transition::Denied)
                } else {
                    Ok(Transition::Rejected {
                        attempts_left: self.attempts_left,
                    })
                }
            }
            Event::Collect => Ok(self.settle(true)),
            Event::Approve(approval) => {
                if self.approvals.iter().any(|a| a.sub == approval.sub) {
                    return Err(HoldError::DuplicateApproval);
                }
                if self.proof.as_ref().is_some_and(|p| p.sub == approval.sub) {
                    return Err(HoldError::SelfApproval);
                }
                self.approvals.push(approval);
                Ok(self.settle(self.release_on_satisfy))
            }
            Event::Deny { .. } => {
                self.phase = Phase::Denied;
                Ok(Transition::Denied)
            }
            Event::BreakGlass { .. } => {
                let Some(bg) = self.requirements.break_glass else {
                    return Err(HoldError::MethodNotAccepted);
                };
                // Break-glass skips other people's judgement, never the
                // proof that the requester is who the session says.
                if self.proof.is_none() {
                    return Err(HoldError::BreakGlassNeedsStepUp);
                }
                if self.approvals.len() < self.requirements.approvals as usize && !bg.replaces_approvals {
                    return Err(HoldError::BreakGlassCannotReplaceApprovals);
                }
                self.break_glass = true;
                self.phase = Phase::Released;
                Ok(Transition::Release)
            }
            Event::Expire => Ok(self.expire()),
        }
    }

    /// Holds a pending hold to the requirements a reload gave its route.
    /// A reload only ever adds to what a hold needs (see `stricter`):
    /// proofs or approvals the stricter requirements would not have taken
    /// are dropped and must be given again, and a reload never satisfies or
    /// releases a hold by itself.
    pub fn reload(&mut self, new: &Requirements) -> Reloaded {
        let merged = stricter(&self.requirements, new);
        if !self.phase.is_open() || self.requirements == merged {
            return Reloaded::Unchanged;
        }
        let mut next = self.clone();
        let people_changed = merged.users != self.requirements.users || merged.groups != self.requirements.groups;
        let acr_changed = merged.acr != self.requirements.acr;
        if next.proof.as_ref().is_some_and(|p| !merged.accepts(p.method)) || people_changed || acr_changed {
            next.proof = None;
        }
        if merged.approvers != self.requirements.approvers {
            next.approvals.clear();
        }
        next.requirements = merged;
        if next.is_satisfied() && !self.is_satisfied() {
            return Reloaded::Unchanged;
        }
        next.phase = if next.is_satisfied() {
            self.phase
        } else {
            Phase::Pending
        };
        *self = next;
        Reloaded::Tightened
    }

    fn expire(&mut self) -> Transition {
        self.phase = Phase::Expired;
        Transition::Expired
    }

    fn settle(&mut self, release_now: bool) -> Transition {
        if !self.is_satisfied() {
            return Transition::Progress;
        }
        if release_now {
            self.phase = Phase::Released;
            Transition::Release
        } else {
            self.phase = Phase::Satisfied;
            Transition::Progress
        }
    }
}

/// The stricter of a hold's requirements and its route's new ones, in
/// each respect: more approvals, a shorter `max_age` and reuse window, and
/// fewer accepted methods or approver groups. Where the two lists share
/// nothing (the route now takes other methods, other approvers or other
/// people), the new file's list stands.
fn stricter(old: &Requirements, new: &Requirements) -> Requirements {
    fn narrower<T: Clone + PartialEq>(old: &[T], new: &[T]) -> Vec<T> {
        if old.is_empty() {
            return new.to_vec();
        }
        if new.is_empty() {
            return old.to_vec();
        }
        let both: Vec<T> = old.iter().filter(|x| new.contains(x)).cloned().collect();
        if both.is_empty() {
            new.to_vec()
        } else {
            both
        }
    }
    // Who may step up: the new file's list, unless it now lets anyone.
    let (users, groups) = if new.users.is_empty() && new.groups.is_empty() {
        (old.users.clone(), old.groups.clone())
    } else {
        (new.users.clone(), new.groups.clone())
    };
    let break_glass = match (old.break_glass, new.break_glass) {
        (Some(o), Some(n)) => Some(crate::policy::BreakGlass {
            reason_required: o.reason_required || n.reason_required,
            replaces_approvals: o.replaces_approvals && n.replaces_approvals,
        }),
        _ => None,
    };
    Requirements {
        methods: narrower(&old.methods, &new.methods),
        max_age: old.max_age.min(new.max_age),
        approvals: old.approvals.max(new.approvals),
        approvers: narrower(&old.approvers, &new.approvers),
        users,
        groups,
        reuse: old.reuse.min(new.reuse),
        break_glass,
        acr: narrower(&old.acr, &new.acr),
    }
}

#[cfg(test)]
mod tests;
