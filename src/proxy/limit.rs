//! What happens at `limits.max_connections`: a connection over the limit
//! is accepted and closed at once, counted, and logged at most once a
//! second (a flood of refusals must not become a flood of log lines).

use super::Gateway;
use crate::clock::unix_secs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct Refusals {
    limit: usize,
    /// Refusals not yet mentioned in the log.
    unlogged: AtomicU64,
    /// The Unix second of the last log line.
    logged_at: AtomicU64,
}

impl Refusals {
    pub(super) fn new(limit: usize) -> Self {
        Refusals {
            limit,
            unlogged: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        }
    }

    pub(super) fn refuse(&self, gw: &Gateway, peer: SocketAddr) {
        gw.metrics.connections_refused.inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = unix_secs(gw.clock.now());
        let last = self.logged_at.load(Ordering::Relaxed);
        if now > last
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                %peer,
                limit = self.limit,
                refused,
                "connection refused: limits.max_connections reached"
            );
        }
    }
}
