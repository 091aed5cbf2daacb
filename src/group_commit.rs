//! One group commit, shared by the audit trail and the single-use journal:
//! many waiters, one writer that finishes the batch once with its outcome
//! and wakes them all at once.

use std::sync::OnceLock;
use tokio::sync::Notify;

pub struct Batch<T> {
    outcome: OnceLock<T>,
    done: Notify,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            outcome: OnceLock::new(),
            done: Notify::new(),
        }
    }
}

impl<T> Batch<T> {
    /// Publishes the batch's outcome and wakes its waiters. A batch is
    /// finished once; a second call (the failure path of a writer that dies
    /// while finishing) changes nothing.
    pub fn finish(&self, outcome: T) {
        let _ = self.outcome.set(outcome);
        self.done.notify_waiters();
    }

    /// The outcome, once the writer has finished the batch.
    pub async fn outcome(&self) -> Option<&T> {
        let notified = self.done.notified();
        tokio::pin!(notified);
        // Registered before the outcome is read: a finish in between still
        // wakes this waiter.
        notified.as_mut().enable();
        if let Some(outcome) = self.outcome.get() {
            return Some(outcome);
        }
        notified.await;
        self.outcome.get()
    }
}
