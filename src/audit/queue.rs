//! Group commit between the gateway's tasks and the one writer thread.
//!
//! A caller appends its record to the batch that is filling and waits on
//! that batch's single outcome; it never sends anything of its own to the
//! writer. The writer takes the whole batch, writes it with one
//! `fdatasync`, publishes one outcome and wakes every waiter at once. The
//! writer thread is woken only when it sleeps on an empty queue, so under
//! load a request costs a lock and a push, not a thread switch.

use super::Job;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What became of each record of a batch, by its place in the batch: its
/// `seq` once durable, `None` when it was not written. A failed write
/// leaves the whole list empty.
pub(super) type Outcome = Vec<Option<u64>>;

/// One group commit. Every waiter holds the batch and its own index.
pub(super) type Batch = crate::group_commit::Batch<Outcome>;

impl Batch {
    /// The `seq` of the record at `index`, once the batch is on disk.
    pub(super) async fn durable(&self, index: usize) -> Option<u64> {
        self.outcome().await?.get(index).copied().flatten()
    }
}

#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
    batch: Arc<Batch>,
    /// The writer sleeps on `wake`; the next push wakes it (once).
    writer_asleep: bool,
    /// Every handle is gone: the writer drains what is queued and stops.
    closed: bool,
    /// The writer thread is gone: nothing can become durable any more.
    dead: bool,
}

#[derive(Default)]
pub(super) struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Only a panic inside these few lines could poison the lock; the
        // state they guard stays consistent, so carry on.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends to the filling batch; `None` when the writer is gone.
    pub(super) fn push(&self, job: Job) -> Option<(Arc<Batch>, usize)> {
        let mut p = self.lock();
        if p.dead {
            return None;
        }
        let index = p.jobs.len();
        p.jobs.push(job);
        if p.writer_asleep {
            p.writer_asleep = false;
            self.wake.notify_one();
        }
        Some((p.batch.clone(), index))
    }

    /// No handle is left: let the writer finish.
    pub(super) fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        self.wake.notify_one();
    }

    /// The writer's side: the next whole batch, or `None` once closed and
    /// drained.
    pub(super) fn take(&self) -> Option<(Vec<Job>, Arc<Batch>)> {
        let mut p = self.lock();
        while p.jobs.is_empty() && !p.closed {
            p.writer_asleep = true;
            p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        p.writer_asleep = false;
        if p.jobs.is_empty() {
            return None;
        }
        let jobs = std::mem::take(&mut p.jobs);
        Some((jobs, std::mem::take(&mut p.batch)))
    }
}

/// Held by the writer thread for its whole life. When the thread ends, by
/// return or by panic, the batch in flight and everything still queued
/// fail instead of waiting forever, and later appends fail at once.
pub(super) struct WriterGuard {
    queue: Arc<Queue>,
    in_flight: Option<Arc<Batch>>,
}

impl WriterGuard {
    pub(super) fn new(queue: Arc<Queue>) -> Self {
        WriterGuard { queue, in_flight: None }
    }

    pub(super) fn take(&mut self) -> Option<Vec<Job>> {
        let (jobs, batch) = self.queue.take()?;
        self.in_flight = Some(batch);
        Some(jobs)
    }

    pub(super) fn finish(&mut self, outcome: Outcome) {
        if let Some(batch) = self.in_flight.take() {
            batch.finish(outcome);
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.finish(Vec::new());
        let batch = {
            let mut p = self.queue.lock();
            p.dead = true;
            p.jobs.clear();
            std::mem::take(&mut p.batch)
        };
        batch.finish(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::Record;

    fn job() -> Job {
        Job {
            record: Record::new(crate::audit::Event::Checkpoint),
            seal: false,
        }
    }

    #[tokio::test]
    async fn records_queued_together_share_one_batch_and_one_outcome() {
        let queue = Arc::new(Queue::default());
        let (a, ia) = queue.push(job()).unwrap();
        let (b, ib) = queue.push(job()).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one filling batch");
        let mut writer = WriterGuard::new(queue.clone());
        let jobs = writer.take().unwrap();
        assert_eq!(jobs.len(), 2);
        // A record queued while the batch is being written goes into the next.
        let (c, _) = queue.push(job()).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let waiting = tokio::spawn(async move { (a.durable(ia).await, b.durable(ib).await) });
        writer.finish(vec![Some(7), None]);
        assert_eq!(
            waiting.await.unwrap(),
            (Some(7), None),
            "each waiter reads its own place"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_acknowledges_nothing() {
        let queue = Arc::new(Queue::default());
        let (a, ia) = queue.push(job()).unwrap();
        let mut writer = WriterGuard::new(queue.clone());
        writer.take().unwrap();
        writer.finish(Vec::new());
        assert_eq!(a.durable(ia).await, None);
    }

    #[tokio::test]
    async fn a_writer_that_dies_fails_its_batch_the_queue_and_later_appends() {
        let queue = Arc::new(Queue::default());
        let (a, ia) = queue.push(job()).unwrap();
        let mut writer = WriterGuard::new(queue.clone());
        writer.take().unwrap();
        let (b, ib) = queue.push(job()).unwrap();
        let waiting = tokio::spawn(async move { (a.durable(ia).await, b.durable(ib).await) });
        // The thread ends mid-batch (a panic unwinds through the guard).
        drop(writer);
        assert_eq!(waiting.await.unwrap(), (None, None));
        assert!(queue.push(job()).is_none());
    }

    #[test]
    fn closing_lets_the_writer_drain_then_stop() {
        let queue = Arc::new(Queue::default());
        queue.push(job()).unwrap();
        queue.close();
        let mut writer = WriterGuard::new(queue.clone());
        assert_eq!(writer.take().unwrap().len(), 1);
        writer.finish(vec![Some(1)]);
        assert!(writer.take().is_none());
    }
}
