//! Webhook notifications (`notify.webhook`): a hold needs approval, and
//! later it was released, denied or expired; break-glass is always
//! announced. Sending never blocks a request: events wait in a bounded
//! queue with two priorities, and a few are POSTed at a time with retries
//! and backoff.
//!
//! Break-glass goes before holds that need an approver, and those before
//! the rest (see [`Priority`]); when the queue is full, an event pushes out
//! the oldest one that matters less, or is dropped itself. Nothing is dropped silently: every drop,
//! and every event given up after its retries, is reported to the
//! gateway's `on_drop` (which audits and counts it).

use crate::body::{full, Body};
use http::{header, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

const IN_FLIGHT: usize = 16;
const ATTEMPTS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a notification was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The queue was full.
    QueueFull,
    /// Every attempt failed.
    Undeliverable,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::Undeliverable => "undeliverable",
        }
    }
}

/// Told about every notification that will not be delivered.
pub type OnDrop = Arc<dyn Fn(&serde_json::Value, Dropped) + Send + Sync>;

/// How much a notification matters; higher goes first and is dropped last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Released, denied, expired: after the fact.
    Routine = 0,
    /// A hold waits for an approver.
    Approval = 1,
    /// Someone released their own hold, skipping other people's judgement.
    BreakGlass = 2,
}

#[derive(Default)]
struct Queues {
    /// One queue per [`Priority`], oldest first.
    by_priority: [VecDeque<serde_json::Value>; 3],
}

impl Queues {
    fn len(&self) -> usize {
        self.by_priority.iter().map(VecDeque::len).sum()
    }

    fn pop(&mut self) -> Option<serde_json::Value> {
        self.by_priority.iter_mut().rev().find_map(VecDeque::pop_front)
    }

    /// Queues `event`; returns the event that had to go instead, if any.
    fn push(&mut self, event: serde_json::Value, priority: Priority, capacity: usize) -> Option<serde_json::Value> {
        let p = priority as usize;
        if self.len() < capacity {
            self.by_priority[p].push_back(event);
            return None;
        }
        // Full: the event takes the place of the oldest one that matters
        // less, or is itself the one that goes.
        match self.by_priority[..p].iter_mut().find_map(VecDeque::pop_front) {
            Some(old) => {
                self.by_priority[p].push_back(event);
                Some(old)
            }
            None => Some(event),
        }
    }
}

struct Shared {
    queues: Mutex<Queues>,
    capacity: usize,
    ready: Notify,
    on_drop: OnDrop,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Body>;

impl Notifier {
    /// Starts the delivery task; must be called inside a Tokio runtime.
    pub fn start(webhook: Uri, capacity: usize, backoff: Duration, on_drop: OnDrop) -> Result<Self, std::io::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let client: HttpsClient = Client::builder(TokioExecutor::new()).build(https);
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            capacity: capacity.max(1),
            ready: Notify::new(),
            on_drop,
        });
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let worker = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                // Taken only once a slot is free, so an urgent event that
                // arrives meanwhile still goes first.
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let event = loop {
                    let Some(shared) = worker.upgrade() else { return };
                    let next = shared.lock().pop();
                    if let Some(e) = next {
                        break e;
                    }
                    // Wakes on a new event, or now and then to notice that
                    // the gateway (and with it the queue) is gone.
                    let _ = tokio::time::timeout(Duration::from_secs(1), shared.ready.notified()).await;
                };
                let client = client.clone();
                let webhook = webhook.clone();
                let worker = worker.clone();
                tokio::spawn(async move {
                    if !deliver(&client, &webhook, &event, backoff).await {
                        if let Some(shared) = worker.upgrade() {
                            (shared.on_drop)(&event, Dropped::Undeliverable);
                        }
                    }
                    drop(permit);
                });
            }
        });
        Ok(Notifier { shared })
    }

    /// Queues an event; never waits.
    pub fn send(&self, event: serde_json::Value, priority: Priority) {
        let dropped = self.shared.lock().push(event, priority, self.shared.capacity);
        self.shared.ready.notify_one();
        if let Some(gone) = dropped {
            tracing::warn!(event = %gone["event"], hold = %gone["hold_id"], "webhook queue full; notification dropped");
            (self.shared.on_drop)(&gone, Dropped::QueueFull);
        }
    }
}

/// POSTs `event` with retries; false when every attempt failed.
async fn deliver(client: &HttpsClient, webhook: &Uri, event: &serde_json::Value, backoff: Duration) -> bool {
    let body = event.to_string();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff * 2u32.pow(attempt - 1)).await;
        }
        let req = Request::post(webhook.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "stepgate-webhook")
            .body(full(body.clone()));
        let Ok(req) = req else { return false };
        match tokio::time::timeout(TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return true,
            Ok(Ok(resp)) => tracing::warn!(status = %resp.status(), attempt, "webhook refused the notification"),
            Ok(Err(e)) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
            Err(_) => tracing::warn!(attempt, "webhook timed out"),
        }
    }
    tracing::error!(event = %event["event"], hold = %event["hold_id"], "webhook notification given up");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u32) -> serde_json::Value {
        serde_json::json!({ "n": n })
    }

    #[test]
    fn a_full_queue_drops_what_matters_least() {
        let mut q = Queues::default();
        assert!(q.push(ev(1), Priority::Routine, 2).is_none());
        assert!(q.push(ev(2), Priority::Approval, 2).is_none());
        assert_eq!(
            q.push(ev(3), Priority::Routine, 2),
            Some(ev(3)),
            "routine into a full queue goes"
        );
        assert_eq!(
            q.push(ev(4), Priority::Approval, 2),
            Some(ev(1)),
            "pushes out the routine one"
        );
        assert_eq!(
            q.push(ev(5), Priority::Approval, 2),
            Some(ev(5)),
            "an equal cannot push out an equal"
        );
        assert_eq!(
            q.push(ev(6), Priority::BreakGlass, 2),
            Some(ev(2)),
            "break-glass pushes out an approval"
        );
        assert_eq!(q.pop(), Some(ev(6)), "and goes first");
        assert_eq!(q.pop(), Some(ev(4)));
        assert_eq!(q.pop(), None);
    }
}
