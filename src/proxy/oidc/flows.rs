//! Authorization flows in flight, keyed by `state`. Memory only: a flow
//! lives for at most its hold's lifetime, and `take` removes it, so each
//! `state` is answered once.

use crate::ids::{HoldId, Sid};
use crate::stepup::oidc::Flow;
use dashmap::DashMap;
use std::time::SystemTime;

/// At most this many flows wait at once; beyond it expired flows are
/// swept before another is added.
const MAX_FLOWS: usize = 10_000;

#[derive(Debug)]
pub(crate) struct Pending {
    pub hold: HoldId,
    pub sid: Sid,
    pub flow: Flow,
    pub expires: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct Flows {
    by_state: DashMap<String, Pending>,
}

impl Flows {
    pub fn insert(&self, flow: Flow, hold: HoldId, sid: Sid, expires: SystemTime, now: SystemTime) {
        if self.by_state.len() >= MAX_FLOWS {
            self.by_state.retain(|_, p| p.expires > now);
        }
        self.by_state.insert(
            flow.state.clone(),
            Pending {
                hold,
                sid,
                flow,
                expires,
            },
        );
    }

    /// Removes and returns the flow for `state`, if it has not expired.
    pub fn take(&self, state: &str, now: SystemTime) -> Option<Pending> {
        let (_, pending) = self.by_state.remove(state)?;
        (now <= pending.expires).then_some(pending)
    }
}
