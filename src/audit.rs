//! The audit trail (SPEC §9): append-only JSON lines forming one hash
//! chain. Each line carries `prev`, the SHA-256 of the line before it, so
//! an edited, deleted or reordered line breaks the chain at that point;
//! every `checkpoint_every` records (and at rotation and shutdown) a
//! checkpoint line carries an ES256 signature over the chain head, so a
//! rewrite of the whole file cannot be made consistent without the key.
//!
//! Writes are durable before they are acknowledged: callers append to the
//! batch that is filling, one writer thread writes the whole batch and
//! `fdatasync`s once (group commit), then wakes every waiter of that batch
//! together (see `queue`). The gateway awaits that acknowledgement before
//! it forwards a released request, so an action never happens without its
//! record.

mod event;
mod queue;
pub mod verify;
mod writer;
pub use event::Event;

use crate::assertion::AssertionSigner;
use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where and how the trail is written: typed with the rest of the
/// configuration, which knows nothing of the writer.
pub use crate::config::AuditConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("the audit trail cannot be written")]
    Unavailable,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One event. The fixed fields are always written (null when they do not
/// apply), so every line has the same shape; `extra` holds event-specific
/// values such as the assertion's `jti` or the upstream status.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    #[serde(skip)]
    pub event: Event,
    pub hold: Option<String>,
    pub route: Option<String>,
    pub action: Option<String>,
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub txn: Option<String>,
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Record {
    pub fn new(event: Event) -> Self {
        Record {
            event,
            hold: None,
            route: None,
            action: None,
            sid: None,
            sub: None,
            txn: None,
            reason: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn actor(mut self, sub: impl Into<String>) -> Self {
        self.sub = Some(sub.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

struct Job {
    record: Record,
    /// Follow this record with a signed checkpoint (shutdown), so the tail
    /// of the trail is covered by a signature too.
    seal: bool,
}

/// Closes the queue when the last handle goes, so the writer seals the
/// tail and stops.
/// Closes the queue when the last handle goes, then waits for the writer
/// to seal the tail. Without the wait, a process that exits right after
/// dropping its gateway races the writer's final checkpoint: signing then
/// runs while the C crypto library is being torn down, and aborts.
struct Closer {
    queue: Arc<queue::Queue>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(writer) = self.writer.take() {
            if writer.thread().id() != std::thread::current().id() && writer.join().is_err() {
                tracing::error!("the audit writer thread panicked");
            }
        }
    }
}

/// Handle to the audit writer; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: Arc<Closer>,
    healthy: Arc<AtomicBool>,
    head: Arc<ArcSwapOption<String>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Opens (or continues) the trail and starts the writer thread.
    pub fn open(cfg: AuditConfig, signer: Arc<AssertionSigner>) -> Result<Self, AuditError> {
        let healthy = Arc::new(AtomicBool::new(true));
        let head = Arc::new(ArcSwapOption::empty());
        let state = writer::Writer::open(cfg, signer, healthy.clone(), head.clone())?;
        let queue = Arc::new(queue::Queue::default());
        let guard = queue::WriterGuard::new(queue.clone());
        let writer = std::thread::Builder::new()
            .name("stepgate-audit".into())
            .spawn(move || state.run(guard))
            .map_err(|source| AuditError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        Ok(Audit {
            queue: Arc::new(Closer {
                queue,
                writer: Some(writer),
            }),
            healthy,
            head,
        })
    }

    /// Queues a job; the future resolves once its batch is on disk.
    fn append(&self, record: Record, seal: bool) -> impl std::future::Future<Output = Result<u64, AuditError>> {
        let queued = self.queue.queue.push(Job { record, seal });
        async move {
            let (batch, index) = queued.ok_or(AuditError::Unavailable)?;
            batch.durable(index).await.ok_or(AuditError::Unavailable)
        }
    }

    /// Appends a record and waits until it is on disk. An error means it
    /// is not: sensitive work must stop (503 `audit_unavailable`).
    ///
    /// The record is queued by this call, not when the future is first
    /// polled: the trail's order is the order in which the gateway decided,
    /// and a caller that is dropped (a client that went away) cannot keep a
    /// record it asked for out of the trail.
    pub fn record(
        &self,
        record: Record,
    ) -> impl std::future::Future<Output = Result<u64, AuditError>> + Send + 'static {
        self.append(record, false)
    }

    /// Appends without waiting (for records written after the fact, such
    /// as the upstream's status, where nothing further depends on them).
    pub fn record_later(&self, record: Record) {
        let _ = self.queue.queue.push(Job { record, seal: false });
    }

    /// Appends a final record followed by a signed checkpoint and waits for
    /// both to be on disk (graceful shutdown).
    pub async fn seal(&self, record: Record) -> Result<u64, AuditError> {
        self.append(record, true).await
    }

    /// The newest durable checkpoint line (JSON, with its `jws`), for an
    /// outside collector to keep: a trail cut back behind it then fails
    /// `audit verify --head`.
    pub fn head(&self) -> Option<Arc<String>> {
        self.head.load_full()
    }

    /// Whether the last write succeeded (`/readyz`).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}
