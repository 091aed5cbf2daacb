//! Group commit for the single-use journal. A claim appends its line to
//! the batch that is filling and waits for that batch's one `fdatasync`
//! on the journal's own thread. Before this, each claim wrote and synced
//! on the async worker under a lock, so every step-up token stalled its
//! whole core (pass-through included) for a disk sync, one token at a
//! time.
//!
//! A value still counts only once its line is on disk: the waiter learns
//! the outcome of the batch its line was in.

use super::journal::{Entry, Journal};
use super::state_error::StateError;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Lines appended beyond the live ones before the journal is rewritten.
const SLACK: usize = 4096;

enum Job {
    Append(Entry),
    /// Replace the file with these records (the live ones).
    Compact(Vec<Entry>),
}

/// One group commit; `true` once its lines are on disk.
type Batch = crate::group_commit::Batch<bool>;

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    batch: Arc<Batch>,
    /// Lines in the file once every queued job is done.
    lines: usize,
    asleep: bool,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The journal behind its writer thread. Dropping it lets the thread
/// finish what is queued and stop.
pub(super) struct JournalWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter").finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Moves `journal` (holding `lines` lines) to a thread of its own.
    pub(super) fn start(journal: Journal, lines: usize) -> Result<Self, StateError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                lines,
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("stepgate-journal".into())
            .spawn(move || run(journal, &theirs))
            .map_err(|e| StateError::Unavailable(format!("cannot start the journal writer: {e}")))?;
        Ok(JournalWriter { shared })
    }

    /// Queues `entry` now (in call order) and resolves once it is durable.
    pub(super) fn append(&self, entry: Entry) -> impl Future<Output = Result<(), StateError>> + Send + 'static {
        let batch = {
            let mut q = self.shared.lock();
            q.jobs.push(Job::Append(entry));
            q.lines += 1;
            if q.asleep {
                q.asleep = false;
                self.shared.wake.notify_one();
            }
            q.batch.clone()
        };
        async move {
            if batch.outcome().await.copied().unwrap_or(false) {
                Ok(())
            } else {
                Err(StateError::Unavailable(
                    "the single-use journal could not be synced".into(),
                ))
            }
        }
    }

    /// Queues a rewrite with the records `live(live_count)` gives, when the
    /// file has grown well past the `live_count` records it needs. The
    /// records are read under the queue's lock: every line queued before
    /// the rewrite belongs to a value already in them, and every line
    /// after it lands in the new file.
    pub(super) fn compact_if_bloated(&self, live_count: usize, live: impl FnOnce() -> Vec<Entry>) {
        let mut q = self.shared.lock();
        if q.lines <= live_count.saturating_mul(2).saturating_add(SLACK) {
            return;
        }
        let records = live();
        q.lines = records.len();
        q.jobs.push(Job::Compact(records));
        if q.asleep {
            q.asleep = false;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        self.shared.wake.notify_one();
    }
}

fn run(mut journal: Journal, shared: &Shared) {
    loop {
        let (jobs, batch) = {
            let mut q = shared.lock();
            while q.jobs.is_empty() && !q.closed {
                q.asleep = true;
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.jobs.is_empty() {
                return;
            }
            (std::mem::take(&mut q.jobs), std::mem::take(&mut q.batch))
        };
        batch.finish(write(&mut journal, jobs));
    }
}

/// Writes a batch in order with one sync at the end; `false` if any of its
/// lines may not be on disk.
fn write(journal: &mut Journal, jobs: Vec<Job>) -> bool {
    let mut lines = Vec::new();
    let mut ok = true;
    for job in jobs {
        match job {
            Job::Append(entry) => lines.push(entry),
            Job::Compact(live) => {
                // The lines before the rewrite are in `live` too; they are
                // written to the old file only so that a failed rewrite
                // loses nothing.
                ok &= journal.append_all(&lines).is_ok();
                lines.clear();
                if let Err(e) = journal.compact(&live) {
                    tracing::error!(error = %e, "cannot compact the single-use journal; it keeps growing");
                }
            }
        }
    }
    match journal.append_all(&lines) {
        Ok(()) => ok,
        Err(e) => {
            tracing::error!(error = %e, "cannot sync the single-use journal");
            false
        }
    }
}
