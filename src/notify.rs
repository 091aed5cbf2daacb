//! Webhook notifications (`notify.webhook`): a hold needs approval, and
//! later it was released, denied or expired. Sending never blocks a
//! request: events go into a bounded queue, each is POSTed by its own task
//! with retries and backoff, and when the queue is full an event is dropped
//! and logged rather than stalling the gateway.

use crate::body::{full, Body};
use http::{header, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

const QUEUE: usize = 1024;
const IN_FLIGHT: usize = 16;
const ATTEMPTS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<serde_json::Value>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Body>;

impl Notifier {
    /// Starts the delivery task; must be called inside a Tokio runtime.
    pub fn start(webhook: Uri, backoff: Duration) -> Result<Self, std::io::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let client: HttpsClient = Client::builder(TokioExecutor::new()).build(https);
        let (tx, mut rx) = mpsc::channel::<serde_json::Value>(QUEUE);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                let webhook = webhook.clone();
                tokio::spawn(async move {
                    deliver(&client, &webhook, &event, backoff).await;
                    drop(permit);
                });
            }
        });
        Ok(Notifier { tx })
    }

    /// Queues an event; never waits.
    pub fn send(&self, event: serde_json::Value) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("webhook queue full or closed; notification dropped");
        }
    }
}

async fn deliver(client: &HttpsClient, webhook: &Uri, event: &serde_json::Value, backoff: Duration) {
    let body = event.to_string();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff * 2u32.pow(attempt - 1)).await;
        }
        let req = Request::post(webhook.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "stepgate-webhook")
            .body(full(body.clone()));
        let Ok(req) = req else { return };
        match tokio::time::timeout(TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return,
            Ok(Ok(resp)) => tracing::warn!(status = %resp.status(), attempt, "webhook refused the notification"),
            Ok(Err(e)) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
            Err(_) => tracing::warn!(attempt, "webhook timed out"),
        }
    }
    tracing::error!(event = %event["event"], hold = %event["hold_id"], "webhook notification given up");
}
