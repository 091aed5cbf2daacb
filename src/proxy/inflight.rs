//! Releases in flight. A release runs in a task of its own, owned by the
//! gateway rather than by any client's connection; shutdown waits for
//! these tasks before it seals the trail, and tests ask which holds are
//! still being forwarded.

use crate::ids::HoldId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Releases {
    running: Mutex<HashMap<u64, Option<HoldId>>>,
    next: AtomicU64,
    idle: Notify,
}

/// One release in flight; dropping it (however the task ends) counts it done.
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<Releases>,
    key: u64,
}

impl Releases {
    /// Counts a release from the moment it is decided, before its task
    /// first runs, so a drain that starts in between still waits for it.
    pub fn enter(self: &Arc<Self>, hold: Option<HoldId>) -> Ticket {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, hold);
        Ticket {
            owner: self.clone(),
            key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<HoldId>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The holds whose release is being carried out now.
    pub fn holds(&self) -> Vec<HoldId> {
        self.lock().values().flatten().cloned().collect()
    }

    /// Waits until no release is in flight, at most `limit`. True when
    /// none is left.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_empty() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let empty = {
            let mut running = self.owner.lock();
            running.remove(&self.key);
            running.is_empty()
        };
        if empty {
            self.owner.idle.notify_waiters();
        }
    }
}
